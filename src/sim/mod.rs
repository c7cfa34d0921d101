//! Deterministic simulation of the cluster and the signing path (feature
//! `sim`).
//!
//! One run ([`run_seed`]) puts the real code on turmoil hosts in one
//! process, on one OS thread, under simulated time and network:
//!
//! - N signer hosts, each running [`run_node`](crate::cluster::run_node)
//!   on a [`SimStore`](store::SimStore) (a `MemBackend` that survives a
//!   crash, except for deferred writes no durable write followed) and the
//!   [`SimTransport`](net::SimTransport), whose listener presents each
//!   caller's certificate as the TLS listener would, plus the production
//!   [`Supervisor`](crate::session::Supervisor)s ([`dialer`]): one per
//!   validator node, dialling it (plain TCP, no SecretConnection), serving
//!   it with soft keys or key shares and redialling with its backoff while
//!   the node has a quorum leader, as `quorumkms start` does;
//! - chains in key mode (each signer node holds the whole key) and, on
//!   odd seeds ([`ThresholdSeeds`]), one in threshold mode: its key split
//!   2-of-n (a dealer with a seeded RNG) over every signer node that can
//!   vote, the spare too, each node's share behind a
//!   [`Participant`](crate::threshold::Participant) whose nonces come from
//!   an RNG seeded per seed, node and boot; sessions sign through the
//!   cluster's share rounds (`Commit` and `Share` between nodes) after the
//!   grant commits, through every fault (a signature that fails after its
//!   grant is traced and counted, [`group`]);
//! - several validator nodes per chain ([`validator`]), each listening for
//!   the signer nodes as CometBFT's signer listener does ([`listener`]:
//!   one active connection, the other dials queued, a connection dropped
//!   only on a timeout or a failed ping), retrying a failed request as
//!   CometBFT does, and sending conflicting requests;
//! - a seeded fault schedule ([`faults`]): partitions of the leader or a
//!   follower, crash and restart, held links, latency spikes, a full disk,
//!   hostile peers ([`hostile`]: a forged snapshot, a forged raise, Raft
//!   messages of another cluster) and a restore of a stale backup;
//! - with a threshold-mode chain, a compromised member ([`rogue`]) that
//!   asks nodes for shares over bytes no node granted, at seeded times
//!   whatever fault is under way;
//! - an operator ([`operator`]) that adds a spare signer node as a learner,
//!   promotes it and removes it again through the admin API, while the
//!   faults go on; the harness stops the spare once it is removed.
//!
//! Checks ([`RunReport::violations`]): no two payloads signed for one
//! (chain, height, round, step); every node applies the same entries with
//! the same outcomes in the same order; no signature a validator received
//! is above or different from the final watermark on any node, and the
//! final states agree; one validator node advances per height; signing
//! resumes within a bound after each fault and the run finishes in time;
//! every grant answers within the grant timeout;
//! a node whose disk filled up serves again once it has room; nothing a
//! hostile peer forged reaches any node's disk (its term, its height, its
//! snapshot); no node gives a share for bytes it does not grant; no task
//! panics. Threshold signatures go through the same checker as the
//! others, verified under the chain's validator key.
//!
//! What the hostile peers cover: a caller with no certificate, one with
//! the node certificate of a node that is no member (a removed node's,
//! never revoked), and a node of another cluster that shares the CA and
//! calls with its own cluster id. The TLS handshake itself, revocation and
//! certificates of another CA are left to the TLS tests. A stolen member
//! certificate used with this cluster's id (which every answer carries) is
//! simulated for the share rounds only ([`rogue`]: threshold mode exists to
//! hold against a compromised member), not for Raft: Raft trusts its
//! members, and such a caller can lead in a forged term.
//!
//! Stale stores: restoring a voter's backup is a hazard Raft cannot make
//! safe. A voter that lost log entries it acknowledged may have counted
//! toward their commit; restored, it can vote for a candidate that lacks
//! them, and a committed grant is lost (the planted bug
//! [`Bug::ForgetTail`] is the same loss). openraft notices a follower
//! whose log went back only on a leader that had replicated to it, and
//! then stops on a debug assertion (release builds go on trusting the
//! old match). So the sweep restores only a node that is not a voter (the
//! spare while it is a learner), the case the project supports: a voter's
//! store comes back as a learner (`cluster remove`, restore, `cluster
//! add-learner`, `cluster promote`). `Settings::stale_voters`
//! (`SIM_STALE_VOTERS=1`) restores voters too and shows the hazard.
//!
//! The same seed gives the same trace digest, so nothing in a run may
//! read the wall clock. The one place the cluster's own stack does is
//! HTTP/2's memory of the streams it reset (a call dropped in flight, as
//! the share rounds drop the commitments they do not need): it lasts a
//! second of wall-clock time, and a build with the `sim` feature makes it
//! outlast any run (`cluster::network::endpoint`). A response's HTTP
//! `date` header is the wall clock too: traces never print one. Planted
//! bugs ([`Bug`]) prove the checks bite.

