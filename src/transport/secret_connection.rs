//! TCP + SecretConnection, bridged from blocking `std::io` to tokio.
//!
//! tendermint-p2p's `SecretConnection` is blocking. After the handshake (on
//! a blocking task) the connection is split into its send and receive
//! halves, each driven by one dedicated thread. The async side gets one end
//! of a `tokio::io::duplex` pipe; the threads hold the other end.
//!
//! Lifetimes, which the tests check:
//! - the handshake misses its deadline, or the future waiting for it is
//!   dropped: the socket is shut down, which ends the handshake's thread;
//! - the socket dies (EOF, error, timeout): the receive thread ends and the
//!   async side reads EOF, or the recorded error;
//! - the async side is dropped: the send thread drains what was written,
//!   shuts the socket down and ends, which also wakes and ends the receive
//!   thread. No thread outlives the connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tendermint_p2p::secret_connection::{DATA_MAX_SIZE, SecretConnection, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::runtime::Handle;

use super::{Error, Timeouts, node_id};

/// Bytes buffered between the async side and each thread.
const PIPE_CAPACITY: usize = 64 * 1024;

/// The first error a bridge thread saw, replayed to the async side.
type Failure = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

fn record(failure: &Failure, err: &io::Error) {
    if let Ok(mut slot) = failure.lock()
        && slot.is_none()
    {
        *slot = Some((err.kind(), err.to_string()));
    }
}

fn recorded(failure: &Failure) -> Option<io::Error> {
    failure.lock().ok().and_then(|slot| {
        slot.as_ref()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    })
}

/// The connected socket as the blocking handshake and the bridge threads
/// use it: blocking, no read timeout yet, bounded writes, no Nagle, TCP
/// keepalive.
fn blocking_socket(tcp: tokio::net::TcpStream, timeouts: &Timeouts) -> io::Result<TcpStream> {
    let std_tcp = tcp.into_std()?;
    std_tcp.set_nonblocking(false)?;
    // No read timeout during the handshake: a validator leaves signers it
    // is not using queued, unaccepted, until its active signer is dropped.
    // Giving up on a queued connection only to dial again would leave a
    // stale entry in its accept queue, so the whole handshake has one
    // generous deadline instead, and keepalive notices a dead host.
    std_tcp.set_read_timeout(None)?;
    std_tcp.set_write_timeout(Some(timeouts.write))?;
    std_tcp.set_nodelay(true)?;
    super::set_keepalive(&std_tcp)?;
    Ok(std_tcp)
}

/// Shuts a socket down when dropped unless disarmed: an abandoned
/// handshake (deadline passed, or its future dropped) must not leave the
/// thread running it blocked on the socket.
struct ShutdownOnDrop(Option<TcpStream>);

impl ShutdownOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(socket) = self.0.take() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Handshakes over a connected TCP stream and starts the bridge threads.
///
/// Runs the blocking handshake on tokio's blocking pool, within
/// `timeouts.handshake`. After it, the socket's read and write timeouts
/// bound every read and write.
pub(super) async fn establish(
    address: String,
    tcp: tokio::net::TcpStream,
    expected_peer: Option<[u8; 20]>,
    dialer: bool,
    identity: &ed25519_consensus::SigningKey,
    timeouts: &Timeouts,
) -> Result<(Bridged, [u8; 20]), Error> {
    let io_err = |source| Error::Io {
        address: address.clone(),
        source,
    };
    let std_tcp = blocking_socket(tcp, timeouts).map_err(io_err)?;
    let closer = std_tcp.try_clone().map_err(io_err)?;
    let abandon = ShutdownOnDrop(Some(std_tcp.try_clone().map_err(io_err)?));

    let identity = identity.clone();
    let read_timeout = timeouts.read;
    let handle = Handle::current();
    let addr = address.clone();
    let handshake = tokio::task::spawn_blocking(move || {
        let sc = SecretConnection::new(std_tcp, identity, Version::V0_34).map_err(|e| {
            Error::Handshake {
                address: addr.clone(),
                reason: e.to_string(),
            }
        })?;
        let remote = sc
            .remote_pubkey()
            .ed25519()
            .ok_or_else(|| Error::Handshake {
                address: addr.clone(),
                reason: "remote key is not ed25519".into(),
            })?;
        let actual = node_id(remote.as_bytes());
        match expected_peer {
            // Dropping `sc` closes the socket.
            Some(expected) if !bool::from(expected.ct_eq(&actual)) => {
                return Err(Error::PeerMismatch {
                    address: addr,
                    expected: hex::encode(expected),
                    actual: hex::encode(actual),
                });
            }
            Some(_) => {}
            None if dialer => tracing::warn!(
                validator = %addr,
                peer_id = %hex::encode(actual),
                "validator peer id is not verified: add NODE_ID@ to the address"
            ),
            None => {}
        }
        tracing::debug!(validator = %addr, peer_id = %hex::encode(actual), "secret connection established");
        closer
            .set_read_timeout(Some(read_timeout))
            .map_err(|source| Error::Io {
                address: addr.clone(),
                source,
            })?;
        let bridged = Bridged::start(sc, closer, handle).map_err(|source| Error::Io {
            address: addr,
            source,
        })?;
        Ok((bridged, actual))
    });
    // On the deadline `abandon` shuts the socket down as it drops, which
    // fails the blocked handshake and ends its thread. Should the handshake
    // finish at that very moment, its result is dropped with the task's
    // output, and dropping a `Bridged` closes the connection too.
    let joined = tokio::time::timeout(timeouts.handshake, handshake)
        .await
        .map_err(|_| Error::HandshakeTimeout {
            address: address.clone(),
            after: timeouts.handshake,
        })?;
    abandon.disarm();
    joined.map_err(|e| Error::Handshake {
        address,
        reason: format!("handshake task failed: {e}"),
    })?
}

