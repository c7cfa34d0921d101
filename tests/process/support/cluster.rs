//! The one process-cluster harness: signer nodes as real `quorumkms start`
//! processes, on loopback or one network namespace each, optionally with
//! mutual TLS, metrics endpoints, per-node environment, a tmpfs data dir
//! and nodes that join later.
//!
//! A cluster is made in three steps: [`Cluster::builder`] says what it
//! looks like, [`ClusterBuilder::build`] creates the network (so the
//! validators know where to listen), and [`Cluster::write`] lays out every
//! node dialling its validators. [`Cluster::start`] then starts and
//! bootstraps it. Nodes are numbered from 1, as in their configs.

use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::Duration;

use quorumkms::cluster::admin::{Client, Status};
use quorumkms::cluster::{TlsConfig, certs};
use quorumkms::testnet::{self, CHAIN_ID, NodeFiles};
use quorumkms::validator::{MockValidator, SignOutcome};
use quorumkms::watermark::Position;
use tokio::process::Child;
use tokio::time::Instant;

use super::net::{Net, Tmpfs};
use super::{SEED, VERSION, exe, one_cluster_at_a_time, tail};

/// The cluster port inside a network namespace (each node has its own
/// address there, so they can share it).
const NETNS_PORT: u16 = 7100;
/// The metrics port inside a network namespace.
const NETNS_METRICS_PORT: u16 = 9100;
/// How long a status call may take while a test polls.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);
/// How long an operator's admin call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The operator certificate's name, when the cluster runs mutual TLS.
const OPERATOR: &str = "ops";

/// What a cluster looks like; see [`Cluster::builder`].
pub struct ClusterBuilder {
    nodes: usize,
    initial: usize,
    netns: bool,
    tls: bool,
    metrics: bool,
    env: Vec<Vec<(String, String)>>,
    tmpfs: Vec<(usize, String)>,
}

impl ClusterBuilder {
    /// Nodes 1..=`initial` form the cluster; the others list every node as
    /// a peer and join later (started with [`Cluster::spawn`], added
    /// through the admin API).
    pub fn initial(mut self, initial: usize) -> Self {
        assert!(initial <= self.nodes);
        self.initial = initial;
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
        self.tls = true;
        self
    }

    /// A metrics endpoint on every node.
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Sets an environment variable for every start of node `i`.
    pub fn env(mut self, i: usize, key: &str, value: &str) -> Self {
        self.env[i - 1].push((key.to_string(), value.to_string()));
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
        let dir = tempfile::Builder::new()
            .prefix("quorumkms-procs-")
            .tempdir()
            .expect("tempdir");
        let count = self.nodes;
        let (net, admin, metrics) = if self.netns {
            let net = Net::new(count);
            let at = |port: u16| -> Vec<String> {
                (1..=count)
                    .map(|i| format!("{}:{port}", net.node_ip(i)))
                    .collect()
            };
            let (admin, metrics) = (at(NETNS_PORT), at(NETNS_METRICS_PORT));
            (Some(net), admin, metrics)
        } else {
            let ports = testnet::free_ports(count * 2).expect("free ports");
            let at = |ports: &[u16]| -> Vec<String> {
                ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
            };
            (None, at(&ports[..count]), at(&ports[count..]))
        };
        let certs = self.tls.then(|| {
            let certs_dir = dir.path().join("certs");
            certs::init_ca(&certs_dir).expect("CA");
            for (i, addr) in admin.iter().enumerate() {
                let host = addr.rsplit_once(':').expect("host:port").0;
                certs::node(&certs_dir, i as u64 + 1, &[host.to_string()]).expect("node cert");
            }
            certs::operator(&certs_dir, OPERATOR).expect("operator cert");
            certs_dir
        });
        Cluster {
            nodes: Vec::new(),
            admin,
            metrics: self.metrics.then_some(metrics),
            initial: self.initial,
            certs,
            children: (0..count).map(|_| None).collect(),
            env: self.env,
            tmpfs: self.tmpfs,
            net,
            mounts: Vec::new(),
            dir,
            _serial: serial,
        }
    }
}

/// Signer nodes as real processes.
pub struct Cluster {
    /// Every node's files (node `i` at index `i - 1`), once written.
    pub nodes: Vec<NodeFiles>,
    /// host:port of each node's cluster (and admin) service.
    pub admin: Vec<String>,
    /// host:port of each node's metrics endpoint, when it has one.
    metrics: Option<Vec<String>>,
    /// How many nodes form the cluster at the start.
    initial: usize,
    /// The certificate directory, when the cluster runs mutual TLS.
    pub certs: Option<PathBuf>,
    children: Vec<Option<Child>>,
    env: Vec<Vec<(String, String)>>,
    tmpfs: Vec<(usize, String)>,
    net: Option<Net>,
    mounts: Vec<(usize, Tmpfs)>,
    dir: tempfile::TempDir,
    /// Held while the cluster lives (dropped last, after the processes).
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// A loopback cluster of `nodes` plaintext nodes, all forming it at the
    /// start; the builder's methods change that.
    pub fn builder(nodes: usize) -> ClusterBuilder {
        ClusterBuilder {
            nodes,
            initial: nodes,
            netns: false,
            tls: false,
            metrics: false,
            env: vec![Vec::new(); nodes],
            tmpfs: Vec::new(),
        }
    }

