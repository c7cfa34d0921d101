//! The operator's API: what a node reports about itself and the cluster,
//! and the membership changes an operator makes.
//!
//! [`Status`] is what `quorumkms cluster status` prints; the demo and the
//! tests use it to find the leader. Served by the same tonic server as the
//! node-to-node service; with TLS every call needs an operator certificate
//! (see [`super::tls`]).
//!
//! [`Client`] is the client side: a node address, a timeout and optional
//! TLS settings. Membership calls follow the leader: a follower answers
//! `FAILED_PRECONDITION` with the leader's address in the `leader-addr`
//! metadata, and the client retries there. The free functions ([`status`],
//! [`initialize`], [`raise`], [`export`]) are plaintext shorthands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_rustls::TlsConnector;
use tonic::transport::Channel;
use tonic::{Request, Response, Status as GrpcStatus};

use super::membership::{self, ChangeError};
use super::network::{TcpTransport, Transport};
use super::node::Shared;
use super::pb;
use super::pb::admin_client::AdminClient;
use super::tls::{Identity, Role, TlsConfig, require};
use crate::watermark::{Position, SignState};

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
}

impl Status {
    pub(crate) fn of(shared: &Shared) -> Status {
        let raft = shared.raft();
        let metrics = raft.metrics().borrow().clone();
        let applied = shared.applied();
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        let members = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, member)| MemberStatus {
                id: *id,
                addr: member.addr.clone(),
                voter: voters.contains(id),
                matched_index: metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .and_then(|l| l.as_ref())
                    .map(|l| l.index),
            })
            .collect();
        let chains = applied
            .chains
            .iter()
            .map(|(chain, state)| {
                (
                    chain.clone(),
                    ChainStatus {
                        position: state.position,
                        owner: state.owner.clone(),
                    },
                )
            })
            .collect();
        Status {
            node_id: shared.id(),
            role: format!("{:?}", metrics.state),
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|id| id.index),
            has_quorum_leader: shared.has_quorum_leader(),
            storage_fault: shared.current_fault(),
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
            key_loss_simulated: shared.key_loss().is_lost(),
        }
    }
}

/// The tonic `Admin` service.
#[derive(Clone)]
pub struct AdminService {
    shared: Arc<Shared>,
}

impl AdminService {
    pub(crate) fn new(shared: Arc<Shared>) -> AdminService {
        AdminService { shared }
    }
}

/// The metadata key carrying the leader's address on a not-leader answer.
pub const LEADER_ADDR: &str = "leader-addr";

fn change_status(e: ChangeError) -> GrpcStatus {
    match &e {
        ChangeError::NotLeader {
            leader: Some((_, addr)),
        } => {
            let mut status = GrpcStatus::failed_precondition(e.to_string());
            if let Ok(value) = addr.parse() {
                status.metadata_mut().insert(LEADER_ADDR, value);
            }
            status
        }
        ChangeError::NotLeader { leader: None } => {
            GrpcStatus::unavailable("no leader known; retry once the cluster has elected one")
        }
        ChangeError::Refused(_) => GrpcStatus::failed_precondition(e.to_string()),
        ChangeError::Failed(_) => GrpcStatus::unavailable(e.to_string()),
    }
}

