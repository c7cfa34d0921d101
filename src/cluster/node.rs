//! One running cluster node: [`run_node`] assembles it from a config and
//! its seams, and [`Node`] is the cloneable handle the rest of quorumkms
//! uses.
//!
//! A node is a Raft instance ([`instance`](super::instance)), a proposer
//! for the grant path ([`propose`](super::propose)), the gRPC server
//! ([`server`](super::server)) and the rebuild supervisor
//! ([`supervisor`](super::supervisor)). While a storage fault stands, the
//! node refuses to grant (`GrantError::Storage`) and, since its Raft
//! instance is down, it neither leads nor votes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::admin::{AdminService, Status};
use super::bootstrap::{Bootstrap, BootstrapError};
use super::build::{RaftBuilder, open_store, raft_config};
use super::config::Config;
use super::cosign::{Cosign, ThresholdSigner};
use super::deps::Deps;
use super::error::Error;
use super::failover;
use super::identity::{ClusterId, Identity};
use super::instance::Instance;
use super::keygen::{Keygen, KeygenError};
use super::membership::Membership;
use super::network::Channels;
use super::propose::Proposer;
use super::service::ClusterService;
use super::state_machine::AppliedState;
use super::store::Backend;
use super::types::typ::{Raft, RaftMetrics};
use super::types::{NodeId, Raiser};
use super::{runtime, server, supervisor};
use futures_util::future::BoxFuture;

use crate::grant::floor::{Floored, Found};
use crate::grant::{GrantError, Granter};
use crate::keys::loss::KeyLoss;
use crate::threshold::GroupSigner;
use crate::watermark::{Attempt, Refusal, SignState, Verdict};

/// A running cluster node. Cheap to clone; call [`Node::shutdown`] to stop
/// it (dropping the handles does not).
#[derive(Clone)]
pub struct Node {
    parts: Arc<Parts>,
}

/// What every [`Node`] clone holds.
struct Parts {
    config: Config,
    local_addr: String,
    instance: Arc<Instance>,
    proposer: Arc<Proposer>,
    bootstrap: Bootstrap,
    key_loss: KeyLoss,
    channels: Channels,
    cosign: Arc<Cosign>,
    keygen: Arc<Keygen>,
    // Held so the store closes when the last handle is dropped, by whoever
    // drops it, rather than in one of Raft's tasks a moment after shutdown
    // returns: a node restarted at once from the same directory must find
    // the file closed.
    _store: Arc<dyn Backend>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.parts.config.node_id)
            .field("addr", &self.parts.local_addr)
            .finish_non_exhaustive()
    }
}

