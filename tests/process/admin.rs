//! Membership changes on a cluster of real processes while a validator
//! keeps signing: grow 3 → 5 and shrink 5 → 3 (over mutual TLS), replace a
//! dead node, refuse unsafe changes, move leadership, take a snapshot. The
//! checker must count zero conflicting signatures throughout.

use std::time::Duration;

use crate::support::signing::start_cluster;
use crate::support::{Cluster, retry};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grow_three_to_five_and_shrink_to_three_while_signing() {
    let (mut ops, validator) = start_cluster(Cluster::builder(5).initial(3).tls().metrics()).await;
    let signing = validator.start_signing();
    signing.wait_more(6, T).await;

    for id in [4, 5] {
        ops.spawn(id as usize);
        let message = ops
            .client(1)
            .add_learner(id, &ops.addr(id as usize))
            .await
            .expect("add learner");
        assert!(message.contains("learner"), "{message}");
    }
    for id in [4, 5] {
        let client = ops.client(2);
        retry(T, || {
            let client = client.clone();
            async move { client.promote(id).await }
        })
        .await
        .expect("promote");
    }
    assert_eq!(ops.voters().await, vec![1, 2, 3, 4, 5]);
    signing.wait_more(6, T).await;

    let leader = ops.leader(T).await as u64;
    let victims: Vec<u64> = (1..=5).filter(|id| *id != leader).take(2).collect();
    for victim in victims {
        let message = ops
            .client(leader as usize)
            .remove(victim, false)
            .await
            .expect("remove");
        assert!(message.contains("removed"), "{message}");
        // A removed node stops being ready to sign by itself.
        let deadline = tokio::time::Instant::now() + T;
        while !ops
            .http_get(victim as usize, "/readyz")
            .await
            .0
            .contains("503")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {victim} still ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ops.kill(victim as usize).await;
    }
    assert_eq!(ops.voters().await.len(), 3);
    signing.wait_more(6, T).await;

    let tally = signing.checker.report();
    let counts = signing.stop().await;
    assert_eq!(tally.conflicts, 0, "conflicting signatures: {tally:?}");
    assert_eq!(tally.invalid, 0, "invalid signatures: {tally:?}");
    assert!(
        counts.refused > 0,
        "no double-sign attempt was refused: {counts:?}"
    );
    ops.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replace_a_dead_node_refusing_unsafe_changes() {
    let (mut ops, validator) = start_cluster(Cluster::builder(4).initial(3).metrics()).await;
    let signing = validator.start_signing();
    signing.wait_more(3, T).await;

    let message = ops.client(1).snapshot().await.expect("snapshot");
    assert!(message.contains("snapshot at log index"), "{message}");

    // Move leadership to a follower.
    let leader = ops.leader(T).await as u64;
    let target = (1..=3).find(|id| *id != leader).expect("a follower");
    let client = ops.client(leader as usize);
    let first = client.transfer_leader(target).await;
    eprintln!("first transfer attempt: {first:?}");
    retry(T, || {
        let client = client.clone();
        async move { client.transfer_leader(target).await }
    })
    .await
    .expect("transfer leadership");
    assert_eq!(ops.leader(T).await as u64, target);
    signing.wait_more(3, T).await;

    // One follower dies.
    let dead = (1..=3).find(|id| *id != target).expect("a follower");
    let other = (1..=3)
        .find(|id| *id != target && *id != dead)
        .expect("the third node");
    ops.kill(dead as usize).await;

    // Removing the other healthy voter would leave {leader, dead}: refused.
    let refusal = ops
        .client(other as usize)
        .remove(other, false)
        .await
        .expect_err("unsafe removal");
    assert!(refusal.to_string().contains("healthy"), "{refusal}");
    // Removing the leader is refused too.
    let refusal = ops
        .client(other as usize)
        .remove(target, false)
        .await
        .expect_err("leader removal");
    assert!(refusal.to_string().contains("leader"), "{refusal}");

    // A replacement joins as a learner; it cannot be promoted before it
    // has replicated anything.
    ops.client(other as usize)
        .add_learner(4, &ops.addr(4))
        .await
        .expect("add learner");
    let refusal = ops
        .client(target as usize)
        .promote(4)
        .await
        .expect_err("promote");
    assert!(refusal.to_string().contains("replicated"), "{refusal}");
    let refusal = ops
        .client(target as usize)
        .promote(9)
        .await
        .expect_err("promote");
    assert!(refusal.to_string().contains("not a learner"), "{refusal}");
    ops.spawn(4);
    let client = ops.client(target as usize);
    retry(T, || {
        let client = client.clone();
        async move { client.promote(4).await }
    })
    .await
    .expect("promote the replacement");
    ops.client(target as usize)
        .remove(dead, false)
        .await
        .expect("remove the dead node");
    let mut voters = ops.voters().await;
    voters.sort_unstable();
    let mut expected = vec![target, other, 4];
    expected.sort_unstable();
    assert_eq!(voters, expected);
    signing.wait_more(6, T).await;

    let report = signing.checker.report();
    signing.stop().await;
    assert_eq!(report.conflicts, 0, "{report:?}");
    assert_eq!(report.invalid, 0, "{report:?}");
    ops.stop_all().await;
}
