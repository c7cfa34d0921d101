//! A simulated validator node: a turmoil client that plays one CometBFT
//! node of a chain (several per chain run "as the same validator"), asks
//! the signer nodes to sign proposals and votes height after height, and
//! checks every reply.
//!
//! As in production, the signer nodes dial the validator: each validator
//! node listens on its own host with a [`SignerListener`] that behaves as
//! CometBFT's (one active connection, the other dials queued, a connection
//! dropped only on a timeout or a failed ping). A failed request is
//! retried with the same sign bytes every 100 ms, up to 50 attempts, on
//! whatever connection is active by then, as CometBFT's retrying client
//! does; after the last one the request is missed and the node moves on,
//! as consensus would. An error reply is final for that request. Now and
//! then it sends a conflicting block for a position, or a timestamp-only
//! variant, to test the rules.
//!
//! Every signature it receives is verified, recorded in the shared
//! [`Checker`], and logged in the [`Ledger`] for the end-of-run checks.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::listener::{SignerListener, Timing};
use super::trace::{Trace, now};
use crate::privval::{Request, Response, SignRequest, Version};
use crate::validator::checker::{Checker, Released, verify};
use crate::validator::consensus;
use crate::watermark::Position;

/// Pause between attempts of one request (CometBFT's retrying client).
const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts per request before it is missed (CometBFT's: 5 s worth of
/// 100 ms pauses).
const ATTEMPTS: u32 = 50;

/// What the validators saw, for the end-of-run checks.
#[derive(Default)]
pub struct LedgerInner {
    /// (chain, position, sign bytes) -> validator nodes that asked for them.
    pub requested: BTreeMap<(String, Position, Vec<u8>), BTreeSet<String>>,
    /// Every signature received: (chain, position, signed bytes).
    pub signed: BTreeSet<(String, Position, Vec<u8>)>,
    /// Per chain, the simulated times of final answers (signed or refused).
    pub answers: BTreeMap<String, Vec<Duration>>,
    /// Signatures received, counting repeats.
    pub signatures: u64,
    /// Of those, the ones on threshold-mode chains.
    pub threshold_signatures: u64,
    /// Refusals received.
    pub refusals: u64,
    /// Failed attempts (each led to a retry, or to a miss).
    pub retries: u64,
    /// Requests given up after every attempt failed.
    pub missed: u64,
    /// Validator nodes that finished their heights.
    pub finished: BTreeSet<String>,
}

/// The validators' shared ledger.
#[derive(Clone, Default)]
pub struct Ledger {
    inner: Arc<Mutex<LedgerInner>>,
}

impl Ledger {
    /// Locks the ledger.
    pub fn lock(&self) -> MutexGuard<'_, LedgerInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One simulated validator node.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Its host name; the signers see it as the request's origin.
    pub name: String,
    /// The chain it runs.
    pub chain_id: String,
    /// Its index among the chain's validator nodes (0 proposes honestly).
    pub index: usize,
    /// The port it listens on for signer nodes.
    pub port: u16,
    /// The key the signatures must verify against (in threshold mode the
    /// group key, which is the split key's).
    pub public_key: crate::keys::PublicKey,
    /// The chain signs in threshold mode.
    pub threshold: bool,
    /// Heights to go through.
    pub heights: i64,
    /// Seed of its own choices.
    pub seed: u64,
}

enum Answer {
    Signed,
    Refused,
}

/// One validator node of the simulation, as a turmoil client (the mock
/// validator of [`crate::validator`] does the same on real sockets).
struct SimValidator {
    spec: Spec,
    version: Version,
    rng: StdRng,
    listener: Rc<SignerListener>,
    checker: Checker,
    ledger: Ledger,
    trace: Trace,
}

/// Runs one validator node to its last height, listening for signer
/// nodes meanwhile.
///
/// # Errors
///
/// The listening port cannot be bound; every other failure is recorded
/// and retried.
pub async fn run(spec: Spec, checker: Checker, ledger: Ledger, trace: Trace) -> turmoil::Result {
    let version = Version::V0_38;
    let listener =
        SignerListener::new(spec.name.clone(), version, Timing::default(), trace.clone());
    let port = spec.port;
    let mut v = SimValidator {
        rng: StdRng::seed_from_u64(spec.seed),
        version,
        spec,
        listener: listener.clone(),
        checker,
        ledger,
        trace,
    };
    // The listener serves until the node is done; then it closes with
    // its connections, and signer nodes find the port closed.
    tokio::select! {
        biased;
        served = listener.serve(port) => served?,
        () = v.run() => {}
    }
    Ok(())
}

fn hash8(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..4])
}