pub mod dialer;
pub mod faults;
pub mod granter;
pub mod group;
pub mod hostile;
pub mod listener;
pub mod net;
pub mod operator;
pub mod rogue;
mod run;
pub mod store;
pub mod trace;
pub mod validator;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::cluster::runtime;

use trace::Trace;

/// The host of the simulated operator.
const OPERATOR_HOST: &str = net::OPERATOR;
/// The cluster's Raft port on every signer host.
const RAFT_PORT: u16 = 7000;
/// The port every validator node listens on for signer nodes (CometBFT's
/// usual `priv_validator_laddr` port).
const VALIDATOR_PORT: u16 = 26_659;
/// Longest time a chain may go without any final answer (signed or
/// refused) while its validators still work: a stall. (A validator node
/// notices a dead signer at its next ping, within 3.3 s, and a silent one
/// at a read timeout, 5 s.)
const MAX_ANSWER_GAP: Duration = Duration::from_secs(15);
/// Time after the last fault heals within which each chain with work left
/// must get a signature again.
const RESUME_BOUND: Duration = Duration::from_secs(10);
/// Time the run may take after the fault window before it is a stall.
const FINISH_GRACE: Duration = Duration::from_secs(60);
/// Time after the validators finish (and the last fault heals) within
/// which every node must be serving again and hold the same state. A node
/// whose disk filled up retries its rebuild with a backoff of up to 5 s.
const SETTLE_BOUND: Duration = Duration::from_secs(15);

/// Shares a threshold signature takes. With one fault at a time, two of
/// the three initial nodes are always up.
const THRESHOLD: u16 = 2;

/// A planted bug, switched on for one run to show the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// A restarted node's disk forgets its last 3 acknowledged log entries.
    ForgetTail,
    /// Sessions sign new positions before their grant commits.
    SignBeforeCommit,
    /// The compromised member ([`rogue`]) asks for a share over the bytes
    /// the target grants where it means to ask over bytes no node grants:
    /// the share it gets is what a node that shares anything would give.
    RogueAsksForGranted,
}

impl std::str::FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Bug, String> {
        match s {
            "forget-tail" => Ok(Bug::ForgetTail),
            "sign-before-commit" => Ok(Bug::SignBeforeCommit),
            "rogue-asks-for-granted" => Ok(Bug::RogueAsksForGranted),
            other => Err(format!(
                "unknown bug {other:?} (forget-tail, sign-before-commit, rogue-asks-for-granted)"
            )),
        }
    }
}

/// Which seeds run chains in threshold mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdSeeds {
    /// Every seed.
    All,
    /// Odd seeds: the share rounds make a seed about a third slower, so
    /// the sweep alternates (and the determinism check's seed 11 is one).
    Odd,
    /// None.
    None,
}

impl ThresholdSeeds {
    /// Whether `seed` runs chains in threshold mode.
    pub fn includes(self, seed: u64) -> bool {
        match self {
            ThresholdSeeds::All => true,
            ThresholdSeeds::Odd => seed % 2 == 1,
            ThresholdSeeds::None => false,
        }
    }
}

impl std::str::FromStr for ThresholdSeeds {
    type Err = String;
    fn from_str(s: &str) -> Result<ThresholdSeeds, String> {
        match s {
            "all" => Ok(ThresholdSeeds::All),
            "odd" => Ok(ThresholdSeeds::Odd),
            "none" => Ok(ThresholdSeeds::None),
            other => Err(format!(
                "unknown threshold seeds {other:?} (all, odd, none)"
            )),
        }
    }
}

/// The shape of a run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Signer nodes in the initial cluster.
    pub nodes: u64,
    /// Add a spare node (id `nodes + 1`), promote it and remove it again.
    pub membership: bool,
    /// Chains, each with its own key and privval port.
    pub chains: usize,
    /// How many of the chains, counted from the last, sign in threshold
    /// mode on a seed [`Settings::threshold_seeds`] includes (the others
    /// sign with the whole key on each node).
    pub threshold_chains: usize,
    /// Which seeds run those chains in threshold mode.
    pub threshold_seeds: ThresholdSeeds,
    /// Validator nodes per chain.
    pub validators_per_chain: usize,
    /// Heights each validator node goes through.
    pub heights: i64,
    /// Faults start within this much simulated time.
    pub fault_window: Duration,
    /// A planted bug, if any.
    pub bug: Option<Bug>,
    /// Let the stale-store fault restore a voter's backup too, which Raft
    /// cannot make safe (see the module docs); off in the sweep.
    pub stale_voters: bool,
    /// Keep the trace as text in the report.
    pub keep_log: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            nodes: 3,
            membership: true,
            chains: 2,
            threshold_chains: 1,
            threshold_seeds: ThresholdSeeds::Odd,
            validators_per_chain: 2,
            heights: 40,
            fault_window: Duration::from_secs(14),
            bug: None,
            stale_voters: false,
            keep_log: false,
        }
    }
}

