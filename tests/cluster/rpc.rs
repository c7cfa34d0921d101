//! The cluster service never panics on bytes it cannot decode: it answers
//! with an `invalid_argument` status and keeps serving.

/// `message` as a request from a member of `node`'s cluster.
fn member<T>(node: &quorumkms::cluster::Node, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let id = node.cluster_id().expect("the node has a cluster id");
    request.metadata_mut().insert(
        quorumkms::cluster::identity::CLUSTER_ID_HEADER,
        id.to_string().parse().unwrap(),
    );
    request
}

use crate::support::{TestCluster, attempt};
use quorumkms::cluster::pb;
use quorumkms::cluster::pb::cluster_client::ClusterClient;
use quorumkms::watermark::{Position, Step, Verdict};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_rpcs_get_a_status() {
    let mut cluster = TestCluster::start(3).await;
    let addr = cluster.node(2).local_addr().to_string();
    let mut client = ClusterClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let garbage = b"\xff not json".to_vec();
    let status = client
        .append_entries(member(
            cluster.node(2),
            pb::RaftRequest {
                data: garbage.clone(),
            },
        ))
        .await
        .expect_err("append_entries");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .vote(member(
            cluster.node(2),
            pb::RaftRequest {
                data: garbage.clone(),
            },
        ))
        .await
        .expect_err("vote");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .install_snapshot(member(
            cluster.node(2),
            pb::RaftRequest {
                data: garbage.clone(),
            },
        ))
        .await
        .expect_err("install_snapshot");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .forward(member(
            cluster.node(2),
            pb::ForwardRequest { command: garbage },
        ))
        .await
        .expect_err("forward");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // The node still serves.
    let verdict = cluster
        .grant(2, "rpc-chain", attempt(1, 0, Step::Prevote, "b1"))
        .await
        .expect("grant");
    assert_eq!(verdict, Verdict::Sign(b"b1".to_vec()));
    cluster.stop_all().await;
}

/// A snapshot chunk's offset never decides an allocation: a chunk far past
/// any real snapshot's size is refused, and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_chunk_far_out_is_refused() {
    use openraft::raft::InstallSnapshotRequest;
    use openraft::{SnapshotMeta, StoredMembership};
    use quorumkms::cluster::service::MAX_SNAPSHOT_BYTES;
    use quorumkms::cluster::types::TypeConfig;

    let mut cluster = TestCluster::start(3).await;
    let addr = cluster.node(2).local_addr().to_string();
    let mut client = ClusterClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    // The node's own vote, so the request passes openraft's vote check and
    // reaches the chunk.
    let vote = cluster.node(2).metrics().vote;
    let chunk = |offset: u64| {
        let request = InstallSnapshotRequest::<TypeConfig> {
            vote,
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: "far-out".into(),
            },
            offset,
            data: vec![0; 16],
            done: false,
        };
        pb::RaftRequest {
            data: serde_json::to_vec(&request).unwrap(),
        }
    };
    client
        .install_snapshot(member(cluster.node(2), chunk(0)))
        .await
        .expect("the first chunk is taken");
    for offset in [1 << 40, MAX_SNAPSHOT_BYTES, u64::MAX - 4] {
        let status = client
            .install_snapshot(member(cluster.node(2), chunk(offset)))
            .await
            .expect_err("a chunk past the limit");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{offset}");
    }

    // The node still serves.
    let verdict = cluster
        .grant(2, "rpc-chain", attempt(1, 0, Step::Prevote, "b1"))
        .await
        .expect("grant");
    assert_eq!(verdict, Verdict::Sign(b"b1".to_vec()));
    cluster.stop_all().await;
}

