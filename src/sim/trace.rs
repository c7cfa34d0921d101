//! What one simulated run observed, shared by every simulated host: the
//! event trace (hashed into the run's digest), the entries each node
//! applied (checked index by index across nodes), and the violations found
//! so far.
//!
//! Every host runs on one OS thread, so the order events arrive in is the
//! simulation's own order, and the digest is a function of the seed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// One node's applied entry, as every node must apply it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    /// The entry's log id (term, leader, index), as text.
    pub log_id: String,
    /// The entry's payload (command or membership), as JSON.
    pub payload: String,
    /// The state machine's outcome, as JSON.
    pub outcome: String,
    /// Hash of the whole applied state after this entry.
    pub state: [u8; 32],
}

#[derive(Default)]
struct Inner {
    hasher: Sha256,
    events: u64,
    log: Vec<String>,
    keep_log: bool,
    violations: Vec<String>,
    /// index -> (first node that applied it, what it applied)
    applied: BTreeMap<u64, (u64, AppliedEntry)>,
    /// index -> (first node whose state is known there, state hash)
    states: BTreeMap<u64, (u64, [u8; 32])>,
    entries_applied: u64,
}

/// The shared recorder of one run. Cheap to clone.
#[derive(Clone, Default)]
pub struct Trace {
    inner: Arc<Mutex<Inner>>,
}

/// Simulated time now, as seen from inside a host (zero outside one).
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl Trace {
    /// An empty trace; with `keep_log`, events are also kept as text.
    pub fn new(keep_log: bool) -> Trace {
        let trace = Trace::default();
        trace.lock().keep_log = keep_log;
        trace
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event at simulated time `at` to the digest.
    pub fn event(&self, at: Duration, text: impl Into<String>) {
        let text = text.into();
        let mut inner = self.lock();
        inner.events += 1;
        let line = format!("{:>9}ms {text}", at.as_millis());
        inner.hasher.update(line.as_bytes());
        inner.hasher.update(b"\n");
        if inner.keep_log {
            inner.log.push(line);
        }
    }

    /// Records a broken invariant (and adds it to the trace).
    pub fn violation(&self, at: Duration, text: impl Into<String>) {
        let text = text.into();
        self.event(at, format!("VIOLATION {text}"));
        let mut inner = self.lock();
        if inner.violations.len() < 50 {
            inner
                .violations
                .push(format!("at {}ms: {text}", at.as_millis()));
        }
    }

    /// Records that `node` applied `entry` at `index`, checking it against
    /// what other nodes applied there.
    pub fn applied(&self, node: u64, index: u64, entry: AppliedEntry) {
        let at = now();
        self.event(
            at,
            format!(
                "n{node} applied {index} {} {} -> {}",
                entry.log_id, entry.payload, entry.outcome
            ),
        );
        let mismatch = {
            let mut inner = self.lock();
            inner.entries_applied += 1;
            let state = entry.state;
            let mismatch = match inner.applied.get(&index) {
                Some((first, seen)) if *seen != entry => Some(format!(
                    "index {index}: n{first} applied {} {} -> {}, n{node} applied {} {} -> {}",
                    seen.log_id,
                    seen.payload,
                    seen.outcome,
                    entry.log_id,
                    entry.payload,
                    entry.outcome
                )),
                Some(_) => None,
                None => {
                    inner.applied.insert(index, (node, entry));
                    None
                }
            };
            drop(inner);
            mismatch.or_else(|| self.check_state(node, index, state))
        };
        if let Some(text) = mismatch {
            self.violation(at, format!("nodes diverge: {text}"));
        }
    }

    /// Records `node`'s whole state hash at `index` (after a snapshot
    /// install), checking it against other nodes' states there.
    pub fn state_at(&self, node: u64, index: u64, state: [u8; 32]) {
        let at = now();
        self.event(
            at,
            format!("n{node} installed snapshot at {index} {}", short(&state)),
        );
        if let Some(text) = self.check_state(node, index, state) {
            self.violation(at, format!("nodes diverge: {text}"));
        }
    }

    fn check_state(&self, node: u64, index: u64, state: [u8; 32]) -> Option<String> {
        let mut inner = self.lock();
        match inner.states.get(&index) {
            Some((first, seen)) if *seen != state => Some(format!(
                "state after index {index}: n{first} has {}, n{node} has {}",
                short(seen),
                short(&state)
            )),
            Some(_) => None,
            None => {
                inner.states.insert(index, (node, state));
                None
            }
        }
    }

    /// The violations found so far.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Entries applied, summed over nodes.
    pub fn entries_applied(&self) -> u64 {
        self.lock().entries_applied
    }

    /// Events recorded.
    pub fn events(&self) -> u64 {
        self.lock().events
    }

    /// The kept event lines (empty unless `keep_log`).
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// The digest of every event so far, as hex.
    pub fn digest(&self) -> String {
        hex::encode(self.lock().hasher.clone().finalize())
    }
}

/// The first 8 hex digits of a hash, for messages.
pub fn short(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..4])
}

/// Hash of any serializable value (its JSON form).
pub fn hash_json<T: serde::Serialize>(value: &T) -> [u8; 32] {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes).into()
}
