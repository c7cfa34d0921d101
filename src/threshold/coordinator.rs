//! The serving node's side of a threshold signature: after the grant for
//! exactly these bytes has committed, collect `t` shares and aggregate.
//!
//! Round 1 asks every candidate node for a commitment at once and takes
//! the first `t` that answer, so a node that is down costs nothing; round 2
//! asks those `t` for their shares. A node that fails or refuses in round 2
//! is left out and both rounds start over with fresh nonces, until the
//! deadline (the grant timeout). The aggregate is verified against the
//! group key, as CometBFT will, before it leaves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use frost_ed25519 as frost;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::participant::Commitment;

/// Why one node gave no commitment or share.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CosignError {
    /// It could not be reached in time.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It answered no: not granted there, unknown session, ...
    #[error("refused: {0}")]
    Refused(String),
}

/// A node that can take part in a signature: this node itself, or a peer
/// over the cluster's mutual TLS.
pub trait Cosigner: Send + Sync {
    /// Its node id (its FROST identifier).
    fn node(&self) -> u64;

    /// Round 1: a fresh commitment for `chain_id`.
    fn commit<'a>(&'a self, chain_id: &'a str) -> BoxFuture<'a, Result<Commitment, CosignError>>;

    /// Round 2: its share of the signature over `package`'s message, in
    /// `session`.
    fn sign<'a>(
        &'a self,
        chain_id: &'a str,
        session: u64,
        package: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CosignError>>;
}

/// Why no signature was made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// This node holds no share of the chain yet.
    #[error("no share of chain {0} on this node yet (run `quorumkms threshold dkg` or `split`)")]
    NoShare(String),
    /// Fewer than `t` nodes took part before the deadline.
    #[error("only {got} of the {needed} shares needed could be had: {errors}")]
    NotEnough {
        /// Nodes that took part in the last attempt.
        got: usize,
        /// The threshold.
        needed: usize,
        /// What the others said, by node.
        errors: String,
    },
    /// The aggregate did not verify (a share was bad and FROST named no
    /// culprit; never with honest nodes).
    #[error("the aggregate signature does not verify: {0}")]
    Invalid(String),
}

/// One signature to make.
pub struct Job<'a> {
    /// The chain.
    pub chain_id: &'a str,
    /// The granted bytes.
    pub message: &'a [u8],
    /// The group's public package (every node's verifying share).
    pub public: &'a frost::keys::PublicKeyPackage,
    /// Shares needed.
    pub threshold: u16,
    /// When to give up.
    pub deadline: Instant,
    /// The longest one call may take.
    pub call_timeout: Duration,
    /// How long round 1 waits on its first choices before it asks the
    /// other nodes too (see [`hedge_delay`]).
    pub hedge: Duration,
}

/// Signs `job.message` with shares from `threshold` of `cosigners`.
///
/// # Errors
///
/// Fewer than `threshold` nodes took part before the deadline, or the
/// aggregate does not verify.
pub async fn sign(job: &Job<'_>, cosigners: &[Arc<dyn Cosigner>]) -> Result<[u8; 64], SignError> {
    let needed = usize::from(job.threshold);
    let mut left_out: BTreeMap<u64, String> = BTreeMap::new();
    loop {
        let candidates: Vec<&Arc<dyn Cosigner>> = cosigners
            .iter()
            .filter(|c| !left_out.contains_key(&c.node()))
            .collect();
        let committed = round1(job, &candidates, needed, &mut left_out).await;
        if committed.len() < needed || Instant::now() >= job.deadline {
            return Err(not_enough(committed.len(), needed, &left_out));
        }
        match round2(job, &committed).await {
            Ok(signature) => return Ok(signature),
            Err(Round2Error::Nodes(failed)) => left_out.extend(failed),
            Err(Round2Error::Invalid(e)) => return Err(SignError::Invalid(e)),
        }
    }
}

fn not_enough(got: usize, needed: usize, left_out: &BTreeMap<u64, String>) -> SignError {
    let errors = left_out
        .iter()
        .map(|(node, e)| format!("node {node}: {e}"))
        .collect::<Vec<_>>()
        .join("; ");
    SignError::NotEnough {
        got,
        needed,
        errors,
    }
}

/// The time one call may take: its own bound, or what is left.
fn call_budget(job: &Job<'_>) -> Duration {
    job.deadline
        .saturating_duration_since(Instant::now())
        .min(job.call_timeout)
}