/// What one run did and found.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Hash of the whole trace; equal for equal seeds.
    pub digest: String,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Signatures validators received.
    pub signatures: u64,
    /// Of those, the ones on threshold-mode chains (a vote's extension
    /// signature counts with its vote).
    pub threshold_signatures: u64,
    /// Threshold signatures a node could not make after the grant (too
    /// few shares in time), each closing its validator's connection.
    pub threshold_failures: u64,
    /// Share requests of the compromised member over bytes never granted
    /// that a node refused by its grant rule.
    pub rogue_refused: u64,
    /// Share requests of the compromised member over granted bytes that
    /// got a share (which signed with its own): proof that its requests
    /// reach the grant rule.
    pub rogue_granted: u64,
    /// Refusals validators received.
    pub refusals: u64,
    /// Failed attempts of a request (each retried, or missed).
    pub retries: u64,
    /// Requests given up after every attempt failed, as CometBFT does.
    pub missed: u64,
    /// Log entries applied, summed over nodes.
    pub applied: u64,
    /// Simulated time the run took.
    pub sim_time: Duration,
    /// Wall-clock time the run took.
    pub wall_time: Duration,
    /// Broken invariants; empty for a clean run.
    pub violations: Vec<String>,
    /// The trace as text (only with `keep_log`).
    pub log: Vec<String>,
}

impl RunReport {
    /// Faults injected in total.
    pub fn fault_count(&self) -> u64 {
        self.faults.values().sum()
    }

    /// One summary line.
    pub fn line(&self) -> String {
        format!(
            "seed {} digest {} sim {:.1}s wall {:.2}s faults {} signatures {} (threshold {}, failed {}) rogue refused {} granted {} refusals {} retries {} missed {} applied {} violations {}",
            self.seed,
            &self.digest[..16.min(self.digest.len())],
            self.sim_time.as_secs_f64(),
            self.wall_time.as_secs_f64(),
            self.fault_count(),
            self.signatures,
            self.threshold_signatures,
            self.threshold_failures,
            self.rogue_refused,
            self.rogue_granted,
            self.refusals,
            self.retries,
            self.missed,
            self.applied,
            self.violations.len()
        )
    }
}

/// Makes the next Tokio task id a multiple of 16.
///
/// Tokio files a task spawned with `tokio::spawn` (tonic's connection
/// tasks) in one of 4 lists chosen by its id, which comes from a
/// process-wide counter, and drops those lists in order when a simulated
/// host crashes. Aligning the counter before each run makes the drop order,
/// hence the trace, independent of what ran earlier in the process (runs
/// must not overlap in one process).
fn align_task_ids() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(async {
        for _ in 0..64 {
            let handle = tokio::spawn(async {});
            let id: u64 = handle.id().to_string().parse().unwrap_or(0);
            let _ = handle.await;
            if (id + 1).is_multiple_of(16) {
                break;
            }
        }
    });
}

/// Panics seen while a run was in progress, whichever task they ended.
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn panics() -> std::sync::MutexGuard<'static, Vec<String>> {
    PANICS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one seed and checks it. Never panics: a panic in the simulated
/// code, even one Tokio catches in a spawned task (openraft's core), is
/// reported as a violation.
pub fn run_seed(seed: u64, settings: &Settings) -> RunReport {
    let started = Instant::now();
    panics().clear();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| panics().push(info.to_string())));
    align_task_ids();
    runtime::set_rng_seed(seed);
    runtime::set_spawn_local(true);
    let trace = Trace::new(settings.keep_log);
    let mut report = RunReport {
        seed,
        ..RunReport::default()
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run::run_inner(seed, settings, &trace, &mut report);
    }));
    runtime::set_spawn_local(false);
    std::panic::set_hook(previous_hook);
    for text in std::mem::take(&mut *panics()) {
        trace.violation(report.sim_time, format!("a task panicked: {text}"));
    }
    if let Err(panic) = outcome {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into());
        trace.violation(report.sim_time, format!("panic: {text}"));
    }
    report.digest = trace.digest();
    report.violations = trace.violations();
    report.applied = trace.entries_applied();
    report.log = trace.log();
    report.wall_time = started.elapsed();
    report
}
