//! The server side of node-to-node traffic: the tonic `Cluster` service.
//!
//! Raft RPCs are handed to the node's current Raft instance unchanged;
//! `Forward` proposes a follower's command on this node if it leads. Bytes
//! that do not decode get an `invalid_argument` status, never a panic.
//! Only cluster members may call this service: with TLS, every call needs
//! a node certificate from the cluster CA ([`super::tls::require`]), since
//! it accepts log entries and proposes grants; every call must come from
//! this node's cluster ([`super::identity`]); and a Raft message must come
//! from the node its certificate names ([`super::tls::require_sender`]:
//! the leader of an AppendEntries or InstallSnapshot, the candidate of a
//! Vote). A forwarded command names no sender node. And with TLS, a call
//! that acts on Raft (a Raft message, a forwarded command, an election
//! request) must come from a node this node counts as a member
//! ([`ClusterService::require_member`]): the certificate of a removed
//! node that was never revoked would otherwise still lead in a term of its
//! own choosing, install any snapshot, or forward any raise.

use std::sync::Arc;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::cosign::Cosign;
use super::forward::{self, ForwardError};
use super::identity::{AdoptError, ParseClusterIdError, Rpc};
use super::instance::Instance;
use super::keygen::{Keygen, Step};
use super::pb;
use super::propose::Proposer;
use super::snapshot_receiver::SnapshotReceiver;
use super::tls::{Role, require, require_sender};
use super::transport::PeerInfo;
use super::types::{NodeId, TypeConfig};

/// Largest snapshot a node accepts, in bytes. A snapshot holds one
/// watermark per chain, a few hundred bytes each, so this is generous; it
/// keeps a chunk's offset from deciding how much memory a node allocates.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024;

/// The tonic service for one node: its Raft instance, and its proposer for
/// forwarded commands.
#[derive(Clone)]
pub struct ClusterService {
    instance: Arc<Instance>,
    proposer: Arc<Proposer>,
    snapshots: Arc<SnapshotReceiver>,
    cosign: Arc<Cosign>,
    keygen: Arc<Keygen>,
}

impl ClusterService {
    pub(crate) fn new(
        instance: Arc<Instance>,
        proposer: Arc<Proposer>,
        cosign: Arc<Cosign>,
        keygen: Arc<Keygen>,
    ) -> ClusterService {
        ClusterService {
            instance,
            proposer,
            snapshots: Arc::default(),
            cosign,
            keygen,
        }
    }
}

impl ClusterService {
    /// Refuses a caller whose certificate names a node that is not in this
    /// node's membership (voters and learners of its latest config, as
    /// its log holds it). A node with no membership yet (before `cluster
    /// init`, or joining) takes part in nothing the cluster id check has
    /// not admitted. Plaintext callers are not checked (see [`require`]).
    ///
    /// A follower far enough behind not to know a newly added node yet
    /// refuses it as leader until it learns of it from another: it falls
    /// behind, the cluster goes on with the others.
    #[allow(clippy::result_large_err)]
    fn require_member(&self, peer: &PeerInfo) -> Result<(), Status> {
        let Some(id) = peer.node_id.filter(|_| peer.tls) else {
            return Ok(());
        };
        let metrics = self.instance.raft().metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        if membership.nodes().next().is_none() || membership.get_node(&id).is_some() {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "node {id} is not a member of this node's cluster"
        )))
    }
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("decode: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|e| Status::internal(format!("encode: {e}")))
}

