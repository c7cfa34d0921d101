//! The status page: `GET /` serves one self-contained HTML page (no
//! external assets; a little inline script) showing this node's view, and
//! `GET /status.json` the [`View`] it draws, which the page polls each
//! second. The page also carries the view it was served with, so it shows
//! something at once and without script.
//!
//! Whoever runs the node says where the view comes from ([`set_source`]):
//! a cluster node's [`Status`], or single-node mode's state files.
//! Everything the page shows is text set through `textContent`, never
//! markup, so a chain id or an error message cannot inject any.

use std::sync::OnceLock;

use serde::Serialize;

use super::ops::{WINDOW, quantile};
use crate::cluster::admin::Status;
use crate::watermark::{Position, SignState};

/// What the status page shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct View {
    /// `cluster` or `single`.
    pub mode: &'static str,
    /// This node's Raft id (cluster mode).
    pub node_id: Option<u64>,
    /// This node's clock when it drew the view (ms since the Unix epoch).
    pub time_unix_ms: u64,
    /// Raft role, term, leader and indexes (cluster mode).
    pub role: Option<String>,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// Current term.
    pub term: Option<u64>,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Last applied index.
    pub applied_index: Option<u64>,
    /// More voters the cluster can lose and keep a majority.
    pub can_lose_voters: Option<u64>,
    /// Members as this node sees them.
    pub members: Vec<MemberView>,
    /// Chains by id.
    pub chains: Vec<ChainView>,
    /// Recent grant latency.
    pub latency: Latency,
    /// Storage, key backend and quorum health.
    pub health: HealthView,
}

/// One member.
#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    /// Node id.
    pub id: u64,
    /// Cluster address.
    pub addr: String,
    /// leader, voter or learner.
    pub role: &'static str,
    /// Last log index replicated to it (on the leader).
    pub matched_index: Option<u64>,
    /// Entries behind this node's last log index.
    pub lag: Option<u64>,
    /// up, down or unknown.
    pub state: &'static str,
    /// Why it is down; its round trip when up.
    pub detail: String,
}

/// One chain.
#[derive(Clone, Debug, Serialize)]
pub struct ChainView {
    /// Chain id.
    pub chain: String,
    /// The watermark.
    pub position: Option<Position>,
    /// The watermark as `height/round/step`, or `none`.
    pub watermark: String,
    /// The last signature's time (ms since the Unix epoch).
    pub last_signature_ms: Option<u64>,
    /// The node that served it.
    pub served_by: Option<String>,
    /// The validator node it was for (with height ownership on).
    pub validator: Option<String>,
    /// This node's validator connections on the chain.
    pub connections: Vec<Connection>,
}

/// A validator connection of this node.
#[derive(Clone, Debug, Serialize)]
pub struct Connection {
    /// The validator's address.
    pub addr: String,
    /// Whether it is open.
    pub connected: bool,
}

/// Grant latency over the last [`WINDOW`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// The window, in seconds.
    pub window_seconds: u64,
    /// Grants in it.
    pub count: usize,
    /// Median, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
    /// The newest grants' latencies (ms), oldest first, for the chart.
    pub recent_ms: Vec<f64>,
}

/// Green (`ok`) or red with the reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Health {
    /// Whether it is healthy.
    pub ok: bool,
    /// What is wrong, or what is right.
    pub reason: String,
}

/// The three health lights.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HealthView {
    /// The Raft store or the state files.
    pub storage: Health,
    /// The key backends.
    pub key_backend: Health,
    /// The quorum.
    pub quorum: Health,
}

/// Points on the chart at most.
const CHART_POINTS: usize = 120;

type Source = Box<dyn Fn() -> View + Send + Sync>;

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Says where the page's view comes from (once per process; later calls
/// are ignored).
pub fn set_source(source: impl Fn() -> View + Send + Sync + 'static) {
    let _ = SOURCE.set(Box::new(source));
}

fn ok(reason: impl Into<String>) -> Health {
    Health {
        ok: true,
        reason: reason.into(),
    }
}

