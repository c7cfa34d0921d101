//! A node running mutual TLS, as `quorumkms start` builds it: only an
//! operator certificate may raise a watermark, a node certificate speaks
//! only for its own node, and a certificate on the CA's revocation list
//! gets nowhere.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::Vote;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use quorumkms::cluster::admin::{Client, ClientError};
use quorumkms::cluster::network::{self, CallError, Channels};
use quorumkms::cluster::pb::{self, cluster_client::ClusterClient};
use quorumkms::cluster::types::TypeConfig;
use quorumkms::cluster::{
    self, Config, Deps, Node, Peer, Raiser, TlsConfig, TlsTransport, Transport, certs,
};
use quorumkms::keys::loss::KeyLoss;
use quorumkms::watermark::{Position, SignState, Step};
use tonic::transport::{Channel, Endpoint};

use crate::support::{free_addrs, init_tracing};

const T: Duration = Duration::from_secs(5);

fn files(dir: &Path, stem: &str) -> TlsConfig {
    TlsConfig::new(
        dir.join("ca.pem"),
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    )
}

/// A CA with node certificates 1, 2 and 3 and an operator's in `dir`.
fn make_certs(dir: &Path) {
    certs::init_ca(dir).expect("CA");
    for id in 1..=3 {
        certs::node(dir, id, &[]).expect("node cert");
    }
    certs::operator(dir, "ops").expect("operator cert");
}

