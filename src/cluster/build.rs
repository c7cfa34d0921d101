//! Building a node's Raft instance: openraft's settings from the config,
//! the store, and a [`RaftBuilder`] that can build the instance again from
//! the same store after a storage fault.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;
use tokio::sync::watch;

use super::config::Config;
use super::deps::StoreChoice;
use super::error::Error;
use super::network::{Channels, NetworkFactory};
use super::state_machine::{AppliedState, StateMachine};
use super::store::{Backend, BackendError, LogStore};
use super::types::NodeId;
use super::types::typ::Raft;

/// Entries between snapshots. Snapshots are a few hundred bytes, so this
/// mostly bounds how much log a restarted node replays.
const SNAPSHOT_EVERY: u64 = 500;
/// Log entries kept behind a snapshot, for lagging followers.
const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 50;

// The applied state is written every `APPLIED_WRITE_EVERY` entries. A node
// of an earlier version starts from that record alone (not the newer of it
// and the snapshot), so after a downgrade it must still find the log past
// it: the log is purged no further than this far behind a snapshot.
const _: () = assert!(super::state_machine::APPLIED_WRITE_EVERY < LOG_KEPT_BEHIND_SNAPSHOT);

/// openraft's settings for `config`.
///
/// # Errors
///
/// openraft rejects the timing.
pub(crate) fn raft_config(config: &Config) -> Result<openraft::Config, Error> {
    let raft_config = openraft::Config {
        cluster_name: "quorumkms".into(),
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        heartbeat_interval: config.heartbeat_interval_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        max_in_snapshot_log_to_keep: LOG_KEPT_BEHIND_SNAPSHOT,
        ..Default::default()
    };
    raft_config
        .validate()
        .map_err(|e| Error::RaftConfig(Box::new(e)))
}

/// The store `choice` names for a node with `config`.
///
/// # Errors
///
/// The data directory cannot be created or the store cannot be opened.
pub(crate) async fn open_store(
    config: &Config,
    choice: StoreChoice,
) -> Result<Arc<dyn Backend>, Error> {
    match choice {
        StoreChoice::Disk => {
            tokio::fs::create_dir_all(&config.data_dir)
                .await
                .map_err(|source| Error::DataDir {
                    path: config.data_dir.clone(),
                    source,
                })?;
            Ok(open_disk_store(&config.data_dir)?)
        }
        StoreChoice::Backend(backend) => Ok(backend),
    }
}

/// The production store in `data_dir`: redb by default, sled in a build
/// with the `sled` feature (so the whole test suite can run on either).
fn open_disk_store(data_dir: &Path) -> Result<Arc<dyn Backend>, BackendError> {
    #[cfg(feature = "sled")]
    {
        let backend = super::store_sled::SledBackend::open(&data_dir.join("raft.sled"))?;
        Ok(Arc::new(backend))
    }
    #[cfg(not(feature = "sled"))]
    {
        Ok(Arc::new(super::store::RedbBackend::open(
            &data_dir.join("raft.redb"),
        )?))
    }
}

/// Everything a Raft instance is built from; kept so the supervisor can
/// build it again from the store.
#[derive(Clone)]
pub(crate) struct RaftBuilder {
    /// This node's Raft id.
    pub(crate) id: NodeId,
    /// openraft's settings.
    pub(crate) raft_config: Arc<openraft::Config>,
    /// Channels to the other nodes.
    pub(crate) channels: Channels,
    /// The log, vote and state.
    pub(crate) backend: Arc<dyn Backend>,
    /// Where the state machine publishes what it applied.
    pub(crate) applied: watch::Sender<Arc<AppliedState>>,
}

impl RaftBuilder {
    /// The election timeout's upper bound: how long a leader's lease lasts.
    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.raft_config.election_timeout_max)
    }

    /// Builds a Raft instance from the store.
    ///
    /// # Errors
    ///
    /// The store cannot be read, or Raft does not start.
    pub(crate) async fn build(&self) -> Result<Raft, Error> {
        let log = LogStore::new(self.backend.clone());
        let sm = StateMachine::open(self.backend.clone(), self.applied.clone())?;
        Raft::new(
            self.id,
            self.raft_config.clone(),
            NetworkFactory::new(self.channels.clone(), self.applied.subscribe()),
            log,
            sm,
        )
        .await
        .map_err(|e| Error::Raft(Box::new(e)))
    }
}
