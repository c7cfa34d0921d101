//! `quorumkms demo`: signer nodes on loopback and a mock validator (see
//! `crate::demo`).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;
use crate::demo::{self, DemoOptions};
use crate::keys::KeyType;
use crate::privval::Version;

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Signer nodes: 1 runs single-node mode, 3 or more a Raft cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Blocks to produce.
    #[arg(long, default_value_t = 30)]
    pub blocks: i64,
    /// Pause between blocks.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Kill -9 the Raft leader (in single-node mode: the node) after this
    /// long.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub kill_leader_after: Duration,
    /// Never kill a node.
    #[arg(long)]
    pub no_kill: bool,
    /// privval protocol version the validator speaks (default v0.38, or
    /// v1.0 with a secp256k1 key).
    #[arg(long)]
    pub protocol: Option<Version>,
    /// The consensus key type: ed25519, or secp256k1 (CometBFT v1.0).
    #[arg(long, default_value = "ed25519")]
    pub key_type: KeyType,
    /// Keep the node directories here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs the demo.
///
/// # Errors
///
/// Set-up failures, or a conflicting or invalid signature (which would be a
/// bug: the demo exits non-zero).
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.nodes == 0 || args.nodes == 2 {
        return Err("--nodes must be 1 (single-node mode) or 3 or more (a cluster)".into());
    }
    let protocol = match (args.protocol, args.key_type) {
        (Some(version), key_type) if !version.supports_key_type(key_type) => {
            return Err(format!(
                "--key-type {key_type} needs --protocol v1.0 (CometBFT {version} validators take only ed25519 keys)"
            )
            .into());
        }
        (Some(version), _) => version,
        (None, KeyType::Secp256k1) => Version::V1_0,
        (None, KeyType::Ed25519) => Version::V0_38,
    };
    let options = DemoOptions {
        nodes: args.nodes,
        blocks: args.blocks,
        block_time: args.block_time,
        kill_after: (!args.no_kill).then_some(args.kill_leader_after),
        protocol,
        key_type: args.key_type,
        dir: args.dir.clone(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(demo::run(&options))
}
