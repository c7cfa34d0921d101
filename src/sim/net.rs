//! The cluster's network seam over turmoil's simulated TCP: a
//! [`Transport`] whose streams and listeners are `turmoil::net` sockets, so
//! node-to-node gRPC runs unchanged inside the simulation (plaintext).
//!
//! Connects are bounded by a timeout: a partition drops the SYN and a
//! simulated connect would otherwise wait forever.
//!
//! There is no TLS (it would draw OS randomness), but the listener tells
//! the server who calls as the mutual-TLS listener would: [`certificate`]
//! is the simulation's certificate authority, a fixed map from a caller's
//! host to the certificate it holds. So `tls::require` and
//! `tls::require_sender` run in the simulation exactly as in production,
//! on what a handshake would have proved; only the handshake itself (and
//! revocation) is left to the TLS tests.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::cluster::transport::{BoxIo, Listener, PeerInfo, Transport};
use crate::cluster::types::NodeId;

/// The host of the operator, who holds an operator certificate.
pub const OPERATOR: &str = "operator";
/// A hostile host with no certificate from the cluster CA.
pub const ANONYMOUS: &str = "x-anon";
/// A hostile host with a node certificate for a node that is no member
/// (say, a removed node whose certificate was never revoked).
pub const STRANGER: &str = "x-stranger";
/// The node id [`STRANGER`]'s certificate names.
pub const STRANGER_ID: NodeId = 99;
/// A hostile host with a node certificate for node [`TWIN_ID`] of another
/// cluster that shares the CA.
pub const TWIN: &str = "x-twin";
/// The node id [`TWIN`]'s certificate names: a member's id here.
pub const TWIN_ID: NodeId = 1;
/// A compromised member: a host with member [`ROGUE_ID`]'s node
/// certificate (and key shares), copied off that node's host.
pub const ROGUE: &str = "x-rogue";
/// The member whose certificate [`ROGUE`] holds: an initial voter, never
/// removed.
pub const ROGUE_ID: NodeId = 3;

/// What a mutual-TLS handshake would learn about a caller on `host`:
/// signer host `sN` holds node `N`'s certificate, the operator an operator
/// certificate, the hostile hosts what their names say, anyone else none.
pub fn certificate(host: &str) -> PeerInfo {
    let node = |id| PeerInfo {
        tls: true,
        node: true,
        operator: false,
        node_id: Some(id),
        ..PeerInfo::default()
    };
    match host {
        OPERATOR => PeerInfo {
            tls: true,
            operator: true,
            ..PeerInfo::default()
        },
        STRANGER => node(STRANGER_ID),
        TWIN => node(TWIN_ID),
        ROGUE => node(ROGUE_ID),
        _ => match host.strip_prefix('s').and_then(|id| id.parse().ok()) {
            Some(id) => node(id),
            None => PeerInfo {
                tls: true,
                ..PeerInfo::default()
            },
        },
    }
}

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
        Box::pin(async move { Ok(self.accept_peer().await?.0) })
    }

    fn accept_peer(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, PeerInfo)>> {
        Box::pin(async move {
            let (stream, peer) = self.inner.accept().await?;
            let host = turmoil::reverse_lookup(peer.ip()).unwrap_or_default();
            Ok((Box::new(stream) as BoxIo, certificate(&host)))
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
