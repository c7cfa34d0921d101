//! A simulated node's disk: the cluster's [`MemBackend`] (whose contents
//! outlive a crash, because the harness keeps a clone), wrapped so that
//!
//! - every batch the state machine persists is replayed through the pure
//!   `apply` function and reported entry by entry to the [`Trace`], which
//!   checks that all nodes apply the same entries, with the same outcomes,
//!   in the same order;
//! - a deferred write ([`Backend::meta_put_deferred`]: the applied state,
//!   written without waiting for the disk) is durable only once a durable
//!   write follows it, as with redb, whose durable commit also makes the
//!   earlier non-durable ones durable; a crash loses the deferred writes
//!   still pending, as a power loss does, and the node boots on the last
//!   durable applied state;
//! - a planted bug can make the disk forget its last acknowledged log
//!   entries on restart, like an fsync that never happened;
//! - every write is searched for the marks of a hostile peer's forged
//!   input (its term, height or sentinel chain): finding one is a
//!   violation;
//! - the disk can fill up: while it is full every write fails with an I/O
//!   error and changes nothing (reads still work), as a full disk does to
//!   the production store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use openraft::EntryPayload;
use sha2::{Digest, Sha256};

use crate::cluster::MemBackend;
use crate::cluster::state_machine::{AppliedState, apply, stored_state};
use crate::cluster::store::{Backend, BackendError, MetaKey};
use crate::cluster::types::typ::{Entry, LogId};
use crate::cluster::types::{Command, Outcome, TypeConfig};
use crate::watermark::Verdict;

use super::hostile::{forged_effect, forged_entry};
use super::trace::{AppliedEntry, Trace, hash_json, now, short};

/// One node's simulated disk.
#[derive(Clone)]
pub struct SimStore {
    node: u64,
    disk: MemBackend,
    trace: Trace,
    /// Planted bug: log entries forgotten on every restart (0 = none).
    forget_tail: u64,
    /// The applied state last persisted, once read or written: what
    /// `disk` holds under `MetaKey::Applied`, kept decoded because every
    /// persisted batch is compared with the one before.
    persisted: Arc<Mutex<Option<AppliedState>>>,
    /// The disk is full: writes fail.
    full: Arc<AtomicBool>,
    /// Records written deferred since the last durable write, each with
    /// its last durable value (`None`: absent): what a crash reverts to.
    undurable: Arc<Mutex<BTreeMap<MetaKey, Option<Vec<u8>>>>>,
    /// The last backup an operator took of this disk.
    backup: Arc<Mutex<Option<MemBackend>>>,
}

impl std::fmt::Debug for SimStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimStore")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, BackendError> {
    serde_json::from_slice(bytes).map_err(|e| BackendError(format!("decode: {e}")))
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("<{e}>"))
}

fn hash8(bytes: &[u8]) -> String {
    short(&Sha256::digest(bytes).into())
}

/// A short, complete description of an entry's payload for the trace
/// (sign bytes as a hash).
fn describe_payload(payload: &EntryPayload<TypeConfig>) -> String {
    match payload {
        EntryPayload::Blank => "blank".into(),
        EntryPayload::Membership(m) => format!("membership {}", json(m)),
        EntryPayload::Normal(command) => describe_command(command),
    }
}

fn describe_command(command: &Command) -> String {
    match command {
        Command::Grant {
            chain_id, attempt, ..
        } => format!(
            "grant {chain_id} {} {} by {}",
            attempt.position,
            hash8(&attempt.sign_bytes),
            attempt.origin.as_deref().unwrap_or("-")
        ),
        Command::Raise {
            chain_id, state, ..
        } => {
            format!("raise {chain_id} {}", short(&hash_json(state)))
        }
        Command::Batch(commands) => {
            let parts: Vec<String> = commands.iter().map(describe_command).collect();
            format!("batch [{}]", parts.join("; "))
        }
    }
}

fn describe_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Granted(Verdict::Sign(bytes)) => format!("sign {}", hash8(bytes)),
        Outcome::Granted(Verdict::Refuse(refusal)) => format!("refuse ({refusal})"),
        Outcome::Batch(outcomes) => {
            let parts: Vec<String> = outcomes.iter().map(describe_outcome).collect();
            format!("batch [{}]", parts.join("; "))
        }
        other => json(other),
    }
}

impl SimStore {
    /// A fresh disk for `node`, reporting to `trace`. With `forget_tail`
    /// above zero, [`SimStore::restart`] loses that many log entries.
    pub fn new(node: u64, trace: Trace, forget_tail: u64) -> SimStore {
        SimStore {
            node,
            disk: MemBackend::new(),
            trace,
            forget_tail,
            persisted: Arc::default(),
            full: Arc::default(),
            undurable: Arc::default(),
            backup: Arc::default(),
        }
    }

