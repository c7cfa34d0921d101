//! A drill in progress, step by step: warm up, break, hold, heal (or a
//! rolling restart), report; and the faults it injects and heals.

use std::time::Duration;

use tokio::signal::unix::Signal;

use super::canary::Canary;
use super::ops::Nodes;
use super::plan::{Hook, Plan};
use super::{Drill, DrillReport, stamp, timeline};

/// A fault the drill injected, and how to heal it.
pub(super) enum Fault {
    Stopped(usize),
    Isolated(usize),
    KeyLost(usize),
    SentryDown(usize),
}

/// A drill in progress: the cluster, the canary, Ctrl-C and the report so
/// far. Its steps run in order: warm up, break, hold, heal (or a rolling
/// restart instead of those three), report.
pub(super) struct DrillRun<'a> {
    plan: &'a Plan,
    drill: Drill,
    nodes: Nodes,
    canary: Canary,
    interrupt: Signal,
    /// The leader when the fault starts.
    leader: usize,
    /// When the fault starts, on the canary's clock.
    fault_at: Duration,
    report: DrillReport,
}

impl<'a> DrillRun<'a> {
    /// Connects to the nodes, checks the cluster is healthy, starts the
    /// canary and checks it gets signatures; measures the baseline.
    pub(super) async fn warm_up(
        plan: &'a Plan,
        drill: Drill,
        mut interrupt: Signal,
    ) -> Result<DrillRun<'a>, String> {
        let nodes = Nodes::connect(plan).await?;
        let leader = nodes
            .healthy()
            .await
            .map_err(|e| format!("the cluster is not healthy before the drill: {e}"))?;
        let first_height = canary_watermark(&nodes, leader, &plan.canary.chain_id).await + 1;
        let canary = Canary::start(&plan.canary, first_height, Duration::from_secs(30)).await?;
        tokio::select! {
            () = tokio::time::sleep(plan.timing.warmup) => {}
            _ = interrupt.recv() => return Err("interrupted before the fault".into()),
        }
        let warmup_end = canary.now();
        if timeline::first_signature_after(&canary.attempts(), Duration::ZERO).is_none() {
            return Err(format!(
                "the canary got no signature in {:?} of warm-up: check the signers' logs",
                plan.timing.warmup
            ));
        }
        let baseline = timeline::window(&canary.attempts(), Duration::ZERO, warmup_end);
        // The leader may have changed while the canary started.
        let leader = nodes
            .healthy()
            .await
            .map_err(|e| format!("the cluster is not healthy before the drill: {e}"))?;
        let report = DrillReport {
            drill,
            actions: Vec::new(),
            baseline_gap: baseline.longest_gap,
            longest_gap: Duration::ZERO,
            requested: 0,
            missed: 0,
            double_signs_refused: 0,
            signatures: 0,
            conflicts: 0,
            invalid: 0,
            resumed_after: None,
            healthy_after: None,
            cluster_after: Vec::new(),
            problems: Vec::new(),
        };
        let fault_at = canary.now();
        Ok(DrillRun {
            plan,
            drill,
            nodes,
            canary,
            interrupt,
            leader,
            fault_at,
            report,
        })
    }

    /// Injects the drill's faults in order; returns those injected. Stops
    /// at the first that fails (a problem in the report).
    ///
    /// # Errors
    ///
    /// When the drill cannot choose its faults (a `--target` that leads
    /// now where a follower is needed); nothing is injected then.
    pub(super) async fn break_cluster(
        &mut self,
        target: Option<usize>,
    ) -> Result<Vec<Fault>, String> {
        let faults = choose(
            self.plan,
            &self.nodes,
            &self.canary,
            self.drill,
            self.leader,
            target,
        )?;
        let mut injected = Vec::new();
        for fault in faults {
            match inject(&self.nodes, &mut self.canary, &fault).await {
                Ok(what) => {
                    self.act(what);
                    injected.push(fault);
                }
                Err(e) => {
                    self.report
                        .problems
                        .push(format!("could not inject the fault: {e}"));
                    break;
                }
            }
        }
        Ok(injected)
    }

    /// Holds the fault for the plan's time, unless injecting it failed.
    pub(super) async fn hold(&mut self) {
        if self.report.problems.is_empty() {
            hold(self.plan.timing.hold, &mut self.interrupt, &mut self.report).await;
        }
    }

    /// Heals `injected` in reverse order; returns when it was healed.
    pub(super) async fn heal(&mut self, injected: &[Fault]) -> Duration {
        for fault in injected.iter().rev() {
            match heal(&self.nodes, &mut self.canary, fault).await {
                Ok(what) => self.act(what),
                Err(e) => self.report.problems.push(format!("could not heal: {e}")),
            }
        }
        self.canary.now()
    }

    /// Restarts every node in turn (the drill's break, hold and heal in
    /// one); returns when the last node was started.
    pub(super) async fn rolling_restart(&mut self) -> Duration {
        rolling_restart(
            self.plan,
            &self.nodes,
            self.leader,
            &self.canary,
            &mut self.interrupt,
            &mut self.report,
        )
        .await
    }

    /// Waits for recovery after `healed_at` and the plan's settle time,
    /// stops the canary and fills in the report.
    pub(super) async fn report(mut self, healed_at: Duration) -> DrillReport {
        let report = &mut self.report;
        recover(self.plan, &self.nodes, &self.canary, healed_at, report).await;
        tokio::time::sleep(self.plan.timing.settle).await;
        let attempts = self.canary.attempts();
        let since_fault = timeline::window(&attempts, self.fault_at, self.canary.now());
        let checked = self.canary.checker().report();
        report.longest_gap = since_fault.longest_gap;
        report.requested = since_fault.requested;
        report.missed = since_fault.missed;
        report.double_signs_refused = since_fault.double_signs_refused;
        report.signatures = checked.released;
        report.conflicts = checked.conflicts;
        report.invalid = checked.invalid;
        if checked.conflicts > 0 {
            report.problems.push(format!(
                "{} conflicting signatures were released",
                checked.conflicts
            ));
        }
        if checked.invalid > 0 {
            report
                .problems
                .push(format!("{} invalid signatures", checked.invalid));
        }
        self.canary.stop();
        report.cluster_after = describe(&self.nodes).await;
        self.report
    }

    /// Records an action, stamped with the canary's clock.
    fn act(&mut self, what: String) {
        self.report
            .actions
            .push(format!("{} at {}", what, stamp(self.canary.now())));
    }
}

