//! The deterministic simulation as a test target (`--features sim`): a
//! sweep of seeded fault schedules that must all hold the invariants, a
//! determinism check, and one test per planted bug showing the checks
//! catch it.
//!
//! Environment:
//! - `SIM_SEEDS` (default 30), `SIM_SEED_BASE` (default 0): the sweep;
//! - `SIM_JOBS` (default: the number of CPUs): worker processes the sweep
//!   is split over (this test binary run again on a share of the seeds);
//! - `SEED=n`: run only seed n, print its trace, fail if it fails;
//! - `SIM_BUG=forget-tail|sign-before-commit|rogue-asks-for-granted`:
//!   plant a bug in the sweep;
//! - `SIM_BUG_SEEDS` (default 40): seed budget of each planted-bug test;
//! - `SIM_THRESHOLD=all|odd|none` (default odd): the seeds whose last
//!   chain signs in threshold mode;
//! - `SIM_STALE_VOTERS=1`: let the stale-store fault restore voters too
//!   (a hazard Raft cannot make safe: expect violations);
//! - `SIM_VERBOSE`: print one line per seed.
//!
//! Runs must not overlap in one process (see `align_task_ids`), so every
//! run in this process takes one lock, and parallel runs are separate
//! processes.
//!
//! The build needs `--cfg tokio_unstable` (set in `.cargo/config.toml`):
//! it seeds each simulated host's Tokio RNG, which `select!` draws from.

#![cfg(feature = "sim")]

use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use quorumkms::sim::{Bug, RunReport, Settings, ThresholdSeeds, run_seed};

static SERIAL: Mutex<()> = Mutex::new(());

/// Set in the worker processes of a split sweep.
const WORKER_ENV: &str = "SIM_WORKER";

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn settings() -> Settings {
    let bug = std::env::var("SIM_BUG")
        .ok()
        .filter(|b| !b.is_empty())
        .map(|b| b.parse::<Bug>().expect("SIM_BUG"));
    let defaults = Settings::default();
    let threshold_seeds = std::env::var("SIM_THRESHOLD")
        .ok()
        .filter(|t| !t.is_empty())
        .map_or(defaults.threshold_seeds, |t| {
            t.parse::<ThresholdSeeds>().expect("SIM_THRESHOLD")
        });
    Settings {
        bug,
        stale_voters: std::env::var("SIM_STALE_VOTERS").is_ok_and(|v| v == "1"),
        threshold_seeds,
        ..defaults
    }
}

fn replay_hint(seed: u64) -> String {
    let env: String = ["SIM_BUG", "SIM_THRESHOLD"]
        .iter()
        .filter_map(|name| {
            let value = std::env::var(name).ok().filter(|v| !v.is_empty())?;
            Some(format!("{name}={value} "))
        })
        .collect();
    format!(
        "replay: {env}SEED={seed} cargo test --features sim --test sim -- sim_seeds --nocapture"
    )
}

/// Starts this test binary again as a worker process that runs only the
/// test `name`, with `env` added and its standard output piped.
fn run_worker(name: &str, env: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(WORKER_ENV, "1")
        .env_remove("SEED")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("start a simulation worker")
}

/// Totals of a sweep (or of one worker's share of it).
#[derive(Debug, Default)]
struct Sweep {
    seeds: u64,
    faults: u64,
    signatures: u64,
    threshold_signatures: u64,
    threshold_failures: u64,
    rogue_refused: u64,
    rogue_granted: u64,
    refusals: u64,
    retries: u64,
    missed: u64,
    sim_secs: f64,
    /// One `FAIL ...` line per failing seed, by seed.
    failing: Vec<(u64, String)>,
    /// Faults injected, by kind.
    by_kind: std::collections::BTreeMap<String, u64>,
}

impl Sweep {
    fn add(&mut self, report: &RunReport) {
        self.seeds += 1;
        self.faults += report.fault_count();
        for (kind, count) in &report.faults {
            *self.by_kind.entry((*kind).to_string()).or_default() += count;
        }
        self.signatures += report.signatures;
        self.threshold_signatures += report.threshold_signatures;
        self.threshold_failures += report.threshold_failures;
        self.rogue_refused += report.rogue_refused;
        self.rogue_granted += report.rogue_granted;
        self.refusals += report.refusals;
        self.retries += report.retries;
        self.missed += report.missed;
        self.sim_secs += report.sim_time.as_secs_f64();
        if !report.violations.is_empty() {
            let line = format!(
                "FAIL {} :: {}\n  {}",
                report.line(),
                report.violations.join("; "),
                replay_hint(report.seed)
            );
            println!("{line}");
            self.failing.push((report.seed, line));
        }
    }

