//! Revocation by serial number (`[cluster] tls.revoked`): how serials are
//! written, and certificate verifiers that refuse the listed ones before
//! WebPKI's verifiers (which also apply the CA's revocation list) decide
//! the rest. Used on both sides of every handshake.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// A serial number that is not hex.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a serial number in hex")]
pub struct BadSerial(pub String);

/// A certificate serial number as the config and `quorumkms cluster
/// certs` write it: lower-case hex of the integer's bytes, without leading
/// zero bytes.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// Reads a serial number: hex, in either case, with optional `:`
/// separators and leading zeros; returns it as [`serial_hex`] writes it.
///
/// # Errors
///
/// Not hex, or empty.
pub fn parse_serial(text: &str) -> Result<String, BadSerial> {
    let digits: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    match hex::decode(&padded) {
        Ok(bytes) if !bytes.is_empty() => Ok(serial_hex(&bytes)),
        _ => Err(BadSerial(text.to_string())),
    }
}

/// Refuses a certificate whose serial is in `revoked`.
fn check_revoked(
    revoked: &BTreeSet<String>,
    end_entity: &CertificateDer<'_>,
) -> Result<(), rustls::Error> {
    if revoked.is_empty() {
        return Ok(());
    }
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    if revoked.contains(&serial_hex(cert.serial())) {
        Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
    } else {
        Ok(())
    }
}

/// A client-certificate verifier (WebPKI's) that refuses `revoked`
/// serials first.
#[derive(Debug)]
pub struct RevokedClients {
    /// The verifier that decides the rest.
    pub inner: Arc<dyn ClientCertVerifier>,
    /// Serials to refuse, as [`serial_hex`] writes them.
    pub revoked: Arc<BTreeSet<String>>,
}

impl ClientCertVerifier for RevokedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_revoked(&self.revoked, end_entity)?;
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// WebPKI's server-certificate verifier, refusing `revoked` serials
/// first.
#[derive(Debug)]
pub struct RevokedServers {
    /// The verifier that decides the rest.
    pub inner: Arc<WebPkiServerVerifier>,
    /// Serials to refuse, as [`serial_hex`] writes them.
    pub revoked: Arc<BTreeSet<String>>,
}

impl ServerCertVerifier for RevokedServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_revoked(&self.revoked, end_entity)?;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_read_as_written_by_hand() {
        assert_eq!(serial_hex(&[0, 0x0a, 0xbc]), "0abc");
        assert_eq!(serial_hex(&[0]), "00");
        for spelled in ["0abc", "0ABC", "00:0a:bc", "abc", " 0a bc "] {
            assert_eq!(parse_serial(spelled).expect(spelled), "0abc", "{spelled}");
        }
        for bad in ["", "xyz", "0a:zz"] {
            assert!(parse_serial(bad).is_err(), "{bad}");
        }
    }
}
