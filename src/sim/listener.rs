//! The validator's end of privval in the simulation: it listens for the
//! signer nodes that dial it and talks to one of them at a time, the way
//! CometBFT's signer listener does (v0.38 and v1.0 alike):
//!
//! - an accept loop takes one connection off the listener when asked to
//!   (at start, when a request finds no connection, after a failed ping)
//!   and offers it; every other dial waits in the listener's queue;
//! - one connection is active; a request uses it, or the offered one, or
//!   asks for an accept and waits [`Timing::accept_timeout`] for it;
//! - the active connection is dropped only when a read or write times out
//!   ([`Timing::io_timeout`]) or a ping fails. A closed or reset connection
//!   is kept: requests on it fail until the next ping drops it;
//! - a ping goes out whenever no request has succeeded for
//!   [`Timing::ping_interval`] (CometBFT's ticker, reset by each success).
//!
//! Requests and pings take turns on the connection ([`Endpoint`] is behind
//! one async lock). The retries of a failed request belong to the caller
//! ([`super::validator`]), as in CometBFT's retrying client.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout};

use super::net;
use super::trace::{Trace, now};
use crate::privval::codec::{self, FrameReader, ReadError};
use crate::privval::{Request, Response, Version};

/// CometBFT's timing of its signer listener.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Bound on each read and write on a signer connection.
    pub io_timeout: Duration,
    /// Idle time after which the listener pings (two thirds of the I/O
    /// timeout, so a ping fits in before the signer's read times out).
    pub ping_interval: Duration,
    /// How long a request waits for a signer connection to be accepted.
    pub accept_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            io_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_millis(3_333),
            accept_timeout: Duration::from_secs(3),
        }
    }
}

/// One accepted signer connection.
struct Conn {
    frames: FrameReader<ReadHalf<turmoil::net::TcpStream>>,
    write: WriteHalf<turmoil::net::TcpStream>,
    /// The signer host, for the trace.
    peer: String,
}

impl Conn {
    fn new(stream: turmoil::net::TcpStream, peer: SocketAddr) -> Conn {
        let (read, write) = tokio::io::split(stream);
        Conn {
            frames: FrameReader::new(read, codec::DEFAULT_MAX_FRAME),
            write,
            peer: turmoil::reverse_lookup(peer.ip()).unwrap_or_else(|| peer.ip().to_string()),
        }
    }
}

