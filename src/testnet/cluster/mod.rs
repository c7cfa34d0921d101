//! Signer nodes as real `quorumkms start` processes: the one builder the
//! process tests and the benchmark lay out, start, stop and query their
//! nodes with.
//!
//! A cluster is made in three steps: [`ProcessCluster::builder`] says what
//! it looks like, [`ProcessClusterBuilder::build`] picks every node's
//! addresses and makes the certificates (so the caller knows where its
//! validators must listen), and [`ProcessCluster::write`] lays out every
//! node dialling its validators. Nodes are numbered from 1, as in their
//! configs. One node runs in single-node mode (no `[cluster]` section).
//!
//! The caller owns the surroundings: the network namespaces (see
//! [`Placement`]), a file system mounted over a node's data dir (at
//! [`ProcessCluster::data_dir`], known from `build` on), the validators.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Child;

use super::layout::{NodeFiles, NodeKeys, cluster_section_at, write_node_keyed};
use super::ports::free_ports;
use super::process::spawn_node_with_env;

use crate::cluster::{TlsConfig, certs};
use crate::privval::Version;

mod admin;

/// The cluster port inside a network namespace (each node has its own
/// address there, so they can share it).
pub const NETNS_PORT: u16 = 7100;
/// The metrics port inside a network namespace.
pub const NETNS_METRICS_PORT: u16 = 9100;
/// How long a status call may take while a caller polls.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);
/// How long an operator's admin call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a wait polls the nodes.
const POLL: Duration = Duration::from_millis(50);
/// How long [`Drop`] waits for killed nodes to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(3);
/// The operator certificate's name, when the cluster runs mutual TLS.
const OPERATOR: &str = "ops";

/// Where the nodes run.
#[derive(Clone, Debug)]
pub enum Placement {
    /// On 127.0.0.1, each on ports of its own.
    Loopback,
    /// Node `i` in network namespace `.0` at address `.1` (entry `i - 1`),
    /// which the caller has set up; the nodes share [`NETNS_PORT`] and
    /// [`NETNS_METRICS_PORT`]. The cluster port runs plaintext unless the
    /// cluster has TLS.
    Netns(Vec<(String, String)>),
}

/// What a cluster looks like; see [`ProcessCluster::builder`].
pub struct ProcessClusterBuilder {
    exe: PathBuf,
    nodes: usize,
    initial: usize,
    seed: [u8; 32],
    version: Version,
    chains: Vec<String>,
    placement: Placement,
    tls: bool,
    metrics: bool,
    env: Vec<Vec<(String, String)>>,
    cluster_config: String,
    parent: Option<PathBuf>,
    threshold: Option<u16>,
}

impl ProcessClusterBuilder {
    /// Threshold mode: every chain's key split `t` of the node count,
    /// node `i` holding share `i` (see [`super::layout::NodeKeys`]).
    pub fn threshold(mut self, t: u16) -> Self {
        self.threshold = Some(t);
        self
    }

    /// Nodes 1..=`initial` form the cluster; the others list every node as
    /// a peer and join later (started with `--join`, added through the
    /// admin API).
    pub fn initial(mut self, initial: usize) -> Self {
        self.initial = initial;
        self
    }

