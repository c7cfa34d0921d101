//! `quorumkms testnet-config`: node directories for a test deployment (a
//! compose cluster, a drill): one soft consensus key shared by every
//! signer node, a fresh identity key each, the validator nodes to dial and
//! a `[cluster]` section with the given peer addresses. Written with the
//! [`crate::testnet`] layout, plus `signers.txt` (`NODE_ID NAME` lines, for
//! `validator-sim --signer-names` and drill plans) and `consensus.pub` (the
//! key, hex). With `--canary`, every signer also serves the drill's canary
//! chain. The cluster port needs TLS off loopback: `--certs` names a CA
//! directory made with `quorumkms cluster certs` whose node certificates
//! are copied into the node directories. With `--threshold T` the key is
//! split T of the node count instead (threshold mode): node `i` holds
//! share `i` of each chain and no node directory holds the whole key.

use std::path::{Path, PathBuf};

use crate::cluster::config::is_loopback;
use crate::keys::{ConsensusSigner, softsign};
use crate::privval::Version;
use crate::testnet::{NodeKeys, cluster_section_at, threshold_shares, write_node_keyed};

/// Arguments of `testnet-config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to create the node directories (`node-1`, ...) in.
    #[arg(long)]
    pub dir: PathBuf,
    /// Chain id.
    #[arg(long, default_value = crate::testnet::CHAIN_ID)]
    pub chain: String,
    /// A validator node every signer dials (repeat): `tcp://[ID@]host:port`.
    #[arg(long = "validator", required = true)]
    pub validators: Vec<String>,
    /// Where `quorumkms drill` listens for its canary validator (repeat,
    /// one per canary sentry): every signer also serves the canary chain
    /// there.
    #[arg(long = "canary")]
    pub canaries: Vec<String>,
    /// The canary chain id.
    #[arg(long, default_value = crate::drill::plan::CANARY_CHAIN)]
    pub canary_chain: String,
    /// Cluster address of each signer node, in node order (repeat; none
    /// for one node in single-node mode).
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Host the nodes' cluster listeners bind (their peer address's port).
    #[arg(long, default_value = "0.0.0.0")]
    pub listen_host: String,
    /// The cluster CA directory (`quorumkms cluster certs init`, and
    /// `cluster certs node --id N` for every node): each node directory
    /// gets `tls/ca.pem`, `tls/node.pem` and `tls/node.key`, named in its
    /// `[cluster] tls`.
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// Run the cluster port in plaintext off loopback (a closed test
    /// network only; anyone who reaches it can change the watermark).
    #[arg(long, conflicts_with = "certs")]
    pub insecure_plaintext: bool,
    /// Signer nodes (default: one per --peer, or 1).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// privval protocol version.
    #[arg(long, default_value = "v0.38")]
    pub protocol: Version,
    /// Threshold mode: split the key T of the signer nodes, node `i`
    /// holding share `i` of every chain (`secrets/CHAIN.share.json`), so
    /// that every signature takes T nodes' shares.
    #[arg(long, value_name = "T")]
    pub threshold: Option<u16>,
}

