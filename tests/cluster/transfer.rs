//! Leadership transfer through the admin API.

use std::time::Duration;

use crate::support::{TestCluster, attempt};
use quorumkms::cluster::admin::Client;
use quorumkms::watermark::{Step, Verdict};

/// A transfer pauses the leader's heartbeats and proposals. When the admin
/// call is cancelled part way (the client gives up, so the server drops the
/// call), both resume: the leader keeps its followers and keeps granting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_transfer_leaves_the_leader_heartbeating() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let term = cluster.node(leader).metrics().current_term;
    let target = if leader == 1 { 2 } else { 1 };
    let addr = cluster.node(leader).local_addr().to_string();

    // The transfer first waits out the leader's lease (longer than this
    // client waits), so the call is cancelled while heartbeats are off.
    let impatient = Client::new(addr, Duration::from_millis(100));
    impatient
        .transfer_leader(target)
        .await
        .expect_err("the client gives up before the transfer is done");

    // Several election timeouts: with heartbeats still off, the followers
    // would elect a new leader in a new term.
    let election = Duration::from_millis(cluster.node(leader).config().election_timeout_max_ms);
    tokio::time::sleep(election * 5).await;
    let metrics = cluster.node(leader).metrics();
    assert_eq!(metrics.current_leader, Some(leader));
    assert_eq!(metrics.current_term, term, "no election happened");

    let verdict = cluster
        .grant(leader, "transfer-chain", attempt(1, 0, Step::Prevote, "b1"))
        .await
        .expect("the leader still grants");
    assert_eq!(verdict, Verdict::Sign(b"b1".to_vec()));
    cluster.stop_all().await;
}
