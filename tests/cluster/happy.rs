//! A healthy 3-node cluster: grants from every node agree, watermarks
//! replicate to every node, and raise-only imports never lower a watermark.

use std::time::Duration;

use crate::support::{TestCluster, attempt};
use quorumkms::cluster::Raiser;
use quorumkms::watermark::{Position, Refusal, SignState, Step, Verdict};

const CHAIN: &str = "test-chain";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_from_every_node_agree() {
    let mut cluster = TestCluster::start(3).await;
    for height in 1..=5 {
        for step in [Step::Propose, Step::Prevote, Step::Precommit] {
            let bytes = format!("block-{height}-{step}");
            for id in 1..=3 {
                let verdict = cluster
                    .grant(id, CHAIN, attempt(height, 0, step, &bytes))
                    .await
                    .expect("healthy cluster grants");
                assert_eq!(
                    verdict,
                    Verdict::Sign(bytes.clone().into_bytes()),
                    "node {id}"
                );
            }
        }
    }
    let top = Position {
        height: 5,
        round: 0,
        step: Step::Precommit,
    };
    cluster
        .wait_watermark(CHAIN, top, Duration::from_secs(5))
        .await;
    for node in cluster.nodes.values() {
        let state = node.applied_state();
        let chain = &state.chains[CHAIN];
        assert_eq!(chain.position, Some(top), "node {}", node.id());
        assert_eq!(chain.sign_bytes, b"block-5-precommit".to_vec());
    }
    // A regression is refused by whichever node is asked.
    let verdict = cluster
        .grant(2, CHAIN, attempt(4, 0, Step::Precommit, "old"))
        .await
        .expect("verdict");
    assert!(matches!(
        verdict,
        Verdict::Refuse(Refusal::HeightRegression { got: 4, last: 5 })
    ));
    assert_eq!(cluster.collector.conflicts(), 0);
    assert_eq!(cluster.collector.signed_positions(), 15);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raise_only_import() {
    let mut cluster = TestCluster::start(3).await;
    let imported = SignState {
        position: Some(Position {
            height: 100,
            round: 1,
            step: Step::Prevote,
        }),
        sign_bytes: b"imported".to_vec(),
        signature: None,
        owner: None,
    };
    let alice = Raiser::Operator {
        serial: "0abc".into(),
        subject: "quorumkms operator alice".into(),
    };
    let raised = cluster
        .node(2)
        .raise(CHAIN, imported.clone(), alice.clone())
        .await;
    assert_eq!(raised, Ok(Ok(())));
    let raised_to = imported.position.expect("a position");
    cluster
        .wait_watermark(CHAIN, raised_to, Duration::from_secs(10))
        .await;
    let record = cluster.node(2).applied_state().raises[CHAIN].clone();
    assert_eq!((record.by, record.position), (alice, imported.position));

    // Lower or equal imports are refused and change nothing.
    let mut lower = imported.clone();
    lower.position = Some(Position {
        height: 50,
        round: 0,
        step: Step::Precommit,
    });
    let refused = cluster
        .node(3)
        .raise(CHAIN, lower, Raiser::Plaintext)
        .await
        .expect("verdict");
    assert!(matches!(refused, Err(Refusal::HeightRegression { .. })));
    // A refused raise leaves the record of the last applied one.
    assert_eq!(
        cluster.node(3).applied_state().raises[CHAIN].index,
        record.index
    );
    let again = cluster
        .node(1)
        .raise(CHAIN, imported.clone(), Raiser::Plaintext)
        .await
        .expect("verdict");
    assert!(again.is_err());

    // Grants follow the imported watermark.
    let below = cluster
        .grant(1, CHAIN, attempt(99, 0, Step::Precommit, "x"))
        .await
        .expect("verdict");
    assert!(matches!(
        below,
        Verdict::Refuse(Refusal::HeightRegression { .. })
    ));
    let same = cluster
        .grant(3, CHAIN, attempt(100, 1, Step::Prevote, "imported"))
        .await
        .expect("verdict");
    assert_eq!(same, Verdict::Sign(b"imported".to_vec()));
    let above = cluster
        .grant(2, CHAIN, attempt(100, 1, Step::Precommit, "next"))
        .await
        .expect("verdict");
    assert_eq!(above, Verdict::Sign(b"next".to_vec()));
    let top = Position {
        height: 100,
        round: 1,
        step: Step::Precommit,
    };
    cluster
        .wait_watermark(CHAIN, top, Duration::from_secs(5))
        .await;
    assert_eq!(cluster.collector.conflicts(), 0);
    cluster.stop_all().await;
}

/// Grants that reach the leader together share log entries (group
/// commit), and each still gets the verdict it would get alone: two
/// different blocks at one position in the same batch sign one, refuse
/// the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_share_entries_and_keep_their_verdicts() {
    use crate::support::grant_on;
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let node = cluster.node(leader).clone();
    let index = |node: &quorumkms::cluster::Node| {
        node.applied_state().last_applied.map_or(0, |id| id.index)
    };
    let before = index(&node);
    const CHAINS: usize = 32;
    let mut grants = Vec::new();
    for c in 0..CHAINS {
        grants.push(grant_on(
            node.clone(),
            cluster.collector.clone(),
            format!("chain-{c}"),
            attempt(1, 0, Step::Prevote, &format!("block-{c}")),
        ));
    }
    // Two blocks for one position of chain-0, racing the rest.
    grants.push(grant_on(
        node.clone(),
        cluster.collector.clone(),
        "chain-0".to_string(),
        attempt(1, 0, Step::Prevote, "other-block"),
    ));
    let verdicts = futures_util::future::join_all(grants).await;
    let signed = verdicts
        .iter()
        .filter(|v| matches!(v, Ok(Verdict::Sign(_))))
        .count();
    let refused: Vec<_> = verdicts
        .iter()
        .filter(|v| matches!(v, Ok(Verdict::Refuse(Refusal::ConflictingData { .. }))))
        .collect();
    assert_eq!(signed, CHAINS, "every chain signs once: {verdicts:?}");
    assert_eq!(
        refused.len(),
        1,
        "the second block is refused: {verdicts:?}"
    );
    let entries = index(&node) - before;
    assert!(
        entries < CHAINS as u64,
        "{} grants took {entries} entries: they did not share any",
        CHAINS + 1
    );
    assert_eq!(cluster.collector.conflicts(), 0);
    cluster.stop_all().await;
}
