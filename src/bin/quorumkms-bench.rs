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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use quorumkms::privval::Version;
use quorumkms::testnet::{self as demo, NodeFiles};
use quorumkms::validator::{
    Checker, MockValidator as Validator, SignOutcome as Outcome, SignerListener as Listen,
    ValidatorTiming as Timing, consensus,
};
use tokio::process::Child;

#[derive(Parser, Debug)]
#[command(about = "Benchmark quorumkms sign latency, throughput, failover and memory")]
struct Args {
    /// Sign requests per chain in each configuration.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Leader kills for the failover figure (median reported).
    #[arg(long, default_value_t = 10)]
    failovers: usize,
    /// Where node directories go (e.g. /dev/shm to take the disk's fsync
    /// out of the figures). Default: the system temporary directory.
    #[arg(long)]
    tmp: Option<PathBuf>,
    /// The quorumkms binary to run (default: next to this one).
    #[arg(long)]
    exe: Option<PathBuf>,
    /// Measure `--topology`s instead, each node in network namespace
    /// PREFIX-SITE as scripts/regions sets them up (run the bench in the
    /// validators' namespace).
    #[arg(long, value_name = "PREFIX", requires = "topology")]
    netns: Option<String>,
    /// With --netns: a topology as its nodes' sites, e.g. `a1,a2,b1,b2,c1`
    /// (region letter and index; the node's address is 10.98.R.K, R = 1
    /// for region a). Repeat for several. Topologies spanning regions use
    /// the WAN timeouts of cluster/examples/regions-5.
    #[arg(long, requires = "netns")]
    topology: Vec<String>,
    /// With --netns: the address the validators listen on (10.98.R.x puts
    /// them in region R).
    #[arg(long, default_value = "10.98.1.100")]
    validator_ip: String,
    /// With --netns: also measure latency with requests this many
    /// milliseconds apart, as a validator's are (0: back to back only).
    #[arg(long, default_value_t = 100)]
    spacing_ms: u64,
}

/// Where a node runs in multi-region mode: namespace `PREFIX-NAME`,
/// address 10.98.R.K, as scripts/regions lays them out.
#[derive(Clone, Debug)]
struct Site {
    name: String,
    region: char,
    ip: String,
}

impl std::str::FromStr for Site {
    type Err = String;

    fn from_str(name: &str) -> Result<Site, String> {
        let region = name.chars().next().filter(char::is_ascii_lowercase);
        let index = name.get(1..).and_then(|k| k.parse::<u8>().ok());
        match (region, index) {
            (Some(region), Some(k @ 1..=99)) => Ok(Site {
                name: name.to_string(),
                region,
                ip: format!("10.98.{}.{k}", region as u8 - b'a' + 1),
            }),
            _ => Err(format!(
                "site {name:?}: expected a region letter and an index, e.g. b2"
            )),
        }
    }
}

/// The region of an address 10.98.R.x.
fn region_of(ip: &str) -> Option<char> {
    let octet: u8 = ip.strip_prefix("10.98.")?.split('.').next()?.parse().ok()?;
    (1..=26)
        .contains(&octet)
        .then(|| (b'a' + octet - 1) as char)
}

/// Where the nodes and the validators run.
enum Layout<'a> {
    /// Everything on loopback.
    Loopback,
    /// Each node in its own network namespace (see [`Site`]).
    Netns {
        prefix: &'a str,
        sites: &'a [Site],
        validator_ip: &'a str,
    },
}

/// The WAN timeouts of cluster/examples/regions-5.
const WAN_TIMEOUTS: &str = "election_timeout_min_ms = 1000\nelection_timeout_max_ms = 2000\n\
                            heartbeat_interval_ms = 250\ngrant_timeout_ms = 3000\n";

const SEED: [u8; 32] = [9u8; 32];

static TMP_ROOT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

fn tmp_root() -> Option<&'static PathBuf> {
    TMP_ROOT.get().and_then(Option::as_ref)
}
const WARMUP: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Unix,
    SecretConnection,
}