/// The canary chain's watermark height as the leader reports it (0 when
/// nothing was signed yet).
async fn canary_watermark(nodes: &Nodes, leader: usize, chain: &str) -> i64 {
    let views = nodes.views().await;
    views[leader]
        .status
        .as_ref()
        .ok()
        .and_then(|s| s.chains.get(chain))
        .and_then(|c| c.position)
        .map_or(0, |p| p.height)
}

/// The faults a drill injects, in order.
fn choose(
    plan: &Plan,
    nodes: &Nodes,
    canary: &Canary,
    drill: Drill,
    leader: usize,
    target: Option<usize>,
) -> Result<Vec<Fault>, String> {
    let follower = match target {
        Some(t)
            if t == leader && matches!(drill, Drill::FollowerKill | Drill::PartitionFollower) =>
        {
            return Err(format!(
                "--target {} is the leader now; {} needs a follower",
                nodes.name(t),
                drill.name()
            ));
        }
        Some(t) => t,
        None => usize::from(leader == 0),
    };
    Ok(match drill {
        Drill::LeaderKill => vec![Fault::Stopped(leader)],
        Drill::FollowerKill => vec![Fault::Stopped(follower)],
        Drill::PartitionLeader => vec![Fault::Isolated(leader)],
        Drill::PartitionFollower => vec![Fault::Isolated(follower)],
        Drill::PartitionSplit => {
            // The minority: the leader and as many followers as keep the
            // rest a majority.
            let minority = (nodes.len() - 1) / 2;
            let mut cut = vec![leader];
            cut.extend((0..nodes.len()).filter(|i| *i != leader).take(minority - 1));
            cut.into_iter().map(Fault::Isolated).collect()
        }
        Drill::SentryLoss => vec![Fault::SentryDown(0)],
        Drill::HsmLoss => {
            vec![Fault::KeyLost(target.unwrap_or_else(|| {
                serving_node(plan, nodes, canary).unwrap_or(leader)
            }))]
        }
        Drill::RollingRestart => Vec::new(),
    })
}

