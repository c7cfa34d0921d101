//! Keeps one validator node connected: dial, serve, redial.
//!
//! CometBFT holds one signer connection and leaves other signers waiting in
//! its accept queue, so the supervisor keeps exactly one outstanding dial per
//! address and gives it up only at its handshake deadline (a day by
//! default; keepalive fails it sooner if the validator's host dies). It
//! dials only while the node may sign (`ready`): a cluster node without a
//! quorum leader stops dialling, so the validator is left to the nodes that
//! can sign.

use std::sync::Arc;
use std::time::Duration;

use ed25519_consensus::SigningKey;
use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Context, Ended, serve};
use crate::transport::{self, Address, Backoff, Stream, Timeouts};

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

/// Opens one connection to a validator node: [`transport::connect`] in
/// production; the simulation dials over its own network instead.
pub trait Dial: Send + Sync {
    /// Dials `config.addr` once, within the config's timeouts.
    fn dial<'a>(
        &'a self,
        config: &'a SupervisorConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Stream>, transport::Error>>;
}

/// The production [`Dial`]: TCP with SecretConnection, or a Unix socket.
struct TransportDial;

impl Dial for TransportDial {
    fn dial<'a>(
        &'a self,
        config: &'a SupervisorConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Stream>, transport::Error>> {
        Box::pin(transport::connect(
            &config.addr,
            &config.identity,
            &config.timeouts,
        ))
    }
}

/// Dials one validator node and serves it.
pub struct Supervisor {
    ctx: Context,
    config: SupervisorConfig,
    dial: Arc<dyn Dial>,
    backoff: Backoff,
}

impl Supervisor {
    /// A supervisor for one validator node.
    pub fn new(ctx: Context, config: SupervisorConfig) -> Supervisor {
        Supervisor {
            ctx,
            config,
            dial: Arc::new(TransportDial),
            backoff: Backoff::default(),
        }
    }

    /// Dials with `dial` instead of [`transport::connect`].
    #[must_use]
    pub fn with_dial(mut self, dial: Arc<dyn Dial>) -> Supervisor {
        self.dial = dial;
        self
    }

    /// Waits between dials by `backoff` (e.g. a seeded one, so a
    /// simulation replays) instead of the default.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Supervisor {
        self.backoff = backoff;
        self
    }

    /// Runs until `shutdown` turns true (or after one connection when
    /// `reconnect` is off). Dials only while `ready` is true.
    pub async fn run(self, mut ready: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) {
        let addr = &self.config.addr;
        let mut backoff = self.backoff.clone();
        loop {
            // Wait until this node may sign (or shutdown).
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                r = ready.wait_for(|ready| *ready) => if r.is_err() { return },
            }
            let dial = self.dial.dial(&self.config);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::grant::LocalGranter;
    use crate::keys::softsign::SoftSigner;
    use crate::privval::Version;
    use crate::privval::codec::DEFAULT_MAX_FRAME;

    /// A validator address that accepts TCP and never speaks: every dial's
    /// handshake runs into its deadline, and the supervisor dials again.
    #[tokio::test]
    async fn a_handshake_past_its_deadline_is_dialled_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ctx = Context {
            chain_id: "test-chain".into(),
            version: Version::V0_38,
            granter: Arc::new(LocalGranter::new()),
            signer: crate::session::ChainSigner::Key(Arc::new(SoftSigner::from_seed([1; 32]))),
            max_height: None,
            origin: None,
            max_frame: DEFAULT_MAX_FRAME,
        };
        let config = SupervisorConfig {
            addr: Address::Tcp {
                peer_id: None,
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            identity: SigningKey::from([2; 32]),
            timeouts: Timeouts {
                handshake: Duration::from_millis(200),
                ..Timeouts::default()
            },
            reconnect: true,
        };
        let (_ready, ready_rx) = watch::channel(true);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(Supervisor::new(ctx, config).run(ready_rx, stop_rx));
        // Hold every accepted connection open and silent: a second dial
        // comes only if the first was given up.
        let mut held = Vec::new();
        for dial in 1..=2 {
            let (stream, _) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
                .await
                .unwrap_or_else(|_| panic!("dial {dial} never came"))
                .expect("accept");
            held.push(stream);
        }
        stop.send(true).expect("supervisor running");
        task.await.expect("supervisor task");
    }
}
