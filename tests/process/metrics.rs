//! Prometheus metrics and health endpoints of real processes: sign counters,
//! grant latency, double-sign refusals, validator connection state and Raft
//! gauges move as a validator signs; `/readyz` turns 503 without a quorum.

use std::time::Duration;

use crate::support::Cluster;
use crate::support::metrics::sample;
use crate::support::signing::start_cluster;
use tokio::time::Instant;

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_follow_signing_and_readiness_follows_quorum() {
    let (mut ops, validator) = start_cluster(Cluster::builder(3).metrics()).await;
    let (status, body) = ops.http_get(1, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok\n");
    let (status, _) = ops.http_get(1, "/nope").await;
    assert!(status.contains("404"), "{status}");

    let signing = validator.start_signing();
    signing.wait_more(15, T).await;
    // Some node holds the validator connection while it signs.
    let deadline = Instant::now() + T;
    'connected: loop {
        for id in 1..=3 {
            let (_, body) = ops.http_get(id, "/metrics").await;
            let gauge = sample(
                &body,
                "quorumkms_validator_connected",
                &["chain=\"demo-1\""],
            );
            if gauge == Some(1.0) {
                break 'connected;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node reports a validator connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = signing.stop().await;
    assert!(counts.refused > 0, "{counts:?}");

    let mut signed = 0.0;
    let mut refusals = 0.0;
    let mut grants = 0.0;
    for id in 1..=3 {
        let deadline = Instant::now() + T;
        loop {
            let (status, _) = ops.http_get(id, "/readyz").await;
            if status.contains("200") {
                break;
            }
            assert!(Instant::now() < deadline, "node {id} not ready: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, body) = ops.http_get(id, "/metrics").await;
        signed += sample(
            &body,
            "quorumkms_sign_requests_total",
            &["chain=\"demo-1\"", "type=\"prevote\"", "result=\"signed\""],
        )
        .unwrap_or(0.0);
        refusals += sample(
            &body,
            "quorumkms_double_sign_refusals_total",
            &["chain=\"demo-1\""],
        )
        .unwrap_or(0.0);
        grants += sample(
            &body,
            "quorumkms_grant_seconds_count",
            &["chain=\"demo-1\""],
        )
        .unwrap_or(0.0);
        assert!(sample(&body, "quorumkms_raft_term", &[]).unwrap_or(0.0) >= 1.0);
        assert!(sample(&body, "quorumkms_raft_applied_index", &[]).unwrap_or(0.0) > 0.0);
        assert_eq!(sample(&body, "quorumkms_raft_voters", &[]), Some(3.0));
    }
    assert!(signed >= 1.0, "no signed prevote counted");
    assert!(
        refusals >= counts.refused as f64,
        "refusals {refusals} < {counts:?}"
    );
    assert!(grants >= signed, "grant latency not recorded");

    let leader = ops.leader(T).await;
    let (_, body) = ops.http_get(leader, "/metrics").await;
    assert_eq!(sample(&body, "quorumkms_raft_is_leader", &[]), Some(1.0));
    assert_eq!(
        sample(&body, "quorumkms_raft_leader", &[]),
        Some(leader as f64)
    );

    // Lose the quorum: the survivor stops being ready.
    let survivor = (1..=3).find(|id| *id != leader).expect("a follower");
    for id in 1..=3 {
        if id != survivor {
            ops.kill(id).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = ops.http_get(survivor, "/readyz").await;
        if status.contains("503") {
            break;
        }
        assert!(Instant::now() < deadline, "survivor still ready: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = ops.http_get(survivor, "/healthz").await;
    assert!(status.contains("200"));
    ops.stop_all().await;
}
