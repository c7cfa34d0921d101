//! Threshold mode on the cluster: this node's side of the share rounds
//! (behind the `Commit` and `Share` RPCs), and the signer a session uses
//! to collect `t` shares after its grant has committed.
//!
//! The one rule: a node gives a share only for bytes its own applied Raft
//! state grants on the chain ([`AppliedState::grants`]). It waits a little
//! (up to the minimum election timeout) for an entry it has not applied
//! yet: the serving node may be ahead of it by one commit. So a node whose host is
//! compromised can ask for shares, but gets them only for what the
//! majority has committed, and its own share alone signs nothing.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::instance::Instance;
use super::network::{self, CallError, Channels};
use super::pb;
use super::state_machine::AppliedState;
use super::types::NodeId;
use crate::keys::PublicKey;
use crate::keys::loss::KeyLoss;
use crate::threshold::participant::{Commitment, decode_package};
use crate::threshold::{
    CosignError, Cosigner, GroupSigner, KeyShare, Participant, ShareError, SignError, coordinator,
};

/// This node's shares, and the checks it makes before it uses one.
pub struct Cosign {
    instance: Arc<Instance>,
    participant: Arc<Participant>,
    key_loss: KeyLoss,
    /// How long a share request waits for its grant to be applied here.
    wait: Duration,
}

impl std::fmt::Debug for Cosign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosign")
            .field("participant", &self.participant)
            .finish_non_exhaustive()
    }
}

impl Cosign {
    pub(crate) fn new(
        instance: Arc<Instance>,
        participant: Arc<Participant>,
        key_loss: KeyLoss,
        wait: Duration,
    ) -> Cosign {
        Cosign {
            instance,
            participant,
            key_loss,
            wait,
        }
    }

    /// Round 1 for `chain_id`.
    ///
    /// # Errors
    ///
    /// No share of the chain here, or the node's keys are (simulated) lost.
    pub fn commit(&self, chain_id: &str) -> Result<Commitment, ShareError> {
        if self.key_loss.is_lost() {
            return Err(ShareError::Frost(
                "this node's key share is unavailable".into(),
            ));
        }
        self.participant.commit(chain_id)
    }

    /// Round 2: a share over `package`'s message, only once this node's
    /// applied state grants it. A refused session's nonces are dropped too.
    ///
    /// # Errors
    ///
    /// A malformed package, bytes not granted here within the wait, or an
    /// unknown session.
    pub async fn share(
        &self,
        chain_id: &str,
        session: u64,
        package: &[u8],
    ) -> Result<Vec<u8>, ShareError> {
        let granted = async {
            let package = decode_package(package)?;
            let deadline = Instant::now() + self.wait;
            wait_granted(
                self.instance.watch_applied(),
                chain_id,
                package.message(),
                deadline,
            )
            .await?;
            Ok(package)
        };
        match granted.await {
            Ok(package) => self.participant.sign(chain_id, session, &package),
            Err(e) => {
                self.participant.forget(session);
                Err(e)
            }
        }
    }
}

/// Waits until the applied state grants `bytes` on `chain_id`, or
/// `deadline`.
async fn wait_granted(
    mut applied: tokio::sync::watch::Receiver<Arc<AppliedState>>,
    chain_id: &str,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), ShareError> {
    loop {
        if applied.borrow_and_update().grants(chain_id, bytes) {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, applied.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                return Err(ShareError::NotGranted(format!(
                    "this node's applied state grants no such bytes on chain {chain_id}"
                )));
            }
        }
    }
}

/// This node as a cosigner of its own signatures: no network.
struct LocalCosigner {
    node: NodeId,
    cosign: Arc<Cosign>,
}

impl Cosigner for LocalCosigner {
    fn node(&self) -> u64 {
        self.node
    }

    fn commit<'a>(&'a self, chain_id: &'a str) -> BoxFuture<'a, Result<Commitment, CosignError>> {
        Box::pin(async move {
            self.cosign
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
            self.cosign
                .share(chain_id, session, package)
                .await
                .map_err(|e| CosignError::Refused(e.to_string()))
        })
    }
}