    /// Takes a backup of the disk as it is durably now (what a copy of a
    /// stopped node's data directory holds).
    pub fn take_backup(&self) {
        let copy = self.disk.copy();
        for (key, durable) in self.undurable().iter() {
            copy.set_meta(*key, durable.clone());
        }
        *self.backup.lock().unwrap_or_else(|p| p.into_inner()) = Some(copy);
    }

    /// Puts the last backup back in place of the disk (the node is down).
    /// Returns whether there was one.
    pub fn restore_backup(&self) -> bool {
        let backup = self
            .backup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(backup) = backup else {
            return false;
        };
        self.undurable().clear();
        self.disk.restore(&backup);
        *self.persisted.lock().unwrap_or_else(|p| p.into_inner()) = None;
        true
    }

    /// Fills the disk (`true`: every write fails from now on) or frees
    /// space again (`false`).
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// Fails a write while the disk is full.
    fn writable(&self) -> Result<(), BackendError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(BackendError("No space left on device (os error 28)".into()));
        }
        Ok(())
    }

    /// This disk as the node's backend.
    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.clone())
    }

    fn undurable(&self) -> std::sync::MutexGuard<'_, BTreeMap<MetaKey, Option<Vec<u8>>>> {
        self.undurable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A durable write succeeded: every deferred write before it is now
    /// durable too.
    fn flushed(&self) {
        self.undurable().clear();
    }

    /// The crash: deferred writes never made durable are lost. Returns how
    /// many records went back to their last durable value.
    fn lose_undurable(&self) -> usize {
        let lost = std::mem::take(&mut *self.undurable());
        let count = lost.len();
        for (key, durable) in lost {
            // Bypasses the recorder: the disk itself goes back.
            self.disk.set_meta(key, durable);
        }
        *self.persisted.lock().unwrap_or_else(|p| p.into_inner()) = None;
        count
    }

    /// Called when the node boots again after a crash. Returns how many
    /// deferred records the crash lost, and how many acknowledged log
    /// entries the planted bug dropped.
    pub fn restart(&self) -> (usize, u64) {
        let lost = self.lose_undurable();
        (lost, self.drop_tail())
    }

    /// The planted bug: drops the last acknowledged log entries.
    fn drop_tail(&self) -> u64 {
        if self.forget_tail == 0 {
            return 0;
        }
        let last = match self.disk.log_last() {
            Ok(Some(bytes)) => match decode::<Entry>(&bytes) {
                Ok(entry) => entry.log_id.index,
                Err(_) => return 0,
            },
            _ => return 0,
        };
        let from = last.saturating_sub(self.forget_tail - 1).max(1);
        let dropped = last + 1 - from;
        // Bypasses the recorder on purpose: this is the bug.
        if self.disk.log_truncate(from).is_err() {
            return 0;
        }
        dropped
    }

    /// The node's applied state as its disk holds it: the state it would
    /// start from, with the committed entries past it applied, as openraft
    /// applies them again at start.
    pub fn applied_state(&self) -> AppliedState {
        let mut state = stored_state(&self.disk).unwrap_or_default();
        let committed = self
            .disk
            .meta_get(MetaKey::Committed)
            .ok()
            .flatten()
            .and_then(|bytes| decode::<Option<LogId>>(&bytes).ok())
            .flatten();
        let start = state.last_applied.map_or(0, |id| id.index + 1);
        if let Some(end) = committed.map(|id| id.index + 1).filter(|end| *end > start) {
            for bytes in self.disk.log_range(start, end).unwrap_or_default() {
                if let Ok(entry) = decode::<Entry>(&bytes) {
                    apply(&mut state, &entry);
                }
            }
        }
        state
    }

    /// The applied state last written, from the copy kept since the last
    /// write (after a restart: what the node started from).
    fn last_persisted(&self) -> AppliedState {
        let mut persisted = self.persisted.lock().unwrap_or_else(|p| p.into_inner());
        persisted
            .get_or_insert_with(|| stored_state(&self.disk).unwrap_or_default())
            .clone()
    }

    /// Reports a write only a hostile peer's forged input can have made.
    fn forged(&self, effect: &str) {
        self.trace.violation(
            now(),
            format!(
                "n{} {effect} (a hostile peer's input took effect)",
                self.node
            ),
        );
    }

    /// Replays a persisted batch through `apply` and reports each entry.
    fn observe(&self, prev: AppliedState, next: &AppliedState, snapshot: bool) {
        let Some(end) = next.last_applied.map(|id| id.index) else {
            return;
        };
        if snapshot {
            self.trace.state_at(self.node, end, hash_json(next));
            return;
        }
        let start = prev.last_applied.map_or(0, |id| id.index + 1);
        let entries: Vec<Entry> = match self.disk.log_range(start, end + 1) {
            Ok(raw) => raw.iter().filter_map(|b| decode(b).ok()).collect(),
            Err(_) => Vec::new(),
        };
        if entries.len() as u64 != (end + 1).saturating_sub(start) {
            // The log no longer holds what was applied (only with the
            // planted bug); compare whole states instead.
            self.trace.event(
                now(),
                format!("n{} applied {start}..={end} from a short log", self.node),
            );
            self.trace.state_at(self.node, end, hash_json(next));
            return;
        }
        let mut state = prev;
        for entry in &entries {
            let outcome = apply(&mut state, entry);
            self.trace.applied(
                self.node,
                entry.log_id.index,
                AppliedEntry {
                    log_id: entry.log_id.to_string(),
                    payload: describe_payload(&entry.payload),
                    outcome: describe_outcome(&outcome),
                    state: hash_json(&state),
                },
            );
        }
        if state != *next {
            self.trace.violation(
                now(),
                format!(
                    "n{} persisted a state that replaying its log does not give",
                    self.node
                ),
            );
        }
    }
}

