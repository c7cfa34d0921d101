//! The client side of node-to-node traffic: openraft's `RaftNetworkFactory`
//! over tonic, and the call a follower uses to forward a command to the
//! leader.
//!
//! The byte streams come from a [`Transport`], the seam where TLS and a
//! simulated network plug in; [`TcpTransport`] is plaintext TCP and
//! [`TlsTransport`](super::tls::TlsTransport) mutual TLS.
//!
//! Every RPC runs under a timeout. A failed connect, a timeout or any other
//! transport failure is reported to openraft as `RPCError::Unreachable`, so
//! it backs off instead of retrying in a hot loop against a dead peer. An
//! error the peer's Raft returned is a `RemoteError`.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use openraft::error::{InstallSnapshotError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::{Channel, Endpoint};

use super::pb;
use super::pb::cluster_client::ClusterClient;
use super::tls::PeerInfo;
use super::types::typ::{RPCError, RaftError};
use super::types::{Command, Member, NodeId, Outcome, TypeConfig};
use futures_util::future::BoxFuture;

/// A byte stream between two nodes.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// A bound listening socket.
pub trait Listener: Send + 'static {
    /// The address peers reach this listener at (host:port).
    fn local_addr(&self) -> io::Result<String>;
    /// Waits for the next connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxIo>>;
    /// Waits for the next connection and says who is calling. Plaintext
    /// listeners know nothing of the caller: the default reports no TLS.
    fn accept_peer(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, PeerInfo)>> {
        Box::pin(async move { self.accept().await.map(|io| (io, PeerInfo::default())) })
    }
}

/// How nodes reach each other: the seam for TLS and simulated networks.
pub trait Transport: Send + Sync + 'static {
    /// Opens a stream to `addr` (host:port).
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxIo>>;
    /// Binds a listener on `addr` (host:port; port 0 picks a free one).
    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
}

/// Plaintext TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTransport;

struct TcpListener(tokio::net::TcpListener);

impl Listener for TcpListener {
    fn local_addr(&self) -> io::Result<String> {
        Ok(self.0.local_addr()?.to_string())
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            let (stream, _) = self.0.accept().await?;
            // Raft heartbeats are tiny; Nagle would only add latency.
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

impl Transport for TcpTransport {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxIo>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    }

    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TcpListener(listener)) as Box<dyn Listener>)
        })
    }
}

/// An accepted stream as tonic's server wants it, with what the handshake
/// learned about the caller (found in each request's extensions).
pub(crate) struct ServerIo(pub(crate) BoxIo, pub(crate) PeerInfo);

impl tonic::transport::server::Connected for ServerIo {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.1
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// One lazily connected tonic channel per peer address, shared by Raft
/// replication and forwarding. A tonic channel reconnects by itself after
/// a connection error; after a timeout the channel is replaced.
#[derive(Clone)]
pub struct Channels {
    transport: Arc<dyn Transport>,
    connect_timeout: Duration,
    by_addr: Arc<Mutex<BTreeMap<String, Channel>>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").finish_non_exhaustive()
    }
}

impl Channels {
    /// Channels over `transport`.
    pub fn new(transport: Arc<dyn Transport>, connect_timeout: Duration) -> Channels {
        Channels {
            transport,
            connect_timeout,
            by_addr: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn client(&self, addr: &str) -> Result<ClusterClient<Channel>, String> {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = map.get(addr) {
            return Ok(ClusterClient::new(channel.clone()));
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(self.connect_timeout);
        let transport = self.transport.clone();
        let target = addr.to_string();
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
            let connect = transport.connect(target.clone());
            async move { connect.await.map(TokioIo::new) }
        }));
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

/// Why a call to a peer got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Could not connect, timed out, or the transport failed.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with something that does not decode.
    #[error("bad reply: {0}")]
    BadReply(String),
}

async fn call<Req, Resp, F, Fut>(
    channels: &Channels,
    addr: &str,
    timeout: Duration,
    req: Req,
    f: F,
) -> Result<Resp, CallError>
where
    F: FnOnce(ClusterClient<Channel>, Req) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let client = channels.client(addr).map_err(CallError::Unreachable)?;
    match tokio::time::timeout(timeout, f(client, req)).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(CallError::Unreachable(format!(
            "{addr}: {}: {}",
            status.code(),
            status.message()
        ))),
        Err(_) => {
            channels.evict(addr);
            Err(CallError::Unreachable(format!(
                "{addr}: no answer within {timeout:?}"
            )))
        }
    }
}

fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CallError> {
    serde_json::from_slice(bytes).map_err(|e| CallError::BadReply(e.to_string()))
}

fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>, CallError> {
    serde_json::to_vec(value).map_err(|e| CallError::BadReply(format!("encode: {e}")))
}

/// The leader's answer to a forwarded command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardError {
    /// The callee is not the leader; here is who it thinks is.
    NotLeader {
        /// The leader, if known.
        leader: Option<(NodeId, Member)>,
    },
    /// The leader could not make the entry durable.
    Storage(String),
    /// The leader could not commit (lost leadership, shutting down).
    Unavailable(String),
}

/// The result of [`forward`].
pub type ForwardResult = Result<Outcome, ForwardError>;

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
    let req = pb::ForwardRequest {
        command: encode_json(command)?,
    };
    let reply = call(channels, addr, timeout, req, |mut c, r| async move {
        c.forward(r).await
    })
    .await?;
    decode_json(&reply.result)
}

/// openraft's network factory: hands out one [`PeerNetwork`] per target.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    channels: Channels,
}

impl NetworkFactory {
    /// A factory over `channels`.
    pub fn new(channels: Channels) -> NetworkFactory {
        NetworkFactory { channels }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerNetwork {
        PeerNetwork {
            channels: self.channels.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// Raft RPCs to one peer.
#[derive(Debug)]
pub struct PeerNetwork {
    channels: Channels,
    target: NodeId,
    addr: String,
}

impl PeerNetwork {
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
        F: FnOnce(ClusterClient<Channel>, pb::RaftRequest) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::RaftReply>, tonic::Status>>,
    {
        let unreachable = |e: CallError| RPCError::Unreachable(Unreachable::new(&e));
        let data = encode_json(req).map_err(unreachable)?;
        let reply = call(
            &self.channels,
            &self.addr,
            option.hard_ttl(),
            pb::RaftRequest { data },
            f,
        )
        .await
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
        self.rpc(&rpc, &option, |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
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
