//! The server side of node-to-node traffic: the tonic `Cluster` service.
//!
//! Raft RPCs are handed to the node's current Raft instance unchanged;
//! `Forward` proposes a follower's command on this node if it leads. Bytes
//! that do not decode get an `invalid_argument` status, never a panic.
//! Only cluster members may call this service: with TLS, every call needs
//! a node certificate from the cluster CA ([`super::tls::require`]), since
//! it accepts log entries and proposes grants.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::node::Shared;
use super::pb;
use super::tls::{Role, require};
use super::types::Command;

/// The tonic service for one node.
#[derive(Clone)]
pub struct ClusterService {
    shared: Arc<Shared>,
}

impl ClusterService {
    pub(crate) fn new(shared: Arc<Shared>) -> ClusterService {
        ClusterService { shared }
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("decode: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|e| Status::internal(format!("encode: {e}")))
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn append_entries(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        require(&request, Role::Node)?;
        let rpc = decode(&request.into_inner().data)?;
        let result = self.shared.raft().append_entries(rpc).await;
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
        let result = self.shared.raft().vote(rpc).await;
        Ok(Response::new(pb::RaftReply {
            data: encode(&result)?,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        require(&request, Role::Node)?;
        let rpc = decode(&request.into_inner().data)?;
        let result = self.shared.raft().install_snapshot(rpc).await;
        Ok(Response::new(pb::RaftReply {
            data: encode(&result)?,
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardReply>, Status> {
        require(&request, Role::Node)?;
        let command: Command = decode(&request.into_inner().command)?;
        let result = self.shared.propose_local(command).await;
        Ok(Response::new(pb::ForwardReply {
            result: encode(&result)?,
        }))
    }

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingReply>, Status> {
        require(&request, Role::Node)?;
        Ok(Response::new(pb::PingReply {
            node_id: self.shared.id(),
        }))
    }

    async fn elect(
        &self,
        request: Request<pb::ElectRequest>,
    ) -> Result<Response<pb::ElectReply>, Status> {
        require(&request, Role::Node)?;
        tracing::info!(
            node_id = self.shared.id(),
            "election requested by the leader (leadership transfer)"
        );
        self.shared
            .raft()
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::ElectReply {}))
    }
}
