//! The cluster's private CA: creates the CA, node certificates and operator
//! certificates (rcgen, ECDSA P-256) as PEM files in one directory.
//!
//! Layout of the directory:
//! - `ca.pem`, `ca.key`: the CA (keep `ca.key` offline once every
//!   certificate is made);
//! - `node-N.pem`, `node-N.key`: node N, with [`NODE_NAME`], its id name
//!   ([`node_id_name`]) and its hosts as subject alternative names, usable
//!   as TLS server and client;
//! - `operator-NAME.pem`, `operator-NAME.key`: an operator, with
//!   [`OPERATOR_NAME`], usable as TLS client only;
//! - `crl.pem`: the revocation list [`revoke`] keeps, signed by the CA.
//!
//! Keys are written 0600 and never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

use super::revoke::{BadSerial, parse_serial, serial_hex};
use super::tls::{NODE_NAME, OPERATOR_NAME, node_id_name};
use super::types::NodeId;
use crate::keys::softsign::write_secret_file;

/// The CA's common name (fixed, so the issuer can be rebuilt from its key).
const CA_NAME: &str = "quorumkms cluster CA";
/// Years a CA certificate is valid.
const CA_YEARS: i32 = 20;
/// Years a node or operator certificate is valid.
const LEAF_YEARS: i32 = 5;

/// Files written by one command.
#[derive(Clone, Debug)]
pub struct Written {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, 0600).
    pub key: PathBuf,
    /// The certificate's serial number (hex), what `tls.revoked` lists.
    pub serial: String,
}

/// The revocation list after [`revoke`].
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The list (`crl.pem` in the CA directory).
    pub crl: PathBuf,
    /// Every serial it names (hex), the new ones included.
    pub serials: Vec<String>,
}

/// Why a CA or a certificate was not made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file or directory cannot be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// There is no CA key to sign with.
    #[error("{}: {source} (create the CA first: quorumkms cluster certs init)", .path.display())]
    NoCa {
        /// Where the CA key should be.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CA key file holds no usable key (its contents are never echoed).
    #[error("{}: not a usable key", .0.display())]
    BadCaKey(PathBuf),
    /// A certificate or key file exists already.
    #[error("{} or {} already exists; refusing to overwrite", .cert.display(), .key.display())]
    Exists {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A host or operator name that cannot go into a certificate.
    #[error("{name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// An operator name with other characters than letters, digits, '-'
    /// and '_'.
    #[error("operator name {0:?}: use letters, digits, '-' and '_'")]
    BadOperatorName(String),
    /// The key file cannot be written safely.
    #[error("{0}")]
    Secret(#[from] crate::keys::Error),
    /// Key generation or signing failed.
    #[error("{0}")]
    Rcgen(#[from] rcgen::Error),
    /// A serial number that is not hex.
    #[error("{0}")]
    Serial(#[from] BadSerial),
    /// A certificate or revocation list file that does not parse.
    #[error("{}: {reason}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// `revoke` was given nothing to revoke.
    #[error("name a certificate to revoke (--cert FILE or --serial HEX)")]
    NothingToRevoke,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn this_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Average Gregorian year; off by a day at most, which is harmless here.
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

fn validity(params: &mut CertificateParams, years: i32) {
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn new_key() -> Result<KeyPair, CertError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

fn write_pair(dir: &Path, stem: &str, cert_pem: &str, key: &KeyPair) -> Result<Written, CertError> {
    let cert = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    if cert.exists() || key_path.exists() {
        return Err(CertError::Exists {
            cert,
            key: key_path,
        });
    }
    write_secret_file(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, cert_pem).map_err(io_error(&cert))?;
    let serial = serial_of(&cert)?;
    Ok(Written {
        cert,
        key: key_path,
        serial,
    })
}

/// The serial number (hex) of the first certificate in the PEM file `path`.
///
/// # Errors
///
/// The file cannot be read or holds no certificate.
pub fn serial_of(path: &Path) -> Result<String, CertError> {
    let unreadable = |reason: String| CertError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(io_error(path))?;
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| unreadable("no certificate".into()))?
        .map_err(|e| unreadable(e.to_string()))?;
    let parsed = webpki::EndEntityCert::try_from(&cert).map_err(|e| unreadable(e.to_string()))?;
    Ok(serial_hex(parsed.serial()))
}

/// Creates the CA in `dir` (`ca.pem`, `ca.key`).
///
/// # Errors
///
/// The directory cannot be written, or a CA is already there.
pub fn init_ca(dir: &Path) -> Result<Written, CertError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let key = new_key()?;
    let mut params = ca_params();
    validity(&mut params, CA_YEARS);
    let cert = params.self_signed(&key)?;
    write_pair(dir, "ca", &cert.pem(), &key)
}

fn issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, CertError> {
    let path = dir.join("ca.key");
    let pem = match std::fs::read_to_string(&path) {
        Ok(pem) => pem,
        Err(source) => return Err(CertError::NoCa { path, source }),
    };
    let key = KeyPair::from_pem(&pem).map_err(|_| CertError::BadCaKey(path))?;
    Ok(Issuer::new(ca_params(), key))
}

fn leaf(
    dir: &Path,
    stem: &str,
    common_name: &str,
    names: Vec<SanType>,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<Written, CertError> {
    let issuer = issuer(dir)?;
    let key = new_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = names;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_YEARS);
    let cert = params.signed_by(&key, &issuer)?;
    write_pair(dir, stem, &cert.pem(), &key)
}

fn dns(name: &str) -> Result<SanType, CertError> {
    Ok(SanType::DnsName(name.to_string().try_into().map_err(
        |e: rcgen::Error| CertError::BadName {
            name: name.to_string(),
            reason: e.to_string(),
        },
    )?))
}

/// Creates node `id`'s certificate (`node-ID.pem`, `node-ID.key`), valid
/// for [`NODE_NAME`], for [`node_id_name`]`(id)` (which binds it to node
/// `id`) and for each of `hosts` (DNS names or IP addresses).
///
/// # Errors
///
/// No CA in `dir`, an invalid host, or files that exist already.
pub fn node(dir: &Path, id: NodeId, hosts: &[String]) -> Result<Written, CertError> {
    let mut names = vec![dns(NODE_NAME)?, dns(&node_id_name(id))?];
    for host in hosts {
        names.push(match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => dns(host)?,
        });
    }
    leaf(
        dir,
        &format!("node-{id}"),
        &format!("quorumkms node {id}"),
        names,
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )
}

/// Creates an operator certificate (`operator-NAME.pem`, `.key`).
///
/// # Errors
///
/// No CA in `dir`, an unusable name, or files that exist already.
pub fn operator(dir: &Path, name: &str) -> Result<Written, CertError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(CertError::BadOperatorName(name.to_string()));
    }
    leaf(
        dir,
        &format!("operator-{name}"),
        &format!("quorumkms operator {name}"),
        vec![dns(OPERATOR_NAME)?],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    )
}

/// The serials (raw) and revocation times already in `crl`, if it exists.
fn listed(crl: &Path) -> Result<Vec<(Vec<u8>, u64)>, CertError> {
    let pem = match std::fs::read(crl) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error(crl)(source)),
    };
    let unreadable = |reason: String| CertError::Unreadable {
        path: crl.to_path_buf(),
        reason,
    };
    let mut entries = Vec::new();
    for der in CertificateRevocationListDer::pem_slice_iter(&pem) {
        let der = der.map_err(|e| unreadable(e.to_string()))?;
        let list = webpki::BorrowedCertRevocationList::from_der(der.as_ref())
            .map_err(|e| unreadable(e.to_string()))?;
        for entry in &list {
            let entry = entry.map_err(|e| unreadable(e.to_string()))?;
            entries.push((
                entry.serial_number.to_vec(),
                entry.revocation_date.as_secs(),
            ));
        }
    }
    Ok(entries)
}

