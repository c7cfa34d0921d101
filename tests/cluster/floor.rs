//! A chain's floor on a fresh cluster: before the chain's first grant a
//! node takes the chain's latest height from a CometBFT RPC (or the first
//! request's height) and commits it as a raise, which every node applies;
//! status says where it came from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quorumkms::cluster::{Node, Raiser};
use quorumkms::grant::floor::http::RpcUrl;
use quorumkms::grant::floor::{Floor, FloorGranter};
use quorumkms::grant::{GrantError, Granter};
use quorumkms::testnet::rpc::FakeRpc;
use quorumkms::watermark::{Position, Refusal, Step, Verdict};

use crate::support::{TestCluster, attempt};

const CHAIN: &str = "floor-chain";

/// Each node's granter as `quorumkms start` builds it.
fn granters(cluster: &TestCluster, floor: Floor) -> Vec<FloorGranter<Node>> {
    (1..=3)
        .map(|id| {
            let floors = BTreeMap::from([(CHAIN.to_string(), floor.clone())]);
            FloorGranter::new(Arc::new(cluster.node(id).clone()), floors)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_cluster_signs_nothing_at_or_below_the_rpcs_latest_height() {
    let mut cluster = TestCluster::start(3).await;
    let rpc = FakeRpc::start(CHAIN, 1000).await.expect("fake rpc");
    rpc.set_up(false);
    let url = RpcUrl::parse(rpc.url()).expect("url");
    let nodes = granters(&cluster, Floor::Rpc(vec![url]));

    let down = nodes[1]
        .grant(CHAIN, attempt(1001, 0, Step::Prevote, "a"))
        .await;
    assert!(matches!(down, Err(GrantError::NoFloor(_))), "{down:?}");
    assert!(!cluster.node(1).applied_state().chains.contains_key(CHAIN));

    rpc.set_up(true);
    let below = nodes[2]
        .grant(CHAIN, attempt(900, 0, Step::Prevote, "b"))
        .await
        .expect("verdict");
    assert_eq!(
        below,
        Verdict::Refuse(Refusal::HeightRegression {
            got: 900,
            last: 1000
        })
    );
    let at = nodes[0]
        .grant(CHAIN, attempt(1000, 5, Step::Precommit, "c"))
        .await
        .expect("verdict");
    assert!(matches!(at, Verdict::Refuse(_)), "{at:?}");
    // Another node, another RPC answer: the floor is not taken again.
    rpc.set_height(2000);
    let above = nodes[1]
        .grant(CHAIN, attempt(1001, 0, Step::Prevote, "d"))
        .await
        .expect("verdict");
    assert_eq!(above, Verdict::Sign(b"d".to_vec()));

    let signed = Position {
        height: 1001,
        round: 0,
        step: Step::Prevote,
    };
    cluster
        .wait_watermark(CHAIN, signed, Duration::from_secs(10))
        .await;
    for id in 1..=3 {
        let status = cluster.node(id).status();
        let record = status.chains[CHAIN].last_raise.clone().expect("a record");
        assert_eq!(
            record.by,
            Raiser::Floor {
                source: format!("rpc {}", rpc.url())
            }
        );
        assert_eq!(record.position.map(|p| p.height), Some(1000));
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_request_sets_the_floor_and_no_floor_signs_nothing() {
    let mut cluster = TestCluster::start(3).await;
    let nodes = granters(&cluster, Floor::FirstRequest);
    let first = nodes[0]
        .grant(CHAIN, attempt(50, 1, Step::Prevote, "a"))
        .await
        .expect("verdict");
    assert_eq!(first, Verdict::Sign(b"a".to_vec()));
    let below = nodes[2]
        .grant(CHAIN, attempt(49, 0, Step::Prevote, "b"))
        .await
        .expect("verdict");
    assert!(
        matches!(below, Verdict::Refuse(Refusal::HeightRegression { .. })),
        "{below:?}"
    );
    let granted = Position {
        height: 50,
        round: 1,
        step: Step::Prevote,
    };
    cluster
        .wait_watermark(CHAIN, granted, Duration::from_secs(10))
        .await;
    let record = cluster.node(1).status().chains[CHAIN]
        .last_raise
        .clone()
        .expect("a record");
    assert_eq!(
        record.by,
        Raiser::Floor {
            source: "first request (height 50)".into()
        }
    );
    assert_eq!(record.position.map(|p| p.height), Some(49));

    // A chain with no floor configured and no watermark signs nothing.
    let unset = FloorGranter::new(Arc::new(cluster.node(2).clone()), BTreeMap::new());
    let refused = unset
        .grant("other-chain", attempt(5, 0, Step::Prevote, "x"))
        .await;
    match refused {
        Err(GrantError::NoFloor(cause)) => {
            assert!(cause.to_string().contains("state import"), "{cause}")
        }
        other => panic!("expected no floor, got {other:?}"),
    }
    cluster.stop_all().await;
}
