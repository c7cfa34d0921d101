//! The node-directory layout of a local test network: what the demo,
//! `testnet-config`, the benchmark and the integration tests write for each
//! signer node (config, identity key, shared soft consensus key, empty
//! state files), and the `signers.txt` list of node ids `testnet-config`
//! writes beside them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::keys::{identity, softsign};
use crate::privval::Version;

/// The chain id of a local test network (the demo's, the tests', and
/// `testnet-config`'s and `validator-sim`'s default).
pub const CHAIN_ID: &str = "demo-1";

/// One signer node's files, as the demo and the tests lay them out.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    /// Node name, e.g. `node-1`.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its SecretConnection node id (hex), as the validator sees it.
    pub node_id: String,
}

/// Writes `count` signer node directories under `root`, all holding the
/// same consensus key (`seed`) and each its own identity key, dialling
/// `validator_addrs` for [`CHAIN_ID`]. `extra` is appended to every
/// config (e.g. a `[cluster]` section, see [`cluster_section`]).
///
/// # Errors
///
/// Any file that cannot be written.
pub fn write_nodes(
    root: &Path,
    count: usize,
    seed: [u8; 32],
    validator_addrs: &[String],
    version: Version,
    extra: &dyn Fn(usize) -> String,
) -> Result<Vec<NodeFiles>, Box<dyn std::error::Error>> {
    write_nodes_keyed(
        root,
        count,
        NodeKeys::Whole(seed),
        validator_addrs,
        version,
        extra,
    )
}

/// As [`write_nodes`], with the key held as `keys` says (see
/// [`write_node_keyed`]).
///
/// # Errors
///
/// Any file that cannot be written, or a bad threshold.
pub fn write_nodes_keyed(
    root: &Path,
    count: usize,
    keys: NodeKeys,
    validator_addrs: &[String],
    version: Version,
    extra: &dyn Fn(usize) -> String,
) -> Result<Vec<NodeFiles>, Box<dyn std::error::Error>> {
    let validators: Vec<(String, String)> = validator_addrs
        .iter()
        .map(|addr| (CHAIN_ID.to_string(), addr.clone()))
        .collect();
    (1..=count)
        .map(|i| {
            write_node_keyed(
                root,
                i,
                keys,
                &[CHAIN_ID.to_string()],
                &validators,
                version,
                &extra(i),
            )
        })
        .collect()
}

/// Writes signer node `i` (named `node-i`) under `root`: one soft key
/// (`seed`) for every chain in `chains`, a fresh identity key, an empty
/// state file per chain, and one `[[validator]]` per (chain, address) in
/// `validators`. `extra` is appended to the config.
///
/// # Errors
///
/// Any file that cannot be written.
pub fn write_node(
    root: &Path,
    i: usize,
    seed: [u8; 32],
    chains: &[String],
    validators: &[(String, String)],
    version: Version,
    extra: &str,
) -> Result<NodeFiles, Box<dyn std::error::Error>> {
    write_node_keyed(
        root,
        i,
        NodeKeys::Whole(seed),
        chains,
        validators,
        version,
        extra,
    )
}

/// How a test network's nodes hold the consensus key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKeys {
    /// Every node holds the whole soft key with this seed.
    Whole([u8; 32]),
    /// Threshold mode: the key with this seed split `threshold` of
    /// `shares`, node `i` holding share `i` (cluster node ids are 1..=n).
    Threshold {
        /// The whole key's seed.
        seed: [u8; 32],
        /// Shares a signature needs.
        threshold: u16,
        /// Shares in all.
        shares: u16,
    },
}

/// The share count of a `--threshold t` split over `nodes` signer nodes,
/// one share each: a cluster of 3 or more, and `t` that fits it.
///
/// # Errors
///
/// Fewer than 3 nodes, more than 255, or a threshold that does not fit.
pub fn threshold_shares(threshold: u16, nodes: usize) -> Result<u16, String> {
    if nodes < 3 {
        return Err(
            "--threshold needs a cluster: --nodes 3 or more, each holding one share".into(),
        );
    }
    let shares =
        u16::try_from(nodes).map_err(|_| format!("--nodes {nodes}: at most 255 hold shares"))?;
    crate::threshold::check_threshold(threshold, shares)
        .map_err(|e| format!("--threshold: {e}"))?;
    Ok(shares)
}

