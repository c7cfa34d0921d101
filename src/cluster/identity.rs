//! Which cluster a node belongs to.
//!
//! `cluster init` makes a random [`ClusterId`], gives it to every
//! configured peer (the `Adopt` RPC) and only then bootstraps Raft; a node
//! that joins later learns it from the leader. Each node keeps it in its
//! store, durably, before it takes any Raft state, so a store with Raft
//! state always has one. Every node-to-node call carries the caller's id in
//! the [`CLUSTER_ID_HEADER`] metadata and every answer the callee's; either
//! side refuses the other cluster's.
//!
//! That stops two mistakes Raft cannot see by itself:
//! - a store from another cluster (a restored backup of an older cluster,
//!   a directory a wipe-and-reinit missed) whose log looks more up to date
//!   and would win an election, overwriting committed grants;
//! - a voter whose store was lost or wiped: it has forgotten its vote, so
//!   it could vote twice in one term. A node with an empty store holds no
//!   id and takes no part in any cluster until `cluster init` gives it one,
//!   or it is started with `--join`. Then it takes the id only from a
//!   leader that counts it as a learner ([`MEMBER_ROLE_HEADER`]): the
//!   operator removes the wiped voter, adds it back as a learner and
//!   promotes it once it has caught up. Called as a member without
//!   `--join`, it stops with an error that says so.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::async_runtime::AsyncRuntime;
use rand::RngCore;
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::runtime::Runtime;
use super::store::{Backend, BackendError, MetaKey};
use super::types::NodeId;

/// The metadata key carrying a cluster id: the caller's on a request, the
/// callee's on an answer.
pub const CLUSTER_ID_HEADER: &str = "quorumkms-cluster-id";

/// The metadata key on a leader's Raft RPC saying what the callee is in
/// the leader's committed membership: `voter` or `learner`.
pub const MEMBER_ROLE_HEADER: &str = "quorumkms-member-role";

/// A cluster's id: 128 random bits, written as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId([u8; 16]);

impl ClusterId {
    /// A new random id (from the cluster's runtime RNG, which a simulation
    /// seeds).
    pub fn random() -> ClusterId {
        let mut bytes = [0; 16];
        Runtime::thread_rng().fill_bytes(&mut bytes);
        ClusterId(bytes)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({self})")
    }
}

/// A cluster id that is not 32 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a cluster id is 32 hex digits, not {0:?}")]
pub struct ParseClusterIdError(String);

impl FromStr for ClusterId {
    type Err = ParseClusterIdError;

    fn from_str(s: &str) -> Result<ClusterId, ParseClusterIdError> {
        let mut bytes = [0; 16];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseClusterIdError(s.to_string()))?;
        Ok(ClusterId(bytes))
    }
}

/// What a node is in the leader's committed membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRole {
    /// It votes.
    Voter,
    /// It replicates the log and does not vote.
    Learner,
}

impl MemberRole {
    /// The [`MEMBER_ROLE_HEADER`] value.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        }
    }

    fn parse(s: &str) -> Option<MemberRole> {
        match s {
            "voter" => Some(MemberRole::Voter),
            "learner" => Some(MemberRole::Learner),
            _ => None,
        }
    }
}

/// Which node-to-node RPC a request is: only a leader's log replication
/// can make a joining node take the cluster's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// AppendEntries (also the heartbeat).
    AppendEntries,
    /// InstallSnapshot.
    InstallSnapshot,
    /// Vote, Forward, Ping, Elect.
    Other,
}

/// Why a node cannot run with its store.
#[derive(Clone, Debug, thiserror::Error)]
pub enum IdentityError {
    /// Raft state without a cluster id: nothing written by this version
    /// leaves a store like that.
    #[error(
        "the store holds Raft state but no cluster id; it was not written by this version of quorumkms. Move it aside and start the node with --join to rejoin its cluster"
    )]
    Unidentified,
    /// The stored id does not parse.
    #[error("the store's cluster id is damaged: {0}")]
    Damaged(String),
    /// The store cannot be read or written.
    #[error("storage: {0}")]
    Storage(#[from] BackendError),
    /// A member of a running cluster calls this node, whose store is
    /// empty, and it was not started with `--join`.
    #[error(
        "node {node_id} has an empty store, but a node of cluster {cluster_id} calls it as a member. If this node's store was lost or wiped, it must not vote again: remove it (`quorumkms cluster remove {node_id}`), restart it with `quorumkms start --join`, add it as a learner (`quorumkms cluster add-learner {node_id} ADDR`) and promote it once it has caught up. If this node is new, to be part of a new cluster, the caller runs on an old store: stop it and wipe that store"
    )]
    EmptyStoreCalled {
        /// This node.
        node_id: NodeId,
        /// The caller's cluster.
        cluster_id: ClusterId,
    },
}

