//! A granter wrapper for process tests, compiled into debug builds only.
//!
//! With `QUORUMKMS_TEST_DIE_AFTER_GRANT=H` in its environment, a debug
//! build of the node aborts right after a sign request at height `H` or
//! above is granted, before the session signs or replies: a node dying
//! while holding a fresh grant. The process tests use it to check that the
//! validator's retry on another node gets the identical signature.
//!
//! It wraps the granter where the node is assembled ([`install`]), so the
//! session and the granters themselves know nothing of it, and a release
//! build neither contains it nor reads the variable.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tracing::warn;

use super::{GrantError, Granter};
use crate::watermark::{Attempt, Verdict};

/// The environment variable that arms the hook.
pub const DIE_AFTER_GRANT_ENV: &str = "QUORUMKMS_TEST_DIE_AFTER_GRANT";

/// Wraps `granter` when the environment asks for the hook; otherwise
/// returns it unchanged.
pub fn install(granter: Arc<dyn Granter>) -> Arc<dyn Granter> {
    let Some(at) = std::env::var(DIE_AFTER_GRANT_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
    else {
        return granter;
    };
    warn!("{DIE_AFTER_GRANT_ENV}={at}: this process aborts after a grant at or above that height");
    Arc::new(DieAfterGrant { inner: granter, at })
}

struct DieAfterGrant {
    inner: Arc<dyn Granter>,
    at: i64,
}

impl Granter for DieAfterGrant {
    fn grant<'a>(
        &'a self,
        chain_id: &'a str,
        attempt: Attempt,
    ) -> BoxFuture<'a, Result<Verdict, GrantError>> {
        Box::pin(async move {
            let position = attempt.position;
            let verdict = self.inner.grant(chain_id, attempt).await;
            if matches!(verdict, Ok(Verdict::Sign(_))) && position.height >= self.at {
                eprintln!(
                    "{DIE_AFTER_GRANT_ENV}: granted {chain_id} {position}; aborting before the reply"
                );
                std::process::abort();
            }
            verdict
        })
    }
}
