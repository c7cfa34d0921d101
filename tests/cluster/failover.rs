//! Losing the leader, and restarting every node: grants continue under a
//! new leader, watermarks survive restarts, and nothing is signed twice.

use std::time::Duration;

use crate::support::{TestCluster, attempt, grant_on};
use quorumkms::watermark::{Position, Refusal, Step, Verdict};

const CHAIN: &str = "failover-chain";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_loss_elects_a_new_leader_and_grants_continue() {
    let mut cluster = TestCluster::start(3).await;
    for height in 1..=5 {
        let id = (height as u64 % 3) + 1;
        let verdict = cluster
            .grant(
                id,
                CHAIN,
                attempt(height, 0, Step::Precommit, &format!("b{height}")),
            )
            .await
            .expect("grant");
        assert!(matches!(verdict, Verdict::Sign(_)));
    }
    let old_leader = cluster.wait_leader(Duration::from_secs(5)).await;
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != old_leader).collect();

    // Conflicting grants race the leader's loss on both survivors.
    let mut racers = Vec::new();
    for height in 6..=12 {
        for id in &survivors {
            racers.push(tokio::spawn(grant_on(
                cluster.node(*id).clone(),
                cluster.collector.clone(),
                CHAIN.to_string(),
                attempt(height, 0, Step::Precommit, &format!("h{height}-n{id}")),
            )));
        }
    }
    cluster.stop(old_leader).await;
    for racer in racers {
        // Unavailable is acceptable mid-failover; a double sign is not.
        let _ = racer.await.expect("task");
    }

    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, old_leader);
    for height in 13..=20 {
        let id = survivors[height as usize % 2];
        let verdict = cluster
            .grant(
                id,
                CHAIN,
                attempt(height, 0, Step::Precommit, &format!("b{height}")),
            )
            .await
            .expect("grant after failover");
        assert_eq!(verdict, Verdict::Sign(format!("b{height}").into_bytes()));
    }
    assert_eq!(cluster.collector.conflicts(), 0);

    // The old leader comes back as a follower and catches up.
    cluster.restart(old_leader).await;
    let top = Position {
        height: 20,
        round: 0,
        step: Step::Precommit,
    };
    cluster
        .wait_watermark(CHAIN, top, Duration::from_secs(10))
        .await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_restart_keeps_watermarks() {
    let mut cluster = TestCluster::start(3).await;
    for height in 1..=5 {
        cluster
            .grant(
                1,
                CHAIN,
                attempt(height, 0, Step::Prevote, &format!("b{height}")),
            )
            .await
            .expect("grant");
    }
    let top = Position {
        height: 5,
        round: 0,
        step: Step::Prevote,
    };
    cluster
        .wait_watermark(CHAIN, top, Duration::from_secs(5))
        .await;
    cluster.stop_all().await;

    for id in 1..=3 {
        cluster.restart(id).await;
    }
    // The applied state is on disk: it is there before any election.
    for node in cluster.nodes.values() {
        let state = node.applied_state();
        assert_eq!(
            state.chains[CHAIN].position,
            Some(top),
            "node {}",
            node.id()
        );
    }
    // A second initialize on a formed cluster is a no-op.
    assert!(!cluster.node(2).initialize().await.expect("initialize"));
    cluster.wait_leader(Duration::from_secs(10)).await;

    let regress = cluster
        .grant(2, CHAIN, attempt(3, 0, Step::Prevote, "old"))
        .await
        .expect("verdict");
    assert!(matches!(
        regress,
        Verdict::Refuse(Refusal::HeightRegression { .. })
    ));
    let conflict = cluster
        .grant(3, CHAIN, attempt(5, 0, Step::Prevote, "other"))
        .await
        .expect("verdict");
    assert!(matches!(
        conflict,
        Verdict::Refuse(Refusal::ConflictingData { .. })
    ));
    let repeat = cluster
        .grant(3, CHAIN, attempt(5, 0, Step::Prevote, "b5"))
        .await
        .expect("verdict");
    assert_eq!(repeat, Verdict::Sign(b"b5".to_vec()));
    let next = cluster
        .grant(1, CHAIN, attempt(6, 0, Step::Prevote, "b6"))
        .await
        .expect("verdict");
    assert_eq!(next, Verdict::Sign(b"b6".to_vec()));
    assert_eq!(cluster.collector.conflicts(), 0);
    cluster.stop_all().await;
}
