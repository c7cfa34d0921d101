//! Membership changes, run on the leader: add a learner, promote it once
//! caught up, remove a node without losing a healthy majority, move
//! leadership, and take a snapshot; also the operator's linearizable read
//! of the watermarks.
//!
//! Safe by default:
//! - a new node joins as a learner and becomes a voter only when its
//!   replicated index is within [`MAX_PROMOTE_LAG`] entries of the leader's
//!   log;
//! - a removal is refused when the voters left would not hold a healthy
//!   majority (healthy: the leader itself, or a voter that answers a ping
//!   and whose replicated index is within [`MAX_PROMOTE_LAG`]), and the
//!   leader is not removed while it leads; `force` overrides both.
//!
//! openraft 0.9 has no leadership transfer. `transfer_leader` does it in
//! three steps: the leader pauses its heartbeats and new proposals, waits
//! until its followers' leader lease (the election timeout's upper bound)
//! has run out, then asks the target to start an election. The target has
//! the leader's full log, and the other followers' own election timers run
//! for the lease plus an election timeout, so the target normally wins. If
//! another node wins the race instead, leadership still moved and the
//! result says so.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use tokio::time::Instant;

use super::config::{Config, is_host_port};
use super::instance::Instance;
use super::network::{self, Channels};
use super::propose::Proposer;
use super::state_machine::AppliedState;
use super::types::typ::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, Raft, RaftError, RaftMetrics,
};
use super::types::{Member, NodeId};

/// Most entries a learner may lag the leader by and still be promoted; also
/// the lag a voter may have and still count as healthy.
pub const MAX_PROMOTE_LAG: u64 = 100;
/// How long a liveness probe may take.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a membership change was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// This node does not lead; the leader, if known, with its address.
    #[error("not the leader{}", .leader.as_ref().map(|(id, addr)| format!("; the leader is node {id} at {addr}")).unwrap_or_default())]
    NotLeader {
        /// The leader and its address.
        leader: Option<(NodeId, String)>,
    },
    /// The change would be unsafe or makes no sense.
    #[error("refused: {0}")]
    Refused(String),
    /// Raft could not make the change.
    #[error("failed: {0}")]
    Failed(String),
}

/// What membership changes work on: this node's Raft instance, its
/// proposer (paused while leadership moves) and its channels to the others.
#[derive(Clone)]
pub(crate) struct Membership {
    instance: Arc<Instance>,
    proposer: Arc<Proposer>,
    channels: Channels,
    config: Config,
}

impl Membership {
    /// Changes made through `instance`, with `config`'s timeouts.
    pub(crate) fn new(
        instance: Arc<Instance>,
        proposer: Arc<Proposer>,
        channels: Channels,
        config: Config,
    ) -> Membership {
        Membership {
            instance,
            proposer,
            channels,
            config,
        }
    }

    fn raft(&self) -> Raft {
        self.instance.raft()
    }

    fn id(&self) -> NodeId {
        self.instance.id()
    }

    fn channels(&self) -> &Channels {
        &self.channels
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn set_transferring(&self, on: bool) {
        self.proposer.set_transferring(on);
    }

    fn applied(&self) -> Arc<AppliedState> {
        self.instance.applied()
    }
}

fn metrics(node: &Membership) -> RaftMetrics {
    node.instance.metrics()
}

/// Checks that this node leads, and returns its metrics.
fn leading(node: &Membership) -> Result<RaftMetrics, ChangeError> {
    let m = metrics(node);
    if m.current_leader == Some(node.id()) && m.state == openraft::ServerState::Leader {
        return Ok(m);
    }
    let leader = m.current_leader.and_then(|id| {
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|member| (id, member.addr.clone()))
    });
    Err(ChangeError::NotLeader { leader })
}

fn voters(m: &RaftMetrics) -> BTreeSet<NodeId> {
    m.membership_config.membership().voter_ids().collect()
}

fn is_member(m: &RaftMetrics, id: NodeId) -> bool {
    m.membership_config.membership().get_node(&id).is_some()
}

/// How far `id`'s replicated index lags the leader's last log index.
fn lag(m: &RaftMetrics, id: NodeId) -> Option<u64> {
    let last = m.last_log_index.unwrap_or(0);
    let matched = m.replication.as_ref()?.get(&id)?.as_ref()?.index;
    Some(last.saturating_sub(matched))
}

/// Raft's not-the-leader answer, with the leader's address when known.
fn not_leader(f: ForwardToLeader) -> ChangeError {
    ChangeError::NotLeader {
        leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
    }
}

fn raft_error(e: RaftError<ClientWriteError>) -> ChangeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ChangeError::Refused(e.to_string())
        }
        RaftError::Fatal(f) => ChangeError::Failed(f.to_string()),
    }
}