/// Starts a node: opens its store, binds its listener, starts Raft, the
/// gRPC server and the storage supervisor.
///
/// The node does not form a cluster by itself: call [`Node::initialize`]
/// once, on one node, when the cluster is first created. With an empty
/// store it serves no cluster until then, or, with [`Deps::join`], until a
/// leader adds it as a learner.
///
/// # Errors
///
/// An invalid config, a store that cannot be opened, or a listener that
/// cannot be bound.
pub async fn run_node(config: Config, deps: Deps) -> Result<Node, Error> {
    config.validate().map_err(Error::Config)?;
    let raft_config = Arc::new(raft_config(&config)?);
    let backend = open_store(&config, deps.store).await?;
    let identity = Arc::new(Identity::load(config.node_id, backend.clone(), deps.join)?);
    // A connect that takes longer than an election is as good as failed.
    let connect_timeout = Duration::from_millis(config.election_timeout_max_ms);
    let channels =
        Channels::new(deps.transport.clone(), connect_timeout).following(identity.watch());
    let listen_error = |source| Error::Listen {
        addr: config.listen.clone(),
        source,
    };
    let listener = deps
        .transport
        .bind(config.listen.clone())
        .await
        .map_err(listen_error)?;
    let local_addr = listener.local_addr().map_err(listen_error)?;
    let (applied, _) = watch::channel(Arc::new(AppliedState::default()));
    let builder = RaftBuilder {
        id: config.node_id,
        raft_config,
        channels: channels.clone(),
        backend,
        applied: applied.clone(),
    };
    let raft = builder.build().await?;
    let store = builder.backend.clone();
    let instance = Arc::new(Instance::new(
        config.node_id,
        builder.lease(),
        raft,
        applied,
        identity,
    ));
    let proposer = Arc::new(
        Proposer::new(instance.clone(), channels.clone(), config.clone()).with_clock(deps.clock),
    );
    let membership = Membership::new(
        instance.clone(),
        proposer.clone(),
        channels.clone(),
        config.clone(),
    );
    let bootstrap = Bootstrap::new(instance.clone(), channels.clone(), config.clone());
    let cosign = Arc::new(Cosign::new(
        instance.clone(),
        deps.participant.clone(),
        deps.key_loss.clone(),
        // A follower learns of a commit with the leader's next message; one
        // that has not within an election timeout is too far behind to
        // wait for, and the coordinator asks another node.
        Duration::from_millis(config.election_timeout_min_ms.min(config.grant_timeout_ms)),
    ));
    let keygen = Arc::new(Keygen::new(
        instance.clone(),
        channels.clone(),
        deps.participant.clone(),
        deps.share_slots.clone(),
        Duration::from_millis(config.grant_timeout_ms),
    ));
    let cluster_service = ClusterService::new(
        instance.clone(),
        proposer.clone(),
        cosign.clone(),
        keygen.clone(),
    );
    let admin_service = AdminService::new(
        instance.clone(),
        proposer.clone(),
        membership,
        deps.key_loss.clone(),
        bootstrap.clone(),
        keygen.clone(),
    );
    let keygen_handle = keygen;
    let (shutdown_tx, _) = watch::channel(false);
    let server = runtime::spawn(server::serve(
        config.node_id,
        instance.identity().watch(),
        listener,
        cluster_service,
        admin_service,
        Duration::from_millis(config.heartbeat_interval_ms),
        shutdown_tx.subscribe(),
    ));
    let writer = runtime::spawn(proposer.writer(shutdown_tx.subscribe()));
    let failover = runtime::spawn(failover::watch(
        instance.clone(),
        failover::Timing::new(
            config.election_timeout_min_ms,
            config.election_timeout_max_ms,
            config.heartbeat_interval_ms,
        ),
        shutdown_tx.subscribe(),
    ));
    let supervisor = runtime::spawn(supervisor::supervise(
        instance.clone(),
        builder,
        shutdown_tx.subscribe(),
    ));
    tracing::info!(node_id = config.node_id, addr = %local_addr, "cluster node started");
    Ok(Node {
        parts: Arc::new(Parts {
            config,
            local_addr,
            instance,
            proposer,
            bootstrap,
            key_loss: deps.key_loss,
            channels,
            cosign,
            keygen: keygen_handle,
            _store: store,
            shutdown_tx,
            tasks: Mutex::new(vec![server, supervisor, failover, writer]),
        }),
    })
}

impl Node {
    /// The signer of `chain_id` in threshold mode: this node's share and
    /// the other members' through the share rounds, within the grant
    /// timeout. It signs nothing while this node holds no share of the
    /// chain.
    pub fn threshold_signer(&self, chain_id: &str) -> Arc<dyn GroupSigner> {
        let config = &self.parts.config;
        Arc::new(ThresholdSigner::new(
            chain_id,
            self.parts.cosign.clone(),
            self.parts.instance.clone(),
            self.parts.channels.clone(),
            Duration::from_millis(config.grant_timeout_ms),
            // A peer that takes longer than an election to answer is as
            // good as gone: ask another.
            Duration::from_millis(config.election_timeout_max_ms),
        ))
    }

    /// Runs a key generation for threshold-mode `chain_id`, coordinated
    /// by this node (what the admin API's `ThresholdDkg` does).
    ///
    /// # Errors
    ///
    /// As [`Keygen::generate`].
    pub async fn threshold_dkg(&self, chain_id: &str) -> Result<String, KeygenError> {
        self.parts.keygen.generate(chain_id).await
    }

    /// This node's Raft id.
    pub fn id(&self) -> NodeId {
        self.parts.instance.id()
    }

    /// The address the cluster service is bound to.
    pub fn local_addr(&self) -> &str {
        &self.parts.local_addr
    }

    /// The node's config.
    pub fn config(&self) -> &Config {
        &self.parts.config
    }

    /// Bootstraps a new cluster with every configured peer as a voter,
    /// giving each the new cluster's id first (see
    /// [`bootstrap`](super::bootstrap)). Returns `false` (and changes
    /// nothing) if the cluster exists already.
    ///
    /// # Errors
    ///
    /// This node was started to join, a peer does not answer or refuses,
    /// or Raft failed.
    pub async fn initialize(&self) -> Result<bool, BootstrapError> {
        self.parts.bootstrap.initialize().await
    }

