//! The cluster's network seam over turmoil's simulated TCP: a
//! [`Transport`] whose streams and listeners are `turmoil::net` sockets, so
//! node-to-node gRPC runs unchanged inside the simulation (plaintext).
//!
//! Connects are bounded by a timeout: a partition drops the SYN and a
//! simulated connect would otherwise wait forever.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::cluster::transport::{BoxIo, Listener, Transport};

/// How long a simulated connect may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Node-to-node traffic over `turmoil::net`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimTransport;

struct SimListener {
    inner: turmoil::net::TcpListener,
    advertised: String,
}

impl Listener for SimListener {
    fn local_addr(&self) -> io::Result<String> {
        Ok(self.advertised.clone())
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxIo>> {
        Box::pin(async move {
            let (stream, _) = self.inner.accept().await?;
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

/// The port of a `host:port` string.
fn port_of(addr: &str) -> io::Result<u16> {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address {addr}")))
}

/// Connects to `addr` (a simulated `host:port`) within [`CONNECT_TIMEOUT`].
///
/// # Errors
///
/// Refused, unresolvable, or no answer in time.
pub async fn connect(addr: &str) -> io::Result<turmoil::net::TcpStream> {
    let (host, port) = match addr.rsplit_once(':') {
        Some((host, _)) => (host.to_string(), port_of(addr)?),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad address {addr}"),
            ));
        }
    };
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        turmoil::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {addr} timed out"),
        )),
    }
}

/// Binds a simulated listener on every address of this host at `port`.
///
/// # Errors
///
/// The port is taken.
pub async fn bind(port: u16) -> io::Result<turmoil::net::TcpListener> {
    turmoil::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await
}

impl Transport for SimTransport {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxIo>> {
        Box::pin(async move { Ok(Box::new(connect(&addr).await?) as BoxIo) })
    }

    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let inner = bind(port_of(&addr)?).await?;
            Ok(Box::new(SimListener {
                inner,
                advertised: addr,
            }) as Box<dyn Listener>)
        })
    }
}
