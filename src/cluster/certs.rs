//! The cluster's private CA: creates the CA, node certificates and operator
//! certificates (rcgen, ECDSA P-256) as PEM files in one directory.
//!
//! Layout of the directory:
//! - `ca.pem`, `ca.key`: the CA (keep `ca.key` offline once every
//!   certificate is made);
//! - `node-N.pem`, `node-N.key`: node N, with [`NODE_NAME`] and its hosts
//!   as subject alternative names, usable as TLS server and client;
//! - `operator-NAME.pem`, `operator-NAME.key`: an operator, with
//!   [`OPERATOR_NAME`], usable as TLS client only.
//!
//! Keys are written 0600 and never overwritten.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::tls::{NODE_NAME, OPERATOR_NAME};
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
    Ok(Written {
        cert,
        key: key_path,
    })
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
/// for [`NODE_NAME`] and each of `hosts` (DNS names or IP addresses).
///
/// # Errors
///
/// No CA in `dir`, an invalid host, or files that exist already.
pub fn node(dir: &Path, id: u64, hosts: &[String]) -> Result<Written, CertError> {
    let mut names = vec![dns(NODE_NAME)?];
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