struct Figures {
    name: String,
    p50: Duration,
    p99: Duration,
    per_second: f64,
    rss_mib: Vec<f64>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn public_key() -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .verifying_key()
        .to_bytes()
}

fn rss_mib(child: &Child) -> f64 {
    let Some(pid) = child.id() else { return 0.0 };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Signer nodes (1 = single-node mode) serving `chains`, each chain with
/// one validator that every node dials, or one per node.
struct Bench {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    nodes: Vec<NodeFiles>,
    children: Vec<Option<Child>>,
    validators: Vec<Option<Validator>>,
    checker: Checker,
    /// Each node's cluster (and admin) address; empty in single-node mode.
    admin: Vec<String>,
    /// Each node's site and namespace, in multi-region mode.
    sites: Vec<(Site, String)>,
    /// The validators' region, in multi-region mode.
    validator_region: Option<char>,
}

impl Bench {
    async fn start(
        exe: &Path,
        nodes: usize,
        chains: usize,
        link: Link,
        per_node_validators: bool,
        layout: &Layout<'_>,
    ) -> Result<Bench, Box<dyn std::error::Error>> {
        let dir = match tmp_root() {
            Some(root) => tempfile::tempdir_in(root)?,
            None => tempfile::tempdir()?,
        };
        let chain_ids: Vec<String> = (0..chains).map(|c| format!("bench-{c}")).collect();
        // One listener per chain, or per (chain, node) when each node must
        // serve its own validator (to pick which node serves).
        let listeners = if per_node_validators {
            chains * nodes
        } else {
            chains
        };
        let (validator_ip, sites) = match layout {
            Layout::Loopback => ("127.0.0.1", Vec::new()),
            Layout::Netns {
                prefix,
                sites,
                validator_ip,
            } => {
                let named = sites
                    .iter()
                    .map(|s| (s.clone(), format!("{prefix}-{}", s.name)));
                (*validator_ip, named.collect())
            }
        };
        let mut listens = Vec::new();
        for l in 0..listeners {
            listens.push(match link {
                Link::Unix => Listen::unix(dir.path().join(format!("v{l}.sock")))?,
                Link::SecretConnection => Listen::tcp(&format!("{validator_ip}:0")).await?,
            });
        }
        let cluster = nodes >= 3;
        let admin: Vec<String> = match layout {
            _ if !cluster => Vec::new(),
            Layout::Loopback => demo::free_ports(nodes)?
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect(),
            Layout::Netns { sites, .. } => sites.iter().map(|s| format!("{}:7100", s.ip)).collect(),
        };
        let regions: std::collections::BTreeSet<char> = sites.iter().map(|s| s.0.region).collect();
        let mut files = Vec::new();
        for i in 1..=nodes {
            let validators: Vec<(String, String)> = (0..listeners)
                .filter(|l| !per_node_validators || l % nodes == i - 1)
                .map(|l| {
                    (
                        chain_ids[l / if per_node_validators { nodes } else { 1 }].clone(),
                        listens[l].signer_addr(),
                    )
                })
                .collect();
            let mut extra = String::new();
            if cluster {
                extra = demo::cluster_section_at(i, &admin[i - 1], &admin);
            }
            if regions.len() > 1 {
                extra.push_str(WAN_TIMEOUTS);
            }
            files.push(demo::write_node(
                dir.path(),
                i,
                SEED,
                &chain_ids,
                &validators,
                Version::V0_38,
                &extra,
            )?);
        }
        let mut bench = Bench {
            _dir: dir,
            exe: exe.to_path_buf(),
            nodes: files,
            children: Vec::new(),
            validators: Vec::new(),
            checker: Checker::new(),
            admin,
            sites,
            validator_region: region_of(validator_ip),
        };
        for i in 1..=nodes {
            let child = bench.spawn(i)?;
            bench.children.push(Some(child));
        }
        if cluster {
            demo::initialize_cluster_at(&bench.admin[0], Duration::from_secs(30)).await?;
        }
        let timing = Timing {
            accept_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_millis(500),
            ..Timing::default()
        };
        bench.validators = listens
            .into_iter()
            .enumerate()
            .map(|(l, listen)| {
                let chain = &chain_ids[l / if per_node_validators { nodes } else { 1 }];
                Some(Validator::new(
                    listen,
                    chain,
                    Version::V0_38,
                    public_key(),
                    timing.clone(),
                    bench.checker.clone(),
                ))
            })
            .collect();
        Ok(bench)
    }

    /// Starts node `i` (1-based), in its namespace in multi-region mode.
    fn spawn(&self, i: usize) -> std::io::Result<Child> {
        let netns = self.sites.get(i - 1).map(|s| s.1.as_str());
        demo::spawn_node_in(&self.exe, &self.nodes[i - 1], netns)
    }

    /// Node `i`'s name: its site in multi-region mode.
    fn name(&self, i: usize) -> String {
        self.sites
            .get(i - 1)
            .map_or_else(|| format!("node-{i}"), |s| s.0.name.clone())
    }

    fn region(&self, i: usize) -> Option<char> {
        self.sites.get(i - 1).map(|s| s.0.region)
    }

    /// A follower, in the validators' region when one is.
    fn follower_near_validators(&self, leader: usize) -> usize {
        (1..=self.nodes.len())
            .filter(|&i| i != leader)
            .min_by_key(|&i| self.region(i) != self.validator_region)
            .unwrap_or(1)
    }

    /// The leader, moved into the validators' region when it is elsewhere
    /// and a node there can take over (best effort).
    async fn leader_near_validators(&self) -> Result<usize, String> {
        let leader = wait_for_leader(&self.admin)
            .await
            .ok_or("no leader within 20 s")? as usize;
        let near = (1..=self.nodes.len()).find(|&i| self.region(i) == self.validator_region);
        match near {
            Some(target) if self.region(leader) != self.validator_region => {
                let client = quorumkms::cluster::admin::Client::new(
                    self.admin[leader - 1].clone(),
                    Duration::from_secs(10),
                );
                let _ = client.transfer_leader(target as u64).await;
                Ok(wait_for_leader(&self.admin)
                    .await
                    .ok_or("no leader within 20 s")? as usize)
            }
            _ => Ok(leader),
        }
    }

    async fn stop(mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// Signs `count` prevotes at consecutive heights from `start`; returns the
/// latency of each.
async fn sign_run(
    mut validator: Validator,
    start: i64,
    count: usize,
) -> Result<(Validator, Vec<Duration>), String> {
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
            Outcome::Signed { .. } => latencies.push(t0.elapsed()),
            other => return Err(format!("height {height}: {other:?}")),
        }
    }
    Ok((validator, latencies))
}

/// [`sign_run`] with a pause of `spacing` before each request.
async fn sign_spaced(
    mut validator: Validator,
    start: i64,
    count: usize,
    spacing: Duration,
) -> Result<(Validator, Vec<Duration>), String> {
    let mut latencies = Vec::with_capacity(count);
    for h in 0..count as i64 {
        tokio::time::sleep(spacing).await;
        let (next, latency) = sign_run(validator, start + h, 1).await?;
        validator = next;
        latencies.extend(latency);
    }
    Ok((validator, latencies))
}

async fn throughput(
    exe: &Path,
    nodes: usize,
    chains: usize,
    link: Link,
    requests: usize,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let mut bench = Bench::start(exe, nodes, chains, link, false, &Layout::Loopback).await?;
    // Warm up each chain (connections, first grants) outside the figures.
    let mut warm = Vec::new();
    for validator in bench.validators.drain(..).flatten() {
        warm.push(tokio::spawn(sign_run(validator, 1, WARMUP)));
    }
    let mut validators = Vec::new();
    for task in warm {
        validators.push(task.await??.0);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for validator in validators {
        tasks.push(tokio::spawn(sign_run(
            validator,
            WARMUP as i64 + 1,
            requests,
        )));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??.1);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let rss_mib = bench.children.iter().flatten().map(rss_mib).collect();
    bench.stop().await;
    let mode = if nodes == 1 {
        "single node".to_string()
    } else {
        format!("{nodes}-node cluster")
    };
    let link = match link {
        Link::Unix => "unix",
        Link::SecretConnection => "secret conn",
    };
    Ok(Figures {
        name: format!("{mode}, {chains} chain(s), {link}"),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        rss_mib,
    })
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
    let single = bench.admin.is_empty();
    let mut gaps = Vec::new();
    for _ in 0..runs {
        let (victim, server) = if single {
            (1, 1)
        } else {
            let leader = wait_for_leader(&bench.admin)
                .await
                .ok_or("no leader within 20 s")? as usize;
            (leader, bench.follower_near_validators(leader))
        };
        let validator = bench.validators[server - 1]
            .take()
            .ok_or("validator in use")?;
        // Sign until warm, then kill while the validator keeps asking.
        let (validator, _) = sign_run(validator, *height, 5).await?;
        *height += 5;
        let mut child = bench.children[victim - 1]
            .take()
            .ok_or("node not running")?;
        let killed_at = Instant::now();
        let _ = child.start_kill();
        let _ = child.wait().await;
        if single {
            bench.children[0] = Some(bench.spawn(1)?);
        }
        let (validator, _) = sign_run(validator, *height, 1).await?;
        gaps.push((victim, killed_at.elapsed()));
        *height += 1;
        bench.validators[server - 1] = Some(validator);
        if !single {
            bench.children[victim - 1] = Some(bench.spawn(victim)?);
            wait_rejoined(&bench.admin[victim - 1]).await?;
        }
    }
    Ok(gaps)
}

/// Waits until the node at `addr` follows a leader that has a quorum.
async fn wait_rejoined(addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = quorumkms::cluster::admin::status(addr, Duration::from_millis(500)).await;
        if status.is_ok_and(|s| s.has_quorum_leader && s.leader.is_some()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("restarted node {addr} did not rejoin"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_leader(admin: &[String]) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some((leader, _)) = demo::find_leader_at(admin).await {
            return Some(leader);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// One topology's figures in multi-region mode.
struct Topology {
    sites: String,
    timeouts: &'static str,
    /// Node that served, its role, p50 and p99 back to back, and p50 and
    /// p99 with requests spaced apart.
    latency: Vec<(String, &'static str, [Duration; 4])>,
    /// (node killed, time to the next signature)
    failovers: Vec<(String, Duration)>,
    signatures: usize,
}

/// Measures one topology: sign latency through the leader (moved into the
/// validators' region when possible) and through a follower near the
/// validators, then failover.
async fn topology(
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
    let mut bench = Bench::start(exe, sites.len(), 1, Link::SecretConnection, true, layout).await?;
    let servers = if bench.admin.is_empty() {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Milliseconds with `decimals`, or "-" for a figure not measured (zero).
fn ms_or_dash(d: Duration, decimals: usize) -> String {
    if d.is_zero() {
        "-".to_string()
    } else {
        format!("{:.decimals$}", ms(d))
    }
}

fn print_topologies(topologies: &[Topology], spacing: Duration) {
    println!(
        "{:<18} {:<8} {:<18} {:>17} {:>17}",
        "",
        "",
        "",
        "back to back",
        format!("{} ms apart", spacing.as_millis())
    );
    println!(
        "{:<18} {:<8} {:<18} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9}",
        "topology",
        "timeouts",
        "signed via",
        "p50 ms",
        "p99 ms",
        "p50 ms",
        "p99 ms",
        "failover ms",
        "verified"
    );
    for t in topologies {
        let mut gaps: Vec<Duration> = t.failovers.iter().map(|f| f.1).collect();
        gaps.sort();
        for (i, (node, role, [p50, p99, spaced50, spaced99])) in t.latency.iter().enumerate() {
            let (failover, verified) = if i == 0 {
                (
                    ms_or_dash(percentile(&gaps, 0.5), 0),
                    t.signatures.to_string(),
                )
            } else {
                (String::new(), String::new())
            };
            let row = format!(
                "{:<18} {:<8} {:<18} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9}",
                t.sites,
                t.timeouts,
                format!("{node} ({role})"),
                ms_or_dash(*p50, 1),
                ms_or_dash(*p99, 1),
                ms_or_dash(*spaced50, 1),
                ms_or_dash(*spaced99, 1),
                failover,
                verified
            );
            println!("{}", row.trim_end());
        }
    }
    println!(
        "failover: median over the runs; each run (node killed: ms from kill -9 to the next signature):"
    );
    for t in topologies {
        let runs: Vec<String> = t
            .failovers
            .iter()
            .map(|(node, gap)| format!("{node}:{:.0}", ms(*gap)))
            .collect();
        println!("  {:<18} {}", t.sites, runs.join(" "));
    }
    println!(
        "0 conflicting and 0 invalid signatures in every topology (the bench fails otherwise)"
    );
}

fn print(figures: &[Figures]) {
    println!(
        "{:<40} {:>9} {:>9} {:>10} {:>12} {:>16}",
        "configuration", "p50 ms", "p99 ms", "signs/s", "vs single", "RSS MiB/node"
    );
    for f in figures {
        let single = figures.iter().find(|s| {
            s.name.starts_with("single node")
                && s.name.split_once(',').map(|x| x.1) == f.name.split_once(',').map(|x| x.1)
        });
        let ratio = single.map_or("-".to_string(), |s| {
            format!(
                "p99 x{:.1}",
                f.p99.as_secs_f64() / s.p99.as_secs_f64().max(1e-9)
            )
        });
        let rss: Vec<String> = f.rss_mib.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<40} {:>9.3} {:>9.3} {:>10.0} {:>12} {:>16}",
            f.name,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.per_second,
            ratio,
            rss.join("/")
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let _ = TMP_ROOT.set(args.tmp.clone());
    let exe = match args.exe {
        Some(exe) => exe,
        None => std::env::current_exe()?.with_file_name("quorumkms"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(prefix) = &args.netns {
        return runtime.block_on(async {
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
                let spacing = Duration::from_millis(args.spacing_ms);
                figures
                    .push(topology(&exe, &layout, args.requests, spacing, args.failovers).await?);
            }
            print_topologies(&figures, Duration::from_millis(args.spacing_ms));
            Ok(())
        });
    }
    runtime.block_on(async {
        let mut figures = Vec::new();
        for (nodes, chains, link) in [
            (1, 1, Link::Unix),
            (1, 1, Link::SecretConnection),
            (1, 10, Link::Unix),
            (3, 1, Link::Unix),
            (3, 1, Link::SecretConnection),
            (3, 10, Link::Unix),
        ] {
            figures.push(throughput(&exe, nodes, chains, link, args.requests).await?);
        }
        print(&figures);
        if args.failovers > 0 {
            let mut bench = Bench::start(&exe, 3, 1, Link::Unix, true, &Layout::Loopback).await?;
            let runs = failover(&mut bench, args.failovers, &mut 1).await?;
            bench.stop().await;
            let mut gaps: Vec<Duration> = runs.into_iter().map(|r| r.1).collect();
            gaps.sort();
            let ms: Vec<String> = gaps.iter().map(|g| format!("{:.0}", g.as_secs_f64() * 1e3)).collect();
            println!(
                "failover after kill -9 of the leader ({} runs, 3 nodes, LAN timeouts): median {:.0} ms, max {:.0} ms  [{}]",
                gaps.len(),
                percentile(&gaps, 0.5).as_secs_f64() * 1e3,
                gaps.last().map_or(0.0, |g| g.as_secs_f64() * 1e3),
                ms.join(" ")
            );
        }
        Ok(())
    })
}