/// Why one exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// No signer connection could be had within the accept timeout.
    NoConnection,
    /// A read or write timed out; the connection was dropped.
    Timeout(&'static str),
    /// The exchange failed otherwise (closed, reset, undecodable); the
    /// connection is kept, as CometBFT keeps it.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoConnection => write!(f, "no signer connected"),
            Failure::Timeout(what) => write!(f, "{what} timed out, connection dropped"),
            Failure::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// What the accept loop and the requests share: the hand-over of accepted
/// connections.
#[derive(Default)]
struct AcceptQueue {
    /// A connection accepted and not yet taken by a request.
    offered: RefCell<Option<Conn>>,
    /// The accept loop waits for a request to accept (and a request
    /// would start one now).
    idle: Cell<bool>,
    /// Asks the accept loop to accept.
    accept: Notify,
    /// A connection was offered.
    ready: Notify,
    /// The offered connection was taken.
    taken: Notify,
}

impl AcceptQueue {
    /// Asks for an accept, unless one is under way or a connection is
    /// already offered (as CometBFT's trigger, which is dropped when its
    /// accept loop is busy).
    fn request_accept(&self) {
        if self.idle.get() {
            self.accept.notify_one();
        }
    }

    fn take(&self) -> Option<Conn> {
        let conn = self.offered.borrow_mut().take();
        if conn.is_some() {
            self.taken.notify_one();
        }
        conn
    }
}

/// The active connection, behind the listener's lock.
struct Endpoint {
    active: Option<Conn>,
}

/// A validator node's signer listener.
pub struct SignerListener {
    name: String,
    version: Version,
    timing: Timing,
    trace: Trace,
    queue: AcceptQueue,
    endpoint: tokio::sync::Mutex<Endpoint>,
    /// When the next ping is due; each successful request pushes it back.
    next_ping: Cell<Instant>,
}

impl SignerListener {
    /// A listener for the validator node `name`, with nothing accepted yet.
    pub fn new(name: String, version: Version, timing: Timing, trace: Trace) -> Rc<SignerListener> {
        Rc::new(SignerListener {
            name,
            version,
            timing,
            trace,
            queue: AcceptQueue::default(),
            endpoint: tokio::sync::Mutex::new(Endpoint { active: None }),
            next_ping: Cell::new(Instant::now() + timing.ping_interval),
        })
    }

    /// Binds `port` and runs the accept loop and the ping loop until the
    /// returned future is dropped (which closes the listener).
    ///
    /// # Errors
    ///
    /// The port cannot be bound, or the listener fails.
    pub async fn serve(self: Rc<Self>, port: u16) -> std::io::Result<()> {
        let listener = net::bind(port).await?;
        // CometBFT asks for its first accept when it starts.
        self.queue.accept.notify_one();
        tokio::select! {
            biased;
            result = self.accept_loop(&listener) => result,
            () = self.ping_loop() => Ok(()),
        }
    }

    async fn accept_loop(&self, listener: &turmoil::net::TcpListener) -> std::io::Result<()> {
        loop {
            self.queue.idle.set(true);
            self.queue.accept.notified().await;
            self.queue.idle.set(false);
            let (stream, peer) = listener.accept().await?;
            let conn = Conn::new(stream, peer);
            self.trace
                .event(now(), format!("{} accepts {}", self.name, conn.peer));
            *self.queue.offered.borrow_mut() = Some(conn);
            self.queue.ready.notify_one();
            // Accept nothing more until a request takes this one.
            while self.queue.offered.borrow().is_some() {
                self.queue.taken.notified().await;
            }
        }
    }

    async fn ping_loop(&self) {
        loop {
            let due = self.next_ping.get();
            sleep_until(due).await;
            if Instant::now() < self.next_ping.get() {
                // A request succeeded meanwhile and reset the timer.
                continue;
            }
            self.next_ping.set(due + self.timing.ping_interval);
            let mut endpoint = self.endpoint.lock().await;
            if let Err(e) = self.exchange(&mut endpoint, &Request::Ping).await {
                if let Some(conn) = endpoint.active.take() {
                    self.trace.event(
                        now(),
                        format!("{} ping failed ({e}): drops {}", self.name, conn.peer),
                    );
                }
                self.queue.request_accept();
            }
        }
    }

    /// Sends one request and reads its reply, on the active connection or
    /// one accepted for it. No retries.
    ///
    /// # Errors
    ///
    /// No connection, a timeout (the connection is dropped), or another
    /// failure (the connection is kept).
    pub async fn send(&self, request: &Request) -> Result<Response, Failure> {
        let mut endpoint = self.endpoint.lock().await;
        self.exchange(&mut endpoint, request).await
    }

    /// The signer host of the active connection, if any.
    pub fn peer(&self) -> Option<String> {
        self.endpoint
            .try_lock()
            .ok()
            .and_then(|e| e.active.as_ref().map(|c| c.peer.clone()))
    }

    async fn exchange(
        &self,
        endpoint: &mut Endpoint,
        request: &Request,
    ) -> Result<Response, Failure> {
        self.connect(endpoint).await?;
        let Some(conn) = endpoint.active.as_mut() else {
            return Err(Failure::NoConnection);
        };
        let io = self.timing.io_timeout;
        let body = request.encode(self.version);
        match timeout(io, codec::write_frame(&mut conn.write, &body)).await {
            Err(_) => return Err(self.drop_on_timeout(endpoint, "write")),
            Ok(Err(e)) => return Err(Failure::Failed(e.to_string())),
            Ok(Ok(())) => {}
        }
        let reply = match timeout(io, conn.frames.read_frame()).await {
            Err(_) => return Err(self.drop_on_timeout(endpoint, "read")),
            Ok(Ok(Some(body))) => body,
            Ok(Ok(None)) => return Err(Failure::Failed("signer closed the connection".into())),
            Ok(Err(ReadError::Io(e))) => return Err(Failure::Failed(e.to_string())),
            Ok(Err(ReadError::Codec(e))) => return Err(Failure::Failed(e.to_string())),
        };
        let response = Response::decode(self.version, &reply)
            .map_err(|e| Failure::Failed(format!("undecodable reply: {e}")))?;
        self.next_ping
            .set(Instant::now() + self.timing.ping_interval);
        Ok(response)
    }

    fn drop_on_timeout(&self, endpoint: &mut Endpoint, what: &'static str) -> Failure {
        if let Some(conn) = endpoint.active.take() {
            self.trace.event(
                now(),
                format!("{} {what} timed out: drops {}", self.name, conn.peer),
            );
        }
        Failure::Timeout(what)
    }

    /// Makes sure a connection is active: keeps the current one, takes
    /// the offered one, or asks for an accept and waits for it.
    async fn connect(&self, endpoint: &mut Endpoint) -> Result<(), Failure> {
        if endpoint.active.is_some() {
            return Ok(());
        }
        if let Some(conn) = self.queue.take() {
            endpoint.active = Some(conn);
            return Ok(());
        }
        self.queue.request_accept();
        let waited = timeout(self.timing.accept_timeout, async {
            loop {
                if let Some(conn) = self.queue.take() {
                    return conn;
                }
                self.queue.ready.notified().await;
            }
        })
        .await;
        match waited {
            Ok(conn) => {
                endpoint.active = Some(conn);
                Ok(())
            }
            Err(_) => Err(Failure::NoConnection),
        }
    }
}