fn red(reason: impl Into<String>) -> Health {
    Health {
        ok: false,
        reason: reason.into(),
    }
}

fn latency() -> Latency {
    let recent = super::global().ops.recent_grants();
    let ms = |s: f64| (s * 1e6).round() / 1e3;
    Latency {
        window_seconds: WINDOW.as_secs(),
        count: recent.len(),
        p50_ms: quantile(&recent, 0.5).map(ms),
        p99_ms: quantile(&recent, 0.99).map(ms),
        recent_ms: recent[recent.len().saturating_sub(CHART_POINTS)..]
            .iter()
            .map(|s| ms(*s))
            .collect(),
    }
}

fn key_health(simulated_loss: bool) -> Health {
    if simulated_loss {
        return red("key loss simulated by an operator (drill hsm-loss): nothing is signed");
    }
    let errors = super::global().ops.key_errors();
    if errors.is_empty() {
        return ok("the last signature on every chain succeeded");
    }
    let chains: Vec<String> = errors
        .iter()
        .map(|(chain, at)| format!("{chain} at {}", format_unix_ms(*at)))
        .collect();
    red(format!(
        "the last signature failed in the key backend on {}",
        chains.join(", ")
    ))
}

fn connections(chain: &str) -> Vec<Connection> {
    super::global()
        .validators()
        .into_iter()
        .filter(|(c, _, _)| c == chain)
        .map(|(_, addr, connected)| Connection { addr, connected })
        .collect()
}

fn last_signature_ms(chain: &str) -> Option<u64> {
    let secs = super::global()
        .ops
        .last_signature
        .with_label_values(&[chain])
        .get();
    (secs > 0.0).then_some((secs * 1000.0) as u64)
}

impl View {
    /// A cluster node's view, from its admin status.
    pub fn cluster(status: &Status) -> View {
        let members = status
            .members
            .iter()
            .map(|m| MemberView {
                id: m.id,
                addr: m.addr.clone(),
                role: if status.leader == Some(m.id) {
                    "leader"
                } else if m.voter {
                    "voter"
                } else {
                    "learner"
                },
                matched_index: m.matched_index,
                lag: m.lag,
                state: match m.reachable {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "unknown",
                },
                detail: match (&m.probe_error, m.rtt_ms) {
                    (Some(e), _) => e.clone(),
                    (None, Some(rtt)) => format!("{rtt} ms round trip"),
                    (None, None) if m.id == status.node_id => "this node".into(),
                    (None, None) => String::new(),
                },
            })
            .collect();
        let chains = status
            .chains
            .iter()
            .map(|(chain, c)| {
                let signed = c.last_signed.as_ref();
                ChainView {
                    chain: chain.clone(),
                    position: c.position,
                    watermark: c.position.map_or("none".into(), |p| p.to_string()),
                    last_signature_ms: signed.and_then(|s| s.at_ms),
                    served_by: signed.and_then(|s| s.node).map(|n| format!("node {n}")),
                    validator: signed.and_then(|s| s.validator.clone()),
                    connections: connections(chain),
                }
            })
            .collect();
        let quorum = match (status.has_quorum_leader, status.can_lose_voters) {
            (true, Some(n)) => ok(format!(
                "leader {} has a quorum; can lose {n} more voter(s)",
                status.leader.unwrap_or(0)
            )),
            (true, None) => ok(format!(
                "leader {} has a quorum, but fewer than a majority of voters answer this node's probes",
                status.leader.unwrap_or(0)
            )),
            (false, _) if status.leader.is_none() => red("no leader known: grants cannot commit"),
            (false, _) => red("no leader with a quorum: grants cannot commit"),
        };
        View {
            mode: "cluster",
            node_id: Some(status.node_id),
            time_unix_ms: crate::cluster::deps::system_clock_ms(),
            role: Some(status.role.clone()),
            leader: status.leader,
            term: Some(status.term),
            last_log_index: status.last_log_index,
            applied_index: status.applied_index,
            can_lose_voters: status.can_lose_voters,
            members,
            chains,
            latency: latency(),
            health: HealthView {
                storage: match &status.storage_fault {
                    Some(fault) => red(format!("storage fault: {fault}")),
                    None => ok("the Raft store answers"),
                },
                key_backend: key_health(status.key_loss_simulated),
                quorum,
            },
        }
    }

