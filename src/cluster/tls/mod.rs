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
//!
//! [`credentials`] loads what a node or an operator presents and checks
//! peers against, [`transport`] is the mutual-TLS transport; this file
//! holds the settings, the role checks and their errors.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::revoke::BadSerial;
use super::transport::PeerInfo;
use super::types::NodeId;

mod credentials;
mod transport;

pub use credentials::{Identity, peer_info};
pub use transport::{TlsTransport, connect};

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

#[cfg(test)]
mod tests;