fn changed(result: Result<String, ChangeError>) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
    result
        .map(|message| Response::new(pb::ChangeReply { message }))
        .map_err(change_status)
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let status = Status::of(&self.shared);
        let json = serde_json::to_vec(&status)
            .map_err(|e| GrpcStatus::internal(format!("encode status: {e}")))?;
        Ok(Response::new(pb::StatusReply { json }))
    }

    async fn initialize(
        &self,
        request: Request<pb::InitializeRequest>,
    ) -> Result<Response<pb::InitializeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let node = super::Node::from_shared(self.shared.clone());
        let initialized = node
            .initialize()
            .await
            .map_err(|e| GrpcStatus::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::InitializeReply { initialized }))
    }

    async fn raise(
        &self,
        request: Request<pb::RaiseRequest>,
    ) -> Result<Response<pb::RaiseReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let request = request.into_inner();
        let state: SignState = serde_json::from_slice(&request.state_json)
            .map_err(|e| GrpcStatus::invalid_argument(format!("state: {e}")))?;
        let node = super::Node::from_shared(self.shared.clone());
        let refusal = match node.raise(&request.chain_id, state).await {
            Ok(Ok(())) => String::new(),
            Ok(Err(refusal)) => refusal.to_string(),
            Err(e) => return Err(GrpcStatus::unavailable(e.to_string())),
        };
        Ok(Response::new(pb::RaiseReply { refusal }))
    }

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<pb::ExportReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let applied = membership::read_committed(&self.shared)
            .await
            .map_err(change_status)?;
        let chains_json = serde_json::to_vec(&applied.chains)
            .map_err(|e| GrpcStatus::internal(format!("encode: {e}")))?;
        Ok(Response::new(pb::ExportReply { chains_json }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let request = request.into_inner();
        changed(membership::add_learner(&self.shared, request.id, &request.addr).await)
    }

    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        changed(membership::promote(&self.shared, request.into_inner().id).await)
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let request = request.into_inner();
        changed(membership::remove(&self.shared, request.id, request.force).await)
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        changed(membership::transfer_leader(&self.shared, request.into_inner().id).await)
    }

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        changed(membership::snapshot(&self.shared).await)
    }

    async fn simulate_key_loss(
        &self,
        request: Request<pb::KeyLossRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let lost = request.into_inner().lost;
        self.shared.key_loss().set(lost);
        let message = if lost {
            tracing::warn!("key loss simulated by an operator: this node signs nothing");
            "key loss simulated: this node signs nothing until it is cleared"
        } else {
            tracing::info!("simulated key loss cleared");
            "simulated key loss cleared"
        };
        Ok(Response::new(pb::ChangeReply {
            message: message.to_string(),
        }))
    }
}

/// Most leader hints a membership call follows.
const MAX_HOPS: usize = 4;

