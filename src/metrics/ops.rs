//! The metrics operators alert on beyond the core ones in the parent
//! module, and the recent grant latencies the status page shows.
//!
//! - `quorumkms_last_signature_timestamp_seconds{chain}`: the last
//!   signature on a chain this node knows of (its own, or in cluster mode
//!   the last grant the log applied, by the serving node's clock);
//! - `quorumkms_key_backend_up{chain}`: 0 after a signature failed in the
//!   key backend, 1 after one succeeded;
//! - `quorumkms_raft_follower_lag_entries{node}`: on the leader, how many
//!   entries each member is behind its last log index;
//! - `quorumkms_raft_peer_reachable{node}`: whether this node's last probe
//!   of the member answered (1) or not (0);
//! - `quorumkms_quorum_can_lose_voters`: more voters the cluster can lose
//!   and keep a majority, -1 when it has none;
//! - `quorumkms_certificate_expiry_timestamp_seconds`: when this node's
//!   cluster TLS certificate expires.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{Gauge, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Grant latencies kept for the status page: enough for a minute of a
/// busy node; older ones fall off first.
const RECENT: usize = 4096;
/// The window the status page's percentiles cover.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The operators' metrics (see the module docs for their names).
pub struct OpsMetrics {
    /// `quorumkms_last_signature_timestamp_seconds{chain}`.
    pub last_signature: GaugeVec,
    /// `quorumkms_key_backend_up{chain}`.
    pub key_backend_up: IntGaugeVec,
    /// `quorumkms_raft_follower_lag_entries{node}`.
    pub follower_lag: IntGaugeVec,
    /// `quorumkms_raft_peer_reachable{node}`.
    pub peer_reachable: IntGaugeVec,
    /// `quorumkms_quorum_can_lose_voters`.
    pub can_lose_voters: IntGauge,
    /// `quorumkms_certificate_expiry_timestamp_seconds`.
    pub certificate_expiry: Gauge,
    recent: Mutex<VecDeque<(Instant, f64)>>,
    key_errors: Mutex<Vec<(String, u64)>>,
}

impl OpsMetrics {
    pub(super) fn build(registry: &Registry) -> Result<OpsMetrics, prometheus::Error> {
        let ops = OpsMetrics {
            last_signature: GaugeVec::new(
                Opts::new(
                    "quorumkms_last_signature_timestamp_seconds",
                    "Unix time of the last signature on a chain this node knows of",
                ),
                &["chain"],
            )?,
            key_backend_up: IntGaugeVec::new(
                Opts::new(
                    "quorumkms_key_backend_up",
                    "0 after a signature failed in the key backend, 1 after one succeeded",
                ),
                &["chain"],
            )?,
            follower_lag: IntGaugeVec::new(
                Opts::new(
                    "quorumkms_raft_follower_lag_entries",
                    "On the leader: entries each member is behind its last log index",
                ),
                &["node"],
            )?,
            peer_reachable: IntGaugeVec::new(
                Opts::new(
                    "quorumkms_raft_peer_reachable",
                    "1 if this node's last probe of the member answered",
                ),
                &["node"],
            )?,
            can_lose_voters: IntGauge::new(
                "quorumkms_quorum_can_lose_voters",
                "More voters the cluster can lose and keep a majority; -1 without one",
            )?,
            certificate_expiry: Gauge::new(
                "quorumkms_certificate_expiry_timestamp_seconds",
                "Unix time this node's cluster TLS certificate expires",
            )?,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            key_errors: Mutex::new(Vec::new()),
        };
        registry.register(Box::new(ops.last_signature.clone()))?;
        registry.register(Box::new(ops.key_backend_up.clone()))?;
        registry.register(Box::new(ops.follower_lag.clone()))?;
        registry.register(Box::new(ops.peer_reachable.clone()))?;
        registry.register(Box::new(ops.can_lose_voters.clone()))?;
        registry.register(Box::new(ops.certificate_expiry.clone()))?;
        Ok(ops)
    }

    /// Records one answered sign request's result (see `Metrics::sign`).
    pub(super) fn sign(&self, chain: &str, result: &str) {
        match result {
            "signed" => {
                self.signed_at(chain, crate::cluster::deps::system_clock_ms());
                self.key_backend_up.with_label_values(&[chain]).set(1);
            }
            "key_error" => {
                self.key_backend_up.with_label_values(&[chain]).set(0);
                let mut errors = self.key_errors.lock().unwrap_or_else(|p| p.into_inner());
                errors.retain(|(c, _)| c != chain);
                errors.push((chain.to_string(), crate::cluster::deps::system_clock_ms()));
            }
            _ => {}
        }
    }

