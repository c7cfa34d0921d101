//! Observability: the process-wide Prometheus metrics and the small HTTP
//! server that exposes them with health checks.
//!
//! - `GET /metrics`: Prometheus text format (see [`Metrics`] for names);
//! - `GET /healthz`: 200 while the process runs;
//! - `GET /readyz`: 200 when this node can sign (single-node mode, or a
//!   cluster node with a leader holding a quorum), 503 otherwise;
//! - `GET /` and `GET /status.json`: the status page and what it shows
//!   ([`page`]).
//!
//! The metrics live in one global registry ([`global`]), so the session and
//! node code record with a one-line call and tests in one process share it.
//! Nothing secret is ever a label or a value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub mod ops;
pub mod page;

/// Every metric quorumkms exports.
pub struct Metrics {
    registry: Registry,
    ready: AtomicBool,
    /// `quorumkms_sign_requests_total{chain, type, result}`: type is
    /// proposal, prevote or precommit; result is signed, refused,
    /// wrong_chain, max_height, unavailable or key_error.
    pub sign_requests: IntCounterVec,
    /// `quorumkms_double_sign_refusals_total{chain}`: requests the
    /// double-sign rules refused.
    pub double_sign_refusals: IntCounterVec,
    /// `quorumkms_grant_seconds{chain}`: time to get a grant (a local
    /// state-file write, or a Raft commit).
    pub grant_seconds: HistogramVec,
    /// `quorumkms_grant_stage_seconds{stage}`: time spent in each stage of
    /// the signing path (see [`Stage`]), so a bench or an operator can see
    /// where a grant's time goes.
    pub grant_stage_seconds: HistogramVec,
    /// `quorumkms_validator_connected{chain, validator}`: 1 while a
    /// validator connection is open.
    pub validator_connected: IntGaugeVec,
    /// `quorumkms_raft_term`.
    pub raft_term: IntGauge,
    /// `quorumkms_raft_leader`: the leader's id, 0 when none is known.
    pub raft_leader: IntGauge,
    /// `quorumkms_raft_is_leader`: 1 on the leader.
    pub raft_is_leader: IntGauge,
    /// `quorumkms_raft_last_log_index`.
    pub raft_last_log_index: IntGauge,
    /// `quorumkms_raft_applied_index`: the last committed entry this node
    /// has applied.
    pub raft_applied_index: IntGauge,
    /// `quorumkms_raft_voters`.
    pub raft_voters: IntGauge,
    /// `quorumkms_ready`: 1 when this node can sign.
    pub ready_gauge: IntGauge,
    /// `quorumkms_storage_fault`: 1 while a storage fault stops signing.
    pub storage_fault: IntGauge,
    /// What operators alert on, and the status page's recent latencies.
    pub ops: ops::OpsMetrics,
}

/// A stage of the signing path, in the order a request passes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Decoding a request frame into a sign attempt.
    Decode,
    /// A follower's forward of a command to the leader, round trip.
    Forward,
    /// Waiting in the leader's group-commit queue for the entry in flight.
    Queue,
    /// The leader's Raft write: propose, append, replicate, commit, apply.
    Commit,
    /// One fsync'd log append (any node).
    LogAppend,
    /// The leader's AppendEntries to one follower, round trip.
    Replicate,
    /// Applying committed entries to the state machine.
    Apply,
    /// Single-node mode: making the new state durable (its journal,
    /// synced; the state file itself follows off the grant's path).
    StateWrite,
    /// The key backend's signature.
    Sign,
    /// Encoding and writing the reply.
    Reply,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 10] = [
        Stage::Decode,
        Stage::Forward,
        Stage::Queue,
        Stage::Commit,
        Stage::LogAppend,
        Stage::Replicate,
        Stage::Apply,
        Stage::StateWrite,
        Stage::Sign,
        Stage::Reply,
    ];

    /// The `stage` label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Forward => "forward",
            Stage::Queue => "queue",
            Stage::Commit => "commit",
            Stage::LogAppend => "log_append",
            Stage::Replicate => "replicate",
            Stage::Apply => "apply",
            Stage::StateWrite => "state_write",
            Stage::Sign => "sign",
            Stage::Reply => "reply",
        }
    }
}

