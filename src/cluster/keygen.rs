//! Threshold mode's distributed key generation, run over the cluster's
//! node-to-node channel (mutual TLS): `quorumkms threshold dkg` asks one
//! node, which coordinates; every voter draws its own secret, and the
//! group key's secret is never whole anywhere.
//!
//! The coordinator moves the run through three steps on every voter
//! (`Start`, `Round2`, `Finish`, each a [`Step`] in the `Dkg` RPC). Round
//! 1's packages are public and pass through the coordinator; round 2's are
//! secret to their recipient, so each voter sends them itself, straight to
//! the recipient (`Deliver`), whose TLS certificate check names the sender.
//! `Finish` derives the voter's share, writes it to the chain's
//! `share_file` (0600, never over an existing file) and starts using it.
//! The coordinator then checks every voter made the same group key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::instance::Instance;
use super::network::{self, Channels};
use super::types::NodeId;
use crate::threshold::dkg::Dkg;
use crate::threshold::{KeyShare, Participant};

/// Runs a node keeps at once: a run lasts seconds, and an operator runs one
/// at a time; older ones are dropped.
const MAX_RUNS: usize = 4;

/// Where a threshold chain's share goes, and its t of n, from the
/// chain's `[chain.threshold]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareSlot {
    /// The share file.
    pub file: PathBuf,
    /// Shares a signature needs.
    pub threshold: u16,
    /// Shares in all.
    pub shares: u16,
}

/// One step of a run, as the `Dkg` RPC carries it (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Step {
    /// Start this node's part; answers its round 1 package.
    Start {
        /// The run.
        run: u64,
        /// The chain the key is for.
        chain_id: String,
        /// Shares a signature needs.
        threshold: u16,
        /// The voters taking part.
        participants: Vec<NodeId>,
    },
    /// Every participant's round 1 package: this node sends each other one
    /// its round 2 package and answers once all are delivered.
    Round2 {
        /// The run.
        run: u64,
        /// Round 1 packages, by node.
        round1: BTreeMap<NodeId, Vec<u8>>,
    },
    /// A round 2 package for this node.
    Deliver {
        /// The run.
        run: u64,
        /// The sender (its certificate must name it).
        from: NodeId,
        /// The package.
        package: Vec<u8>,
    },
    /// Derive, store and use this node's share; answers the group key.
    Finish {
        /// The run.
        run: u64,
    },
}

/// A node's answer to a [`Step`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Round 1's package.
    Round1(Vec<u8>),
    /// Round 2's packages are delivered, or one was received.
    Done,
    /// The share is stored; the group key (base64).
    Finished(String),
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeygenError {
    /// The operator's request cannot be run here.
    #[error("{0}")]
    Refused(String),
    /// A voter failed or could not be reached.
    #[error("node {node}: {reason}")]
    Node {
        /// The voter.
        node: NodeId,
        /// What it said.
        reason: String,
    },
}

struct Run {
    chain_id: String,
    dkg: Option<Dkg>,
    received: BTreeMap<NodeId, Vec<u8>>,
}

/// A node's part in key generations, and the coordinator.
pub struct Keygen {
    instance: Arc<Instance>,
    channels: Channels,
    participant: Arc<Participant>,
    slots: BTreeMap<String, ShareSlot>,
    runs: Mutex<Vec<(u64, Run)>>,
    timeout: Duration,
}

