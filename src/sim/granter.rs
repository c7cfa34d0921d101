//! Granters the simulation wraps around a node's:
//!
//! - [`BoundedGranter`] checks that every grant answers within the grant
//!   timeout, which the config promises stays under CometBFT's signer
//!   timeout;
//! - [`EagerGranter`] is a planted bug for the checker to catch: it
//!   answers `Sign` for any new position at once, from the node's applied
//!   state, and proposes the grant to the cluster in the background: it
//!   signs before its grant commits. Never used outside the simulation.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::Node;
use futures_util::future::BoxFuture;

use super::trace::{Trace, now};
use crate::grant::{GrantError, Granter};
use crate::watermark::{Attempt, Verdict};

/// Timer slack a grant may take past its timeout: simulated time moves in
/// steps of a millisecond.
const TIMER_SLACK: Duration = Duration::from_millis(5);

/// Reports a violation for any grant, successful or not, that takes
/// longer than `bound`.
pub struct BoundedGranter {
    inner: Arc<dyn Granter>,
    bound: Duration,
    node_id: u64,
    trace: Trace,
}

impl BoundedGranter {
    /// Wraps node `node_id`'s `inner` granter, whose grants must end
    /// within `bound`.
    pub fn new(inner: Arc<dyn Granter>, bound: Duration, node_id: u64, trace: Trace) -> Self {
        BoundedGranter {
            inner,
            bound,
            node_id,
            trace,
        }
    }
}

impl Granter for BoundedGranter {
    fn grant<'a>(
        &'a self,
        chain_id: &'a str,
        attempt: Attempt,
    ) -> BoxFuture<'a, Result<Verdict, GrantError>> {
        Box::pin(async move {
            let started = now();
            let position = attempt.position;
            let result = self.inner.grant(chain_id, attempt).await;
            let took = now().saturating_sub(started);
            if took > self.bound + TIMER_SLACK {
                self.trace.violation(
                    now(),
                    format!(
                        "n{}: the grant for {chain_id} {position} took {} ms, over the {} ms grant timeout",
                        self.node_id,
                        took.as_millis(),
                        self.bound.as_millis()
                    ),
                );
            }
            result
        })
    }
}

/// Signs new positions before the cluster commits them (a bug).
#[derive(Clone, Debug)]
pub struct EagerGranter {
    node: Node,
}

impl EagerGranter {
    /// Wraps `node`'s granter.
    pub fn new(node: Node) -> EagerGranter {
        EagerGranter { node }
    }
}

impl Granter for EagerGranter {
    fn grant<'a>(
        &'a self,
        chain_id: &'a str,
        attempt: Attempt,
    ) -> BoxFuture<'a, Result<Verdict, GrantError>> {
        Box::pin(async move {
            let applied = self.node.applied_state();
            let last = applied.chains.get(chain_id).and_then(|s| s.position);
            if last.is_none_or(|last| attempt.position > last) {
                let node = self.node.clone();
                let chain = chain_id.to_string();
                let bytes = attempt.sign_bytes.clone();
                tokio::task::spawn_local(async move {
                    let _ = node.grant(&chain, attempt).await;
                });
                return Ok(Verdict::Sign(bytes));
            }
            self.node.grant(chain_id, attempt).await
        })
    }
}
