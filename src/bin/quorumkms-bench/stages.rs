//! Where a grant's time goes: each node's `quorumkms_grant_stage_seconds`
//! histogram, read from its `/metrics`, as a mean per stage.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use quorumkms::metrics::Stage;

/// Mean seconds and count per stage label, for one node.
pub type StageMeans = BTreeMap<&'static str, (f64, u64)>;

/// Reads `/metrics` at `addr` (host:port) and returns its stage means.
pub async fn scrape(addr: &str) -> Result<StageMeans, String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .await
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .await
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    Ok(means(&body))
}

/// The stage means in a Prometheus text exposition.
pub fn means(text: &str) -> StageMeans {
    let value = |suffix: &str, label: &str| -> f64 {
        let prefix = format!("quorumkms_grant_stage_seconds_{suffix}{{stage=\"{label}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Stage::ALL
        .iter()
        .filter_map(|stage| {
            let label = stage.label();
            let count = value("count", label);
            (count > 0.0).then(|| (label, (value("sum", label) / count, count as u64)))
        })
        .collect()
}

/// One line per node: `stage mean-µs (count)`, in signing-path order.
pub fn render(nodes: &[(String, StageMeans)]) -> String {
    let mut out = String::new();
    for (name, means) in nodes {
        let parts: Vec<String> = Stage::ALL
            .iter()
            .filter_map(|s| {
                means
                    .get(s.label())
                    .map(|(mean, count)| format!("{} {:.0}us ({count})", s.label(), mean * 1e6))
            })
            .collect();
        out.push_str(&format!("    {name}: {}\n", parts.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_come_from_sum_over_count() {
        let text = "quorumkms_grant_stage_seconds_sum{stage=\"commit\"} 0.003\n\
                    quorumkms_grant_stage_seconds_count{stage=\"commit\"} 3\n\
                    quorumkms_grant_stage_seconds_count{stage=\"apply\"} 0\n";
        let m = means(text);
        assert_eq!(m.len(), 1, "a stage never seen is left out");
        let (mean, count) = m["commit"];
        assert!((mean - 0.001).abs() < 1e-12);
        assert_eq!(count, 3);
    }
}
