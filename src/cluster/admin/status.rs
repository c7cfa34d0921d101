//! What a node reports about itself and the cluster: [`Status`], which
//! `quorumkms cluster status` prints and the drills, the demo and the
//! tests read; and [`LEADER_ADDR`], where a follower reports the leader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cluster::instance::Instance;
use crate::cluster::types::{RaiseRecord, SignedRecord};
use crate::keys::loss::KeyLoss;
use crate::watermark::Position;

/// The metadata key carrying the leader's address on a not-leader answer.
pub const LEADER_ADDR: &str = "leader-addr";

/// One member as the node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: u64,
    /// Cluster address.
    pub addr: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// The last log index replicated to it (reported by the leader only).
    #[serde(default)]
    pub matched_index: Option<u64>,
    /// Entries it is behind this node's last log index: known for every
    /// member on the leader (from `matched_index`), for itself elsewhere
    /// (entries not yet applied).
    #[serde(default)]
    pub lag: Option<u64>,
    /// Whether this node's last probe reached it (itself: it has no
    /// storage fault); `None` before the first probe or without probes.
    #[serde(default)]
    pub reachable: Option<bool>,
    /// The last probe's round trip, when it answered.
    #[serde(default)]
    pub rtt_ms: Option<u64>,
    /// Why the last probe failed.
    #[serde(default)]
    pub probe_error: Option<String>,
}

/// One validator connection of the reporting node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorStatus {
    /// The chain it runs.
    pub chain_id: String,
    /// Its address as configured.
    pub addr: String,
    /// Whether this node holds an open connection to it.
    pub connected: bool,
}

/// One chain's watermark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// The last granted position.
    pub position: Option<Position>,
    /// The validator node owning `position.height`, if ownership is on.
    pub owner: Option<String>,
    /// The last raise applied to this chain: an operator's import, or the
    /// floor taken before its first grant.
    #[serde(default)]
    pub last_raise: Option<RaiseRecord>,
    /// The last signature the log granted: which node served it, when and
    /// for which validator node.
    #[serde(default)]
    pub last_signed: Option<SignedRecord>,
}

/// What one node reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub node_id: u64,
    /// Raft role: Leader, Follower, Candidate, Learner or Shutdown.
    pub role: String,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Last applied index.
    pub applied_index: Option<u64>,
    /// Whether this node can expect grants to commit.
    pub has_quorum_leader: bool,
    /// A storage fault keeping this node from signing.
    pub storage_fault: Option<String>,
    /// Members by id.
    pub members: Vec<MemberStatus>,
    /// Watermarks by chain.
    pub chains: BTreeMap<String, ChainStatus>,
    /// This node's validator connections (those it has dialled so far).
    #[serde(default)]
    pub validators: Vec<ValidatorStatus>,
    /// Whether a drill has made this node's keys fail on purpose.
    #[serde(default)]
    pub key_loss_simulated: bool,
    /// The cluster this node belongs to (32 hex digits); none while it
    /// waits for `cluster init` or, started with `--join`, to be added.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// This node's wall clock when it answered (ms since the Unix epoch):
    /// `doctor` compares it with its own to estimate clock offsets.
    #[serde(default)]
    pub time_unix_ms: Option<u64>,
    /// How many more voters the cluster can lose and keep a majority,
    /// counting every voter not known to be down (see `reachable`); `None`
    /// when fewer than a majority are up.
    #[serde(default)]
    pub can_lose_voters: Option<u64>,
    /// Each chain's consensus public key on this node (hex), so `doctor`
    /// can check every node holds the same key.
    #[serde(default)]
    pub public_keys: BTreeMap<String, String>,
}

static PUBLIC_KEYS: std::sync::Mutex<BTreeMap<String, String>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Records the public key this process signs `chain` with, for its status.
pub fn publish_key(chain: &str, public_key: &crate::keys::PublicKey) {
    PUBLIC_KEYS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(chain.to_string(), hex::encode(public_key.as_bytes()));
}

/// How many more of `voters` can fail, with `up` of them up, before fewer
/// than a majority are left; `None` when fewer are up already.
pub fn can_lose(voters: usize, up: usize) -> Option<u64> {
    let majority = voters / 2 + 1;
    up.checked_sub(majority).map(|n| n as u64)
}

impl Status {
    pub(crate) fn of(instance: &Instance, key_loss: &KeyLoss) -> Status {
        let metrics = instance.metrics();
        let applied = instance.applied();
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        let seen = instance.peers_seen();
        let last_log = metrics.last_log_index.unwrap_or(0);
        let members: Vec<MemberStatus> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, member)| {
                let matched_index = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .and_then(|l| l.as_ref())
                    .map(|l| l.index);
                let this = *id == instance.id();
                let lag = if this {
                    metrics
                        .last_applied
                        .map(|applied| last_log.saturating_sub(applied.index))
                } else if metrics.replication.is_some() {
                    Some(last_log.saturating_sub(matched_index.unwrap_or(0)))
                } else {
                    None
                };
                let probe = seen.get(id);
                MemberStatus {
                    id: *id,
                    addr: member.addr.clone(),
                    voter: voters.contains(id),
                    matched_index,
                    lag,
                    reachable: if this {
                        Some(instance.fault().is_none())
                    } else {
                        probe.map(|p| p.reachable)
                    },
                    rtt_ms: probe
                        .and_then(|p| p.rtt)
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    probe_error: probe.and_then(|p| p.error.clone()),
                }
            })
            .collect();
        let voters_up = members
            .iter()
            .filter(|m| m.voter && m.reachable != Some(false))
            .count();
        let chains = applied
            .chains
            .iter()
            .map(|(chain, state)| {
                (
                    chain.clone(),
                    ChainStatus {
                        position: state.position,
                        owner: state.owner.clone(),
                        last_raise: applied.raises.get(chain).cloned(),
                        last_signed: applied.last_signed.get(chain).cloned(),
                    },
                )
            })
            .collect();
        Status {
            node_id: instance.id(),
            role: format!("{:?}", metrics.state),
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|id| id.index),
            has_quorum_leader: instance.has_quorum_leader(),
            storage_fault: instance.fault().map(|fault| fault.to_string()),
            members,
            chains,
            validators: crate::metrics::global()
                .validators()
                .into_iter()
                .map(|(chain_id, addr, connected)| ValidatorStatus {
                    chain_id,
                    addr,
                    connected,
                })
                .collect(),
            key_loss_simulated: key_loss.is_lost(),
            cluster_id: instance.identity().cluster_id().map(|id| id.to_string()),
            time_unix_ms: Some(crate::cluster::deps::system_clock_ms()),
            can_lose_voters: can_lose(voters.len(), voters_up),
            public_keys: PUBLIC_KEYS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