/// How an operator reaches a node's admin API: address, timeout and,
/// for a TLS cluster, the operator's certificate.
#[derive(Clone)]
pub struct Client {
    addr: String,
    timeout: Duration,
    tls: Option<TlsConnector>,
    /// Carries plaintext connections (TLS always runs over TCP).
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Client {
    /// A plaintext client for the node at `addr` (host:port).
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Client {
        Client {
            addr: addr.into(),
            timeout,
            tls: None,
            transport: Arc::new(TcpTransport),
        }
    }

    /// Makes plaintext connections through `transport` instead of TCP.
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Client {
        self.transport = transport;
        self
    }

    /// Uses mutual TLS with the operator certificate in `config`.
    ///
    /// # Errors
    ///
    /// The files cannot be read or used.
    pub fn with_tls(mut self, config: &TlsConfig) -> Result<Client, String> {
        self.tls = Some(Identity::load(config)?.connector()?);
        Ok(self)
    }

    /// Uses mutual TLS through `connector`, or plaintext for `None`.
    pub fn with_connector(mut self, connector: Option<TlsConnector>) -> Client {
        self.tls = connector;
        self
    }

    /// The node this client talks to first.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The same settings, for the node at `addr`.
    pub fn to(&self, addr: impl Into<String>) -> Client {
        Client {
            addr: addr.into(),
            ..self.clone()
        }
    }

    async fn connect(&self, addr: &str) -> Result<AdminClient<Channel>, String> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("invalid address {addr}: {e}"))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let tls = self.tls.clone();
        let transport = self.transport.clone();
        let target = addr.to_string();
        let connector = tower::service_fn(move |_| {
            let tls = tls.clone();
            let transport = transport.clone();
            let target = target.clone();
            async move {
                let io = match tls {
                    Some(tls) => super::tls::connect(&tls, &target).await?,
                    None => transport.connect(target).await?,
                };
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(io))
            }
        });
        let call = endpoint.connect_with_connector(connector);
        let channel = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| format!("cannot reach {addr}: no answer within {:?}", self.timeout))?
            .map_err(|e| format!("cannot reach {addr}: {}", error_chain(&e)))?;
        Ok(AdminClient::new(channel))
    }

    async fn bounded<T>(&self, call: impl Future<Output = Result<T, String>>) -> Result<T, String> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| format!("{}: no answer within {:?}", self.addr, self.timeout))?
    }

    /// The node's status.
    ///
    /// # Errors
    ///
    /// The node is unreachable or refuses, or the answer does not decode.
    pub async fn status(&self) -> Result<Status, String> {
        self.bounded(async {
            let mut client = self.connect(&self.addr).await?;
            let reply = client
                .status(pb::StatusRequest {})
                .await
                .map_err(|e| grpc_error(&self.addr, &e))?;
            serde_json::from_slice(&reply.into_inner().json)
                .map_err(|e| format!("{}: undecodable status: {e}", self.addr))
        })
        .await
    }

    /// Bootstraps the cluster; false when it was formed already.
    ///
    /// # Errors
    ///
    /// The node is unreachable or refuses.
    pub async fn initialize(&self) -> Result<bool, String> {
        let mut client = self.connect(&self.addr).await?;
        let reply = client
            .initialize(pb::InitializeRequest {})
            .await
            .map_err(|e| grpc_error(&self.addr, &e))?;
        Ok(reply.into_inner().initialized)
    }

    /// Raises `chain_id`'s watermark; `Ok(Err(reason))` is a refusal.
    ///
    /// # Errors
    ///
    /// The node is unreachable or has no quorum.
    pub async fn raise(
        &self,
        chain_id: &str,
        state: &SignState,
    ) -> Result<Result<(), String>, String> {
        let mut client = self.connect(&self.addr).await?;
        let state_json = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let reply = client
            .raise(pb::RaiseRequest {
                chain_id: chain_id.to_string(),
                state_json,
            })
            .await
            .map_err(|e| grpc_error(&self.addr, &e))?
            .into_inner();
        Ok(if reply.refusal.is_empty() {
            Ok(())
        } else {
            Err(reply.refusal)
        })
    }

    /// Every chain's sign state as the cluster has committed it (read on
    /// the leader, following leader hints).
    ///
    /// # Errors
    ///
    /// No leader answers with a quorum behind it, or the answer does not
    /// decode.
    pub async fn export(&self) -> Result<BTreeMap<String, SignState>, String> {
        let reply = self
            .on_leader(|mut client| async move { client.export(pb::ExportRequest {}).await })
            .await?;
        serde_json::from_slice(&reply.chains_json).map_err(|e| format!("{}: {e}", self.addr))
    }

    /// Runs a membership call, following leader hints.
    async fn change<F, Fut>(&self, call: F) -> Result<String, String>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<pb::ChangeReply>, GrpcStatus>>,
    {
        Ok(self.on_leader(call).await?.message)
    }

    /// Runs a call that only the leader answers, following leader hints.
    async fn on_leader<F, Fut, R>(&self, call: F) -> Result<R, String>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<R>, GrpcStatus>>,
    {
        let mut addr = self.addr.clone();
        for _ in 0..MAX_HOPS {
            let client = self.connect(&addr).await?;
            match call(client).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) => {
                    let next = status
                        .metadata()
                        .get(LEADER_ADDR)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match next {
                        Some(next) if next != addr => addr = next,
                        _ => return Err(grpc_error(&addr, &status)),
                    }
                }
            }
        }
        Err(format!("gave up after {MAX_HOPS} leader hints"))
    }

    /// Adds node `id` at `node_addr` as a learner (through the leader).
    ///
    /// # Errors
    ///
    /// Unreachable, refused, or failed.
    pub async fn add_learner(&self, id: u64, node_addr: &str) -> Result<String, String> {
        let req = pb::AddLearnerRequest {
            id,
            addr: node_addr.to_string(),
        };
        self.change(|mut c| {
            let req = req.clone();
            async move { c.add_learner(req).await }
        })
        .await
    }

    /// Promotes learner `id` to voter once caught up (through the leader).
    ///
    /// # Errors
    ///
    /// Unreachable, refused (lagging, not a learner), or failed.
    pub async fn promote(&self, id: u64) -> Result<String, String> {
        self.change(|mut c| async move { c.promote(pb::PromoteRequest { id }).await })
            .await
    }

    /// Removes node `id` (through the leader).
    ///
    /// # Errors
    ///
    /// Unreachable, refused (no healthy majority left, the leader), or
    /// failed.
    pub async fn remove(&self, id: u64, force: bool) -> Result<String, String> {
        self.change(|mut c| async move { c.remove(pb::RemoveRequest { id, force }).await })
            .await
    }

    /// Moves leadership to voter `id` (through the leader).
    ///
    /// # Errors
    ///
    /// Unreachable, refused, or no change in time.
    pub async fn transfer_leader(&self, id: u64) -> Result<String, String> {
        self.change(
            |mut c| async move { c.transfer_leader(pb::TransferLeaderRequest { id }).await },
        )
        .await
    }

    /// Makes this client's node fail every signature (`lost`) or sign
    /// again.
    ///
    /// # Errors
    ///
    /// Unreachable or refused.
    pub async fn simulate_key_loss(&self, lost: bool) -> Result<String, String> {
        self.bounded(async {
            let mut client = self.connect(&self.addr).await?;
            let reply = client
                .simulate_key_loss(pb::KeyLossRequest { lost })
                .await
                .map_err(|e| grpc_error(&self.addr, &e))?;
            Ok(reply.into_inner().message)
        })
        .await
    }

    /// Builds a snapshot on this client's node.
    ///
    /// # Errors
    ///
    /// Unreachable or failed.
    pub async fn snapshot(&self) -> Result<String, String> {
        let mut client = self.connect(&self.addr).await?;
        let reply = client
            .snapshot(pb::SnapshotRequest {})
            .await
            .map_err(|e| grpc_error(&self.addr, &e))?;
        Ok(reply.into_inner().message)
    }
}