/// Why a node did not take a cluster id it was offered.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AdoptError {
    /// It belongs to another cluster.
    #[error("cluster id mismatch: node {node_id} belongs to {mine}, not to {offered}")]
    Mismatch {
        /// This node.
        node_id: NodeId,
        /// Its cluster.
        mine: ClusterId,
        /// The one offered.
        offered: ClusterId,
    },
    /// It was started with `--join`, to join a running cluster.
    #[error(
        "node {node_id} was started with --join: it joins a running cluster as a learner and takes no part in `cluster init`"
    )]
    Joining {
        /// This node.
        node_id: NodeId,
    },
    /// The id could not be stored.
    #[error("node {node_id}: storing the cluster id failed: {source}")]
    Storage {
        /// This node.
        node_id: NodeId,
        /// The cause.
        source: BackendError,
    },
}

/// What the node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// It belongs to this cluster.
    Bound(ClusterId),
    /// Its store is empty; `joining` when started with `--join`.
    Unbound { joining: bool },
}

/// A node's cluster id, and the rules for taking one.
pub struct Identity {
    node_id: NodeId,
    backend: Arc<dyn Backend>,
    held: Mutex<Held>,
    published: watch::Sender<Option<ClusterId>>,
    fatal: watch::Sender<Option<IdentityError>>,
    // The last refusal logged, so a leader retrying does not flood the log.
    last_refusal: Mutex<String>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("held", &*self.held())
            .finish_non_exhaustive()
    }
}

