//! A node cut off from its quorum, and a node whose disk fails: neither
//! signs anything new, both answer within the grant timeout, and the failed
//! disk's node recovers once writes succeed again.

use std::time::{Duration, Instant};

use crate::support::{TestCluster, attempt};
use quorumkms::grant::GrantError;
use quorumkms::watermark::{Position, Step, Verdict};

const CHAIN: &str = "minority-chain";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_node_is_unavailable_within_grant_timeout() {
    let mut cluster = TestCluster::start(3).await;
    let granted = cluster
        .grant(1, CHAIN, attempt(1, 0, Step::Prevote, "b1"))
        .await
        .expect("grant");
    assert_eq!(granted, Verdict::Sign(b"b1".to_vec()));
    let one = Position {
        height: 1,
        round: 0,
        step: Step::Prevote,
    };
    cluster
        .wait_watermark(CHAIN, one, Duration::from_secs(5))
        .await;

    cluster.stop(2).await;
    cluster.stop(3).await;
    let grant_timeout = Duration::from_millis(cluster.configs[&1].grant_timeout_ms);

    for height in 2..=3 {
        let started = Instant::now();
        let result = cluster
            .grant(1, CHAIN, attempt(height, 0, Step::Prevote, "new"))
            .await;
        let took = started.elapsed();
        assert!(
            matches!(result, Err(GrantError::Unavailable(_))),
            "height {height}: {result:?}"
        );
        assert!(
            took <= grant_timeout + Duration::from_millis(1000),
            "took {took:?}"
        );
    }
    // Without a quorum the node says so, so a session can drop its validator.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.node(1).has_quorum_leader() {
        assert!(Instant::now() < deadline, "still claims a quorum leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Re-serving exactly what was already granted needs no commit.
    let again = cluster
        .grant(1, CHAIN, attempt(1, 0, Step::Prevote, "b1"))
        .await
        .expect("fast path");
    assert_eq!(again, Verdict::Sign(b"b1".to_vec()));
    assert_eq!(cluster.collector.conflicts(), 0);
    assert_eq!(cluster.collector.signed_positions(), 1);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_disk_refuses_then_recovers() {
    let mut cluster = TestCluster::start_with(3, true).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    cluster
        .grant(leader, CHAIN, attempt(1, 0, Step::Prevote, "b1"))
        .await
        .expect("grant");

    // The leader's disk fills up: it must refuse, never panic, never sign.
    cluster.disks[&leader].set_fail_writes(true);
    let result = cluster
        .grant(leader, CHAIN, attempt(2, 0, Step::Prevote, "b2"))
        .await;
    assert!(
        matches!(
            result,
            Err(GrantError::Storage(_)) | Err(GrantError::Unavailable(_))
        ),
        "{result:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.node(leader).storage_fault().is_none() {
        assert!(Instant::now() < deadline, "no storage fault reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = cluster
        .grant(leader, CHAIN, attempt(3, 0, Step::Prevote, "b3"))
        .await;
    assert!(
        matches!(refused, Err(GrantError::Storage(_))),
        "{refused:?}"
    );

    // The others elect a new leader and keep signing.
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result = cluster
            .grant(others[0], CHAIN, attempt(4, 0, Step::Prevote, "b4"))
            .await;
        if result.is_ok() {
            assert_eq!(result, Ok(Verdict::Sign(b"b4".to_vec())));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no grant after failover: {result:?}"
        );
    }

    // The disk has room again: the node rebuilds Raft from its store,
    // rejoins, catches up and grants again.
    cluster.disks[&leader].set_fail_writes(false);
    let four = Position {
        height: 4,
        round: 0,
        step: Step::Prevote,
    };
    cluster
        .wait_watermark(CHAIN, four, Duration::from_secs(15))
        .await;
    assert!(cluster.node(leader).storage_fault().is_none());
    let verdict = cluster
        .grant(leader, CHAIN, attempt(5, 0, Step::Prevote, "b5"))
        .await
        .expect("grant after recovery");
    assert_eq!(verdict, Verdict::Sign(b"b5".to_vec()));
    assert_eq!(cluster.collector.conflicts(), 0);
    cluster.stop_all().await;
}
