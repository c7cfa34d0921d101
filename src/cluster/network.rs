//! The client side of node-to-node traffic: openraft's `RaftNetworkFactory`
//! over tonic, and the call a follower uses to forward a command to the
//! leader.
//!
//! The byte streams come from a [`Transport`], the seam where TLS and a
//! simulated network plug in; `dialer` is how every tonic channel of
//! the cluster (and the operator's admin client) opens its connections.
//!
//! Every RPC runs under a timeout. A failed connect, a timeout or any other
//! transport failure is reported to openraft as `RPCError::Unreachable`, so
//! it backs off instead of retrying in a hot loop against a dead peer. An
//! error the peer's Raft returned is a `RemoteError`.
//!
//! Every call carries this node's cluster id, and an answer is taken only
//! from a peer of the same cluster (see [`identity`]);
//! Raft RPCs also tell the peer whether the leader counts it as a voter or
//! a learner.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use openraft::error::{InstallSnapshotError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};

use super::forward::{self, ForwardResult};
use super::identity::{self, CLUSTER_ID_HEADER, ClusterId, MEMBER_ROLE_HEADER, MemberRole};
use super::pb;
use super::pb::cluster_client::ClusterClient;
use super::state_machine::AppliedState;
use super::transport::{BoxIo, Transport};
use super::types::typ::{RPCError, RaftError};
use super::types::{Command, Member, NodeId, TypeConfig};
use crate::metrics::Stage;

/// The tonic endpoint for the node at `addr` (host:port).
///
/// # Errors
///
/// `addr` does not make a URI.
pub(crate) fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
    // HTTP/2 forgets a stream it reset (a call dropped in flight) after a
    // second of wall-clock time; the simulation runs on virtual time, and
    // a run's trace would depend on how fast the host runs it. There, a
    // reset stream is remembered for the whole run.
    #[cfg(feature = "sim")]
    let endpoint = endpoint.http2_reset_stream_duration(Duration::from_secs(3600));
    Ok(endpoint)
}

/// How tonic opens a connection to `addr`: through `transport`. The one
/// connector for Raft traffic, forwarding and the operator's client.
pub(crate) fn dialer(
    transport: Arc<dyn Transport>,
    addr: &str,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = TokioIo<BoxIo>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<TokioIo<BoxIo>>> + Send,
> + Clone
+ Send
+ 'static {
    let target = addr.to_string();
    tower::service_fn(move |_| {
        let connect = transport.connect(target.clone());
        async move { connect.await.map(TokioIo::new) }
    })
}

/// One lazily connected tonic channel per peer address, shared by Raft
/// replication and forwarding. A tonic channel reconnects by itself after
/// a connection error; after a timeout the channel is replaced.
#[derive(Clone)]
pub struct Channels {
    transport: Arc<dyn Transport>,
    connect_timeout: Duration,
    by_addr: Arc<Mutex<BTreeMap<String, Channel>>>,
    /// The cluster this node belongs to, once it knows.
    cluster_id: watch::Receiver<Option<ClusterId>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

impl Channels {
    /// Channels over `transport`, for a node of no cluster yet: calls
    /// carry no cluster id, and are refused by every node but one taking
    /// part in `cluster init`.
    pub fn new(transport: Arc<dyn Transport>, connect_timeout: Duration) -> Channels {
        Channels {
            transport,
            connect_timeout,
            by_addr: Arc::new(Mutex::new(BTreeMap::new())),
            cluster_id: watch::channel(None).1,
        }
    }

    /// The same channels, calling as a member of cluster `id`.
    pub fn in_cluster(self, id: ClusterId) -> Channels {
        self.following(watch::channel(Some(id)).1)
    }

    /// The same channels, calling as a member of the cluster `ids` names
    /// at the time of each call.
    pub(crate) fn following(mut self, ids: watch::Receiver<Option<ClusterId>>) -> Channels {
        self.cluster_id = ids;
        self
    }

    fn cluster_id(&self) -> Option<ClusterId> {
        *self.cluster_id.borrow()
    }

