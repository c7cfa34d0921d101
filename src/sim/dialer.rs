//! The signer node's end of privval in the simulation: the production
//! [`Supervisor`]s, one per validator node, that dial, serve and redial
//! with their backoff while the node can sign (the readiness `quorumkms
//! start` derives from the cluster, [`crate::node::track_quorum`]).
//!
//! Only the dial differs from production: [`SimDial`] opens plain
//! turmoil TCP instead of SecretConnection, whose blocking handshake and
//! bridge threads would leave the simulation's single, seeded thread.
//! It keeps production's timeouts: a turmoil connect completes only once
//! the validator accepts it (production's handshake waits for that), so
//! the handshake deadline bounds it; each read is bounded as the tcp
//! transport's socket reads are.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::grant::Granter;
use crate::privval::{Version, codec};
use crate::session::{ChainSigner, Context, Dial, Supervisor, SupervisorConfig};
use crate::transport::{self, Address, Backoff, Stream, Timeouts};

/// One validator node a signer node serves.
#[derive(Clone, Debug)]
pub struct ValidatorNode {
    /// The chain it runs.
    pub chain_id: String,
    /// Its host; also its name for height ownership.
    pub host: String,
    /// The port it listens on for signer nodes.
    pub port: u16,
}

/// What one signer node needs to serve the validator nodes.
pub struct Serving {
    /// Its grants.
    pub granter: Arc<dyn Granter>,
    /// How each chain signs (its key, or its shares in threshold mode),
    /// by chain id.
    pub signers: Vec<(String, ChainSigner)>,
    /// Every validator node, of every chain.
    pub validators: Vec<ValidatorNode>,
    /// The grant timeout: how long the node may go without a quorum
    /// leader before it drops its validators (as `quorumkms start`).
    pub grace: Duration,
    /// Seed of the supervisors' backoff jitter.
    pub seed: u64,
}

/// Runs one supervisor per validator node, as `quorumkms start` does for
/// its `[[validator]]` entries, until the host crashes.
pub async fn serve_validators(node: crate::cluster::Node, serving: Serving) {
    let (ready_tx, ready) = watch::channel(false);
    let (_stop_tx, stop) = watch::channel(false);
    let mut supervisors = Vec::new();
    for (i, validator) in serving.validators.iter().enumerate() {
        let Some((_, signer)) = serving
            .signers
            .iter()
            .find(|(chain, _)| *chain == validator.chain_id)
        else {
            continue;
        };
        let ctx = Context {
            chain_id: validator.chain_id.clone(),
            version: Version::V0_38,
            granter: serving.granter.clone(),
            signer: signer.clone(),
            max_height: None,
            origin: Some(validator.host.clone()),
            max_frame: codec::DEFAULT_MAX_FRAME,
        };
        let io_timeout = Duration::from_secs(5);
        let config = SupervisorConfig {
            addr: Address::Tcp {
                peer_id: None,
                host: validator.host.clone(),
                port: validator.port,
            },
            // Unused: the simulation dials without SecretConnection.
            identity: ed25519_consensus::SigningKey::from([0; 32]),
            // The defaults of a `[[validator]]` entry.
            timeouts: Timeouts {
                connect: io_timeout,
                read: io_timeout,
                write: io_timeout,
                handshake: transport::DEFAULT_HANDSHAKE_TIMEOUT,
            },
            reconnect: true,
        };
        let backoff = Backoff::with_seed(
            Backoff::DEFAULT_INITIAL,
            Backoff::DEFAULT_MAX,
            serving.seed.wrapping_add(i as u64),
        );
        let supervisor = Supervisor::new(ctx, config)
            .with_dial(Arc::new(SimDial))
            .with_backoff(backoff);
        supervisors.push(supervisor.run(ready.clone(), stop.clone()));
    }
    futures_util::future::join(
        crate::node::track_quorum(node, ready_tx, serving.grace),
        futures_util::future::join_all(supervisors),
    )
    .await;
}

/// Dials a validator node over turmoil's TCP.
pub struct SimDial;

impl Dial for SimDial {
    fn dial<'a>(
        &'a self,
        config: &'a SupervisorConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Stream>, transport::Error>> {
        Box::pin(async move {
            let address = config.addr.to_string();
            let Address::Tcp { host, port, .. } = &config.addr else {
                return Err(transport::Error::InvalidAddress {
                    address,
                    reason: "the simulation dials tcp only".into(),
                });
            };
            let deadline = config.timeouts.handshake;
            let connect = turmoil::net::TcpStream::connect((host.clone(), *port));
            let stream = tokio::time::timeout(deadline, connect)
                .await
                .map_err(|_| transport::Error::HandshakeTimeout {
                    address: address.clone(),
                    after: deadline,
                })?
                .map_err(|source| transport::Error::Connect { address, source })?;
            Ok(Box::new(ReadTimeout::new(stream, config.timeouts.read)) as Box<dyn Stream>)
        })
    }
}

/// A stream whose reads fail after `limit` without data, as the tcp
/// transport's socket reads do.
struct ReadTimeout<S> {
    inner: S,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> ReadTimeout<S> {
    fn new(inner: S, limit: Duration) -> ReadTimeout<S> {
        ReadTimeout {
            inner,
            limit,
            deadline: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(result) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            this.deadline = None;
            return Poll::Ready(result);
        }
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.deadline = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data from the validator for {limit:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
