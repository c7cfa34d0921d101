//! `cluster init`: the new cluster's id for every configured peer, then
//! Raft.
//!
//! Run once, on one node, once every configured node runs with an empty
//! store. The node makes a random cluster id (or keeps the one an earlier,
//! interrupted `cluster init` left it), asks every peer whether it would
//! take it (each must have an empty store and no other id, and must not
//! have been started with `--join`), keeps it itself, gives it to every
//! peer, and only then bootstraps Raft with every peer as a voter. Every
//! peer must answer: one that missed the id would refuse the cluster's
//! calls for good. If a peer already runs Raft in this cluster, the cluster
//! exists and nothing is done.

use std::sync::Arc;
use std::time::Duration;

use super::config::{Config, Peer};
use super::error::Error;
use super::identity::{AdoptError, ClusterId};
use super::instance::Instance;
use super::network::{self, CallError, Channels};
use super::types::NodeId;

/// How long a peer may take to answer an offer of the cluster id.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why `cluster init` did not bootstrap the cluster.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// This node was started with `--join`.
    #[error(
        "node {node_id} was started with --join: run `cluster init` on a node of the new cluster"
    )]
    Joining {
        /// This node.
        node_id: NodeId,
    },
    /// A peer did not answer.
    #[error(
        "peer {id} at {addr} does not answer ({source}); every configured node must run for `cluster init`"
    )]
    PeerUnreachable {
        /// The peer.
        id: NodeId,
        /// Its address.
        addr: String,
        /// Why.
        source: CallError,
    },
    /// A peer will not take the id: it belongs to another cluster or was
    /// started with `--join`.
    #[error("peer {id} at {addr} refused: {reason}")]
    PeerRefused {
        /// The peer.
        id: NodeId,
        /// Its address.
        addr: String,
        /// Its answer.
        reason: String,
    },
    /// This node will not take the id.
    #[error("{0}")]
    Adopt(#[from] AdoptError),
    /// Raft could not be bootstrapped.
    #[error("{0}")]
    Raft(#[from] Error),
}

impl BootstrapError {
    /// Whether trying again later may succeed (a peer still starting, a
    /// disk that failed once).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BootstrapError::PeerUnreachable { .. }
                | BootstrapError::Adopt(AdoptError::Storage { .. })
        )
    }
}

/// What `cluster init` works with: this node, its channels to the peers
/// and its config (the peers).
#[derive(Clone)]
pub(crate) struct Bootstrap {
    instance: Arc<Instance>,
    channels: Channels,
    config: Config,
}

impl Bootstrap {
    /// Bootstraps through `instance`, reaching the peers of `config` over
    /// `channels`.
    pub(crate) fn new(instance: Arc<Instance>, channels: Channels, config: Config) -> Bootstrap {
        Bootstrap {
            instance,
            channels,
            config,
        }
    }

    /// Offers `id` to every other configured peer; `dry_run` only asks.
    /// Returns whether one of them already runs Raft in cluster `id`.
    async fn offer(&self, id: ClusterId, dry_run: bool) -> Result<bool, BootstrapError> {
        let mut formed = false;
        for peer in self.others() {
            match network::adopt(&self.channels, &peer.addr, ADOPT_TIMEOUT, id, dry_run).await {
                Ok(initialized) => formed |= initialized,
                Err(CallError::Failed {
                    code: tonic::Code::FailedPrecondition,
                    message,
                    ..
                }) => {
                    return Err(BootstrapError::PeerRefused {
                        id: peer.id,
                        addr: peer.addr.clone(),
                        reason: message,
                    });
                }
                Err(source) => {
                    return Err(BootstrapError::PeerUnreachable {
                        id: peer.id,
                        addr: peer.addr.clone(),
                        source,
                    });
                }
            }
        }
        Ok(formed)
    }

    fn others(&self) -> impl Iterator<Item = &Peer> {
        self.config
            .peers
            .iter()
            .filter(|peer| peer.id != self.config.node_id)
    }

    /// Bootstraps a new cluster with every configured peer as a voter (see
    /// the module docs). Returns `false`, changing nothing, when the
    /// cluster exists already.
    ///
    /// # Errors
    ///
    /// This node was started with `--join`, a peer does not answer or
    /// refuses, or Raft failed.
    pub(crate) async fn initialize(&self) -> Result<bool, BootstrapError> {
        let identity = self.instance.identity();
        let node_id = self.config.node_id;
        if identity.joining() {
            return Err(BootstrapError::Joining { node_id });
        }
        let initialized = self
            .instance
            .raft()
            .is_initialized()
            .await
            .map_err(|e| Error::Raft(Box::new(e)))?;
        if initialized {
            return Ok(false);
        }
        let id = identity.cluster_id().unwrap_or_else(ClusterId::random);
        if self.offer(id, true).await? {
            return Ok(false);
        }
        identity.adopt(id, false)?;
        self.offer(id, false).await?;
        let formed = self.instance.initialize(&self.config.peers).await?;
        tracing::info!(node_id, cluster_id = %id, "cluster initialized");
        Ok(formed)
    }
}