    /// The summary line a worker prints and [`Sweep::merge_output`] reads.
    fn summary(&self, wall: f64) -> String {
        format!(
            "SIM-SUMMARY seeds={} faults={} kinds={} signatures={} threshold_signatures={} threshold_failures={} rogue_refused={} rogue_granted={} refusals={} retries={} missed={} sim_secs={:.0} violations={} wall_secs={wall:.1} schedules_per_sec={:.2} failing={:?}",
            self.seeds,
            self.faults,
            self.by_kind
                .iter()
                .map(|(kind, count)| format!("{kind}:{count}"))
                .collect::<Vec<_>>()
                .join(","),
            self.signatures,
            self.threshold_signatures,
            self.threshold_failures,
            self.rogue_refused,
            self.rogue_granted,
            self.refusals,
            self.retries,
            self.missed,
            self.sim_secs,
            self.failing.len(),
            self.seeds as f64 / wall.max(1e-9),
            self.failing
                .iter()
                .map(|(seed, _)| *seed)
                .collect::<Vec<_>>()
        )
    }

    /// Adds a worker's totals from its output. False if the output has no
    /// summary (the worker died).
    fn merge_output(&mut self, output: &str) -> bool {
        let mut fail: Option<(u64, String)> = None;
        let mut summary = false;
        for line in output.lines() {
            // The test harness may print its own prefix before the first
            // line a test prints, so markers are looked for anywhere.
            if let Some(at) = line.find("FAIL seed ") {
                let line = &line[at..];
                let seed = line["FAIL seed ".len()..]
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                self.failing.extend(fail.take());
                fail = Some((seed, line.to_string()));
            } else if line.starts_with("  replay:") {
                if let Some((_, text)) = fail.as_mut() {
                    text.push('\n');
                    text.push_str(line);
                }
            } else if let Some(at) = line.find("SIM-SUMMARY ") {
                summary = true;
                for field in line[at..].split_whitespace() {
                    let Some((key, value)) = field.split_once('=') else {
                        continue;
                    };
                    match key {
                        "seeds" => self.seeds += value.parse::<u64>().unwrap_or(0),
                        "faults" => self.faults += value.parse::<u64>().unwrap_or(0),
                        "kinds" => {
                            for pair in value.split(',') {
                                if let Some((kind, count)) = pair.split_once(':') {
                                    *self.by_kind.entry(kind.to_string()).or_default() +=
                                        count.parse::<u64>().unwrap_or(0);
                                }
                            }
                        }
                        "signatures" => self.signatures += value.parse::<u64>().unwrap_or(0),
                        "threshold_signatures" => {
                            self.threshold_signatures += value.parse::<u64>().unwrap_or(0)
                        }
                        "threshold_failures" => {
                            self.threshold_failures += value.parse::<u64>().unwrap_or(0)
                        }
                        "rogue_refused" => self.rogue_refused += value.parse::<u64>().unwrap_or(0),
                        "rogue_granted" => self.rogue_granted += value.parse::<u64>().unwrap_or(0),
                        "refusals" => self.refusals += value.parse::<u64>().unwrap_or(0),
                        "retries" => self.retries += value.parse::<u64>().unwrap_or(0),
                        "missed" => self.missed += value.parse::<u64>().unwrap_or(0),
                        "sim_secs" => self.sim_secs += value.parse::<f64>().unwrap_or(0.0),
                        _ => {}
                    }
                }
            }
        }
        self.failing.extend(fail);
        summary
    }
}

/// Runs seeds `base..base + count` in this process.
fn sweep_here(base: u64, count: u64, settings: &Settings) -> Sweep {
    let _serial = serial();
    let mut sweep = Sweep::default();
    for seed in base..base + count {
        let report = run_seed(seed, settings);
        if std::env::var_os("SIM_VERBOSE").is_some() {
            println!("{} digest={}", report.line(), report.digest);
        }
        sweep.add(&report);
    }
    sweep
}

/// Splits seeds `base..base + count` over `jobs` worker processes.
fn sweep_in_workers(base: u64, count: u64, jobs: u64) -> Sweep {
    let share = count.div_ceil(jobs);
    let workers: Vec<_> = (0..jobs)
        .map(|j| (base + j * share, share.min(count.saturating_sub(j * share))))
        .filter(|(_, n)| *n > 0)
        .map(|(first, n)| {
            let child = run_worker(
                "sim_seeds_hold_invariants",
                &[
                    ("SIM_SEED_BASE", first.to_string()),
                    ("SIM_SEEDS", n.to_string()),
                    ("SIM_JOBS", "1".to_string()),
                ],
            );
            // Drained on its own thread so no worker blocks on a full pipe.
            let output = std::thread::spawn(move || child.wait_with_output());
            (first, n, output)
        })
        .collect();
    let mut sweep = Sweep::default();
    for (first, n, output) in workers {
        let output = output
            .join()
            .expect("a worker's reader thread")
            .expect("wait for a simulation worker");
        let stdout = String::from_utf8_lossy(&output.stdout);
        for line in stdout.lines() {
            if let Some(at) = line.find("seed ").filter(|_| line.contains(" digest=")) {
                println!("{}", &line[at..]);
            }
        }
        assert!(
            sweep.merge_output(&stdout),
            "the worker for seeds {first}..{} died ({}) without a summary",
            first + n,
            output.status
        );
    }
    sweep.failing.sort_by_key(|(seed, _)| *seed);
    for (_, line) in &sweep.failing {
        println!("{line}");
    }
    sweep
}

