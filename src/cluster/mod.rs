//! The Raft cluster: signer nodes that commit a chain's watermark through
//! Raft before any signature is released.
//!
//! # Layout
//!
//! Each file imports only files listed above it (no cycles):
//!
//! - [`runtime`]: the async runtime openraft runs on (seedable RNG, one
//!   spawn helper), the seams a deterministic simulation needs; [`types`]:
//!   openraft's type configuration, [`Command`] and [`Outcome`].
//! - [`store`] (and `store_sled`): the durable log, vote and state (redb,
//!   sled, or memory for tests); [`state_machine`]: applies committed
//!   commands through the `watermark` rules and publishes the applied
//!   state; [`identity`]: the cluster a node belongs to, and the rules
//!   for taking a cluster id.
//! - [`transport`]: the [`Transport`] seam (TCP, TLS, a simulated
//!   network); [`accept`]: a listener that bounds handshakes in progress
//!   and connections per source address; [`revoke`]: serial numbers and
//!   verifiers that refuse revoked ones; [`tls`]: mutual TLS
//!   ([`TlsTransport`]), caller roles and node ids; [`certs`]: the cluster
//!   CA and its revocation list.
//! - [`config`], [`error`], [`deps`]: a node's settings, errors and seams.
//! - [`forward`]: a forwarded command and the leader's typed answer;
//!   [`network`]: the tonic client side (Raft RPCs, forwarding).
//! - `build`: openraft's settings, the store, building a Raft instance;
//!   `instance`: the node's current Raft instance and its storage fault.
//! - `propose`: the grant path (propose on the leader, or forward to it);
//!   [`membership`]: learners, promotion, removal, leadership transfer;
//!   [`bootstrap`]: `cluster init`.
//! - `snapshot_receiver`: puts a leader's snapshot chunks together and
//!   installs the snapshot only if it decodes; [`service`]: the
//!   node-to-node server side; [`admin`]: the operator's API (status,
//!   service, client).
//! - `server`: the tonic server for both; `supervisor`: rebuilds Raft
//!   after a storage fault.
//! - `node`: [`run_node`] assembles all of it, and the [`Node`] handle is
//!   a [`Granter`](crate::grant::Granter).
//!
//! # Invariant
//!
//! A node returns `Verdict::Sign(bytes)` only from a committed, applied
//! entry that grants exactly `bytes`, or from its applied state when that
//! already holds exactly `bytes` at the attempt's position.

pub mod accept;
pub mod admin;
pub mod bootstrap;
mod build;
pub mod certs;
pub mod config;
pub mod cosign;
pub mod deps;
pub mod error;
mod failover;
pub mod forward;
mod group_commit;
pub mod identity;
mod instance;
pub mod keygen;
pub mod membership;
pub mod network;
mod node;
mod probe;
pub mod propose;
pub mod revoke;
pub mod runtime;
mod server;
pub mod service;
mod snapshot_receiver;
pub mod state_machine;
pub mod store;
#[cfg(feature = "sled")]
pub mod store_sled;
pub mod subject;
mod supervisor;
pub mod tls;
pub mod transport;
pub mod types;

/// Code generated from `proto/cluster.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("quorumkms.cluster.v1");
}

pub use bootstrap::BootstrapError;
pub use config::{
    Config, MAX_GRANT_TIMEOUT_MS, Peer, default_election_timeout_max_ms,
    default_election_timeout_min_ms, default_grant_timeout_ms, default_heartbeat_interval_ms,
};
pub use deps::{Deps, StoreChoice};
pub use error::Error;
pub use identity::{ClusterId, IdentityError};
pub use instance::Fault;
pub use node::{Node, run_node};
pub use state_machine::AppliedState;
pub use store::{Backend, MemBackend, RedbBackend};
pub use tls::{TlsConfig, TlsTransport};
pub use transport::{TcpTransport, Transport};
pub use types::{Command, Member, NodeId, Outcome, RaiseRecord, Raiser, Served, SignedRecord};

#[cfg(test)]
mod tests;