impl SimValidator {
    async fn run(&mut self) {
        let address = consensus::address(&self.spec.public_key);
        for height in 1..=self.spec.heights {
            let rounds = if self.rng.gen_bool(0.2) { 2 } else { 1 };
            for round in 0..rounds {
                let variant = if self.spec.index > 0 && self.rng.gen_bool(0.3) {
                    1
                } else {
                    0
                };
                let offset = i64::from(self.rng.gen_range(0u8..3)) * 5;
                let block = consensus::block_id(height, variant);
                if self.rng.gen_bool(0.5) {
                    let p = consensus::proposal(height, round, block.clone(), offset);
                    let request = SignRequest::from_proposal(self.spec.chain_id.clone(), p);
                    self.sign(request).await;
                }
                for precommit in [false, true] {
                    let nil = round > 0 && self.rng.gen_bool(0.3);
                    let target = (!nil).then(|| block.clone());
                    let vote = consensus::vote(
                        self.version,
                        precommit,
                        height,
                        round,
                        target,
                        &address,
                        offset,
                    );
                    let request = SignRequest::from_vote(
                        self.version,
                        self.spec.chain_id.clone(),
                        vote,
                        false,
                    );
                    self.sign(request).await;
                    if !precommit && self.rng.gen_bool(0.05) {
                        // A conflicting prevote for the same position.
                        let other = consensus::block_id(height, 7);
                        let vote = consensus::vote(
                            self.version,
                            false,
                            height,
                            round,
                            Some(other),
                            &address,
                            offset,
                        );
                        let request = SignRequest::from_vote(
                            self.version,
                            self.spec.chain_id.clone(),
                            vote,
                            false,
                        );
                        self.sign(request).await;
                    }
                    let pause = self.rng.gen_range(5..40);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
        self.ledger.lock().finished.insert(self.spec.name.clone());
        self.trace
            .event(now(), format!("{} finished", self.spec.name));
    }

    async fn sign(&mut self, request: Result<SignRequest, crate::privval::CodecError>) {
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                self.trace.violation(
                    now(),
                    format!("{}: built an invalid request: {e}", self.spec.name),
                );
                return;
            }
        };
        self.ledger
            .lock()
            .requested
            .entry((
                self.spec.chain_id.clone(),
                request.position,
                request.sign_bytes.clone(),
            ))
            .or_default()
            .insert(self.spec.name.clone());
        let sign = Request::Sign(request.clone());
        for attempt in 1..=ATTEMPTS {
            let why = match self.listener.send(&sign).await {
                Ok(response) => match self.check(&request, response) {
                    Some(answer) => {
                        let mut ledger = self.ledger.lock();
                        match answer {
                            Answer::Signed => {
                                ledger.signatures += 1;
                                if self.spec.threshold {
                                    ledger.threshold_signatures += 1;
                                }
                            }
                            Answer::Refused => ledger.refusals += 1,
                        }
                        ledger
                            .answers
                            .entry(self.spec.chain_id.clone())
                            .or_default()
                            .push(now());
                        return;
                    }
                    None => "unusable reply".to_string(),
                },
                Err(e) => e.to_string(),
            };
            self.ledger.lock().retries += 1;
            let via = self.listener.peer().unwrap_or_else(|| "-".into());
            self.trace.event(
                now(),
                format!(
                    "{} attempt {attempt} at {} via {via} failed: {why}",
                    self.spec.name, request.position
                ),
            );
            if attempt < ATTEMPTS {
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
        }
        self.ledger.lock().missed += 1;
        self.trace.event(
            now(),
            format!(
                "{} missed {} after {ATTEMPTS} attempts",
                self.spec.name, request.position
            ),
        );
    }

    /// Verifies and records a reply. `None` for a reply that is neither a
    /// valid signature nor a refusal (then the request is retried).
    fn check(&mut self, sent: &SignRequest, response: Response) -> Option<Answer> {
        let name = self.spec.name.clone();
        if let Some(error) = response.error() {
            self.trace.event(
                now(),
                format!(
                    "{name} {} {} refused: {}",
                    sent.position,
                    hash8(&sent.sign_bytes),
                    error.description
                ),
            );
            return Some(Answer::Refused);
        }
        let chain = self.spec.chain_id.clone();
        let (signed, signature, extension) = match response {
            Response::SignedVote { mut vote, .. } => {
                let signature = std::mem::take(&mut vote.signature);
                let extension = std::mem::take(&mut vote.extension_signature);
                let signed = SignRequest::from_vote(self.version, chain.clone(), vote, false);
                (signed, signature, Some(extension))
            }
            Response::SignedProposal { mut proposal, .. } => {
                let signature = std::mem::take(&mut proposal.signature);
                (
                    SignRequest::from_proposal(chain.clone(), proposal),
                    signature,
                    None,
                )
            }
            other => {
                self.trace
                    .violation(now(), format!("{name}: unexpected reply {other:?}"));
                return None;
            }
        };
        let signed = match signed {
            Ok(signed) => signed,
            Err(e) => {
                self.trace
                    .violation(now(), format!("{name}: signed reply does not decode: {e}"));
                return None;
            }
        };
        if signed.position != sent.position {
            self.trace.violation(
                now(),
                format!(
                    "{name}: asked for {}, got a signature for {}",
                    sent.position, signed.position
                ),
            );
            return None;
        }
        if let (Some(bytes), Some(ext)) = (&signed.extension_sign_bytes, &extension)
            && !verify(&self.spec.public_key, bytes, ext)
        {
            self.trace.violation(
                now(),
                format!("{name}: bad extension signature at {}", signed.position),
            );
        }
        let consistent = self.checker.record(
            &self.spec.public_key,
            Released {
                chain_id: chain.clone(),
                position: signed.position,
                sign_bytes: signed.sign_bytes.clone(),
                signature,
            },
        );
        self.trace.event(
            now(),
            format!(
                "{name} {} signed {}",
                signed.position,
                hash8(&signed.sign_bytes)
            ),
        );
        if !consistent {
            self.trace.violation(
                now(),
                format!(
                    "double sign: {chain} {} signed with a second payload (or a bad signature)",
                    signed.position
                ),
            );
        }
        self.ledger
            .lock()
            .signed
            .insert((chain, signed.position, signed.sign_bytes));
        Some(Answer::Signed)
    }
}
