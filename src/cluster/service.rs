//! The server side of node-to-node traffic: the tonic `Cluster` service.
//!
//! Raft RPCs are handed to the node's current Raft instance unchanged;
//! `Forward` proposes a follower's command on this node if it leads. Bytes
//! that do not decode get an `invalid_argument` status, never a panic.
//! Only cluster members may call this service: with TLS, every call needs
//! a node certificate from the cluster CA ([`super::tls::require`]), since
//! it accepts log entries and proposes grants.

use std::sync::Arc;

use openraft::raft::InstallSnapshotRequest;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::forward::{self, ForwardError};
use super::instance::Instance;
use super::pb;
use super::propose::Proposer;
use super::tls::{Role, require};
use super::types::TypeConfig;

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
}

impl ClusterService {
    pub(crate) fn new(instance: Arc<Instance>, proposer: Arc<Proposer>) -> ClusterService {
        ClusterService { instance, proposer }
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
        require(&request, Role::Node)?;
        let rpc = decode(&request.into_inner().data)?;
        let result = self.instance.raft().append_entries(rpc).await;
        Ok(Response::new(pb::RaftReply {
            data: encode(&result)?,
        }))
    }

    async fn vote(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        require(&request, Role::Node)?;
        let rpc = decode(&request.into_inner().data)?;
        let result = self.instance.raft().vote(rpc).await;
        Ok(Response::new(pb::RaftReply {
            data: encode(&result)?,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        require(&request, Role::Node)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&request.into_inner().data)?;
        check_chunk(&rpc)?;
        let result = self.instance.raft().install_snapshot(rpc).await;
        Ok(Response::new(pb::RaftReply {
            data: encode(&result)?,
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        require(&request, Role::Node)?;
        let command = forward::command(&request.into_inner())
            .map_err(|e| Status::invalid_argument(format!("decode: {e}")))?;
        let result = self
            .proposer
            .propose_local(command)
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
        Ok(Response::new(pb::PingReply {
            node_id: self.instance.id(),
        }))
    }

    async fn elect(
        &self,
        request: Request<pb::ElectRequest>,
    ) -> Result<Response<pb::ElectReply>, Status> {
        require(&request, Role::Node)?;
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
}
