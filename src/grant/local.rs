//! Single-node granting: the chain's state file is the watermark.
//!
//! Like CometBFT's FilePV, each advance is written durably (with the
//! signature, so the file stays valid for FilePV and tmkms) before the
//! verdict is returned: committed to the state file's journal with one
//! sync; the state file itself is brought up to date right after the
//! verdict is handed back, off the grant's path (`StateFile::settle`).
//!
//! Signing once per grant: the granter must sign a new position to write
//! the file, so the session signs through [`LocalGranter::signer`], which
//! answers with that same signature when asked for those bytes and asks the
//! key otherwise (vote extensions, a state loaded from a file, or a state
//! that moved on meanwhile).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::floor::{Floored, Found};
use super::{Cause, GrantError, Granter};
use crate::keys::ConsensusSigner;
use crate::metrics::{Stage, timed};
use crate::watermark::{self, Attempt, SignState, StateFile, Verdict};

/// One chain's watermark, its file and its key.
#[derive(Debug)]
struct Chain {
    file: StateFile,
    state: Mutex<SignState>,
    signer: Arc<dyn ConsensusSigner>,
    /// The last signature this process made for the state file, with its
    /// sign bytes. A signature read from a file is never reused: it may
    /// have come from another key or a hand-edited file.
    signed_here: Mutex<Option<(Vec<u8>, [u8; 64])>>,
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
            signed_here: Mutex::new(None),
        };
        self.chains.insert(chain_id.into(), Arc::new(chain));
    }

    /// The signer sessions of `chain_id` use: the chain's key, except that
    /// the sign bytes it last signed for the state file get that signature.
    pub fn signer(&self, chain_id: &str) -> Option<Arc<dyn ConsensusSigner>> {
        let chain = self.chains.get(chain_id)?;
        Some(Arc::new(StateSigner(chain.clone())))
    }

    /// The current watermark of `chain_id`.
    pub fn state(&self, chain_id: &str) -> Option<SignState> {
        let chain = self.chains.get(chain_id)?;
        Some(lock(&chain.state).clone())
    }
}

fn lock<T>(state: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-updated state: the
    // in-memory state is only replaced after the file write succeeded.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Signs with the chain's key, reusing the signature made for the state
/// file when asked for the same bytes.
#[derive(Debug)]
struct StateSigner(Arc<Chain>);

impl ConsensusSigner for StateSigner {
    fn public_key(&self) -> crate::keys::PublicKey {
        self.0.signer.public_key()
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], crate::keys::Error> {
        let stored = match &*lock(&self.0.signed_here) {
            Some((bytes, signature)) if bytes == msg => Some(*signature),
            _ => None,
        };
        match stored {
            Some(signature) => Ok(signature),
            None => self.0.signer.sign(msg),
        }
    }
}

/// Decides and persists under the chain's lock. Blocking (fsync).
fn grant_blocking(chain: &Chain, attempt: &Attempt) -> Result<Verdict, GrantError> {
    let mut current = lock(&chain.state);
    let mut next = current.clone();
    let (verdict, changed) = watermark::grant(&mut next, attempt);
    if changed {
        let signature =
            timed(Stage::Sign, || chain.signer.sign(&next.sign_bytes)).map_err(|e| {
                GrantError::Storage(format!("cannot sign state for the state file: {e}").into())
            })?;
        next.signature = Some(signature.to_vec());
        timed(Stage::StateWrite, || chain.file.commit(&next))
            .map_err(|e| GrantError::Storage(Cause::new(e)))?;
        *lock(&chain.signed_here) = Some((next.sign_bytes.clone(), signature));
        *current = next;
    }
    Ok(verdict)
}

/// Makes `found` the chain's watermark if it has none. Blocking (fsync).
fn set_floor_blocking(chain: &Chain, chain_id: &str, found: &Found) -> Result<(), GrantError> {
    let mut current = lock(&chain.state);
    if current.position.is_some() {
        return Ok(());
    }
    let floor = found.state();
    chain
        .file
        .save(&floor)
        .map_err(|e| GrantError::Storage(Cause::new(e)))?;
    *current = floor;
    tracing::info!(
        %chain_id,
        height = found.height,
        source = %found.source,
        "state file raised to the chain's floor"
    );
    Ok(())
}

impl LocalGranter {
    /// Runs `work` on `chain_id`'s chain off the async threads: it holds
    /// the chain's lock and makes its state durable. Its result is handed
    /// back as soon as it is ready; the same thread then settles the state
    /// file (the next write settles first if this one failed).
    async fn on_chain<T: Send + 'static>(
        &self,
        chain_id: &str,
        what: &'static str,
        work: impl FnOnce(&Chain, &str) -> Result<T, GrantError> + Send + 'static,
    ) -> Result<T, GrantError> {
        let chain = self
            .chains
            .get(chain_id)
            .cloned()
            .ok_or_else(|| GrantError::UnknownChain(chain_id.to_string()))?;
        let chain_id = chain_id.to_string();
        let (result_tx, result_rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let _ = result_tx.send(work(&chain, &chain_id));
            if let Err(e) = chain.file.settle() {
                tracing::warn!(%chain_id, error = %e, "state file not updated; the next write retries");
            }
        });
        result_rx
            .await
            .map_err(|_| GrantError::Storage(format!("{what} task failed").into()))?
    }
}

