//! The sled backend, behind the `sled` cargo feature.
//!
//! redb is the default store; sled 0.34 is kept as an alternative because
//! the original plan named it, and it passes the same storage tests. It has
//! had no stable release since 2021 and has open reports of corruption
//! after abrupt stops, so prefer redb.
//!
//! Every write ends with `flush`, which fsyncs, before it returns: a write
//! that returned `Ok` survives a crash. Writes that touch both trees run in
//! one sled transaction.

use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Batch, Transactional};

use super::store::{Backend, BackendError, MetaKey};

/// Log entries and records in one sled database.
#[derive(Debug)]
pub struct SledBackend {
    path: PathBuf,
    // sled refuses every operation after an I/O error, so `recover` drops
    // the database and opens it again.
    open: RwLock<Option<Open>>,
}

#[derive(Debug)]
struct Open {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

impl Open {
    fn at(path: &Path) -> Result<Open, BackendError> {
        let db = sled::open(path).map_err(err)?;
        let log = db.open_tree("log").map_err(err)?;
        let meta = db.open_tree("meta").map_err(err)?;
        Ok(Open { db, log, meta })
    }

    fn flush(&self) -> Result<(), BackendError> {
        self.db.flush().map(|_| ()).map_err(err)
    }

    fn keys_in(
        &self,
        range: impl std::ops::RangeBounds<[u8; 8]>,
    ) -> Result<Vec<sled::IVec>, BackendError> {
        self.log
            .range(range)
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)
    }
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

fn tx_err(e: TransactionError<BackendError>) -> BackendError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => err(e),
    }
}

/// Log keys are big-endian so sled's byte order is index order.
fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl SledBackend {
    /// Opens (or creates) the database directory at `path`.
    ///
    /// # Errors
    ///
    /// When sled cannot open it.
    pub fn open(path: &Path) -> Result<SledBackend, BackendError> {
        Ok(SledBackend {
            path: path.to_path_buf(),
            open: RwLock::new(Some(Open::at(path)?)),
        })
    }

    fn get(&self) -> Result<OpenGuard<'_>, BackendError> {
        let guard = self.open.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err(BackendError("store is closed".into()));
        }
        Ok(OpenGuard(guard))
    }
}

struct OpenGuard<'a>(RwLockReadGuard<'a, Option<Open>>);

impl std::ops::Deref for OpenGuard<'_> {
    type Target = Open;

    fn deref(&self) -> &Open {
        // `get` checked that the database is open.
        self.0.as_ref().expect("checked open")
    }
}

impl Backend for SledBackend {
    fn log_range(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, BackendError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.get()?
            .log
            .range(key(start)..key(end))
            .values()
            .map(|v| v.map(|v| v.to_vec()).map_err(err))
            .collect()
    }

    fn log_last(&self) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .get()?
            .log
            .last()
            .map_err(err)?
            .map(|(_, v)| v.to_vec()))
    }

    fn log_append(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), BackendError> {
        let mut batch = Batch::default();
        for (index, bytes) in entries {
            batch.insert(&key(index), bytes);
        }
        let open = self.get()?;
        open.log.apply_batch(batch).map_err(err)?;
        open.flush()
    }

    fn log_truncate(&self, from: u64) -> Result<(), BackendError> {
        let open = self.get()?;
        let mut batch = Batch::default();
        for k in open.keys_in(key(from)..)? {
            batch.remove(k);
        }
        open.log.apply_batch(batch).map_err(err)?;
        open.flush()
    }

    fn log_purge(&self, upto: u64, purged: Vec<u8>) -> Result<(), BackendError> {
        let open = self.get()?;
        let doomed = open.keys_in(..=key(upto))?;
        (&open.log, &open.meta)
            .transaction(|(log, meta)| {
                for k in &doomed {
                    log.remove(k)?;
                }
                meta.insert(MetaKey::Purged.name(), purged.as_slice())?;
                Ok::<_, ConflictableTransactionError<BackendError>>(())
            })
            .map_err(tx_err)?;
        open.flush()
    }

    fn meta_get(&self, key: MetaKey) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .get()?
            .meta
            .get(key.name())
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn meta_put(&self, records: Vec<(MetaKey, Vec<u8>)>) -> Result<(), BackendError> {
        let mut batch = Batch::default();
        for (key, bytes) in records {
            batch.insert(key.name(), bytes);
        }
        let open = self.get()?;
        open.meta.apply_batch(batch).map_err(err)?;
        open.flush()
    }

    fn meta_put_unless(
        &self,
        key: MetaKey,
        bytes: Vec<u8>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, BackendError> {
        let open = self.get()?;
        let wrote = open
            .meta
            .transaction(|meta| {
                if meta
                    .get(key.name())?
                    .is_some_and(|current| keep(current.as_ref()))
                {
                    return Ok(false);
                }
                meta.insert(key.name(), bytes.as_slice())?;
                Ok::<_, ConflictableTransactionError<BackendError>>(true)
            })
            .map_err(tx_err)?;
        open.flush()?;
        Ok(wrote)
    }

    fn recover(&self) -> Result<(), BackendError> {
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        *open = None;
        *open = Some(Open::at(&self.path)?);
        Ok(())
    }
}
