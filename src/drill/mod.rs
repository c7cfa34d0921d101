//! Failover drills against a running cluster: `quorumkms drill NAME`.
//!
//! A drill starts a canary validator ([`canary`]) that the signers serve
//! on a chain of its own, checks that the cluster is healthy and signing,
//! breaks one thing (a node, a link, a sentry, a key backend) through the
//! plan's hooks ([`plan`], [`ops`]), holds the fault, heals it, and waits
//! for signing and the cluster to recover. It reports the longest time
//! without a signature, the signatures missed, the conflicting signatures
//! (the only acceptable count is zero) and the cluster state after
//! ([`timeline`] holds the arithmetic).
//!
//! Whatever happens, a fault the drill caused is healed before it returns.

pub mod canary;
pub mod ops;
pub mod plan;
mod run;
pub mod timeline;

use std::time::Duration;

use serde::Serialize;
use tokio::signal::unix::Signal;

use plan::{Hook, Plan};
use run::DrillRun;

/// The drills.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Drill {
    /// Stop the leader abruptly, hold, start it again.
    LeaderKill,
    /// Stop a follower abruptly, hold, start it again.
    FollowerKill,
    /// Cut the leader off from the other signers, hold, rejoin it.
    PartitionLeader,
    /// Cut a follower off from the other signers, hold, rejoin it.
    PartitionFollower,
    /// Cut a minority holding the leader off from the majority (on three
    /// nodes, 2–1 with the leader alone), hold, rejoin it.
    PartitionSplit,
    /// Take one canary sentry down, hold, bring it back.
    SentryLoss,
    /// Restart every node in turn, followers first, waiting for the
    /// cluster to be healthy between nodes.
    RollingRestart,
    /// Make the key backend of the node serving the canary fail, hold,
    /// restore it.
    HsmLoss,
}

impl Drill {
    /// Every drill, in the order `drill all` runs them.
    pub const ALL: [Drill; 8] = [
        Drill::FollowerKill,
        Drill::LeaderKill,
        Drill::PartitionFollower,
        Drill::PartitionLeader,
        Drill::PartitionSplit,
        Drill::SentryLoss,
        Drill::HsmLoss,
        Drill::RollingRestart,
    ];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Drill::LeaderKill => "leader-kill",
            Drill::FollowerKill => "follower-kill",
            Drill::PartitionLeader => "partition-leader",
            Drill::PartitionFollower => "partition-follower",
            Drill::PartitionSplit => "partition-split",
            Drill::SentryLoss => "sentry-loss",
            Drill::RollingRestart => "rolling-restart",
            Drill::HsmLoss => "hsm-loss",
        }
    }

    fn hook(self) -> Option<Hook> {
        match self {
            Drill::LeaderKill | Drill::FollowerKill | Drill::RollingRestart => {
                Some(Hook::StopStart)
            }
            Drill::PartitionLeader | Drill::PartitionFollower | Drill::PartitionSplit => {
                Some(Hook::IsolateRejoin)
            }
            Drill::SentryLoss | Drill::HsmLoss => None,
        }
    }
}

/// What a drill found.
#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    /// Which drill.
    pub drill: Drill,
    /// What it did, in order.
    pub actions: Vec<String>,
    /// Longest time without a signature before the fault (the baseline).
    #[serde(serialize_with = "seconds")]
    pub baseline_gap: Duration,
    /// Longest time without a signature from the fault to the end.
    #[serde(serialize_with = "seconds")]
    pub longest_gap: Duration,
    /// Honest (height, step) positions asked for since the fault.
    pub requested: usize,
    /// Of those, the ones no sentry got a signature for.
    pub missed: usize,
    /// Double-sign attempts refused since the fault.
    pub double_signs_refused: usize,
    /// Signatures recorded over the whole drill.
    pub signatures: usize,
    /// Conflicting signatures (two payloads for one position) over the
    /// whole drill, including signed double-sign attempts.
    pub conflicts: usize,
    /// Signatures that did not verify.
    pub invalid: usize,
    /// From healing to the first signature after it.
    #[serde(serialize_with = "maybe_seconds")]
    pub resumed_after: Option<Duration>,
    /// From healing to a healthy cluster.
    #[serde(serialize_with = "maybe_seconds")]
    pub healthy_after: Option<Duration>,
    /// One line per node, after the drill.
    pub cluster_after: Vec<String>,
    /// Why the drill failed; empty when it passed.
    pub problems: Vec<String>,
}

