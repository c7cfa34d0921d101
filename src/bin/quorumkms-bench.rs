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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use quorumkms::demo::checker::Checker;
use quorumkms::demo::validator::{Listen, Outcome, Timing, Validator};
use quorumkms::demo::{self, NodeFiles, consensus};
use quorumkms::privval::Version;
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
}

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
/// one validator that every node dials.
struct Bench {
    _dir: tempfile::TempDir,
    nodes: Vec<NodeFiles>,
    children: Vec<Option<Child>>,
    validators: Vec<Validator>,
    ports: Vec<u16>,
}

impl Bench {
    async fn start(
        exe: &Path,
        nodes: usize,
        chains: usize,
        link: Link,
        per_node_validators: bool,
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
        let mut listens = Vec::new();
        for l in 0..listeners {
            listens.push(match link {
                Link::Unix => Listen::unix(dir.path().join(format!("v{l}.sock")))?,
                Link::SecretConnection => Listen::tcp("127.0.0.1:0").await?,
            });
        }
        let cluster = nodes >= 3;
        let ports = if cluster {
            demo::free_ports(nodes)?
        } else {
            Vec::new()
        };
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
            let extra = if cluster {
                demo::cluster_section(i, &ports)
            } else {
                String::new()
            };
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
        let mut children = Vec::new();
        for node in &files {
            children.push(Some(demo::spawn_node(exe, node)?));
        }
        if cluster {
            demo::initialize_cluster(&ports, Duration::from_secs(30)).await?;
        }
        let timing = Timing {
            accept_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_millis(500),
            ..Timing::default()
        };
        let checker = Checker::new();
        let validators = listens
            .into_iter()
            .enumerate()
            .map(|(l, listen)| {
                let chain = &chain_ids[l / if per_node_validators { nodes } else { 1 }];
                Validator::new(
                    listen,
                    chain,
                    Version::V0_38,
                    public_key(),
                    timing.clone(),
                    checker.clone(),
                )
            })
            .collect();
        Ok(Bench {
            _dir: dir,
            nodes: files,
            children,
            validators,
            ports,
        })
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

async fn throughput(
    exe: &Path,
    nodes: usize,
    chains: usize,
    link: Link,
    requests: usize,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let mut bench = Bench::start(exe, nodes, chains, link, false).await?;
    // Warm up each chain (connections, first grants) outside the figures.
    let mut warm = Vec::new();
    for validator in bench.validators.drain(..) {
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

/// Kills the leader of a 3-node cluster `runs` times while a validator
/// served by a follower keeps signing; returns the time from each kill to
/// the next signature.
async fn failover(exe: &Path, runs: usize) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let mut bench = Bench::start(exe, 3, 1, Link::Unix, true).await?;
    let mut validators: Vec<Option<Validator>> = bench.validators.drain(..).map(Some).collect();
    let mut height = 1i64;
    let mut gaps = Vec::new();
    for _ in 0..runs {
        let leader = wait_for_leader(&bench.ports)
            .await
            .ok_or("no leader within 20 s")?;
        let leader = leader as usize;
        let follower = if leader == 1 { 2 } else { 1 };
        let validator = validators[follower - 1].take().ok_or("validator in use")?;
        // Sign through the follower until it is warm, then kill the leader
        // from another task while signing continues.
        let (validator, _) = sign_run(validator, height, 5).await?;
        height += 5;
        let mut child = bench.children[leader - 1]
            .take()
            .ok_or("leader not running")?;
        let killed_at = Instant::now();
        let _ = child.start_kill();
        let _ = child.wait().await;
        let (validator, _) = sign_run(validator, height, 1).await?;
        gaps.push(killed_at.elapsed());
        height += 1;
        validators[follower - 1] = Some(validator);
        bench.children[leader - 1] = Some(demo::spawn_node(exe, &bench.nodes[leader - 1])?);
        // Wait until the restarted node follows a leader again.
        let addr = format!("127.0.0.1:{}", bench.ports[leader - 1]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = quorumkms::cluster::admin::status(&addr, Duration::from_millis(500)).await;
            if status.is_ok_and(|s| s.has_quorum_leader && s.leader.is_some()) {
                break;
            }
            if Instant::now() > deadline {
                return Err("restarted node did not rejoin".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    bench.stop().await;
    Ok(gaps)
}

async fn wait_for_leader(ports: &[u16]) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some((leader, _)) = demo::find_leader(ports).await {
            return Some(leader);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
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
            let mut gaps = failover(&exe, args.failovers).await?;
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
