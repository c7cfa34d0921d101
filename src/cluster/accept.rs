//! Accepting connections whose first step (a TLS handshake) is expensive
//! and comes before we know who calls: each handshake runs in a task of
//! its own, so a slow caller never holds up the others, and [`Limits`]
//! bound what callers who never finish can hold. Over a limit, a new
//! connection is closed at once; refusals and failed handshakes are logged
//! at most once every [`LOG_EVERY`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::transport::{BoxIo, Listener, PeerInfo};

/// How often, at most, refused connections are logged.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Bounds on the connections a listener holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Handshakes in progress at once, from everyone.
    pub handshakes: usize,
    /// Connections from one source address at once, handshaking or open.
    /// A cluster peer keeps one; an operator's command opens one.
    pub per_ip: usize,
    /// How long a handshake may take.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshakes: 64,
            per_ip: 16,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// What a listener has done so far.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    refused: AtomicU64,
    handshaking: AtomicUsize,
    handshaking_peak: AtomicUsize,
}

impl Stats {
    /// TCP connections taken from the kernel.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed at once for being over a limit.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Handshakes in progress now.
    pub fn handshaking(&self) -> usize {
        self.handshaking.load(Ordering::SeqCst)
    }

    /// The most handshakes ever in progress at once.
    pub fn handshaking_peak(&self) -> usize {
        self.handshaking_peak.load(Ordering::SeqCst)
    }
}

/// Turns an accepted TCP stream into a byte stream and what it says about
/// its caller (a TLS handshake).
pub type Handshake =
    Arc<dyn Fn(TcpStream) -> BoxFuture<'static, io::Result<(BoxIo, PeerInfo)>> + Send + Sync>;

/// Connections per source address.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection's place in its source address's count, given back when
/// the connection is dropped.
struct IpSlot {
    ip: IpAddr,
    table: PerIp,
}

