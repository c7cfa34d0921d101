//! Hostile peers: simulated hosts that speak the cluster's gRPC protocol to
//! the signer nodes and try to change their state without being members.
//!
//! Each holds one certificate ([`net::certificate`]): none ([`ANONYMOUS`]),
//! a node certificate for a node that is no member ([`STRANGER`]: a
//! removed node's certificate never revoked), or a member's node id in
//! another cluster that shares the CA ([`TWIN`]). A peer learns the
//! cluster id the way a real one can, from the header every answer
//! carries, and sends, on the fault plan's order:
//!
//! - [`Attack::Snapshot`]: a vote request and an InstallSnapshot in a term
//!   far above the cluster's, whose state lowers every watermark;
//! - [`Attack::Raise`]: a raise of a chain to height `i64::MAX`, forwarded
//!   like a follower's command and through the admin API (forced);
//! - [`Attack::WrongCluster`]: a vote request and an AppendEntries that
//!   would overwrite the log, with another cluster's id.
//!
//! None of it may have an effect: [`forged_effect`] finds the marks the
//! forged state leaves (its term, its height, its sentinel chain) in
//! anything a node writes to its disk, and the store reports each as a
//! violation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership, Vote};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::cluster::forward;
use crate::cluster::identity::{CLUSTER_ID_HEADER, ClusterId, caller_id};
use crate::cluster::network::{dialer, endpoint};
use crate::cluster::pb;
use crate::cluster::pb::admin_client::AdminClient;
use crate::cluster::pb::cluster_client::ClusterClient;
use crate::cluster::state_machine::AppliedState;
use crate::cluster::store::MetaKey;
use crate::cluster::types::typ::{Entry, SnapshotMeta};
use crate::cluster::types::{Command, Member, NodeId, Raiser, TypeConfig};
use crate::watermark::{Position, SignState, Step};

use super::net::{self, SimTransport};
use super::trace::{Trace, now};

pub use super::net::{ANONYMOUS, STRANGER, TWIN};

/// The term of every forged message: far above any the cluster reaches.
pub const FORGED_TERM: u64 = 1 << 40;
/// The height of a forged raise.
pub const FORGED_HEIGHT: i64 = i64::MAX;
/// The log index a forged snapshot claims to cover.
const FORGED_INDEX: u64 = 1 << 30;
/// A chain only forged state holds.
pub const SENTINEL_CHAIN: &str = "forged-by-a-hostile-peer";
/// The id of the other cluster [`TWIN`] belongs to.
const OTHER_CLUSTER: &str = "0123456789abcdef0123456789abcdef";
/// Timeout of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The hostile hosts, each with the certificate its name says.
pub const HOSTS: [&str; 3] = [ANONYMOUS, STRANGER, TWIN];

/// What a hostile peer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// A forged InstallSnapshot (after a vote request) in a high term.
    Snapshot,
    /// A raise to [`FORGED_HEIGHT`], forwarded and through the admin API.
    Raise,
    /// Raft messages carrying another cluster's id.
    WrongCluster,
}

/// One attack on the node at `target` (`host:port`).
#[derive(Clone, Debug)]
pub struct Order {
    /// What to send.
    pub attack: Attack,
    /// The node attacked.
    pub target: String,
}

/// Where the fault plan sends a hostile host its orders.
pub type Orders = mpsc::UnboundedSender<Order>;

/// A hostile host: carries out each order it gets until the sender is
/// dropped.
pub async fn run(
    host: &'static str,
    chains: Vec<String>,
    mut orders: mpsc::UnboundedReceiver<Order>,
    trace: Trace,
) -> turmoil::Result {
    while let Some(order) = orders.recv().await {
        let answers = carry_out(host, &chains, &order).await;
        trace.event(
            now(),
            format!(
                "hostile {host} {:?} -> {}: {}",
                order.attack,
                order.target,
                answers.join("; ")
            ),
        );
    }
    Ok(())
}

