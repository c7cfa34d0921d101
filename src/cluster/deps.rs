//! What a node is built from besides its config: the store and the
//! transport, the seams tests and the simulation replace.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::config::Config;
use super::error::Error;
use super::keygen::ShareSlot;
use super::store::Backend;
use super::tls::TlsTransport;
use super::transport::{TcpTransport, Transport};
use crate::keys::loss::KeyLoss;
use crate::threshold::Participant;

/// Which store a node runs on.
#[derive(Clone, Debug, Default)]
pub enum StoreChoice {
    /// The production store under the config's `data_dir`: `raft.redb`,
    /// or `raft.sled` in a build with the `sled` feature.
    #[default]
    Disk,
    /// A backend the caller built (tests, simulation).
    Backend(Arc<dyn Backend>),
}

/// What a node is built from besides its config: the seams.
#[derive(Clone)]
pub struct Deps {
    /// Where the log, vote and state live.
    pub store: StoreChoice,
    /// How nodes reach each other.
    pub transport: Arc<dyn Transport>,
    /// The switch the admin API flips to simulate the loss of the node's
    /// keys; whoever assembles the node wraps its keys in the same switch.
    pub key_loss: KeyLoss,
    /// Started with `--join`: with an empty store, the node joins a
    /// running cluster as a learner (see [`identity`](super::identity)).
    pub join: bool,
    /// The wall clock a grant records as its time (ms since the Unix
    /// epoch), for operators; `None` records none (the simulation, whose
    /// applied state must not depend on the host's clock).
    pub clock: Option<fn() -> u64>,
    /// This node's shares of threshold-mode chains (none by default).
    pub participant: Arc<Participant>,
    /// Where each threshold-mode chain's share goes when a key generation
    /// makes one (none by default).
    pub share_slots: BTreeMap<String, ShareSlot>,
}

/// The system clock in milliseconds since the Unix epoch (0 before it).
pub fn system_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Default for Deps {
    fn default() -> Deps {
        Deps {
            store: StoreChoice::Disk,
            transport: Arc::new(TcpTransport),
            key_loss: KeyLoss::default(),
            join: false,
            clock: Some(system_clock_ms),
            participant: Arc::new(Participant::new([])),
            share_slots: BTreeMap::new(),
        }
    }
}

impl Deps {
    /// The production seams for `config`: redb, and mutual TLS when
    /// `tls` is set (plaintext TCP otherwise, which the config allows only
    /// on loopback or with `insecure_plaintext`; either logs a warning),
    /// with `key_loss` as the node's key-loss switch.
    ///
    /// # Errors
    ///
    /// The TLS files cannot be read or used.
    pub fn for_config(config: &Config, key_loss: KeyLoss) -> Result<Deps, Error> {
        let transport: Arc<dyn Transport> = match &config.tls {
            Some(tls) => Arc::new(TlsTransport::for_node(tls, config.node_id)?),
            None if config.insecure_plaintext => {
                tracing::warn!(
                    listen = %config.listen,
                    "cluster.insecure_plaintext is set: the cluster port is plaintext and \
                     unauthenticated; anyone who reaches it can change the watermark"
                );
                Arc::new(TcpTransport)
            }
            None => {
                tracing::warn!(
                    listen = %config.listen,
                    "cluster.tls is not set: the cluster port is plaintext on loopback, \
                     open to every process on this host"
                );
                Arc::new(TcpTransport)
            }
        };
        Ok(Deps {
            store: StoreChoice::Disk,
            transport,
            key_loss,
            join: false,
            clock: Some(system_clock_ms),
            participant: Arc::new(Participant::new([])),
            share_slots: BTreeMap::new(),
        })
    }
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("store", &self.store)
            .field("join", &self.join)
            .finish_non_exhaustive()
    }
}
