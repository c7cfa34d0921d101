//! The rebuild supervisor. openraft stops a Raft instance for good on any
//! storage error; the supervisor notices (through the instance's metrics),
//! records the [`Fault`], and rebuilds the instance from the store with a
//! growing backoff, so a node whose disk filled up comes back on its own
//! once the disk has room.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::build::RaftBuilder;
use super::error::Error;
use super::instance::{Fault, Instance};
use super::store::MetaKey;

/// First and longest delay before rebuilding a failed Raft instance.
const REBUILD_BACKOFF_MIN: Duration = Duration::from_millis(100);
const REBUILD_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// An instance that fails again sooner than this after a rebuild keeps the
/// backoff growing (a disk that is still full).
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Rebuilds `instance` with `builder` whenever it stops with a fatal
/// error, until `stop` turns true.
pub(crate) async fn supervise(
    instance: Arc<Instance>,
    builder: RaftBuilder,
    mut stop: watch::Receiver<bool>,
) {
    let id = instance.id();
    let mut backoff = REBUILD_BACKOFF_MIN;
    let mut built_at = Instant::now();
    loop {
        let raft = instance.raft();
        let mut metrics = raft.metrics();
        let fault = loop {
            if *stop.borrow() {
                return;
            }
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                break Fault::Stopped(Box::new(fatal.clone()));
            }
            tokio::select! {
                _ = stop.changed() => {}
                changed = metrics.changed() => {
                    if changed.is_err() {
                        break Fault::Gone;
                    }
                }
            }
        };
        if *stop.borrow() {
            return;
        }
        tracing::error!(node_id = id, cause = %fault, "raft instance failed; refusing to sign until it is rebuilt");
        instance.set_fault(Some(fault));
        let _ = raft.shutdown().await;
        if built_at.elapsed() >= HEALTHY_AFTER {
            backoff = REBUILD_BACKOFF_MIN;
        }
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(REBUILD_BACKOFF_MAX);
            match rebuild(&builder).await {
                Ok(new_raft) => {
                    instance.replace(new_raft);
                    instance.set_fault(None);
                    built_at = Instant::now();
                    tracing::info!(node_id = id, "raft instance rebuilt from the store");
                    break;
                }
                Err(e) => {
                    tracing::warn!(node_id = id, cause = %e, "rebuild failed; retrying");
                    instance.set_fault(Some(Fault::Rebuild(Arc::new(e))));
                }
            }
        }
    }
}

/// Rebuilds only once a write goes through: until then the node keeps
/// refusing, rather than flapping between a fresh instance and the next
/// failed append.
async fn rebuild(builder: &RaftBuilder) -> Result<super::types::typ::Raft, Error> {
    let backend = &builder.backend;
    backend.recover()?;
    backend.meta_put(vec![(MetaKey::Probe, b"ok".to_vec())])?;
    builder.build().await
}
