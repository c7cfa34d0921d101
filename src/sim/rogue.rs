//! A compromised member: a simulated host holding member [`ROGUE_ID`]'s
//! node certificate and key shares (as an attacker who owns that node's
//! host would), which calls other nodes' `Commit` and `Share` RPCs
//! directly, with this cluster's id and signing packages it builds itself
//! around its own commitment and the target's.
//!
//! It attacks at seeded times during the fault window, whatever fault is
//! under way; each time it asks the target node for shares twice:
//!
//! - over the bytes the target's applied state grants right then (the
//!   control; a compromised member knows them from its own copy of the
//!   log). The target may give a share, and the signature the rogue makes
//!   with it and its own must verify under the validator key: proof that
//!   its requests reach the grant rule, so that the refusals below are the
//!   rule's and not a wrong certificate's or cluster id's. The watermark
//!   may move on before the request lands: it tries a few times;
//! - over bytes no node grants: a payload that conflicts with the
//!   target's watermark. The target must refuse; a share is a violation
//!   (with the rogue's own share, two of them make a signature that
//!   double signs). The planted bug [`Bug::RogueAsksForGranted`] puts the
//!   granted bytes in this request, to show the check fires.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use frost_ed25519 as frost;

use super::Bug;
use super::net::{self, SimTransport};
use super::trace::{Trace, now};
use crate::cluster::Node;
use crate::cluster::network::{self, CallError, Channels};
use crate::cluster::pb;
use crate::keys::PublicKey;
use crate::privval::{SignRequest, Version};
use crate::threshold::{KeyShare, Participant, identifier};
use crate::validator::consensus;
use crate::watermark::{Position, Step};

pub use super::net::{ROGUE, ROGUE_ID};

/// Timeout of one call (a share request waits up to an election timeout
/// for its grant to be applied).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests over granted bytes per attack before the control gives up.
const CONTROL_TRIES: usize = 3;

/// The words a node's refusal carries when its grant rule refused.
const NOT_GRANTED: &str = "grants no such bytes";

/// One attack on one node.
#[derive(Clone, Debug)]
pub struct Attack {
    /// When, in simulated time.
    pub at: Duration,
    /// The node attacked (`host:port`).
    pub target: String,
    /// Its node id.
    pub target_id: u64,
    /// The threshold-mode chain.
    pub chain_id: String,
}

/// Node `id`, while it runs: whose applied state and cluster id a
/// compromised member knows from its own node.
pub type Peek = Box<dyn Fn(u64) -> Option<Node>>;

/// What the rogue's requests came to, for the run's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests over forged bytes the grant rule refused.
    pub refused: u64,
    /// Requests over granted bytes that got a share, which made a valid
    /// signature with the rogue's own.
    pub granted: u64,
}

/// The rogue's tally, shared with the harness.
pub type Tallies = Arc<Mutex<Tally>>;

/// The rogue: its shares (those of member [`ROGUE_ID`]), and the group key
/// of each chain.
pub struct Rogue {
    participant: Participant,
    shares: BTreeMap<String, (KeyShare, PublicKey)>,
    peek: Peek,
    bug: Option<Bug>,
    tally: Tallies,
    trace: Trace,
}

impl Rogue {
    /// A rogue holding `shares`, drawing its nonces from `participant`
    /// (which holds the same shares), reading nodes with `peek`, with the
    /// planted bug `bug` if it is one of its own.
    ///
    /// # Errors
    ///
    /// A share's group key is not an Ed25519 key.
    pub fn new(
        shares: Vec<KeyShare>,
        participant: Participant,
        peek: Peek,
        bug: Option<Bug>,
        tally: Tallies,
        trace: Trace,
    ) -> Result<Rogue, String> {
        let shares = shares
            .into_iter()
            .map(|share| {
                let key = share.group_key()?;
                Ok((share.chain_id().to_string(), (share, key)))
            })
            .collect::<Result<_, String>>()?;
        Ok(Rogue {
            participant,
            shares,
            peek,
            bug,
            tally,
            trace,
        })
    }

