//! The operator's API: what a node reports about itself and the cluster.
//!
//! [`status`] is what `quorumkms cluster status` prints; the demo and the
//! tests use it to find the leader. Served by the same tonic server as the
//! node-to-node service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status as GrpcStatus};

use super::node::Shared;
use super::pb;
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

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, GrpcStatus> {
        let status = Status::of(&self.shared);
        let json = serde_json::to_vec(&status)
            .map_err(|e| GrpcStatus::internal(format!("encode status: {e}")))?;
        Ok(Response::new(pb::StatusReply { json }))
    }

    async fn initialize(
        &self,
        _request: Request<pb::InitializeRequest>,
    ) -> Result<Response<pb::InitializeReply>, GrpcStatus> {
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
        _request: Request<pb::ExportRequest>,
    ) -> Result<Response<pb::ExportReply>, GrpcStatus> {
        let chains_json = serde_json::to_vec(&self.shared.applied().chains)
            .map_err(|e| GrpcStatus::internal(format!("encode: {e}")))?;
        Ok(Response::new(pb::ExportReply { chains_json }))
    }
}

async fn client(
    addr: &str,
    timeout: Duration,
) -> Result<pb::admin_client::AdminClient<tonic::transport::Channel>, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("invalid address {addr}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    Ok(pb::admin_client::AdminClient::new(channel))
}

/// Asks the node at `addr` (host:port) to bootstrap the cluster. Returns
/// false when the cluster was already formed.
///
/// # Errors
///
/// The node is unreachable or refuses.
pub async fn initialize(addr: &str, timeout: Duration) -> Result<bool, String> {
    let mut client = client(addr, timeout).await?;
    let reply = client
        .initialize(pb::InitializeRequest {})
        .await
        .map_err(|e| format!("{addr}: {}", e.message()))?;
    Ok(reply.into_inner().initialized)
}

/// Asks the node at `addr` (host:port) for its status.
///
/// # Errors
///
/// The node is unreachable within `timeout`, or its answer does not decode.
pub async fn status(addr: &str, timeout: Duration) -> Result<Status, String> {
    let call = async {
        let mut client = client(addr, timeout).await?;
        let reply = client
            .status(pb::StatusRequest {})
            .await
            .map_err(|e| format!("{addr}: {}", e.message()))?;
        serde_json::from_slice(&reply.into_inner().json)
            .map_err(|e| format!("{addr}: undecodable status: {e}"))
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| format!("{addr}: no answer within {timeout:?}"))?
}

/// Raises `chain_id`'s watermark to `state` through the node at `addr`.
/// `Ok(Err(reason))` is a refusal (the import is not higher).
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
    let mut client = client(addr, timeout).await?;
    let state_json = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    let reply = client
        .raise(pb::RaiseRequest {
            chain_id: chain_id.to_string(),
            state_json,
        })
        .await
        .map_err(|e| format!("{addr}: {}", e.message()))?
        .into_inner();
    Ok(if reply.refusal.is_empty() {
        Ok(())
    } else {
        Err(reply.refusal)
    })
}

/// Every chain's applied sign state at the node at `addr`.
///
/// # Errors
///
/// The node is unreachable or its answer does not decode.
pub async fn export(addr: &str, timeout: Duration) -> Result<BTreeMap<String, SignState>, String> {
    let mut client = client(addr, timeout).await?;
    let reply = client
        .export(pb::ExportRequest {})
        .await
        .map_err(|e| format!("{addr}: {}", e.message()))?
        .into_inner();
    serde_json::from_slice(&reply.chains_json).map_err(|e| format!("{addr}: {e}"))
}