impl IpSlot {
    fn take(table: &PerIp, ip: IpAddr, limit: usize) -> Option<IpSlot> {
        let mut counts = table.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            table: table.clone(),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A connection that holds its [`IpSlot`] for as long as it lives.
struct Counted {
    io: BoxIo,
    _slot: IpSlot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

/// Logs refused connections and failed handshakes, one line per
/// [`LOG_EVERY`] at most, with the count of those it left out: a flood of
/// callers must not flood the log too.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttled {
    fn warn(log: &Mutex<Throttled>, peer: SocketAddr, what: &str) {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if log.last.is_some_and(|last| last.elapsed() < LOG_EVERY) {
            log.unlogged += 1;
            return;
        }
        tracing::warn!(
            %peer,
            unlogged = log.unlogged,
            "cluster port: {what} (unlogged: refusals and failures since the last such line)"
        );
        log.last = Some(Instant::now());
        log.unlogged = 0;
    }
}

/// A listener whose connections went through `handshake` within
/// [`Limits`].
pub struct Bounded {
    local: String,
    rx: mpsc::Receiver<(BoxIo, PeerInfo)>,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl Bounded {
    /// Serves `listener`: every accepted connection goes through
    /// `handshake` within `limits`.
    ///
    /// # Errors
    ///
    /// The listener has no local address.
    pub fn new(listener: TcpListener, handshake: Handshake, limits: Limits) -> io::Result<Bounded> {
        let local = listener.local_addr()?.to_string();
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(listener, handshake, limits, stats.clone(), tx));
        Ok(Bounded {
            local,
            rx,
            stats,
            task,
        })
    }

    /// What the listener has done so far.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for Bounded {
    fn local_addr(&self) -> io::Result<String> {
        Ok(self.local.clone())
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<BoxIo>> {
        Box::pin(async move { self.accept_peer().await.map(|(io, _)| io) })
    }

    fn accept_peer(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, PeerInfo)>> {
        Box::pin(async move {
            self.rx
                .recv()
                .await
                .ok_or_else(|| io::Error::other("listener stopped"))
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    handshake: Handshake,
    limits: Limits,
    stats: Arc<Stats>,
    tx: mpsc::Sender<(BoxIo, PeerInfo)>,
) {
    let permits = Arc::new(Semaphore::new(limits.handshakes));
    let per_ip: PerIp = Arc::default();
    let log = Arc::new(Mutex::new(Throttled::default()));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        // Dropping `tcp` on a refusal closes it at once.
        let Some(slot) = IpSlot::take(&per_ip, peer.ip().to_canonical(), limits.per_ip) else {
            stats.refused.fetch_add(1, Ordering::SeqCst);
            let what = format!(
                "closed a connection at once: {} from this address",
                limits.per_ip
            );
            Throttled::warn(&log, peer, &what);
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::SeqCst);
            let what = format!(
                "closed a connection at once: {} handshakes in progress",
                limits.handshakes
            );
            Throttled::warn(&log, peer, &what);
            continue;
        };
        // Raft heartbeats are tiny; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        let now = stats.handshaking.fetch_add(1, Ordering::SeqCst) + 1;
        stats.handshaking_peak.fetch_max(now, Ordering::SeqCst);
        let (handshake, stats, tx, log) =
            (handshake.clone(), stats.clone(), tx.clone(), log.clone());
        tokio::spawn(async move {
            let result = tokio::time::timeout(limits.handshake_timeout, handshake(tcp)).await;
            stats.handshaking.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            match result {
                Ok(Ok((io, info))) => {
                    let io = Box::new(Counted { io, _slot: slot }) as BoxIo;
                    let _ = tx.send((io, info)).await;
                }
                Ok(Err(e)) => Throttled::warn(&log, peer, &format!("handshake refused: {e}")),
                Err(_) => Throttled::warn(&log, peer, "handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    use super::*;

    /// A stand-in handshake: the caller sends one byte.
    fn one_byte() -> Handshake {
        Arc::new(|mut tcp: TcpStream| {
            Box::pin(async move {
                let mut byte = [0u8; 1];
                tcp.read_exact(&mut byte).await?;
                Ok((Box::new(tcp) as BoxIo, PeerInfo::default()))
            })
        })
    }

    async fn bounded(limits: Limits) -> (Bounded, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (
            Bounded::new(listener, one_byte(), limits).expect("listener"),
            addr,
        )
    }

    /// A connection from `source` (any 127/8 address is this host) that
    /// never handshakes.
    async fn stalled(source: &str, to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{source}:0").parse().expect("source"))
            .expect("bind source");
        socket.connect(to).await.expect("connect")
    }

    /// Waits (with a generous bound against hangs) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "gave up waiting: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A caller that handshakes, then exchanges a byte with the server;
    /// both ends, to keep the connection open.
    async fn served(listener: &mut Bounded, to: SocketAddr) -> (TcpStream, BoxIo) {
        let mut client = TcpStream::connect(to).await.expect("connect");
        client.write_all(b"h").await.expect("handshake");
        let (mut io, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept_peer())
            .await
            .expect("served in time")
            .expect("accepted");
        client.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.expect("server reads");
        assert_eq!(&byte, b"x");
        (client, io)
    }

    /// Whether the server closed `tcp` (it reads end of file).
    async fn closed(tcp: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut byte)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    }

    #[tokio::test]
    async fn one_address_cannot_hold_more_than_its_share() {
        let limits = Limits {
            handshake_timeout: Duration::from_secs(600),
            ..Limits::default()
        };
        let (mut listener, addr) = bounded(limits).await;
        let stats = listener.stats();
        let mut held = Vec::new();
        for _ in 0..100 {
            held.push(stalled("127.0.0.2", addr).await);
        }
        until("all 100 accepted", || stats.accepted() == 100).await;
        assert_eq!(stats.handshaking_peak(), limits.per_ip);
        assert_eq!(stats.refused(), 100 - limits.per_ip as u64);
        // The kernel hands connections over in order: the last was refused,
        // and closed.
        assert!(closed(held.last_mut().expect("held")).await);
        // Someone else still gets in and is served.
        let _open = served(&mut listener, addr).await;
        assert_eq!(stats.handshaking(), limits.per_ip);
    }

    #[tokio::test]
    async fn handshakes_in_progress_never_exceed_the_cap() {
        let limits = Limits {
            handshakes: 8,
            per_ip: 16,
            handshake_timeout: Duration::from_secs(600),
        };
        let (mut listener, addr) = bounded(limits).await;
        let stats = listener.stats();
        let mut held = Vec::new();
        for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
            for _ in 0..10 {
                held.push(stalled(source, addr).await);
            }
        }
        until("all 40 accepted", || stats.accepted() == 40).await;
        assert_eq!(stats.handshaking_peak(), limits.handshakes);
        assert_eq!(stats.refused(), 40 - limits.handshakes as u64);
        // The stalled callers leave; their handshakes end and free the
        // slots for a caller who handshakes.
        drop(held);
        until("stalled handshakes ended", || stats.handshaking() == 0).await;
        let _open = served(&mut listener, addr).await;
        assert!(stats.handshaking_peak() <= limits.handshakes);
    }

    #[tokio::test]
    async fn a_closed_connection_gives_its_slot_back() {
        let limits = Limits {
            handshakes: 8,
            per_ip: 2,
            handshake_timeout: Duration::from_secs(600),
        };
        let (mut listener, addr) = bounded(limits).await;
        let stats = listener.stats();
        // Two open connections from 127.0.0.1 fill its share...
        let first = served(&mut listener, addr).await;
        let _second = served(&mut listener, addr).await;
        let mut third = TcpStream::connect(addr).await.expect("connect");
        until("third accepted", || stats.accepted() == 3).await;
        assert_eq!(stats.refused(), 1);
        assert!(closed(&mut third).await);
        // ...until one closes.
        drop(first);
        let _fourth = served(&mut listener, addr).await;
        assert_eq!(stats.refused(), 1);
    }
}
