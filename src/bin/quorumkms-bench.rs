//! Sign latency and throughput of real signer processes over loopback, as
//! the validator sees them (request written → verified reply read), with
//! every state write fsync'd as in production.
//!
//! Run: `cargo run --release --bin quorumkms-bench -- --requests 2000`
//! (or `scripts/bench`). Prints one line per configuration with p50, p99
//! and requests per second, and the ratio to single-node mode.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use quorumkms::demo::checker::Checker;
use quorumkms::demo::validator::{Listen, Outcome, Timing, Validator};
use quorumkms::demo::{self, CHAIN_ID, consensus};
use quorumkms::privval::Version;

#[derive(Parser, Debug)]
#[command(about = "Benchmark quorumkms sign latency and throughput")]
struct Args {
    /// Sign requests per configuration (after a warm-up of 50).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// The quorumkms binary to benchmark (default: next to this one).
    #[arg(long)]
    exe: Option<PathBuf>,
}

struct Figures {
    name: String,
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn single_node(
    exe: &std::path::Path,
    unix: bool,
    requests: usize,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let listen = if unix {
        Listen::unix(dir.path().join("v.sock"))?
    } else {
        Listen::tcp("127.0.0.1:0").await?
    };
    let seed = [9u8; 32];
    let public_key = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let nodes = demo::write_nodes(
        dir.path(),
        1,
        seed,
        &[listen.signer_addr()],
        Version::V0_38,
        &|_| String::new(),
    )?;
    let _child = demo::spawn_node(exe, &nodes[0])?;
    let checker = Checker::new();
    let timing = Timing {
        accept_timeout: Duration::from_secs(20),
        ..Timing::default()
    };
    let mut validator = Validator::new(
        listen,
        CHAIN_ID,
        Version::V0_38,
        public_key,
        timing,
        checker.clone(),
    );
    validator.pub_key().await?;
    let address = consensus::address(&public_key);
    let mut latencies = Vec::with_capacity(requests);
    let warmup = 50;
    let started = Instant::now();
    let mut measured_start = started;
    for i in 0..(warmup + requests) {
        if i == warmup {
            measured_start = Instant::now();
        }
        let height = i as i64 + 1;
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
            Outcome::Signed { .. } => {}
            other => return Err(format!("request {i}: {other:?}").into()),
        }
        if i >= warmup {
            latencies.push(t0.elapsed());
        }
    }
    let elapsed = measured_start.elapsed();
    let report = checker.report();
    if report.conflicts != 0 || report.invalid != 0 {
        return Err(format!("bad signatures: {report:?}").into());
    }
    latencies.sort();
    Ok(Figures {
        name: format!(
            "single node, {}",
            if unix { "unix" } else { "secret connection" }
        ),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        per_second: requests as f64 / elapsed.as_secs_f64(),
    })
}

fn print(figures: &[Figures]) {
    println!(
        "{:<40} {:>10} {:>10} {:>12}",
        "configuration", "p50 (ms)", "p99 (ms)", "signs/s"
    );
    for f in figures {
        println!(
            "{:<40} {:>10.3} {:>10.3} {:>12.0}",
            f.name,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.per_second
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let exe = match args.exe {
        Some(exe) => exe,
        None => std::env::current_exe()?.with_file_name("quorumkms"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let figures = vec![
            single_node(&exe, true, args.requests).await?,
            single_node(&exe, false, args.requests).await?,
        ];
        print(&figures);
        Ok(())
    })
}
