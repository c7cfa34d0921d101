//! Starting the signer nodes (single-node or a cluster, on loopback or in
//! network namespaces) and the validators that sign through them, and
//! stopping them again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quorumkms::privval::Version;
use quorumkms::testnet::{self, NodeFiles};
use quorumkms::validator::{Checker, MockValidator, SignerListener, ValidatorTiming};
use tokio::process::Child;

use crate::args::{Site, region_of};

/// Where the nodes and the validators run.
pub enum Layout<'a> {
    /// Everything on loopback.
    Loopback,
    /// Each node in its own network namespace (see [`Site`]).
    Netns {
        /// Namespaces are `PREFIX-SITE`.
        prefix: &'a str,
        /// One site per node.
        sites: &'a [Site],
        /// The address the validators listen on.
        validator_ip: &'a str,
    },
}

/// How the nodes reach the validators.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A Unix socket.
    Unix,
    /// TCP with SecretConnection.
    SecretConnection,
}

/// The WAN timeouts of cluster/examples/regions-5.
const WAN_TIMEOUTS: &str = "election_timeout_min_ms = 1000\nelection_timeout_max_ms = 2000\n\
                            heartbeat_interval_ms = 250\ngrant_timeout_ms = 3000\n";

const SEED: [u8; 32] = [9u8; 32];

static TMP_ROOT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Puts node directories under `root` (default: the system temporary
/// directory). Call once, before the first [`Bench::start`].
pub fn set_tmp_root(root: Option<PathBuf>) {
    let _ = TMP_ROOT.set(root);
}

fn tmp_root() -> Option<&'static PathBuf> {
    TMP_ROOT.get().and_then(Option::as_ref)
}

/// The consensus key every node signs with.
pub fn public_key() -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .verifying_key()
        .to_bytes()
}