/// Refuses a snapshot chunk that would end past [`MAX_SNAPSHOT_BYTES`]:
/// the receiving buffer grows to the chunk's end.
pub(crate) fn check_chunk(rpc: &InstallSnapshotRequest<TypeConfig>) -> Result<(), Status> {
    let end = u64::try_from(rpc.data.len())
        .ok()
        .and_then(|len| rpc.offset.checked_add(len));
    match end {
        Some(end) if end <= MAX_SNAPSHOT_BYTES => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "snapshot chunk of {} bytes at offset {} ends past the {MAX_SNAPSHOT_BYTES}-byte limit",
            rpc.data.len(),
            rpc.offset
        ))),
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        // Who sends comes first: a joining node learns its cluster id
        // from an admitted AppendEntries, so only from its real sender.
        let peer = require(&request, Role::Node)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.get_ref().data)?;
        require_sender(&peer, rpc.vote.leader_id().voted_for())?;
        self.require_member(&peer)?;
        self.instance
            .identity()
            .admit(&request, Rpc::AppendEntries)?;
        let result = self.instance.raft().append_entries(rpc).await;
        if matches!(&result, Ok(reply) if !matches!(reply, AppendEntriesResponse::HigherVote(_))) {
            self.instance.heard_from_leader();
        }
        Ok(Response::new(pb::RaftReply {
            data: encode(&result)?,
        }))
    }

    async fn vote(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let peer = require(&request, Role::Node)?;
        let rpc: VoteRequest<NodeId> = decode(&request.get_ref().data)?;
        require_sender(&peer, rpc.vote.leader_id().voted_for())?;
        self.require_member(&peer)?;
        self.instance.identity().admit(&request, Rpc::Other)?;
        let result = self.instance.raft().vote(rpc).await;
        Ok(Response::new(pb::RaftReply {
            data: encode(&result)?,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let peer = require(&request, Role::Node)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&request.get_ref().data)?;
        require_sender(&peer, rpc.vote.leader_id().voted_for())?;
        self.require_member(&peer)?;
        self.instance
            .identity()
            .admit(&request, Rpc::InstallSnapshot)?;
        check_chunk(&rpc)?;
        let result = self
            .snapshots
            .receive(&self.instance.raft(), rpc)
            .await
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::RaftReply {
            data: encode(&result)?,
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        let peer = require(&request, Role::Node)?;
        self.require_member(&peer)?;
        self.instance.identity().admit(&request, Rpc::Other)?;
        let command = forward::command(&request.into_inner())
            .map_err(|e| Status::invalid_argument(format!("decode: {e}")))?;
        // The forwarder's remaining time arrives as `grpc-timeout`, which
        // tonic's server enforces by dropping this call; the grant timeout
        // bounds a caller that sent none.
        let result = self
            .proposer
            .propose_local(command, self.proposer.deadline())
            .await
            .map_err(ForwardError::from);
        let reply =
            forward::reply(&result).map_err(|e| Status::internal(format!("encode: {e}")))?;
        Ok(Response::new(reply))
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingReply>, Status> {
        require(&request, Role::Node)?;
        self.instance.identity().admit(&request, Rpc::Other)?;
        Ok(Response::new(pb::PingReply {
            node_id: self.instance.id(),
        }))
    }

    async fn elect(
        &self,
        request: Request<pb::ElectRequest>,
    ) -> Result<Response<pb::ElectReply>, Status> {
        let peer = require(&request, Role::Node)?;
        self.require_member(&peer)?;
        self.instance.identity().admit(&request, Rpc::Other)?;
        tracing::info!(
            node_id = self.instance.id(),
            "election requested by the leader (leadership transfer)"
        );
        self.instance
            .raft()
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::ElectReply {}))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitReply>, Status> {
        let peer = require(&request, Role::Node)?;
        self.require_member(&peer)?;
        self.instance.identity().admit(&request, Rpc::Other)?;
        let commitment = self
            .cosign
            .commit(&request.get_ref().chain_id)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::CommitReply {
            session: commitment.session,
            commitments: commitment.commitments,
        }))
    }

    async fn share(
        &self,
        request: Request<pb::ShareRequest>,
    ) -> Result<Response<pb::ShareReply>, Status> {
        let peer = require(&request, Role::Node)?;
        self.require_member(&peer)?;
        self.instance.identity().admit(&request, Rpc::Other)?;
        let request = request.into_inner();
        let share = self
            .cosign
            .share(&request.chain_id, request.session, &request.package)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(pb::ShareReply { share }))
    }

    async fn dkg(
        &self,
        request: Request<pb::DkgRequest>,
    ) -> Result<Response<pb::DkgReply>, Status> {
        let peer = require(&request, Role::Node)?;
        self.require_member(&peer)?;
        self.instance.identity().admit(&request, Rpc::Other)?;
        let step: Step = decode(&request.get_ref().step)?;
        // With TLS the sender is the node its certificate names; on a
        // plaintext port (loopback, or asked for by name) it is whom the
        // step says.
        let from = match (&step, peer.tls) {
            (_, true) => peer
                .node_id
                .ok_or_else(|| Status::permission_denied("no node id"))?,
            (Step::Deliver { from, .. }, false) => *from,
            (_, false) => 0,
        };
        let answer = self
            .keygen
            .handle(from, step)
            .await
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(pb::DkgReply {
            answer: encode(&answer)?,
        }))
    }

    async fn adopt(
        &self,
        request: Request<pb::AdoptRequest>,
    ) -> Result<Response<pb::AdoptReply>, Status> {
        require(&request, Role::Node)?;
        let request = request.into_inner();
        let offered = request
            .cluster_id
            .parse()
            .map_err(|e: ParseClusterIdError| Status::invalid_argument(e.to_string()))?;
        self.instance
            .identity()
            .adopt(offered, request.dry_run)
            .map_err(|e| match e {
                AdoptError::Storage { .. } => Status::unavailable(e.to_string()),
                _ => Status::failed_precondition(e.to_string()),
            })?;
        let initialized = self
            .instance
            .raft()
            .is_initialized()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::AdoptReply { initialized }))
    }
}