    /// `message` as a request carrying this node's cluster id.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(id) = self.cluster_id()
            && let Ok(value) = id.to_string().parse()
        {
            request.metadata_mut().insert(CLUSTER_ID_HEADER, value);
        }
        request
    }

    /// Takes an answer from the peer at `addr` only if it belongs to this
    /// node's cluster.
    fn check_callee(&self, addr: &str, metadata: &MetadataMap) -> Result<(), CallError> {
        let Some(ours) = self.cluster_id() else {
            return Ok(());
        };
        let theirs = identity::caller_id(metadata).unwrap_or(None);
        if theirs == Some(ours) {
            return Ok(());
        }
        Err(CallError::WrongCluster {
            addr: addr.to_string(),
            ours,
            theirs,
        })
    }

    fn client(&self, addr: &str) -> Result<ClusterClient<Channel>, CallError> {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = map.get(addr) {
            return Ok(ClusterClient::new(channel.clone()));
        }
        let endpoint = endpoint(addr)
            .map_err(|e| CallError::BadAddress {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.connect_timeout);
        let channel = endpoint.connect_with_connector_lazy(dialer(self.transport.clone(), addr));
        map.insert(addr.to_string(), channel.clone());
        Ok(ClusterClient::new(channel))
    }

    /// Forgets the channel to `addr`, closing its connection; the next call
    /// dials afresh. After a call timed out, the connection may be
    /// black-holed (a partition drops packets without a reset): TCP's
    /// retransmission backoff would keep it stuck for seconds after the
    /// network heals, while a fresh connection works at once.
    fn evict(&self, addr: &str) {
        self.by_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }
}

/// Why a call to a peer got no answer. Its parts are plain values, so
/// tests and callers can compare them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The peer's address does not make a URI.
    #[error("peer unreachable: bad peer address {addr}: {reason}")]
    BadAddress {
        /// The address.
        addr: String,
        /// Why it is not one.
        reason: String,
    },
    /// The call failed: no connection, or the peer answered with an error
    /// status (a transport failure, or a caller without the right role).
    #[error("peer unreachable: {addr}: {code}: {message}")]
    Failed {
        /// The peer.
        addr: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// No answer in time; the connection is dropped.
    #[error("peer unreachable: {addr}: no answer within {after:?}")]
    Timeout {
        /// The peer.
        addr: String,
        /// How long the call waited.
        after: Duration,
    },
    /// The peer answered for another cluster, or for none.
    #[error("cluster id mismatch: this node belongs to {ours}, callee {addr} to {}", .theirs.map_or_else(|| "none".to_string(), |id| id.to_string()))]
    WrongCluster {
        /// The peer.
        addr: String,
        /// This node's cluster.
        ours: ClusterId,
        /// The peer's, if it named one.
        theirs: Option<ClusterId>,
    },
    /// The peer answered with something that does not decode.
    #[error("bad reply: {0}")]
    BadReply(String),
}

/// Sends `req` to `addr` and returns the whole answer, whoever gave it.
async fn exchange<Req, Resp, F, Fut>(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
    req: tonic::Request<Req>,
    f: F,
) -> Result<tonic::Response<Resp>, CallError>
where
    F: FnOnce(ClusterClient<Channel>, tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let client = channels.client(addr)?;
    // The peer learns the caller's deadline (`grpc-timeout`) and stops
    // working on the call when it passes.
    let mut req = req;
    req.set_timeout(timeout);
    match tokio::time::timeout(timeout, f(client, req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(status)) => Err(CallError::Failed {
            addr: addr.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }),
        Err(_) => {
            channels.evict(addr);
            Err(CallError::Timeout {
                addr: addr.to_string(),
                after: timeout,
            })
        }
    }
}

/// Sends `message` to `addr` as a member of this node's cluster, and takes
/// the answer only from a member of it.
async fn call<Req, Resp, F, Fut>(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
    message: Req,
    f: F,
) -> Result<Resp, CallError>
where
    F: FnOnce(ClusterClient<Channel>, tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let resp = exchange(channels, addr, timeout, channels.request(message), f).await?;
    channels.check_callee(addr, resp.metadata())?;
    Ok(resp.into_inner())
}

fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    serde_json::from_slice(bytes).map_err(|e| CallError::BadReply(e.to_string()))
}

fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>, CallError> {
    serde_json::to_vec(value).map_err(|e| CallError::BadReply(format!("encode: {e}")))
}

/// Sends `command` to the node at `addr`, which proposes it if it leads.
///
/// # Errors
///
/// The peer could not be reached within `timeout` or answered garbage.
pub async fn forward(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
    command: &Command,
) -> Result<ForwardResult, CallError> {
    let req = forward::request(command).map_err(|e| CallError::BadReply(format!("encode: {e}")))?;
    let started = std::time::Instant::now();
    let reply = call(channels, addr, timeout, req, |mut c, r| async move {
        c.forward(r).await
    })
    .await?;
    crate::metrics::global().stage(Stage::Forward, started.elapsed());
    forward::answer(&reply).map_err(|e| CallError::BadReply(e.to_string()))
}

/// Threshold mode, round 1: asks the node at `addr` to open a signing
/// session for `chain_id`.
///
/// # Errors
///
/// The peer could not be reached within `timeout`, or refused
/// (`CallError::Failed` with `FailedPrecondition`).
pub async fn commit(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
    chain_id: &str,
) -> Result<pb::CommitReply, CallError> {
    let request = pb::CommitRequest {
        chain_id: chain_id.to_string(),
    };
    call(channels, addr, timeout, request, |mut c, r| async move {
        c.commit(r).await
    })
    .await
}

/// Threshold mode, round 2: asks the node at `addr` for its share over
/// `package` in `session`.
///
/// # Errors
///
/// As [`commit`]; a refusal (not granted there, unknown session) is
/// `FailedPrecondition`.
pub async fn share(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
    request: pb::ShareRequest,
) -> Result<Vec<u8>, CallError> {
    let reply = call(channels, addr, timeout, request, |mut c, r| async move {
        c.share(r).await
    })
    .await?;
    Ok(reply.share)
}

/// Threshold mode's key generation: one step (JSON) on the node at
/// `addr`; returns its answer (JSON).
///
/// # Errors
///
/// As [`commit`].
pub async fn keygen(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
    step: Vec<u8>,
) -> Result<Vec<u8>, CallError> {
    let reply = call(
        channels,
        addr,
        timeout,
        pb::DkgRequest { step },
        |mut c, r| async move { c.dkg(r).await },
    )
    .await?;
    Ok(reply.answer)
}

/// openraft's network factory: hands out one [`PeerNetwork`] per target.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    channels: Channels,
    applied: watch::Receiver<Arc<AppliedState>>,
}

