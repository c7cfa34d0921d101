//! The built-in demo: signer nodes on loopback, each a real `quorumkms
//! start` process with soft keys, and a mock validator that produces
//! blocks, asks for signatures, tries to double sign now and then, and
//! prints what it gets. `quorumkms demo` (`cli::demo`) runs it.
//!
//! In threshold mode the key is split `t` of the node count, each node
//! holding one share and none the whole key; every signature then takes
//! `t` nodes' shares, and the validator still verifies it under the one
//! key it knows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::keys::{ConsensusSigner, KeyType, softsign};
use crate::privval::Version;
use crate::testnet::{
    CHAIN_ID, NodeKeys, cluster_section, find_leader, free_ports, initialize_cluster, spawn_node,
    threshold_shares, write_nodes_keyed,
};
use crate::validator::{
    Checker, DOUBLE_SIGN_STEP, MockValidator, SignOutcome, SignerListener, ValidatorTiming,
    consensus, produce_height,
};

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Signer nodes: 1 runs single-node mode, 3 or more a Raft cluster.
    pub nodes: usize,
    /// Blocks to produce.
    pub blocks: i64,
    /// Pause between blocks.
    pub block_time: Duration,
    /// Kill -9 the Raft leader (in single-node mode: the node) after this
    /// long; never when `None`.
    pub kill_after: Option<Duration>,
    /// privval protocol version the validator speaks.
    pub protocol: Version,
    /// The consensus key's type.
    pub key_type: KeyType,
    /// Threshold mode: the key (Ed25519) split this many of the nodes,
    /// one share each; `None` gives every node the whole key.
    pub threshold: Option<u16>,
    /// Keep the node directories here instead of a temporary directory.
    pub dir: Option<PathBuf>,
}

/// Runs the demo.
///
/// # Errors
///
/// Set-up failures, or a conflicting or invalid signature (which would be a
/// bug: the demo exits non-zero).
pub async fn run(options: &DemoOptions) -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::Builder::new()
        .prefix("quorumkms-demo-")
        .tempdir()?;
    let root = options
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let key = softsign::SoftSigner::generate_type(options.key_type);
    let public_key = key.public_key();
    let listen = SignerListener::tcp("127.0.0.1:0").await?;
    let addr = listen.signer_addr();
    let cluster = options.nodes >= 3;
    let ports = if cluster {
        free_ports(options.nodes)?
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
    let keys = match options.threshold {
        Some(threshold) => NodeKeys::Threshold {
            seed: key.seed(),
            threshold,
            shares: threshold_shares(threshold, options.nodes)?,
        },
        None => NodeKeys::Whole(key.seed()),
    };
    let nodes = write_nodes_keyed(
        &root,
        options.nodes,
        keys,
        std::slice::from_ref(&addr),
        options.protocol,
        &extra,
    )?;
    if options.key_type != KeyType::Ed25519 {
        // The key file holds the secret alone: the config says its type.
        for node in &nodes {
            let text = std::fs::read_to_string(&node.config)?;
            let path_line = "path = \"secrets/consensus.key\"\n";
            std::fs::write(
                &node.config,
                text.replacen(
                    path_line,
                    &format!("{path_line}key_type = \"{}\"\n", options.key_type),
                    1,
                ),
            )?;
        }
    }
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
        options.protocol
    );
    match options.threshold {
        Some(t) => {
            println!(
                "  {} consensus key {} split {t} of {}: each node holds one share, none the \
                 whole key; every signature takes {t} nodes' shares",
                options.key_type,
                hex::encode(public_key),
                nodes.len()
            );
            if options.kill_after.is_some() && nodes.len() - 1 < usize::from(t) {
                println!(
                    "  after the kill only {} shares are left, fewer than {t}: signing stops \
                     (no node can sign alone)",
                    nodes.len() - 1
                );
            }
        }
        None => println!(
            "  {} consensus key {} (soft key, same on every node)",
            options.key_type,
            hex::encode(public_key)
        ),
    }
    println!("  simulated validator listening at {addr}; every node dials it");
    println!("  node files and logs in {}", root.display());
    if cluster {
        initialize_cluster(&ports, Duration::from_secs(20)).await?;
        println!("  cluster initialized through node-1");
    }

    let checker = Checker::new();
    let timing = ValidatorTiming {
        accept_timeout: Duration::from_secs(20),
        ..ValidatorTiming::default()
    };
    let mut validator = MockValidator::new(
        listen,
        CHAIN_ID,
        options.protocol,
        public_key,
        timing,
        checker.clone(),
    );
    let reported = validator.pub_key().await?;
    println!("  signer reports public key {}", hex::encode(reported));
    let address = consensus::address(&public_key);
    let started = Instant::now();
    let mut killed = options.kill_after.is_none();
    let mut refused = 0;
    let mut last_leader = None;
    let mut failed = 0;
    for height in 1..=options.blocks {
        if cluster {
            let leader = find_leader(&ports).await;
            if leader.map(|l| l.0) != last_leader.map(|l: (u64, u64)| l.0) {
                if let Some((id, term)) = leader {
                    println!("-- leader is node-{id} (term {term})");
                }
                last_leader = leader;
            }
        }
        if !killed
            && options
                .kill_after
                .is_some_and(|after| started.elapsed() >= after)
        {
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
            options.protocol,
            &address,
            height,
            height % 5 == 0,
        )
        .await;
        let mut line = format!("height {height:>4}");
        let mut via = None;
        for (step, outcome) in &results {
            let (what, by) = outcome.describe(&names);
            match outcome {
                SignOutcome::Refused(_) if *step == DOUBLE_SIGN_STEP => refused += 1,
                SignOutcome::Failed(_) => failed += 1,
                _ => {}
            }
            line.push_str(&format!("  {step} {what}"));
            via = via.or(by);
        }
        // A signature that verifies under the group key took t shares.
        let shares = match (options.threshold, &via) {
            (Some(t), Some(_)) => format!(" with {t} shares each"),
            _ => String::new(),
        };
        println!(
            "{line}  via {}{shares}  [{:.1} ms]",
            via.unwrap_or_else(|| "-".into()),
            t0.elapsed().as_secs_f64() * 1e3
        );
        validator.keep_alive().await;
        tokio::time::sleep(options.block_time).await;
    }
    let report = checker.report();
    println!(
        "done: {} signatures verified, {} double-sign attempts refused, {} requests failed, \
         {} conflicting signatures, {} invalid",
        report.released, refused, failed, report.conflicts, report.invalid
    );
    if let Some(t) = options.threshold.filter(|_| report.invalid == 0) {
        println!(
            "threshold mode: each of the {} signatures took {t} of the {} nodes' shares",
            report.released,
            nodes.len()
        );
    }
    for mut child in children.into_iter().flatten() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if report.conflicts > 0 || report.invalid > 0 {
        return Err("conflicting or invalid signatures were released".into());
    }
    Ok(())
}