    /// Where validators must listen so every node can reach them.
    pub fn validator_host(&self) -> String {
        self.net
            .as_ref()
            .map_or_else(|| "127.0.0.1".to_string(), Net::host_ip)
    }

    /// Node count.
    pub fn len(&self) -> usize {
        self.admin.len()
    }

    /// Writes every node's files (node `i` dials the validator addresses
    /// `validators(i)`) and mounts the tmpfs data dirs.
    pub fn write(&mut self, validators: &dyn Fn(usize) -> Vec<String>) {
        let chains = [CHAIN_ID.to_string()];
        let nodes: Result<Vec<NodeFiles>, _> = (1..=self.len())
            .map(|i| {
                let dials: Vec<(String, String)> = validators(i)
                    .into_iter()
                    .map(|addr| (CHAIN_ID.to_string(), addr))
                    .collect();
                testnet::write_node(
                    self.dir.path(),
                    i,
                    SEED,
                    &chains,
                    &dials,
                    VERSION,
                    &self.config_sections(i),
                )
            })
            .collect();
        self.nodes = nodes.expect("write node files");
        for (i, size) in std::mem::take(&mut self.tmpfs) {
            let disk = Tmpfs::mount(&self.data_dir(i), &size);
            self.mounts.push((i, disk));
        }
    }

    /// Node `i`'s `[cluster]` section (peers: the initial nodes, or every
    /// node for one that joins later), with its TLS files, and its
    /// `[metrics]` section.
    fn config_sections(&self, i: usize) -> String {
        let peers = if i <= self.initial {
            &self.admin[..self.initial]
        } else {
            &self.admin[..]
        };
        let mut section = testnet::cluster_section_at(i, &self.admin[i - 1], peers);
        if let Some(tls) = self.tls_files(&format!("node-{i}")) {
            section.push_str(&format!(
                "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display(),
            ));
        } else if self.net.is_some() {
            // Namespaces on this test host: a closed network, but not
            // loopback, so plaintext must be asked for.
            section.push_str("insecure_plaintext = true\n");
        }
        if let Some(metrics) = &self.metrics {
            section.push_str(&format!("\n[metrics]\nlisten = \"{}\"\n", metrics[i - 1]));
        }
        section
    }

    /// Node `i`'s Raft data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i - 1].dir.join("raft")
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

    /// Node `i`'s cluster (and admin) address.
    pub fn addr(&self, i: usize) -> String {
        self.admin[i - 1].clone()
    }

    /// TLS files for `stem` (e.g. `operator-ops`, `node-1`), when the
    /// cluster runs mutual TLS.
    pub fn tls_files(&self, stem: &str) -> Option<TlsConfig> {
        self.certs.as_ref().map(|dir| {
            TlsConfig::new(
                dir.join("ca.pem"),
                dir.join(format!("{stem}.pem")),
                dir.join(format!("{stem}.key")),
            )
        })
    }

    /// The operator's TLS files, when the cluster runs mutual TLS.
    pub fn operator_tls(&self) -> Option<TlsConfig> {
        self.tls_files(&format!("operator-{OPERATOR}"))
    }

    fn client_within(&self, i: usize, timeout: Duration) -> Client {
        let client = Client::new(self.addr(i), timeout);
        match self.operator_tls() {
            Some(tls) => client.with_tls(&tls).expect("operator TLS"),
            None => client,
        }
    }

    /// An operator's admin client for node `i`.
    pub fn client(&self, i: usize) -> Client {
        self.client_within(i, CALL_TIMEOUT)
    }

    /// Starts node `i`; one that joins later starts with `--join`, so it
    /// takes the cluster's id once added as a learner.
    pub fn spawn(&mut self, i: usize) {
        let args: &[&str] = if i > self.initial { &["--join"] } else { &[] };
        self.spawn_with(i, args);
    }

    /// Starts node `i` with `--join` (say, after its store was wiped).
    pub fn spawn_joining(&mut self, i: usize) {
        self.spawn_with(i, &["--join"]);
    }

    fn spawn_with(&mut self, i: usize, args: &[&str]) {
        assert!(self.children[i - 1].is_none(), "node {i} is running");
        let netns = self.net.as_ref().map(|net| net.ns(i));
        let child = testnet::spawn_node_with_env(
            &exe(),
            &self.nodes[i - 1],
            netns.as_deref(),
            &self.env[i - 1],
            args,
        )
        .expect("spawn node");
        self.children[i - 1] = Some(child);
    }