impl NetworkFactory {
    /// A factory over `channels`, telling each peer its role in the
    /// membership that `applied` (this node's applied state) holds.
    pub fn new(channels: Channels, applied: watch::Receiver<Arc<AppliedState>>) -> NetworkFactory {
        NetworkFactory { channels, applied }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerNetwork {
        PeerNetwork {
            channels: self.channels.clone(),
            applied: self.applied.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// Raft RPCs to one peer.
#[derive(Debug)]
pub struct PeerNetwork {
    channels: Channels,
    applied: watch::Receiver<Arc<AppliedState>>,
    target: NodeId,
    addr: String,
}

impl PeerNetwork {
    /// What the target is in this node's committed membership: a node
    /// joining with an empty store takes the cluster's id only as a
    /// learner.
    fn role(&self) -> Option<MemberRole> {
        let applied = self.applied.borrow();
        let membership = applied.membership.membership();
        if membership.voter_ids().any(|id| id == self.target) {
            Some(MemberRole::Voter)
        } else if membership.get_node(&self.target).is_some() {
            Some(MemberRole::Learner)
        } else {
            None
        }
    }

    async fn rpc<Req, Resp, E, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        f: F,
    ) -> Result<Resp, RPCError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error,
        RaftError<E>: DeserializeOwned,
        F: FnOnce(ClusterClient<Channel>, tonic::Request<pb::RaftRequest>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::RaftReply>, tonic::Status>>,
    {
        let unreachable = |e: CallError| RPCError::Unreachable(Unreachable::new(&e));
        let data = encode_json(req).map_err(unreachable)?;
        let mut request = self.channels.request(pb::RaftRequest { data });
        if let Some(role) = self.role() {
            request.metadata_mut().insert(
                MEMBER_ROLE_HEADER,
                tonic::metadata::MetadataValue::from_static(role.as_str()),
            );
        }
        let reply = exchange(&self.channels, &self.addr, option.hard_ttl(), request, f)
            .await
            .and_then(|reply| {
                self.channels.check_callee(&self.addr, reply.metadata())?;
                Ok(reply.into_inner())
            })
            .map_err(unreachable)?;
        let result: Result<Resp, RaftError<E>> = decode_json(&reply.data).map_err(unreachable)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError> {
        // Heartbeats carry no entries and are not part of a grant's time.
        let carries_entries = !rpc.entries.is_empty();
        let started = std::time::Instant::now();
        let reply = self
            .rpc(&rpc, &option, |mut c, r| async move {
                c.append_entries(r).await
            })
            .await;
        if carries_entries {
            crate::metrics::global().stage(Stage::Replicate, started.elapsed());
        }
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<InstallSnapshotError>> {
        self.rpc(&rpc, &option, |mut c, r| async move {
            c.install_snapshot(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError> {
        self.rpc(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }
}

/// Asks the node at `addr` who it is: a liveness probe.
///
/// # Errors
///
/// The peer could not be reached within `timeout`.
pub async fn ping(channels: &Channels, addr: &str, timeout: Duration) -> Result<NodeId, CallError> {
    let reply = call(
        channels,
        addr,
        timeout,
        pb::PingRequest {},
        |mut c, r| async move { c.ping(r).await },
    )
    .await?;
    Ok(reply.node_id)
}

/// Asks the node at `addr` to start an election now.
///
/// # Errors
///
/// The peer could not be reached within `timeout`.
pub async fn elect(channels: &Channels, addr: &str, timeout: Duration) -> Result<(), CallError> {
    call(
        channels,
        addr,
        timeout,
        pb::ElectRequest {},
        |mut c, r| async move { c.elect(r).await },
    )
    .await?;
    Ok(())
}

/// Offers cluster id `id` to the node at `addr` (`cluster init`); with
/// `dry_run`, only asks whether it would take it. Returns whether that node
/// already runs Raft (in cluster `id`).
///
/// # Errors
///
/// The peer could not be reached within `timeout`, or refused
/// (`CallError::Failed` with `FailedPrecondition`).
pub async fn adopt(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
    id: ClusterId,
    dry_run: bool,
) -> Result<bool, CallError> {
    let request = pb::AdoptRequest {
        cluster_id: id.to_string(),
        dry_run,
    };
    let reply = exchange(
        channels,
        addr,
        timeout,
        channels.request(request),
        |mut c, r| async move { c.adopt(r).await },
    )
    .await?;
    Ok(reply.into_inner().initialized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::transport::TcpTransport;

    fn answer_from(id: Option<ClusterId>) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        if let Some(id) = id {
            metadata.insert(CLUSTER_ID_HEADER, id.to_string().parse().unwrap());
        }
        metadata
    }

    #[test]
    fn answers_from_another_cluster_or_none_are_refused() {
        let (ours, theirs) = (ClusterId::random(), ClusterId::random());
        let channels =
            Channels::new(Arc::new(TcpTransport), Duration::from_secs(1)).in_cluster(ours);
        assert_eq!(
            channels.check_callee("b:1", &answer_from(Some(ours))),
            Ok(())
        );
        let refused = channels
            .check_callee("b:1", &answer_from(Some(theirs)))
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!("cluster id mismatch: this node belongs to {ours}, callee b:1 to {theirs}")
        );
        assert!(matches!(
            channels.check_callee("b:1", &answer_from(None)),
            Err(CallError::WrongCluster { theirs: None, .. })
        ));
        // A node of no cluster yet takes any answer (only `cluster init`
        // calls out before it has an id).
        let unbound = Channels::new(Arc::new(TcpTransport), Duration::from_secs(1));
        assert_eq!(
            unbound.check_callee("b:1", &answer_from(Some(theirs))),
            Ok(())
        );
    }
}
