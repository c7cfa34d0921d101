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
//! A node certificate also names its node: node N's carries
//! `N.node.quorumkms.internal` ([`node_id_name`]). The listener records the
//! id in [`PeerInfo`], and the `Cluster` service refuses a Raft message
//! whose sender is another node ([`require_sender`]), so one node's key
//! cannot speak for the others. A node certificate without an id (made
//! before ids were bound) is refused; the operator reissues it.
//!
//! Clients verify the server against [`NODE_NAME`], not its host name:
//! every node of the cluster is equally trusted, and addresses may be IPs.
//! A connection without a certificate from the cluster CA, or with a
//! revoked one (`revoked` serials, or a `crl` from the CA), fails in the
//! handshake, whichever side presents it; a valid certificate with the
//! wrong role gets `PERMISSION_DENIED` from the service.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::accept::{Bounded, Handshake, Limits};
use super::revoke::{BadSerial, RevokedClients, RevokedServers, parse_serial, serial_hex};
use super::transport::{BoxIo, Listener, PeerInfo, TcpTransport, Transport};
use super::types::NodeId;
use futures_util::future::BoxFuture;

/// The DNS name every node certificate carries.
pub const NODE_NAME: &str = "node.quorumkms.internal";
/// The DNS name every operator certificate carries.
pub const OPERATOR_NAME: &str = "operator.quorumkms.internal";

/// The DNS name that binds a node certificate to node `id`:
/// `ID.node.quorumkms.internal`.
pub fn node_id_name(id: NodeId) -> String {
    format!("{id}.{NODE_NAME}")
}

/// How long a client's TLS handshake may take before the connection is
/// dropped (a server's: [`Limits::handshake_timeout`]).
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
    /// Serial numbers (hex, as `quorumkms cluster certs` prints them) of
    /// certificates to refuse, whichever side of a handshake presents them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
    /// A revocation list (PEM) from the cluster CA (`quorumkms cluster
    /// certs revoke`); its certificates are refused like `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
}