    /// Carries out `attacks`, in order of time.
    pub async fn run(self, attacks: Vec<Attack>) -> turmoil::Result {
        for attack in attacks {
            tokio::time::sleep(attack.at.saturating_sub(now())).await;
            let outcome = self.attack(&attack).await;
            self.trace.event(
                now(),
                format!(
                    "rogue {ROGUE} (n{ROGUE_ID}) -> n{} {}: {outcome}",
                    attack.target_id, attack.chain_id
                ),
            );
        }
        Ok(())
    }

    async fn attack(&self, attack: &Attack) -> String {
        let Some(cluster) = (self.peek)(attack.target_id).and_then(|node| node.cluster_id()) else {
            return "target down or in no cluster yet".into();
        };
        let channels =
            Channels::new(Arc::new(SimTransport), net::CONNECT_TIMEOUT).in_cluster(cluster);
        let control = self.control(&channels, attack).await;
        let forged = self.forged(&channels, attack).await;
        format!("granted bytes: {control}; forged bytes: {forged}")
    }

    fn count(&self, update: impl FnOnce(&mut Tally)) {
        update(&mut self.tally.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The target's watermark on the chain now, and the bytes it grants
    /// there.
    fn watermark(&self, attack: &Attack) -> (Option<Position>, Option<Vec<u8>>) {
        let state = (self.peek)(attack.target_id).map(|node| node.applied_state());
        let held = state.as_ref().and_then(|s| s.chains.get(&attack.chain_id));
        let position = held.and_then(|s| s.position);
        let granted = held
            .filter(|s| position.is_some() && !s.sign_bytes.is_empty())
            .map(|s| s.sign_bytes.clone());
        (position, granted)
    }

    /// Asks for a share over granted bytes: it must make a valid
    /// signature.
    async fn control(&self, channels: &Channels, attack: &Attack) -> String {
        let mut outcome = String::from("nothing granted yet");
        for _ in 0..CONTROL_TRIES {
            let Some(granted) = self.watermark(attack).1 else {
                return outcome;
            };
            outcome = match self.ask(channels, attack, &granted).await {
                Asked::Signed { valid: true } => {
                    self.count(|t| t.granted += 1);
                    return "signed".into();
                }
                Asked::Signed { valid: false } => {
                    self.trace.violation(
                        now(),
                        format!(
                            "n{}'s share over granted bytes on {} made a signature that does not verify",
                            attack.target_id, attack.chain_id
                        ),
                    );
                    return "SIGNATURE INVALID".into();
                }
                // The watermark moved on before the request landed.
                Asked::Refused(message) if message.contains(NOT_GRANTED) => {
                    format!("refused: {message}")
                }
                Asked::Refused(message) => return format!("refused: {message}"),
                Asked::Failed(why) => return format!("failed: {why}"),
            };
        }
        outcome
    }

    /// Asks for a share over bytes no node grants: a share is a violation.
    async fn forged(&self, channels: &Channels, attack: &Attack) -> String {
        let Some((_, key)) = self.shares.get(&attack.chain_id) else {
            return format!("the rogue holds no share of {}", attack.chain_id);
        };
        let (position, granted) = self.watermark(attack);
        let bytes = match (self.bug, granted) {
            (Some(Bug::RogueAsksForGranted), Some(granted)) => granted,
            _ => forged_bytes(&attack.chain_id, key, position),
        };
        match self.ask(channels, attack, &bytes).await {
            Asked::Signed { valid } => {
                self.trace.violation(
                    now(),
                    format!(
                        "n{} gave the compromised member a share over bytes it never granted on {} (the signature it made {})",
                        attack.target_id,
                        attack.chain_id,
                        if valid { "verifies" } else { "does not verify" }
                    ),
                );
                "SHARE GIVEN".into()
            }
            Asked::Refused(message) if message.contains(NOT_GRANTED) => {
                self.count(|t| t.refused += 1);
                "refused by the grant rule".into()
            }
            Asked::Refused(message) => format!("refused: {message}"),
            Asked::Failed(why) => format!("failed: {why}"),
        }
    }

    /// Round 1 with the target and itself, a package over `message`, and
    /// round 2 with the target; with the target's share, the signature the
    /// two shares make.
    async fn ask(&self, channels: &Channels, attack: &Attack, message: &[u8]) -> Asked {
        let chain = attack.chain_id.as_str();
        let Some((share, key)) = self.shares.get(chain) else {
            return Asked::Failed(format!("the rogue holds no share of {chain}"));
        };
        let own = match self.participant.commit(chain) {
            Ok(own) => own,
            Err(e) => return Asked::Failed(format!("own commitment: {e}")),
        };
        let theirs = match network::commit(channels, &attack.target, CALL_TIMEOUT, chain).await {
            Ok(theirs) => theirs,
            Err(e) => return Asked::from_call(e),
        };
        let package = match package(
            [
                (ROGUE_ID, own.commitments.as_slice()),
                (attack.target_id, theirs.commitments.as_slice()),
            ],
            message,
        ) {
            Ok(package) => package,
            Err(e) => return Asked::Failed(e),
        };
        let Ok(bytes) = package.serialize() else {
            return Asked::Failed("the package does not serialize".into());
        };
        let request = pb::ShareRequest {
            chain_id: chain.to_string(),
            session: theirs.session,
            package: bytes,
        };
        let their_share =
            match network::share(channels, &attack.target, CALL_TIMEOUT, request).await {
                Ok(share) => share,
                Err(e) => return Asked::from_call(e),
            };
        let own_share = self.participant.sign(chain, own.session, &package);
        let valid = own_share.is_ok_and(|own_share| {
            aggregate(
                share,
                &package,
                [(ROGUE_ID, own_share), (attack.target_id, their_share)],
            )
            .is_some_and(|signature| key.verify(message, &signature))
        });
        Asked::Signed { valid }
    }
}

/// What became of one request for a share.
enum Asked {
    /// The target gave a share; whether the signature made with it and
    /// the rogue's own verifies.
    Signed { valid: bool },
    /// The target answered no.
    Refused(String),
    /// The target could not be reached, or something else failed.
    Failed(String),
}

impl Asked {
    fn from_call(e: CallError) -> Asked {
        match e {
            CallError::Failed {
                code: tonic::Code::FailedPrecondition,
                message,
                ..
            } => Asked::Refused(message),
            other => Asked::Failed(other.to_string()),
        }
    }
}

/// Sign bytes at `position` on `chain` that no validator node ever asks
/// for (a block variant and a timestamp none uses), so no node grants
/// them: what a compromised member would like signed beside the granted
/// payload.
pub fn forged_bytes(chain: &str, key: &PublicKey, position: Option<Position>) -> Vec<u8> {
    let Position {
        height,
        round,
        step,
    } = position.unwrap_or(Position {
        height: 1,
        round: 0,
        step: Step::Prevote,
    });
    let block = consensus::block_id(height, 99);
    let request = match step {
        Step::Propose => SignRequest::from_proposal(
            chain.to_string(),
            consensus::proposal(height, round, block, 1),
        ),
        Step::None | Step::Prevote | Step::Precommit => {
            let vote = consensus::vote(
                Version::V0_38,
                step == Step::Precommit,
                height,
                round,
                Some(block),
                &consensus::address(key),
                1,
            );
            SignRequest::from_vote(Version::V0_38, chain.to_string(), vote, false)
        }
    };
    request.map(|r| r.sign_bytes).unwrap_or_default()
}

/// A signing package over `message` with the nodes' commitments.
fn package<'a>(
    commitments: impl IntoIterator<Item = (u64, &'a [u8])>,
    message: &[u8],
) -> Result<frost::SigningPackage, String> {
    let commitments = commitments
        .into_iter()
        .map(|(node, bytes)| {
            let commitment = frost::round1::SigningCommitments::deserialize(bytes)
                .map_err(|e| format!("node {node}'s commitment: {e}"))?;
            Ok((identifier(node)?, commitment))
        })
        .collect::<Result<BTreeMap<_, _>, String>>()?;
    Ok(frost::SigningPackage::new(commitments, message))
}

/// The signature two nodes' shares make, if they make one.
fn aggregate(
    share: &KeyShare,
    package: &frost::SigningPackage,
    shares: [(u64, Vec<u8>); 2],
) -> Option<Vec<u8>> {
    let shares = shares
        .into_iter()
        .map(|(node, bytes)| {
            Some((
                identifier(node).ok()?,
                frost::round2::SignatureShare::deserialize(&bytes).ok()?,
            ))
        })
        .collect::<Option<BTreeMap<_, _>>>()?;
    let signature = frost::aggregate(package, &shares, share.public_package()).ok()?;
    signature.serialize().ok()
}