    /// The consensus key every node holds (a softsign seed).
    pub fn seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = seed;
        self
    }

    /// The protocol every node speaks to its validators.
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// The chains every node signs for (default: [`super::CHAIN_ID`]).
    pub fn chains(mut self, chains: Vec<String>) -> Self {
        self.chains = chains;
        self
    }

    /// Where the nodes run (default: loopback).
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Mutual TLS: a CA, a certificate per node (for its address) and one
    /// operator's, made as `quorumkms cluster certs` makes them.
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
        if let Some(env) = self.env.get_mut(i.wrapping_sub(1)) {
            env.push((key.to_string(), value.to_string()));
        }
        self
    }

    /// Lines appended to every node's `[cluster]` section (e.g. WAN
    /// timeouts).
    pub fn cluster_config(mut self, lines: &str) -> Self {
        self.cluster_config.push_str(lines);
        self
    }

    /// Puts the node directories under `parent` (default: the system
    /// temporary directory).
    pub fn dir_in(mut self, parent: Option<PathBuf>) -> Self {
        self.parent = parent;
        self
    }

    /// Creates the directory, picks every node's addresses and makes the
    /// certificates.
    ///
    /// # Errors
    ///
    /// An inconsistent description, no free ports, or files that cannot
    /// be written.
    pub fn build(self) -> Result<ProcessCluster, String> {
        let count = self.nodes;
        if count == 0 || self.initial == 0 || self.initial > count {
            return Err(format!(
                "a cluster of {count} node(s) cannot start with {} of them",
                self.initial
            ));
        }
        let dir = match &self.parent {
            Some(parent) => tempfile::Builder::new()
                .prefix("quorumkms-testnet-")
                .tempdir_in(parent),
            None => tempfile::Builder::new()
                .prefix("quorumkms-testnet-")
                .tempdir(),
        }
        .map_err(|e| format!("node directory: {e}"))?;
        let (netns, admin, metrics) = match &self.placement {
            Placement::Netns(nodes) if nodes.len() != count => {
                return Err(format!("{count} nodes in {} namespaces", nodes.len()));
            }
            Placement::Netns(nodes) => {
                let at = |port: u16| -> Vec<String> {
                    nodes.iter().map(|(_, ip)| format!("{ip}:{port}")).collect()
                };
                let names = nodes.iter().map(|(ns, _)| Some(ns.clone())).collect();
                (names, at(NETNS_PORT), at(NETNS_METRICS_PORT))
            }
            Placement::Loopback => {
                let ports = free_ports(count * 2).map_err(|e| format!("free ports: {e}"))?;
                let at = |ports: &[u16]| -> Vec<String> {
                    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
                };
                (vec![None; count], at(&ports[..count]), at(&ports[count..]))
            }
        };
        let certs = if self.tls {
            Some(make_certs(&dir.path().join("certs"), &admin)?)
        } else {
            None
        };
        Ok(ProcessCluster {
            exe: self.exe,
            seed: self.seed,
            version: self.version,
            chains: self.chains,
            // A single node has no cluster port.
            admin: if count == 1 { Vec::new() } else { admin },
            metrics: self.metrics.then_some(metrics),
            netns,
            plaintext_off_loopback: matches!(self.placement, Placement::Netns(_)),
            initial: self.initial,
            certs,
            env: self.env,
            cluster_config: self.cluster_config,
            threshold: self.threshold,
            nodes: Vec::new(),
            children: (0..count).map(|_| None).collect(),
            dir,
        })
    }
}

/// A CA in `dir`, a certificate for each node at its address in `admin`
/// (node `i` at index `i - 1`) and the operator's.
fn make_certs(dir: &Path, admin: &[String]) -> Result<PathBuf, String> {
    certs::init_ca(dir).map_err(|e| format!("CA: {e}"))?;
    for (i, addr) in (1u64..).zip(admin) {
        let host = addr
            .rsplit_once(':')
            .map_or(addr.as_str(), |(host, _)| host);
        certs::node(dir, i, &[host.to_string()])
            .map_err(|e| format!("node {i}'s certificate: {e}"))?;
    }
    certs::operator(dir, OPERATOR).map_err(|e| format!("operator certificate: {e}"))?;
    Ok(dir.to_path_buf())
}