/// Node 1 of a one-node cluster on `addr` with `tls`, built from its
/// config the way `quorumkms start` builds it, and bootstrapped.
async fn start_node(dir: &Path, addr: &str, tls: TlsConfig) -> Node {
    init_tracing();
    let config = Config {
        node_id: 1,
        listen: addr.to_string(),
        peers: vec![Peer {
            id: 1,
            addr: addr.to_string(),
        }],
        data_dir: dir.join("raft"),
        election_timeout_min_ms: cluster::default_election_timeout_min_ms(),
        election_timeout_max_ms: cluster::default_election_timeout_max_ms(),
        heartbeat_interval_ms: cluster::default_heartbeat_interval_ms(),
        grant_timeout_ms: cluster::default_grant_timeout_ms(),
        tls: Some(tls),
        insecure_plaintext: false,
    };
    let deps = Deps::for_config(&config, KeyLoss::default()).expect("deps");
    let node = cluster::run_node(config, deps).await.expect("run_node");
    node.initialize().await.expect("initialize");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.leader() != Some(1) {
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node
}

/// A raw `Cluster` client presenting `tls`.
async fn cluster_client(tls: &TlsConfig, addr: &str) -> ClusterClient<Channel> {
    let transport = Arc::new(TlsTransport::from_config(tls).expect("tls"));
    let target = addr.to_string();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let connect = transport.connect(target.clone());
            async move { connect.await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
        .expect("connect");
    ClusterClient::new(channel)
}

fn vote_as(candidate: u64) -> pb::RaftRequest {
    let request = VoteRequest::<u64>::new(Vote::new(1_000, candidate), None);
    pb::RaftRequest {
        data: serde_json::to_vec(&request).expect("encode"),
    }
}

fn append_as(leader: u64) -> pb::RaftRequest {
    let request = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1_000, leader),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    pb::RaftRequest {
        data: serde_json::to_vec(&request).expect("encode"),
    }
}

fn state_at(height: i64) -> SignState {
    SignState {
        position: Some(Position {
            height,
            round: 0,
            step: Step::Precommit,
        }),
        ..SignState::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_an_operator_raises_and_a_node_speaks_only_for_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("certs");
    make_certs(&pki);
    let addr = free_addrs(1).remove(0);
    let node = start_node(dir.path(), &addr, files(&pki, "node-1")).await;

    // An outsider without a certificate cannot import a watermark...
    let raised = Client::new(addr.clone(), T)
        .raise("chain-a", &state_at(9_000_000_000_000_000), true)
        .await;
    assert!(raised.is_err(), "a plaintext client raised the watermark");
    // ...nor can a node certificate, on the admin API.
    let raised = Client::new(addr.clone(), T)
        .with_tls(&files(&pki, "node-2"))
        .expect("node tls")
        .raise("chain-a", &state_at(9_000_000_000_000_000), true)
        .await;
    assert!(
        matches!(raised, Err(ClientError::PermissionDenied { .. })),
        "{raised:?}"
    );
    assert!(!node.applied_state().chains.contains_key("chain-a"));
    // The operator can.
    let operator = Client::new(addr.clone(), T)
        .with_tls(&files(&pki, "operator-ops"))
        .expect("operator tls");
    operator
        .raise("chain-a", &state_at(10), false)
        .await
        .expect("operator raise");
    let status = operator.status().await.expect("operator status");
    assert_eq!(
        status.chains["chain-a"].position.map(|p| p.height),
        Some(10)
    );
    // The record names the operator's certificate: its serial and CN.
    let serial = certs::serial_of(&pki.join("operator-ops.pem")).expect("serial");
    let record = status.chains["chain-a"]
        .last_raise
        .clone()
        .expect("a raise record");
    assert_eq!(
        record.by,
        Raiser::Operator {
            serial,
            subject: "quorumkms operator ops".into()
        }
    );
    assert_eq!(record.position, state_at(10).position);

    // Node 2's certificate may send Raft messages as node 2 only.
    let mut as_node_2 = cluster_client(&files(&pki, "node-2"), &addr).await;
    for (what, result) in [
        ("vote as 3", as_node_2.vote(vote_as(3)).await),
        ("append as 3", as_node_2.append_entries(append_as(3)).await),
        ("append as 1", as_node_2.append_entries(append_as(1)).await),
    ] {
        let status = result.expect_err(what);
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{what}");
        assert!(status.message().contains("node 2's"), "{what}: {status:?}");
    }
    // As itself it passes the sender check, but node 2 is no member of
    // this one-node cluster (a removed node's certificate, say): its Raft
    // messages and forwarded commands are refused, whatever term or
    // cluster id they carry.
    for (what, result) in [
        ("vote as 2", as_node_2.vote(vote_as(2)).await),
        ("append as 2", as_node_2.append_entries(append_as(2)).await),
    ] {
        let status = result.expect_err(what);
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{what}");
        assert!(
            status.message().contains("node 2 is not a member"),
            "{what}: {status:?}"
        );
    }
    // The operator's certificate does not reach the Raft port at all.
    let mut as_operator = cluster_client(&files(&pki, "operator-ops"), &addr).await;
    let status = as_operator
        .vote(vote_as(1))
        .await
        .expect_err("operator on the Raft port");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_certificate_gets_nowhere_and_others_still_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("certs");
    make_certs(&pki);
    let revoked = certs::revoke(&pki, &[], &[pki.join("node-2.pem")]).expect("revoke");
    let addr = free_addrs(1).remove(0);
    let mut tls = files(&pki, "node-1");
    tls.crl = Some(revoked.crl);
    let node = start_node(dir.path(), &addr, tls).await;

    let ping_as = |stem: &str| {
        let transport = TlsTransport::from_config(&files(&pki, stem)).expect("transport");
        Channels::new(Arc::new(transport), T)
    };
    // Node 2's certificate is refused in the handshake...
    // (A served call would come back refused for its missing cluster id,
    // as node 3's does: this node is not part of a cluster yet.)
    let served = |result: &Result<u64, CallError>| {
        matches!(result, Err(CallError::Failed { code, message, .. })
            if *code == tonic::Code::FailedPrecondition && message.contains("cluster id"))
    };
    let refused = network::ping(&ping_as("node-2"), &addr, T).await;
    assert!(
        refused.is_err() && !served(&refused),
        "a revoked certificate was served: {refused:?}"
    );
    // ...node 3's and the operator's still work.
    let node_3 = network::ping(&ping_as("node-3"), &addr, T).await;
    assert!(served(&node_3), "{node_3:?}");
    let status = Client::new(addr.clone(), T)
        .with_tls(&files(&pki, "operator-ops"))
        .expect("operator tls")
        .status()
        .await
        .expect("operator status");
    assert_eq!(status.node_id, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_refuses_to_start_with_another_nodes_or_a_revoked_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("certs");
    make_certs(&pki);
    let addr = free_addrs(1).remove(0);
    let config = |tls: TlsConfig| Config {
        node_id: 1,
        listen: addr.clone(),
        peers: vec![Peer {
            id: 1,
            addr: addr.clone(),
        }],
        data_dir: dir.path().join("raft"),
        election_timeout_min_ms: cluster::default_election_timeout_min_ms(),
        election_timeout_max_ms: cluster::default_election_timeout_max_ms(),
        heartbeat_interval_ms: cluster::default_heartbeat_interval_ms(),
        grant_timeout_ms: cluster::default_grant_timeout_ms(),
        tls: Some(tls),
        insecure_plaintext: false,
    };
    let error = Deps::for_config(&config(files(&pki, "node-2")), KeyLoss::default())
        .expect_err("node 2's certificate on node 1")
        .to_string();
    assert!(error.contains("node 2's, but this is node 1"), "{error}");
    let error = Deps::for_config(&config(files(&pki, "operator-ops")), KeyLoss::default())
        .expect_err("an operator certificate on a node")
        .to_string();
    assert!(error.contains("not a node certificate"), "{error}");
    let mut revoked = files(&pki, "node-1");
    revoked.revoked = vec![certs::serial_of(&revoked.cert).expect("serial")];
    let error = Deps::for_config(&config(revoked), KeyLoss::default())
        .expect_err("a revoked certificate")
        .to_string();
    assert!(error.contains("revoked"), "{error}");
}
