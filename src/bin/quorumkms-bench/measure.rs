//! The measurements: sign latency and throughput per configuration,
//! failover after kill -9 of the leader, and the figures of one
//! multi-region topology.

use std::path::Path;
use std::time::{Duration, Instant};

use quorumkms::privval::Version;
use quorumkms::validator::{MockValidator, SignOutcome, consensus};

use crate::cluster::{Bench, Comparison, Layout, Link, public_key, rss_mib};

/// Heights (or, in multi-region mode, requests) each validator signs
/// before the figures start.
const WARMUP: usize = 20;

/// Which signer a loopback row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// tmkms (`--tmkms`).
    Tmkms,
    /// quorumkms in single-node mode.
    Single,
    /// A 3-node quorumkms cluster.
    Cluster,
    /// A 3-node quorumkms cluster in threshold mode: each node holds a
    /// share, each signature takes [`THRESHOLD`] of them.
    Threshold,
}

/// Shares each signature takes in the threshold rows (of 3 nodes).
pub const THRESHOLD: u16 = 2;

/// Which cluster node serves the validators in a loopback row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServedBy {
    /// Whichever node's connection each validator accepts, as CometBFT
    /// does: the leader or a follower, by chance.
    Any,
    /// The leader: a grant is one Raft commit.
    Leader,
    /// A follower: a grant is a forward to the leader and its commit.
    Follower,
}

/// One loopback row: a signer, its chains and the validators' link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Who signs.
    pub signer: Signer,
    /// Chains, each with its validator signing one request at a time.
    pub chains: usize,
    /// How the signer reaches the validators.
    pub link: Link,
    /// Which node serves, in a cluster.
    pub served_by: ServedBy,
}

impl Config {
    /// The row's `--only` name, e.g. `cluster10` or `single1-sc`.
    pub fn key(&self) -> String {
        let signer = match self.signer {
            Signer::Tmkms => "tmkms",
            Signer::Single => "single",
            Signer::Cluster => "cluster",
            Signer::Threshold => "threshold",
        };
        let link = match self.link {
            Link::Unix => "",
            Link::SecretConnection => "-sc",
        };
        format!("{signer}{}{link}", self.chains)
    }

    /// The row's name in the table.
    pub fn name(&self) -> String {
        let signer = match self.signer {
            Signer::Tmkms => "tmkms".to_string(),
            Signer::Single => "single node".to_string(),
            Signer::Cluster => "3-node cluster".to_string(),
            Signer::Threshold => format!("3-node threshold {THRESHOLD}-of-3"),
        };
        let link = match self.link {
            Link::Unix => "unix",
            Link::SecretConnection => "secret conn",
        };
        let via = match self.served_by {
            ServedBy::Any => "",
            ServedBy::Leader => ", via leader",
            ServedBy::Follower => ", via follower",
        };
        format!("{signer}, {} chain(s), {link}{via}", self.chains)
    }
}

/// One loopback configuration's figures.
pub struct Figures {
    /// What was measured.
    pub config: Config,
    /// Sign latency, median.
    pub p50: Duration,
    /// Sign latency, 99th percentile.
    pub p99: Duration,
    /// Signatures per second over every chain.
    pub per_second: f64,
    /// Each node's resident memory at the end.
    pub rss_mib: Vec<f64>,
    /// Each node's mean time per stage of the signing path.
    pub stages: Vec<(String, crate::stages::StageMeans)>,
    /// Signatures verified (none conflicting or invalid, else the bench
    /// fails).
    pub verified: usize,
}

