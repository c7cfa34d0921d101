//! Starting the signer nodes (single-node or a cluster, on loopback or in
//! network namespaces) and the validators that sign through them, and
//! stopping them again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quorumkms::privval::Version;
use quorumkms::testnet::{Placement, ProcessCluster};
use quorumkms::validator::{Checker, MockValidator, SignerListener, ValidatorTiming};
use tokio::process::Child;

use crate::args::{Site, region_of};
use crate::tmkms::Tmkms;

/// How long node 1 may take to start and initialize the cluster.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a leader may take to be elected.
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a restarted node may take to rejoin.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The bench's chain ids.
fn chain_ids(chains: usize) -> Vec<String> {
    (0..chains).map(|c| format!("bench-{c}")).collect()
}

/// A scratch directory under the `--tmp` root.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    match tmp_root() {
        Some(root) => tempfile::tempdir_in(root),
        None => tempfile::tempdir(),
    }
}

/// `count` validator listeners: unix sockets in `dir`, or TCP on `ip`.
async fn bind(
    link: Link,
    dir: &Path,
    count: usize,
    ip: &str,
) -> std::io::Result<Vec<SignerListener>> {
    let mut listens = Vec::new();
    for l in 0..count {
        listens.push(match link {
            Link::Unix => SignerListener::unix(dir.join(format!("v{l}.sock")))?,
            Link::SecretConnection => SignerListener::tcp(&format!("{ip}:0")).await?,
        });
    }
    Ok(listens)
}

/// A mock validator on each listener; listener `l` serves chain
/// `l / per_listener`.
fn mock_validators(
    listens: Vec<SignerListener>,
    chain_ids: &[String],
    per_listener: usize,
    checker: &Checker,
) -> Vec<MockValidator> {
    let timing = ValidatorTiming {
        accept_timeout: Duration::from_secs(30),
        ping_interval: Duration::from_millis(500),
        ..ValidatorTiming::default()
    };
    listens
        .into_iter()
        .enumerate()
        .map(|(l, listen)| {
            let mut validator = MockValidator::new(
                listen,
                &chain_ids[l / per_listener],
                Version::V0_38,
                public_key(),
                timing.clone(),
                checker.clone(),
            );
            // As most chains run: tmkms leaves the extension signature out.
            validator.set_vote_extensions(false);
            validator
        })
        .collect()
}

/// tmkms serving `chains` on loopback, one validator per chain, with the
/// nodes' consensus key.
pub struct Comparison {
    /// The tmkms process.
    pub tmkms: Tmkms,
    /// One validator per chain.
    pub validators: Vec<MockValidator>,
    /// Checks every signature the validators receive.
    pub checker: Checker,
    /// Holds tmkms's files and the validators' sockets.
    dir: tempfile::TempDir,
}

impl Comparison {
    /// Writes tmkms's config and starts `exe` and the validators.
    pub async fn start(
        exe: &Path,
        chains: usize,
        link: Link,
    ) -> Result<Comparison, Box<dyn std::error::Error>> {
        let dir = scratch_dir()?;
        let chain_ids = chain_ids(chains);
        let listens = bind(link, dir.path(), chains, "127.0.0.1").await?;
        let addrs: Vec<(String, String)> = chain_ids
            .iter()
            .cloned()
            .zip(listens.iter().map(SignerListener::signer_addr))
            .collect();
        let tmkms = Tmkms::start(exe, dir.path(), &SEED, &addrs)?;
        let checker = Checker::new();
        let validators = mock_validators(listens, &chain_ids, 1, &checker);
        Ok(Comparison {
            tmkms,
            validators,
            checker,
            dir,
        })
    }