/// The async end of a SecretConnection bridge.
#[derive(Debug)]
pub(super) struct Bridged {
    pipe: DuplexStream,
    failure: Failure,
    dropped: Arc<AtomicBool>,
}

impl Bridged {
    fn start(
        sc: SecretConnection<TcpStream>,
        closer: TcpStream,
        handle: Handle,
    ) -> io::Result<Self> {
        let (mut sender, mut receiver) = sc
            .split()
            .map_err(|e| io::Error::other(format!("cannot split secret connection: {e}")))?;
        let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
        let (mut from_async, mut to_async) = tokio::io::split(theirs);
        let failure: Failure = Arc::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let closer_for_reader = closer.try_clone()?;

        // Receive thread: socket -> async side.
        let reader_failure = failure.clone();
        let reader_handle = handle.clone();
        std::thread::Builder::new()
            .name("qkms-sc-read".into())
            .spawn(move || {
                let mut buf = [0u8; DATA_MAX_SIZE];
                loop {
                    match receiver.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if reader_handle
                                .block_on(to_async.write_all(&buf[..n]))
                                .is_err()
                            {
                                // The async side is gone.
                                break;
                            }
                        }
                        // read_exact on a closed socket: a clean close.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => {
                            record(&reader_failure, &e);
                            break;
                        }
                    }
                }
                // The connection cannot be used after a receive failure.
                let _ = closer_for_reader.shutdown(Shutdown::Both);
                let _ = reader_handle.block_on(to_async.shutdown());
            })?;

        // Send thread: async side -> socket (SecretConnection frames chunks).
        let writer_failure = failure.clone();
        let writer_dropped = dropped.clone();
        std::thread::Builder::new()
            .name("qkms-sc-write".into())
            .spawn(move || {
                let mut buf = vec![0u8; 4 * DATA_MAX_SIZE];
                loop {
                    match handle.block_on(from_async.read(&mut buf)) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Err(e) =
                                sender.write_all(&buf[..n]).and_then(|()| sender.flush())
                            {
                                record(&writer_failure, &e);
                                let _ = closer.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                    }
                }
                // The async side is done. Dropped: close both ways, which
                // also ends the receive thread. Shut down: half-close.
                let how = if writer_dropped.load(Ordering::SeqCst) {
                    Shutdown::Both
                } else {
                    Shutdown::Write
                };
                let _ = closer.shutdown(how);
            })?;

        Ok(Self {
            pipe: ours,
            failure,
            dropped,
        })
    }
}

impl Drop for Bridged {
    fn drop(&mut self) {
        // Set before `pipe` drops, so the send thread sees it with its EOF.
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl AsyncRead for Bridged {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.pipe).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                // EOF: report why, if the connection failed.
                match recorded(&this.failure) {
                    Some(err) => Poll::Ready(Err(err)),
                    None => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for Bridged {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(err) = recorded(&this.failure) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut this.pipe).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().pipe).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().pipe).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_handshake_socket_has_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (dialled, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let _accepted = accepted.expect("accept");
        let socket =
            blocking_socket(dialled.expect("connect"), &Timeouts::default()).expect("socket");
        crate::transport::keepalive::assert_on(&socket);
    }
}
