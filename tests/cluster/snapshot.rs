//! Log compaction and snapshot transfer: after enough grants the log is
//! purged behind a snapshot, and a node that missed those entries catches
//! up from the snapshot over the network.

use std::time::Duration;

use crate::support::{TestCluster, attempt};
use quorumkms::watermark::{Position, Step, Verdict};

const CHAIN: &str = "snapshot-chain";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_node_catches_up_from_a_snapshot() {
    let mut cluster = TestCluster::start(3).await;
    cluster.stop(3).await;
    let heights = 620;
    for height in 1..=heights {
        let verdict = cluster
            .grant(
                1,
                CHAIN,
                attempt(height, 0, Step::Precommit, &format!("b{height}")),
            )
            .await
            .expect("grant");
        assert!(matches!(verdict, Verdict::Sign(_)), "height {height}");
    }
    let leader = cluster.wait_leader(Duration::from_secs(5)).await;
    // The leader builds the snapshot and purges the log behind it in the
    // background, and delays the purge while a replication request to the
    // stopped node still covers those entries; so wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = cluster.node(leader).metrics();
        if metrics.snapshot.is_some() && metrics.purged.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "log not compacted: {metrics:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.restart(3).await;
    let top = Position {
        height: heights,
        round: 0,
        step: Step::Precommit,
    };
    cluster
        .wait_watermark(CHAIN, top, Duration::from_secs(20))
        .await;
    assert!(cluster.node(3).metrics().snapshot.is_some());
    assert_eq!(cluster.collector.conflicts(), 0);
    cluster.stop_all().await;
}