    /// The cluster this node belongs to, once it knows.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.parts.instance.identity().cluster_id()
    }

    /// Waits until the node must stop: today only when a running cluster
    /// calls it as a member while its store is empty and it was not
    /// started with `--join` (a wiped or lost store must not vote again).
    /// The process then exits with this error.
    pub async fn wait_fatal(&self) -> Error {
        Error::Identity(self.parts.instance.identity().wait_fatal().await)
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
        self.parts.proposer.grant(chain_id, attempt).await
    }

    /// Raises `chain_id`'s watermark to `state` (a raise-only import) for
    /// `by`. The inner result is the state machine's answer: a refusal
    /// when `state` is not strictly above the current watermark.
    ///
    /// # Errors
    ///
    /// As for [`Node::grant`].
    pub async fn raise(
        &self,
        chain_id: &str,
        state: SignState,
        by: Raiser,
    ) -> Result<Result<(), Refusal>, GrantError> {
        self.parts.proposer.raise(chain_id, state, by).await
    }

    /// The current Raft metrics.
    pub fn metrics(&self) -> RaftMetrics {
        self.parts.instance.metrics()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.parts.instance.raft().metrics().borrow().current_leader
    }

    /// The current Raft instance. It is replaced after a storage failure,
    /// so do not keep it.
    pub fn raft(&self) -> Raft {
        self.parts.instance.raft()
    }

    /// The applied state machine: every chain's watermark.
    pub fn applied_state(&self) -> Arc<AppliedState> {
        self.parts.instance.applied()
    }

    /// Follows the applied state machine.
    pub fn watch_applied(&self) -> watch::Receiver<Arc<AppliedState>> {
        self.parts.instance.watch_applied()
    }

    /// The storage failure that currently stops this node, if any.
    pub fn storage_fault(&self) -> Option<String> {
        self.parts.instance.fault().map(|fault| fault.to_string())
    }

    /// The switch that simulates the loss of this node's keys (set through
    /// the admin API): the one the node was built with ([`Deps::key_loss`]).
    pub fn key_loss(&self) -> KeyLoss {
        self.parts.key_loss.clone()
    }

    /// Whether this node can expect a grant to commit: it leads and heard
    /// from a quorum within an election timeout, or it follows a leader it
    /// has not given up on. A session uses this to decide whether to keep
    /// serving its validator.
    pub fn has_quorum_leader(&self) -> bool {
        self.parts.instance.has_quorum_leader()
    }

    /// What `cluster status` shows for this node.
    pub fn status(&self) -> Status {
        Status::of(&self.parts.instance, &self.parts.key_loss)
    }

    /// Pings every other member each `every` so [`Node::status`] says
    /// which it reaches (`quorumkms start` turns this on; it is for
    /// operators only).
    pub fn probe_peers(&self, every: Duration) {
        let task = runtime::spawn(super::probe::run(
            self.parts.instance.clone(),
            self.parts.channels.clone(),
            every,
            self.parts.shutdown_tx.subscribe(),
        ));
        self.parts
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// Stops the server, the supervisor and Raft, and waits for them.
    pub async fn shutdown(&self) {
        self.parts.shutdown_tx.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = self
            .parts
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
        let _ = self.parts.instance.raft().shutdown().await;
        tracing::info!(node_id = self.id(), "cluster node stopped");
    }
}

impl Floored for Node {
    fn has_watermark(&self, chain_id: &str) -> bool {
        self.parts
            .instance
            .applied()
            .chains
            .get(chain_id)
            .is_some_and(|state| state.position.is_some())
    }

    fn set_floor<'a>(
        &'a self,
        chain_id: &'a str,
        found: &'a Found,
    ) -> BoxFuture<'a, Result<(), GrantError>> {
        Box::pin(async move {
            let by = Raiser::Floor {
                source: found.source.clone(),
            };
            // The state machine applies a floor only to a chain without a
            // watermark, so a floor racing a grant or an import (here or
            // on another node) changes nothing; either way the chain now
            // has a watermark.
            if let Err(refusal) = self.raise(chain_id, found.state(), by).await? {
                tracing::warn!(%chain_id, %refusal, "floor refused");
            }
            Ok(())
        })
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