impl std::fmt::Debug for Keygen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keygen")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl Keygen {
    pub(crate) fn new(
        instance: Arc<Instance>,
        channels: Channels,
        participant: Arc<Participant>,
        slots: BTreeMap<String, ShareSlot>,
        timeout: Duration,
    ) -> Keygen {
        Keygen {
            instance,
            channels,
            participant,
            slots,
            runs: Mutex::new(Vec::new()),
            timeout,
        }
    }

    /// Coordinates a run for `chain_id` over every voter; returns what to
    /// tell the operator.
    ///
    /// # Errors
    ///
    /// The chain is not in threshold mode here, already has a share, its
    /// `shares` differ from the number of voters, or a voter failed.
    pub async fn generate(&self, chain_id: &str) -> Result<String, KeygenError> {
        let slot = self.slot(chain_id)?;
        let metrics = self.instance.metrics();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if voters.len() != usize::from(slot.shares) {
            return Err(KeygenError::Refused(format!(
                "chain {chain_id} is configured for {} shares, and the cluster has {} voters \
                 ({voters:?}): one share per voter",
                slot.shares,
                voters.len()
            )));
        }
        let addrs: BTreeMap<NodeId, String> = voters
            .iter()
            .filter_map(|id| membership.get_node(id).map(|m| (*id, m.addr.clone())))
            .collect();
        let run = rand::random::<u64>();
        let mut round1 = BTreeMap::new();
        let start = Step::Start {
            run,
            chain_id: chain_id.to_string(),
            threshold: slot.threshold,
            participants: voters.clone(),
        };
        for node in &voters {
            match self.ask(*node, &addrs, &start).await? {
                Answer::Round1(package) => {
                    round1.insert(*node, package);
                }
                other => return Err(unexpected(*node, &other)),
            }
        }
        let round2 = Step::Round2 { run, round1 };
        for node in &voters {
            match self.ask(*node, &addrs, &round2).await? {
                Answer::Done => {}
                other => return Err(unexpected(*node, &other)),
            }
        }
        let mut group_keys = BTreeMap::new();
        for node in &voters {
            match self.ask(*node, &addrs, &Step::Finish { run }).await? {
                Answer::Finished(key) => {
                    group_keys.insert(*node, key);
                }
                other => return Err(unexpected(*node, &other)),
            }
        }
        let mut keys: Vec<&String> = group_keys.values().collect();
        keys.dedup();
        match keys[..] {
            [key] => Ok(format!(
                "chain {chain_id}: a new {}-of-{} key, one share on each of nodes {voters:?}; \
                 group public key (the validator's key) {key}",
                slot.threshold, slot.shares
            )),
            _ => Err(KeygenError::Refused(format!(
                "the voters made different group keys ({group_keys:?}); no key is usable: \
                 remove the share files and run again"
            ))),
        }
    }

    /// One step on `node`: this node's own directly, another's over the
    /// cluster channel.
    async fn ask(
        &self,
        node: NodeId,
        addrs: &BTreeMap<NodeId, String>,
        step: &Step,
    ) -> Result<Answer, KeygenError> {
        let failed = |reason: String| KeygenError::Node { node, reason };
        if node == self.instance.id() {
            return self.handle(node, step.clone()).await.map_err(failed);
        }
        let addr = addrs
            .get(&node)
            .ok_or_else(|| failed("no address in the membership".into()))?;
        let bytes = serde_json::to_vec(step).map_err(|e| failed(e.to_string()))?;
        let reply = network::keygen(&self.channels, addr, self.timeout, bytes)
            .await
            .map_err(|e| failed(e.to_string()))?;
        serde_json::from_slice(&reply).map_err(|e| failed(format!("bad answer: {e}")))
    }

    fn slot(&self, chain_id: &str) -> Result<&ShareSlot, KeygenError> {
        let slot = self.slots.get(chain_id).ok_or_else(|| {
            KeygenError::Refused(format!(
                "chain {chain_id} is not in threshold mode on node {} (set mode = \"threshold\" \
                 and [chain.threshold] in every node's config, then restart them)",
                self.instance.id()
            ))
        })?;
        if self.participant.share(chain_id).is_some() || slot.file.exists() {
            return Err(KeygenError::Refused(format!(
                "node {} already has a share of chain {chain_id} ({}); a new key is a new \
                 validator key, so it is never made over an existing one",
                self.instance.id(),
                slot.file.display()
            )));
        }
        Ok(slot)
    }

    /// Runs `step` on this node; `from` is the caller (its certificate's
    /// node, or this node itself).
    ///
    /// # Errors
    ///
    /// The step does not fit this node's config or the run's state.
    pub async fn handle(&self, from: NodeId, step: Step) -> Result<Answer, String> {
        let me = self.instance.id();
        match step {
            Step::Start {
                run,
                chain_id,
                threshold,
                participants,
            } => {
                let slot = self.slot(&chain_id).map_err(|e| e.to_string())?;
                if (slot.threshold, usize::from(slot.shares)) != (threshold, participants.len()) {
                    return Err(format!(
                        "chain {chain_id} is {}-of-{} here, the run is {threshold}-of-{}",
                        slot.threshold,
                        slot.shares,
                        participants.len()
                    ));
                }
                let (dkg, package) = Dkg::start(
                    &chain_id,
                    me,
                    threshold,
                    &participants,
                    &mut rand_core::OsRng,
                )?;
                self.insert(
                    run,
                    Run {
                        chain_id,
                        dkg: Some(dkg),
                        received: BTreeMap::new(),
                    },
                );
                Ok(Answer::Round1(package))
            }
            Step::Round2 { run, mut round1 } => {
                round1.remove(&me);
                let (packages, recipients) = {
                    let mut runs = self.lock();
                    let dkg = find(&mut runs, run)?
                        .dkg
                        .as_mut()
                        .ok_or("this node's part has no round 1")?;
                    let packages = dkg.round2(&round1)?;
                    (packages, round1.keys().copied().collect::<Vec<_>>())
                };
                let metrics = self.instance.metrics();
                let membership = metrics.membership_config.membership();
                for to in recipients {
                    let package = packages
                        .get(&to)
                        .ok_or_else(|| format!("no round 2 package for node {to}"))?;
                    let addr = membership
                        .get_node(&to)
                        .map(|m| m.addr.clone())
                        .ok_or_else(|| format!("node {to} has no address in the membership"))?;
                    let deliver = Step::Deliver {
                        run,
                        from: me,
                        package: package.clone(),
                    };
                    let bytes = serde_json::to_vec(&deliver).map_err(|e| e.to_string())?;
                    network::keygen(&self.channels, &addr, self.timeout, bytes)
                        .await
                        .map_err(|e| format!("delivering to node {to}: {e}"))?;
                }
                Ok(Answer::Done)
            }
            Step::Deliver {
                run,
                from: claimed,
                package,
            } => {
                if claimed != from {
                    return Err(format!(
                        "a round 2 package says it is from node {claimed}, but node {from} sent it"
                    ));
                }
                let mut runs = self.lock();
                let entry = find(&mut runs, run)?;
                match entry.received.get(&from) {
                    Some(earlier) if *earlier != package => {
                        Err(format!("node {from} sent two different round 2 packages"))
                    }
                    _ => {
                        entry.received.insert(from, package);
                        Ok(Answer::Done)
                    }
                }
            }
            Step::Finish { run } => {
                let (chain_id, dkg, received) = {
                    let mut runs = self.lock();
                    let entry = find(&mut runs, run)?;
                    let dkg = entry.dkg.take().ok_or("this run has finished already")?;
                    (
                        entry.chain_id.clone(),
                        dkg,
                        std::mem::take(&mut entry.received),
                    )
                };
                let share = dkg.finish(&received)?;
                self.keep(&chain_id, share)
            }
        }
    }

    /// Writes the new share to its file, then uses it.
    fn keep(&self, chain_id: &str, share: KeyShare) -> Result<Answer, String> {
        let slot = self.slot(chain_id).map_err(|e| e.to_string())?;
        let group = share.group_key()?;
        share
            .write(&slot.file, false)
            .map_err(|e| format!("writing the share: {e}"))?;
        tracing::info!(chain_id, file = %slot.file.display(), "new threshold share stored");
        self.participant.install(share);
        Ok(Answer::Finished(BASE64.encode(group.as_bytes())))
    }

    fn insert(&self, id: u64, run: Run) {
        let mut runs = self.lock();
        runs.retain(|(other, _)| *other != id);
        if runs.len() >= MAX_RUNS {
            runs.remove(0);
        }
        runs.push((id, run));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Run)>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn find(runs: &mut [(u64, Run)], id: u64) -> Result<&mut Run, String> {
    runs.iter_mut()
        .find(|(other, _)| *other == id)
        .map(|(_, run)| run)
        .ok_or_else(|| format!("no key generation run {id} here (restarted, or never started)"))
}

fn unexpected(node: NodeId, answer: &Answer) -> KeygenError {
    KeygenError::Node {
        node,
        reason: format!("unexpected answer {answer:?}"),
    }
}
