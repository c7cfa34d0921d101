//! The grant path: getting a command committed and applied through
//! whichever node leads.
//!
//! A node proposes on its own Raft instance when it leads; otherwise it
//! forwards the command to the leader ([`network::forward`]), follows the
//! leader hints it gets back, and waits out elections, all within the
//! grant timeout. A leader answers a forwarded command with
//! `Proposer::propose_local`.
//!
//! # Invariant
//!
//! `Proposer::grant` returns `Verdict::Sign(bytes)` only from a
//! committed, applied entry's outcome, or from the applied state when that
//! already holds exactly `bytes` at the attempt's position (the same
//! signature again).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::config::Config;
use super::forward::ForwardError;
use super::group_commit::{self, Queue};
use super::instance::{Fault, Instance};
use super::network::{self, CallError, Channels};
use super::types::typ::{
    self, ChangeMembershipError, ClientWriteError, Fatal, RaftError, RaftMetrics,
};
use super::types::{Command, Member, NodeId, Outcome, Raiser, Served};
use crate::grant::{Cause, GrantError};
use crate::metrics::Stage;
use crate::watermark::{Attempt, Refusal, SignState, Verdict};

/// Most proposals a grant makes (following leader hints) before giving up,
/// even inside its timeout.
const MAX_PROPOSALS: usize = 16;