/// Adds node `id` at `addr` as a learner. Returns once the change is
/// committed; the learner then catches up in the background.
///
/// # Errors
///
/// Not the leader, `id` already a member, or Raft failed.
pub(crate) async fn add_learner(
    node: &Membership,
    id: NodeId,
    addr: &str,
) -> Result<String, ChangeError> {
    let m = leading(node)?;
    if !is_host_port(addr) {
        return Err(ChangeError::Refused(format!("{addr:?} is not host:port")));
    }
    if let Some(existing) = m.membership_config.membership().get_node(&id) {
        return Err(ChangeError::Refused(format!(
            "node {id} is already a member (at {})",
            existing.addr
        )));
    }
    if m.membership_config
        .membership()
        .nodes()
        .any(|(_, member)| member.addr == addr)
    {
        return Err(ChangeError::Refused(format!(
            "another member already uses {addr}"
        )));
    }
    let member = Member {
        addr: addr.to_string(),
    };
    node.raft()
        .add_learner(id, member, false)
        .await
        .map_err(raft_error)?;
    tracing::info!(node_id = node.id(), learner = id, %addr, "learner added");
    Ok(format!(
        "node {id} ({addr}) added as a learner; promote it once it has caught up"
    ))
}

/// Makes learner `id` a voter, if it has caught up.
///
/// # Errors
///
/// Not the leader, not a learner, lagging, or Raft failed.
pub(crate) async fn promote(node: &Membership, id: NodeId) -> Result<String, ChangeError> {
    let m = leading(node)?;
    if voters(&m).contains(&id) {
        return Err(ChangeError::Refused(format!(
            "node {id} is already a voter"
        )));
    }
    if !is_member(&m, id) {
        return Err(ChangeError::Refused(format!(
            "node {id} is not a learner; add it first (cluster add-learner)"
        )));
    }
    match lag(&m, id) {
        None => {
            return Err(ChangeError::Refused(format!(
                "node {id} has not replicated anything yet; is it running?"
            )));
        }
        Some(behind) if behind > MAX_PROMOTE_LAG => {
            return Err(ChangeError::Refused(format!(
                "node {id} is {behind} entries behind the leader (more than {MAX_PROMOTE_LAG}); wait and retry"
            )));
        }
        Some(_) => {}
    }
    node.raft()
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(raft_error)?;
    tracing::info!(node_id = node.id(), voter = id, "learner promoted");
    Ok(format!("node {id} is now a voter"))
}

/// Whether voter `id` answers and keeps up, as the leader sees it.
async fn healthy(node: &Membership, m: &RaftMetrics, id: NodeId) -> bool {
    if id == node.id() {
        return true;
    }
    if lag(m, id).is_none_or(|behind| behind > MAX_PROMOTE_LAG) {
        return false;
    }
    let Some(member) = m.membership_config.membership().get_node(&id) else {
        return false;
    };
    matches!(
        network::ping(node.channels(), &member.addr, PING_TIMEOUT).await,
        Ok(answered) if answered == id
    )
}

