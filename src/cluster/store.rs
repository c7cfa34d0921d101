//! Durable storage for one Raft node: the log, the vote, the committed and
//! purged log ids, the applied state machine and its latest snapshot, and
//! the id of the cluster it belongs to.
//!
//! A [`Backend`] is the seam: a handful of byte-level operations, each of
//! which is durable (fsync'd) when it returns `Ok`. Two implementations:
//! [`RedbBackend`], one redb file under the data dir (production), and
//! [`MemBackend`], whose contents live in an `Arc` so a test or a simulation
//! can drop a node and restart it on the same "disk", and can make writes
//! fail like a full disk.
//!
//! [`LogStore`] implements openraft's `RaftLogStorage` over any backend and
//! acknowledges an append only after the backend write returned.
//!
//! Backend calls are synchronous. For redb that means short blocking
//! sections (one write transaction plus its fsync) on the calling task;
//! they are accepted deliberately, because `spawn_blocking` would break a
//! single-threaded simulation and the writes are a few hundred bytes.
//!
//! One file on purpose: the seam, its two implementations and the log store
//! over it are read together when checking that every write is durable
//! before it is acknowledged.
//!
//! # Invariant
//!
//! A storage failure is returned as an error, never a panic.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::TypeConfig;
use super::types::typ::{Entry, LogId, StorageError, Vote};
use crate::metrics::Stage;

/// A backend failure, as text: it ends up in an openraft `StorageError`
/// and, from there, in a refusal to sign.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl From<redb::Error> for BackendError {
    fn from(e: redb::Error) -> Self {
        BackendError(e.to_string())
    }
}

/// The single-value records a node keeps next to its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetaKey {
    /// The last vote.
    Vote,
    /// The last committed log id.
    Committed,
    /// The last purged log id.
    Purged,
    /// The applied state machine.
    Applied,
    /// The latest snapshot (meta and data).
    Snapshot,
    /// A scratch record written to check that the disk takes writes again.
    Probe,
    /// The id of the cluster this store belongs to.
    ClusterId,
}

impl MetaKey {
    pub(crate) fn name(self) -> &'static str {
        match self {
            MetaKey::Vote => "vote",
            MetaKey::Committed => "committed",
            MetaKey::Purged => "purged",
            MetaKey::Applied => "applied",
            MetaKey::Snapshot => "snapshot",
            MetaKey::Probe => "probe",
            MetaKey::ClusterId => "cluster_id",
        }
    }
}

