//! Single-node granting: the chain's state file is the watermark.
//!
//! Like CometBFT's FilePV, each advance is written durably (with the
//! signature, so the file stays valid for FilePV and tmkms) before the
//! verdict is returned.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{BoxFuture, Cause, GrantError, Granter};
use crate::keys::ConsensusSigner;
use crate::watermark::{self, Attempt, SignState, StateFile, Verdict};

/// One chain's watermark, its file and its key.
#[derive(Debug)]
struct Chain {
    file: StateFile,
    state: Mutex<SignState>,
    signer: Arc<dyn ConsensusSigner>,
}

/// Grants from local state files, one per chain.
#[derive(Debug, Default)]
pub struct LocalGranter {
    chains: BTreeMap<String, Arc<Chain>>,
}

impl LocalGranter {
    /// An empty granter; add chains with [`LocalGranter::add_chain`].
    pub fn new() -> LocalGranter {
        LocalGranter::default()
    }

    /// Serves `chain_id` from `file`, whose current contents are `state`,
    /// signing with `signer`.
    pub fn add_chain(
        &mut self,
        chain_id: impl Into<String>,
        file: StateFile,
        state: SignState,
        signer: Arc<dyn ConsensusSigner>,
    ) {
        let chain = Chain {
            file,
            state: Mutex::new(state),
            signer,
        };
        self.chains.insert(chain_id.into(), Arc::new(chain));
    }

    /// The current watermark of `chain_id`.
    pub fn state(&self, chain_id: &str) -> Option<SignState> {
        let chain = self.chains.get(chain_id)?;
        Some(lock(&chain.state).clone())
    }
}

fn lock(state: &Mutex<SignState>) -> std::sync::MutexGuard<'_, SignState> {
    // A panic while holding the lock cannot leave a half-updated state: the
    // in-memory state is only replaced after the file write succeeded.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Decides and persists under the chain's lock. Blocking (fsync).
fn grant_blocking(chain: &Chain, attempt: &Attempt) -> Result<Verdict, GrantError> {
    let mut current = lock(&chain.state);
    let mut next = current.clone();
    let (verdict, changed) = watermark::grant(&mut next, attempt);
    if changed {
        let signature = chain.signer.sign(&next.sign_bytes).map_err(|e| {
            GrantError::Storage(format!("cannot sign state for the state file: {e}").into())
        })?;
        next.signature = Some(signature.to_vec());
        chain
            .file
            .save(&next)
            .map_err(|e| GrantError::Storage(Cause::new(e)))?;
        *current = next;
    }
    Ok(verdict)
}

impl Granter for LocalGranter {
    fn grant<'a>(
        &'a self,
        chain_id: &'a str,
        attempt: Attempt,
    ) -> BoxFuture<'a, Result<Verdict, GrantError>> {
        Box::pin(async move {
            let chain = self
                .chains
                .get(chain_id)
                .cloned()
                .ok_or_else(|| GrantError::UnknownChain(chain_id.to_string()))?;
            tokio::task::spawn_blocking(move || grant_blocking(&chain, &attempt))
                .await
                .map_err(|e| GrantError::Storage(format!("grant task failed: {e}").into()))?
        })
    }
}
