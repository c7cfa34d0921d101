//! The replicated state machine: one watermark per chain, moved only by
//! committed log entries and only through the `watermark` rules.
//!
//! [`AppliedState`] is the whole state (applied log id, membership, chain
//! map) and doubles as the snapshot format, since it is tiny. [`apply`] is
//! pure and deterministic, so every node applying the same log reaches the
//! same state and gives the same outcomes. [`StateMachine`] is openraft's
//! `RaftStateMachine` around it: it publishes each applied batch on a
//! `watch` channel, which the granter's fast path and status read, and
//! writes the state every [`APPLIED_WRITE_EVERY`] entries (without waiting
//! for the disk: the state can be rebuilt from the log). Snapshots are
//! written durably before openraft purges the log they cover. A node
//! starts from the newer of the two records and openraft applies the
//! committed entries past it again before the node serves.
//!
//! # Invariant
//!
//! Everything in the published state comes from committed entries, which
//! are durable on a majority: a grant seen there survives any crash (a
//! restarted node applies the committed entries past its stored state
//! again), so re-serving it never contradicts a later state.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::store::{Backend, BackendError, MetaKey, decode, encode};
use super::types::typ::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership};
use super::types::{Command, Outcome, RaiseRecord, Raiser, SignedRecord, TypeConfig};
use crate::metrics::Stage;
use crate::watermark::{self, SignState, Verdict};

/// Everything the state machine holds; also the snapshot contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last applied membership.
    pub membership: StoredMembership,
    /// Each chain's watermark, by chain id.
    pub chains: BTreeMap<String, SignState>,
    /// Each chain's last applied raise, by chain id.
    #[serde(default)]
    pub raises: BTreeMap<String, RaiseRecord>,
    /// Each chain's last granted signature, by chain id (operators' view).
    #[serde(default)]
    pub last_signed: BTreeMap<String, SignedRecord>,
    /// Each chain's last [`RECENT_GRANTS`] granted sign bytes, and the vote
    /// extensions granted with them (threshold mode), oldest first.
    #[serde(default)]
    pub recent_grants: BTreeMap<String, Vec<Vec<u8>>>,
}

/// Granted byte strings a chain keeps for threshold mode's share rounds.
/// A share round starts once its grant has committed, and another grant on
/// the chain (another validator node's, the next step's) may commit while
/// it runs; bytes granted a few entries ago are still granted bytes, since
/// every position has only one granted set.
pub const RECENT_GRANTS: usize = 8;

impl AppliedState {
    /// Whether this state grants exactly `bytes` on `chain_id`: the sign
    /// bytes at its watermark, or bytes (sign bytes or a vote extension)
    /// among its recent grants. Threshold mode gives a share for nothing
    /// else.
    pub fn grants(&self, chain_id: &str, bytes: &[u8]) -> bool {
        let at_watermark = self.chains.get(chain_id).is_some_and(|c| {
            c.position.is_some() && !c.sign_bytes.is_empty() && c.sign_bytes == bytes
        });
        at_watermark
            || self
                .recent_grants
                .get(chain_id)
                .is_some_and(|recent| recent.iter().any(|b| b == bytes))
    }
}

/// Applies one entry to `state` and returns its outcome. Pure.
pub fn apply(state: &mut AppliedState, entry: &Entry) -> Outcome {
    state.last_applied = Some(entry.log_id);
    match &entry.payload {
        EntryPayload::Blank => Outcome::None,
        EntryPayload::Membership(m) => {
            state.membership = StoredMembership::new(Some(entry.log_id), m.clone());
            Outcome::None
        }
        EntryPayload::Normal(command) => apply_command(state, entry.log_id.index, command),
    }
}