/// Removes node `id` (a learner or a voter).
///
/// # Errors
///
/// Not the leader, not a member, unsafe without `force`, or Raft failed.
pub(crate) async fn remove(
    node: &Membership,
    id: NodeId,
    force: bool,
) -> Result<String, ChangeError> {
    let m = leading(node)?;
    if !is_member(&m, id) {
        return Err(ChangeError::Refused(format!("node {id} is not a member")));
    }
    let all_voters = voters(&m);
    let change = if all_voters.contains(&id) {
        let left: Vec<NodeId> = all_voters.iter().copied().filter(|v| *v != id).collect();
        if left.is_empty() {
            return Err(ChangeError::Refused(format!("node {id} is the last voter")));
        }
        if id == node.id() && !force {
            return Err(ChangeError::Refused(format!(
                "node {id} is the leader; move leadership first (cluster transfer-leader) or use --force"
            )));
        }
        let mut ok = 0;
        let mut unhealthy = Vec::new();
        for voter in &left {
            if healthy(node, &m, *voter).await {
                ok += 1;
            } else {
                unhealthy.push(voter.to_string());
            }
        }
        if ok * 2 <= left.len() && !force {
            return Err(ChangeError::Refused(format!(
                "without node {id}, only {ok} of {} voters are healthy (unhealthy: {}); that is no majority. Use --force to remove it anyway",
                left.len(),
                unhealthy.join(", ")
            )));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    node.raft()
        .change_membership(change, false)
        .await
        .map_err(raft_error)?;
    tracing::info!(node_id = node.id(), removed = id, force, "node removed");
    Ok(format!(
        "node {id} removed from the cluster; stop its process now"
    ))
}

/// Moves leadership to voter `id` (see the module docs).
///
/// # Errors
///
/// Not the leader, not a healthy voter, or no leader change in time.
pub(crate) async fn transfer_leader(node: &Membership, id: NodeId) -> Result<String, ChangeError> {
    let m = leading(node)?;
    if id == node.id() {
        return Ok(format!("node {id} already leads"));
    }
    if !voters(&m).contains(&id) {
        return Err(ChangeError::Refused(format!("node {id} is not a voter")));
    }
    if !healthy(node, &m, id).await {
        return Err(ChangeError::Refused(format!(
            "node {id} does not answer or lags the leader"
        )));
    }
    let addr = m
        .membership_config
        .membership()
        .get_node(&id)
        .map(|member| member.addr.clone())
        .ok_or_else(|| ChangeError::Refused(format!("node {id} has no address")))?;
    let config = node.config();
    let lease = Duration::from_millis(config.election_timeout_max_ms);
    let margin = Duration::from_millis(config.election_timeout_min_ms / 3);
    let raft = node.raft();
    let pause = TransferPause::start(node);
    tokio::time::sleep(lease + margin).await;
    let asked = network::elect(node.channels(), &addr, lease).await;
    // Wait for any new leader, up to two election rounds.
    let deadline = Instant::now() + lease * 4;
    let mut rx = raft.metrics();
    let mut now_leads = None;
    while Instant::now() < deadline {
        let leader = rx.borrow_and_update().current_leader;
        if leader.is_some_and(|l| l != node.id()) {
            now_leads = leader;
            break;
        }
        let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
    }
    drop(pause);
    if let Err(e) = asked {
        return Err(ChangeError::Failed(format!(
            "could not ask node {id} to run: {e}"
        )));
    }
    match now_leads {
        Some(leader) if leader == id => Ok(format!("node {id} now leads")),
        Some(leader) => Err(ChangeError::Failed(format!(
            "leadership moved to node {leader} instead of {id}; retry"
        ))),
        None => Err(ChangeError::Failed(format!(
            "node {id} did not take over in time; node {} still leads",
            node.id()
        ))),
    }
}

/// Heartbeats and local proposals paused for a leadership transfer.
/// Dropping it resumes both, so a transfer whose admin call is cancelled
/// (the client gave up and the server dropped the call) never leaves a
/// leader that neither heartbeats nor proposes.
struct TransferPause<'a> {
    node: &'a Membership,
    raft: Raft,
}

impl<'a> TransferPause<'a> {
    fn start(node: &'a Membership) -> TransferPause<'a> {
        let raft = node.raft();
        node.set_transferring(true);
        raft.runtime_config().heartbeat(false);
        TransferPause { node, raft }
    }
}

impl Drop for TransferPause<'_> {
    fn drop(&mut self) {
        self.raft.runtime_config().heartbeat(true);
        self.node.set_transferring(false);
    }
}

/// Builds a snapshot on this node and waits (briefly) for it.
///
/// # Errors
///
/// Raft failed, or no snapshot appeared in time.
pub(crate) async fn snapshot(node: &Membership) -> Result<String, ChangeError> {
    let raft = node.raft();
    let applied = raft.metrics().borrow().last_applied.map(|l| l.index);
    raft.trigger()
        .snapshot()
        .await
        .map_err(|e| ChangeError::Failed(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rx = raft.metrics();
    loop {
        let snap = rx.borrow_and_update().snapshot.map(|l| l.index);
        if snap.is_some() && snap >= applied {
            return Ok(format!(
                "node {}: snapshot at log index {}",
                node.id(),
                snap.unwrap_or(0)
            ));
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Err(ChangeError::Failed(format!(
                "node {}: no snapshot within 5 s",
                node.id()
            )));
        }
    }
}

/// Every chain's watermark as of now: read on the leader after it has
/// confirmed its leadership with a quorum and applied everything committed
/// before the read. A follower's applied state may lag, and an export that
/// lagged would hand the next signer a watermark below what the cluster
/// already signed.
///
/// # Errors
///
/// This node does not lead, or cannot confirm it within the grant timeout.
pub(crate) async fn read_committed(node: &Membership) -> Result<Arc<AppliedState>, ChangeError> {
    let timeout = Duration::from_millis(node.config().grant_timeout_ms);
    match tokio::time::timeout(timeout, node.raft().ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(node.applied()),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => Err(not_leader(f)),
        Ok(Err(e)) => Err(ChangeError::Failed(format!(
            "node {}: cannot confirm the watermarks are current: {e}",
            node.id()
        ))),
        Err(_) => Err(ChangeError::Failed(format!(
            "node {}: no quorum confirmed the read within {} ms",
            node.id(),
            timeout.as_millis()
        ))),
    }
}