/// Signer nodes as real processes; killed when dropped.
pub struct ProcessCluster {
    exe: PathBuf,
    seed: [u8; 32],
    version: Version,
    chains: Vec<String>,
    /// host:port of each node's cluster (and admin) service; empty for a
    /// single node.
    admin: Vec<String>,
    metrics: Option<Vec<String>>,
    /// Each node's network namespace, when it runs in one.
    netns: Vec<Option<String>>,
    plaintext_off_loopback: bool,
    initial: usize,
    certs: Option<PathBuf>,
    env: Vec<Vec<(String, String)>>,
    cluster_config: String,
    threshold: Option<u16>,
    nodes: Vec<NodeFiles>,
    children: Vec<Option<Child>>,
    dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// `nodes` plaintext nodes of `exe` (the `quorumkms` binary) on
    /// loopback, all forming the cluster at the start and signing for
    /// [`super::CHAIN_ID`]; the builder's methods change that.
    pub fn builder(exe: &Path, nodes: usize) -> ProcessClusterBuilder {
        ProcessClusterBuilder {
            exe: exe.to_path_buf(),
            nodes,
            initial: nodes,
            seed: [42; 32],
            version: Version::V0_38,
            chains: vec![super::CHAIN_ID.to_string()],
            placement: Placement::Loopback,
            tls: false,
            metrics: false,
            env: vec![Vec::new(); nodes],
            cluster_config: String::new(),
            parent: None,
            threshold: None,
        }
    }

    /// Node count.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True for a cluster of no nodes (which [`ProcessClusterBuilder::build`]
    /// refuses).
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// How many nodes form the cluster at the start.
    pub fn initial(&self) -> usize {
        self.initial
    }

    /// True when the nodes form a Raft cluster (more than one node).
    pub fn is_cluster(&self) -> bool {
        !self.admin.is_empty()
    }

    /// Every node's files (node `i` at index `i - 1`), once written.
    pub fn nodes(&self) -> &[NodeFiles] {
        &self.nodes
    }

    /// host:port of each node's cluster (and admin) service.
    pub fn addrs(&self) -> &[String] {
        &self.admin
    }

    /// Node `i`'s cluster (and admin) address.
    pub fn addr(&self, i: usize) -> String {
        self.admin[i - 1].clone()
    }

    /// Node `i`'s metrics address, when the nodes serve metrics.
    pub fn metrics_addr(&self, i: usize) -> Option<&str> {
        self.metrics.as_ref().map(|m| m[i - 1].as_str())
    }

    /// The certificate directory, when the cluster runs mutual TLS.
    pub fn certs(&self) -> Option<&Path> {
        self.certs.as_deref()
    }