/// The node that signed the canary's last request, when the plan names
/// the signers' SecretConnection ids.
fn serving_node(plan: &Plan, nodes: &Nodes, canary: &Canary) -> Option<usize> {
    let path = plan.canary.signer_names.as_ref()?;
    let names = crate::testnet::read_signer_names(&std::fs::read_to_string(path).ok()?);
    let name = names.get(&canary.last_signer()?)?;
    (0..nodes.len()).find(|i| nodes.name(*i) == name)
}

async fn inject(nodes: &Nodes, canary: &mut Canary, fault: &Fault) -> Result<String, String> {
    match *fault {
        Fault::Stopped(i) => {
            let (stop, _) = nodes.plan(i).pair(Hook::StopStart).ok_or("no stop hook")?;
            nodes.hook(i, "stop", stop).await?;
            Ok(format!("stopped {}", nodes.name(i)))
        }
        Fault::Isolated(i) => {
            let (isolate, _) = nodes
                .plan(i)
                .pair(Hook::IsolateRejoin)
                .ok_or("no isolate hook")?;
            nodes.hook(i, "isolate", isolate).await?;
            Ok(format!("isolated {} from the other signers", nodes.name(i)))
        }
        Fault::KeyLost(i) => {
            nodes.set_key_loss(i, true).await?;
            Ok(format!("made the key backend of {} fail", nodes.name(i)))
        }
        Fault::SentryDown(i) => {
            canary.stop_sentry(i);
            Ok(format!("took canary sentry {} down", i + 1))
        }
    }
}

async fn heal(nodes: &Nodes, canary: &mut Canary, fault: &Fault) -> Result<String, String> {
    match *fault {
        Fault::Stopped(i) => {
            let (_, start) = nodes.plan(i).pair(Hook::StopStart).ok_or("no start hook")?;
            nodes.hook(i, "start", start).await?;
            Ok(format!("started {}", nodes.name(i)))
        }
        Fault::Isolated(i) => {
            let (_, rejoin) = nodes
                .plan(i)
                .pair(Hook::IsolateRejoin)
                .ok_or("no rejoin hook")?;
            nodes.hook(i, "rejoin", rejoin).await?;
            Ok(format!("rejoined {}", nodes.name(i)))
        }
        Fault::KeyLost(i) => {
            nodes.set_key_loss(i, false).await?;
            Ok(format!("restored the key backend of {}", nodes.name(i)))
        }
        Fault::SentryDown(i) => {
            canary.start_sentry(i).await?;
            Ok(format!("brought canary sentry {} back", i + 1))
        }
    }
}

/// Waits `hold`, or less when the operator interrupts (the fault is then
/// healed at once).
async fn hold(hold: Duration, interrupt: &mut Signal, report: &mut DrillReport) -> bool {
    tokio::select! {
        () = tokio::time::sleep(hold) => false,
        _ = interrupt.recv() => {
            report.problems.push("interrupted: healed early".into());
            true
        }
    }
}

