//! A switch that makes a node's key backends fail on purpose, as if the
//! HSM had been unplugged. `quorumkms drill hsm-loss` flips it through the
//! admin API, so operators rehearse the failure without touching the
//! device. A lost key can only stop signatures, never release one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{ConsensusSigner, Error};

/// Shared on/off state: on means every signature fails.
#[derive(Clone, Debug, Default)]
pub struct KeyLoss(Arc<AtomicBool>);

impl KeyLoss {
    /// Turns the simulated loss on or off.
    pub fn set(&self, lost: bool) {
        self.0.store(lost, Ordering::SeqCst);
    }

    /// Whether the keys are lost.
    pub fn is_lost(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `signer`, failing while this switch is on.
    pub fn guard(&self, signer: Arc<dyn ConsensusSigner>) -> Arc<dyn ConsensusSigner> {
        Arc::new(Switched {
            inner: signer,
            loss: self.clone(),
        })
    }
}

#[derive(Debug)]
struct Switched {
    inner: Arc<dyn ConsensusSigner>,
    loss: KeyLoss,
}

impl ConsensusSigner for Switched {
    fn public_key(&self) -> super::PublicKey {
        self.inner.public_key()
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Error> {
        if self.loss.is_lost() {
            return Err(Error::Signing(
                "key backend unavailable (simulated key loss; clear it with the drill)".into(),
            ));
        }
        self.inner.sign(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::softsign::SoftSigner;

    #[test]
    fn signs_until_lost_and_again_after() {
        let loss = KeyLoss::default();
        let key = loss.guard(Arc::new(SoftSigner::generate()));
        assert!(key.sign(b"a").is_ok());
        loss.set(true);
        assert!(matches!(key.sign(b"a"), Err(Error::Signing(_))));
        loss.set(false);
        assert!(key.sign(b"a").is_ok());
    }
}