/// What a node wrote that only forged input can have made, if anything.
pub fn forged_effect(key: MetaKey, bytes: &[u8]) -> Option<String> {
    match key {
        MetaKey::Vote => {
            let vote: Vote<NodeId> = serde_json::from_slice(bytes).ok()?;
            (vote.leader_id().term >= FORGED_TERM).then(|| format!("took the forged vote {vote}"))
        }
        MetaKey::Applied => {
            let state: AppliedState = serde_json::from_slice(bytes).ok()?;
            forged_state(&state)
        }
        _ => None,
    }
}

/// What in an applied state only forged input can have put there.
fn forged_state(state: &AppliedState) -> Option<String> {
    if state
        .last_applied
        .is_some_and(|id| id.leader_id.term >= FORGED_TERM)
    {
        return Some(format!(
            "applied forged state up to {:?}",
            state.last_applied
        ));
    }
    if state.chains.contains_key(SENTINEL_CHAIN) {
        return Some("installed the forged snapshot".into());
    }
    state
        .chains
        .iter()
        .find(|(_, s)| s.position.is_some_and(|p| p.height == FORGED_HEIGHT))
        .map(|(chain, _)| format!("raised {chain} to the forged height"))
}

/// A log entry only forged input can have made.
pub fn forged_entry(entry: &Entry) -> Option<String> {
    (entry.log_id.leader_id.term >= FORGED_TERM)
        .then(|| format!("appended the forged entry {}", entry.log_id))
}

fn channel(target: &str) -> Result<Channel, String> {
    let endpoint = endpoint(target)
        .map_err(|e| e.to_string())?
        .connect_timeout(net::CONNECT_TIMEOUT);
    Ok(endpoint.connect_with_connector_lazy(dialer(Arc::new(SimTransport), target)))
}

/// A request carrying `cluster` as the caller's cluster id.
fn request<T>(cluster: Option<ClusterId>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(id) = cluster
        && let Ok(value) = id.to_string().parse()
    {
        request.metadata_mut().insert(CLUSTER_ID_HEADER, value);
    }
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// What became of one call, for the trace.
fn answered<T>(what: &str, result: Result<tonic::Response<T>, tonic::Status>) -> String {
    match result {
        Ok(_) => format!("{what} answered"),
        Err(status) => format!("{what} refused ({:?}: {})", status.code(), status.message()),
    }
}

async fn timed<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<tonic::Response<T>, tonic::Status> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer")))
}

async fn carry_out(host: &str, chains: &[String], order: &Order) -> Vec<String> {
    let channel = match channel(&order.target) {
        Ok(channel) => channel,
        Err(e) => return vec![format!("no channel: {e}")],
    };
    let mut cluster = ClusterClient::new(channel.clone());
    // Every answer names the callee's cluster, refusals too.
    let learned = match timed(cluster.ping(request(None, pb::PingRequest {}))).await {
        Ok(reply) => caller_id(reply.metadata()).unwrap_or(None),
        Err(status) => caller_id(status.metadata()).unwrap_or(None),
    };
    let sender = net::certificate(host).node_id.unwrap_or(net::TWIN_ID);
    // The twin is a node of another cluster: it calls with its own id. One
    // that called with this cluster's id would be a stolen member
    // certificate, which Raft cannot tell from the member (not simulated).
    let learned = if host == TWIN {
        OTHER_CLUSTER.parse().ok()
    } else {
        learned
    };
    let mut answers = vec![format!("learned cluster id: {}", learned.is_some())];
    match order.attack {
        Attack::Snapshot => {
            answers.push(vote(&mut cluster, learned, sender).await);
            let rpc = forged_snapshot(sender, chains);
            let data = serde_json::to_vec(&rpc).unwrap_or_default();
            let result =
                timed(cluster.install_snapshot(request(learned, pb::RaftRequest { data })));
            answers.push(answered("snapshot", result.await));
        }
        Attack::Raise => {
            let chain = chains.first().cloned().unwrap_or_default();
            let state = forged_raise();
            let command = Command::Raise {
                chain_id: chain.clone(),
                state: state.clone(),
                by: Raiser::Plaintext,
            };
            if let Ok(message) = forward::request(&command) {
                let result = timed(cluster.forward(request(learned, message))).await;
                answers.push(match result {
                    Ok(reply) => format!(
                        "forwarded raise answered {:?}",
                        forward::answer(reply.get_ref())
                    ),
                    Err(status) => answered::<()>("forwarded raise", Err(status)),
                });
            }
            let mut admin = AdminClient::new(channel);
            let message = pb::RaiseRequest {
                chain_id: chain,
                state_json: serde_json::to_vec(&state).unwrap_or_default(),
                force: true,
            };
            let result = timed(admin.raise(request(learned, message))).await;
            answers.push(answered("admin raise", result));
        }
        Attack::WrongCluster => {
            let other = OTHER_CLUSTER.parse().ok();
            answers.push(vote(&mut cluster, other, sender).await);
            let rpc = forged_append(sender, chains);
            let data = serde_json::to_vec(&rpc).unwrap_or_default();
            let result = timed(cluster.append_entries(request(other, pb::RaftRequest { data })));
            answers.push(answered("append", result.await));
        }
    }
    answers
}

