//! The byte streams between nodes: the [`Transport`] seam where TLS and a
//! simulated network plug in, plaintext [`TcpTransport`], and what a
//! listener learned about a caller ([`PeerInfo`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::types::NodeId;
use futures_util::future::BoxFuture;

/// What the server learned about a caller during the handshake. Stored as
/// tonic's connect info, so handlers find it in the request extensions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The connection is mutual TLS (otherwise plaintext: no checks).
    pub tls: bool,
    /// The caller presented a node certificate.
    pub node: bool,
    /// The caller presented an operator certificate.
    pub operator: bool,
    /// The node the caller's node certificate names.
    pub node_id: Option<NodeId>,
}

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