/// Asks the first `needed` candidates for a commitment, and the others
/// too once one of those fails or the job's hedge delay passes without enough
/// answers; returns the first `needed` answers (fewer if not enough came),
/// noting the nodes that failed. Asking only `needed` nodes while they
/// answer saves the others the commitment and the coordinator reading it.
async fn round1<'c>(
    job: &Job<'_>,
    candidates: &[&'c Arc<dyn Cosigner>],
    needed: usize,
    left_out: &mut BTreeMap<u64, String>,
) -> Vec<(&'c Arc<dyn Cosigner>, Commitment)> {
    let budget = call_budget(job);
    let ask = |c: &'c Arc<dyn Cosigner>| async move {
        let answer = tokio::time::timeout(budget, c.commit(job.chain_id))
            .await
            .unwrap_or_else(|_| Err(CosignError::Unreachable("timed out".into())));
        (c, answer)
    };
    let mut waiting = candidates.iter().copied();
    let mut calls: FuturesUnordered<_> = waiting.by_ref().take(needed).map(ask).collect();
    let hedge = tokio::time::sleep(job.hedge);
    tokio::pin!(hedge);
    let mut hedged = false;
    let mut committed = Vec::new();
    while committed.len() < needed {
        tokio::select! {
            next = calls.next() => match next {
                Some((cosigner, Ok(commitment))) => committed.push((cosigner, commitment)),
                Some((cosigner, Err(e))) => {
                    left_out.insert(cosigner.node(), e.to_string());
                    calls.extend(waiting.next().map(ask));
                }
                None => break,
            },
            () = &mut hedge, if !hedged => {
                hedged = true;
                calls.extend(waiting.by_ref().map(ask));
            }
        }
    }
    committed
}

/// How long round 1 should wait on its first choices before it asks the
/// other nodes as well: a tenth of a call's time, far above a LAN round
/// trip.
pub fn hedge_delay(call_timeout: Duration) -> Duration {
    call_timeout / 10
}

enum Round2Error {
    /// These nodes gave no valid share.
    Nodes(BTreeMap<u64, String>),
    /// The aggregate is bad with no share to blame.
    Invalid(String),
}

async fn round2(
    job: &Job<'_>,
    committed: &[(&Arc<dyn Cosigner>, Commitment)],
) -> Result<[u8; 64], Round2Error> {
    let mut failed = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for (cosigner, commitment) in committed {
        let decoded = super::identifier(cosigner.node()).and_then(|id| {
            frost::round1::SigningCommitments::deserialize(&commitment.commitments)
                .map(|c| (id, c))
                .map_err(|e| format!("malformed commitment: {e}"))
        });
        match decoded {
            Ok((id, c)) => {
                commitments.insert(id, c);
            }
            Err(e) => {
                failed.insert(cosigner.node(), e);
            }
        }
    }
    if !failed.is_empty() {
        return Err(Round2Error::Nodes(failed));
    }
    let package = frost::SigningPackage::new(commitments, job.message);
    let bytes = package
        .serialize()
        .map_err(|e| Round2Error::Invalid(format!("serialize package: {e}")))?;
    let budget = call_budget(job);
    let answers = futures_util::future::join_all(committed.iter().map(|(cosigner, c)| {
        let bytes = &bytes;
        async move {
            let answer =
                tokio::time::timeout(budget, cosigner.sign(job.chain_id, c.session, bytes))
                    .await
                    .unwrap_or_else(|_| Err(CosignError::Unreachable("timed out".into())));
            (cosigner.node(), answer)
        }
    }))
    .await;
    let mut shares = BTreeMap::new();
    for (node, answer) in answers {
        let decoded = answer.map_err(|e| e.to_string()).and_then(|bytes| {
            frost::round2::SignatureShare::deserialize(&bytes)
                .map_err(|e| format!("malformed share: {e}"))
        });
        match (decoded, super::identifier(node)) {
            (Ok(share), Ok(id)) => {
                shares.insert(id, share);
            }
            (Err(e), _) | (_, Err(e)) => {
                failed.insert(node, e);
            }
        }
    }
    if !failed.is_empty() {
        return Err(Round2Error::Nodes(failed));
    }
    aggregate(job, &package, &shares)
}

fn aggregate(
    job: &Job<'_>,
    package: &frost::SigningPackage,
    shares: &BTreeMap<frost::Identifier, frost::round2::SignatureShare>,
) -> Result<[u8; 64], Round2Error> {
    let signature = frost::aggregate(package, shares, job.public).map_err(|e| {
        // FROST names the node whose share does not verify.
        match e.culprit().as_ref().and_then(super::node_of) {
            Some(node) => {
                Round2Error::Nodes(BTreeMap::from([(node, format!("invalid share: {e}"))]))
            }
            None => Round2Error::Invalid(e.to_string()),
        }
    })?;
    let bytes: [u8; 64] = signature
        .serialize()
        .map_err(|e| Round2Error::Invalid(e.to_string()))?
        .try_into()
        .map_err(|_| Round2Error::Invalid("the signature is not 64 bytes".into()))?;
    let group = super::share::group_key(job.public).map_err(Round2Error::Invalid)?;
    if !group.verify(job.message, &bytes) {
        return Err(Round2Error::Invalid(
            "the aggregate does not verify under the group key".into(),
        ));
    }
    Ok(bytes)
}