/// Whether `backend` holds no Raft state at all.
fn is_empty(backend: &dyn Backend) -> Result<bool, BackendError> {
    if backend.log_last()?.is_some() {
        return Ok(false);
    }
    for key in [
        MetaKey::Vote,
        MetaKey::Committed,
        MetaKey::Purged,
        MetaKey::Applied,
        MetaKey::Snapshot,
    ] {
        if backend.meta_get(key)?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn failed(message: impl Into<String>) -> Status {
    Status::failed_precondition(message.into())
}

impl Identity {
    /// Node `node_id`'s identity as its store holds it; `join` when it was
    /// started with `--join`.
    ///
    /// # Errors
    ///
    /// The store cannot be read, its id is damaged, or it holds Raft state
    /// without an id.
    pub fn load(
        node_id: NodeId,
        backend: Arc<dyn Backend>,
        join: bool,
    ) -> Result<Identity, IdentityError> {
        let held = match backend.meta_get(MetaKey::ClusterId)? {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let id = text
                    .parse()
                    .map_err(|e: ParseClusterIdError| IdentityError::Damaged(e.to_string()))?;
                if join {
                    tracing::info!(node_id, cluster_id = %id, "the store already belongs to a cluster; --join changes nothing");
                }
                Held::Bound(id)
            }
            None if is_empty(backend.as_ref())? => {
                if join {
                    tracing::info!(
                        node_id,
                        "empty store: waiting to be added to a cluster as a learner"
                    );
                } else {
                    tracing::info!(
                        node_id,
                        "empty store: waiting for `cluster init` (a node of a running cluster whose store was lost must be started with --join)"
                    );
                }
                Held::Unbound { joining: join }
            }
            None => return Err(IdentityError::Unidentified),
        };
        let id = match held {
            Held::Bound(id) => Some(id),
            Held::Unbound { .. } => None,
        };
        Ok(Identity {
            node_id,
            backend,
            held: Mutex::new(held),
            published: watch::channel(id).0,
            fatal: watch::channel(None).0,
            last_refusal: Mutex::new(String::new()),
        })
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // Every change below replaces the whole value after its write, so
        // a poisoned lock still holds a consistent one.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster this node belongs to, if any yet.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        *self.published.borrow()
    }

    /// Follows [`Identity::cluster_id`].
    pub fn watch(&self) -> watch::Receiver<Option<ClusterId>> {
        self.published.subscribe()
    }

    /// Whether the node waits, with an empty store, to join as a learner.
    pub fn joining(&self) -> bool {
        matches!(*self.held(), Held::Unbound { joining: true })
    }

    /// Stores `id` as this node's cluster, durably, under the lock.
    fn store(&self, held: &mut Held, id: ClusterId) -> Result<(), BackendError> {
        self.backend
            .meta_put(vec![(MetaKey::ClusterId, id.to_string().into_bytes())])?;
        *held = Held::Bound(id);
        self.published.send_replace(Some(id));
        Ok(())
    }

    /// Takes `offered` as this node's cluster id (`cluster init`, here or
    /// on the node that runs it), unless it already belongs to another or
    /// was started to join; with `dry_run`, only says whether it would.
    ///
    /// # Errors
    ///
    /// Another id, `--join`, or the store failed.
    pub(crate) fn adopt(&self, offered: ClusterId, dry_run: bool) -> Result<(), AdoptError> {
        let node_id = self.node_id;
        let mut held = self.held();
        match *held {
            Held::Bound(mine) if mine == offered => Ok(()),
            Held::Bound(mine) => Err(AdoptError::Mismatch {
                node_id,
                mine,
                offered,
            }),
            Held::Unbound { joining: true } => Err(AdoptError::Joining { node_id }),
            Held::Unbound { joining: false } if dry_run => Ok(()),
            Held::Unbound { joining: false } => {
                self.store(&mut held, offered)
                    .map_err(|source| AdoptError::Storage { node_id, source })?;
                tracing::info!(node_id, cluster_id = %offered, "this node belongs to a new cluster");
                Ok(())
            }
        }
    }

    /// Admits a node-to-node `request` of kind `rpc` if the caller belongs
    /// to this node's cluster; a node joining with `--join` takes the
    /// cluster's id from a leader replicating to it as a learner.
    ///
    /// # Errors
    ///
    /// `failed_precondition` saying why not; `invalid_argument` for an id
    /// that does not parse.
    #[allow(clippy::result_large_err)]
    pub(crate) fn admit<T>(&self, request: &Request<T>, rpc: Rpc) -> Result<(), Status> {
        let node_id = self.node_id;
        let caller = caller_id(request.metadata())?;
        let mut held = self.held();
        let refusal = match (*held, caller) {
            (Held::Bound(mine), Some(caller)) if mine == caller => return Ok(()),
            (Held::Bound(mine), Some(caller)) => {
                format!("cluster id mismatch: this node belongs to {mine}, caller to {caller}")
            }
            (_, None) => {
                return Err(failed(format!(
                    "the caller sent no cluster id ({CLUSTER_ID_HEADER}); node {node_id} answers members of its own cluster only"
                )));
            }
            (Held::Unbound { joining: false }, Some(caller)) => {
                let error = IdentityError::EmptyStoreCalled {
                    node_id,
                    cluster_id: caller,
                };
                let message = error.to_string();
                self.fatal.send_if_modified(|fatal| {
                    let first = fatal.is_none();
                    if first {
                        tracing::error!(node_id, "{message}");
                        *fatal = Some(error);
                    }
                    first
                });
                return Err(failed(message));
            }
            (Held::Unbound { joining: true }, Some(caller)) => {
                let role = request
                    .metadata()
                    .get(MEMBER_ROLE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(MemberRole::parse);
                match (rpc, role) {
                    (Rpc::AppendEntries | Rpc::InstallSnapshot, Some(MemberRole::Learner)) => {
                        self.store(&mut held, caller).map_err(|e| {
                            Status::unavailable(format!(
                                "node {node_id}: storing the cluster id failed: {e}"
                            ))
                        })?;
                        tracing::info!(node_id, cluster_id = %caller, "joined the cluster as a learner");
                        return Ok(());
                    }
                    (_, Some(MemberRole::Voter)) => format!(
                        "node {node_id} has an empty store but is a voter of cluster {caller}: it may only join as a learner. Remove it (`quorumkms cluster remove {node_id}`), then add it as a learner (`quorumkms cluster add-learner {node_id} ADDR`)"
                    ),
                    _ => format!(
                        "node {node_id} is joining and is not a learner of cluster {caller} yet (`quorumkms cluster add-learner {node_id} ADDR`)"
                    ),
                }
            }
        };
        drop(held);
        self.log_refusal(&refusal);
        Err(failed(refusal))
    }

    /// Logs `refusal` unless it is the one logged last.
    fn log_refusal(&self, refusal: &str) {
        let mut last = self.last_refusal.lock().unwrap_or_else(|p| p.into_inner());
        if *last != refusal {
            tracing::warn!(node_id = self.node_id, "refused a call: {refusal}");
            refusal.clone_into(&mut last);
        }
    }

    /// Waits until the node must stop: a running cluster called it as a
    /// member while its store is empty and it was not started to join.
    pub async fn wait_fatal(&self) -> IdentityError {
        let mut fatal = self.fatal.subscribe();
        loop {
            if let Some(error) = fatal.borrow_and_update().clone() {
                return error;
            }
            // The sender lives as long as `self`.
            if fatal.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The cluster id a caller (or callee) put in `metadata`, if any.
///
/// # Errors
///
/// `invalid_argument` for one that does not parse.
#[allow(clippy::result_large_err)]
pub(crate) fn caller_id(metadata: &MetadataMap) -> Result<Option<ClusterId>, Status> {
    let Some(value) = metadata.get(CLUSTER_ID_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Status::invalid_argument(format!("{CLUSTER_ID_HEADER} is not text")))?;
    text.parse()
        .map(Some)
        .map_err(|e: ParseClusterIdError| Status::invalid_argument(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::store::MemBackend;

    fn request(id: Option<ClusterId>, role: Option<MemberRole>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(id) = id {
            request
                .metadata_mut()
                .insert(CLUSTER_ID_HEADER, id.to_string().parse().unwrap());
        }
        if let Some(role) = role {
            request
                .metadata_mut()
                .insert(MEMBER_ROLE_HEADER, role.as_str().parse().unwrap());
        }
        request
    }

    #[test]
    fn ids_print_and_parse() {
        let id = ClusterId::random();
        assert_eq!(id.to_string().len(), 32);
        assert_eq!(id.to_string().parse::<ClusterId>(), Ok(id));
        assert!("xyz".parse::<ClusterId>().is_err());
        assert_ne!(ClusterId::random(), id);
    }

    #[test]
    fn a_bound_node_admits_its_own_cluster_only() {
        let disk = MemBackend::new();
        let identity = Identity::load(1, Arc::new(disk.clone()), false).unwrap();
        let (a, b) = (ClusterId::random(), ClusterId::random());
        identity.adopt(a, false).unwrap();
        assert_eq!(identity.cluster_id(), Some(a));
        // Stored: a restart finds it.
        let again = Identity::load(1, Arc::new(disk), false).unwrap();
        assert_eq!(again.cluster_id(), Some(a));

        assert!(identity.admit(&request(Some(a), None), Rpc::Other).is_ok());
        let refused = identity
            .admit(&request(Some(b), None), Rpc::AppendEntries)
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            refused.message(),
            format!("cluster id mismatch: this node belongs to {a}, caller to {b}")
        );
        let refused = identity
            .admit(&request(None, None), Rpc::Other)
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(matches!(
            identity.adopt(b, false),
            Err(AdoptError::Mismatch { .. })
        ));
        assert_eq!(identity.cluster_id(), Some(a));
    }

    #[tokio::test]
    async fn an_empty_store_called_by_a_cluster_stops_the_node() {
        let identity = Identity::load(3, Arc::new(MemBackend::new()), false).unwrap();
        let id = ClusterId::random();
        let refused = identity
            .admit(
                &request(Some(id), Some(MemberRole::Voter)),
                Rpc::AppendEntries,
            )
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("--join"), "{refused:?}");
        assert!(matches!(
            identity.wait_fatal().await,
            IdentityError::EmptyStoreCalled { node_id: 3, cluster_id } if cluster_id == id
        ));
        assert_eq!(identity.cluster_id(), None);
    }

    #[test]
    fn a_joining_node_takes_the_id_only_as_a_learner_from_replication() {
        let identity = Identity::load(4, Arc::new(MemBackend::new()), true).unwrap();
        let id = ClusterId::random();
        for (role, rpc) in [
            (Some(MemberRole::Voter), Rpc::AppendEntries),
            (None, Rpc::AppendEntries),
            (Some(MemberRole::Learner), Rpc::Other),
        ] {
            let refused = identity.admit(&request(Some(id), role), rpc).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
            assert_eq!(identity.cluster_id(), None, "{role:?} {rpc:?}");
        }
        let voter = identity
            .admit(
                &request(Some(id), Some(MemberRole::Voter)),
                Rpc::InstallSnapshot,
            )
            .unwrap_err();
        assert!(voter.message().contains("cluster remove 4"), "{voter:?}");
        assert!(matches!(
            identity.adopt(id, true),
            Err(AdoptError::Joining { node_id: 4 })
        ));
        identity
            .admit(
                &request(Some(id), Some(MemberRole::Learner)),
                Rpc::AppendEntries,
            )
            .unwrap();
        assert_eq!(identity.cluster_id(), Some(id));
        assert!(!identity.joining());
    }

    #[test]
    fn raft_state_without_an_id_is_refused() {
        let disk = MemBackend::new();
        disk.meta_put(vec![(MetaKey::Vote, b"{}".to_vec())])
            .unwrap();
        assert!(matches!(
            Identity::load(1, Arc::new(disk), false),
            Err(IdentityError::Unidentified)
        ));
    }

    #[test]
    fn a_dry_run_stores_nothing() {
        let identity = Identity::load(2, Arc::new(MemBackend::new()), false).unwrap();
        let id = ClusterId::random();
        identity.adopt(id, true).unwrap();
        assert_eq!(identity.cluster_id(), None);
        identity.adopt(id, false).unwrap();
        assert_eq!(identity.cluster_id(), Some(id));
    }
}
