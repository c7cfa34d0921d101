//! In-process cluster harness: real nodes over real tonic on 127.0.0.1,
//! one tempdir per test, and a collector that records every `Sign` verdict
//! so a test can assert one payload per (chain, position).
//!
//! Waits poll node metrics with a deadline; nothing sleeps a fixed time to
//! hope a state was reached.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use quorumkms::cluster::keygen::ShareSlot;
use quorumkms::cluster::{self, Config, Deps, MemBackend, Node, Peer, StoreChoice};
use quorumkms::grant::GrantError;
use quorumkms::threshold::Participant;
use quorumkms::watermark::{Attempt, Position, Step, Verdict};
use tokio::time::Instant;

/// Turns on logs when `RUST_LOG` is set.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// `n` distinct free addresses on 127.0.0.1, out of the way of ports the
/// kernel hands out on its own (see `testnet::free_ports`).
pub fn free_addrs(n: usize) -> Vec<String> {
    quorumkms::testnet::free_ports(n)
        .expect("free ports")
        .into_iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect()
}

/// A sign attempt with no height owner.
pub fn attempt(height: i64, round: i32, step: Step, bytes: &str) -> Attempt {
    Attempt {
        extension: None,
        position: Position {
            height,
            round,
            step,
        },
        sign_bytes: bytes.as_bytes().to_vec(),
        origin: None,
    }
}

/// The payloads signed at each (chain, position).
type Signed = BTreeMap<(String, Position), BTreeSet<Vec<u8>>>;

/// Every `Sign` verdict seen, by (chain, position).
#[derive(Clone, Default)]
pub struct Collector {
    signed: Arc<Mutex<Signed>>,
}

impl Collector {
    /// Records `verdict` for `attempt` on `chain`.
    pub fn record(&self, chain: &str, attempt: &Attempt, verdict: &Verdict) {
        if let Verdict::Sign(bytes) = verdict {
            self.signed
                .lock()
                .unwrap()
                .entry((chain.to_string(), attempt.position))
                .or_default()
                .insert(bytes.clone());
        }
    }

    /// Positions that were signed with more than one payload: double signs.
    pub fn conflicts(&self) -> usize {
        self.signed
            .lock()
            .unwrap()
            .values()
            .filter(|payloads| payloads.len() > 1)
            .count()
    }

    /// How many positions were signed at all.
    pub fn signed_positions(&self) -> usize {
        self.signed.lock().unwrap().len()
    }
}

/// A cluster of in-process nodes.
pub struct TestCluster {
    /// Kept for its drop, which removes the directory.
    _dir: tempfile::TempDir,
    pub configs: BTreeMap<u64, Config>,
    pub nodes: BTreeMap<u64, Node>,
    /// In-memory disks, when the cluster runs on them.
    pub disks: BTreeMap<u64, MemBackend>,
    /// Each node's threshold shares (none unless the test gives some).
    pub participants: BTreeMap<u64, Arc<Participant>>,
    /// Where each node keeps the shares a key generation makes.
    pub share_slots: BTreeMap<u64, BTreeMap<String, ShareSlot>>,
    pub collector: Collector,
}

impl TestCluster {
    /// Starts `n` nodes on redb stores and initializes the cluster.
    pub async fn start(n: usize) -> TestCluster {
        TestCluster::start_with(n, false).await
    }

    /// Starts `n` nodes, on in-memory disks when `memory`, and initializes
    /// the cluster from node 1.
    pub async fn start_with(n: usize, memory: bool) -> TestCluster {
        TestCluster::start_sharing(n, memory, BTreeMap::new()).await
    }

