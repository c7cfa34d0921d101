//! The one process-cluster harness of the tests: `quorumkms start`
//! processes laid out, started and queried by the library's
//! [`ProcessCluster`] (which [`Cluster`] derefs to), plus what only tests
//! need: one network namespace per node ([`Net`]), a tmpfs data dir
//! ([`Tmpfs`]), and shorthands that panic with the nodes' logs.
//!
//! A cluster is made in three steps: [`Cluster::builder`] says what it
//! looks like, [`ClusterBuilder::build`] creates the network (so the
//! validators know where to listen), and [`Cluster::write`] lays out every
//! node dialling its validators. [`Cluster::start`] then starts and
//! bootstraps it. Nodes are numbered from 1, as in their configs.

use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;
use std::time::Duration;

use quorumkms::cluster::admin::{Client, Status};
use quorumkms::testnet::{CHAIN_ID, Placement, ProcessCluster, ProcessClusterBuilder};
use quorumkms::validator::{MockValidator, SignOutcome};
use quorumkms::watermark::Position;
use tokio::time::Instant;

use super::net::{Net, Tmpfs};
use super::{SEED, VERSION, exe, one_cluster_at_a_time, tail};

/// What a cluster looks like; see [`Cluster::builder`].
pub struct ClusterBuilder {
    procs: ProcessClusterBuilder,
    nodes: usize,
    netns: bool,
    tmpfs: Vec<(usize, String)>,
}

impl ClusterBuilder {
    /// Nodes 1..=`initial` form the cluster; the others list every node as
    /// a peer and join later (started with [`Cluster::spawn`], added
    /// through the admin API).
    pub fn initial(mut self, initial: usize) -> Self {
        assert!(initial <= self.nodes);
        self.procs = self.procs.initial(initial);
        self
    }

    /// Every node in its own network namespace (needs root), so that
    /// [`Cluster::isolate`] can cut it off.
    pub fn netns(mut self) -> Self {
        self.netns = true;
        self
    }

    /// Mutual TLS: a CA, a certificate per node and one operator's.
    pub fn tls(mut self) -> Self {
        self.procs = self.procs.tls();
        self
    }

    /// Threshold mode: the key split `t` of the node count.
    pub fn threshold(mut self, t: u16) -> Self {
        self.procs = self.procs.threshold(t);
        self
    }

    /// A metrics endpoint on every node.
    pub fn metrics(mut self) -> Self {
        self.procs = self.procs.metrics();
        self
    }

    /// Sets an environment variable for every start of node `i`.
    pub fn env(mut self, i: usize, key: &str, value: &str) -> Self {
        self.procs = self.procs.env(i, key, value);
        self
    }

    /// Node `i`'s Raft data dir on a tmpfs of `size` (e.g. `16m`; needs
    /// root), mounted by [`Cluster::write`].
    pub fn tmpfs(mut self, i: usize, size: &str) -> Self {
        self.tmpfs.push((i, size.to_string()));
        self
    }

    /// Waits until no other cluster of this test binary runs (see
    /// [`one_cluster_at_a_time`]; held until the cluster is dropped), then
    /// creates the directory, the network and the certificates.
    pub fn build(self) -> Cluster {
        let serial = one_cluster_at_a_time();
        let net = self.netns.then(|| Net::new(self.nodes));
        let placement = match &net {
            Some(net) => Placement::Netns(
                (1..=self.nodes)
                    .map(|i| (net.ns(i), net.node_ip(i)))
                    .collect(),
            ),
            None => Placement::Loopback,
        };
        let procs = self
            .procs
            .placement(placement)
            .build()
            .expect("build the cluster");
        Cluster {
            procs,
            tmpfs: self.tmpfs,
            net,
            mounts: Vec::new(),
            _serial: serial,
        }
    }
}

/// Signer nodes as real processes ([`ProcessCluster`], whose queries it
/// derefs to), with the test's namespaces and mounts, and panicking
/// shorthands.
pub struct Cluster {
    procs: ProcessCluster,
    tmpfs: Vec<(usize, String)>,
    net: Option<Net>,
    mounts: Vec<(usize, Tmpfs)>,
    /// Held while the cluster lives (dropped last, after the processes).
    _serial: MutexGuard<'static, ()>,
}

impl Deref for Cluster {
    type Target = ProcessCluster;

    fn deref(&self) -> &ProcessCluster {
        &self.procs
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut ProcessCluster {
        &mut self.procs
    }
}

impl Cluster {
    /// A loopback cluster of `nodes` plaintext nodes, all forming it at the
    /// start; the builder's methods change that.
    pub fn builder(nodes: usize) -> ClusterBuilder {
        ClusterBuilder {
            procs: ProcessCluster::builder(&exe(), nodes)
                .seed(SEED)
                .version(VERSION),
            nodes,
            netns: false,
            tmpfs: Vec::new(),
        }
    }

    /// Where validators must listen so every node can reach them.
    pub fn validator_host(&self) -> String {
        self.net
            .as_ref()
            .map_or_else(|| "127.0.0.1".to_string(), Net::host_ip)
    }

    /// Writes every node's files (node `i` dials the validator addresses
    /// `validators(i)`) and mounts the tmpfs data dirs.
    pub fn write(&mut self, validators: &dyn Fn(usize) -> Vec<String>) {
        self.procs
            .write(&|i| {
                validators(i)
                    .into_iter()
                    .map(|addr| (CHAIN_ID.to_string(), addr))
                    .collect()
            })
            .expect("write node files");
        for (i, size) in std::mem::take(&mut self.tmpfs) {
            let disk = Tmpfs::mount(&self.data_dir(i), &size);
            self.mounts.push((i, disk));
        }
    }