/// As [`write_node`], with the key held as `keys` says. A threshold
/// split is drawn from a generator seeded with the key, so every node's
/// call makes the same split and takes its own share of it (a test key;
/// a real one is split once, offline, by `quorumkms threshold split`).
///
/// # Errors
///
/// Any file that cannot be written, or a bad threshold.
pub fn write_node_keyed(
    root: &Path,
    i: usize,
    keys: NodeKeys,
    chains: &[String],
    validators: &[(String, String)],
    version: Version,
    extra: &str,
) -> Result<NodeFiles, Box<dyn std::error::Error>> {
    let name = format!("node-{i}");
    let dir = root.join(&name);
    std::fs::create_dir_all(dir.join("secrets"))?;
    std::fs::create_dir_all(dir.join("state"))?;
    let id_key = identity::generate(&dir.join("secrets/kms-identity.key"))?;
    let mut config = String::new();
    for chain in chains {
        config.push_str(&format!(
            "[[chain]]\nid = \"{chain}\"\nstate_file = \"state/{chain}.json\"\n\
             # a test network starts at height 1: no earlier signer to guard against\n\
             floor = \"none\"\n"
        ));
        if let NodeKeys::Threshold {
            seed,
            threshold,
            shares,
        } = keys
        {
            let file = format!("secrets/{chain}.share.json");
            test_share(chain, seed, threshold, shares, i)?.write(&dir.join(&file), false)?;
            config.push_str(&format!(
                "mode = \"threshold\"\n[chain.threshold]\nthreshold = {threshold}\n\
                 shares = {shares}\nshare_file = \"{file}\"\n"
            ));
        }
        config.push('\n');
        crate::watermark::StateFile::new(dir.join(format!("state/{chain}.json")))
            .save(&crate::watermark::SignState::default())?;
    }
    if let NodeKeys::Whole(seed) = keys {
        softsign::write_secret_file(
            &dir.join("secrets/consensus.key"),
            softsign::encode_seed(&seed).as_bytes(),
        )?;
        let quoted: Vec<String> = chains.iter().map(|c| format!("\"{c}\"")).collect();
        config.push_str(&format!(
            "[[providers.softsign]]\nchain_ids = [{}]\npath = \"secrets/consensus.key\"\n\n",
            quoted.join(", ")
        ));
    }
    for (chain, addr) in validators {
        config.push_str(&format!(
            "[[validator]]\nchain_id = \"{chain}\"\naddr = \"{addr}\"\n\
             secret_key = \"secrets/kms-identity.key\"\nprotocol_version = \"{version}\"\n\n"
        ));
    }
    config.push_str(extra);
    let config_path = dir.join("quorumkms.toml");
    std::fs::write(&config_path, config)?;
    Ok(NodeFiles {
        name,
        dir,
        config: config_path,
        node_id: hex::encode(identity::node_id(&id_key)),
    })
}

/// Node `i`'s share of a test key split `threshold` of `shares` for
/// `chain`, the same on every call.
fn test_share(
    chain: &str,
    seed: [u8; 32],
    threshold: u16,
    shares: u16,
    i: usize,
) -> Result<crate::threshold::KeyShare, String> {
    use rand::SeedableRng as _;
    let mut rng = rand::rngs::StdRng::from_seed(seed);
    let nodes: Vec<u64> = (1..=u64::from(shares)).collect();
    crate::threshold::dealer::split(chain, &seed, threshold, &nodes, &mut rng)?
        .into_iter()
        .find(|share| share.node() == i as u64)
        .ok_or_else(|| format!("node {i} has no share of a {threshold}-of-{shares} key"))
}

/// A `[cluster]` section for node `i` (1-based) of a loopback cluster whose
/// nodes listen on `ports`, with LAN timeouts.
pub fn cluster_section(i: usize, ports: &[u16]) -> String {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    cluster_section_at(i, &addrs[i - 1], &addrs)
}

/// A `[cluster]` section for node `i` (1-based) listening on `listen`, of a
/// cluster whose nodes are reached at `peers` (host:port, node `j` at index
/// `j - 1`), with LAN timeouts.
pub fn cluster_section_at(i: usize, listen: &str, peers: &[String]) -> String {
    let peers: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(j, addr)| format!("{{ id = {}, addr = \"{addr}\" }}", j + 1))
        .collect();
    format!(
        "[cluster]\nnode_id = {i}\nlisten = \"{listen}\"\ndata_dir = \"raft\"\npeers = [{}]\n",
        peers.join(", ")
    )
}

/// Reads `NODE_ID NAME` lines (as `testnet-config` writes them to
/// `signers.txt`) into a map from lower-case SecretConnection node id to
/// name; blank lines and `#` comments are skipped.
pub fn read_signer_names(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (id, name) = l.split_once(char::is_whitespace)?;
            Some((id.to_lowercase(), name.trim().to_string()))
        })
        .collect()
}
