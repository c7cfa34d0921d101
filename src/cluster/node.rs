//! One running cluster node: [`run_node`] builds it from a config and its
//! seams, and [`Node`] is the cloneable handle the rest of quorumkms uses.
//!
//! Besides the Raft instance and the gRPC server, a node runs a supervisor.
//! openraft stops a Raft instance for good on any storage error; the
//! supervisor notices (through the instance's metrics), records the fault,
//! and rebuilds the instance from the store with a growing backoff, so a
//! node whose disk filled up comes back on its own once the disk has room.
//! While the fault stands, the node refuses to grant (`GrantError::Storage`)
//! and, since its Raft instance is down, it neither leads nor votes.
//!
//! # Invariant
//!
//! `grant` returns `Verdict::Sign(bytes)` only from a committed, applied
//! entry's outcome, or from the applied state when that already holds
//! exactly `bytes` at the attempt's position (the same signature again).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::network::{self, Channels, ForwardError, ForwardResult, NetworkFactory, ServerIo};
use super::service::ClusterService;
use super::state_machine::{AppliedState, StateMachine};
use super::store::{Backend, LogStore, MetaKey};
use super::types::typ::{Raft, RaftMetrics};
use super::types::{Command, Member, NodeId, Outcome};
use super::{Config, Deps, Error, StoreChoice, pb, runtime};
use futures_util::future::BoxFuture;

use crate::grant::{GrantError, Granter};
use crate::watermark::{Attempt, Refusal, SignState, Verdict};

/// Entries between snapshots. Snapshots are a few hundred bytes, so this
/// mostly bounds how much log a restarted node replays.
const SNAPSHOT_EVERY: u64 = 500;
/// Log entries kept behind a snapshot, for lagging followers.
const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 50;
/// Most proposals a grant makes (following leader hints) before giving up,
/// even inside its timeout.
const MAX_PROPOSALS: usize = 16;
/// First and longest delay before rebuilding a failed Raft instance.
const REBUILD_BACKOFF_MIN: Duration = Duration::from_millis(100);
const REBUILD_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An instance that fails again sooner than this after a rebuild keeps the
/// backoff growing (a disk that is still full).
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// What the server, the supervisor and every [`Node`] clone share.
pub(crate) struct Shared {
    id: NodeId,
    config: Config,
    local_addr: String,
    raft_config: Arc<openraft::Config>,
    raft: RwLock<Raft>,
    backend: Arc<dyn Backend>,
    channels: Channels,
    applied_tx: watch::Sender<Arc<AppliedState>>,
    // The last storage failure, while the Raft instance is down because of
    // it. `None` when healthy.
    fault: Mutex<Option<String>>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    // Set while this leader hands leadership over: new proposals wait, so
    // no replication traffic renews the followers' leader lease.
    transferring: AtomicBool,
    // Flipped by the admin API to rehearse an HSM failure.
    key_loss: crate::keys::loss::KeyLoss,
}

