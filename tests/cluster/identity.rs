//! Cluster identity: a node serves its own cluster only. A store from
//! another cluster is refused, however up to date its log looks; a stale
//! copy of a node's own store only catches up; a voter whose store was
//! wiped stops instead of voting again, and comes back with `--join` as a
//! learner.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use quorumkms::cluster::admin::Client;
use quorumkms::cluster::identity::{CLUSTER_ID_HEADER, MEMBER_ROLE_HEADER};
use quorumkms::cluster::network::{self, CallError, Channels};
use quorumkms::cluster::pb;
use quorumkms::cluster::pb::cluster_client::ClusterClient;
use quorumkms::cluster::types::TypeConfig;
use quorumkms::cluster::{BootstrapError, ClusterId, MemBackend, Node, TcpTransport, Transport};
use quorumkms::watermark::{Position, Step, Verdict};
use std::sync::Arc;
use tokio::time::Instant;

use crate::support::{Collector, TestCluster, attempt};

const CHAIN: &str = "identity-chain";
const T: Duration = Duration::from_secs(20);

fn top(height: i64) -> Position {
    Position {
        height,
        round: 0,
        step: Step::Prevote,
    }
}

/// `message` as a call from a member of cluster `id`, optionally telling
/// the callee its `role`.
fn from_cluster<M>(id: ClusterId, role: Option<&'static str>, message: M) -> tonic::Request<M> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(CLUSTER_ID_HEADER, id.to_string().parse().unwrap());
    if let Some(role) = role {
        request
            .metadata_mut()
            .insert(MEMBER_ROLE_HEADER, role.parse().unwrap());
    }
    request
}

async fn client(node: &Node) -> ClusterClient<tonic::transport::Channel> {
    ClusterClient::connect(format!("http://{}", node.local_addr()))
        .await
        .expect("connect")
}

async fn grant_all(c: &TestCluster, via: u64, heights: std::ops::RangeInclusive<i64>, tag: &str) {
    for h in heights {
        let verdict = c
            .grant(
                via,
                CHAIN,
                attempt(h, 0, Step::Prevote, &format!("{tag}{h}")),
            )
            .await
            .expect("grant");
        assert!(
            matches!(verdict, Verdict::Sign(_)),
            "height {h}: {verdict:?}"
        );
    }
}