    /// Node `i`'s tmpfs (see [`ClusterBuilder::tmpfs`]).
    pub fn disk(&self, i: usize) -> &Tmpfs {
        self.mounts
            .iter()
            .find_map(|(n, disk)| (*n == i).then_some(disk))
            .expect("node has a tmpfs")
    }

    /// The namespaces, when the nodes run in them.
    pub fn net(&self) -> &Net {
        self.net.as_ref().expect("the cluster runs in namespaces")
    }

    /// Cuts node `i` off from every other node (see [`Net::isolate`]).
    pub fn isolate(&self, i: usize) {
        self.net().isolate(i);
    }

    /// Restores node `i`'s links (see [`Net::heal`]).
    pub fn heal(&self, i: usize) {
        self.net().heal(i);
    }

    /// An operator's admin client for node `i`.
    pub fn client(&self, i: usize) -> Client {
        self.procs.client(i).expect("operator client")
    }

    /// Starts node `i`; one that joins later starts with `--join`, so it
    /// takes the cluster's id once added as a learner.
    pub fn spawn(&mut self, i: usize) {
        self.procs.spawn(i).expect("spawn node");
    }

    /// Starts node `i` with `--join` (say, after its store was wiped).
    pub fn spawn_joining(&mut self, i: usize) {
        self.procs.spawn_joining(i).expect("spawn node");
    }

    /// Starts every node that forms the cluster at the start.
    pub fn spawn_all(&mut self) {
        self.procs.spawn_all().expect("spawn nodes");
    }

    /// Starts the initial nodes, bootstraps the cluster through node 1 and
    /// waits (up to `within`) until all of them follow one leader with
    /// quorum. Returns the leader.
    pub async fn start(&mut self, within: Duration) -> usize {
        self.spawn_all();
        self.initialize(1).await;
        let all: Vec<usize> = (1..=self.procs.initial()).collect();
        self.wait_ready(&all, within).await
    }

    /// Waits (bounded) for node `i` to exit on its own; returns its status.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> std::process::ExitStatus {
        let mut child = self.take_child(i).expect("node running");
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("node {i} did not exit within {within:?}\n{}", self.log(i)),
        }
    }

    /// Which node served an outcome, if it was signed.
    pub fn served_by(&self, outcome: &SignOutcome) -> Option<usize> {
        match outcome {
            SignOutcome::Signed { via, .. } => self.index_of(via),
            _ => None,
        }
    }

    /// Bootstraps the cluster through node `i`.
    pub async fn initialize(&self, i: usize) {
        if let Err(e) = self.procs.initialize(i, Duration::from_secs(20)).await {
            panic!("{e}");
        }
    }

    /// Node `i`'s status, if it answers quickly.
    pub async fn status(&self, i: usize) -> Option<Status> {
        self.procs.status(i).await.ok()
    }

    /// Statuses of `nodes`, in order (None for those that do not answer).
    pub async fn statuses(&self, nodes: &[usize]) -> Vec<Option<Status>> {
        let mut out = Vec::new();
        for &i in nodes {
            out.push(self.status(i).await);
        }
        out
    }

    /// Waits until every node in `nodes` names the same leader, the leader
    /// is among them, and each of them expects grants to commit. Returns
    /// the leader.
    pub async fn wait_ready(&self, nodes: &[usize], within: Duration) -> usize {
        self.procs
            .wait_ready(nodes, within)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The leader, as the running nodes agree on it: one of them names it
    /// and it says it leads.
    pub async fn leader(&self, within: Duration) -> usize {
        self.procs
            .leader(within)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The voters in the leader's membership.
    pub async fn voters(&self) -> Vec<u64> {
        let leader = self.leader(Duration::from_secs(10)).await;
        let status = self.status(leader).await.expect("leader status");
        status
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect()
    }

    /// Waits until node `i`'s status satisfies `pred`.
    pub async fn wait_status(
        &self,
        i: usize,
        what: &str,
        within: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Status {
        self.procs
            .wait_status(i, what, within, pred)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Node `i`'s watermark for the test chain.
    pub async fn watermark(&self, i: usize) -> Option<Position> {
        self.status(i)
            .await
            .and_then(|s| s.chains.get(CHAIN_ID).and_then(|c| c.position))
    }

    /// Fetches `path` from node `i`'s metrics endpoint: (status line, body).
    pub async fn http_get(&self, i: usize, path: &str) -> (String, String) {
        let metrics = self.metrics_addr(i).expect("the nodes serve metrics");
        super::metrics::http_get(metrics, path).await
    }

    /// Makes node `i` the validator's active signer connection: drops
    /// whatever connection is active until node `i`'s is accepted, as
    /// CometBFT would after timeouts.
    pub async fn make_active(&self, v: &mut MockValidator, i: usize, within: Duration) {
        let deadline = Instant::now() + within;
        let want = self.nodes()[i - 1].node_id.clone();
        loop {
            let ok = v.pub_key().await.is_ok();
            if ok && v.peer() == Some(want.as_str()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} never became the validator's signer within {within:?}"
            );
            v.drop_connection();
        }
    }

    /// Waits until the validator has a working signer connection.
    pub async fn connect(&self, v: &mut MockValidator, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match v.pub_key().await {
                Ok(_) => return,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no signer connected: {e}");
                    v.drop_connection();
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Reap the nodes first, so their namespaces and mounts are free.
        self.procs.kill_all_now();
        if std::thread::panicking() {
            for (i, node) in self.nodes().iter().enumerate() {
                eprintln!(
                    "---- {} (node {}) log tail ----\n{}",
                    node.name,
                    i + 1,
                    tail(&self.log(i + 1), 40)
                );
            }
        }
        self.mounts.clear();
        self.net.take();
    }
}
