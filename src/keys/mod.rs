//! Key backends behind one trait.
//!
//! A backend holds a chain's consensus key and signs what it is given. It
//! knows nothing of watermarks: it is only handed bytes that a grant
//! allowed, by `session` (after the grant) or, in single-node mode, by the
//! local granter, which must write the signature into the state file before
//! the grant is returned; the session then reuses that signature, so each
//! new position costs one signature.

use std::fmt;

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

/// An Ed25519 consensus key.
pub trait ConsensusSigner: Send + Sync + fmt::Debug {
    /// The 32-byte Ed25519 public key.
    fn public_key(&self) -> [u8; 32];

    /// Signs `msg`. Ed25519 is deterministic: the same key and message give
    /// the same signature on every node.
    ///
    /// # Errors
    ///
    /// When the backend fails; never signs partially.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Error>;
}

pub mod identity;
pub mod loss;
pub mod softsign;
pub mod yubihsm;
