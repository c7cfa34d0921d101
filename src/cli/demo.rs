//! `quorumkms demo`: signer nodes on loopback and a mock validator (see
//! `crate::demo`).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;
use crate::demo::{self, DemoOptions};
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
    /// privval protocol version the validator speaks.
    #[arg(long, default_value = "v0.38")]
    pub protocol: Version,
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
    let options = DemoOptions {
        nodes: args.nodes,
        blocks: args.blocks,
        block_time: args.block_time,
        kill_after: (!args.no_kill).then_some(args.kill_leader_after),
        protocol: args.protocol,
        dir: args.dir.clone(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(demo::run(&options))
}