/// Times `f` as `stage`.
pub fn timed<T>(stage: Stage, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    global().stage(stage, started.elapsed());
    out
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let sign_requests = IntCounterVec::new(
        Opts::new(
            "quorumkms_sign_requests_total",
            "Sign requests by chain, type and result",
        ),
        &["chain", "type", "result"],
    )?;
    let double_sign_refusals = IntCounterVec::new(
        Opts::new(
            "quorumkms_double_sign_refusals_total",
            "Sign requests refused by the double-sign rules",
        ),
        &["chain"],
    )?;
    let grant_seconds = HistogramVec::new(
        HistogramOpts::new(
            "quorumkms_grant_seconds",
            "Time to get a grant (state write or Raft commit)",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
        &["chain"],
    )?;
    let grant_stage_seconds = HistogramVec::new(
        HistogramOpts::new(
            "quorumkms_grant_stage_seconds",
            "Time spent in each stage of the signing path",
        )
        .buckets(vec![
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            1.0,
        ]),
        &["stage"],
    )?;
    let validator_connected = IntGaugeVec::new(
        Opts::new(
            "quorumkms_validator_connected",
            "1 while the connection to a validator node is open",
        ),
        &["chain", "validator"],
    )?;
    let gauge = |name: &str, help: &str| IntGauge::new(name, help);
    let metrics = Metrics {
        ready: AtomicBool::new(false),
        sign_requests,
        double_sign_refusals,
        grant_seconds,
        grant_stage_seconds,
        validator_connected,
        raft_term: gauge("quorumkms_raft_term", "Current Raft term")?,
        raft_leader: gauge(
            "quorumkms_raft_leader",
            "Id of the Raft leader, 0 when none is known",
        )?,
        raft_is_leader: gauge("quorumkms_raft_is_leader", "1 on the Raft leader")?,
        raft_last_log_index: gauge("quorumkms_raft_last_log_index", "Last Raft log index")?,
        raft_applied_index: gauge(
            "quorumkms_raft_applied_index",
            "Last committed Raft entry applied here",
        )?,
        raft_voters: gauge("quorumkms_raft_voters", "Voters in the Raft membership")?,
        ready_gauge: gauge("quorumkms_ready", "1 when this node can sign")?,
        storage_fault: gauge(
            "quorumkms_storage_fault",
            "1 while a storage fault keeps this node from signing",
        )?,
        ops: ops::OpsMetrics::build(&registry)?,
        registry,
    };
    let r = &metrics.registry;
    r.register(Box::new(metrics.sign_requests.clone()))?;
    r.register(Box::new(metrics.double_sign_refusals.clone()))?;
    r.register(Box::new(metrics.grant_seconds.clone()))?;
    r.register(Box::new(metrics.grant_stage_seconds.clone()))?;
    r.register(Box::new(metrics.validator_connected.clone()))?;
    for g in [
        &metrics.raft_term,
        &metrics.raft_leader,
        &metrics.raft_is_leader,
        &metrics.raft_last_log_index,
        &metrics.raft_applied_index,
        &metrics.raft_voters,
        &metrics.ready_gauge,
        &metrics.storage_fault,
    ] {
        r.register(Box::new(g.clone()))?;
    }
    Ok(metrics)
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| match build() {
        Ok(m) => m,
        // Only duplicate names make `build` fail; they are fixed above.
        Err(e) => unreachable!("metric definitions are inconsistent: {e}"),
    })
}

impl Metrics {
    /// Records one answered sign request.
    pub fn sign(&self, chain: &str, kind: &str, result: &str) {
        self.sign_requests
            .with_label_values(&[chain, kind, result])
            .inc();
        if result == "refused" {
            self.double_sign_refusals.with_label_values(&[chain]).inc();
        }
        self.ops.sign(chain, result);
    }

    /// Records how long a grant took.
    pub fn grant_time(&self, chain: &str, elapsed: Duration) {
        self.grant_seconds
            .with_label_values(&[chain])
            .observe(elapsed.as_secs_f64());
        self.ops.grant_time(elapsed);
    }

    /// Records how long one stage of the signing path took.
    pub fn stage(&self, stage: Stage, elapsed: Duration) {
        self.grant_stage_seconds
            .with_label_values(&[stage.label()])
            .observe(elapsed.as_secs_f64());
    }

    /// Marks a validator connection open or closed.
    pub fn validator(&self, chain: &str, validator: &str, connected: bool) {
        self.validator_connected
            .with_label_values(&[chain, validator])
            .set(i64::from(connected));
    }

    /// Every validator connection seen: (chain, validator, connected).
    pub fn validators(&self) -> Vec<(String, String, bool)> {
        use prometheus::core::Collector;
        let mut out = Vec::new();
        for family in self.validator_connected.collect() {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let connected = metric.get_gauge().get_value() > 0.0;
                out.push((label("chain"), label("validator"), connected));
            }
        }
        out
    }

    /// Sets whether this node can sign (`/readyz`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.ready_gauge.set(i64::from(ready));
    }

    /// Whether this node can sign.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(cause = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Converts an index or id to a gauge value.
pub fn as_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Copies a cluster node's Raft state into the gauges.
pub fn observe_cluster(node: &crate::cluster::Node) {
    let m = global();
    let raft = node.metrics();
    m.raft_term.set(as_gauge(raft.current_term));
    m.raft_leader.set(raft.current_leader.map_or(0, as_gauge));
    m.raft_is_leader
        .set(i64::from(raft.current_leader == Some(node.id())));
    m.raft_last_log_index
        .set(raft.last_log_index.map_or(0, as_gauge));
    m.raft_applied_index
        .set(raft.last_applied.map_or(0, |l| as_gauge(l.index)));
    m.raft_voters
        .set(i64::try_from(raft.membership_config.membership().voter_ids().count()).unwrap_or(0));
    m.storage_fault
        .set(i64::from(node.storage_fault().is_some()));
}

/// Largest request head read; anything longer is answered 400.
const MAX_REQUEST: usize = 8192;

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until the
/// returned task is aborted.
///
/// # Errors
///
/// The address cannot be bound.
pub async fn serve(addr: &str) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics and health endpoints listening");
    Ok(tokio::spawn(async move {
        loop {
            let stream = match accept(&listener).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(cause = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream)).await;
            });
        }
    }))
}

/// The next scrape's connection, with TCP keepalive on like every socket
/// the node accepts.
async fn accept(listener: &TcpListener) -> std::io::Result<tokio::net::TcpStream> {
    let (stream, _) = listener.accept().await?;
    crate::transport::set_keepalive(&stream)?;
    Ok(stream)
}

async fn answer(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let m = global();
    let (status, content_type, body) = match (method, path) {
        ("GET", "/" | "/status") => ("200 OK", "text/html; charset=utf-8", page::html()),
        ("GET", "/status.json") => ("200 OK", "application/json", page::json()),
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", m.render()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if m.is_ready() => ("200 OK", "text/plain", "ready\n".to_string()),
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "not ready: no leader with a quorum\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_scrapes_have_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), accept(&listener));
        let _client = client.expect("connect");
        let accepted = accepted.expect("accept");
        assert!(
            socket2::SockRef::from(&accepted)
                .keepalive()
                .expect("SO_KEEPALIVE"),
            "keepalive is off"
        );
    }
}