    /// A single-node signer's view: each chain's state file as loaded now
    /// (or why it cannot be).
    pub fn single(chains: &[(String, Result<SignState, String>)], key_loss: bool) -> View {
        let mut storage = ok("every state file loads");
        let chains = chains
            .iter()
            .map(|(chain, state)| {
                let position = match state {
                    Ok(state) => state.position,
                    Err(e) => {
                        storage = red(format!("{chain}: {e}"));
                        None
                    }
                };
                ChainView {
                    chain: chain.clone(),
                    position,
                    watermark: position.map_or("none".into(), |p| p.to_string()),
                    last_signature_ms: last_signature_ms(chain),
                    served_by: last_signature_ms(chain).map(|_| "this node".into()),
                    validator: None,
                    connections: connections(chain),
                }
            })
            .collect();
        View {
            mode: "single",
            time_unix_ms: crate::cluster::deps::system_clock_ms(),
            chains,
            latency: latency(),
            health: HealthView {
                storage,
                key_backend: key_health(key_loss),
                quorum: ok("single-node mode: no quorum needed"),
            },
            ..View::default()
        }
    }
}

/// Copies what the alert rules need from a cluster node's status into
/// the gauges.
pub fn observe_status(status: &Status) {
    let ops = &super::global().ops;
    for m in &status.members {
        let node = m.id.to_string();
        // A node's view of itself says nothing of whether others reach it.
        if let Some(reachable) = m.reachable.filter(|_| m.id != status.node_id) {
            ops.peer_reachable
                .with_label_values(&[&node])
                .set(i64::from(reachable));
        }
        match m.lag {
            Some(lag) if status.leader == Some(status.node_id) => ops
                .follower_lag
                .with_label_values(&[&node])
                .set(super::as_gauge(lag)),
            _ => {
                let _ = ops.follower_lag.remove_label_values(&[&node]);
            }
        }
    }
    ops.can_lose_voters
        .set(status.can_lose_voters.map_or(-1, super::as_gauge));
    for (chain, c) in &status.chains {
        if let Some(at) = c.last_signed.as_ref().and_then(|s| s.at_ms) {
            ops.signed_at(chain, at);
        }
    }
}

fn view() -> View {
    match SOURCE.get() {
        Some(source) => source(),
        None => View {
            mode: "starting",
            time_unix_ms: crate::cluster::deps::system_clock_ms(),
            latency: latency(),
            ..View::default()
        },
    }
}

/// `/status.json`.
pub fn json() -> String {
    serde_json::to_string(&view()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `/`: the page, carrying the current view.
pub fn html() -> String {
    // Inside a script element only `</` can end it early; JSON allows
    // `<\/` for the same text.
    let data = json().replace("</", "<\\/");
    PAGE.replace("/*VIEW*/null", &data)
}

const PAGE: &str = include_str!("page.html");

/// A Unix time in milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn format_unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_formats_as_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_unix_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            format_unix_ms(1_798_675_200_000),
            "2026-12-31T00:00:00.000Z"
        );
    }

    #[test]
    fn the_page_carries_the_view_and_nothing_can_close_its_script() {
        let html = html();
        assert!(html.starts_with("<!doctype html>"));
        assert!(!html.contains("/*VIEW*/null"));
        assert!(!html.contains("src=\"http"), "no external assets");
        let chains = vec![(
            "</script><b>x".to_string(),
            Err("gone </script>".to_string()),
        )];
        let data = serde_json::to_string(&View::single(&chains, false))
            .expect("json")
            .replace("</", "<\\/");
        assert!(!data.contains("</"));
        let view = View::single(&chains, true);
        assert!(!view.health.storage.ok && !view.health.key_backend.ok);
        assert!(view.health.quorum.ok);
    }
}