fn grpc_error(addr: &str, status: &GrpcStatus) -> String {
    if status.code() == tonic::Code::PermissionDenied {
        return format!("{addr}: permission denied: {}", status.message());
    }
    // Transport failures carry their cause in the source chain.
    let mut message = status.message().to_string();
    if let Some(source) = std::error::Error::source(status) {
        message = format!("{message}: {}", error_chain(source));
    }
    format!("{addr}: {message}")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// Asks the node at `addr` (host:port, plaintext) to bootstrap the
/// cluster. Returns false when the cluster was already formed.
///
/// # Errors
///
/// The node is unreachable or refuses.
pub async fn initialize(addr: &str, timeout: Duration) -> Result<bool, String> {
    Client::new(addr, timeout).initialize().await
}

/// Asks the node at `addr` (host:port, plaintext) for its status.
///
/// # Errors
///
/// The node is unreachable within `timeout`, or its answer does not decode.
pub async fn status(addr: &str, timeout: Duration) -> Result<Status, String> {
    Client::new(addr, timeout).status().await
}

/// Raises `chain_id`'s watermark to `state` through the node at `addr`
/// (plaintext). `Ok(Err(reason))` is a refusal (the import is not higher).
///
/// # Errors
///
/// The node is unreachable or has no quorum.
pub async fn raise(
    addr: &str,
    chain_id: &str,
    state: &SignState,
    timeout: Duration,
) -> Result<Result<(), String>, String> {
    Client::new(addr, timeout).raise(chain_id, state).await
}

/// Every chain's committed sign state, asked of the node at `addr`
/// (plaintext).
///
/// # Errors
///
/// The node is unreachable or its answer does not decode.
pub async fn export(addr: &str, timeout: Duration) -> Result<BTreeMap<String, SignState>, String> {
    Client::new(addr, timeout).export().await
}