impl Floored for LocalGranter {
    fn has_watermark(&self, chain_id: &str) -> bool {
        // An unknown chain is left to `grant`, which names it.
        self.chains
            .get(chain_id)
            .is_none_or(|chain| lock(&chain.state).position.is_some())
    }

    fn set_floor<'a>(
        &'a self,
        chain_id: &'a str,
        found: &'a Found,
    ) -> BoxFuture<'a, Result<(), GrantError>> {
        let found = found.clone();
        Box::pin(self.on_chain(chain_id, "floor", move |chain, chain_id| {
            set_floor_blocking(chain, chain_id, &found)
        }))
    }
}

impl Granter for LocalGranter {
    fn grant<'a>(
        &'a self,
        chain_id: &'a str,
        attempt: Attempt,
    ) -> BoxFuture<'a, Result<Verdict, GrantError>> {
        Box::pin(self.on_chain(chain_id, "grant", move |chain, _| {
            grant_blocking(chain, &attempt)
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::keys::softsign::SoftSigner;
    use crate::watermark::{Position, Step};

    /// A soft key that counts its signatures.
    #[derive(Debug)]
    struct Counting {
        key: SoftSigner,
        count: AtomicUsize,
    }

    impl ConsensusSigner for Counting {
        fn public_key(&self) -> crate::keys::PublicKey {
            self.key.public_key()
        }

        fn sign(&self, msg: &[u8]) -> Result<[u8; 64], crate::keys::Error> {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.key.sign(msg)
        }
    }

    fn attempt(height: i64, bytes: &[u8]) -> Attempt {
        Attempt {
            extension: None,
            position: Position {
                height,
                round: 0,
                step: Step::Prevote,
            },
            sign_bytes: bytes.to_vec(),
            origin: None,
        }
    }

    fn granter(dir: &tempfile::TempDir, state: SignState) -> (LocalGranter, Arc<Counting>) {
        let key = Arc::new(Counting {
            key: SoftSigner::from_seed([7; 32]),
            count: AtomicUsize::new(0),
        });
        let mut granter = LocalGranter::new();
        let file = StateFile::new(dir.path().join("state.json"));
        granter.add_chain("c", file, state, key.clone());
        (granter, key)
    }

    #[tokio::test]
    async fn a_new_position_costs_one_signature() {
        let dir = tempfile::tempdir().unwrap();
        let (granter, key) = granter(&dir, SignState::default());
        let session_signer = granter.signer("c").unwrap();
        for height in 1..=3 {
            let bytes = format!("vote at {height}").into_bytes();
            let verdict = granter.grant("c", attempt(height, &bytes)).await.unwrap();
            assert_eq!(verdict, Verdict::Sign(bytes.clone()));
            let signature = session_signer.sign(&bytes).unwrap();
            assert_eq!(
                signature,
                SoftSigner::from_seed([7; 32]).sign(&bytes).unwrap()
            );
            let stored = granter.state("c").unwrap().signature.unwrap();
            assert_eq!(
                stored,
                signature.to_vec(),
                "the state file holds the reply's signature"
            );
        }
        assert_eq!(key.count.load(Ordering::SeqCst), 3);
        // Other bytes (a vote extension) still go to the key.
        session_signer.sign(b"extension").unwrap();
        assert_eq!(key.count.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_signature_read_from_a_file_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = SignState {
            position: Some(Position {
                height: 5,
                round: 0,
                step: Step::Prevote,
            }),
            sign_bytes: b"loaded".to_vec(),
            signature: Some(vec![0; 64]),
            ..SignState::default()
        };
        let (granter, key) = granter(&dir, loaded);
        let verdict = granter.grant("c", attempt(5, b"loaded")).await.unwrap();
        assert_eq!(verdict, Verdict::Sign(b"loaded".to_vec()));
        let signature = granter.signer("c").unwrap().sign(b"loaded").unwrap();
        assert_ne!(signature, [0; 64]);
        assert_eq!(key.count.load(Ordering::SeqCst), 1);
    }
}
