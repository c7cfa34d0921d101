//! Mutual TLS on the cluster port (rustls with ring): the node's
//! [`TlsTransport`] (dialing only, for an operator), and the role checks
//! the gRPC services apply to each caller.
//!
//! Every certificate comes from the cluster's own CA (`quorumkms cluster
//! certs ...`, see [`super::certs`]). A certificate's role is one of two
//! fixed DNS names in its subject alternative names:
//! - [`NODE_NAME`]: a signer node. It serves the cluster port and may call
//!   the node-to-node `Cluster` service (Raft, forwarded grants).
//! - [`OPERATOR_NAME`]: an operator. It may call the `Admin` service only,
//!   and cannot serve (it has no server-auth usage).
//!
//! Clients verify the server against [`NODE_NAME`], not its host name:
//! every node of the cluster is equally trusted, and addresses may be IPs.
//! A connection without a certificate from the cluster CA fails in the
//! handshake; a valid certificate with the wrong role gets
//! `PERMISSION_DENIED` from the service.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::transport::{BoxIo, Listener, PeerInfo, TcpTransport, Transport};
use futures_util::future::BoxFuture;

/// The DNS name every node certificate carries.
pub const NODE_NAME: &str = "node.quorumkms.internal";
/// The DNS name every operator certificate carries.
pub const OPERATOR_NAME: &str = "operator.quorumkms.internal";

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// `[cluster] tls = { ca = "...", cert = "...", key = "..." }`: PEM files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This node's (or operator's) certificate.
    pub cert: PathBuf,
    /// Its private key (mode 0600).
    pub key: PathBuf,
}

impl TlsConfig {
    /// The CA, certificate and key files.
    pub fn new(ca: PathBuf, cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig { ca, cert, key }
    }
}

/// A caller role a service requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A signer node.
    Node,
    /// An operator.
    Operator,
}

/// Checks that the caller of `request` holds `role`. Plaintext servers (no
/// `tls` configured: loopback only, or `insecure_plaintext`) accept
/// everyone; they log a warning at start.
///
/// # Errors
///
/// `PERMISSION_DENIED` for a caller with the wrong or no role.
#[allow(clippy::result_large_err)]
pub fn require<T>(request: &tonic::Request<T>, role: Role) -> Result<(), tonic::Status> {
    let info = request.extensions().get::<PeerInfo>().copied();
    let allowed = match info {
        // A stream that did not come through our listener: refuse.
        None => false,
        Some(info) if !info.tls => true,
        Some(info) => match role {
            Role::Node => info.node,
            Role::Operator => info.operator,
        },
    };
    if allowed {
        Ok(())
    } else {
        let what = match role {
            Role::Node => "a node certificate",
            Role::Operator => "an operator certificate",
        };
        Err(tonic::Status::permission_denied(format!(
            "this call needs {what} from the cluster CA"
        )))
    }
}

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A PEM file holds something that is not a certificate.
    #[error("{}: {source}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rustls::pki_types::pem::Error,
    },
    /// A CA certificate the trust store does not accept.
    #[error("{}: {source}", .path.display())]
    Ca {
        /// The CA file.
        path: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
    /// A PEM file with no certificate in it.
    #[error("{}: no certificate", .0.display())]
    NoCertificate(PathBuf),
    /// A key file with no usable private key (its contents are never
    /// echoed).
    #[error("{}: no usable private key", .0.display())]
    NoKey(PathBuf),
    /// The client-certificate verifier cannot be built.
    #[error("client verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// rustls refused the settings (protocol versions).
    #[error("{0}")]
    Settings(#[source] rustls::Error),
    /// The certificate and the key do not match or are unusable.
    #[error("certificate and key: {0}")]
    CertificateAndKey(#[source] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Loaded certificates and key. The key never appears in `Debug`.
#[derive(Clone)]
pub struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certs", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads the CA, the certificate and the key named by `config`.
    ///
    /// # Errors
    ///
    /// A file that cannot be read or holds no usable PEM.
    pub fn load(config: &TlsConfig) -> Result<Identity, TlsError> {
        let ca = read(&config.ca)?;
        let mut roots = RootCertStore::empty();
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert = cert.map_err(|source| TlsError::Pem {
                path: config.ca.clone(),
                source,
            })?;
            roots.add(cert).map_err(|source| TlsError::Ca {
                path: config.ca.clone(),
                source,
            })?;
            any = true;
        }
        if !any {
            return Err(TlsError::NoCertificate(config.ca.clone()));
        }
        let chain = CertificateDer::pem_slice_iter(&read(&config.cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                path: config.cert.clone(),
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(config.cert.clone()));
        }
        // Do not echo anything of the key file in errors.
        let key = PrivateKeyDer::from_pem_slice(&read(&config.key)?)
            .map_err(|_| TlsError::NoKey(config.key.clone()))?;
        Ok(Identity {
            roots: Arc::new(roots),
            chain,
            key: Arc::new(key),
        })
    }

    /// A server that requires a client certificate from the cluster CA.
    ///
    /// # Errors
    ///
    /// The certificate and key do not match or are unusable.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(TlsError::Verifier)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Settings)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(TlsError::CertificateAndKey)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// A client that presents this identity and trusts only the cluster CA.
    ///
    /// # Errors
    ///
    /// The certificate and key do not match or are unusable.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Settings)?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(TlsError::CertificateAndKey)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// Client-side connector for dialling nodes.
    ///
    /// # Errors
    ///
    /// As for [`Identity::client_config`].
    pub fn connector(&self) -> Result<TlsConnector, TlsError> {
        Ok(TlsConnector::from(Arc::new(self.client_config()?)))
    }
}

/// Which roles a verified end-entity certificate carries.
fn roles(cert: &CertificateDer<'_>) -> (bool, bool) {
    let Ok(end_entity) = webpki::EndEntityCert::try_from(cert) else {
        return (false, false);
    };
    let has = |name: &'static str| {
        ServerName::try_from(name)
            .is_ok_and(|name| end_entity.verify_is_valid_for_subject_name(&name).is_ok())
    };
    (has(NODE_NAME), has(OPERATOR_NAME))
}

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
/// set, and the operator's (which dials only).
#[derive(Clone)]
pub struct TlsTransport {
    // `None` for an operator, whose certificate cannot serve.
    acceptor: Option<TlsAcceptor>,
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
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
        })
    }

    /// Loads `config` and builds the transport.
    ///
    /// # Errors
    ///
    /// Unreadable files or unusable certificates.
    pub fn from_config(config: &TlsConfig) -> Result<TlsTransport, TlsError> {
        TlsTransport::new(&Identity::load(config)?)
    }
}

