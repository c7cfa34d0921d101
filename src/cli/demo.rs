//! `quorumkms demo`: signer nodes on loopback and a mock validator (see
//! `crate::demo`).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;
use crate::demo::{self, DemoOptions};
use crate::keys::KeyType;
use crate::privval::Version;
use crate::testnet::threshold_shares;

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
    /// Threshold mode: split the (ed25519) key T of --nodes, one share per
    /// node, so that every signature takes T nodes' shares.
    #[arg(long, value_name = "T")]
    pub threshold: Option<u16>,
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
    if let Some(t) = args.threshold {
        check_threshold(t, args.nodes, args.key_type)?;
    }
    let options = DemoOptions {
        nodes: args.nodes,
        blocks: args.blocks,
        block_time: args.block_time,
        kill_after: (!args.no_kill).then_some(args.kill_leader_after),
        protocol,
        key_type: args.key_type,
        threshold: args.threshold,
        dir: args.dir.clone(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(demo::run(&options))
}

/// Whether `--threshold t` fits the other arguments.
fn check_threshold(t: u16, nodes: usize, key_type: KeyType) -> Result<(), String> {
    threshold_shares(t, nodes)?;
    if key_type != KeyType::Ed25519 {
        return Err(format!(
            "--threshold splits an ed25519 key (FROST Ed25519); drop --key-type {key_type}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_needs_a_cluster_an_ed25519_key_and_a_fitting_count() {
        assert_eq!(check_threshold(2, 3, KeyType::Ed25519), Ok(()));
        assert_eq!(check_threshold(5, 5, KeyType::Ed25519), Ok(()));
        let one = check_threshold(2, 1, KeyType::Ed25519).unwrap_err();
        assert!(one.contains("--nodes 3"), "{one}");
        let secp = check_threshold(2, 3, KeyType::Secp256k1).unwrap_err();
        assert!(secp.contains("--key-type secp256k1"), "{secp}");
        let low = check_threshold(1, 3, KeyType::Ed25519).unwrap_err();
        assert!(low.starts_with("--threshold: threshold 1"), "{low}");
        let high = check_threshold(4, 3, KeyType::Ed25519).unwrap_err();
        assert!(high.contains("more than the 3 shares"), "{high}");
    }
}