/// Waits until `pred` holds, up to a generous bound.
async fn wait_for(what: &str, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + T;
    while !pred() {
        assert!(Instant::now() < deadline, "not {what} within {T:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_refuses_calls_from_another_cluster() {
    let mut a = TestCluster::start_with(1, true).await;
    let mut b = TestCluster::start_with(1, true).await;
    let id_a = a.node(1).cluster_id().expect("A has an id");
    let id_b = b.node(1).cluster_id().expect("B has an id");
    assert_ne!(id_a, id_b);

    // B's node asks A's node for its vote, with a newer term and a longer
    // log: Raft alone would grant it.
    let vote = a.node(1).metrics().vote;
    let term = vote.leader_id().term + 5;
    let request = VoteRequest::<u64>::new(
        Vote::new(term, 1),
        Some(LogId::new(CommittedLeaderId::new(term, 1), 1_000)),
    );
    let data = serde_json::to_vec(&request).unwrap();
    let status = client(a.node(1))
        .await
        .vote(from_cluster(id_b, None, pb::RaftRequest { data }))
        .await
        .expect_err("a vote request from cluster B");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        format!("cluster id mismatch: this node belongs to {id_a}, caller to {id_b}")
    );
    assert_eq!(a.node(1).metrics().vote, vote, "A's node changed its vote");

    // The node-to-node client calling as B is refused the same way; as A
    // it is served.
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport);
    let addr = a.node(1).local_addr().to_string();
    let as_b = Channels::new(transport.clone(), T).in_cluster(id_b);
    match network::ping(&as_b, &addr, T).await {
        Err(CallError::Failed { code, message, .. }) => {
            assert_eq!(code, tonic::Code::FailedPrecondition);
            assert!(message.contains("cluster id mismatch"), "{message}");
        }
        other => panic!("ping from cluster B: {other:?}"),
    }
    let as_a = Channels::new(transport, T).in_cluster(id_a);
    assert_eq!(network::ping(&as_a, &addr, T).await, Ok(1));
    a.stop_all().await;
    b.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_from_another_cluster_is_refused() {
    // Cluster A signs heights 1..=20, across a leader change so its log
    // ends in a later term than a new cluster's.
    let mut c = TestCluster::start_with(3, true).await;
    grant_all(&c, 1, 1..=10, "a").await;
    let leader = c.wait_leader(T).await;
    c.stop(leader).await;
    let other = (1..=3).find(|id| *id != leader).expect("another node");
    grant_all(&c, other, 11..=20, "a").await;
    c.restart(leader).await;
    c.wait_watermark(CHAIN, top(20), T).await;
    let id_a = c.node(1).cluster_id().expect("A's id");
    c.stop_all().await;
    let stale = c.disks[&3].clone();
    // A new cluster signs the same heights anew: count its grants alone.
    c.collector = Collector::default();

    // The nodes are wiped and the cluster made again, but node 3's store
    // was missed: `cluster init` refuses, and takes no id itself.
    c.disks.insert(1, MemBackend::new());
    c.disks.insert(2, MemBackend::new());
    for id in 1..=3 {
        c.restart(id).await;
    }
    let refused = c
        .node(1)
        .initialize()
        .await
        .expect_err("init with a node of another cluster");
    assert!(
        matches!(&refused, BootstrapError::PeerRefused { id: 3, reason, .. } if reason.contains("cluster id mismatch")),
        "{refused}"
    );
    assert_eq!(c.node(1).cluster_id(), None);
    assert_eq!(c.node(2).cluster_id(), None);

    // With node 3 wiped too, cluster B forms and signs heights 1..=5.
    c.stop(3).await;
    c.disks.insert(3, MemBackend::new());
    c.restart(3).await;
    assert!(c.node(1).initialize().await.expect("init B"));
    c.wait_leader(T).await;
    let id_b = c.node(1).cluster_id().expect("B's id");
    assert_ne!(id_a, id_b);
    grant_all(&c, 1, 1..=5, "b").await;
    c.wait_watermark(CHAIN, top(5), T).await;

    // Node 3 comes back on A's store (a restored backup). Its log is
    // longer and of a later term than B's, so Raft alone would let it win
    // an election and overwrite B's grants. It campaigns and is refused.
    c.stop(3).await;
    c.disks.insert(3, stale);
    c.restart(3).await;
    let stale_node = c.node(3).clone();
    assert_eq!(stale_node.cluster_id(), Some(id_a));
    let start = stale_node.metrics().current_term;
    // It campaigns on its own once its election timer fires; asking it to
    // at once keeps a loaded machine from deciding when.
    let _ = stale_node.raft().trigger().elect().await;
    wait_for("campaigning", || stale_node.metrics().current_term > start).await;
    for id in [1, 2] {
        let node = c.node(id);
        assert!(
            node.metrics().current_term < stale_node.metrics().current_term,
            "node {id} took the stale node's term"
        );
        let state = node.applied_state();
        let chain = state.chains.get(CHAIN).expect("B's chain");
        assert_eq!(chain.position, Some(top(5)), "node {id}");
    }
    let verdict = c
        .grant(1, CHAIN, attempt(5, 0, Step::Prevote, "a5"))
        .await
        .expect("grant");
    assert!(matches!(verdict, Verdict::Refuse(_)), "{verdict:?}");
    grant_all(&c, 2, 6..=6, "b").await;
    assert_eq!(c.collector.conflicts(), 0);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_copy_of_a_nodes_own_store_only_catches_up() {
    let mut c = TestCluster::start(3).await;
    grant_all(&c, 1, 1..=10, "x").await;
    c.wait_watermark(CHAIN, top(10), T).await;
    c.stop(3).await;
    let dir = c.configs[&3].data_dir.clone();
    let backup = dir.with_extension("backup");
    copy_dir(&dir, &backup);
    c.restart(3).await;
    grant_all(&c, 2, 11..=20, "x").await;
    c.wait_watermark(CHAIN, top(20), T).await;

    // Node 3 is restored from the copy taken before heights 11..=20, and a
    // node that has them goes down: the stale node cannot win against the
    // one left, and the later grants stand.
    c.stop(3).await;
    std::fs::remove_dir_all(&dir).expect("remove");
    std::fs::rename(&backup, &dir).expect("restore");
    c.restart(3).await;
    let leader = c.wait_leader(T).await;
    let down = if leader == 3 { 1 } else { leader };
    c.stop(down).await;
    c.wait_watermark(CHAIN, top(20), T).await;
    let verdict = c
        .grant(3, CHAIN, attempt(15, 0, Step::Prevote, "y15"))
        .await
        .expect("grant");
    assert!(matches!(verdict, Verdict::Refuse(_)), "{verdict:?}");
    grant_all(&c, 3, 21..=21, "x").await;
    assert_eq!(c.collector.conflicts(), 0);
    c.stop_all().await;
}

/// Copies the directory `from` (a stopped node's store) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_voter_stops_and_rejoins_as_a_learner_with_join() {
    let mut c = TestCluster::start_with(3, true).await;
    grant_all(&c, 1, 1..=3, "w").await;
    c.wait_watermark(CHAIN, top(3), T).await;
    let id = c.node(1).cluster_id().expect("cluster id");

    // Node 3's store is wiped; started as before, it stops as soon as the
    // cluster calls it, and never takes part.
    c.stop(3).await;
    c.disks.insert(3, MemBackend::new());
    c.restart(3).await;
    let fatal = tokio::time::timeout(T, c.node(3).wait_fatal())
        .await
        .expect("node 3 stops");
    let text = fatal.to_string();
    assert!(
        text.contains("empty store") && text.contains("--join"),
        "{text}"
    );
    assert_eq!(c.node(3).cluster_id(), None);
    assert_eq!(c.node(3).applied_state().last_applied, None);
    grant_all(&c, 1, 4..=4, "w").await;

    // With --join, while the cluster still counts it as a voter, it does
    // not take the cluster's id.
    c.stop(3).await;
    c.disks.insert(3, MemBackend::new());
    c.restart_with(3, true).await;
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: c.node(1).metrics().vote,
        prev_log_id: None,
        leader_commit: None,
        entries: Vec::new(),
    };
    let data = serde_json::to_vec(&append).unwrap();
    let status = client(c.node(3))
        .await
        .append_entries(from_cluster(id, Some("voter"), pb::RaftRequest { data }))
        .await
        .expect_err("a voter with an empty store");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("cluster remove 3"), "{status:?}");
    assert_eq!(c.node(3).cluster_id(), None);

    // The operator removes it and adds it back: it joins as a learner,
    // catches up and is promoted.
    let admin = Client::new(c.node(1).local_addr(), T);
    admin.remove(3, false).await.expect("remove node 3");
    let addr = c.configs[&3].listen.clone();
    admin.add_learner(3, &addr).await.expect("add learner");
    let joined = c.node(3).clone();
    wait_for("joined", || joined.cluster_id() == Some(id)).await;
    c.wait_watermark(CHAIN, top(4), T).await;
    let leader = c.node(1).leader().expect("a leader");
    let membership = c.node(leader).metrics().membership_config;
    let voters: BTreeSet<u64> = membership.membership().voter_ids().collect();
    assert_eq!(voters, BTreeSet::from([1, 2]));
    assert!(membership.membership().get_node(&3).is_some());
    let deadline = Instant::now() + T;
    while let Err(e) = admin.promote(3).await {
        assert!(Instant::now() < deadline, "promote: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let voters: BTreeSet<u64> = c
        .node(leader)
        .metrics()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, BTreeSet::from([1, 2, 3]));
    grant_all(&c, 3, 5..=5, "w").await;
    assert_eq!(c.collector.conflicts(), 0);
    c.stop_all().await;
}
