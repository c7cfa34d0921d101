//! The grant seam: where a session asks for permission to sign.
//!
//! A session never signs on its own judgement. It turns a request into an
//! [`Attempt`] and asks a [`Granter`], which answers with the exact bytes it
//! may sign or a refusal. Single-node mode's granter persists the chain's
//! state file before answering; the cluster's commits a Raft entry and
//! applies it first.
//!
//! # Invariant
//!
//! A `Verdict::Sign(bytes)` is returned only after the state that grants
//! `bytes` is durable (fsync'd locally, or committed and applied by Raft).

pub mod floor;
mod local;
#[cfg(debug_assertions)]
pub mod test_hook;

pub use local::LocalGranter;

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::watermark::{Attempt, Verdict};

/// Why no verdict could be had. Unlike a refusal these are transient: the
/// answer may differ later, so the validator should retry or fail over.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// No quorum or no leader within the grant timeout.
    #[error("no quorum: {0}")]
    Unavailable(#[source] Cause),
    /// The state could not be made durable (full disk, failed fsync).
    #[error("storage failure: {0}")]
    Storage(#[source] Cause),
    /// The chain is not configured here.
    #[error("unknown chain {0}")]
    UnknownChain(String),
    /// The chain has no watermark and no floor could be had (see
    /// [`floor`]): refused, and tried again on the next request.
    #[error("{0}")]
    NoFloor(#[source] Cause),
}

/// The error behind a [`GrantError`], kept as the typed error it was
/// (behind an `Arc`, so a `GrantError` stays cheap to clone). Two causes
/// are equal when they say the same.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Keeps `error` as the cause.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(error))
    }

    /// The typed error, to inspect or downcast.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

/// A cause that is only a message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl From<String> for Cause {
    fn from(message: String) -> Cause {
        Cause::new(Message(message))
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Cause {
        Cause::from(message.to_string())
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

/// Asks for permission to sign.
pub trait Granter: Send + Sync + 'static {
    /// Decides `attempt` for `chain_id` and makes the decision durable.
    ///
    /// # Invariant
    ///
    /// Returns `Ok(Verdict::Sign(b))` only once a durable state grants `b`.
    fn grant<'a>(
        &'a self,
        chain_id: &'a str,
        attempt: Attempt,
    ) -> BoxFuture<'a, Result<Verdict, GrantError>>;
}