impl DrillReport {
    /// Whether the cluster recovered with no conflict.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for DrillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let after = |d: Option<Duration>| d.map_or_else(|| "not within the limit".into(), secs);
        writeln!(f, "drill {}:", self.drill.name())?;
        for action in &self.actions {
            writeln!(f, "  - {action}")?;
        }
        writeln!(
            f,
            "  time without signatures   {} (before the fault: {})",
            secs(self.longest_gap),
            secs(self.baseline_gap)
        )?;
        writeln!(
            f,
            "  signatures missed         {} of {} requested",
            self.missed, self.requested
        )?;
        writeln!(
            f,
            "  conflicting signatures    {} (of {} verified; {} invalid; {} double-sign attempts refused)",
            self.conflicts, self.signatures, self.invalid, self.double_signs_refused
        )?;
        writeln!(
            f,
            "  after healing             signing resumed in {}, cluster healthy in {}",
            after(self.resumed_after),
            after(self.healthy_after)
        )?;
        writeln!(f, "  cluster after:")?;
        for line in &self.cluster_after {
            writeln!(f, "    {line}")?;
        }
        if self.passed() {
            write!(f, "  PASSED")
        } else {
            write!(f, "  FAILED: {}", self.problems.join("; "))
        }
    }
}

/// Runs `drill` against the cluster in `plan`. `target` names the node to
/// break where the drill lets one choose (a follower, the key-loss node).
///
/// # Errors
///
/// When the drill cannot start: a plan missing hooks it needs, a node
/// that does not answer, a cluster that is unhealthy or not signing the
/// canary before the fault. Once a fault is injected, problems go into
/// the report instead, after the fault has been healed.
pub async fn run(plan: &Plan, drill: Drill, target: Option<&str>) -> Result<DrillReport, String> {
    let target = preflight(plan, drill, target)?;
    let interrupt = install_ctrl_c()?;
    let mut run = DrillRun::warm_up(plan, drill, interrupt).await?;
    let healed_at = if drill == Drill::RollingRestart {
        run.rolling_restart().await
    } else {
        let injected = run.break_cluster(target).await?;
        run.hold().await;
        run.heal(&injected).await
    };
    Ok(run.report(healed_at).await)
}

/// Checks what the drill needs from the plan before touching the cluster,
/// and resolves `--target` to a node index.
fn preflight(plan: &Plan, drill: Drill, target: Option<&str>) -> Result<Option<usize>, String> {
    if let Some(hook) = drill.hook()
        && let Some(node) = plan.nodes.iter().find(|n| n.pair(hook).is_none())
    {
        let names = match hook {
            Hook::StopStart => "stop and start",
            Hook::IsolateRejoin => "isolate and rejoin",
        };
        return Err(format!(
            "{} needs {names} commands for every node; node {} has none",
            drill.name(),
            node.name
        ));
    }
    if drill == Drill::SentryLoss && plan.canary.sentries.len() < 2 {
        return Err("sentry-loss needs two canary sentries (canary.sentries)".into());
    }
    target
        .map(|name| {
            plan.node(name)
                .ok_or_else(|| format!("--target {name}: no such node in the plan"))
        })
        .transpose()
}

/// From here on Ctrl-C is the drill's: before the fault it stops the
/// drill, during the hold it heals at once, otherwise it waits.
fn install_ctrl_c() -> Result<Signal, String> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot handle Ctrl-C: {e}"))
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn maybe_seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn stamp(at: Duration) -> String {
    format!("t+{:.2}s", at.as_secs_f64())
}
