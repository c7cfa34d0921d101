//! [`Error`]: why a node could not start or must stop, or why bootstrapping
//! Raft failed.
//! openraft's errors are large, so they are boxed.

use std::path::PathBuf;

use super::identity::IdentityError;
use super::store::BackendError;
use super::tls::TlsError;
use super::types::typ::{Fatal, InitializeError, RaftError};

/// Why a node could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is invalid.
    #[error("invalid cluster config: {}", .0.join("; "))]
    Config(Vec<String>),
    /// openraft rejected the timing settings.
    #[error("invalid cluster config: {0}")]
    RaftConfig(#[source] Box<openraft::ConfigError>),
    /// The TLS files cannot be read or used.
    #[error("invalid cluster config: tls: {0}")]
    Tls(#[from] TlsError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The listen address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("storage: create {}: {source}", .path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store could not be opened, read or written.
    #[error("storage: {0}")]
    Storage(#[from] BackendError),
    /// The store does not fit the cluster: see [`IdentityError`].
    #[error("{0}")]
    Identity(#[from] IdentityError),
    /// The Raft instance could not start.
    #[error("raft: {0}")]
    Raft(#[source] Box<Fatal>),
    /// Bootstrapping the cluster failed.
    #[error("raft: {0}")]
    Initialize(#[source] Box<RaftError<InitializeError>>),
}