impl Transport for TlsTransport {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxIo>> {
        let connector = self.connector.clone();
        Box::pin(async move { connect(&connector, &addr).await })
    }

    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let acceptor = self.acceptor.clone();
        Box::pin(async move {
            let acceptor = acceptor.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "an operator's TLS transport cannot listen",
                )
            })?;
            let inner = TcpTransport.bind(addr).await?;
            let local = inner.local_addr()?;
            let (tx, rx) = mpsc::channel(64);
            let task = tokio::spawn(accept_loop(inner, acceptor, tx));
            Ok(Box::new(TlsListener { local, rx, task }) as Box<dyn Listener>)
        })
    }
}

/// Accepts TCP connections and runs each handshake in its own task, so a
/// slow or hostile client never holds up the others.
async fn accept_loop(
    mut inner: Box<dyn Listener>,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(BoxIo, PeerInfo)>,
) {
    loop {
        let tcp = match inner.accept().await {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let (node, operator) = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .map_or((false, false), roles);
                    let info = PeerInfo {
                        tls: true,
                        node,
                        operator,
                    };
                    let _ = tx.send((Box::new(stream) as BoxIo, info)).await;
                }
                Ok(Err(e)) => tracing::warn!(cause = %e, "TLS handshake refused"),
                Err(_) => tracing::warn!("TLS handshake timed out"),
            }
        });
    }
}

struct TlsListener {
    local: String,
    rx: mpsc::Receiver<(BoxIo, PeerInfo)>,
    task: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for TlsListener {
    fn local_addr(&self) -> io::Result<String> {
        Ok(self.local.clone())
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxIo>> {
        Box::pin(async move { self.accept_peer().await.map(|(io, _)| io) })
    }

    fn accept_peer(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, PeerInfo)>> {
        Box::pin(async move {
            self.rx
                .recv()
                .await
                .ok_or_else(|| io::Error::other("TLS listener stopped"))
        })
    }
}
