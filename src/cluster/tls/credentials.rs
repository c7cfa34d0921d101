//! This node's (or an operator's) credentials: the key and certificate
//! it presents, the CA it verifies peers against, the revoked serials and
//! CRLs it refuses, and what a verified peer certificate says about its
//! holder ([`PeerInfo`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};

use tokio_rustls::TlsConnector;

use crate::cluster::revoke::{BadSerial, RevokedClients, RevokedServers, parse_serial, serial_hex};
use crate::cluster::transport::PeerInfo;
use crate::cluster::types::NodeId;

use super::{NODE_NAME, OPERATOR_NAME, TlsConfig, TlsError, node_id_name};

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the revocation lists in `path`.
pub(super) fn load_crls(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
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
    pub(super) roots: Arc<RootCertStore>,
    pub(super) chain: Vec<CertificateDer<'static>>,
    pub(super) key: Arc<PrivateKeyDer<'static>>,
    pub(super) revoked: Arc<BTreeSet<String>>,
    pub(super) crls: Vec<CertificateRevocationListDer<'static>>,
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
pub fn peer_info(cert: &CertificateDer<'_>) -> PeerInfo {
    let mut info = PeerInfo {
        tls: true,
        ..PeerInfo::default()
    };
    let Ok(end_entity) = webpki::EndEntityCert::try_from(cert) else {
        return info;
    };
    info.serial = Some(serial_hex(end_entity.serial()));
    info.subject = crate::cluster::subject::common_name(end_entity.subject());
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
