//! The built-in demo: signer nodes on loopback, each a real `quorumkms
//! start` process with soft keys, and a simulated validator that produces
//! blocks, asks for signatures, tries to double sign now and then, and
//! prints what it gets.
//!
//! The simulated validator ([`validator`]) and the signature checker
//! ([`checker`]) are also what the integration tests use as their mock
//! validator.

pub mod checker;
pub mod consensus;
mod ports;
pub mod validator;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::keys::{ConsensusSigner, identity, softsign};
use crate::privval::Version;
use checker::Checker;
pub use ports::free_ports;
use validator::{Listen, Outcome, Timing, Validator};

/// The demo's chain id.
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
/// `validator_addrs` for the demo chain. `extra` is appended to every
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
    let validators: Vec<(String, String)> = validator_addrs
        .iter()
        .map(|addr| (CHAIN_ID.to_string(), addr.clone()))
        .collect();
    (1..=count)
        .map(|i| {
            write_node(
                root,
                i,
                seed,
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
    let name = format!("node-{i}");
    let dir = root.join(&name);
    std::fs::create_dir_all(dir.join("secrets"))?;
    std::fs::create_dir_all(dir.join("state"))?;
    let id_key = identity::generate(&dir.join("secrets/kms-identity.key"))?;
    softsign::write_secret_file(
        &dir.join("secrets/consensus.key"),
        softsign::encode_seed(&seed).as_bytes(),
    )?;
    let mut config = String::new();
    for chain in chains {
        config.push_str(&format!(
            "[[chain]]\nid = \"{chain}\"\nstate_file = \"state/{chain}.json\"\n\n"
        ));
        crate::watermark::StateFile::new(dir.join(format!("state/{chain}.json")))
            .save(&crate::watermark::SignState::default())?;
    }
    let quoted: Vec<String> = chains.iter().map(|c| format!("\"{c}\"")).collect();
    config.push_str(&format!(
        "[[providers.softsign]]\nchain_ids = [{}]\npath = \"secrets/consensus.key\"\n\n",
        quoted.join(", ")
    ));
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

/// Starts `quorumkms start -c CONFIG` for a node, logging to `DIR/node.log`.
///
/// # Errors
///
/// When the process cannot be spawned.
pub fn spawn_node(exe: &Path, node: &NodeFiles) -> std::io::Result<Child> {
    spawn_node_in(exe, node, None)
}

/// [`spawn_node`], inside network namespace `netns` (through `ip netns
/// exec`, which execs the node: the child is the node itself) when given.
///
/// # Errors
///
/// When the process cannot be spawned.
pub fn spawn_node_in(exe: &Path, node: &NodeFiles, netns: Option<&str>) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.dir.join("node.log"))?;
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns]).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .arg("start")
        .arg("-c")
        .arg(&node.config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
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

/// Bootstraps a loopback cluster through node 1's admin API, retrying
/// while the node starts.
///
/// # Errors
///
/// When node 1 does not answer within `within`.
pub async fn initialize_cluster(ports: &[u16], within: Duration) -> Result<(), String> {
    initialize_cluster_at(&format!("127.0.0.1:{}", ports[0]), within).await
}

/// Bootstraps a cluster through the admin API of the node at `addr`
/// (host:port), retrying while the node starts.
///
/// # Errors
///
/// When the node does not answer within `within`.
pub async fn initialize_cluster_at(addr: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match crate::cluster::admin::initialize(addr, Duration::from_secs(2)).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The leader as the first reachable node reports it.
pub async fn find_leader(ports: &[u16]) -> Option<(u64, u64)> {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    find_leader_at(&addrs).await
}

/// The leader (and term) as the first reachable node at `addrs`
/// (host:port) reports it.
pub async fn find_leader_at(addrs: &[String]) -> Option<(u64, u64)> {
    for addr in addrs {
        if let Ok(status) = crate::cluster::admin::status(addr, Duration::from_millis(500)).await
            && let Some(leader) = status.leader
        {
            return Some((leader, status.term));
        }
    }
    None
}

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

/// Parses `300ms`, `2s`, `1.5s` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(secs) = s.strip_suffix('s') {
        (secs, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?}"))?;
    if !(0.0..=86_400.0).contains(&value) {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
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
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run_async(args))
}

/// Asks for the signatures a validator needs at `height`, round 0: a
/// proposal on odd heights, a prevote and a precommit for the honest block.
/// With `double_sign`, a prevote for another block at the same height,
/// round and step is also requested (the signer must refuse it). Returns
/// each step's name and outcome, in order.
pub async fn produce_height(
    validator: &mut Validator,
    version: Version,
    address: &[u8],
    height: i64,
    double_sign: bool,
) -> Vec<(&'static str, Outcome)> {
    let block = consensus::block_id(height, 0);
    let mut results = Vec::new();
    if height % 2 == 1 {
        let proposal = consensus::proposal(height, 0, block.clone(), 0);
        results.push(("proposal", validator.sign_proposal(proposal).await));
    }
    let prevote = consensus::vote(version, false, height, 0, Some(block.clone()), address, 10);
    results.push(("prevote", validator.sign_vote(prevote).await));
    if double_sign {
        // A faulty validator asks to prevote for another block at the
        // same height, round and step: the signer must refuse.
        let other = Some(consensus::block_id(height, 1));
        let conflicting = consensus::vote(version, false, height, 0, other, address, 10);
        results.push((DOUBLE_SIGN_STEP, validator.sign_vote(conflicting).await));
    }
    let precommit = consensus::vote(version, true, height, 0, Some(block), address, 20);
    results.push(("precommit", validator.sign_vote(precommit).await));
    results
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

/// The step name [`produce_height`] gives a double-sign attempt.
pub const DOUBLE_SIGN_STEP: &str = "double-sign attempt";

/// An outcome in words, and the name of the signer that served it (its
/// entry in `names`, else its node id).
pub fn describe(outcome: &Outcome, names: &BTreeMap<String, String>) -> (String, Option<String>) {
    match outcome {
        Outcome::Signed { via, .. } => (
            "signed".to_string(),
            Some(names.get(via).cloned().unwrap_or_else(|| via.clone())),
        ),
        Outcome::Refused(e) => (format!("REFUSED ({})", e.description), None),
        Outcome::Failed(e) => (format!("FAILED ({e})"), None),
    }
}

async fn run_async(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::Builder::new()
        .prefix("quorumkms-demo-")
        .tempdir()?;
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let key = softsign::SoftSigner::generate();
    let public_key = key.public_key();
    let listen = Listen::tcp("127.0.0.1:0").await?;
    let addr = listen.signer_addr();
    let cluster = args.nodes >= 3;
    let ports = if cluster {
        free_ports(args.nodes)?
    } else {
        Vec::new()
    };
    let extra = |i: usize| {
        if cluster {
            cluster_section(i, &ports)
        } else {
            String::new()
        }
    };
    let nodes = write_nodes(
        &root,
        args.nodes,
        key.seed(),
        std::slice::from_ref(&addr),
        args.protocol,
        &extra,
    )?;
    let names: BTreeMap<String, String> = nodes
        .iter()
        .map(|n| (n.node_id.clone(), n.name.clone()))
        .collect();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for node in &nodes {
        children.push(Some(spawn_node(&exe, node)?));
    }
    println!(
        "quorumkms demo: {} signer node(s){}, chain {CHAIN_ID}, privval {}",
        nodes.len(),
        if cluster {
            " replicating the watermark through Raft"
        } else {
            " (single-node mode)"
        },
        args.protocol
    );
    println!(
        "  consensus key {} (soft key, same on every node)",
        hex::encode(public_key)
    );
    println!("  simulated validator listening at {addr}; every node dials it");
    println!("  node files and logs in {}", root.display());
    if cluster {
        initialize_cluster(&ports, Duration::from_secs(20)).await?;
        println!("  cluster initialized through node-1");
    }

    let checker = Checker::new();
    let timing = Timing {
        accept_timeout: Duration::from_secs(20),
        ..Timing::default()
    };
    let mut validator = Validator::new(
        listen,
        CHAIN_ID,
        args.protocol,
        public_key,
        timing,
        checker.clone(),
    );
    let reported = validator.pub_key().await?;
    println!("  signer reports public key {}", hex::encode(reported));
    let address = consensus::address(&public_key);
    let started = Instant::now();
    let mut killed = args.no_kill;
    let mut refused = 0;
    let mut last_leader = None;
    let mut failed = 0;
    for height in 1..=args.blocks {
        if cluster {
            let leader = find_leader(&ports).await;
            if leader.map(|l| l.0) != last_leader.map(|l: (u64, u64)| l.0) {
                if let Some((id, term)) = leader {
                    println!("-- leader is node-{id} (term {term})");
                }
                last_leader = leader;
            }
        }
        if !killed && started.elapsed() >= args.kill_leader_after {
            killed = true;
            let victim = match last_leader {
                Some((id, _)) if cluster => id as usize,
                _ => 1,
            };
            if let Some(mut child) = children[victim - 1].take() {
                let _ = child.start_kill();
                let _ = child.wait().await;
                println!(
                    "!! killed node-{victim}{} with SIGKILL; the validator keeps asking",
                    if cluster { ", the leader," } else { "" }
                );
                if !cluster {
                    children[0] = Some(spawn_node(&exe, &nodes[0])?);
                    println!("!! restarted node-1 from its state file");
                }
            }
        }
        let t0 = Instant::now();
        let results = produce_height(
            &mut validator,
            args.protocol,
            &address,
            height,
            height % 5 == 0,
        )
        .await;
        let mut line = format!("height {height:>4}");
        let mut via = None;
        for (step, outcome) in &results {
            let (what, by) = describe(outcome, &names);
            match outcome {
                Outcome::Refused(_) if *step == DOUBLE_SIGN_STEP => refused += 1,
                Outcome::Failed(_) => failed += 1,
                _ => {}
            }
            line.push_str(&format!("  {step} {what}"));
            via = via.or(by);
        }
        println!(
            "{line}  via {}  [{:.1} ms]",
            via.unwrap_or_else(|| "-".into()),
            t0.elapsed().as_secs_f64() * 1e3
        );
        validator.keep_alive().await;
        tokio::time::sleep(args.block_time).await;
    }
    let report = checker.report();
    println!(
        "done: {} signatures verified, {} double-sign attempts refused, {} requests failed, \
         {} conflicting signatures, {} invalid",
        report.released, refused, failed, report.conflicts, report.invalid
    );
    for mut child in children.into_iter().flatten() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if report.conflicts > 0 || report.invalid > 0 {
        return Err("conflicting or invalid signatures were released".into());
    }
    Ok(())
}
