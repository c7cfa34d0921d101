//! The mutual-TLS transport: dialling a node and a listener whose
//! handshakes are bounded.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::credentials::{Identity, peer_info};
use super::{HANDSHAKE_TIMEOUT, NODE_NAME, TlsConfig, TlsError};
use crate::cluster::accept::{Bounded, Handshake, Limits};
use crate::cluster::transport::{BoxIo, Listener, PeerInfo, TcpTransport, Transport};
use crate::cluster::types::NodeId;
use futures_util::future::BoxFuture;

/// Opens a TLS stream to a node at `addr` over TCP.
///
/// # Errors
///
/// Connect or handshake failures (a server outside the cluster CA).
pub async fn connect(connector: &TlsConnector, addr: &str) -> io::Result<BoxIo> {
    let tcp = TcpTransport.connect(addr.to_string()).await?;
    let name = ServerName::try_from(NODE_NAME)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(Box::new(stream))
}

/// Mutual TLS over TCP: the production transport when `[cluster] tls` is
/// set, and the operator's (which dials only). Its listener bounds the
/// handshakes callers can hold open ([`Limits`]).
#[derive(Clone)]
pub struct TlsTransport {
    // `None` for an operator, whose certificate cannot serve.
    acceptor: Option<TlsAcceptor>,
    connector: TlsConnector,
    limits: Limits,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl TlsTransport {
    /// A transport presenting `identity`.
    ///
    /// # Errors
    ///
    /// The certificate and key are unusable.
    pub fn new(identity: &Identity) -> Result<TlsTransport, TlsError> {
        Ok(TlsTransport {
            acceptor: Some(TlsAcceptor::from(Arc::new(identity.server_config()?))),
            connector: identity.connector()?,
            limits: Limits::default(),
        })
    }

    /// A transport that only dials, presenting `identity`: an operator's.
    /// Binding with it fails.
    ///
    /// # Errors
    ///
    /// The certificate and key are unusable.
    pub fn dialing(identity: &Identity) -> Result<TlsTransport, TlsError> {
        Ok(TlsTransport {
            acceptor: None,
            connector: identity.connector()?,
            limits: Limits::default(),
        })
    }

    /// The same transport, its listeners bounded by `limits`.
    pub fn with_limits(mut self, limits: Limits) -> TlsTransport {
        self.limits = limits;
        self
    }

    /// Loads `config` and builds the transport.
    ///
    /// # Errors
    ///
    /// Unreadable files or unusable certificates.
    pub fn from_config(config: &TlsConfig) -> Result<TlsTransport, TlsError> {
        TlsTransport::new(&Identity::load(config)?)
    }

    /// Loads `config` and builds node `node_id`'s transport, refusing a
    /// certificate that is not node `node_id`'s (see
    /// [`Identity::check_node`]).
    ///
    /// # Errors
    ///
    /// Unreadable files, unusable certificates, or another node's.
    pub fn for_node(config: &TlsConfig, node_id: NodeId) -> Result<TlsTransport, TlsError> {
        let identity = Identity::load(config)?;
        identity.check_node(config, node_id)?;
        TlsTransport::new(&identity)
    }
}

/// The server side of a handshake: the TLS stream and what its
/// certificate says about the caller.
fn tls_handshake(acceptor: TlsAcceptor) -> Handshake {
    Arc::new(move |tcp| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            let stream = acceptor.accept(tcp).await?;
            let info = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map_or(
                    PeerInfo {
                        tls: true,
                        ..PeerInfo::default()
                    },
                    peer_info,
                );
            Ok((Box::new(stream) as BoxIo, info))
        })
    })
}

impl Transport for TlsTransport {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxIo>> {
        let connector = self.connector.clone();
        Box::pin(async move { connect(&connector, &addr).await })
    }

    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let acceptor = self.acceptor.clone();
        let limits = self.limits;
        Box::pin(async move {
            let acceptor = acceptor.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "an operator's TLS transport cannot listen",
                )
            })?;
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let bounded = Bounded::new(listener, tls_handshake(acceptor), limits)?;
            Ok(Box::new(bounded) as Box<dyn Listener>)
        })
    }
}