    /// Starts every node that forms the cluster at the start.
    pub fn spawn_all(&mut self) {
        for i in 1..=self.initial {
            self.spawn(i);
        }
    }

    /// Starts the initial nodes, bootstraps the cluster through node 1 and
    /// waits (up to `within`) until all of them follow one leader with
    /// quorum. Returns the leader.
    pub async fn start(&mut self, within: Duration) -> usize {
        self.spawn_all();
        self.initialize(1).await;
        let all: Vec<usize> = (1..=self.initial).collect();
        self.wait_ready(&all, within).await
    }

    /// kill -9 node `i` and reaps it.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i - 1].take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }

    /// kill -9 every running node.
    pub async fn stop_all(&mut self) {
        for i in 1..=self.len() {
            self.kill(i).await;
        }
    }

    /// Waits (bounded) for node `i` to exit on its own; returns its status.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> std::process::ExitStatus {
        let mut child = self.children[i - 1].take().expect("node running");
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("node {i} did not exit within {within:?}\n{}", self.log(i)),
        }
    }

    /// The 1-based index of the node with SecretConnection id `peer`.
    pub fn index_of(&self, peer: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.node_id == peer)
            .map(|p| p + 1)
    }

    /// Which node served an outcome, if it was signed.
    pub fn served_by(&self, outcome: &SignOutcome) -> Option<usize> {
        match outcome {
            SignOutcome::Signed { via, .. } => self.index_of(via),
            _ => None,
        }
    }

    /// Node `i`'s log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i - 1].dir.join("node.log")).unwrap_or_default()
    }

    /// Bootstraps the cluster through node `i`.
    pub async fn initialize(&self, i: usize) {
        if let Err(e) = self
            .client_within(i, CALL_TIMEOUT)
            .initialize_within(Duration::from_secs(20))
            .await
        {
            panic!("initialize via node {i}: {e}");
        }
    }

    /// Node `i`'s status, if it answers quickly.
    pub async fn status(&self, i: usize) -> Option<Status> {
        self.client_within(i, STATUS_TIMEOUT).status().await.ok()
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
        let deadline = Instant::now() + within;
        loop {
            let statuses = self.statuses(nodes).await;
            let leaders: Vec<Option<u64>> = statuses
                .iter()
                .map(|s| s.as_ref().and_then(|s| s.leader))
                .collect();
            if let Some(Some(leader)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*leader))
                && nodes.contains(&(*leader as usize))
                && statuses
                    .iter()
                    .all(|s| s.as_ref().is_some_and(|s| s.has_quorum_leader))
            {
                return *leader as usize;
            }
            assert!(
                Instant::now() < deadline,
                "nodes {nodes:?} not ready within {within:?}: {statuses:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader, as the running nodes agree on it: one of them names it
    /// and it says it leads.
    pub async fn leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for i in self.running() {
                if let Some(status) = self.status(i).await
                    && let Some(leader) = status.leader.map(|l| l as usize)
                    && self.running().contains(&leader)
                    && self
                        .status(leader)
                        .await
                        .is_some_and(|s| s.role == "Leader")
                {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The running nodes.
    fn running(&self) -> Vec<usize> {
        (1..=self.len())
            .filter(|i| self.children[i - 1].is_some())
            .collect()
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
        let deadline = Instant::now() + within;
        loop {
            let status = self.status(i).await;
            if let Some(s) = &status
                && pred(s)
            {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "node {i}: not {what} within {within:?}: {status:#?}\n{}",
                tail(&self.log(i), 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `i`'s watermark for the test chain.
    pub async fn watermark(&self, i: usize) -> Option<Position> {
        self.status(i)
            .await
            .and_then(|s| s.chains.get(CHAIN_ID).and_then(|c| c.position))
    }

    /// Fetches `path` from node `i`'s metrics endpoint: (status line, body).
    pub async fn http_get(&self, i: usize, path: &str) -> (String, String) {
        let metrics = self.metrics.as_ref().expect("the nodes serve metrics");
        super::metrics::http_get(&metrics[i - 1], path).await
    }

    /// Makes node `i` the validator's active signer connection: drops
    /// whatever connection is active until node `i`'s is accepted, as
    /// CometBFT would after timeouts.
    pub async fn make_active(&self, v: &mut MockValidator, i: usize, within: Duration) {
        let deadline = Instant::now() + within;
        let want = self.nodes[i - 1].node_id.clone();
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
        for child in self.children.iter_mut().flatten() {
            let _ = child.start_kill();
        }
        // Reap them, so their namespaces and mounts are free.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        for child in self.children.iter_mut().flatten() {
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if std::thread::panicking() {
            for (i, node) in self.nodes.iter().enumerate() {
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