/// Restarts each node in turn, the leader last; returns when the last
/// node was started.
async fn rolling_restart(
    plan: &Plan,
    nodes: &Nodes,
    leader: usize,
    canary: &Canary,
    interrupt: &mut Signal,
    report: &mut DrillReport,
) -> Duration {
    let down =
        (plan.timing.hold / u32::try_from(nodes.len()).unwrap_or(1)).max(Duration::from_secs(1));
    let order: Vec<usize> = (0..nodes.len())
        .filter(|i| *i != leader)
        .chain([leader])
        .collect();
    for i in order {
        let Some((stop, start)) = nodes.plan(i).pair(Hook::StopStart) else {
            continue;
        };
        if let Err(e) = nodes.hook(i, "stop", stop).await {
            report.problems.push(e);
            return canary.now();
        }
        report.actions.push(format!(
            "stopped {} at {}",
            nodes.name(i),
            stamp(canary.now())
        ));
        let interrupted = hold(down, interrupt, report).await;
        if let Err(e) = nodes.hook(i, "start", start).await {
            report.problems.push(e);
            return canary.now();
        }
        let started = canary.now();
        report
            .actions
            .push(format!("started {} at {}", nodes.name(i), stamp(started)));
        if let Err(e) = wait_healthy(nodes, plan.timing.recover_within).await {
            report.problems.push(format!(
                "after restarting {}: not healthy within {:?}: {e}",
                nodes.name(i),
                plan.timing.recover_within
            ));
            return canary.now();
        }
        report.actions.push(format!(
            "cluster healthy again {:.2} s later",
            (canary.now() - started).as_secs_f64()
        ));
        if interrupted {
            break;
        }
    }
    canary.now()
}

/// How long the cluster must stay healthy to count as recovered: a node
/// that just rejoined can look healthy for a moment and then call an
/// election.
const STABLE: Duration = Duration::from_secs(1);

/// Waits until the cluster has been healthy for [`STABLE`].
async fn wait_healthy(nodes: &Nodes, within: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut since = None;
    loop {
        match nodes.healthy().await {
            Ok(_) => {
                let start = *since.get_or_insert_with(tokio::time::Instant::now);
                if start.elapsed() >= STABLE {
                    return Ok(());
                }
            }
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => since = None,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the canary is signed again and the cluster is healthy (for
/// [`STABLE`]), recording how long each took after `healed_at`.
async fn recover(
    plan: &Plan,
    nodes: &Nodes,
    canary: &Canary,
    healed_at: Duration,
    report: &mut DrillReport,
) {
    let deadline = tokio::time::Instant::now() + plan.timing.recover_within;
    let mut last_problem = String::new();
    let mut healthy_since = None;
    loop {
        if report.resumed_after.is_none()
            && let Some(t) = timeline::first_signature_after(&canary.attempts(), healed_at)
        {
            report.resumed_after = Some(t.saturating_sub(healed_at));
        }
        if report.healthy_after.is_none() {
            let now = canary.now();
            match nodes.healthy().await {
                Ok(_) => {
                    let since = *healthy_since.get_or_insert(now);
                    if now - since >= STABLE {
                        report.healthy_after = Some(since.saturating_sub(healed_at));
                    }
                }
                Err(e) => {
                    healthy_since = None;
                    last_problem = e;
                }
            }
        }
        if report.resumed_after.is_some() && report.healthy_after.is_some() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let limit = plan.timing.recover_within;
    if report.resumed_after.is_none() {
        report
            .problems
            .push(format!("no signature within {limit:?} after healing"));
    }
    if report.healthy_after.is_none() {
        report.problems.push(format!(
            "the cluster was not healthy within {limit:?} after healing: {last_problem}"
        ));
    }
}

/// One line per node: role, term, leader, applied index.
async fn describe(nodes: &Nodes) -> Vec<String> {
    nodes
        .views()
        .await
        .into_iter()
        .map(|view| match view.status {
            Ok(s) => format!(
                "{}: {} (term {}, leader {}, applied {}){}",
                view.name,
                s.role,
                s.term,
                s.leader
                    .and_then(|l| nodes.index_of(l))
                    .map_or("none", |i| nodes.name(i)),
                s.applied_index.map_or("-".into(), |i| i.to_string()),
                if s.has_quorum_leader {
                    ""
                } else {
                    ", NO QUORUM"
                }
            ),
            Err(e) => format!("{}: does not answer ({e})", view.name),
        })
        .collect()
}
