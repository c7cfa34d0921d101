//! A simulated validator node: a turmoil client that plays one CometBFT
//! node of a chain (several per chain run "as the same validator"), asks
//! the signer hosts to sign proposals and votes height after height, and
//! checks every reply.
//!
//! In the simulation the validator dials the signers (production is the
//! reverse: signers dial validators). It keeps one connection and, when a
//! request fails (refused connect, closed connection, timeout), moves to
//! the next signer after 100 ms, as CometBFT's retries do. An error reply
//! is final for that request. Now and then it sends a conflicting block
//! for a position, or a timestamp-only variant, to test the rules.
//!
//! Every signature it receives is verified, recorded in the shared
//! [`Checker`], and logged in the [`Ledger`] for the end-of-run checks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{ReadHalf, WriteHalf};

use super::net;
use super::trace::{Trace, now};
use crate::privval::codec::{self, FrameReader, ReadError};
use crate::privval::{Request, Response, SignRequest, Version};
use crate::validator::checker::{Checker, Released, verify};
use crate::validator::consensus;
use crate::watermark::Position;

/// Pause before retrying a failed request on the next signer.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Read/write timeout on a signer connection (CometBFT's).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Refusals received.
    pub refusals: u64,
    /// Failed exchanges (each led to a retry).
    pub retries: u64,
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
    /// Signer addresses (`host:port`), tried in turn from `index`.
    pub signers: Vec<String>,
    /// The key the signatures must verify against.
    pub public_key: [u8; 32],
    /// Heights to go through.
    pub heights: i64,
    /// Seed of its own choices.
    pub seed: u64,
}

struct Conn {
    frames: FrameReader<ReadHalf<turmoil::net::TcpStream>>,
    write: WriteHalf<turmoil::net::TcpStream>,
}

enum Answer {
    Signed,
    Refused,
}

/// One validator node of the simulation, as a turmoil client (not the
/// mock validator of [`crate::validator`], which listens for signers).
struct SimValidator {
    spec: Spec,
    version: Version,
    rng: StdRng,
    conn: Option<Conn>,
    next_signer: usize,
    checker: Checker,
    ledger: Ledger,
    trace: Trace,
}

/// Runs one validator node to its last height.
///
/// # Errors
///
/// Never: every failure is recorded and retried.
pub async fn run(spec: Spec, checker: Checker, ledger: Ledger, trace: Trace) -> turmoil::Result {
    let mut v = SimValidator {
        rng: StdRng::seed_from_u64(spec.seed),
        next_signer: spec.index,
        version: Version::V0_38,
        spec,
        conn: None,
        checker,
        ledger,
        trace,
    };
    v.run().await;
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
        self.conn = None;
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
        let body = Request::Sign(request.clone()).encode(self.version);
        loop {
            match self.exchange(&body).await {
                Ok(response) => match self.check(&request, response) {
                    Some(answer) => {
                        let mut ledger = self.ledger.lock();
                        match answer {
                            Answer::Signed => ledger.signatures += 1,
                            Answer::Refused => ledger.refusals += 1,
                        }
                        ledger
                            .answers
                            .entry(self.spec.chain_id.clone())
                            .or_default()
                            .push(now());
                        return;
                    }
                    None => self.fail("unusable reply").await,
                },
                Err(e) => self.fail(&e).await,
            }
        }
    }

    async fn fail(&mut self, why: &str) {
        self.conn = None;
        self.ledger.lock().retries += 1;
        let signer = &self.spec.signers[self.next_signer % self.spec.signers.len()];
        self.trace
            .event(now(), format!("{} -x {signer}: {why}", self.spec.name));
        self.next_signer += 1;
        tokio::time::sleep(RETRY_INTERVAL).await;
    }

    async fn exchange(&mut self, body: &[u8]) -> Result<Response, String> {
        if self.conn.is_none() {
            let signer = &self.spec.signers[self.next_signer % self.spec.signers.len()];
            let stream = net::connect(signer).await.map_err(|e| e.to_string())?;
            let (read, write) = tokio::io::split(stream);
            self.conn = Some(Conn {
                frames: FrameReader::new(read, codec::DEFAULT_MAX_FRAME),
                write,
            });
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        tokio::time::timeout(IO_TIMEOUT, codec::write_frame(&mut conn.write, body))
            .await
            .map_err(|_| "write timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(IO_TIMEOUT, conn.frames.read_frame())
            .await
            .map_err(|_| "read timed out".to_string())?;
        let body = match reply {
            Ok(Some(body)) => body,
            Ok(None) => return Err("signer closed the connection".into()),
            Err(ReadError::Io(e)) => return Err(e.to_string()),
            Err(ReadError::Codec(e)) => return Err(e.to_string()),
        };
        Response::decode(self.version, &body).map_err(|e| format!("undecodable reply: {e}"))
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