    /// The last lines of tmkms's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("tmkms.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Signer nodes (1 = single-node mode) serving `chains`, each chain with
/// one validator that every node dials, or one per node.
pub struct Bench {
    /// The node processes.
    pub nodes: ProcessCluster,
    /// Each validator, by listener; `None` while a measurement holds it.
    pub validators: Vec<Option<MockValidator>>,
    /// Checks every signature the validators receive.
    pub checker: Checker,
    /// Each node's site, in multi-region mode.
    sites: Vec<Site>,
    /// The validators' region, in multi-region mode.
    validator_region: Option<char>,
    /// Holds the validators' unix sockets.
    _sockets: tempfile::TempDir,
}

impl Bench {
    /// Writes the node directories, starts the nodes (and initializes the
    /// cluster) and the validators. With `threshold`, each chain's key is
    /// split that many of `nodes` (threshold mode), else every node holds
    /// it whole. With `per_node_validators`, each node serves a validator
    /// of its own per chain (to pick which node serves).
    pub async fn start(
        exe: &Path,
        nodes: usize,
        threshold: Option<u16>,
        chains: usize,
        link: Link,
        per_node_validators: bool,
        layout: &Layout<'_>,
    ) -> Result<Bench, Box<dyn std::error::Error>> {
        let sockets = scratch_dir()?;
        let chain_ids = chain_ids(chains);
        // One listener per chain, or per (chain, node) when each node must
        // serve its own validator (to pick which node serves).
        let listeners = if per_node_validators {
            chains * nodes
        } else {
            chains
        };
        let (validator_ip, sites, placement) = match layout {
            Layout::Loopback => ("127.0.0.1", Vec::new(), Placement::Loopback),
            Layout::Netns {
                prefix,
                sites,
                validator_ip,
            } => {
                let netns = sites
                    .iter()
                    .map(|s| (format!("{prefix}-{}", s.name), s.ip.clone()));
                (
                    *validator_ip,
                    sites.to_vec(),
                    Placement::Netns(netns.collect()),
                )
            }
        };
        let listens = bind(link, sockets.path(), listeners, validator_ip).await?;
        let regions: std::collections::BTreeSet<char> = sites.iter().map(|s| s.region).collect();
        let mut procs = ProcessCluster::builder(exe, nodes)
            .seed(SEED)
            .version(Version::V0_38)
            .chains(chain_ids.clone())
            .placement(placement)
            .metrics()
            .dir_in(tmp_root().cloned());
        if regions.len() > 1 {
            procs = procs.cluster_config(WAN_TIMEOUTS);
        }
        if let Some(t) = threshold {
            procs = procs.threshold(t);
        }
        let mut procs = procs.build()?;
        let per_listener = if per_node_validators { nodes } else { 1 };
        procs.write(&|i| {
            (0..listeners)
                .filter(|l| !per_node_validators || l % nodes == i - 1)
                .map(|l| {
                    (
                        chain_ids[l / per_listener].clone(),
                        listens[l].signer_addr(),
                    )
                })
                .collect()
        })?;
        procs.spawn_and_initialize(INITIALIZE_TIMEOUT).await?;
        let checker = Checker::new();
        let validators = mock_validators(listens, &chain_ids, per_listener, &checker)
            .into_iter()
            .map(Some)
            .collect();
        Ok(Bench {
            nodes: procs,
            validators,
            checker,
            sites,
            validator_region: region_of(validator_ip),
            _sockets: sockets,
        })
    }

    /// True in single-node mode.
    pub fn single(&self) -> bool {
        !self.nodes.is_cluster()
    }

    /// Node `i`'s name: its site in multi-region mode.
    pub fn name(&self, i: usize) -> String {
        self.sites
            .get(i - 1)
            .map_or_else(|| format!("node-{i}"), |s| s.name.clone())
    }

    fn region(&self, i: usize) -> Option<char> {
        self.sites.get(i - 1).map(|s| s.region)
    }

    /// Resident memory of each running node, in MiB.
    pub fn rss_mib(&self) -> Vec<f64> {
        (1..=self.nodes.len())
            .filter_map(|i| self.nodes.child(i))
            .map(rss_mib)
            .collect()
    }

    /// Each running node's stage means, from its `/metrics`.
    pub async fn stages(&self) -> Vec<(String, crate::stages::StageMeans)> {
        let mut out = Vec::new();
        for i in 1..=self.nodes.len() {
            if let Some(addr) = self.nodes.metrics_addr(i)
                && let Ok(means) = crate::stages::scrape(addr).await
            {
                out.push((self.name(i), means));
            }
        }
        out
    }

    /// The leader, waiting for one.
    pub async fn leader(&self) -> Result<usize, String> {
        self.nodes.leader(LEADER_TIMEOUT).await
    }

    /// Restarts node `i` and waits until it rejoined the cluster.
    pub async fn restart(&mut self, i: usize) -> Result<(), String> {
        self.nodes.spawn(i)?;
        self.nodes.wait_rejoined(i, REJOIN_TIMEOUT).await
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
        let leader = self.leader().await?;
        let near = (1..=self.nodes.len()).find(|&i| self.region(i) == self.validator_region);
        match near {
            Some(target) if self.region(leader) != self.validator_region => {
                let _ = self
                    .nodes
                    .client(leader)?
                    .transfer_leader(target as u64)
                    .await;
                self.leader().await
            }
            _ => Ok(leader),
        }
    }

    /// Kills every node still running and waits for it.
    pub async fn stop(mut self) {
        self.nodes.stop_all().await;
    }
}