#[test]
fn sim_seeds_hold_invariants() {
    if let Ok(seed) = std::env::var("SEED") {
        let _serial = serial();
        let seed: u64 = seed.trim().parse().expect("SEED must be a number");
        let report = run_seed(
            seed,
            &Settings {
                keep_log: true,
                ..settings()
            },
        );
        for line in &report.log {
            println!("{line}");
        }
        println!("{} digest={}", report.line(), report.digest);
        assert!(
            report.violations.is_empty(),
            "seed {seed} failed:\n{}",
            report.violations.join("\n")
        );
        return;
    }
    let base = env_u64("SIM_SEED_BASE", 0);
    let count = env_u64("SIM_SEEDS", 30);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let jobs = env_u64("SIM_JOBS", cpus).clamp(1, count.max(1));
    let settings = settings();
    let started = Instant::now();
    let sweep = if jobs > 1 && std::env::var_os(WORKER_ENV).is_none() {
        sweep_in_workers(base, count, jobs)
    } else {
        sweep_here(base, count, &settings)
    };
    let wall = started.elapsed().as_secs_f64();
    println!("{}", sweep.summary(wall));
    if settings.bug.is_none() && !settings.stale_voters {
        assert!(
            sweep.failing.is_empty(),
            "{} of {count} seeds failed:\n{}",
            sweep.failing.len(),
            sweep
                .failing
                .iter()
                .map(|(_, line)| line.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The digest a worker process printed for `seed`.
fn digest_in_worker(seed: u64) -> String {
    let output = run_worker(
        "sim_seeds_hold_invariants",
        &[
            ("SIM_SEED_BASE", seed.to_string()),
            ("SIM_SEEDS", "1".to_string()),
            ("SIM_JOBS", "1".to_string()),
            ("SIM_VERBOSE", "1".to_string()),
        ],
    )
    .wait_with_output()
    .expect("wait for a simulation worker");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let marker = format!("seed {seed} digest ");
    stdout
        .lines()
        .filter(|l| l.contains(&marker))
        .find_map(|l| l.rsplit_once(" digest=").map(|(_, d)| d.to_string()))
        .unwrap_or_else(|| panic!("the worker printed no digest for seed {seed}:\n{stdout}"))
}

/// One seed gives one trace: run twice in this process with another seed
/// in between, and once in a fresh process. Different seeds differ.
/// Seed 11 signs one chain in threshold mode, seed 12 none.
#[test]
fn same_seed_gives_same_trace() {
    if !cfg!(tokio_unstable) {
        panic!(
            "build with --cfg tokio_unstable (.cargo/config.toml sets it; a RUSTFLAGS variable replaces that list): without it Tokio seeds select! from the OS and runs of one seed diverge"
        );
    }
    let (a, other, b) = {
        let _serial = serial();
        let settings = Settings::default();
        (
            run_seed(11, &settings),
            run_seed(12, &settings),
            run_seed(11, &settings),
        )
    };
    println!("{}\n{}\n{}", a.line(), other.line(), b.line());
    assert!(a.violations.is_empty(), "{:?}", a.violations);
    assert!(a.fault_count() > 0, "the schedule injected no fault");
    assert!(
        a.threshold_signatures > 0 && a.rogue_refused > 0,
        "seed 11 ran no share round or no rogue attack"
    );
    assert_eq!(a.digest, b.digest, "seed 11 gave two different traces");
    assert_ne!(
        a.digest, other.digest,
        "seeds 11 and 12 gave the same trace"
    );
    let fresh = digest_in_worker(11);
    assert_eq!(
        a.digest, fresh,
        "seed 11 gave another trace in a fresh process"
    );
}

/// Runs the planted bug over the seed budget and returns the first seed
/// whose run the checks failed.
fn first_caught(bug: Bug) -> Option<RunReport> {
    let budget = env_u64("SIM_BUG_SEEDS", 40);
    let settings = Settings {
        bug: Some(bug),
        ..Settings::default()
    };
    (0..budget).find_map(|seed| {
        let report = run_seed(seed, &settings);
        (!report.violations.is_empty()).then_some(report)
    })
}

#[test]
fn checks_catch_a_disk_that_forgets_acknowledged_entries() {
    let _serial = serial();
    let caught = first_caught(Bug::ForgetTail).expect("forget-tail was never caught");
    println!(
        "forget-tail caught at seed {}: {}",
        caught.seed, caught.violations[0]
    );
}

#[test]
fn checks_catch_a_share_given_for_bytes_never_granted() {
    let _serial = serial();
    let caught =
        first_caught(Bug::RogueAsksForGranted).expect("rogue-asks-for-granted was never caught");
    println!(
        "rogue-asks-for-granted caught at seed {}: {}",
        caught.seed, caught.violations[0]
    );
    assert!(
        caught
            .violations
            .iter()
            .any(|v| v.contains("never granted")),
        "caught for another reason: {:?}",
        caught.violations
    );
}

#[test]
fn checks_catch_signing_before_the_grant_commits() {
    let _serial = serial();
    let caught = first_caught(Bug::SignBeforeCommit).expect("sign-before-commit was never caught");
    println!(
        "sign-before-commit caught at seed {}: {}",
        caught.seed, caught.violations[0]
    );
}
