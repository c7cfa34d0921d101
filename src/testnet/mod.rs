//! Local test networks: signer node directories, loopback ports, node
//! processes and the admin calls that bring a cluster up.
//!
//! The demo, `quorumkms testnet-config`, the benchmark and the integration
//! tests all lay nodes out with this module, so a node directory looks the
//! same wherever it was written.
//!
//! - [`layout`]: the node directory ([`NodeFiles`]) and its config, the
//!   `[cluster]` section, `signers.txt`.
//! - [`ports`]: loopback ports no one else takes before the node binds.
//! - [`process`]: `quorumkms start` as a child process.
//! - [`cluster`]: a whole set of such processes ([`ProcessCluster`]), as the
//!   process tests and the benchmark run them.
//! - [`admin`]: bootstrap a cluster and find its leader.
//! - [`rpc`]: a stand-in for a CometBFT RPC's `/status` (a chain's floor).
//! - [`softhsm`]: a private SoftHSM2 token (PKCS#11) for tests, the demo
//!   and the bench.

pub mod admin;
pub mod cluster;
pub mod layout;
pub mod ports;
pub mod process;
pub mod rpc;
pub mod softhsm;

pub use admin::{find_leader, find_leader_at, initialize_cluster, initialize_cluster_at};
pub use cluster::{Placement, ProcessCluster, ProcessClusterBuilder};
pub use layout::{
    CHAIN_ID, NodeFiles, NodeKeys, cluster_section, cluster_section_at, read_signer_names,
    threshold_shares, write_node, write_node_keyed, write_nodes, write_nodes_keyed,
};
pub use ports::free_ports;
pub use process::{spawn_node, spawn_node_in, spawn_node_with_env};
