//! Benchmarks real signer processes over loopback, as a validator sees
//! them: request written → signed reply read and verified. Every state
//! change is fsync'd as in production (state files in single-node mode,
//! redb commits in the cluster).
//!
//! Figures: sign latency p50/p99 and throughput for 1 and 10 chains, in
//! single-node mode and on a 3-node cluster (with the ratio between them),
//! failover time after kill -9 of the leader, and resident memory per node.
//!
//! Run: `scripts/bench` (release build), or
//! `cargo run --release --bin quorumkms-bench -- --requests 1000`.
//!
//! With `--netns`, it measures topologies instead: each node in a network
//! namespace of its own, in simulated regions with delays between them
//! (set up by `scripts/regions`, which runs the bench in the validators'
//! namespace): sign latency through the leader and through a follower near
//! the validators, and failover after kill -9 of the leader.
//!
//! With `--keys`, it measures the key backends instead: the latency of one
//! signature with a soft Ed25519 and secp256k1 key, the YubiHSM mock
//! (debug builds with `--features mockhsm`) and SoftHSM2 over PKCS#11.
//!
//! Modules: [`args`] (command line), [`cluster`] (starting the nodes and
//! their validators), [`measure`] (the measurements), [`keys`] (the key
//! backends), [`report`] (the tables).

mod args;
mod cluster;
mod keys;
mod measure;
mod report;
mod stages;

use std::path::Path;
use std::time::Duration;

use clap::Parser;

use args::{Args, Site};
use cluster::{Layout, Link};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.keys {
        // Before any thread: the SoftHSM2 token goes into the environment.
        let softhsm = keys::prepare_softhsm();
        let rows = keys::measure(
            args.requests,
            softhsm.as_ref().map(|(_, hsm)| hsm).map_err(String::as_str),
        );
        keys::print(&rows, args.requests);
        return Ok(());
    }
    cluster::set_tmp_root(args.tmp.clone());
    let exe = match &args.exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe()?.with_file_name("quorumkms"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match &args.netns {
            Some(prefix) => topologies(&exe, &args, prefix).await,
            None => loopback(&exe, &args).await,
        }
    })
}

/// Multi-region mode: each `--topology` in network namespaces.
async fn topologies(
    exe: &Path,
    args: &Args,
    prefix: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let spacing = Duration::from_millis(args.spacing_ms);
    let mut figures = Vec::new();
    for topology_arg in &args.topology {
        let sites = topology_arg
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<Site>, String>>()?;
        let layout = Layout::Netns {
            prefix,
            sites: &sites,
            validator_ip: &args.validator_ip,
        };
        figures
            .push(measure::topology(exe, &layout, args.requests, spacing, args.failovers).await?);
    }
    report::print_topologies(&figures, spacing);
    Ok(())
}

/// Loopback mode: latency and throughput of each configuration, then
/// failover.
async fn loopback(exe: &Path, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut figures = Vec::new();
    for (nodes, chains, link) in [
        (1, 1, Link::Unix),
        (1, 1, Link::SecretConnection),
        (1, 10, Link::Unix),
        (3, 1, Link::Unix),
        (3, 1, Link::SecretConnection),
        (3, 10, Link::Unix),
    ] {
        figures.push(measure::throughput(exe, nodes, chains, link, args.requests).await?);
    }
    report::print_figures(&figures);
    if args.failovers > 0 {
        let gaps = measure::loopback_failover(exe, args.failovers).await?;
        report::print_failover(&gaps);
    }
    Ok(())
}
