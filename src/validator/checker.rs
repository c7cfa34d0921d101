//! Collects every signature a signer released and counts the conflicting
//! ones: two different payloads signed for one (chain, height, round,
//! step). The only acceptable count is zero.
//!
//! Payloads that differ only in their timestamp still count as a conflict
//! here: the signer must answer a timestamp-only change with the stored
//! payload, so a validator never sees two.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::keys::ToPublicKey;
use crate::watermark::Position;

/// One released signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// Chain id.
    pub chain_id: String,
    /// What it signs.
    pub position: Position,
    /// The signed bytes.
    pub sign_bytes: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// What the checker found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Signatures recorded.
    pub released: usize,
    /// Positions signed with two different payloads.
    pub conflicts: usize,
    /// Signatures that did not verify against the public key.
    pub invalid: usize,
}

#[derive(Default)]
struct Inner {
    first: BTreeMap<(String, Position), Vec<u8>>,
    report: Report,
    conflicts: Vec<(String, Position)>,
}

/// A shared, thread-safe signature log.
#[derive(Clone, Default)]
pub struct Checker {
    inner: Arc<Mutex<Inner>>,
}

impl Checker {
    /// An empty log.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Records a released signature, verifying it against `public_key`.
    /// Returns false when it conflicts with an earlier one or is invalid.
    pub fn record(&self, public_key: &impl ToPublicKey, released: Released) -> bool {
        let valid = verify(public_key, &released.sign_bytes, &released.signature);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.report.released += 1;
        if !valid {
            inner.report.invalid += 1;
        }
        let key = (released.chain_id.clone(), released.position);
        let consistent = match inner.first.get(&key) {
            Some(first) => *first == released.sign_bytes,
            None => {
                inner.first.insert(key.clone(), released.sign_bytes);
                true
            }
        };
        if !consistent {
            inner.report.conflicts += 1;
            inner.conflicts.push(key);
        }
        valid && consistent
    }

    /// The counts so far.
    pub fn report(&self) -> Report {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .report
            .clone()
    }

    /// The positions that were signed twice, for error messages.
    pub fn conflicting_positions(&self) -> Vec<(String, Position)> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .conflicts
            .clone()
    }

    /// The highest position signed for `chain_id`.
    pub fn highest(&self, chain_id: &str) -> Option<Position> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .first
            .keys()
            .filter(|(c, _)| c == chain_id)
            .map(|(_, p)| *p)
            .max()
    }
}

/// True when `signature` is a valid signature of `msg` by `public_key`
/// (Ed25519, or secp256k1 as CometBFT verifies it).
pub fn verify(public_key: &impl ToPublicKey, msg: &[u8], signature: &[u8]) -> bool {
    public_key.to_public_key().verify(msg, signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::Step;
    use ed25519_dalek::{Signer, SigningKey};

    fn released(key: &SigningKey, height: i64, bytes: &[u8]) -> Released {
        Released {
            chain_id: "c".into(),
            position: Position {
                height,
                round: 0,
                step: Step::Prevote,
            },
            sign_bytes: bytes.to_vec(),
            signature: key.sign(bytes).to_bytes().to_vec(),
        }
    }

    #[test]
    fn counts_conflicts_and_bad_signatures() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let checker = Checker::new();
        assert!(checker.record(&public, released(&key, 1, b"a")));
        assert!(checker.record(&public, released(&key, 1, b"a")));
        assert!(checker.record(&public, released(&key, 2, b"b")));
        assert!(!checker.record(&public, released(&key, 1, b"x")));
        let mut forged = released(&key, 3, b"c");
        forged.signature[0] ^= 1;
        assert!(!checker.record(&public, forged));
        assert_eq!(
            checker.report(),
            Report {
                released: 5,
                conflicts: 1,
                invalid: 1
            }
        );
        assert_eq!(checker.conflicting_positions().len(), 1);
        assert_eq!(checker.highest("c").map(|p| p.height), Some(3));
    }

    #[test]
    fn verifies_secp256k1_signatures() {
        use crate::keys::softsign::SoftSigner;
        use crate::keys::{ConsensusSigner, KeyType};
        let key = SoftSigner::generate_type(KeyType::Secp256k1);
        let public = key.public_key();
        let checker = Checker::new();
        let mut r = released(&SigningKey::from_bytes(&[7; 32]), 1, b"a");
        r.signature = key.sign(b"a").unwrap().to_vec();
        assert!(checker.record(&public, r.clone()));
        r.signature[5] ^= 1;
        assert!(!checker.record(&public, r));
        assert_eq!(checker.report().invalid, 1);
    }
}