    /// Moves a chain's last-signature time forward to `at_ms` (never back).
    pub fn signed_at(&self, chain: &str, at_ms: u64) {
        let gauge = self.last_signature.with_label_values(&[chain]);
        let secs = at_ms as f64 / 1000.0;
        if secs > gauge.get() {
            gauge.set(secs);
        }
    }

    /// Chains whose last signature failed in the key backend, with when
    /// (ms since the Unix epoch).
    pub fn key_errors(&self) -> Vec<(String, u64)> {
        let errors = self.key_errors.lock().unwrap_or_else(|p| p.into_inner());
        errors
            .iter()
            .filter(|(chain, _)| self.key_backend_up.with_label_values(&[chain]).get() == 0)
            .cloned()
            .collect()
    }

    /// Keeps one grant's latency for the status page.
    pub(super) fn grant_time(&self, elapsed: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back((Instant::now(), elapsed.as_secs_f64()));
    }

    /// The grant latencies (seconds) of the last [`WINDOW`], oldest first.
    pub fn recent_grants(&self) -> Vec<f64> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let since = Instant::now().checked_sub(WINDOW);
        recent
            .iter()
            .filter(|(at, _)| since.is_none_or(|since| *at >= since))
            .map(|(_, secs)| *secs)
            .collect()
    }
}

/// The `q` quantile (0..=1) of `samples` by the nearest-rank method;
/// `None` for no samples.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&samples, 0.5), Some(50.0));
        assert_eq!(quantile(&samples, 0.99), Some(99.0));
        assert_eq!(quantile(&samples, 1.0), Some(100.0));
        assert_eq!(quantile(&[3.0], 0.99), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_ring_keeps_the_newest_grants() {
        let ops = OpsMetrics::build(&Registry::new()).expect("build");
        for i in 0..RECENT + 10 {
            ops.grant_time(Duration::from_micros(i as u64));
        }
        let recent = ops.recent_grants();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0], Duration::from_micros(10).as_secs_f64());
    }

    #[test]
    fn key_backend_health_follows_the_last_signature() {
        let ops = OpsMetrics::build(&Registry::new()).expect("build");
        ops.sign("a", "key_error");
        assert_eq!(ops.key_errors().len(), 1);
        ops.sign("a", "signed");
        assert!(ops.key_errors().is_empty());
        assert!(ops.last_signature.with_label_values(&["a"]).get() > 0.0);
        ops.signed_at("a", 1000);
        assert!(ops.last_signature.with_label_values(&["a"]).get() > 1.0);
    }

    /// The metric names a node's `/metrics` serves once it has signed,
    /// seen a validator and a peer (vectors appear with their first label).
    fn served_names() -> std::collections::BTreeSet<String> {
        let m = super::super::build().expect("build");
        m.sign("c", "prevote", "signed");
        m.sign("c", "prevote", "refused");
        m.grant_time("c", Duration::from_millis(1));
        m.stage(super::super::Stage::Commit, Duration::from_millis(1));
        m.validator("c", "tcp://v", true);
        m.ops.follower_lag.with_label_values(&["2"]).set(0);
        m.ops.peer_reachable.with_label_values(&["2"]).set(1);
        m.ops.key_backend_up.with_label_values(&["c"]).set(1);
        m.render()
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| line.split(['{', ' ']).next().unwrap_or("").to_string())
            .collect()
    }

    /// Every `quorumkms_*` name in `text`.
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("quorumkms_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
        names
    }

    fn repo_file(path: &str) -> String {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    #[test]
    fn dashboard_and_alert_rules_use_only_exported_metrics() {
        let served = served_names();
        assert!(
            served.contains("quorumkms_grant_seconds_bucket"),
            "{served:?}"
        );
        for file in [
            "cluster/monitoring/dashboard.json",
            "cluster/monitoring/alerts.yml",
        ] {
            let used = names_in(&repo_file(file));
            assert!(!used.is_empty(), "{file} names no metric");
            let unknown: Vec<_> = used.difference(&served).collect();
            assert!(
                unknown.is_empty(),
                "{file} uses metrics no node exports: {unknown:?}"
            );
        }
    }

    #[test]
    fn the_operations_doc_names_every_metric() {
        let documented = names_in(&repo_file("docs/operations.md"));
        let missing: Vec<_> = served_names()
            .into_iter()
            .map(|name| {
                // A histogram's series are documented under its name.
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).map(str::to_string))
                    .filter(|base| base.ends_with("_seconds"))
                    .unwrap_or(name)
            })
            .filter(|name| !documented.contains(name))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/operations.md does not name {missing:?}"
        );
    }
}