/// Adds `serials` (hex) and the certificates in `certs` to the CA's
/// revocation list, `crl.pem` in `dir`, and signs it again. The list never
/// drops an entry. It is valid until the CA expires: nodes do not enforce
/// its next-update time, so an old copy keeps working (but misses later
/// revocations).
///
/// # Errors
///
/// No CA key in `dir`, nothing to revoke, an unreadable certificate, a
/// serial that is not hex, or a list that cannot be written.
pub fn revoke(dir: &Path, serials: &[String], certs: &[PathBuf]) -> Result<Revoked, CertError> {
    if serials.is_empty() && certs.is_empty() {
        return Err(CertError::NothingToRevoke);
    }
    let issuer = issuer(dir)?;
    let path = dir.join("crl.pem");
    let mut new = Vec::new();
    for serial in serials {
        new.push(parse_serial(serial)?);
    }
    for cert in certs {
        new.push(serial_of(cert)?);
    }
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut entries = listed(&path)?;
    for serial in new {
        let raw = hex::decode(&serial).map_err(|_| BadSerial(serial.clone()))?;
        if !entries
            .iter()
            .any(|(listed, _)| serial_hex(listed) == serial)
        {
            entries.push((raw, now_secs));
        }
    }
    let revoked_certs = entries
        .iter()
        .map(|(serial, secs)| RevokedCertParams {
            serial_number: SerialNumber::from_slice(serial),
            revocation_time: epoch + std::time::Duration::from_secs(*secs),
            reason_code: None,
            invalidity_date: None,
        })
        .collect();
    let params = CertificateRevocationListParams {
        this_update: epoch + std::time::Duration::from_secs(now_secs),
        next_update: rcgen::date_time_ymd(this_year() + CA_YEARS, 1, 1),
        // Seconds since the epoch: grows with every list this CA signs.
        crl_number: SerialNumber::from(now_secs),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let pem = params.signed_by(&issuer)?.pem()?;
    write_replacing(&path, pem.as_bytes())?;
    Ok(Revoked {
        crl: path,
        serials: entries
            .iter()
            .map(|(serial, _)| serial_hex(serial))
            .collect(),
    })
}

/// Writes `contents` to `path` through a synced temporary file and a
/// rename, so a crash leaves the old list or the new one.
fn write_replacing(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    let tmp = path.with_extension("pem.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(contents).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A node certificate as made before certificates named their node (no
/// [`node_id_name`]): for the tests of its refusal.
#[cfg(test)]
pub(crate) fn node_without_id(dir: &Path, stem: &str) -> Result<Written, CertError> {
    leaf(
        dir,
        stem,
        "quorumkms node",
        vec![dns(NODE_NAME)?],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )
}
