//! A node's threshold signer as the simulation wraps it: a signature that
//! fails after its grant (fewer than `t` shares in time, because nodes are
//! down or their applied state no longer grants the bytes) is traced with
//! the coordinator's reason and counted. Not a violation: the session
//! closes the connection and the validator retries, as after any failure
//! of a key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;

use super::trace::{Trace, now};
use crate::keys::PublicKey;
use crate::threshold::{GroupSigner, SignError};

/// Threshold signatures that failed, shared by every node of a run.
pub type Failures = Arc<AtomicU64>;

/// Traces and counts the failures of `inner`, node `node`'s signer.
pub struct TracedGroup {
    inner: Arc<dyn GroupSigner>,
    node: u64,
    trace: Trace,
    failures: Failures,
}

impl TracedGroup {
    /// Wraps node `node`'s `inner`, counting its failures in `failures`.
    pub fn new(
        inner: Arc<dyn GroupSigner>,
        node: u64,
        trace: Trace,
        failures: Failures,
    ) -> TracedGroup {
        TracedGroup {
            inner,
            node,
            trace,
            failures,
        }
    }
}

impl std::fmt::Debug for TracedGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedGroup")
            .field("inner", &self.inner)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl GroupSigner for TracedGroup {
    fn public_key(&self) -> Option<PublicKey> {
        self.inner.public_key()
    }

    fn sign<'a>(&'a self, msg: &'a [u8]) -> BoxFuture<'a, Result<[u8; 64], SignError>> {
        Box::pin(async move {
            let signed = self.inner.sign(msg).await;
            if let Err(e) = &signed {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.trace.event(
                    now(),
                    format!("n{} threshold signature failed: {e}", self.node),
                );
            }
            signed
        })
    }
}
