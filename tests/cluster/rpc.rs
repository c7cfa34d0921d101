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