/// Why this node, proposing as the leader, did not apply a command. Every
/// command of a group-committed write gets the write's error, hence `Clone`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LeaderError {
    /// This node does not lead; the leader it knows of, if any.
    #[error("not the leader")]
    NotLeader {
        /// The leader, if known.
        leader: Option<(NodeId, Member)>,
    },
    /// This node's Raft instance is down after a storage failure.
    #[error("{0}")]
    Fault(#[source] Fault),
    /// The entry could not be made durable.
    #[error("{0}")]
    Storage(#[source] typ::StorageError),
    /// A membership change is in the way.
    #[error("{0}")]
    Membership(#[source] ChangeMembershipError),
    /// The Raft instance stopped (shutting down).
    #[error("{0}")]
    Stopped(#[source] Fatal),
    /// No commit within the grant timeout.
    #[error("commit timed out")]
    Timeout,
    /// The write carrying the command was dropped unanswered (the node is
    /// shutting down).
    #[error("the write was abandoned")]
    Abandoned,
}

impl LeaderError {
    /// Whether this node's storage failed (rather than its leadership).
    fn is_storage(&self) -> bool {
        matches!(self, LeaderError::Fault(_) | LeaderError::Storage(_))
    }
}

impl From<LeaderError> for ForwardError {
    fn from(e: LeaderError) -> ForwardError {
        match e {
            LeaderError::NotLeader { leader } => ForwardError::NotLeader { leader },
            e if e.is_storage() => ForwardError::Storage(e.to_string()),
            e => ForwardError::Unavailable(e.to_string()),
        }
    }
}

/// What the last try of a proposal ran into.
#[derive(Debug, thiserror::Error)]
pub enum TryError {
    /// No node was known to lead.
    #[error("no leader")]
    NoLeader,
    /// The node thought to lead did not.
    #[error("node {0} is not the leader")]
    NotLeader(NodeId),
    /// This node leads but could not commit.
    #[error("{0}")]
    Local(#[source] LeaderError),
    /// The leader answered that it could not commit.
    #[error("{0}")]
    Remote(#[source] ForwardError),
    /// The leader did not answer.
    #[error("{0}")]
    Unreachable(#[source] CallError),
}

/// Why a command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This node's Raft instance is down after a storage failure.
    #[error("{0}")]
    Fault(#[source] Fault),
    /// This node leads and its storage failed.
    #[error("{0}")]
    Storage(#[source] LeaderError),
    /// No leader committed it within the grant timeout.
    #[error("no commit within {within_ms} ms: {last}")]
    NoCommit {
        /// The grant timeout.
        within_ms: u64,
        /// What the last try ran into.
        #[source]
        last: TryError,
    },
    /// The state machine answered the command with the outcome of another
    /// kind of command. openraft has one answer type for every entry, so
    /// only this run-time check can tell; it would be a bug in `apply`.
    #[error("the state machine answered a {command} with {outcome:?}")]
    UnexpectedOutcome {
        /// The command's kind.
        command: &'static str,
        /// The answer.
        outcome: Outcome,
    },
}

impl From<ProposeError> for GrantError {
    fn from(e: ProposeError) -> GrantError {
        match e {
            e @ ProposeError::NoCommit { .. } => GrantError::Unavailable(Cause::new(e)),
            e => GrantError::Storage(Cause::new(e)),
        }
    }
}

/// Proposes commands for one node: locally when it leads, forwarded to
/// the leader otherwise.
pub(crate) struct Proposer {
    instance: Arc<Instance>,
    // Commands waiting for this leader's next write (group commit).
    queue: Arc<Queue<LeaderError>>,
    channels: Channels,
    config: Config,
    // Set while this leader hands leadership over: new proposals wait, so
    // no replication traffic renews the followers' leader lease.
    transferring: AtomicBool,
    // The time a grant records for operators (see `Deps::clock`).
    clock: Option<fn() -> u64>,
}

impl Proposer {
    /// Proposes through `instance`, reaching other nodes over `channels`,
    /// within `config`'s grant timeout.
    pub(crate) fn new(instance: Arc<Instance>, channels: Channels, config: Config) -> Proposer {
        Proposer {
            instance,
            queue: Arc::default(),
            channels,
            config,
            transferring: AtomicBool::new(false),
            clock: None,
        }
    }

    /// Records `clock`'s time in every grant this node proposes.
    pub(crate) fn with_clock(mut self, clock: Option<fn() -> u64>) -> Proposer {
        self.clock = clock;
        self
    }

    /// Pauses (true) or resumes (false) local proposals.
    pub(crate) fn set_transferring(&self, on: bool) {
        self.transferring.store(on, Ordering::SeqCst);
    }

    /// Decides `attempt` for `chain_id` through the cluster.
    ///
    /// # Errors
    ///
    /// `Unavailable` without a leader and a commit within the grant
    /// timeout; `Storage` when this node's store has failed.
    pub(crate) async fn grant(
        &self,
        chain_id: &str,
        attempt: Attempt,
    ) -> Result<Verdict, GrantError> {
        if let Some(fault) = self.instance.fault() {
            return Err(ProposeError::Fault(fault).into());
        }
        // Fast path: exactly these bytes were already granted here, so the
        // signature is the one already released; no new entry is needed.
        {
            let applied = self.instance.applied();
            if let Some(state) = applied.chains.get(chain_id)
                && state.position == Some(attempt.position)
                && !state.sign_bytes.is_empty()
                && state.sign_bytes == attempt.sign_bytes
            {
                return Ok(Verdict::Sign(state.sign_bytes.clone()));
            }
        }
        let command = Command::Grant {
            chain_id: chain_id.to_string(),
            attempt,
            served: Some(Served {
                node: self.instance.id(),
                at_ms: self.clock.map(|now| now()),
            }),
        };
        match self.propose(command).await? {
            Outcome::Granted(verdict) => Ok(verdict),
            outcome => Err(ProposeError::UnexpectedOutcome {
                command: "grant",
                outcome,
            }
            .into()),
        }
    }

    /// Raises `chain_id`'s watermark to `state` for `by`; the inner result
    /// is the state machine's answer.
    ///
    /// # Errors
    ///
    /// As for [`Proposer::grant`].
    pub(crate) async fn raise(
        &self,
        chain_id: &str,
        state: SignState,
        by: Raiser,
    ) -> Result<Result<(), Refusal>, GrantError> {
        if let Some(fault) = self.instance.fault() {
            return Err(ProposeError::Fault(fault).into());
        }
        let command = Command::Raise {
            chain_id: chain_id.to_string(),
            state,
            by,
        };
        match self.propose(command).await? {
            Outcome::Raised(result) => Ok(result),
            outcome => Err(ProposeError::UnexpectedOutcome {
                command: "raise",
                outcome,
            }
            .into()),
        }
    }

    /// Proposes `command` if this node leads, and waits for it to apply
    /// until `deadline`: the grant's own, so time already spent finding
    /// the leader counts against the same bound.
    ///
    /// # Errors
    ///
    /// Not the leader, a storage fault, or no commit in time.
    pub(crate) async fn propose_local(
        &self,
        command: Command,
        deadline: Instant,
    ) -> Result<Outcome, LeaderError> {
        if let Some(fault) = self.instance.fault() {
            return Err(LeaderError::Fault(fault));
        }
        // A leadership transfer pauses new proposals for at most half the
        // remaining time, so the new leader still has the rest.
        let paused_until = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        while self.transferring.load(Ordering::SeqCst) && Instant::now() < paused_until {
            sleep_until_or(paused_until, Duration::from_millis(10)).await;
        }
        if let Some(_writing) = self.queue.claim_idle() {
            let started = Instant::now();
            let result = write(&self.instance, command, deadline).await;
            crate::metrics::global().stage(Stage::Queue, Duration::ZERO);
            crate::metrics::global().stage(Stage::Commit, started.elapsed());
            return result;
        }
        let outcome = self.queue.push(command, deadline);
        match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LeaderError::Abandoned),
            Err(_) => Err(LeaderError::Timeout),
        }
    }

    fn leader_addr(&self, leader: NodeId, metrics: &RaftMetrics) -> Option<String> {
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|m| m.addr.clone())
            .or_else(|| self.config.peer_addr(leader).map(str::to_string))
    }

    /// The deadline of a grant or forwarded command that starts now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.config.grant_timeout_ms)
    }

    /// Gets `command` committed and applied through whichever node leads,
    /// within one grant timeout end to end: every wait below (for a
    /// leader, a forward, a local commit, a pause) ends by `deadline`.
    async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        let deadline = self.deadline();
        let pause = Duration::from_millis(self.config.heartbeat_interval_ms);
        let id = self.instance.id();
        let mut hint: Option<(NodeId, String)> = None;
        let mut last = TryError::NoLeader;
        for _ in 0..MAX_PROPOSALS {
            if let Some(fault) = self.instance.fault() {
                return Err(ProposeError::Fault(fault));
            }
            let (leader, addr) = match hint.take() {
                Some(h) => h,
                None => match self.wait_leader(deadline).await {
                    Some(found) => found,
                    None => break,
                },
            };
            let missed = if leader == id {
                match self.propose_local(command.clone(), deadline).await {
                    Ok(outcome) => return Ok(outcome),
                    Err(LeaderError::NotLeader { leader: next }) => Missed::NotLeader(next),
                    // This node's own disk failed: no other node can help.
                    Err(e) if e.is_storage() => return Err(ProposeError::Storage(e)),
                    Err(e) => Missed::Failed(TryError::Local(e)),
                }
            } else {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let known = self.known_leader();
                // A leader that hangs (stopped, cut off) would hold the
                // forward until the grant times out: follow a newly known
                // leader instead. Dropping the call is safe: if the old
                // leader commits it after all, a grant of the same bytes
                // at the same position is granted again.
                tokio::select! {
                    forwarded = network::forward(&self.channels, &addr, remaining, &command) => {
                        match forwarded {
                            Ok(Ok(outcome)) => return Ok(outcome),
                            Ok(Err(ForwardError::NotLeader { leader: next })) => {
                                Missed::NotLeader(next)
                            }
                            Ok(Err(e)) => Missed::Failed(TryError::Remote(e)),
                            Err(e) => Missed::Failed(TryError::Unreachable(e)),
                        }
                    }
                    Some(next) = self.leader_change(known, leader, deadline) => {
                        tracing::debug!(from = leader, to = next.0, "new leader; forwarding there");
                        hint = Some(next);
                        last = TryError::NotLeader(leader);
                        continue;
                    }
                }
            };
            match missed {
                Missed::NotLeader(next) => {
                    last = TryError::NotLeader(leader);
                    // Follow a hint only if it names someone else; a stale
                    // self-reference would loop.
                    hint = next
                        .filter(|(next_id, _)| *next_id != leader)
                        .map(|(next_id, member)| (next_id, member.addr));
                    if hint.is_none() {
                        sleep_until_or(deadline, pause).await;
                    }
                }
                // The leader's disk failed, it lost its quorum, or it is
                // gone: it steps down, so wait for the next one.
                Missed::Failed(e) => {
                    last = e;
                    let known = self.known_leader();
                    tokio::select! {
                        () = sleep_until_or(deadline, pause) => {}
                        Some(next) = self.leader_change(known, leader, deadline) => hint = Some(next),
                    }
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(ProposeError::NoCommit {
            within_ms: self.config.grant_timeout_ms,
            last,
        })
    }

    /// The leader this node's Raft metrics name now.
    fn known_leader(&self) -> Option<NodeId> {
        self.instance.raft().metrics().borrow().current_leader
    }

    /// Waits until this node's Raft metrics name a leader other than
    /// `known` and `tried`, or `deadline`.
    async fn leader_change(
        &self,
        known: Option<NodeId>,
        tried: NodeId,
        deadline: Instant,
    ) -> Option<(NodeId, String)> {
        self.wait_leader_where(deadline, |leader| Some(leader) != known && leader != tried)
            .await
    }

    /// Waits until some node is known to lead, or `deadline`.
    async fn wait_leader(&self, deadline: Instant) -> Option<(NodeId, String)> {
        self.wait_leader_where(deadline, |_| true).await
    }

    /// Waits until this node's Raft metrics name a leader that `accept`
    /// takes (and whose address is known), or `deadline`. Follows the
    /// instance the supervisor puts in place of a stopped one.
    async fn wait_leader_where(
        &self,
        deadline: Instant,
        accept: impl Fn(NodeId) -> bool,
    ) -> Option<(NodeId, String)> {
        loop {
            let raft = self.instance.raft();
            let mut rx = raft.metrics();
            loop {
                let found = {
                    let metrics = rx.borrow_and_update();
                    metrics
                        .current_leader
                        .filter(|leader| accept(*leader))
                        .and_then(|leader| {
                            self.leader_addr(leader, &metrics)
                                .map(|addr| (leader, addr))
                        })
                };
                if found.is_some() {
                    return found;
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    // The instance stopped; the supervisor replaces it.
                    Ok(Err(_)) => break,
                    Err(_) => return None,
                }
            }
            let pause = Duration::from_millis(self.config.heartbeat_interval_ms);
            sleep_until_or(deadline, pause).await;
            if Instant::now() >= deadline {
                return None;
            }
        }
    }
}

impl Proposer {
    /// The node's writer, until `shutdown`: each write carries every
    /// command waiting when it starts, as one entry, and answers each with
    /// its own outcome; a command that arrives during a write goes into the
    /// next one.
    pub(crate) fn writer(
        &self,
        mut shutdown: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let instance = self.instance.clone();
        let queue = self.queue.clone();
        async move {
            loop {
                write_batches(&instance, &queue).await;
                tokio::select! {
                    () = queue.pushed() => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Writes what `queue` holds, batch after batch, until it is empty.
async fn write_batches(instance: &Instance, queue: &Queue<LeaderError>) {
    while let Some((_writing, batch)) = queue.next_batch() {
        let started = Instant::now();
        let mut deadline = started;
        let mut commands = Vec::with_capacity(batch.len());
        let mut answers = Vec::with_capacity(batch.len());
        for waiter in batch {
            crate::metrics::global().stage(Stage::Queue, started - waiter.queued);
            deadline = deadline.max(waiter.deadline);
            commands.push(waiter.command);
            answers.push(waiter.answer);
        }
        let count = commands.len();
        let result = write(instance, group_commit::entry(commands), deadline).await;
        crate::metrics::global().stage(Stage::Commit, started.elapsed());
        match result.map(|outcome| group_commit::split(outcome, count)) {
            Ok(Some(outcomes)) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            // The entry committed but its outcome does not fit the
            // commands: nothing may be signed on it.
            Ok(None) => {
                tracing::error!(count, "a batch's outcome does not match its commands");
                for answer in answers {
                    let _ = answer.send(Ok(Outcome::None));
                }
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Proposes `command` on this node's Raft instance and waits until it is
/// committed and applied, or `deadline`.
async fn write(
    instance: &Instance,
    command: Command,
    deadline: Instant,
) -> Result<Outcome, LeaderError> {
    let raft = instance.raft();
    let written = tokio::time::timeout_at(deadline, raft.client_write(command)).await;
    match written {
        Ok(Ok(resp)) => Ok(resp.data),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(LeaderError::NotLeader {
                leader: f.leader_id.zip(f.leader_node),
            })
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(LeaderError::Membership(e))
        }
        Ok(Err(RaftError::Fatal(Fatal::StorageError(e)))) => Err(LeaderError::Storage(e)),
        Ok(Err(RaftError::Fatal(f))) => match instance.fault() {
            Some(fault) => Err(LeaderError::Fault(fault)),
            None => Err(LeaderError::Stopped(f)),
        },
        Err(_) => Err(LeaderError::Timeout),
    }
}

/// How one try of a proposal missed.
enum Missed {
    /// The node asked does not lead; its hint, if any.
    NotLeader(Option<(NodeId, Member)>),
    /// It leads (or led) but did not commit.
    Failed(TryError),
}

async fn sleep_until_or(deadline: Instant, pause: Duration) {
    tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
}
