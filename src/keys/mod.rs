//! Key backends behind one trait.
//!
//! A backend holds a chain's consensus key and signs what it is given. It
//! knows nothing of watermarks: it is only handed bytes that a grant
//! allowed, by `session` (after the grant) or, in single-node mode, by the
//! local granter, which must write the signature into the state file before
//! the grant is returned; the session then reuses that signature, so each
//! new position costs one signature.
//!
//! A key has a type ([`KeyType`]): Ed25519, or secp256k1 (CometBFT v1.0).
//! Both sign with a 64-byte signature, so only the public key
//! ([`PublicKey`]) differs between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors from a key backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend could not produce a signature (device gone, I/O, ...).
    #[error("signing failed: {0}")]
    Signing(String),
    /// A key could not be loaded.
    #[error("key: {0}")]
    Key(String),
}

/// The kind of a consensus key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// Ed25519, every CometBFT version.
    #[default]
    Ed25519,
    /// secp256k1 (ECDSA over SHA-256, low-S r‖s), CometBFT v1.0 only.
    Secp256k1,
}

impl KeyType {
    /// The name CometBFT gives the type (`pub_key_type` in v1.0).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Secp256k1 => "secp256k1",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ed25519" => Ok(KeyType::Ed25519),
            "secp256k1" => Ok(KeyType::Secp256k1),
            other => Err(format!(
                "unknown key type {other:?} (expected ed25519 or secp256k1)"
            )),
        }
    }
}

/// A consensus public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublicKey {
    /// 32-byte Ed25519 key.
    Ed25519([u8; 32]),
    /// 33-byte compressed SEC1 secp256k1 point.
    Secp256k1([u8; 33]),
}

impl AsRef<[u8]> for PublicKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(key: [u8; 32]) -> Self {
        PublicKey::Ed25519(key)
    }
}

/// What a public key can be read from: a [`PublicKey`], or the 32 bytes
/// of an Ed25519 key (the validator's helpers take either, by reference).
pub trait ToPublicKey {
    /// The key.
    fn to_public_key(&self) -> PublicKey;
}

impl ToPublicKey for PublicKey {
    fn to_public_key(&self) -> PublicKey {
        *self
    }
}

impl ToPublicKey for [u8; 32] {
    fn to_public_key(&self) -> PublicKey {
        PublicKey::Ed25519(*self)
    }
}

impl PublicKey {
    /// Its type.
    pub fn key_type(&self) -> KeyType {
        match self {
            PublicKey::Ed25519(_) => KeyType::Ed25519,
            PublicKey::Secp256k1(_) => KeyType::Secp256k1,
        }
    }

    /// The raw bytes CometBFT carries (`pub_key_bytes`).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PublicKey::Ed25519(k) => k,
            PublicKey::Secp256k1(k) => k,
        }
    }

    /// A key of `key_type` from its raw bytes. Checks the length and, for
    /// secp256k1, that the bytes are a point on the curve.
    ///
    /// # Errors
    ///
    /// A wrong length or an invalid point.
    pub fn from_type_and_bytes(key_type: KeyType, bytes: &[u8]) -> Result<PublicKey, String> {
        match key_type {
            KeyType::Ed25519 => <[u8; 32]>::try_from(bytes)
                .map(PublicKey::Ed25519)
                .map_err(|_| format!("ed25519 public key of {} bytes", bytes.len())),
            KeyType::Secp256k1 => {
                let key = <[u8; 33]>::try_from(bytes).map_err(|_| {
                    format!(
                        "secp256k1 public key of {} bytes (want 33, compressed)",
                        bytes.len()
                    )
                })?;
                if !matches!(key[0], 0x02 | 0x03)
                    || k256::ecdsa::VerifyingKey::from_sec1_bytes(&key).is_err()
                {
                    return Err("secp256k1 public key is not a compressed curve point".into());
                }
                Ok(PublicKey::Secp256k1(key))
            }
        }
    }

    /// The validator address CometBFT derives from the key: the first 20
    /// bytes of SHA-256 for Ed25519, RIPEMD-160 of SHA-256 for secp256k1.
    pub fn address(&self) -> [u8; 20] {
        match self {
            PublicKey::Ed25519(k) => crate::transport::node_id(k),
            PublicKey::Secp256k1(k) => {
                use ripemd::Ripemd160;
                let sha = Sha256::digest(k);
                Ripemd160::digest(sha).into()
            }
        }
    }

    /// The JSON type tag of the key in `priv_validator_key.json`.
    pub fn json_type(&self) -> &'static str {
        match self {
            PublicKey::Ed25519(_) => "tendermint/PubKeyEd25519",
            PublicKey::Secp256k1(_) => "tendermint/PubKeySecp256k1",
        }
    }

    /// Whether `signature` is this key's signature of `msg`, as CometBFT
    /// verifies it (secp256k1: SHA-256 of `msg`, r‖s, high S refused).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(k) => {
                use ed25519_dalek::Verifier as _;
                let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(k) else {
                    return false;
                };
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                key.verify(msg, &signature).is_ok()
            }
            PublicKey::Secp256k1(k) => {
                use k256::ecdsa::signature::Verifier as _;
                let Ok(key) = k256::ecdsa::VerifyingKey::from_sec1_bytes(k) else {
                    return false;
                };
                let Ok(signature) = k256::ecdsa::Signature::from_slice(signature) else {
                    return false;
                };
                // CometBFT refuses the malleated (high-S) twin.
                if signature.normalize_s().is_some() {
                    return false;
                }
                key.verify(msg, &signature).is_ok()
            }
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key_type(), hex::encode(self.as_bytes()))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A consensus key: Ed25519 or secp256k1.
pub trait ConsensusSigner: Send + Sync + fmt::Debug {
    /// The public key (its type is the key's type).
    fn public_key(&self) -> PublicKey;

    /// The key's type.
    fn key_type(&self) -> KeyType {
        self.public_key().key_type()
    }

    /// Signs `msg`: Ed25519, or secp256k1 ECDSA over SHA-256 of `msg` as
    /// 64-byte r‖s with low S. Both are deterministic (secp256k1 through
    /// RFC 6979 nonces), so the same key and message give the same
    /// signature on every node and every backend.
    ///
    /// # Errors
    ///
    /// When the backend fails; never signs partially.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Error>;
}

pub mod identity;
pub mod loss;
pub mod pkcs11;
pub mod secp256k1;
pub mod softsign;
pub mod yubihsm;

#[cfg(test)]
mod tests;