/// The node vets an admin raise itself, whatever the client checked: an
/// implausible height is refused unless forced, sign bytes of another
/// chain are refused even when forced, and neither an owner nor a
/// signature without sign bytes is kept of what the client sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_raise_is_vetted_on_the_node() {
    use quorumkms::cluster::pb::admin_client::AdminClient;
    use quorumkms::watermark::{Position, SignState};

    const CHAIN: &str = "raise-chain";
    let mut cluster = TestCluster::start(3).await;
    cluster
        .wait_leader(std::time::Duration::from_secs(10))
        .await;
    let addr = cluster.node(1).local_addr().to_string();
    let mut admin = AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let at = |height: i64| SignState {
        position: Some(Position {
            height,
            round: 0,
            step: Step::Precommit,
        }),
        ..SignState::default()
    };
    let raise = |state: &SignState, chain: &str, force: bool| pb::RaiseRequest {
        chain_id: chain.to_string(),
        state_json: serde_json::to_vec(state).expect("json"),
        force,
    };

    let evil = at(9_000_000_000_000_000);
    let status = admin
        .raise(raise(&evil, CHAIN, false))
        .await
        .expect_err("an implausible raise");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("implausibly high"), "{status:?}");
    let verdict = cluster
        .grant(1, CHAIN, attempt(5, 0, Step::Prevote, "b5"))
        .await
        .expect("grant");
    assert_eq!(
        verdict,
        Verdict::Sign(b"b5".to_vec()),
        "the chain still signs"
    );

    let mut foreign = at(10);
    foreign.sign_bytes = {
        use quorumkms::privval::{SignRequest, Version};
        use quorumkms::validator::consensus;
        let block = Some(consensus::block_id(10, 0));
        let vote = consensus::vote(Version::V0_38, true, 10, 0, block, &[1; 20], 0);
        SignRequest::from_vote(Version::V0_38, "other-chain".into(), vote, false)
            .expect("sign request")
            .sign_bytes
    };
    let status = admin
        .raise(raise(&foreign, CHAIN, true))
        .await
        .expect_err("sign bytes of another chain");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    let mut plain = at(20);
    plain.owner = Some("a validator node the client made up".into());
    plain.signature = Some(vec![7; 64]);
    let reply = admin
        .raise(raise(&plain, CHAIN, false))
        .await
        .expect("a plausible raise")
        .into_inner();
    assert_eq!(reply.refusal, "");
    let position = plain.position.expect("position");
    cluster
        .wait_watermark(CHAIN, position, std::time::Duration::from_secs(10))
        .await;
    for id in 1..=3 {
        let applied = cluster.node(id).applied_state();
        let state = &applied.chains[CHAIN];
        assert_eq!(state.position, Some(position));
        assert_eq!(state.owner, None, "node {id}");
        assert_eq!(state.signature, None, "node {id}");
        // A plaintext admin port names no certificate; the record says so.
        assert_eq!(
            applied.raises[CHAIN].by,
            quorumkms::cluster::Raiser::Plaintext,
            "node {id}"
        );
    }
    cluster.stop_all().await;
}

/// A snapshot whose data does not decode is refused before Raft sees any
/// of it: the node keeps its vote and its state, and keeps serving. (Raft
/// would take the sender's vote and then stop on a state machine that
/// cannot read the snapshot.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_that_does_not_decode_is_refused_and_changes_nothing() {
    use openraft::raft::InstallSnapshotRequest;
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, Vote};
    use quorumkms::cluster::types::TypeConfig;

    let mut cluster = TestCluster::start(3).await;
    cluster
        .grant(1, "rpc-chain", attempt(1, 0, Step::Prevote, "b1"))
        .await
        .expect("grant");
    let first = Position {
        height: 1,
        round: 0,
        step: Step::Prevote,
    };
    cluster
        .wait_watermark("rpc-chain", first, Duration::from_secs(10))
        .await;
    let addr = cluster.node(2).local_addr().to_string();
    let mut client = ClusterClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let node = cluster.node(2).clone();
    let vote = node.metrics().vote;
    let applied = node.applied_state();
    // A newer leader's vote and a snapshot past everything the node has,
    // so that Raft would take both.
    let term = vote.leader_id().term + 1;
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(term, 1), 1000)),
        last_membership: applied.membership.clone(),
        snapshot_id: "garbage".into(),
    };
    let chunk = |offset: u64, data: &[u8], done: bool| {
        let request = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(term, 1),
            meta: meta.clone(),
            offset,
            data: data.to_vec(),
            done,
        };
        pb::RaftRequest {
            data: serde_json::to_vec(&request).unwrap(),
        }
    };

    // In one chunk.
    let status = client
        .install_snapshot(member(&node, chunk(0, b"\xff not a state", true)))
        .await
        .expect_err("an undecodable snapshot");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("does not decode"), "{status:?}");
    // In two: the first chunk is taken, the whole is refused.
    let good = serde_json::to_vec(&*applied).unwrap();
    let half = good.len() / 2;
    client
        .install_snapshot(member(&node, chunk(0, &good[..half], false)))
        .await
        .expect("the first chunk is taken");
    let status = client
        .install_snapshot(member(&node, chunk(half as u64, b"}}}} garbage", true)))
        .await
        .expect_err("an undecodable snapshot in two chunks");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    assert_eq!(node.metrics().vote, vote, "the vote changed");
    assert_eq!(node.storage_fault(), None);
    assert_eq!(node.applied_state(), applied, "the state changed");
    // The node still serves.
    let verdict = cluster
        .grant(2, "rpc-chain", attempt(2, 0, Step::Prevote, "b2"))
        .await
        .expect("grant");
    assert_eq!(verdict, Verdict::Sign(b"b2".to_vec()));
    cluster.stop_all().await;
}