/// Applies one command of the entry at log `index`.
fn apply_command(state: &mut AppliedState, index: u64, command: &Command) -> Outcome {
    match command {
        Command::Grant {
            chain_id,
            attempt,
            served,
        } => {
            let chain = state.chains.entry(chain_id.clone()).or_default();
            let (verdict, _changed) = watermark::grant(chain, attempt);
            if matches!(verdict, Verdict::Sign(_)) {
                let record = SignedRecord {
                    node: served.as_ref().map(|s| s.node),
                    at_ms: served.as_ref().and_then(|s| s.at_ms),
                    validator: attempt.origin.clone(),
                    index,
                    position: attempt.position,
                };
                state.last_signed.insert(chain_id.clone(), record);
                if let Verdict::Sign(bytes) = &verdict {
                    let recent = state.recent_grants.entry(chain_id.clone()).or_default();
                    for granted in std::iter::once(bytes).chain(&attempt.extension) {
                        if !recent.contains(granted) {
                            recent.push(granted.clone());
                        }
                    }
                    let excess = recent.len().saturating_sub(RECENT_GRANTS);
                    recent.drain(..excess);
                }
            }
            Outcome::Granted(verdict)
        }
        Command::Raise {
            chain_id,
            state: imported,
            by,
        } => {
            let chain = state.chains.entry(chain_id.clone()).or_default();
            // A floor stands in for a missing watermark only: once the
            // chain has one (a grant or an import committed first), the
            // floor is moot and changes nothing.
            if matches!(by, Raiser::Floor { .. }) && chain.position.is_some() {
                return Outcome::Raised(Ok(()));
            }
            let result = watermark::raise(chain, imported);
            if result.is_ok() {
                let record = RaiseRecord {
                    by: by.clone(),
                    index,
                    position: imported.position,
                };
                state.raises.insert(chain_id.clone(), record);
            }
            Outcome::Raised(result)
        }
        // Each command sees the state the ones before it left, exactly as
        // if they had been entries of their own.
        Command::Batch(commands) => Outcome::Batch(
            commands
                .iter()
                .map(|c| apply_command(state, index, c))
                .collect(),
        ),
    }
}

/// Logs what a raise did to `state`, and who asked for it.
fn log_raise(state: &AppliedState, entry: &Entry, outcome: &Outcome) {
    if let EntryPayload::Normal(command) = &entry.payload {
        log_command_raise(state, entry.log_id.index, command, outcome);
    }
}

fn log_command_raise(state: &AppliedState, index: u64, command: &Command, outcome: &Outcome) {
    let (
        Command::Raise {
            chain_id,
            state: raised,
            by,
        },
        Outcome::Raised(result),
    ) = (command, outcome)
    else {
        if let (Command::Batch(commands), Outcome::Batch(outcomes)) = (command, outcome) {
            for (command, outcome) in commands.iter().zip(outcomes) {
                log_command_raise(state, index, command, outcome);
            }
        }
        return;
    };
    let position = raised.position.map(|p| p.to_string());
    let recorded = state.raises.get(chain_id).is_some_and(|r| r.index == index);
    match result {
        Ok(()) if recorded => {
            tracing::info!(%chain_id, position, %by, index, "watermark raised")
        }
        Ok(()) => tracing::info!(
            %chain_id, position, %by, index, "floor not needed: the chain has a watermark"
        ),
        Err(refusal) => {
            tracing::info!(%chain_id, position, %by, index, %refusal, "raise refused")
        }
    }
}

/// Reads a snapshot's data: the serialized [`AppliedState`].
///
/// # Errors
///
/// The bytes are not a serialized state.
pub fn decode_snapshot(data: &[u8]) -> Result<AppliedState, BackendError> {
    decode(data)
}

/// The stored snapshot: its metadata and the serialized [`AppliedState`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    /// The applied state it holds; its metadata says where it ends.
    fn state(&self) -> Result<AppliedState, BackendError> {
        let mut state = decode_snapshot(&self.data)?;
        state.last_applied = self.meta.last_log_id;
        state.membership = self.meta.last_membership.clone();
        Ok(state)
    }
}

fn sm_write_err(e: BackendError) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

fn snap_write_err(e: BackendError) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

fn snap_read_err(e: BackendError) -> StorageError {
    StorageIOError::read_snapshot(None, &e).into()
}

/// Entries applied between two writes of the applied state. Writing it is
/// most of an apply's cost (the whole state, encoded), and it only saves a
/// restart from applying these entries again, which takes microseconds.
pub const APPLIED_WRITE_EVERY: u64 = 32;

/// The state a node's state machine starts from: the newer of its applied
/// record and its snapshot's state. The applied state is written only every
/// few entries, so a newer snapshot may have been built since, and openraft
/// may have purged the log between the two; it applies again only the
/// committed entries past the state it is given.
///
/// # Errors
///
/// A record cannot be read or decoded.
pub fn stored_state(backend: &dyn Backend) -> Result<AppliedState, BackendError> {
    let applied = match backend.meta_get(MetaKey::Applied)? {
        Some(bytes) => Some(decode::<AppliedState>(&bytes)?),
        None => None,
    };
    let snapshot = match backend.meta_get(MetaKey::Snapshot)? {
        Some(bytes) => Some(decode::<StoredSnapshot>(&bytes)?.state()?),
        None => None,
    };
    Ok(match (applied, snapshot) {
        (Some(a), Some(s)) if s.last_applied > a.last_applied => s,
        (Some(a), _) => a,
        (None, s) => s.unwrap_or_default(),
    })
}