/// Resident memory of a node's process, in MiB (0 when unknown).
pub fn rss_mib(child: &Child) -> f64 {
    let Some(pid) = child.id() else { return 0.0 };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Signer nodes (1 = single-node mode) serving `chains`, each chain with
/// one validator that every node dials, or one per node.
pub struct Bench {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    nodes: Vec<NodeFiles>,
    /// Each node's process, by node number - 1; `None` while it is down.
    pub children: Vec<Option<Child>>,
    /// Each validator, by listener; `None` while a measurement holds it.
    pub validators: Vec<Option<MockValidator>>,
    /// Checks every signature the validators receive.
    pub checker: Checker,
    /// Each node's cluster (and admin) address; empty in single-node mode.
    pub admin: Vec<String>,
    /// Each node's site and namespace, in multi-region mode.
    sites: Vec<(Site, String)>,
    /// The validators' region, in multi-region mode.
    validator_region: Option<char>,
}

impl Bench {
    /// Writes the node directories, starts the nodes (and initializes the
    /// cluster) and the validators. With `per_node_validators`, each node
    /// serves a validator of its own per chain (to pick which node serves).
    pub async fn start(
        exe: &Path,
        nodes: usize,
        chains: usize,
        link: Link,
        per_node_validators: bool,
        layout: &Layout<'_>,
    ) -> Result<Bench, Box<dyn std::error::Error>> {
        let dir = match tmp_root() {
            Some(root) => tempfile::tempdir_in(root)?,
            None => tempfile::tempdir()?,
        };
        let chain_ids: Vec<String> = (0..chains).map(|c| format!("bench-{c}")).collect();
        // One listener per chain, or per (chain, node) when each node must
        // serve its own validator (to pick which node serves).
        let listeners = if per_node_validators {
            chains * nodes
        } else {
            chains
        };
        let (validator_ip, sites) = match layout {
            Layout::Loopback => ("127.0.0.1", Vec::new()),
            Layout::Netns {
                prefix,
                sites,
                validator_ip,
            } => {
                let named = sites
                    .iter()
                    .map(|s| (s.clone(), format!("{prefix}-{}", s.name)));
                (*validator_ip, named.collect())
            }
        };
        let mut listens = Vec::new();
        for l in 0..listeners {
            listens.push(match link {
                Link::Unix => SignerListener::unix(dir.path().join(format!("v{l}.sock")))?,
                Link::SecretConnection => SignerListener::tcp(&format!("{validator_ip}:0")).await?,
            });
        }
        let cluster = nodes >= 3;
        let admin: Vec<String> = match layout {
            _ if !cluster => Vec::new(),
            Layout::Loopback => testnet::free_ports(nodes)?
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect(),
            Layout::Netns { sites, .. } => sites.iter().map(|s| format!("{}:7100", s.ip)).collect(),
        };
        let regions: std::collections::BTreeSet<char> = sites.iter().map(|s| s.0.region).collect();
        let mut files = Vec::new();
        for i in 1..=nodes {
            let validators: Vec<(String, String)> = (0..listeners)
                .filter(|l| !per_node_validators || l % nodes == i - 1)
                .map(|l| {
                    (
                        chain_ids[l / if per_node_validators { nodes } else { 1 }].clone(),
                        listens[l].signer_addr(),
                    )
                })
                .collect();
            let mut extra = String::new();
            if cluster {
                extra = testnet::cluster_section_at(i, &admin[i - 1], &admin);
                if matches!(layout, Layout::Netns { .. }) {
                    // Namespaces on the bench host: a closed network, but
                    // not loopback, so plaintext must be asked for.
                    extra.push_str("insecure_plaintext = true\n");
                }
            }
            if regions.len() > 1 {
                extra.push_str(WAN_TIMEOUTS);
            }
            files.push(testnet::write_node(
                dir.path(),
                i,
                SEED,
                &chain_ids,
                &validators,
                Version::V0_38,
                &extra,
            )?);
        }
        let mut bench = Bench {
            _dir: dir,
            exe: exe.to_path_buf(),
            nodes: files,
            children: Vec::new(),
            validators: Vec::new(),
            checker: Checker::new(),
            admin,
            sites,
            validator_region: region_of(validator_ip),
        };
        for i in 1..=nodes {
            let child = bench.spawn(i)?;
            bench.children.push(Some(child));
        }
        if cluster {
            testnet::initialize_cluster_at(&bench.admin[0], Duration::from_secs(30)).await?;
        }
        let timing = ValidatorTiming {
            accept_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_millis(500),
            ..ValidatorTiming::default()
        };
        bench.validators = listens
            .into_iter()
            .enumerate()
            .map(|(l, listen)| {
                let chain = &chain_ids[l / if per_node_validators { nodes } else { 1 }];
                Some(MockValidator::new(
                    listen,
                    chain,
                    Version::V0_38,
                    public_key(),
                    timing.clone(),
                    bench.checker.clone(),
                ))
            })
            .collect();
        Ok(bench)
    }

    /// Starts node `i` (1-based), in its namespace in multi-region mode.
    pub fn spawn(&self, i: usize) -> std::io::Result<Child> {
        let netns = self.sites.get(i - 1).map(|s| s.1.as_str());
        testnet::spawn_node_in(&self.exe, &self.nodes[i - 1], netns)
    }

    /// Node `i`'s name: its site in multi-region mode.
    pub fn name(&self, i: usize) -> String {
        self.sites
            .get(i - 1)
            .map_or_else(|| format!("node-{i}"), |s| s.0.name.clone())
    }

    fn region(&self, i: usize) -> Option<char> {
        self.sites.get(i - 1).map(|s| s.0.region)
    }

    /// A follower, in the validators' region when one is.
    pub fn follower_near_validators(&self, leader: usize) -> usize {
        (1..=self.nodes.len())
            .filter(|&i| i != leader)
            .min_by_key(|&i| self.region(i) != self.validator_region)
            .unwrap_or(1)
    }

    /// The leader, moved into the validators' region when it is elsewhere
    /// and a node there can take over (best effort).
    pub async fn leader_near_validators(&self) -> Result<usize, String> {
        let leader = wait_for_leader(&self.admin)
            .await
            .ok_or("no leader within 20 s")? as usize;
        let near = (1..=self.nodes.len()).find(|&i| self.region(i) == self.validator_region);
        match near {
            Some(target) if self.region(leader) != self.validator_region => {
                let client = quorumkms::cluster::admin::Client::new(
                    self.admin[leader - 1].clone(),
                    Duration::from_secs(10),
                );
                let _ = client.transfer_leader(target as u64).await;
                Ok(wait_for_leader(&self.admin)
                    .await
                    .ok_or("no leader within 20 s")? as usize)
            }
            _ => Ok(leader),
        }
    }

    /// Kills every node still running and waits for it.
    pub async fn stop(mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// Waits until the node at `addr` follows a leader that has a quorum.
pub async fn wait_rejoined(addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = quorumkms::cluster::admin::Client::new(addr, Duration::from_millis(500))
            .status()
            .await;
        if status.is_ok_and(|s| s.has_quorum_leader && s.leader.is_some()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("restarted node {addr} did not rejoin"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cluster's leader, waiting up to 20 s for one.
pub async fn wait_for_leader(admin: &[String]) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some((leader, _)) = testnet::find_leader_at(admin).await {
            return Some(leader);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
