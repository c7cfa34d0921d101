//! The signer's connection identity (`kms-identity.key`).
//!
//! The SecretConnection key that validators see as this signer's node id.
//! It is not a consensus key. Same file format as softsign key files
//! (base64 of a 32-byte seed, mode 0600).

use std::path::Path;

use zeroize::Zeroize;

use super::Error;
use super::softsign::{encode_seed, read_seed_file, write_secret_file};

/// Loads the identity key at `path`.
///
/// # Errors
///
/// As [`super::softsign::SoftSigner::load`]: missing, unreadable,
/// group/other-accessible or malformed file.
pub fn load(path: &Path) -> Result<ed25519_consensus::SigningKey, Error> {
    let seed = read_seed_file(path)?;
    Ok(ed25519_consensus::SigningKey::from(*seed))
}

/// Generates a new identity key and writes it to `path` (which must not
/// exist).
///
/// # Errors
///
/// When the file exists or cannot be written.
pub fn generate(path: &Path) -> Result<ed25519_consensus::SigningKey, Error> {
    let key = ed25519_consensus::SigningKey::new(rand_core::OsRng);
    let mut seed = key.to_bytes();
    let result = write_secret_file(path, encode_seed(&seed).as_bytes());
    seed.zeroize();
    result.map(|()| key)
}

/// Loads the identity key at `path`, generating it first if the file does
/// not exist.
///
/// # Errors
///
/// As [`load`] and [`generate`].
pub fn load_or_generate(path: &Path) -> Result<ed25519_consensus::SigningKey, Error> {
    if path.exists() {
        load(path)
    } else {
        generate(path)
    }
}

/// The node id that validators see for this identity.
pub fn node_id(key: &ed25519_consensus::SigningKey) -> [u8; 20] {
    crate::transport::node_id(key.verification_key().as_bytes())
}
