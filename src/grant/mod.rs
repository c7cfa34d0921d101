//! The grant seam: where a session asks for permission to sign.
//!
//! A session never signs on its own judgement. It turns a request into a
//! [`watermark::Attempt`] and asks a [`Granter`], which answers with the
//! exact bytes it may sign or a refusal. Single-node mode's granter
//! persists the chain's state file before answering; the cluster's commits
//! a Raft entry and applies it first.
//!
//! # Invariant
//!
//! A `Verdict::Sign(bytes)` is returned only after the state that grants
//! `bytes` is durable (fsync'd locally, or committed and applied by Raft).

mod local;
#[cfg(debug_assertions)]
pub mod test_hook;

pub use local::LocalGranter;

use futures_util::future::BoxFuture;

use crate::watermark::{Attempt, Verdict};

/// Why no verdict could be had. Unlike a refusal these are transient: the
/// answer may differ later, so the validator should retry or fail over.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// No quorum or no leader within the grant timeout.
    #[error("no quorum: {0}")]
    Unavailable(String),
    /// The state could not be made durable (full disk, failed fsync).
    #[error("storage failure: {0}")]
    Storage(String),
    /// The chain is not configured here.
    #[error("unknown chain {0}")]
    UnknownChain(String),
}

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