/// Another node, over the cluster's mutual TLS.
struct PeerCosigner {
    node: NodeId,
    addr: String,
    channels: Channels,
    timeout: Duration,
}

fn cosign_error(e: CallError) -> CosignError {
    match e {
        CallError::Failed {
            code: tonic::Code::FailedPrecondition,
            message,
            ..
        } => CosignError::Refused(message),
        other => CosignError::Unreachable(other.to_string()),
    }
}

impl Cosigner for PeerCosigner {
    fn node(&self) -> u64 {
        self.node
    }

    fn commit<'a>(&'a self, chain_id: &'a str) -> BoxFuture<'a, Result<Commitment, CosignError>> {
        Box::pin(async move {
            let reply = network::commit(&self.channels, &self.addr, self.timeout, chain_id)
                .await
                .map_err(cosign_error)?;
            Ok(Commitment {
                session: reply.session,
                commitments: reply.commitments,
            })
        })
    }

    fn sign<'a>(
        &'a self,
        chain_id: &'a str,
        session: u64,
        package: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CosignError>> {
        Box::pin(async move {
            let request = pb::ShareRequest {
                chain_id: chain_id.to_string(),
                session,
                package: package.to_vec(),
            };
            network::share(&self.channels, &self.addr, self.timeout, request)
                .await
                .map_err(cosign_error)
        })
    }
}

/// A chain's signer in threshold mode: this node and the members holding
/// the other shares, asked after the grant has committed. The share is
/// looked up on every signature, so one a key generation installs is
/// used at once.
pub struct ThresholdSigner {
    chain_id: String,
    cosign: Arc<Cosign>,
    instance: Arc<Instance>,
    channels: Channels,
    /// How long one signature may take in all (the grant timeout).
    budget: Duration,
    /// How long one call to a peer may take.
    call_timeout: Duration,
}

impl std::fmt::Debug for ThresholdSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThresholdSigner")
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

impl ThresholdSigner {
    pub(crate) fn new(
        chain_id: &str,
        cosign: Arc<Cosign>,
        instance: Arc<Instance>,
        channels: Channels,
        budget: Duration,
        call_timeout: Duration,
    ) -> ThresholdSigner {
        ThresholdSigner {
            chain_id: chain_id.to_string(),
            cosign,
            instance,
            channels,
            budget,
            call_timeout,
        }
    }

    /// This node and every other member that holds a share, with the
    /// address membership gives it.
    fn cosigners(&self, share: &KeyShare) -> Vec<Arc<dyn Cosigner>> {
        let me = self.instance.id();
        let metrics = self.instance.metrics();
        let membership = metrics.membership_config.membership();
        let mut cosigners: Vec<Arc<dyn Cosigner>> = vec![Arc::new(LocalCosigner {
            node: me,
            cosign: self.cosign.clone(),
        })];
        for node in share.holders() {
            if node == me {
                continue;
            }
            if let Some(member) = membership.get_node(&node) {
                cosigners.push(Arc::new(PeerCosigner {
                    node,
                    addr: member.addr.clone(),
                    channels: self.channels.clone(),
                    timeout: self.call_timeout,
                }));
            }
        }
        cosigners
    }
}

impl GroupSigner for ThresholdSigner {
    fn public_key(&self) -> Option<PublicKey> {
        let share = self.cosign.participant.share(&self.chain_id)?;
        share.group_key().ok()
    }

    fn sign<'a>(&'a self, msg: &'a [u8]) -> BoxFuture<'a, Result<[u8; 64], SignError>> {
        Box::pin(async move {
            let share = self
                .cosign
                .participant
                .share(&self.chain_id)
                .ok_or_else(|| SignError::NoShare(self.chain_id.clone()))?;
            let job = coordinator::Job {
                chain_id: &self.chain_id,
                message: msg,
                public: share.public_package(),
                threshold: share.threshold(),
                deadline: Instant::now() + self.budget,
                call_timeout: self.call_timeout,
                hedge: coordinator::hedge_delay(self.call_timeout),
            };
            coordinator::sign(&job, &self.cosigners(&share)).await
        })
    }
}