    /// Writes every node's files: node `i` dials the (chain, address)
    /// pairs `validators(i)`.
    ///
    /// # Errors
    ///
    /// A file that cannot be written.
    pub fn write(
        &mut self,
        validators: &dyn Fn(usize) -> Vec<(String, String)>,
    ) -> Result<(), String> {
        self.nodes = (1..=self.len())
            .map(|i| {
                write_node_keyed(
                    self.dir.path(),
                    i,
                    self.keys(),
                    &self.chains,
                    &validators(i),
                    self.version,
                    &self.config_sections(i),
                )
                .map_err(|e| format!("node {i}'s files: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// How the nodes hold the key.
    fn keys(&self) -> NodeKeys {
        match self.threshold {
            Some(threshold) => NodeKeys::Threshold {
                seed: self.seed,
                threshold,
                shares: u16::try_from(self.len()).unwrap_or(u16::MAX),
            },
            None => NodeKeys::Whole(self.seed),
        }
    }

    /// Whether the nodes hold threshold shares.
    pub fn is_threshold(&self) -> bool {
        self.threshold.is_some()
    }

    /// Node `i`'s `[cluster]` section (peers: the initial nodes, or every
    /// node for one that joins later), with its TLS files and the extra
    /// lines, and its `[metrics]` section.
    fn config_sections(&self, i: usize) -> String {
        let mut section = String::new();
        if self.is_cluster() {
            let peers = if i <= self.initial {
                &self.admin[..self.initial]
            } else {
                &self.admin[..]
            };
            section = cluster_section_at(i, &self.admin[i - 1], peers);
            if let Some(tls) = self.tls_files(&format!("node-{i}")) {
                section.push_str(&format!(
                    "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
                    tls.ca.display(),
                    tls.cert.display(),
                    tls.key.display(),
                ));
            } else if self.plaintext_off_loopback {
                // Namespaces on a test host: a closed network, but not
                // loopback, so plaintext must be asked for.
                section.push_str("insecure_plaintext = true\n");
            }
            section.push_str(&self.cluster_config);
        }
        if let Some(metrics) = self.metrics_addr(i) {
            section.push_str(&format!("\n[metrics]\nlisten = \"{metrics}\"\n"));
        }
        section
    }

    /// Node `i`'s directory.
    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    /// Node `i`'s Raft data directory (its config's `data_dir`); a caller
    /// may mount a file system there before or after [`Self::write`].
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("raft")
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

    /// Starts node `i`; one that joins later starts with `--join`, so it
    /// takes the cluster's id once added as a learner.
    ///
    /// # Errors
    ///
    /// The node runs already, or cannot be spawned.
    pub fn spawn(&mut self, i: usize) -> Result<(), String> {
        let args: &[&str] = if i > self.initial { &["--join"] } else { &[] };
        self.spawn_with(i, args)
    }

    /// Starts node `i` with `--join` (say, after its store was wiped).
    ///
    /// # Errors
    ///
    /// As [`Self::spawn`].
    pub fn spawn_joining(&mut self, i: usize) -> Result<(), String> {
        self.spawn_with(i, &["--join"])
    }

    fn spawn_with(&mut self, i: usize, args: &[&str]) -> Result<(), String> {
        let node = self
            .nodes
            .get(i.wrapping_sub(1))
            .ok_or_else(|| format!("node {i} was not written"))?;
        if self.children[i - 1].is_some() {
            return Err(format!("node {i} is running"));
        }
        let child = spawn_node_with_env(
            &self.exe,
            node,
            self.netns[i - 1].as_deref(),
            &self.env[i - 1],
            args,
        )
        .map_err(|e| format!("spawn node {i} ({}): {e}", self.exe.display()))?;
        self.children[i - 1] = Some(child);
        Ok(())
    }

    /// Starts every node that forms the cluster at the start.
    ///
    /// # Errors
    ///
    /// As [`Self::spawn`].
    pub fn spawn_all(&mut self) -> Result<(), String> {
        (1..=self.initial).try_for_each(|i| self.spawn(i))
    }

    /// Starts the initial nodes and, for a cluster, bootstraps it through
    /// node 1.
    ///
    /// # Errors
    ///
    /// A node cannot be spawned, or node 1 does not initialize within
    /// `within`.
    pub async fn spawn_and_initialize(&mut self, within: Duration) -> Result<(), String> {
        self.spawn_all()?;
        if self.is_cluster() {
            self.initialize(1, within).await?;
        }
        Ok(())
    }

    /// Node `i`'s process, while it runs.
    pub fn child(&self, i: usize) -> Option<&Child> {
        self.children[i - 1].as_ref()
    }

    /// Takes node `i`'s process out of the cluster's hands (to wait for it
    /// to exit on its own); the node counts as stopped from now on.
    pub fn take_child(&mut self, i: usize) -> Option<Child> {
        self.children[i - 1].take()
    }

    /// kill -9 node `i` and reaps it (waiting at most a few seconds).
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

    /// kill -9 every running node and reaps them (bounded), without a
    /// runtime: for `Drop`, so namespaces and mounts are free afterwards.
    pub fn kill_all_now(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.start_kill();
        }
        let deadline = std::time::Instant::now() + REAP_TIMEOUT;
        for child in self.children.iter_mut().flatten() {
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for child in &mut self.children {
            child.take();
        }
    }

    /// The running nodes.
    pub fn running(&self) -> Vec<usize> {
        (1..=self.len())
            .filter(|i| self.children[i - 1].is_some())
            .collect()
    }

    /// The 1-based index of the node with SecretConnection id `peer`.
    pub fn index_of(&self, peer: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.node_id == peer)
            .map(|p| p + 1)
    }

    /// Node `i`'s log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("node.log")).unwrap_or_default()
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        self.kill_all_now();
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
