//! The cluster service never panics on bytes it cannot decode: it answers
//! with an `invalid_argument` status and keeps serving.

use crate::support::{TestCluster, attempt};
use quorumkms::cluster::pb;
use quorumkms::cluster::pb::cluster_client::ClusterClient;
use quorumkms::watermark::{Step, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_rpcs_get_a_status() {
    let mut cluster = TestCluster::start(3).await;
    let addr = cluster.node(2).local_addr().to_string();
    let mut client = ClusterClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let garbage = b"\xff not json".to_vec();
    let status = client
        .append_entries(pb::RaftRequest {
            data: garbage.clone(),
        })
        .await
        .expect_err("append_entries");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .vote(pb::RaftRequest {
            data: garbage.clone(),
        })
        .await
        .expect_err("vote");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .install_snapshot(pb::RaftRequest {
            data: garbage.clone(),
        })
        .await
        .expect_err("install_snapshot");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .forward(pb::ForwardRequest { command: garbage })
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
        .install_snapshot(chunk(0))
        .await
        .expect("the first chunk is taken");
    for offset in [1 << 40, MAX_SNAPSHOT_BYTES, u64::MAX - 4] {
        let status = client
            .install_snapshot(chunk(offset))
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
