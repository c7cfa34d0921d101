//! The operator's side of the admin API: [`Client`], a node address, a
//! timeout and a transport (plaintext, or mutual TLS with an operator
//! certificate), and its typed [`ClientError`].
//!
//! Calls that only the leader answers (membership changes, the export)
//! follow the leader: a follower answers with the leader's address in the
//! `leader-addr` metadata, and the client retries there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Response, Status as GrpcStatus};

use super::error::ClientError;
use super::status::Status;
use crate::cluster::network;
use crate::cluster::pb;
use crate::cluster::pb::admin_client::AdminClient;
use crate::cluster::tls::{Identity, TlsConfig, TlsError, TlsTransport};
use crate::cluster::transport::{TcpTransport, Transport};
use crate::cluster::types::NodeId;
use crate::watermark::SignState;

/// Most leader hints a call follows.
const MAX_HOPS: usize = 4;
/// Pause between two tries of [`Client::initialize_within`].
const INITIALIZE_RETRY: Duration = Duration::from_millis(100);

/// The leader a node reports, and the term it leads in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownLeader {
    /// The leader's Raft id.
    pub id: NodeId,
    /// Its term.
    pub term: u64,
}

/// How an operator reaches a node's admin API: address, timeout and,
/// for a TLS cluster, the operator's certificate.
#[derive(Clone)]
pub struct Client {
    addr: String,
    timeout: Duration,
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A plaintext client for the node at `addr` (host:port).
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Client {
        Client {
            addr: addr.into(),
            timeout,
            transport: Arc::new(TcpTransport),
        }
    }

    /// Connects through `transport` (a simulated network, or a TLS
    /// transport built elsewhere) instead of plaintext TCP.
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Client {
        self.transport = transport;
        self
    }