fn forged_log_id(sender: NodeId, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(FORGED_TERM, sender), index)
}

/// Asks for the callee's vote in the forged term, with a log that looks
/// far ahead.
async fn vote(
    cluster: &mut ClusterClient<Channel>,
    id: Option<ClusterId>,
    sender: NodeId,
) -> String {
    let rpc = VoteRequest::<NodeId>::new(
        Vote::new(FORGED_TERM, sender),
        Some(forged_log_id(sender, FORGED_INDEX)),
    );
    let data = serde_json::to_vec(&rpc).unwrap_or_default();
    answered(
        "vote",
        timed(cluster.vote(request(id, pb::RaftRequest { data }))).await,
    )
}

/// A state a hostile peer would like a chain to hold.
fn forged_raise() -> SignState {
    SignState {
        position: Some(Position {
            height: FORGED_HEIGHT,
            round: 0,
            step: Step::Precommit,
        }),
        ..SignState::default()
    }
}

/// A snapshot from `sender` as leader that puts every chain back to
/// height 1, and adds the sentinel chain.
fn forged_snapshot(sender: NodeId, chains: &[String]) -> InstallSnapshotRequest<TypeConfig> {
    let log_id = forged_log_id(sender, FORGED_INDEX);
    let nodes = BTreeMap::from([(
        sender,
        Member {
            addr: format!("{}:7000", net::STRANGER),
        },
    )]);
    let membership = StoredMembership::new(
        Some(log_id),
        Membership::new(vec![BTreeSet::from([sender])], nodes),
    );
    let lowered = SignState {
        position: Some(Position {
            height: 1,
            round: 0,
            step: Step::Prevote,
        }),
        ..SignState::default()
    };
    let state = AppliedState {
        last_applied: Some(log_id),
        membership: membership.clone(),
        chains: chains
            .iter()
            .map(String::as_str)
            .chain([SENTINEL_CHAIN])
            .map(|chain| (chain.to_string(), lowered.clone()))
            .collect(),
        raises: BTreeMap::new(),
        last_signed: BTreeMap::new(),
        recent_grants: BTreeMap::new(),
    };
    InstallSnapshotRequest {
        vote: Vote::new_committed(FORGED_TERM, sender),
        meta: SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: membership,
            snapshot_id: format!("forged-{sender}"),
        },
        offset: 0,
        data: serde_json::to_vec(&state).unwrap_or_default(),
        done: true,
    }
}

/// An AppendEntries from `sender` as leader that would replace the log
/// from index 1 with a raise to the forged height, and commit it.
fn forged_append(sender: NodeId, chains: &[String]) -> AppendEntriesRequest<TypeConfig> {
    let log_id = forged_log_id(sender, 1);
    let entry = Entry {
        log_id,
        payload: EntryPayload::Normal(Command::Raise {
            chain_id: chains.first().cloned().unwrap_or_default(),
            state: forged_raise(),
            by: Raiser::Plaintext,
        }),
    };
    AppendEntriesRequest {
        vote: Vote::new_committed(FORGED_TERM, sender),
        prev_log_id: None,
        entries: vec![entry],
        leader_commit: Some(log_id),
    }
}