impl Shared {
    /// The current Raft instance (it changes when the supervisor rebuilds).
    pub(crate) fn raft(&self) -> Raft {
        self.raft.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn id(&self) -> NodeId {
        self.id
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Pauses (true) or resumes (false) local proposals.
    pub(crate) fn set_transferring(&self, on: bool) {
        self.transferring.store(on, Ordering::SeqCst);
    }

    /// The switch that simulates the loss of this node's keys.
    pub(crate) fn key_loss(&self) -> &crate::keys::loss::KeyLoss {
        &self.key_loss
    }

    /// The applied state machine.
    pub(crate) fn applied(&self) -> Arc<AppliedState> {
        self.applied_tx.borrow().clone()
    }

    /// The storage fault keeping the Raft instance down, if any.
    pub(crate) fn current_fault(&self) -> Option<String> {
        self.fault()
    }

    /// See [`Node::has_quorum_leader`].
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
                        .is_some_and(|ms| ms <= self.config.election_timeout_max_ms)
            }
            // A follower drops its leader (and becomes a candidate) once the
            // leader has been silent for an election timeout.
            Some(_) => true,
            None => false,
        }
    }

    fn fault(&self) -> Option<String> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_fault(&self, fault: Option<String>) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    fn grant_timeout(&self) -> Duration {
        Duration::from_millis(self.config.grant_timeout_ms)
    }

    /// Proposes `command` if this node leads, and waits for it to apply.
    pub(crate) async fn propose_local(&self, command: Command) -> ForwardResult {
        if let Some(fault) = self.fault() {
            return Err(ForwardError::Storage(fault));
        }
        let paused_until = Instant::now() + self.grant_timeout() / 2;
        while self.transferring.load(Ordering::SeqCst) && Instant::now() < paused_until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let raft = self.raft();
        let write = raft.client_write(command);
        match tokio::time::timeout(self.grant_timeout(), write).await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ForwardError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node),
                })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ForwardError::Unavailable(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(Fatal::StorageError(e)))) => {
                Err(ForwardError::Storage(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => match self.fault() {
                Some(fault) => Err(ForwardError::Storage(fault)),
                None => Err(ForwardError::Unavailable(f.to_string())),
            },
            Err(_) => Err(ForwardError::Unavailable("commit timed out".into())),
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

    /// Gets `command` committed and applied through whichever node leads.
    async fn propose(&self, command: Command) -> Result<Outcome, GrantError> {
        let deadline = Instant::now() + self.grant_timeout();
        let pause = Duration::from_millis(self.config.heartbeat_interval_ms);
        let mut hint: Option<(NodeId, String)> = None;
        let mut last = String::from("no leader");
        for _ in 0..MAX_PROPOSALS {
            if let Some(fault) = self.fault() {
                return Err(GrantError::Storage(fault));
            }
            let (leader, addr) = match hint.take() {
                Some(h) => h,
                None => match self.wait_leader(deadline).await {
                    Some(found) => found,
                    None => break,
                },
            };
            let result = if leader == self.id {
                self.propose_local(command.clone()).await
            } else {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match network::forward(&self.channels, &addr, remaining, &command).await {
                    Ok(result) => result,
                    Err(e) => Err(ForwardError::Unavailable(e.to_string())),
                }
            };
            match result {
                Ok(outcome) => return Ok(outcome),
                Err(ForwardError::NotLeader { leader: next }) => {
                    last = format!("node {leader} is not the leader");
                    // Follow a hint only if it names someone else; a stale
                    // self-reference would loop.
                    hint = next
                        .filter(|(id, _)| *id != leader)
                        .map(|(id, member)| (id, member.addr));
                    if hint.is_none() {
                        sleep_until_or(deadline, pause).await;
                    }
                }
                Err(ForwardError::Storage(e)) if leader == self.id => {
                    return Err(GrantError::Storage(e));
                }
                Err(ForwardError::Storage(e)) | Err(ForwardError::Unavailable(e)) => {
                    // The leader's disk failed, it lost its quorum, or it is
                    // gone: it steps down, so wait for the next one.
                    last = e;
                    sleep_until_or(deadline, pause).await;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(GrantError::Unavailable(format!(
            "no commit within {} ms: {last}",
            self.config.grant_timeout_ms
        )))
    }

    /// Waits until some node is known to lead, or `deadline`.
    async fn wait_leader(&self, deadline: Instant) -> Option<(NodeId, String)> {
        loop {
            let raft = self.raft();
            let mut rx = raft.metrics();
            loop {
                let found = {
                    let metrics = rx.borrow_and_update();
                    metrics.current_leader.and_then(|leader| {
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

async fn sleep_until_or(deadline: Instant, pause: Duration) {
    tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
}

/// A running cluster node. Cheap to clone; call [`Node::shutdown`] to stop
/// it (dropping the handles does not).
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shared.id)
            .field("addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

fn raft_config(config: &Config) -> Result<openraft::Config, Error> {
    let raft_config = openraft::Config {
        cluster_name: "quorumkms".into(),
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        heartbeat_interval: config.heartbeat_interval_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        max_in_snapshot_log_to_keep: LOG_KEPT_BEHIND_SNAPSHOT,
        ..Default::default()
    };
    raft_config
        .validate()
        .map_err(|e| Error::Config(vec![e.to_string()]))
}

async fn build_raft(
    id: NodeId,
    raft_config: Arc<openraft::Config>,
    channels: Channels,
    backend: Arc<dyn Backend>,
    applied_tx: watch::Sender<Arc<AppliedState>>,
) -> Result<Raft, Error> {
    let log = LogStore::new(backend.clone());
    let sm = StateMachine::open(backend, applied_tx).map_err(|e| Error::Storage(e.0))?;
    Raft::new(id, raft_config, NetworkFactory::new(channels), log, sm)
        .await
        .map_err(|e| Error::Raft(e.to_string()))
}

/// The production store in `data_dir`: redb by default, sled in a build
/// with the `sled` feature (so the whole test suite can run on either).
fn open_disk_store(
    data_dir: &std::path::Path,
) -> Result<Arc<dyn Backend>, super::store::BackendError> {
    #[cfg(feature = "sled")]
    {
        let backend = super::store_sled::SledBackend::open(&data_dir.join("raft.sled"))?;
        Ok(Arc::new(backend))
    }
    #[cfg(not(feature = "sled"))]
    {
        Ok(Arc::new(super::store::RedbBackend::open(
            &data_dir.join("raft.redb"),
        )?))
    }
}

/// Starts a node: opens its store, binds its listener, starts Raft, the
/// gRPC server and the storage supervisor.
///
/// The node does not form a cluster by itself: call [`Node::initialize`]
/// once, on one node, when the cluster is first created.
///
/// # Errors
///
/// An invalid config, a store that cannot be opened, or a listener that
/// cannot be bound.
pub async fn run_node(config: Config, deps: Deps) -> Result<Node, Error> {
    config.validate().map_err(Error::Config)?;
    let raft_config = Arc::new(raft_config(&config)?);
    let backend: Arc<dyn Backend> = match deps.store {
        StoreChoice::Disk => {
            tokio::fs::create_dir_all(&config.data_dir)
                .await
                .map_err(|e| {
                    Error::Storage(format!("create {}: {e}", config.data_dir.display()))
                })?;
            open_disk_store(&config.data_dir).map_err(|e| Error::Storage(e.to_string()))?
        }
        StoreChoice::Backend(backend) => backend,
    };
    // A connect that takes longer than an election is as good as failed.
    let connect_timeout = Duration::from_millis(config.election_timeout_max_ms);
    let channels = Channels::new(deps.transport.clone(), connect_timeout);
    let listener = deps
        .transport
        .bind(config.listen.clone())
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let (applied_tx, _) = watch::channel(Arc::new(AppliedState::default()));
    let raft = build_raft(
        config.node_id,
        raft_config.clone(),
        channels.clone(),
        backend.clone(),
        applied_tx.clone(),
    )
    .await?;
    let (shutdown_tx, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        id: config.node_id,
        config,
        local_addr,
        raft_config,
        raft: RwLock::new(raft),
        backend,
        channels,
        applied_tx,
        fault: Mutex::new(None),
        shutdown_tx,
        tasks: Mutex::new(Vec::new()),
        transferring: AtomicBool::new(false),
        key_loss: crate::keys::loss::KeyLoss::default(),
    });
    let server = runtime::spawn(serve(shared.clone(), listener));
    let supervisor = runtime::spawn(supervise(shared.clone()));
    shared
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend([server, supervisor]);
    tracing::info!(node_id = shared.id, addr = %shared.local_addr, "cluster node started");
    Ok(Node { shared })
}

async fn serve(shared: Arc<Shared>, listener: Box<dyn network::Listener>) {
    let mut stop = shared.shutdown_tx.subscribe();
    let node_id = shared.id;
    let pause = Duration::from_millis(shared.config.heartbeat_interval_ms);
    // Accept errors (out of file descriptors, a reset before accept) are
    // logged and retried here, so they never end the server.
    let incoming = futures_util::stream::unfold(listener, move |mut listener| async move {
        loop {
            match listener.accept_peer().await {
                Ok((io, peer)) => {
                    return Some((Ok::<_, std::io::Error>(ServerIo(io, peer)), listener));
                }
                Err(e) => {
                    tracing::warn!(node_id, cause = %e, "accept failed");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    });
    let service = pb::cluster_server::ClusterServer::new(ClusterService::new(shared.clone()));
    let admin = pb::admin_server::AdminServer::new(super::admin::AdminService::new(shared));
    let signal = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let result = tonic::transport::Server::builder()
        .add_service(service)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    if let Err(e) = result {
        tracing::error!(node_id, cause = %e, "cluster server stopped");
    }
}

/// Rebuilds the Raft instance whenever it stops with a fatal error.
async fn supervise(shared: Arc<Shared>) {
    let mut stop = shared.shutdown_tx.subscribe();
    let mut backoff = REBUILD_BACKOFF_MIN;
    let mut built_at = Instant::now();
    loop {
        let raft = shared.raft();
        let mut metrics = raft.metrics();
        let fatal = loop {
            if *stop.borrow() {
                return;
            }
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                break fatal.to_string();
            }
            tokio::select! {
                _ = stop.changed() => {}
                changed = metrics.changed() => {
                    if changed.is_err() {
                        break "raft instance stopped".to_string();
                    }
                }
            }
        };
        if *stop.borrow() {
            return;
        }
        tracing::error!(node_id = shared.id, cause = %fatal, "raft instance failed; refusing to sign until it is rebuilt");
        shared.set_fault(Some(fatal));
        let _ = raft.shutdown().await;
        if built_at.elapsed() >= HEALTHY_AFTER {
            backoff = REBUILD_BACKOFF_MIN;
        }
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(REBUILD_BACKOFF_MAX);
            // Rebuild only once a write goes through: until then the node
            // keeps refusing, rather than flapping between a fresh instance
            // and the next failed append.
            let ready = shared.backend.recover().and_then(|()| {
                shared
                    .backend
                    .meta_put(vec![(MetaKey::Probe, b"ok".to_vec())])
            });
            let rebuilt = match ready {
                Ok(()) => {
                    build_raft(
                        shared.id,
                        shared.raft_config.clone(),
                        shared.channels.clone(),
                        shared.backend.clone(),
                        shared.applied_tx.clone(),
                    )
                    .await
                }
                Err(e) => Err(Error::Storage(e.to_string())),
            };
            match rebuilt {
                Ok(new_raft) => {
                    *shared.raft.write().unwrap_or_else(|p| p.into_inner()) = new_raft;
                    shared.set_fault(None);
                    built_at = Instant::now();
                    tracing::info!(node_id = shared.id, "raft instance rebuilt from the store");
                    break;
                }
                Err(e) => {
                    tracing::warn!(node_id = shared.id, cause = %e, "rebuild failed; retrying");
                    shared.set_fault(Some(e.to_string()));
                }
            }
        }
    }
}

impl Node {
    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The address the cluster service is bound to.
    pub fn local_addr(&self) -> &str {
        &self.shared.local_addr
    }

    /// The node's config.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Bootstraps the cluster with every configured peer as a voter.
    /// Returns `false` (and changes nothing) if this node already holds
    /// cluster state.
    ///
    /// # Errors
    ///
    /// Raft failed.
    pub async fn initialize(&self) -> Result<bool, Error> {
        let members: BTreeMap<NodeId, Member> = self
            .shared
            .config
            .peers
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
        match self.shared.raft().initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// Decides `attempt` for `chain_id` through the cluster.
    ///
    /// The cluster serves any chain id; checking it against the configured
    /// chains is the session's job, so this never returns `UnknownChain`.
    ///
    /// # Errors
    ///
    /// `Unavailable` without a leader and a commit within the grant
    /// timeout; `Storage` when this node's store has failed.
    pub async fn grant(&self, chain_id: &str, attempt: Attempt) -> Result<Verdict, GrantError> {
        if let Some(fault) = self.shared.fault() {
            return Err(GrantError::Storage(fault));
        }
        // Fast path: exactly these bytes were already granted here, so the
        // signature is the one already released; no new entry is needed.
        {
            let applied = self.shared.applied_tx.borrow();
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
        };
        match self.shared.propose(command).await? {
            Outcome::Granted(verdict) => Ok(verdict),
            other => Err(GrantError::Storage(format!(
                "state machine answered a grant with {other:?}"
            ))),
        }
    }

    /// Raises `chain_id`'s watermark to `state` (a raise-only import).
    /// The inner result is the state machine's answer: a refusal when
    /// `state` is not strictly above the current watermark.
    ///
    /// # Errors
    ///
    /// As for [`Node::grant`].
    pub async fn raise(
        &self,
        chain_id: &str,
        state: SignState,
    ) -> Result<Result<(), Refusal>, GrantError> {
        if let Some(fault) = self.shared.fault() {
            return Err(GrantError::Storage(fault));
        }
        let command = Command::Raise {
            chain_id: chain_id.to_string(),
            state,
        };
        match self.shared.propose(command).await? {
            Outcome::Raised(result) => Ok(result),
            other => Err(GrantError::Storage(format!(
                "state machine answered a raise with {other:?}"
            ))),
        }
    }

    /// The current Raft metrics.
    pub fn metrics(&self) -> RaftMetrics {
        self.shared.raft().metrics().borrow().clone()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.raft().metrics().borrow().current_leader
    }

    /// The current Raft instance. It is replaced after a storage failure,
    /// so do not keep it.
    pub fn raft(&self) -> Raft {
        self.shared.raft()
    }

    /// The applied state machine: every chain's watermark.
    pub fn applied_state(&self) -> Arc<AppliedState> {
        self.shared.applied_tx.borrow().clone()
    }

    /// Follows the applied state machine.
    pub fn watch_applied(&self) -> watch::Receiver<Arc<AppliedState>> {
        self.shared.applied_tx.subscribe()
    }

    /// The storage failure that currently stops this node, if any.
    pub fn storage_fault(&self) -> Option<String> {
        self.shared.fault()
    }

    /// The switch that simulates the loss of this node's keys (set through
    /// the admin API); wrap every key the node signs with in it.
    pub fn key_loss(&self) -> crate::keys::loss::KeyLoss {
        self.shared.key_loss().clone()
    }

    /// Whether this node can expect a grant to commit: it leads and heard
    /// from a quorum within an election timeout, or it follows a leader it
    /// has not given up on. A session uses this to decide whether to keep
    /// serving its validator.
    pub fn has_quorum_leader(&self) -> bool {
        self.shared.has_quorum_leader()
    }

    /// What `cluster status` shows for this node.
    pub fn status(&self) -> super::admin::Status {
        super::admin::Status::of(&self.shared)
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Node {
        Node { shared }
    }

    /// Stops the server, the supervisor and Raft, and waits for them.
    pub async fn shutdown(&self) {
        self.shared.shutdown_tx.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for mut task in tasks {
            // Open peer connections can hold a graceful server shutdown;
            // past a bound, the task is aborted.
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        let _ = self.shared.raft().shutdown().await;
        tracing::info!(node_id = self.shared.id, "cluster node stopped");
    }
}

impl Granter for Node {
    fn grant<'a>(
        &'a self,
        chain_id: &'a str,
        attempt: Attempt,
    ) -> BoxFuture<'a, Result<Verdict, GrantError>> {
        Box::pin(Node::grant(self, chain_id, attempt))
    }
}
