//! The server side of the operator's API: the tonic `Admin` service.
//!
//! With TLS every call needs an operator certificate (see
//! [`tls`](crate::cluster::tls)). Membership changes and the export run on
//! the leader: a follower answers `FAILED_PRECONDITION` with the leader's
//! address in the [`LEADER_ADDR`] metadata.

use std::sync::Arc;

use tonic::{Request, Response, Status as GrpcStatus};

use super::status::{LEADER_ADDR, Status};
use crate::cluster::bootstrap::Bootstrap;
use crate::cluster::instance::Instance;
use crate::cluster::keygen::{Keygen, KeygenError};
use crate::cluster::membership::{self, ChangeError, Membership};
use crate::cluster::pb;
use crate::cluster::propose::Proposer;
use crate::cluster::tls::{Role, require};
use crate::cluster::transport::PeerInfo;
use crate::cluster::types::Raiser;
use crate::keys::loss::KeyLoss;
use crate::watermark::{SignState, vet};

/// The tonic `Admin` service: what it reports on and changes is handed
/// to it when the node is assembled.
#[derive(Clone)]
pub struct AdminService {
    instance: Arc<Instance>,
    proposer: Arc<Proposer>,
    membership: Membership,
    key_loss: KeyLoss,
    bootstrap: Bootstrap,
    keygen: Arc<Keygen>,
}

impl AdminService {
    /// Serves `instance`: raises through `proposer`, membership changes
    /// through `membership`, the simulated key loss through `key_loss`,
    /// and `cluster init` through `bootstrap`.
    pub(crate) fn new(
        instance: Arc<Instance>,
        proposer: Arc<Proposer>,
        membership: Membership,
        key_loss: KeyLoss,
        bootstrap: Bootstrap,
        keygen: Arc<Keygen>,
    ) -> AdminService {
        AdminService {
            instance,
            proposer,
            membership,
            key_loss,
            bootstrap,
            keygen,
        }
    }
}

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

/// Who an admin caller is, for the record of a raise.
fn raiser(peer: &PeerInfo) -> Raiser {
    if !peer.tls {
        return Raiser::Plaintext;
    }
    Raiser::Operator {
        serial: peer.serial.clone().unwrap_or_else(|| "unknown".into()),
        subject: peer.subject.clone().unwrap_or_default(),
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
        let status = Status::of(&self.instance, &self.key_loss);
        let json = serde_json::to_vec(&status)
            .map_err(|e| GrpcStatus::internal(format!("encode status: {e}")))?;
        Ok(Response::new(pb::StatusReply { json }))
    }

    async fn initialize(
        &self,
        request: Request<pb::InitializeRequest>,
    ) -> Result<Response<pb::InitializeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let initialized = self.bootstrap.initialize().await.map_err(|e| {
            if e.is_transient() {
                GrpcStatus::unavailable(e.to_string())
            } else {
                GrpcStatus::failed_precondition(e.to_string())
            }
        })?;
        Ok(Response::new(pb::InitializeReply { initialized }))
    }

    async fn raise(
        &self,
        request: Request<pb::RaiseRequest>,
    ) -> Result<Response<pb::RaiseReply>, GrpcStatus> {
        let by = raiser(&require(&request, Role::Operator)?);
        let request = request.into_inner();
        let state: SignState = serde_json::from_slice(&request.state_json)
            .map_err(|e| GrpcStatus::invalid_argument(format!("state: {e}")))?;
        // The client's checks are not ours: vet the raise here, against
        // this node's applied watermark (the state machine still applies
        // the raise-only rule to the committed one).
        let current = self
            .instance
            .applied()
            .chains
            .get(&request.chain_id)
            .and_then(|s| s.position);
        let state = vet::raise(&request.chain_id, current, &state, request.force)
            .map_err(|e| GrpcStatus::invalid_argument(e.to_string()))?;
        if request.force {
            tracing::warn!(
                chain_id = %request.chain_id,
                position = ?state.position,
                %by,
                "forced raise requested"
            );
        }
        let refusal = match self.proposer.raise(&request.chain_id, state, by).await {
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
        let applied = membership::read_committed(&self.membership)
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
        changed(membership::add_learner(&self.membership, request.id, &request.addr).await)
    }

    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        changed(membership::promote(&self.membership, request.into_inner().id).await)
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let request = request.into_inner();
        changed(membership::remove(&self.membership, request.id, request.force).await)
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        changed(membership::transfer_leader(&self.membership, request.into_inner().id).await)
    }

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        changed(membership::snapshot(&self.membership).await)
    }

    async fn threshold_dkg(
        &self,
        request: Request<pb::ThresholdDkgRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let chain_id = request.into_inner().chain_id;
        let message = self.keygen.generate(&chain_id).await.map_err(|e| match e {
            KeygenError::Refused(_) => GrpcStatus::failed_precondition(e.to_string()),
            KeygenError::Node { .. } => GrpcStatus::unavailable(e.to_string()),
        })?;
        tracing::info!(%chain_id, "{message}");
        Ok(Response::new(pb::ChangeReply { message }))
    }

    async fn simulate_key_loss(
        &self,
        request: Request<pb::KeyLossRequest>,
    ) -> Result<Response<pb::ChangeReply>, GrpcStatus> {
        require(&request, Role::Operator)?;
        let lost = request.into_inner().lost;
        self.key_loss.set(lost);
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