impl Backend for SimStore {
    fn log_range(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, BackendError> {
        self.disk.log_range(start, end)
    }

    fn log_last(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.disk.log_last()
    }

    fn log_append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError> {
        self.writable()?;
        for (_, bytes) in &entries {
            if let Some(effect) = decode::<Entry>(bytes).ok().as_ref().and_then(forged_entry) {
                self.forged(&effect);
            }
        }
        self.disk.log_append(entries)?;
        self.flushed();
        Ok(())
    }

    fn log_truncate(&self, from: u64) -> Result<(), BackendError> {
        self.writable()?;
        self.disk.log_truncate(from)?;
        self.flushed();
        Ok(())
    }

    fn log_purge(&self, upto: u64, purged: Vec<u8>) -> Result<(), BackendError> {
        self.writable()?;
        self.disk.log_purge(upto, purged)?;
        self.flushed();
        Ok(())
    }

    fn meta_get(&self, key: MetaKey) -> Result<Option<Vec<u8>>, BackendError> {
        self.disk.meta_get(key)
    }

    fn meta_put(&self, records: Vec<(MetaKey, Vec<u8>)>) -> Result<(), BackendError> {
        self.put(records, true)
    }

    fn meta_put_deferred(&self, records: Vec<(MetaKey, Vec<u8>)>) -> Result<(), BackendError> {
        self.put(records, false)
    }

    fn meta_put_unless(
        &self,
        key: MetaKey,
        bytes: Vec<u8>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, BackendError> {
        self.writable()?;
        let wrote = self.disk.meta_put_unless(key, bytes, keep)?;
        // A commit that wrote nothing is still a durable commit.
        self.flushed();
        Ok(wrote)
    }

    fn recover(&self) -> Result<(), BackendError> {
        self.disk.recover()
    }
}

impl SimStore {
    /// Writes records, durably or deferred, and observes an applied state
    /// among them.
    fn put(&self, records: Vec<(MetaKey, Vec<u8>)>, durable: bool) -> Result<(), BackendError> {
        self.writable()?;
        for (key, bytes) in &records {
            if let Some(effect) = forged_effect(*key, bytes) {
                self.forged(&effect);
            }
        }
        let applied = records
            .iter()
            .find(|(k, _)| *k == MetaKey::Applied)
            .and_then(|(_, bytes)| decode::<AppliedState>(bytes).ok());
        let snapshot = records.iter().any(|(k, _)| *k == MetaKey::Snapshot);
        let prev = applied.as_ref().map(|_| self.last_persisted());
        let mut before = Vec::new();
        if !durable {
            for (key, _) in &records {
                before.push((*key, self.disk.meta_get(*key)?));
            }
        }
        self.disk.meta_put(records)?;
        if durable {
            self.flushed();
        } else {
            let mut undurable = self.undurable();
            for (key, value) in before {
                undurable.entry(key).or_insert(value);
            }
        }
        if let (Some(next), Some(prev)) = (applied, prev) {
            self.observe(prev, &next, snapshot);
            *self.persisted.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
        }
        Ok(())
    }
}