/// Runs `testnet-config`.
///
/// # Errors
///
/// Inconsistent arguments, an existing directory, or unwritable files.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let nodes = args.nodes.unwrap_or(args.peers.len().max(1));
    if nodes == 0 || nodes == 2 {
        return Err("a deployment has 1 node (single-node mode) or 3 or more".into());
    }
    if nodes > 1 && args.peers.len() != nodes {
        return Err(format!("{nodes} nodes need {nodes} --peer addresses").into());
    }
    let on_loopback = std::iter::once(format!("{}:0", args.listen_host))
        .chain(args.peers.iter().cloned())
        .all(|addr| is_loopback(&addr));
    if nodes > 1 && !on_loopback && args.certs.is_none() && !args.insecure_plaintext {
        return Err(
            "the cluster port is reachable from other hosts: pass --certs DIR (made with \
             quorumkms cluster certs init / node --id N), or --insecure-plaintext on a closed \
             test network"
                .into(),
        );
    }
    // (threshold, shares) in threshold mode.
    let split = args
        .threshold
        .map(|t| threshold_shares(t, nodes).map(|shares| (t, shares)))
        .transpose()?;
    for i in 1..=nodes {
        if args.dir.join(format!("node-{i}")).exists() {
            return Err(format!("{} already has node-{i}", args.dir.display()).into());
        }
    }
    let key = softsign::SoftSigner::generate();
    let keys = match split {
        Some((threshold, shares)) => NodeKeys::Threshold {
            seed: key.seed(),
            threshold,
            shares,
        },
        None => NodeKeys::Whole(key.seed()),
    };
    let mut chains = vec![args.chain.clone()];
    if !args.canaries.is_empty() {
        if args.canary_chain == args.chain {
            return Err(
                "--canary-chain must differ from --chain: drills never sign a real chain".into(),
            );
        }
        chains.push(args.canary_chain.clone());
    }
    let validators: Vec<(String, String)> = args
        .validators
        .iter()
        .map(|addr| (args.chain.clone(), addr.clone()))
        .chain(
            args.canaries
                .iter()
                .map(|addr| (args.canary_chain.clone(), addr.clone())),
        )
        .collect();
    let mut signers = String::from("# signer node id, name\n");
    for i in 1..=nodes {
        let extra = if nodes > 1 {
            let port = args.peers[i - 1]
                .rsplit_once(':')
                .map(|(_, p)| p)
                .ok_or_else(|| format!("--peer {:?} has no port", args.peers[i - 1]))?;
            let mut section =
                cluster_section_at(i, &format!("{}:{port}", args.listen_host), &args.peers);
            if let Some(certs) = &args.certs {
                section.push_str(&node_tls(certs, &args.dir.join(format!("node-{i}")), i)?);
            } else if args.insecure_plaintext {
                section.push_str("insecure_plaintext = true\n");
            }
            section
        } else {
            String::new()
        };
        let node = write_node_keyed(
            &args.dir,
            i,
            keys,
            &chains,
            &validators,
            args.protocol,
            &extra,
        )?;
        signers.push_str(&format!("{} {}\n", node.node_id, node.name));
        println!("{}: {}", node.name, node.config.display());
    }
    std::fs::write(args.dir.join("signers.txt"), signers)?;
    let public = hex::encode(key.public_key());
    std::fs::write(args.dir.join("consensus.pub"), format!("{public}\n"))?;
    match args.threshold {
        Some(t) => println!(
            "consensus key {public} split {t} of {nodes}: each node holds one share, none the \
             whole key"
        ),
        None => println!("consensus key {public} (soft key, same on every node)"),
    }
    Ok(())
}

/// Copies node `i`'s certificate, its key and the CA from `certs` into
/// `node_dir/tls`, and returns the `tls` line of its `[cluster]` section.
fn node_tls(certs: &Path, node_dir: &Path, i: usize) -> Result<String, Box<dyn std::error::Error>> {
    let tls = node_dir.join("tls");
    std::fs::create_dir_all(&tls)?;
    let read = |name: &str| {
        let path = certs.join(name);
        std::fs::read(&path).map_err(|e| {
            format!(
                "{}: {e} (make it with quorumkms cluster certs node --dir {} --id {i})",
                path.display(),
                certs.display()
            )
        })
    };
    std::fs::write(tls.join("ca.pem"), read("ca.pem")?)?;
    std::fs::write(tls.join("node.pem"), read(&format!("node-{i}.pem"))?)?;
    softsign::write_secret_file(&tls.join("node.key"), &read(&format!("node-{i}.key"))?)?;
    Ok("tls = { ca = \"tls/ca.pem\", cert = \"tls/node.pem\", key = \"tls/node.key\" }\n".into())
}