/// Byte-level durable storage. Every write is atomic and durable when it
/// returns `Ok`; a failed write changes nothing.
pub trait Backend: Debug + Send + Sync + 'static {
    /// Log entries with index in `start..end`, in index order.
    fn log_range(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, BackendError>;
    /// The entry with the highest index.
    fn log_last(&self) -> Result<Option<Vec<u8>>, BackendError>;
    /// Writes entries (index, bytes), replacing any at the same index.
    fn log_append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError>;
    /// Removes entries with index `>= from`.
    fn log_truncate(&self, from: u64) -> Result<(), BackendError>;
    /// Removes entries with index `<= upto` and records `purged` under
    /// [`MetaKey::Purged`], in one write.
    fn log_purge(&self, upto: u64, purged: Vec<u8>) -> Result<(), BackendError>;
    /// Reads a record.
    fn meta_get(&self, key: MetaKey) -> Result<Option<Vec<u8>>, BackendError>;
    /// Writes records, all in one write.
    fn meta_put(&self, records: Vec<(MetaKey, Vec<u8>)>) -> Result<(), BackendError>;
    /// Writes `bytes` under `key` unless `keep` says the record already
    /// there must stay; reading it and writing are one atomic write, so no
    /// other write lands in between. Returns whether it wrote.
    fn meta_put_unless(
        &self,
        key: MetaKey,
        bytes: Vec<u8>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, BackendError>;
    /// Writes records that can be rebuilt from the log (the applied state
    /// machine) without waiting for the disk. They become durable with the
    /// next durable write, and a durable write (the snapshot) always comes
    /// before the log entries they were built from are purged; after a
    /// crash, the committed entries past them are applied again. Backends
    /// without a cheaper write make it durable.
    fn meta_put_deferred(&self, records: Vec<(MetaKey, Vec<u8>)>) -> Result<(), BackendError> {
        self.meta_put(records)
    }
    /// Called before a Raft instance is rebuilt after a storage failure, so
    /// a backend can reopen its files.
    fn recover(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// redb

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The production backend: one redb file, every write transaction committed
/// with immediate durability.
#[derive(Debug)]
pub struct RedbBackend {
    path: std::path::PathBuf,
    // `None` only while `recover` reopens the file. redb holds a file lock,
    // so the old handle must be dropped before the new one opens.
    db: Mutex<Option<Database>>,
}

impl RedbBackend {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or its tables created.
    pub fn open(path: &Path) -> Result<RedbBackend, BackendError> {
        let db = open_db(path)?;
        Ok(RedbBackend {
            path: path.to_path_buf(),
            db: Mutex::new(Some(db)),
        })
    }

    fn db(&self) -> Result<MutexGuard<'_, Option<Database>>, BackendError> {
        // A panic while holding this lock cannot leave a half-written
        // transaction behind (redb rolls back uncommitted ones), so a
        // poisoned lock is still usable.
        Ok(self.db.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn write<F>(&self, f: F) -> Result<(), BackendError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    {
        self.write_with(redb::Durability::Immediate, f)
    }

    /// A write transaction; redb commits in order, so an `Immediate` commit
    /// also makes every earlier `None` commit durable.
    fn write_with<F>(&self, durability: redb::Durability, f: F) -> Result<(), BackendError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    {
        let guard = self.db()?;
        let db = guard
            .as_ref()
            .ok_or_else(|| BackendError("store is closed".into()))?;
        let mut txn = db.begin_write().map_err(redb::Error::from)?;
        txn.set_durability(durability).map_err(redb::Error::from)?;
        f(&txn)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    fn read<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        F: FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    {
        let guard = self.db()?;
        let db = guard
            .as_ref()
            .ok_or_else(|| BackendError("store is closed".into()))?;
        let txn = db.begin_read().map_err(redb::Error::from)?;
        Ok(f(&txn)?)
    }

    fn put_records(
        &self,
        durability: redb::Durability,
        records: Vec<(MetaKey, Vec<u8>)>,
    ) -> Result<(), BackendError> {
        self.write_with(durability, |txn| {
            let mut table = txn.open_table(META)?;
            for (key, bytes) in &records {
                table.insert(key.name(), bytes.as_slice())?;
            }
            Ok(())
        })
    }
}

fn open_db(path: &Path) -> Result<Database, BackendError> {
    let db = Database::create(path).map_err(redb::Error::from)?;
    // Create both tables up front so readers never meet a missing table.
    let txn = db.begin_write().map_err(redb::Error::from)?;
    txn.open_table(LOG).map_err(redb::Error::from)?;
    txn.open_table(META).map_err(redb::Error::from)?;
    txn.commit().map_err(redb::Error::from)?;
    Ok(db)
}

impl Backend for RedbBackend {
    fn log_range(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, BackendError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let table = txn.open_table(LOG)?;
            let mut out = Vec::new();
            for item in table.range(start..end)? {
                let (_, v) = item?;
                out.push(v.value().to_vec());
            }
            Ok(out)
        })
    }

    fn log_last(&self) -> Result<Option<Vec<u8>>, BackendError> {
        self.read(|txn| {
            let table = txn.open_table(LOG)?;
            Ok(table.last()?.map(|(_, v)| v.value().to_vec()))
        })
    }

    fn log_append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError> {
        self.write(|txn| {
            let mut table = txn.open_table(LOG)?;
            for (index, bytes) in &entries {
                table.insert(*index, bytes.as_slice())?;
            }
            Ok(())
        })
    }

    fn log_truncate(&self, from: u64) -> Result<(), BackendError> {
        self.write(|txn| {
            let mut table = txn.open_table(LOG)?;
            table.retain_in(from.., |_, _| false)?;
            Ok(())
        })
    }

    fn log_purge(&self, upto: u64, purged: Vec<u8>) -> Result<(), BackendError> {
        self.write(|txn| {
            let mut table = txn.open_table(LOG)?;
            table.retain_in(..=upto, |_, _| false)?;
            let mut meta = txn.open_table(META)?;
            meta.insert(MetaKey::Purged.name(), purged.as_slice())?;
            Ok(())
        })
    }

    fn meta_get(&self, key: MetaKey) -> Result<Option<Vec<u8>>, BackendError> {
        self.read(|txn| {
            let table = txn.open_table(META)?;
            Ok(table.get(key.name())?.map(|v| v.value().to_vec()))
        })
    }

    fn meta_put(&self, records: Vec<(MetaKey, Vec<u8>)>) -> Result<(), BackendError> {
        self.put_records(redb::Durability::Immediate, records)
    }

    fn meta_put_deferred(&self, records: Vec<(MetaKey, Vec<u8>)>) -> Result<(), BackendError> {
        self.put_records(redb::Durability::None, records)
    }

    fn meta_put_unless(
        &self,
        key: MetaKey,
        bytes: Vec<u8>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, BackendError> {
        let mut wrote = false;
        self.write(|txn| {
            let mut table = txn.open_table(META)?;
            let kept = table.get(key.name())?.is_some_and(|v| keep(v.value()));
            if !kept {
                table.insert(key.name(), bytes.as_slice())?;
                wrote = true;
            }
            Ok(())
        })?;
        Ok(wrote)
    }

    fn recover(&self) -> Result<(), BackendError> {
        let mut guard = self.db()?;
        *guard = None;
        *guard = Some(open_db(&self.path)?);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// memory

#[derive(Debug, Default)]
struct MemData {
    log: BTreeMap<u64, Vec<u8>>,
    meta: BTreeMap<MetaKey, Vec<u8>>,
}

/// An in-memory backend. Clones share one "disk": keep a clone, drop the
/// node, and start a new node on the clone to model a crash and restart.
#[derive(Clone, Debug, Default)]
pub struct MemBackend {
    data: Arc<Mutex<MemData>>,
    fail_writes: Arc<AtomicBool>,
}

impl MemBackend {
    /// An empty disk.
    pub fn new() -> MemBackend {
        MemBackend::default()
    }

    /// Makes every later write fail (true), like a full disk, or succeed
    /// again (false).
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// A copy of this disk as it is now, sharing nothing with it (a backup).
    pub fn copy(&self) -> MemBackend {
        let data = self.data();
        MemBackend {
            data: Arc::new(Mutex::new(MemData {
                log: data.log.clone(),
                meta: data.meta.clone(),
            })),
            fail_writes: Arc::default(),
        }
    }

    /// Replaces this disk's contents with `backup`'s (a restore).
    pub fn restore(&self, backup: &MemBackend) {
        let source = backup.copy();
        let source = source.data();
        let mut data = self.data();
        data.log = source.log.clone();
        data.meta = source.meta.clone();
    }

    /// Puts (`Some`) or removes (`None`) a record whatever the full-disk
    /// switch says: a simulation sets back what a crash did not keep.
    pub fn set_meta(&self, key: MetaKey, bytes: Option<Vec<u8>>) {
        let mut data = self.data();
        match bytes {
            Some(bytes) => data.meta.insert(key, bytes),
            None => data.meta.remove(&key),
        };
    }

    fn data(&self) -> MutexGuard<'_, MemData> {
        // Writes below replace whole values, so a panic elsewhere while the
        // lock was held cannot leave a torn record.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_write(&self) -> Result<(), BackendError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            Err(BackendError("no space left on device (injected)".into()))
        } else {
            Ok(())
        }
    }
}

impl Backend for MemBackend {
    fn log_range(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, BackendError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .data()
            .log
            .range(start..end)
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn log_last(&self) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.data().log.last_key_value().map(|(_, v)| v.clone()))
    }

    fn log_append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError> {
        self.check_write()?;
        let mut data = self.data();
        for (index, bytes) in entries {
            data.log.insert(index, bytes);
        }
        Ok(())
    }

    fn log_truncate(&self, from: u64) -> Result<(), BackendError> {
        self.check_write()?;
        let mut data = self.data();
        let _removed = data.log.split_off(&from);
        Ok(())
    }

    fn log_purge(&self, upto: u64, purged: Vec<u8>) -> Result<(), BackendError> {
        self.check_write()?;
        let mut data = self.data();
        let kept = match upto.checked_add(1) {
            Some(next) => data.log.split_off(&next),
            None => BTreeMap::new(),
        };
        data.log = kept;
        data.meta.insert(MetaKey::Purged, purged);
        Ok(())
    }

    fn meta_get(&self, key: MetaKey) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.data().meta.get(&key).cloned())
    }

    fn meta_put(&self, records: Vec<(MetaKey, Vec<u8>)>) -> Result<(), BackendError> {
        self.check_write()?;
        let mut data = self.data();
        for (key, bytes) in records {
            data.meta.insert(key, bytes);
        }
        Ok(())
    }

    fn meta_put_unless(
        &self,
        key: MetaKey,
        bytes: Vec<u8>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, BackendError> {
        self.check_write()?;
        let mut data = self.data();
        if data.meta.get(&key).is_some_and(|current| keep(current)) {
            return Ok(false);
        }
        data.meta.insert(key, bytes);
        Ok(true)
    }
}

// ---------------------------------------------------------------------------
// openraft log storage

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, BackendError> {
    serde_json::to_vec(value).map_err(|e| BackendError(format!("encode: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BackendError> {
    serde_json::from_slice(bytes).map_err(|e| BackendError(format!("decode: {e}")))
}

fn read_err(e: BackendError) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: BackendError) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

/// openraft's log storage over a [`Backend`].
#[derive(Clone, Debug)]
pub struct LogStore {
    backend: Arc<dyn Backend>,
}

impl LogStore {
    /// A log store on `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> LogStore {
        LogStore { backend }
    }

    fn meta<T: DeserializeOwned>(&self, key: MetaKey) -> Result<Option<T>, BackendError> {
        match self.backend.meta_get(key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.saturating_add(1),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => u64::MAX,
        };
        let raw = self.backend.log_range(start, end).map_err(read_err)?;
        let mut entries = Vec::with_capacity(raw.len());
        for bytes in &raw {
            entries.push(decode::<Entry>(bytes).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.meta(MetaKey::Purged).map_err(read_err)?;
        let last = match self.backend.log_last().map_err(read_err)? {
            Some(bytes) => Some(decode::<Entry>(&bytes).map_err(read_err)?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = encode(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.backend
            .meta_put(vec![(MetaKey::Vote, bytes)])
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta(MetaKey::Vote)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    /// Durable, unlike the applied state: a restarted node applies the log
    /// up to this id before it serves, so its watermarks are never below
    /// what it had applied. Written without a sync, a crash lost it and a
    /// restarted node served from an applied state one commit behind until
    /// the leader told it the commit index again (found by the whole-
    /// cluster restart test).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = encode(&committed).map_err(write_err)?;
        self.backend
            .meta_put(vec![(MetaKey::Committed, bytes)])
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .meta::<Option<LogId>>(MetaKey::Committed)
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = Vec::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(write_err)?;
            batch.push((entry.log_id.index, bytes));
        }
        // Acknowledge only after the write (and its fsync) has returned: an
        // acknowledged entry counts toward a commit, and a commit releases a
        // signature.
        let started = std::time::Instant::now();
        self.backend.log_append(batch).map_err(write_err)?;
        crate::metrics::global().stage(Stage::LogAppend, started.elapsed());
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.backend.log_truncate(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = encode(&log_id).map_err(write_err)?;
        self.backend
            .log_purge(log_id.index, bytes)
            .map_err(write_err)
    }
}