    /// Starts `n` nodes, each holding the shares `participants` gives it.
    pub async fn start_sharing(
        n: usize,
        memory: bool,
        participants: BTreeMap<u64, Arc<Participant>>,
    ) -> TestCluster {
        init_tracing();
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs = free_addrs(n);
        let peers: Vec<Peer> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| Peer {
                id: i as u64 + 1,
                addr: addr.clone(),
            })
            .collect();
        let mut configs = BTreeMap::new();
        let mut disks = BTreeMap::new();
        for peer in &peers {
            configs.insert(
                peer.id,
                Config {
                    node_id: peer.id,
                    listen: peer.addr.clone(),
                    peers: peers.clone(),
                    data_dir: dir.path().join(format!("node{}", peer.id)),
                    election_timeout_min_ms: cluster::default_election_timeout_min_ms(),
                    election_timeout_max_ms: cluster::default_election_timeout_max_ms(),
                    heartbeat_interval_ms: cluster::default_heartbeat_interval_ms(),
                    grant_timeout_ms: cluster::default_grant_timeout_ms(),
                    tls: None,
                    insecure_plaintext: false,
                },
            );
            if memory {
                disks.insert(peer.id, MemBackend::new());
            }
        }
        let mut cluster = TestCluster {
            _dir: dir,
            configs,
            nodes: BTreeMap::new(),
            disks,
            participants,
            share_slots: BTreeMap::new(),
            collector: Collector::default(),
        };
        let ids: Vec<u64> = cluster.configs.keys().copied().collect();
        for id in ids {
            cluster.restart(id).await;
        }
        let initialized = cluster.node(1).initialize().await.expect("initialize");
        assert!(initialized, "a fresh cluster initializes");
        cluster.wait_leader(Duration::from_secs(10)).await;
        cluster
    }

    /// Starts node `id` again from its data dir (or in-memory disk).
    pub async fn restart(&mut self, id: u64) {
        self.restart_with(id, false).await;
    }

    /// Starts node `id` again, with `--join` when `join`.
    pub async fn restart_with(&mut self, id: u64, join: bool) {
        let config = self.configs[&id].clone();
        let store = match self.disks.get(&id) {
            Some(disk) => StoreChoice::Backend(Arc::new(disk.clone())),
            None => StoreChoice::Disk,
        };
        // A stopped node's last tasks may hold its redb file for a moment
        // after shutdown returns; the file lock says so, and a retry waits
        // them out (a real restart is a new process).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let node = loop {
            let mut deps = Deps {
                store: store.clone(),
                join,
                ..Deps::default()
            };
            if let Some(participant) = self.participants.get(&id) {
                deps.participant = participant.clone();
            }
            if let Some(slots) = self.share_slots.get(&id) {
                deps.share_slots = slots.clone();
            }
            match cluster::run_node(config.clone(), deps).await {
                Ok(node) => break node,
                Err(e)
                    if e.to_string().contains("already open")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("run_node: {e:?}"),
            }
        };
        self.nodes.insert(id, node);
    }

    /// Shuts node `id` down.
    pub async fn stop(&mut self, id: u64) {
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }

    /// Shuts every node down.
    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    /// A running node.
    pub fn node(&self, id: u64) -> &Node {
        self.nodes.get(&id).expect("node is running")
    }

    /// Waits until every running node names the same running leader.
    pub async fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: BTreeSet<Option<u64>> = self.nodes.values().map(|n| n.leader()).collect();
            if let [Some(leader)] = leaders.iter().copied().collect::<Vec<_>>()[..]
                && let Some(node) = self.nodes.get(&leader)
                && node.has_quorum_leader()
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks node `id` to grant, recording any `Sign`.
    pub async fn grant(
        &self,
        id: u64,
        chain: &str,
        attempt: Attempt,
    ) -> Result<Verdict, GrantError> {
        let result = self.node(id).grant(chain, attempt.clone()).await;
        if let Ok(verdict) = &result {
            self.collector.record(chain, &attempt, verdict);
        }
        result
    }

    /// Waits until every running node has applied a watermark for `chain`
    /// at `position` or above.
    pub async fn wait_watermark(&self, chain: &str, position: Position, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for node in self.nodes.values() {
            let mut rx = node.watch_applied();
            loop {
                let reached = rx
                    .borrow_and_update()
                    .chains
                    .get(chain)
                    .and_then(|s| s.position)
                    .is_some_and(|p| p >= position);
                if reached {
                    break;
                }
                let waited = tokio::time::timeout_at(deadline, rx.changed()).await;
                assert!(
                    matches!(waited, Ok(Ok(()))),
                    "node {} did not apply {chain} {position} within {timeout:?}",
                    node.id()
                );
            }
        }
    }
}

/// A collector that any task can record into, for concurrent grants.
pub async fn grant_on(
    node: Node,
    collector: Collector,
    chain: String,
    attempt: Attempt,
) -> Result<Verdict, GrantError> {
    let result = node.grant(&chain, attempt.clone()).await;
    if let Ok(verdict) = &result {
        collector.record(&chain, &attempt, verdict);
    }
    result
}
