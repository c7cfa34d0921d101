//! A planted bug for the simulation's checker to catch: a granter that
//! answers `Sign` for any new position at once, from the node's applied
//! state, and proposes the grant to the cluster in the background: it
//! signs before its grant commits. Never used outside the simulation.

use crate::cluster::Node;
use futures_util::future::BoxFuture;

use crate::grant::{GrantError, Granter};
use crate::watermark::{Attempt, Verdict};

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