    /// Uses mutual TLS with the operator certificate in `config`.
    ///
    /// # Errors
    ///
    /// The files cannot be read or used.
    pub fn with_tls(self, config: &TlsConfig) -> Result<Client, TlsError> {
        let transport = TlsTransport::dialing(&Identity::load(config)?)?;
        Ok(self.with_transport(Arc::new(transport)))
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

    async fn connect(&self, addr: &str) -> Result<AdminClient<Channel>, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            addr: addr.to_string(),
            source,
        };
        let endpoint = network::endpoint(addr)
            .map_err(unreachable)?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let call = endpoint.connect_with_connector(network::dialer(self.transport.clone(), addr));
        let channel = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
                after: self.timeout,
            })?
            .map_err(unreachable)?;
        Ok(AdminClient::new(channel))
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: self.addr.clone(),
                after: self.timeout,
            })?
    }

    /// The node's status.
    ///
    /// # Errors
    ///
    /// The node is unreachable or refuses, or the answer does not decode.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.bounded(async {
            let mut client = self.connect(&self.addr).await?;
            let reply = client
                .status(pb::StatusRequest {})
                .await
                .map_err(|e| ClientError::from_status(&self.addr, e))?;
            serde_json::from_slice(&reply.into_inner().json).map_err(|source| {
                ClientError::BadReply {
                    addr: self.addr.clone(),
                    source,
                }
            })
        })
        .await
    }

    /// The leader as the first node at `addrs` (host:port, reached with
    /// this client's settings) that knows one reports it.
    pub async fn find_leader(&self, addrs: &[String]) -> Option<KnownLeader> {
        for addr in addrs {
            if let Ok(status) = self.to(addr.clone()).status().await
                && let Some(id) = status.leader
            {
                return Some(KnownLeader {
                    id,
                    term: status.term,
                });
            }
        }
        None
    }

    /// Bootstraps the cluster; false when it was formed already.
    ///
    /// # Errors
    ///
    /// The node is unreachable or refuses.
    pub async fn initialize(&self) -> Result<bool, ClientError> {
        let mut client = self.connect(&self.addr).await?;
        let reply = client
            .initialize(pb::InitializeRequest {})
            .await
            .map_err(|e| ClientError::from_status(&self.addr, e))?;
        Ok(reply.into_inner().initialized)
    }

    /// Bootstraps the cluster, retrying while the node starts, for up to
    /// `within`; false when it was formed already.
    ///
    /// # Errors
    ///
    /// The last failure, when the node did not answer within `within`.
    pub async fn initialize_within(&self, within: Duration) -> Result<bool, ClientError> {
        let deadline = Instant::now() + within;
        loop {
            match self.initialize().await {
                Ok(initialized) => return Ok(initialized),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(INITIALIZE_RETRY).await,
            }
        }
    }

    /// Raises `chain_id`'s watermark to `state` (a raise-only import);
    /// `force` lets an implausibly high one through.
    ///
    /// # Errors
    ///
    /// `Refused` with the state machine's reason when `state` is not above
    /// the watermark; otherwise the node is unreachable or has no quorum.
    pub async fn raise(
        &self,
        chain_id: &str,
        state: &SignState,
        force: bool,
    ) -> Result<(), ClientError> {
        let mut client = self.connect(&self.addr).await?;
        let state_json = serde_json::to_vec(state).map_err(|source| ClientError::BadReply {
            addr: self.addr.clone(),
            source,
        })?;
        let reply = client
            .raise(pb::RaiseRequest {
                chain_id: chain_id.to_string(),
                state_json,
                force,
            })
            .await
            .map_err(|e| ClientError::from_status(&self.addr, e))?
            .into_inner();
        if reply.refusal.is_empty() {
            Ok(())
        } else {
            Err(ClientError::Refused {
                addr: self.addr.clone(),
                reason: reply.refusal,
            })
        }
    }

    /// Every chain's sign state as the cluster has committed it (read on
    /// the leader, following leader hints).
    ///
    /// # Errors
    ///
    /// No leader answers with a quorum behind it, or the answer does not
    /// decode.
    pub async fn export(&self) -> Result<BTreeMap<String, SignState>, ClientError> {
        let (addr, reply) = self
            .on_leader(|mut client| async move { client.export(pb::ExportRequest {}).await })
            .await?;
        serde_json::from_slice(&reply.chains_json)
            .map_err(|source| ClientError::BadReply { addr, source })
    }

    /// Runs a membership call, following leader hints.
    async fn change<F, Fut>(&self, call: F) -> Result<String, ClientError>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<pb::ChangeReply>, GrpcStatus>>,
    {
        Ok(self.on_leader(call).await?.1.message)
    }

    /// Runs a call that only the leader answers, following leader hints.
    /// Returns the answer and the address of the node that gave it.
    async fn on_leader<F, Fut, R>(&self, call: F) -> Result<(String, R), ClientError>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<R>, GrpcStatus>>,
    {
        let mut addr = self.addr.clone();
        let mut last = None;
        for _ in 0..MAX_HOPS {
            let client = self.connect(&addr).await?;
            match call(client).await {
                Ok(reply) => return Ok((addr, reply.into_inner())),
                Err(status) => match ClientError::from_status(&addr, status) {
                    ClientError::NotLeader {
                        leader: Some(next),
                        message,
                        ..
                    } if next != addr => {
                        last = Some(message);
                        addr = next;
                    }
                    e => return Err(e),
                },
            }
        }
        Err(ClientError::NotLeader {
            leader: Some(addr.clone()),
            message: format!(
                "gave up after {MAX_HOPS} leader hints{}",
                last.map(|m| format!(" ({m})")).unwrap_or_default()
            ),
            addr,
        })
    }

    /// Adds node `id` at `node_addr` as a learner (through the leader).
    ///
    /// # Errors
    ///
    /// Unreachable, refused, or failed.
    pub async fn add_learner(&self, id: u64, node_addr: &str) -> Result<String, ClientError> {
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
    pub async fn promote(&self, id: u64) -> Result<String, ClientError> {
        self.change(|mut c| async move { c.promote(pb::PromoteRequest { id }).await })
            .await
    }

    /// Removes node `id` (through the leader).
    ///
    /// # Errors
    ///
    /// Unreachable, refused (no healthy majority left, the leader), or
    /// failed.
    pub async fn remove(&self, id: u64, force: bool) -> Result<String, ClientError> {
        self.change(|mut c| async move { c.remove(pb::RemoveRequest { id, force }).await })
            .await
    }

    /// Moves leadership to voter `id` (through the leader).
    ///
    /// # Errors
    ///
    /// Unreachable, refused, or no change in time.
    pub async fn transfer_leader(&self, id: u64) -> Result<String, ClientError> {
        self.change(
            |mut c| async move { c.transfer_leader(pb::TransferLeaderRequest { id }).await },
        )
        .await
    }

    /// Runs a distributed key generation for threshold-mode `chain_id`,
    /// coordinated by this client's node over every voter.
    ///
    /// # Errors
    ///
    /// Unreachable, or refused (not in threshold mode, a share already
    /// there, a voter failed).
    pub async fn threshold_dkg(&self, chain_id: &str) -> Result<String, ClientError> {
        let mut client = self.connect(&self.addr).await?;
        let reply = client
            .threshold_dkg(pb::ThresholdDkgRequest {
                chain_id: chain_id.to_string(),
            })
            .await
            .map_err(|e| ClientError::from_status(&self.addr, e))?;
        Ok(reply.into_inner().message)
    }

    /// Makes this client's node fail every signature (`lost`) or sign
    /// again.
    ///
    /// # Errors
    ///
    /// Unreachable or refused.
    pub async fn simulate_key_loss(&self, lost: bool) -> Result<String, ClientError> {
        self.bounded(async {
            let mut client = self.connect(&self.addr).await?;
            let reply = client
                .simulate_key_loss(pb::KeyLossRequest { lost })
                .await
                .map_err(|e| ClientError::from_status(&self.addr, e))?;
            Ok(reply.into_inner().message)
        })
        .await
    }

    /// Builds a snapshot on this client's node.
    ///
    /// # Errors
    ///
    /// Unreachable or failed.
    pub async fn snapshot(&self) -> Result<String, ClientError> {
        let mut client = self.connect(&self.addr).await?;
        let reply = client
            .snapshot(pb::SnapshotRequest {})
            .await
            .map_err(|e| ClientError::from_status(&self.addr, e))?;
        Ok(reply.into_inner().message)
    }
}
