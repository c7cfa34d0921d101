//! Keeps one validator node connected: dial, serve, redial.
//!
//! CometBFT holds one signer connection and leaves other signers waiting in
//! its accept queue, so the supervisor keeps exactly one outstanding dial per
//! address and never abandons it to dial again. It dials only while the
//! node may sign (`ready`): a cluster node without a quorum leader stops
//! dialling, so the validator is left to the nodes that can sign.

use std::time::Duration;

use ed25519_consensus::SigningKey;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Context, Ended, serve};
use crate::transport::{self, Address, Backoff, Timeouts};

/// How to reach one validator node.
#[derive(Clone)]
pub struct SupervisorConfig {
    /// The validator node's address.
    pub addr: Address,
    /// SecretConnection identity (tcp only).
    pub identity: SigningKey,
    /// Connect and I/O timeouts.
    pub timeouts: Timeouts,
    /// Redial after the connection ends.
    pub reconnect: bool,
}

/// Dials one validator node and serves it.
pub struct Supervisor {
    ctx: Context,
    config: SupervisorConfig,
}

impl Supervisor {
    /// A supervisor for one validator node.
    pub fn new(ctx: Context, config: SupervisorConfig) -> Supervisor {
        Supervisor { ctx, config }
    }

    /// Runs until `shutdown` turns true (or after one connection when
    /// `reconnect` is off). Dials only while `ready` is true.
    pub async fn run(self, mut ready: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) {
        let addr = &self.config.addr;
        let mut backoff = Backoff::default();
        loop {
            // Wait until this node may sign (or shutdown).
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                r = ready.wait_for(|ready| *ready) => if r.is_err() { return },
            }
            let dial = transport::connect(addr, &self.config.identity, &self.config.timeouts);
            let stream = tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                stream = dial => stream,
            };
            let outcome = match stream {
                Ok(stream) => {
                    info!(validator = %addr, chain_id = %self.ctx.chain_id, "connected");
                    backoff.reset();
                    let label = addr.to_string();
                    let metrics = crate::metrics::global();
                    metrics.validator(&self.ctx.chain_id, &label, true);
                    let ended = tokio::select! {
                        biased;
                        _ = shutdown.wait_for(|stop| *stop) => None,
                        // Leave the session when this node loses its quorum, so the
                        // validator fails over instead of waiting on us.
                        _ = ready.wait_for(|ready| !*ready) => Some(Ok(Ended::Unavailable("lost quorum".into()))),
                        ended = serve(&self.ctx, stream) => Some(ended.map_err(|e| e.to_string())),
                    };
                    metrics.validator(&self.ctx.chain_id, &label, false);
                    match ended {
                        Some(ended) => ended,
                        None => return,
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(Ended::Closed) => info!(validator = %addr, "validator closed the connection"),
                Ok(Ended::Unavailable(reason)) => {
                    warn!(validator = %addr, %reason, "cannot sign; dropped the connection")
                }
                Err(e) => warn!(validator = %addr, error = %e, "connection failed"),
            }
            if !self.config.reconnect {
                return;
            }
            let delay = backoff.next().unwrap_or(Duration::from_secs(1));
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}