/// openraft's state machine over a [`Backend`].
#[derive(Debug)]
pub struct StateMachine {
    backend: Arc<dyn Backend>,
    state: Arc<AppliedState>,
    /// The log index the stored applied state ends at.
    stored_at: Option<u64>,
    published: watch::Sender<Arc<AppliedState>>,
    snapshot_seq: u64,
}

impl StateMachine {
    /// Loads the state machine from `backend` and publishes it on
    /// `published`.
    ///
    /// # Errors
    ///
    /// The stored state cannot be read or decoded.
    pub fn open(
        backend: Arc<dyn Backend>,
        published: watch::Sender<Arc<AppliedState>>,
    ) -> Result<StateMachine, BackendError> {
        let state = Arc::new(stored_state(backend.as_ref())?);
        published.send_replace(state.clone());
        Ok(StateMachine {
            backend,
            stored_at: state.last_applied.map(|id| id.index),
            state,
            published,
            snapshot_seq: 0,
        })
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>, BackendError> {
        match self.backend.meta_get(MetaKey::Snapshot)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }
}

/// Builds a snapshot from a copy of the applied state.
#[derive(Debug)]
pub struct SnapshotBuilder {
    backend: Arc<dyn Backend>,
    state: AppliedState,
    seq: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = encode(&self.state).map_err(snap_write_err)?;
        let snapshot_id = match self.state.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.seq),
            None => format!("--{}", self.seq),
        };
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let bytes = encode(&stored).map_err(snap_write_err)?;
        // A snapshot installed from the leader while this one was being
        // built may already cover more of the log: keep the newer one, or
        // the stored snapshot would fall behind the purged log.
        let newer_stored = |current: &[u8]| {
            decode::<StoredSnapshot>(current).is_ok_and(|s| s.meta.last_log_id >= meta.last_log_id)
        };
        let wrote = self
            .backend
            .meta_put_unless(MetaKey::Snapshot, bytes, &newer_stored)
            .map_err(snap_write_err)?;
        if !wrote {
            tracing::debug!(
                built = ?meta.last_log_id,
                "a snapshot at least as new is stored already; keeping it"
            );
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let started = std::time::Instant::now();
        // Work on a copy: if the write below fails, the batch is not
        // applied at all, in memory or in the published state.
        let mut next = AppliedState::clone(&self.state);
        let outcomes: Vec<Outcome> = entries
            .into_iter()
            .map(|e| {
                let outcome = apply(&mut next, &e);
                log_raise(&next, &e, &outcome);
                outcome
            })
            .collect();
        if outcomes.is_empty() {
            return Ok(outcomes);
        }
        let end = next.last_applied.map(|id| id.index);
        if end >= self.stored_at.map(|at| at + APPLIED_WRITE_EVERY) {
            let bytes = encode(&next).map_err(sm_write_err)?;
            // Deferred: one fsync less per commit. The entries are in the
            // durable log until a durable snapshot covers them.
            self.backend
                .meta_put_deferred(vec![(MetaKey::Applied, bytes)])
                .map_err(sm_write_err)?;
            self.stored_at = end;
        }
        self.state = Arc::new(next);
        self.published.send_replace(self.state.clone());
        crate::metrics::global().stage(Stage::Apply, started.elapsed());
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            backend: self.backend.clone(),
            state: AppliedState::clone(&self.state),
            seq: self.snapshot_seq,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        // The snapshot's own metadata is authoritative for where it ends.
        let state = stored.state().map_err(snap_read_err)?;
        let records = vec![
            (MetaKey::Applied, encode(&state).map_err(sm_write_err)?),
            (MetaKey::Snapshot, encode(&stored).map_err(snap_write_err)?),
        ];
        self.backend.meta_put(records).map_err(snap_write_err)?;
        self.stored_at = state.last_applied.map(|id| id.index);
        self.state = Arc::new(state);
        self.published.send_replace(self.state.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self
            .read_snapshot()
            .map_err(snap_read_err)?
            .map(|s| Snapshot {
                meta: s.meta,
                snapshot: Box::new(Cursor::new(s.data)),
            }))
    }
}
