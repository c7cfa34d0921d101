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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The connection is mutual TLS (otherwise plaintext: no checks).
    pub tls: bool,
    /// The caller presented a node certificate.
    pub node: bool,
    /// The caller presented an operator certificate.
    pub operator: bool,
    /// The node the caller's node certificate names.
    pub node_id: Option<NodeId>,
    /// The serial number of the caller's certificate (hex, as
    /// `quorumkms cluster certs` prints it).
    pub serial: Option<String>,
    /// The common name of the caller's certificate.
    pub subject: Option<String>,
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

/// Every node-to-node socket: no Nagle (Raft heartbeats are tiny; it would
/// only add latency) and TCP keepalive, so a peer whose host dies without a
/// reset is noticed.
fn tune(stream: &tokio::net::TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    crate::transport::set_keepalive(stream)
}

impl TcpListener {
    async fn accept_tcp(&mut self) -> io::Result<tokio::net::TcpStream> {
        let (stream, _) = self.0.accept().await?;
        tune(&stream)?;
        Ok(stream)
    }
}

async fn connect_tcp(addr: String) -> io::Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    tune(&stream)?;
    Ok(stream)
}

impl Listener for TcpListener {
    fn local_addr(&self) -> io::Result<String> {
        Ok(self.0.local_addr()?.to_string())
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxIo>> {
        Box::pin(async move { Ok(Box::new(self.accept_tcp().await?) as BoxIo) })
    }
}

impl Transport for TcpTransport {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxIo>> {
        Box::pin(async move { Ok(Box::new(connect_tcp(addr).await?) as BoxIo) })
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
        self.1.clone()
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

#[cfg(test)]
mod tests {
    use socket2::SockRef;

    use super::*;

    fn assert_keepalive(stream: &tokio::net::TcpStream) {
        crate::transport::keepalive::assert_on(stream);
        let socket = SockRef::from(stream);
        assert!(socket.tcp_nodelay().expect("TCP_NODELAY"), "Nagle is on");
    }

    #[tokio::test]
    async fn dialled_and_accepted_sockets_have_keepalive() {
        let mut listener = TcpListener(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
        let addr = listener.local_addr().expect("addr");
        let (dialled, accepted) = tokio::join!(connect_tcp(addr), listener.accept_tcp());
        assert_keepalive(&dialled.expect("connect"));
        assert_keepalive(&accepted.expect("accept"));
    }
}