/// One topology's figures in multi-region mode.
pub struct Topology {
    /// Its nodes' sites, comma-separated.
    pub sites: String,
    /// `LAN`, `WAN` or `-` (single node).
    pub timeouts: &'static str,
    /// Node that served, its role, p50 and p99 back to back, and p50 and
    /// p99 with requests spaced apart.
    pub latency: Vec<(String, &'static str, [Duration; 4])>,
    /// (node killed, time to the next signature)
    pub failovers: Vec<(String, Duration)>,
    /// Signatures the checker verified.
    pub signatures: usize,
}

/// The `p` quantile of sorted durations (zero for none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Signs `count` prevotes at consecutive heights from `start`; returns the
/// latency of each.
async fn sign_run(
    mut validator: MockValidator,
    start: i64,
    count: usize,
) -> Result<(MockValidator, Vec<Duration>), String> {
    let address = consensus::address(&public_key());
    let mut latencies = Vec::with_capacity(count);
    for h in 0..count as i64 {
        let height = start + h;
        let vote = consensus::vote(
            Version::V0_38,
            false,
            height,
            0,
            Some(consensus::block_id(height, 0)),
            &address,
            0,
        );
        let t0 = Instant::now();
        match validator.sign_vote(vote).await {
            SignOutcome::Signed { .. } => latencies.push(t0.elapsed()),
            other => return Err(format!("height {height}: {other:?}")),
        }
    }
    Ok((validator, latencies))
}

/// [`sign_run`] with a pause of `spacing` before each request.
async fn sign_spaced(
    mut validator: MockValidator,
    start: i64,
    count: usize,
    spacing: Duration,
) -> Result<(MockValidator, Vec<Duration>), String> {
    let mut latencies = Vec::with_capacity(count);
    for h in 0..count as i64 {
        tokio::time::sleep(spacing).await;
        let (next, latency) = sign_run(validator, start + h, 1).await?;
        validator = next;
        latencies.extend(latency);
    }
    Ok((validator, latencies))
}

/// Signs what a validator asks for at `count` consecutive heights from
/// `start`: a proposal, a prevote and a precommit for the block, one
/// request at a time. Returns the latency of each request.
async fn sign_heights(
    mut validator: MockValidator,
    start: i64,
    count: usize,
) -> Result<(MockValidator, Vec<Duration>), String> {
    let address = consensus::address(&public_key());
    let mut latencies = Vec::with_capacity(count * 3);
    for height in start..start + count as i64 {
        let block = consensus::block_id(height, 0);
        let proposal = consensus::proposal(height, 0, block.clone(), 0);
        let t0 = Instant::now();
        let outcome = validator.sign_proposal(proposal).await;
        latencies.push(t0.elapsed());
        check(height, "proposal", outcome)?;
        for (precommit, offset_ms) in [(false, 10), (true, 20)] {
            let mut vote = consensus::vote(
                Version::V0_38,
                precommit,
                height,
                0,
                Some(block.clone()),
                &address,
                offset_ms,
            );
            // A chain without vote extensions (the validators are set up
            // so): a v0.38 signer still signs the empty extension.
            vote.extension.clear();
            let t0 = Instant::now();
            let outcome = validator.sign_vote(vote).await;
            latencies.push(t0.elapsed());
            check(
                height,
                if precommit { "precommit" } else { "prevote" },
                outcome,
            )?;
        }
    }
    Ok((validator, latencies))
}

fn check(height: i64, step: &str, outcome: SignOutcome) -> Result<(), String> {
    match outcome {
        SignOutcome::Signed { .. } => Ok(()),
        other => Err(format!("height {height} {step}: {other:?}")),
    }
}

/// Warms each validator up (connections, first grants) outside the
/// figures, then has all of them sign `heights` heights at once. Returns
/// every latency, sorted, and the time the measured part took.
async fn run_validators(
    validators: Vec<MockValidator>,
    heights: usize,
) -> Result<(Vec<Duration>, Duration), Box<dyn std::error::Error>> {
    let mut warm = Vec::new();
    for validator in validators {
        warm.push(tokio::spawn(sign_heights(validator, 1, WARMUP)));
    }
    let mut validators = Vec::new();
    for task in warm {
        validators.push(task.await??.0);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for validator in validators {
        tasks.push(tokio::spawn(sign_heights(
            validator,
            WARMUP as i64 + 1,
            heights,
        )));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??.1);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok((latencies, elapsed))
}

/// Latency and throughput of one loopback configuration: each chain's
/// validator signing `heights` heights, all chains at once. Every
/// signature is verified; any conflicting or invalid one fails the bench.
pub async fn throughput(
    exe: &Path,
    tmkms: Option<&Path>,
    config: Config,
    heights: usize,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let (latencies, elapsed, rss_mib, report, stages) = match config.signer {
        Signer::Tmkms => {
            let tmkms = tmkms.ok_or("no --tmkms binary")?;
            let mut comparison = Comparison::start(tmkms, config.chains, config.link).await?;
            let validators = std::mem::take(&mut comparison.validators);
            let run = run_validators(validators, heights).await;
            let rss = vec![rss_mib(&comparison.tmkms.child)];
            let log = comparison.log_tail();
            let report = comparison.checker.report();
            comparison.tmkms.stop().await;
            let (latencies, elapsed) =
                run.map_err(|e| format!("tmkms: {e}; its log ends:\n{log}"))?;
            (latencies, elapsed, rss, report, Vec::new())
        }
        Signer::Single | Signer::Cluster | Signer::Threshold => {
            let (nodes, threshold) = match config.signer {
                Signer::Single => (1, None),
                Signer::Threshold => (3, Some(THRESHOLD)),
                _ => (3, None),
            };
            let chosen = nodes > 1 && config.served_by != ServedBy::Any;
            let mut bench = Bench::start(
                exe,
                nodes,
                threshold,
                config.chains,
                config.link,
                chosen,
                &Layout::Loopback,
            )
            .await?;
            let validators = if chosen {
                let leader = bench.leader().await?;
                let node = match config.served_by {
                    ServedBy::Follower => bench.follower_near_validators(leader),
                    _ => leader,
                };
                // With a validator per (chain, node), listener l is node
                // l % nodes + 1's.
                bench
                    .validators
                    .iter_mut()
                    .enumerate()
                    .filter(|(l, _)| l % nodes == node - 1)
                    .filter_map(|(_, v)| v.take())
                    .collect()
            } else {
                bench.validators.drain(..).flatten().collect()
            };
            let run = run_validators(validators, heights).await;
            let rss = bench.rss_mib();
            let report = bench.checker.report();
            let stages = bench.stages().await;
            bench.stop().await;
            let (latencies, elapsed) = run?;
            (latencies, elapsed, rss, report, stages)
        }
    };
    if report.conflicts > 0 || report.invalid > 0 {
        return Err(format!(
            "{}: conflicting or invalid signatures: {report:?}",
            config.name()
        )
        .into());
    }
    Ok(Figures {
        config,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        rss_mib,
        stages,
        verified: report.released,
    })
}

/// Failover on a 3-node loopback cluster: the time from each of `runs`
/// kills of the leader to the next signature, sorted.
pub async fn loopback_failover(
    exe: &Path,
    runs: usize,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let mut bench = Bench::start(exe, 3, None, 1, Link::Unix, true, &Layout::Loopback).await?;
    let runs = failover(&mut bench, runs, &mut 1).await?;
    bench.stop().await;
    let mut gaps: Vec<Duration> = runs.into_iter().map(|r| r.1).collect();
    gaps.sort();
    Ok(gaps)
}

/// Kills the leader `runs` times (in single-node mode: the node, restarted
/// at once) while a validator keeps signing, served by a follower (in the
/// validators' region when one is), which keeps its connection. Returns the
/// node killed and the time from the kill to the next signature, for each
/// run. Each killed node is restarted and rejoins before the next run.
async fn failover(
    bench: &mut Bench,
    runs: usize,
    height: &mut i64,
) -> Result<Vec<(usize, Duration)>, Box<dyn std::error::Error>> {
    let single = bench.single();
    let mut gaps = Vec::new();
    for _ in 0..runs {
        let (victim, server) = if single {
            (1, 1)
        } else {
            let leader = bench.leader().await?;
            (leader, bench.follower_near_validators(leader))
        };
        let validator = bench.validators[server - 1]
            .take()
            .ok_or("validator in use")?;
        // Sign until warm, then kill while the validator keeps asking.
        let (validator, _) = sign_run(validator, *height, 5).await?;
        *height += 5;
        if !bench.nodes.running().contains(&victim) {
            return Err(format!("node {victim} not running").into());
        }
        let killed_at = Instant::now();
        bench.nodes.kill(victim).await;
        if single {
            bench.nodes.spawn(1)?;
        }
        let (validator, _) = sign_run(validator, *height, 1).await?;
        gaps.push((victim, killed_at.elapsed()));
        *height += 1;
        bench.validators[server - 1] = Some(validator);
        if !single {
            bench.restart(victim).await?;
        }
    }
    Ok(gaps)
}

/// Measures one topology: sign latency through the leader (moved into the
/// validators' region when possible) and through a follower near the
/// validators, then failover.
pub async fn topology(
    exe: &Path,
    layout: &Layout<'_>,
    requests: usize,
    spacing: Duration,
    failovers: usize,
) -> Result<Topology, Box<dyn std::error::Error>> {
    let Layout::Netns { sites, .. } = layout else {
        return Err("topologies run in network namespaces".into());
    };
    if sites.len() == 2 {
        return Err("a topology has 1 node (single-node mode) or 3 or more".into());
    }
    let mut bench = Bench::start(
        exe,
        sites.len(),
        None,
        1,
        Link::SecretConnection,
        true,
        layout,
    )
    .await?;
    let servers = if bench.single() {
        vec![(1, "single node")]
    } else {
        let leader = bench.leader_near_validators().await?;
        vec![
            (leader, "leader"),
            (bench.follower_near_validators(leader), "follower"),
        ]
    };
    let mut height = 1i64;
    let mut latency = Vec::new();
    for (node, role) in servers {
        let validator = bench.validators[node - 1]
            .take()
            .ok_or("validator in use")?;
        let (validator, _) = sign_run(validator, height, WARMUP).await?;
        height += WARMUP as i64;
        let (validator, mut times) = sign_run(validator, height, requests).await?;
        height += requests as i64;
        times.sort();
        let mut spaced = Vec::new();
        let mut validator = validator;
        if !spacing.is_zero() {
            (validator, spaced) = sign_spaced(validator, height, requests, spacing).await?;
            height += requests as i64;
            spaced.sort();
        }
        bench.validators[node - 1] = Some(validator);
        latency.push((
            bench.name(node),
            role,
            [
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                percentile(&spaced, 0.5),
                percentile(&spaced, 0.99),
            ],
        ));
    }
    let gaps = failover(&mut bench, failovers, &mut height).await?;
    let report = bench.checker.report();
    if report.conflicts > 0 || report.invalid > 0 {
        return Err(format!("conflicting or invalid signatures: {report:?}").into());
    }
    let regions: std::collections::BTreeSet<char> = sites.iter().map(|s| s.region).collect();
    let figures = Topology {
        sites: sites
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        timeouts: match (sites.len(), regions.len()) {
            (1, _) => "-",
            (_, 1) => "LAN",
            _ => "WAN",
        },
        latency,
        failovers: gaps.iter().map(|(i, gap)| (bench.name(*i), *gap)).collect(),
        signatures: report.released,
    };
    bench.stop().await;
    Ok(figures)
}
