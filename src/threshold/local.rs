//! A threshold signature made with shares held in one process: the test
//! signature of `quorumkms threshold check`, and the tests. A running
//! cluster never does this; its shares live on different nodes and meet
//! only through the coordinator. Here the same coordinator runs over one
//! in-memory [`Holder`] per share, so the check exercises the code a
//! cluster signs with.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::coordinator::{self, CosignError, Cosigner, Job};
use super::participant::{Commitment, decode_package};
use super::{KeyShare, Participant};

/// How long one in-process signature may take: far more than two rounds
/// of local computation ever need.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(10);

/// One share's signing sessions, answering the coordinator directly.
pub struct Holder {
    node: u64,
    participant: Participant,
}

impl Holder {
    /// A holder of `share`.
    pub fn new(share: KeyShare) -> Holder {
        Holder {
            node: share.node(),
            participant: Participant::new([share]),
        }
    }
}

impl Cosigner for Holder {
    fn node(&self) -> u64 {
        self.node
    }

    fn commit<'a>(&'a self, chain_id: &'a str) -> BoxFuture<'a, Result<Commitment, CosignError>> {
        Box::pin(async move {
            self.participant
                .commit(chain_id)
                .map_err(|e| CosignError::Refused(e.to_string()))
        })
    }

    fn sign<'a>(
        &'a self,
        chain_id: &'a str,
        session: u64,
        package: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CosignError>> {
        Box::pin(async move {
            decode_package(package)
                .and_then(|package| self.participant.sign(chain_id, session, &package))
                .map_err(|e| CosignError::Refused(e.to_string()))
        })
    }
}

/// Signs `message` with every share in `shares` (at least `t` of one
/// split, each of a different node) through the coordinator, as the nodes
/// would, and checks the result under the group key.
///
/// # Errors
///
/// Fewer than `t` shares, shares of different chains or splits, a node
/// twice, or a share that does not sign (named by its node).
pub async fn sign_with_shares(shares: &[&KeyShare], message: &[u8]) -> Result<[u8; 64], String> {
    let first = shares.first().ok_or("no shares to sign with")?;
    if shares.len() < usize::from(first.threshold()) {
        return Err(format!(
            "{} share(s) cannot sign: {} are needed",
            shares.len(),
            first.threshold()
        ));
    }
    let mut nodes = BTreeSet::new();
    for share in shares {
        if share.chain_id() != first.chain_id() {
            return Err(format!(
                "node {}'s share is of chain {}, node {}'s of {}",
                share.node(),
                share.chain_id(),
                first.node(),
                first.chain_id()
            ));
        }
        if share.public_package() != first.public_package() {
            return Err(format!(
                "node {}'s share is of another split than node {}'s",
                share.node(),
                first.node()
            ));
        }
        if !nodes.insert(share.node()) {
            return Err(format!("node {} holds two of the shares", share.node()));
        }
    }
    let cosigners: Vec<Arc<dyn Cosigner>> = shares
        .iter()
        .map(|share| Arc::new(Holder::new((*share).clone())) as Arc<dyn Cosigner>)
        .collect();
    let job = Job {
        chain_id: first.chain_id(),
        message,
        public: first.public_package(),
        // Every share given signs, so a damaged one is named, not worked
        // around.
        threshold: u16::try_from(shares.len()).map_err(|_| "too many shares")?,
        deadline: tokio::time::Instant::now() + LOCAL_TIMEOUT,
        call_timeout: LOCAL_TIMEOUT,
        hedge: coordinator::hedge_delay(LOCAL_TIMEOUT),
    };
    coordinator::sign(&job, &cosigners)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;
    use crate::threshold::dealer;

    const SEED: [u8; 32] = [9; 32];

    #[tokio::test]
    async fn signs_with_t_or_more_shares_and_names_what_does_not_fit() {
        let shares = dealer::split("c", &SEED, 2, &[1, 2, 3], &mut OsRng).unwrap();
        let group = shares[0].group_key().unwrap();
        let all: Vec<&KeyShare> = shares.iter().collect();
        assert!(group.verify(b"m", &sign_with_shares(&all, b"m").await.unwrap()));
        assert!(group.verify(b"m", &sign_with_shares(&all[1..], b"m").await.unwrap()));

        let err = sign_with_shares(&all[..1], b"m").await.unwrap_err();
        assert!(err.contains("2 are needed"), "{err}");
        let err = sign_with_shares(&[&shares[0], &shares[0]], b"m")
            .await
            .unwrap_err();
        assert!(err.contains("node 1 holds two"), "{err}");
        // The same key split again: same group key, other shares.
        let again = dealer::split("c", &SEED, 2, &[1, 2, 3], &mut OsRng).unwrap();
        let err = sign_with_shares(&[&shares[0], &again[1]], b"m")
            .await
            .unwrap_err();
        assert!(err.contains("another split"), "{err}");
        let other_chain = dealer::split("d", &SEED, 2, &[1, 2, 3], &mut OsRng).unwrap();
        let err = sign_with_shares(&[&shares[0], &other_chain[1]], b"m")
            .await
            .unwrap_err();
        assert!(err.contains("chain d"), "{err}");
    }
}
