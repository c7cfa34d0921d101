//! Benchmarks real signer processes over loopback, as a validator sees
//! them: request written → signed reply read and verified. Every state
//! change is fsync'd as in production (state files in single-node mode,
//! redb commits in the cluster).
//!
//! Figures: sign latency p50/p99, throughput and resident memory for 1 and
//! 10 chains, in single-node mode, on a 3-node cluster and on a 3-node
//! cluster in threshold mode (2 of 3 shares per signature), and with
//! `--tmkms PATH` the same for tmkms; each figure with its ratio to
//! single-node mode's (and the plain cluster's, and tmkms's); then
//! failover time after kill -9 of the leader. Each chain's validator signs a proposal, a prevote and a
//! precommit per height, one request at a time (as if it proposed every
//! block: the most a validator asks for per height).
//!
//! Run: `scripts/bench` (release build), or
//! `cargo run --release --bin quorumkms-bench -- --heights 500
//! [--tmkms PATH] [--only single,cluster1,tmkms] [--served-by leader,follower]`.
//! `--state-write N` times single-node state writes per write scheme
//! instead.
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
//! Modules: [`args`] (command line), [`cluster`] (starting the nodes, or
//! tmkms, and their validators), [`tmkms`] (tmkms's config and process),
//! [`measure`] (the measurements), [`report`] (the tables), [`stages`]
//! (each node's time per stage), [`writes`] (the state-write
//! microbenchmark), [`keys`] (the key backends).

mod args;
mod cluster;
mod keys;
mod measure;
mod report;
mod stages;
mod tmkms;
mod writes;

use std::path::Path;
use std::time::Duration;

use clap::Parser;

use args::{Args, Site, selected};
use cluster::{Layout, Link};
use measure::{Config, ServedBy, Signer};

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
    if let Some(writes) = args.state_write {
        return writes::run(args.tmp.as_deref(), writes);
    }
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

/// Loopback mode: latency and throughput of each configuration (tmkms
/// when given, single node, 3-node cluster, 3-node cluster in threshold
/// mode; 1 chain, then 10, then 1 over SecretConnection), then failover.
async fn loopback(exe: &Path, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let signers: &[Signer] = if args.tmkms.is_some() {
        &[
            Signer::Tmkms,
            Signer::Single,
            Signer::Cluster,
            Signer::Threshold,
        ]
    } else {
        &[Signer::Single, Signer::Cluster, Signer::Threshold]
    };
    let mut figures = Vec::new();
    for (chains, link) in [
        (1, Link::Unix),
        (10, Link::Unix),
        (1, Link::SecretConnection),
    ] {
        for &signer in signers {
            let served: &[ServedBy] = match signer {
                Signer::Cluster | Signer::Threshold => &args.served_by,
                Signer::Single | Signer::Tmkms => &[ServedBy::Any],
            };
            for &served_by in served {
                let config = Config {
                    signer,
                    chains,
                    link,
                    served_by,
                };
                if selected(&args.only, &config.key()) {
                    let measured =
                        measure::throughput(exe, args.tmkms.as_deref(), config, args.heights)
                            .await?;
                    figures.push(measured);
                }
            }
        }
    }
    if !figures.is_empty() {
        report::print_figures(&figures);
    }
    if args.failovers > 0 && selected(&args.only, "failover") {
        let gaps = measure::loopback_failover(exe, args.failovers).await?;
        report::print_failover(&gaps);
    }
    Ok(())
}
