//! Conflicting attempts for one position, sent to different nodes at the
//! same time: the cluster grants exactly one payload per position.

use crate::support::{TestCluster, attempt, grant_on};
use quorumkms::watermark::{Refusal, Step, Verdict};

const CHAIN: &str = "race-chain";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_attempts_grant_one_payload() {
    let mut cluster = TestCluster::start(3).await;
    for height in 1..=30 {
        let mut tasks = Vec::new();
        for id in 1..=3u64 {
            let node = cluster.node(id).clone();
            let payload = format!("h{height}-from-node{id}");
            tasks.push(tokio::spawn(grant_on(
                node,
                cluster.collector.clone(),
                CHAIN.to_string(),
                attempt(height, 0, Step::Prevote, &payload),
            )));
        }
        let mut signed = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(Verdict::Sign(_)) => signed += 1,
                Ok(Verdict::Refuse(Refusal::ConflictingData { .. })) => {}
                other => panic!("unexpected answer at height {height}: {other:?}"),
            }
        }
        assert_eq!(signed, 1, "exactly one payload granted at height {height}");
    }
    assert_eq!(cluster.collector.conflicts(), 0);
    assert_eq!(cluster.collector.signed_positions(), 30);
    cluster.stop_all().await;
}
