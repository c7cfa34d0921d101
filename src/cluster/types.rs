//! The cluster's Raft vocabulary: openraft's type configuration, the
//! commands the log carries, the outcomes the state machine answers with,
//! and short aliases so the rest of the module never spells out generics.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::watermark::{Attempt, Position, Refusal, SignState, Verdict};

/// A Raft node id.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for quorumkms.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = super::runtime::Runtime,
);

/// What a cluster member is to Raft: where its cluster RPCs go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// host:port of the member's cluster gRPC service.
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// A state-machine command: the only things the log can ask for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Decide a sign attempt under the double-sign rules.
    Grant {
        /// The chain whose watermark decides.
        chain_id: String,
        /// The attempt.
        attempt: Attempt,
        /// Which node proposed it and when (for operators only: the rules
        /// never read it). Absent in entries logged before it was added.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        served: Option<Served>,
    },
    /// Raise a chain's watermark to an imported state (never lower it).
    Raise {
        /// The chain to raise.
        chain_id: String,
        /// The imported state.
        state: SignState,
        /// Who asked for it. A [`Raiser::Floor`] raise applies only to a
        /// chain that has no watermark yet.
        #[serde(default)]
        by: Raiser,
    },
    /// Commands proposed on the leader while its previous write was in
    /// flight, applied in order as one entry: they share one log append and
    /// its fsync on every node (group commit). Never nested.
    Batch(Vec<Command>),
}

impl Command {
    /// The command's kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Grant { .. } => "grant",
            Command::Raise { .. } => "raise",
            Command::Batch(_) => "batch",
        }
    }
}

/// The node that proposed a grant, and when by its own clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The node whose session asked for the grant.
    pub node: NodeId,
    /// Its wall clock at the proposal, in milliseconds since the Unix
    /// epoch; absent where the node has no clock to report (simulation).
    #[serde(default)]
    pub at_ms: Option<u64>,
}

/// The last signature the log granted on a chain: who served it, when, for
/// which validator node, at which log index and position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    /// The node that proposed the grant, if the entry says.
    pub node: Option<NodeId>,
    /// When, by that node's clock (ms since the Unix epoch).
    pub at_ms: Option<u64>,
    /// The validator node that asked (with height ownership on).
    pub validator: Option<String>,
    /// The log index of the grant's entry.
    pub index: u64,
    /// The position signed.
    pub position: Position,
}

/// Who raised a chain's watermark.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Raiser {
    /// A raise logged before raises named who made them.
    #[default]
    Unrecorded,
    /// An operator through the admin API, known by the certificate the
    /// cluster's mutual TLS verified.
    Operator {
        /// The certificate's serial number (hex).
        serial: String,
        /// The certificate's common name.
        subject: String,
    },
    /// An operator on a plaintext cluster port (loopback, or
    /// `insecure_plaintext`), where no certificate names anyone.
    Plaintext,
    /// A chain's floor, taken before its first grant.
    Floor {
        /// Where it came from: `rpc URL` or `first request`.
        source: String,
    },
}

impl fmt::Display for Raiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raiser::Unrecorded => f.write_str("unrecorded"),
            Raiser::Operator { serial, subject } => {
                write!(f, "operator certificate {serial} ({subject})")
            }
            Raiser::Plaintext => f.write_str("plaintext operator (no certificate)"),
            Raiser::Floor { source } => write!(f, "floor from {source}"),
        }
    }
}

/// The last raise applied to a chain: who made it, at which log index,
/// to which position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaiseRecord {
    /// Who asked for it.
    pub by: Raiser,
    /// The log index of its entry.
    pub index: u64,
    /// The position the watermark was raised to.
    pub position: Option<Position>,
}

impl fmt::Display for RaiseRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let position = self
            .position
            .map_or_else(|| "empty".to_string(), |p| p.to_string());
        write!(f, "to {position} by {} at index {}", self.by, self.index)
    }
}

/// The state machine's answer to one applied entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The verdict on a [`Command::Grant`].
    Granted(Verdict),
    /// The result of a [`Command::Raise`].
    Raised(Result<(), Refusal>),
    /// The outcomes of a [`Command::Batch`]'s commands, in order.
    Batch(Vec<Outcome>),
    /// Blank and membership entries answer nothing.
    None,
}

/// Aliases for openraft's generic types under [`TypeConfig`].
pub mod typ {
    use super::{Member, NodeId, TypeConfig};

    /// A running Raft instance.
    pub type Raft = openraft::Raft<TypeConfig>;
    /// A log entry.
    pub type Entry = openraft::Entry<TypeConfig>;
    /// A log id.
    pub type LogId = openraft::LogId<NodeId>;
    /// A vote.
    pub type Vote = openraft::Vote<NodeId>;
    /// Membership as stored with a log id.
    pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
    /// Snapshot metadata.
    pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
    /// A snapshot.
    pub type Snapshot = openraft::Snapshot<TypeConfig>;
    /// A storage error as openraft wants it.
    pub type StorageError = openraft::StorageError<NodeId>;
    /// Raft metrics.
    pub type RaftMetrics = openraft::RaftMetrics<NodeId, Member>;
    /// An error from a Raft API call.
    pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
    /// A failed RPC, as the network reports it to openraft.
    pub type RPCError<E = openraft::error::Infallible> =
        openraft::error::RPCError<NodeId, Member, RaftError<E>>;
    /// A client write's error.
    pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Member>;
    /// The leader hint in a refused write.
    pub type ForwardToLeader = openraft::error::ForwardToLeader<NodeId, Member>;
    /// Why a membership change was refused.
    pub type ChangeMembershipError = openraft::error::ChangeMembershipError<NodeId>;
    /// Why a leader could not confirm its leadership for a read.
    pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, Member>;
    /// Initialization's error.
    pub type InitializeError = openraft::error::InitializeError<NodeId, Member>;
    /// An error that stopped a Raft instance.
    pub type Fatal = openraft::error::Fatal<NodeId>;
}