impl TlsConfig {
    /// The CA, certificate and key files; nothing revoked.
    pub fn new(ca: PathBuf, cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig {
            ca,
            cert,
            key,
            revoked: Vec::new(),
            crl: None,
        }
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

fn denied(role: Role) -> tonic::Status {
    let what = match role {
        Role::Node => "a node certificate",
        Role::Operator => "an operator certificate",
    };
    tonic::Status::permission_denied(format!("this call needs {what} from the cluster CA"))
}

/// Checks that the caller of `request` holds `role`, and returns what the
/// handshake learned about it. Plaintext servers (no `tls` configured:
/// loopback only, or `insecure_plaintext`) accept everyone; they log a
/// warning at start. A node certificate must name its node.
///
/// # Errors
///
/// `PERMISSION_DENIED` for a caller with the wrong or no role, or a node
/// certificate without a node id.
#[allow(clippy::result_large_err)]
pub fn require<T>(request: &tonic::Request<T>, role: Role) -> Result<PeerInfo, tonic::Status> {
    // A stream that did not come through our listener: refuse.
    let info = request
        .extensions()
        .get::<PeerInfo>()
        .cloned()
        .ok_or_else(|| denied(role))?;
    match role {
        _ if !info.tls => Ok(info),
        Role::Node if info.node && info.node_id.is_none() => {
            Err(tonic::Status::permission_denied(NO_NODE_ID))
        }
        Role::Node if info.node => Ok(info),
        Role::Operator if info.operator => Ok(info),
        _ => Err(denied(role)),
    }
}

/// What a node certificate without an id is told.
const NO_NODE_ID: &str = "this node certificate names no node id (it predates certificates \
     bound to node ids): reissue it with `quorumkms cluster certs node --id N`";

/// Checks that a Raft message claiming to come from node `sender` comes
/// from the holder of node `sender`'s certificate (plaintext callers are
/// not checked: see [`require`]).
///
/// # Errors
///
/// `PERMISSION_DENIED` when the certificate names another node.
#[allow(clippy::result_large_err)]
pub fn require_sender(peer: &PeerInfo, sender: Option<NodeId>) -> Result<(), tonic::Status> {
    if !peer.tls || (sender.is_some() && sender == peer.node_id) {
        return Ok(());
    }
    let claimed = sender.map_or("no node".to_string(), |id| format!("node {id}"));
    let holder = peer
        .node_id
        .map_or("no node".to_string(), |id| format!("node {id}"));
    Err(tonic::Status::permission_denied(format!(
        "the message says it is from {claimed}, but the caller's certificate is {holder}'s"
    )))
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
    /// A `revoked` entry that is not a hex serial number.
    #[error("revoked: {0}")]
    BadSerial(#[from] BadSerial),
    /// A revocation list that does not parse.
    #[error("{}: not a usable revocation list: {source}", .path.display())]
    Crl {
        /// The CRL file.
        path: PathBuf,
        /// The cause.
        source: webpki::Error,
    },
    /// A revocation list not signed by the cluster CA: every handshake
    /// would fail for want of a valid list from the CA.
    #[error("{}: not a revocation list signed by the cluster CA in {}", .crl.display(), .ca.display())]
    CrlIssuer {
        /// The CRL file.
        crl: PathBuf,
        /// The CA file.
        ca: PathBuf,
    },
    /// A PEM file with no revocation list in it.
    #[error("{}: no revocation list", .0.display())]
    NoCrl(PathBuf),
    /// This node's own certificate is not a node certificate.
    #[error("{}: not a node certificate (make one with quorumkms cluster certs node --id {node_id})", .path.display())]
    NotANode {
        /// The certificate file.
        path: PathBuf,
        /// This node's id.
        node_id: NodeId,
    },
    /// This node's certificate names no node id: made before certificates
    /// were bound to node ids.
    #[error("{}: the certificate names no node id; reissue it with quorumkms cluster certs node --id {node_id}", .path.display())]
    NoNodeId {
        /// The certificate file.
        path: PathBuf,
        /// This node's id.
        node_id: NodeId,
    },
    /// This node's certificate is another node's.
    #[error("{}: the certificate is node {cert}'s, but this is node {node_id}", .path.display())]
    WrongNode {
        /// The certificate file.
        path: PathBuf,
        /// The id the certificate names.
        cert: NodeId,
        /// This node's id.
        node_id: NodeId,
    },
    /// This identity's own certificate fails the checks its peers apply
    /// (another CA, expired): every handshake would fail.
    #[error("{}: the certificate does not pass the cluster CA's checks: {source}", .path.display())]
    OwnRefused {
        /// The certificate file.
        path: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
    /// This identity's own certificate is revoked: every peer would refuse it.
    #[error("{}: this certificate is revoked (serial {serial})", .path.display())]
    OwnRevoked {
        /// The certificate file.
        path: PathBuf,
        /// Its serial number.
        serial: String,
    },
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

/// Reads the revocation lists in `path`.
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if crls.is_empty() {
        return Err(TlsError::NoCrl(path.to_path_buf()));
    }
    for crl in &crls {
        webpki::OwnedCertRevocationList::from_der(crl.as_ref()).map_err(|source| {
            TlsError::Crl {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(crls)
}

/// Loaded certificates and key, and what to refuse. The key never appears
/// in `Debug`.
#[derive(Clone)]
pub struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    revoked: Arc<BTreeSet<String>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certs", &self.chain.len())
            .field("revoked", &self.revoked)
            .field("crls", &self.crls.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads the CA, the certificate, the key and the revocation list
    /// named by `config`.
    ///
    /// # Errors
    ///
    /// A file that cannot be read or holds no usable PEM, a `revoked`
    /// entry that is not hex, a revocation list not from the CA.
    pub fn load(config: &TlsConfig) -> Result<Identity, TlsError> {
        let ca = read(&config.ca)?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert = cert.map_err(|source| TlsError::Pem {
                path: config.ca.clone(),
                source,
            })?;
            roots.add(cert).map_err(|source| TlsError::Ca {
                path: config.ca.clone(),
                source,
            })?;
        }
        if roots.is_empty() {
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
        let revoked = config
            .revoked
            .iter()
            .map(|serial| parse_serial(serial))
            .collect::<Result<BTreeSet<_>, BadSerial>>()?;
        let crls = match &config.crl {
            Some(path) => load_crls(path)?,
            None => Vec::new(),
        };
        let identity = Identity {
            roots: Arc::new(roots),
            chain,
            key: Arc::new(key),
            revoked: Arc::new(revoked),
            crls,
        };
        identity.check_own(config)?;
        Ok(identity)
    }

    /// Checks this identity's certificate the way its peers will: against
    /// the CA, the revocation list and `revoked`. A certificate that fails
    /// here would fail every handshake, so it fails the start instead.
    fn check_own(&self, config: &TlsConfig) -> Result<(), TlsError> {
        let path = config.cert.clone();
        let checked = self.client_verifier()?.verify_client_cert(
            &self.chain[0],
            &self.chain[1..],
            UnixTime::now(),
        );
        match checked {
            Ok(_) => Ok(()),
            Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => {
                let serial = webpki::EndEntityCert::try_from(&self.chain[0])
                    .map_or_else(|_| "unknown".into(), |cert| serial_hex(cert.serial()));
                Err(TlsError::OwnRevoked { path, serial })
            }
            Err(
                rustls::Error::InvalidCertRevocationList(_)
                | rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus),
            ) => Err(TlsError::CrlIssuer {
                crl: config.crl.clone().unwrap_or_default(),
                ca: config.ca.clone(),
            }),
            Err(source) => Err(TlsError::OwnRefused { path, source }),
        }
    }

    /// The client-certificate verifier: WebPKI against the CA (and the
    /// revocation list), after `revoked`.
    fn client_verifier(&self) -> Result<Arc<RevokedClients>, TlsError> {
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider());
        if !self.crls.is_empty() {
            builder = builder
                .with_crls(self.crls.clone())
                .only_check_end_entity_revocation();
        }
        Ok(Arc::new(RevokedClients {
            inner: builder.build().map_err(TlsError::Verifier)?,
            revoked: self.revoked.clone(),
        }))
    }

    /// Checks that this identity can serve as node `node_id`: a node
    /// certificate naming exactly that node.
    ///
    /// # Errors
    ///
    /// Another role, no id or another node's.
    pub fn check_node(&self, config: &TlsConfig, node_id: NodeId) -> Result<(), TlsError> {
        let path = config.cert.clone();
        let info = peer_info(&self.chain[0]);
        if !info.node {
            return Err(TlsError::NotANode { path, node_id });
        }
        match info.node_id {
            None => return Err(TlsError::NoNodeId { path, node_id }),
            Some(cert) if cert != node_id => {
                return Err(TlsError::WrongNode {
                    path,
                    cert,
                    node_id,
                });
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// A server that requires a client certificate from the cluster CA.
    ///
    /// # Errors
    ///
    /// The certificate and key do not match or are unusable.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let verifier = self.client_verifier()?;
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
        let mut builder =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider());
        if !self.crls.is_empty() {
            builder = builder
                .with_crls(self.crls.clone())
                .only_check_end_entity_revocation();
        }
        let verifier = Arc::new(RevokedServers {
            inner: builder.build().map_err(TlsError::Verifier)?,
            revoked: self.revoked.clone(),
        });
        // The standard WebPKI verifier, wrapped only to refuse `revoked`.
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Settings)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
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

/// What a verified end-entity certificate says about its holder: its
/// roles, and the node it names (none when it names no node, or several).
fn peer_info(cert: &CertificateDer<'_>) -> PeerInfo {
    let mut info = PeerInfo {
        tls: true,
        ..PeerInfo::default()
    };
    let Ok(end_entity) = webpki::EndEntityCert::try_from(cert) else {
        return info;
    };
    info.serial = Some(serial_hex(end_entity.serial()));
    info.subject = super::subject::common_name(end_entity.subject());
    let has = |name: &str| {
        ServerName::try_from(name)
            .is_ok_and(|name| end_entity.verify_is_valid_for_subject_name(&name).is_ok())
    };
    info.node = has(NODE_NAME);
    info.operator = has(OPERATOR_NAME);
    let suffix = format!(".{NODE_NAME}");
    let ids: BTreeSet<NodeId> = end_entity
        .valid_dns_names()
        .filter_map(|name| name.strip_suffix(suffix.as_str()))
        .filter_map(|id| id.parse::<NodeId>().ok())
        // Canonical spellings only, and confirmed by the name check.
        .filter(|id| has(&node_id_name(*id)))
        .collect();
    if info.node && ids.len() == 1 {
        info.node_id = ids.first().copied();
    }
    info
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::cluster::certs;

    fn files(dir: &Path, stem: &str) -> TlsConfig {
        TlsConfig::new(
            dir.join("ca.pem"),
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        )
    }

    /// A CA with node certificates 1 to 3 and an operator's.
    fn pki() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        certs::init_ca(dir.path()).expect("CA");
        for id in 1..=3 {
            certs::node(dir.path(), id, &[]).expect("node");
        }
        certs::operator(dir.path(), "ops").expect("operator");
        dir
    }

    /// `client` dials a listener serving `server` and exchanges a byte:
    /// what the server learned of the client, or `None` when either side
    /// refused the other.
    async fn handshake(server: &TlsConfig, client: &TlsConfig) -> Option<PeerInfo> {
        let server = TlsTransport::from_config(server).expect("server identity");
        let client = TlsTransport::from_config(client).expect("client identity");
        let mut listener = server.bind("127.0.0.1:0".into()).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let serve = tokio::spawn(async move {
            let (mut io, info) = listener.accept_peer().await.expect("accept");
            let mut byte = [0u8; 1];
            io.read_exact(&mut byte).await.expect("read");
            io.write_all(&byte).await.expect("write");
            info
        });
        let echoed = async {
            let mut io = client.connect(addr).await.ok()?;
            // With TLS 1.3 the server judges the client's certificate after
            // the client has finished: a refusal shows on the first read.
            io.write_all(b"x").await.ok()?;
            let mut byte = [0u8; 1];
            (io.read(&mut byte).await.ok()? == 1).then_some(())
        };
        let echoed = tokio::time::timeout(Duration::from_secs(20), echoed)
            .await
            .expect("the handshake ends");
        match echoed {
            Some(()) => Some(serve.await.expect("server task")),
            None => {
                serve.abort();
                None
            }
        }
    }

    #[tokio::test]
    async fn a_node_certificate_names_its_node() {
        let pki = pki();
        let server = files(pki.path(), "node-1");
        let node = handshake(&server, &files(pki.path(), "node-2"))
            .await
            .expect("node 2 served");
        assert_eq!(
            node,
            PeerInfo {
                tls: true,
                node: true,
                operator: false,
                node_id: Some(2),
                serial: Some(certs::serial_of(&pki.path().join("node-2.pem")).expect("serial")),
                subject: Some("quorumkms node 2".into()),
            }
        );
        let operator = handshake(&server, &files(pki.path(), "operator-ops"))
            .await
            .expect("operator served");
        assert_eq!(
            operator,
            PeerInfo {
                tls: true,
                node: false,
                operator: true,
                node_id: None,
                serial: Some(
                    certs::serial_of(&pki.path().join("operator-ops.pem")).expect("serial")
                ),
                subject: Some("quorumkms operator ops".into()),
            }
        );
    }

    fn request_from(info: PeerInfo) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(info);
        request
    }

    #[tokio::test]
    async fn a_node_certificate_without_an_id_is_refused_with_the_fix() {
        let pki = pki();
        certs::node_without_id(pki.path(), "node-old").expect("old cert");
        let old = files(pki.path(), "node-old");
        let info = handshake(&files(pki.path(), "node-1"), &old)
            .await
            .expect("a valid certificate passes the handshake");
        assert!(info.node && info.node_id.is_none(), "{info:?}");
        let refused = require(&request_from(info), Role::Node).expect_err("no id");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused
                .message()
                .contains("quorumkms cluster certs node --id"),
            "{refused:?}"
        );
        // A node will not start with it either.
        let identity = Identity::load(&old).expect("load");
        let error = identity.check_node(&old, 4).expect_err("no id");
        assert!(matches!(error, TlsError::NoNodeId { node_id: 4, .. }));
        assert!(error.to_string().contains("--id 4"), "{error}");
    }

    #[test]
    fn a_raft_sender_must_be_the_certificate_holder() {
        let node_2 = PeerInfo {
            tls: true,
            node: true,
            operator: false,
            node_id: Some(2),
            ..PeerInfo::default()
        };
        let peer = require(&request_from(node_2), Role::Node).expect("a node");
        assert!(require_sender(&peer, Some(2)).is_ok());
        for claimed in [Some(3), Some(1), None] {
            let refused = require_sender(&peer, claimed).expect_err("another node");
            assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        }
        // Plaintext (loopback or insecure_plaintext) checks nobody.
        assert!(require_sender(&PeerInfo::default(), Some(3)).is_ok());
    }

    #[tokio::test]
    async fn a_certificate_from_another_ca_is_refused_by_the_server() {
        let pki = pki();
        let other = tempfile::tempdir().expect("tempdir");
        certs::init_ca(other.path()).expect("other CA");
        certs::operator(other.path(), "mallory").expect("foreign cert");
        // Loading it against our CA fails its own check...
        let mut foreign = files(other.path(), "operator-mallory");
        foreign.ca = pki.path().join("ca.pem");
        assert!(matches!(
            Identity::load(&foreign),
            Err(TlsError::OwnRefused { .. })
        ));
        // ...and a client that presents it anyway is refused by the node.
        let ours = Identity::load(&files(pki.path(), "operator-ops")).expect("ours");
        let theirs = Identity::load(&files(other.path(), "operator-mallory")).expect("theirs");
        let mallory = Identity {
            chain: theirs.chain,
            key: theirs.key,
            ..ours
        };
        let server = TlsTransport::from_config(&files(pki.path(), "node-1")).expect("server");
        let mut listener = server.bind("127.0.0.1:0".into()).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let serve = tokio::spawn(async move { listener.accept_peer().await.map(|(_, info)| info) });
        let client = TlsTransport::dialing(&mallory).expect("client");
        let refused = async {
            let mut io = client.connect(addr).await?;
            io.write_all(b"x").await?;
            let mut byte = [0u8; 1];
            io.read(&mut byte).await
        };
        let read = tokio::time::timeout(Duration::from_secs(20), refused)
            .await
            .expect("the handshake ends");
        assert!(!matches!(read, Ok(1)), "a foreign certificate was served");
        assert!(!serve.is_finished());
        serve.abort();
    }

    #[tokio::test]
    async fn callers_who_never_handshake_do_not_lock_out_a_node() {
        let pki = pki();
        let server = TlsTransport::from_config(&files(pki.path(), "node-1")).expect("server");
        let mut listener = server.bind("127.0.0.1:0".into()).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut stalled = Vec::new();
        for _ in 0..200 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.2:0".parse().expect("source"))
                .expect("bind source");
            stalled.push(
                socket
                    .connect(addr.parse().expect("addr"))
                    .await
                    .expect("connect"),
            );
        }
        let client = TlsTransport::from_config(&files(pki.path(), "node-2")).expect("client");
        let dial = tokio::spawn(async move {
            let mut io = client.connect(addr).await.expect("handshake");
            io.write_all(b"x").await.expect("write");
            let mut byte = [0u8; 1];
            io.read_exact(&mut byte).await.expect("echo");
        });
        let (mut io, info) = tokio::time::timeout(Duration::from_secs(30), listener.accept_peer())
            .await
            .expect("served in time")
            .expect("accepted");
        assert_eq!(info.node_id, Some(2));
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.expect("read");
        io.write_all(&byte).await.expect("echo");
        dial.await.expect("client");
        drop(stalled);
    }

    #[tokio::test]
    async fn revoked_serials_are_refused_by_either_side() {
        let pki = pki();
        let serial = certs::serial_of(&pki.path().join("node-2.pem")).expect("serial");
        // Written by hand: upper case, colons, a leading zero byte.
        let spelled = format!("00:{}", serial.to_uppercase());
        let mut server = files(pki.path(), "node-1");
        server.revoked = vec![spelled.clone()];
        assert_eq!(handshake(&server, &files(pki.path(), "node-2")).await, None);
        assert!(
            handshake(&server, &files(pki.path(), "node-3"))
                .await
                .is_some()
        );
        // As a client, node 1 refuses node 2 serving.
        let mut client = files(pki.path(), "node-1");
        client.revoked = vec![spelled];
        assert_eq!(handshake(&files(pki.path(), "node-2"), &client).await, None);
        assert!(
            handshake(&files(pki.path(), "node-3"), &client)
                .await
                .is_some()
        );

        let mut bad = files(pki.path(), "node-1");
        bad.revoked = vec!["not hex".into()];
        assert!(matches!(Identity::load(&bad), Err(TlsError::BadSerial(_))));
    }

    #[tokio::test]
    async fn the_cas_revocation_list_is_refused_by_either_side() {
        let pki = pki();
        let first = certs::revoke(pki.path(), &[], &[pki.path().join("node-2.pem")])
            .expect("revoke node 2");
        assert_eq!(first.serials.len(), 1);
        let with_crl = |stem: &str| {
            let mut tls = files(pki.path(), stem);
            tls.crl = Some(first.crl.clone());
            tls
        };
        let server = with_crl("node-1");
        assert_eq!(handshake(&server, &files(pki.path(), "node-2")).await, None);
        assert!(
            handshake(&server, &files(pki.path(), "node-3"))
                .await
                .is_some()
        );
        assert!(
            handshake(&server, &files(pki.path(), "operator-ops"))
                .await
                .is_some()
        );
        let client = with_crl("node-1");
        assert_eq!(handshake(&files(pki.path(), "node-2"), &client).await, None);
        assert!(
            handshake(&files(pki.path(), "node-3"), &client)
                .await
                .is_some()
        );

        // The list only grows; revoking again keeps the earlier entries.
        let serial = certs::serial_of(&pki.path().join("node-3.pem")).expect("serial");
        let second = certs::revoke(pki.path(), &[serial], &[]).expect("revoke node 3");
        assert_eq!(second.serials.len(), 2);
        assert_eq!(handshake(&server, &files(pki.path(), "node-2")).await, None);
        let server = with_crl("node-1");
        assert_eq!(handshake(&server, &files(pki.path(), "node-3")).await, None);

        // A list from another CA would refuse everyone: it does not load.
        let other = tempfile::tempdir().expect("tempdir");
        certs::init_ca(other.path()).expect("other CA");
        let foreign = certs::revoke(other.path(), &["01".into()], &[]).expect("foreign list");
        let mut tls = files(pki.path(), "node-1");
        tls.crl = Some(foreign.crl);
        assert!(matches!(
            Identity::load(&tls),
            Err(TlsError::CrlIssuer { .. })
        ));
    }
}
