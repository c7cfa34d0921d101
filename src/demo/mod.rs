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
/// `validator_addrs`. `extra` is appended to every config (e.g. a
/// `[cluster]` section, see [`cluster_section`]).
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
    let mut nodes = Vec::new();
    for i in 1..=count {
        let name = format!("node-{i}");
        let dir = root.join(&name);
        std::fs::create_dir_all(dir.join("secrets"))?;
        std::fs::create_dir_all(dir.join("state"))?;
        let id_key = identity::generate(&dir.join("secrets/kms-identity.key"))?;
        softsign::write_secret_file(
            &dir.join("secrets/consensus.key"),
            softsign::encode_seed(&seed).as_bytes(),
        )?;
        let mut config = format!(
            "[[chain]]\nid = \"{CHAIN_ID}\"\nstate_file = \"state/{CHAIN_ID}.json\"\n\n\
             [[providers.softsign]]\nchain_ids = [\"{CHAIN_ID}\"]\npath = \"secrets/consensus.key\"\n\n"
        );
        for addr in validator_addrs {
            config.push_str(&format!(
                "[[validator]]\nchain_id = \"{CHAIN_ID}\"\naddr = \"{addr}\"\n\
                 secret_key = \"secrets/kms-identity.key\"\nprotocol_version = \"{version}\"\n\n"
            ));
        }
        config.push_str(&extra(i));
        let config_path = dir.join("quorumkms.toml");
        std::fs::write(&config_path, config)?;
        crate::watermark::StateFile::new(dir.join(format!("state/{CHAIN_ID}.json")))
            .save(&crate::watermark::SignState::default())?;
        nodes.push(NodeFiles {
            name,
            dir,
            config: config_path,
            node_id: hex::encode(identity::node_id(&id_key)),
        });
    }
    Ok(nodes)
}

/// Starts `quorumkms start -c CONFIG` for a node, logging to `DIR/node.log`.
///
/// # Errors
///
/// When the process cannot be spawned.
pub fn spawn_node(exe: &Path, node: &NodeFiles) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.dir.join("node.log"))?;
    Command::new(exe)
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

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Blocks to produce.
    #[arg(long, default_value_t = 20)]
    pub blocks: i64,
    /// Pause between blocks.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Kill -9 the signer node serving the validator after this long.
    #[arg(long, value_parser = parse_duration)]
    pub kill_leader_after: Option<Duration>,
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
pub fn run(args: &crate::demo::Args) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run_async(args))
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
    let nodes = write_nodes(
        &root,
        1,
        key.seed(),
        std::slice::from_ref(&addr),
        args.protocol,
        &|_| String::new(),
    )?;
    let names: BTreeMap<String, String> = nodes
        .iter()
        .map(|n| (n.node_id.clone(), n.name.clone()))
        .collect();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for node in &nodes {
        children.push(spawn_node(&exe, node)?);
    }
    println!(
        "quorumkms demo: {} signer node(s), chain {CHAIN_ID}, privval {}",
        nodes.len(),
        args.protocol
    );
    println!("  consensus key {}", hex::encode(public_key));
    println!("  validator listening at {addr}");
    println!("  node files and logs in {}", root.display());

    let checker = Checker::new();
    let timing = Timing {
        accept_timeout: Duration::from_secs(10),
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
    let mut killed = false;
    let mut refused = 0;
    for height in 1..=args.blocks {
        if let Some(after) = args.kill_leader_after
            && !killed
            && started.elapsed() >= after
        {
            killed = true;
            if let Some(child) = children.first_mut() {
                let _ = child.start_kill();
                println!("  !! killed the serving signer node (kill -9)");
            }
        }
        let t0 = Instant::now();
        let block = consensus::block_id(height, 0);
        let mut line = format!("height {height:>4}");
        let mut steps = Vec::new();
        if height % 2 == 1 {
            steps.push((
                "proposal",
                validator
                    .sign_proposal(consensus::proposal(height, 0, block.clone(), 0))
                    .await,
            ));
        }
        let prevote = consensus::vote(
            args.protocol,
            false,
            height,
            0,
            Some(block.clone()),
            &address,
            10,
        );
        steps.push(("prevote", validator.sign_vote(prevote).await));
        let precommit = consensus::vote(
            args.protocol,
            true,
            height,
            0,
            Some(block.clone()),
            &address,
            20,
        );
        steps.push(("precommit", validator.sign_vote(precommit).await));
        let mut via = String::new();
        for (step, outcome) in &steps {
            match outcome {
                Outcome::Signed { via: v, .. } => {
                    line.push_str(&format!("  {step} signed"));
                    via = names.get(v).cloned().unwrap_or_else(|| v.clone());
                }
                Outcome::Refused(e) => {
                    line.push_str(&format!("  {step} REFUSED ({})", e.description))
                }
                Outcome::Failed(e) => line.push_str(&format!("  {step} FAILED ({e})")),
            }
        }
        println!(
            "{line}  via {via}  [{:.1} ms]",
            t0.elapsed().as_secs_f64() * 1e3
        );
        if height % 5 == 0 {
            // A faulty validator asks to prevote for another block at the
            // same height, round and step: the signer must refuse.
            let conflicting = consensus::vote(
                args.protocol,
                false,
                height,
                0,
                Some(consensus::block_id(height, 1)),
                &address,
                10,
            );
            match validator.sign_vote(conflicting).await {
                Outcome::Refused(e) => {
                    refused += 1;
                    println!(
                        "height {height:>4}  double-sign attempt (prevote for another block) refused: {}",
                        e.description
                    );
                }
                other => println!("height {height:>4}  double-sign attempt NOT refused: {other:?}"),
            }
        }
        validator.keep_alive().await;
        tokio::time::sleep(args.block_time).await;
    }
    let report = checker.report();
    println!(
        "done: {} signatures verified, {} double-sign attempts refused, {} conflicting, {} invalid",
        report.released, refused, report.conflicts, report.invalid
    );
    for mut child in children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if report.conflicts > 0 || report.invalid > 0 {
        return Err("conflicting or invalid signatures were released".into());
    }
    Ok(())
}
