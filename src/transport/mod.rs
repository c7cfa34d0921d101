//! Dialling validators: TCP with SecretConnection, or a Unix socket.
//!
//! [`connect`] dials once and returns an authenticated byte stream; the
//! privval framing on top of it belongs to `privval`, and the reconnect loop
//! (the only code that sleeps between attempts, using [`Backoff`]) to the
//! caller. Nothing here knows about chains, watermarks or keys other than
//! the connection identity.

mod address;
mod backoff;
pub(crate) mod keepalive;
mod secret_connection;

use std::io;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

pub use address::Address;
pub use backoff::Backoff;
pub use keepalive::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES, set_keepalive};

/// Transport errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address in the config could not be parsed.
    #[error("invalid validator address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as written.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A timeout of zero was given (the OS treats it as "no timeout").
    #[error("invalid timeouts: {0} must be greater than zero")]
    InvalidTimeout(&'static str),
    /// The TCP or Unix connect failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The validator address.
        address: String,
        /// The OS error.
        source: io::Error,
    },
    /// The connect did not finish within the connect timeout.
    #[error("connecting to {address} timed out after {after:?}")]
    ConnectTimeout {
        /// The validator address.
        address: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The SecretConnection handshake did not finish within the handshake
    /// deadline: the validator never answered, or never accepted the
    /// connection. The socket is closed; the caller may dial again.
    #[error(
        "secret connection handshake with {address} did not finish within {after:?} \
         (the validator accepted no connection from us, or never answered)"
    )]
    HandshakeTimeout {
        /// The validator address.
        address: String,
        /// The deadline that expired.
        after: Duration,
    },
    /// The SecretConnection handshake failed.
    #[error("secret connection handshake with {address} failed: {reason}")]
    Handshake {
        /// The validator address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The validator's node id is not the one in the address.
    #[error("peer id mismatch for {address}: expected {expected}, got {actual}")]
    PeerMismatch {
        /// The validator address.
        address: String,
        /// The node id from the address, hex.
        expected: String,
        /// The node id the validator proved, hex.
        actual: String,
    },
    /// A socket operation failed while setting up the connection.
    #[error("i/o error on {address}: {source}")]
    Io {
        /// The validator address.
        address: String,
        /// The OS error.
        source: io::Error,
    },
}

/// A connected, authenticated byte stream to a validator.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connection timeouts.
///
/// For TCP, `read` and `write` are socket timeouts on the SecretConnection:
/// a validator silent for longer than `read` ends the connection (CometBFT
/// pings every few seconds). A Unix stream is plain tokio I/O; its reads and
/// writes are not bounded here.
///
/// `handshake` bounds the whole SecretConnection handshake. CometBFT
/// accepts one signer connection at a time and leaves the other dials in
/// its accept queue until the active one is dropped, which can be days, so
/// a dial that has not been answered yet is usually waiting its turn. Each
/// dial given up on stays in that queue and costs the validator a failed
/// accept (one ping interval, about 3 s) when it next needs a signer. So
/// the default is long: it is a last resort against a peer that accepts
/// and never speaks. A validator host that dies without a reset is noticed
/// sooner by TCP keepalive ([`set_keepalive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Bound on the TCP or Unix connect.
    pub connect: Duration,
    /// Bound on each blocking socket read (TCP).
    pub read: Duration,
    /// Bound on each blocking socket write (TCP).
    pub write: Duration,
    /// Bound on the SecretConnection handshake, from connected until the
    /// validator has proven its key (TCP).
    pub handshake: Duration,
}

/// The default [`Timeouts::handshake`]: a day.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(5),
            write: Duration::from_secs(5),
            handshake: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl Timeouts {
    fn validate(&self) -> Result<(), Error> {
        if self.connect.is_zero() {
            return Err(Error::InvalidTimeout("connect"));
        }
        if self.read.is_zero() {
            return Err(Error::InvalidTimeout("read"));
        }
        if self.write.is_zero() {
            return Err(Error::InvalidTimeout("write"));
        }
        if self.handshake.is_zero() {
            return Err(Error::InvalidTimeout("handshake"));
        }
        Ok(())
    }
}

/// The node id of an Ed25519 public key: `sha256(public_key)[..20]`.
pub fn node_id(public_key: &[u8; 32]) -> [u8; 20] {
    let digest = Sha256::digest(public_key);
    let mut id = [0u8; 20];
    id.copy_from_slice(&digest[..20]);
    id
}

/// Dials `addr` once.
///
/// TCP: connect (bounded by `timeouts.connect`), then a SecretConnection
/// handshake (protocol v0.34, also used by CometBFT 0.37/0.38/1.0) with
/// `identity`, the signer's `kms-identity` key, bounded by
/// `timeouts.handshake`. The socket has TCP keepalive on. When the address
/// names a node id, the validator must prove that id (compared in constant
/// time); otherwise a warning is logged. Unix: a plaintext connection.
///
/// Dropping the returned future, or the handshake deadline, closes the
/// socket, which ends the thread running the handshake.
///
/// # Errors
///
/// [`Error::PeerMismatch`] when the validator is not the expected node,
/// [`Error::HandshakeTimeout`] when the handshake does not finish in time;
/// the other variants for connect, handshake and socket failures.
pub async fn connect(
    addr: &Address,
    identity: &ed25519_consensus::SigningKey,
    timeouts: &Timeouts,
) -> Result<Box<dyn Stream>, Error> {
    timeouts.validate()?;
    let address = addr.to_string();
    match addr {
        Address::Tcp {
            peer_id,
            host,
            port,
        } => {
            let tcp = tokio::time::timeout(
                timeouts.connect,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
            .map_err(|_| Error::ConnectTimeout {
                address: address.clone(),
                after: timeouts.connect,
            })?
            .map_err(|source| Error::Connect {
                address: address.clone(),
                source,
            })?;
            let (stream, _) =
                secret_connection::establish(address, tcp, *peer_id, true, identity, timeouts)
                    .await?;
            Ok(Box::new(stream))
        }
        Address::Unix(path) => {
            let stream =
                tokio::time::timeout(timeouts.connect, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|_| Error::ConnectTimeout {
                        address: address.clone(),
                        after: timeouts.connect,
                    })?
                    .map_err(|source| Error::Connect { address, source })?;
            Ok(Box::new(stream))
        }
    }
}

/// The listening side of a SecretConnection, for tools and tests that play
/// the validator: handshakes over an accepted socket with `identity` and
/// returns the stream and the remote's node id.
///
/// # Errors
///
/// Handshake and socket failures.
pub async fn accept_secret_connection(
    tcp: tokio::net::TcpStream,
    identity: &ed25519_consensus::SigningKey,
    timeouts: &Timeouts,
) -> Result<(Box<dyn Stream>, [u8; 20]), Error> {
    timeouts.validate()?;
    let address = tcp
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    let (stream, peer) =
        secret_connection::establish(address, tcp, None, false, identity, timeouts).await?;
    Ok((Box::new(stream), peer))
}
