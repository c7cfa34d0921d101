//! This node's Raft instance as the rest of the node sees it: the current
//! instance (the supervisor replaces it after a storage fault), the fault
//! while it stands, the applied state the state machine publishes, and the
//! cluster the node belongs to.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::Peer;
use super::error::Error;
use super::identity::Identity;
use super::state_machine::AppliedState;
use super::types::typ::{Fatal, InitializeError, Raft, RaftError, RaftMetrics};
use super::types::{Member, NodeId};

/// Why this node's Raft instance is down. While a fault stands the node
/// refuses to grant, and neither leads nor votes.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Fault {
    /// The instance stopped with a fatal error (a storage failure).
    #[error("{0}")]
    Stopped(#[source] Box<Fatal>),
    /// The instance went away without a reason.
    #[error("raft instance stopped")]
    Gone,
    /// Rebuilding it from the store failed.
    #[error("{0}")]
    Rebuild(#[source] Arc<Error>),
}

/// The current Raft instance of one node, its fault, and its applied state.
pub(crate) struct Instance {
    id: NodeId,
    // A leader that heard from no quorum for this long has lost its lease.
    lease: Duration,
    raft: RwLock<Raft>,
    fault: Mutex<Option<Fault>>,
    applied: watch::Sender<Arc<AppliedState>>,
    identity: Arc<Identity>,
    // When a leader's AppendEntries (or heartbeat) was last accepted here.
    leader_contact: Mutex<Option<Instant>>,
    peers: Mutex<BTreeMap<NodeId, PeerSeen>>,
}

/// What this node last learnt of a peer by probing it (see `probe`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerSeen {
    /// Whether the last probe got an answer.
    pub(crate) reachable: bool,
    /// When the last probe ended.
    pub(crate) checked: std::time::Instant,
    /// The last answered probe's round trip.
    pub(crate) rtt: Option<Duration>,
    /// Why the last probe failed.
    pub(crate) error: Option<String>,
}

impl Instance {
    /// Node `id` running `raft`, whose state machine publishes to
    /// `applied`, in the cluster `identity` names; `lease` is the election
    /// timeout's upper bound.
    pub(crate) fn new(
        id: NodeId,
        lease: Duration,
        raft: Raft,
        applied: watch::Sender<Arc<AppliedState>>,
        identity: Arc<Identity>,
    ) -> Instance {
        Instance {
            id,
            lease,
            raft: RwLock::new(raft),
            fault: Mutex::new(None),
            applied,
            identity,
            leader_contact: Mutex::new(None),
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records that a leader's AppendEntries was accepted just now.
    pub(crate) fn heard_from_leader(&self) {
        *self
            .leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// When a leader's AppendEntries was last accepted here, if ever.
    pub(crate) fn leader_contact(&self) -> Option<Instant> {
        *self
            .leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Records a probe of `peer`.
    pub(crate) fn set_peer_seen(&self, peer: NodeId, seen: PeerSeen) {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, seen);
    }

    /// What the probes last found, by peer.
    pub(crate) fn peers_seen(&self) -> BTreeMap<NodeId, PeerSeen> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The cluster this node belongs to.
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This node's Raft id.
    pub(crate) fn id(&self) -> NodeId {
        self.id
    }

    /// The current Raft instance (do not keep it: it is replaced after a
    /// storage fault).
    pub(crate) fn raft(&self) -> Raft {
        self.raft.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts a rebuilt instance in place of a failed one.
    pub(crate) fn replace(&self, raft: Raft) {
        *self.raft.write().unwrap_or_else(|p| p.into_inner()) = raft;
    }

    /// The current Raft metrics.
    pub(crate) fn metrics(&self) -> RaftMetrics {
        self.raft().metrics().borrow().clone()
    }

    /// The storage fault keeping the instance down, if any.
    pub(crate) fn fault(&self) -> Option<Fault> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records (`Some`) or clears (`None`) a fault.
    pub(crate) fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// The applied state machine: every chain's watermark.
    pub(crate) fn applied(&self) -> Arc<AppliedState> {
        self.applied.borrow().clone()
    }

    /// Follows the applied state machine.
    pub(crate) fn watch_applied(&self) -> watch::Receiver<Arc<AppliedState>> {
        self.applied.subscribe()
    }

    /// Whether this node can expect a grant to commit: it leads and heard
    /// from a quorum within an election timeout, or it follows a leader it
    /// has not given up on.
    pub(crate) fn has_quorum_leader(&self) -> bool {
        if self.fault().is_some() {
            return false;
        }
        let raft = self.raft();
        let metrics = raft.metrics();
        let m = metrics.borrow();
        if m.running_state.is_err() {
            return false;
        }
        // A node removed from the cluster (or not yet added) stops serving
        // validators, even while it still remembers a leader.
        if m.membership_config
            .membership()
            .get_node(&self.id)
            .is_none()
        {
            return false;
        }
        match m.current_leader {
            Some(leader) if leader == self.id => {
                m.state == ServerState::Leader
                    && m.millis_since_quorum_ack
                        .is_some_and(|ms| u128::from(ms) <= self.lease.as_millis())
            }
            // A follower drops its leader (and becomes a candidate) once the
            // leader has been silent for an election timeout.
            Some(_) => true,
            None => false,
        }
    }

    /// Bootstraps the cluster with `peers` as voters. Returns `false` (and
    /// changes nothing) if this node already holds cluster state.
    ///
    /// # Errors
    ///
    /// Raft failed.
    pub(crate) async fn initialize(&self, peers: &[Peer]) -> Result<bool, Error> {
        let members: BTreeMap<NodeId, Member> = peers
            .iter()
            .map(|p| {
                (
                    p.id,
                    Member {
                        addr: p.addr.clone(),
                    },
                )
            })
            .collect();
        match self.raft().initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(Error::Initialize(Box::new(e))),
        }
    }
}
