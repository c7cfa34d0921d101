//! Shared set-up for the operations tests: a cluster of real `quorumkms
//! start` processes (with mutual TLS or plaintext, each with a metrics
//! endpoint), a simulated validator signing in the background, and admin
//! clients.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use quorumkms::cluster::admin::{Client, ClientError, Status};
use quorumkms::cluster::{TlsConfig, certs};
use quorumkms::privval::Version;
use quorumkms::testnet::{self, CHAIN_ID, NodeFiles};
use quorumkms::validator::{
    Checker, MockValidator, SignOutcome, SignerListener, ValidatorTiming, consensus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{exe, one_cluster_at_a_time};

const SEED: [u8; 32] = [7u8; 32];

/// Signing results of the background validator.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub heights: i64,
    pub signed: u64,
    pub refused: u64,
    pub failed: u64,
}

/// A validator signing heights in the background until stopped.
pub struct Signing {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Tally>,
    pub checker: Checker,
}

impl Signing {
    /// Stops after the current height and returns the tally.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("signing task")
    }

    /// Signatures verified so far.
    pub fn released(&self) -> usize {
        self.checker.report().released
    }

    /// Waits until `more` signatures beyond now were released.
    pub async fn wait_more(&self, more: usize, within: Duration) {
        let target = self.released() + more;
        let deadline = Instant::now() + within;
        while self.released() < target {
            assert!(
                Instant::now() < deadline,
                "validator stalled at {} signatures",
                self.released()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A loopback cluster of signer processes.
pub struct Ops {
    /// Kept for its drop, which removes the directory.
    _dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, NodeFiles>,
    pub ports: BTreeMap<u64, u16>,
    pub metrics_ports: BTreeMap<u64, u16>,
    pub children: BTreeMap<u64, Child>,
    /// The certificate directory, when the cluster runs mutual TLS.
    pub certs: Option<PathBuf>,
    pub public_key: [u8; 32],
    listen: Option<SignerListener>,
    /// Held while the cluster lives (dropped last, after the processes).
    _serial: MutexGuard<'static, ()>,
}

impl Ops {
    /// Writes `total` node directories, starts nodes 1..=`initial` and
    /// initializes them as the cluster. Nodes above `initial` list every
    /// node as a peer and are started later with [`Ops::spawn`].
    // The guard is meant to be held across the awaits: each test runs its
    // own runtime, and the lock only orders whole clusters.
    #[allow(clippy::await_holding_lock)]
    pub async fn start(total: usize, initial: usize, tls: bool) -> Ops {
        let serial = one_cluster_at_a_time();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let all = testnet::free_ports(total * 2).expect("ports");
        let (cluster_ports, metric_ports) = all.split_at(total);
        let certs_dir = tls.then(|| root.join("certs"));
        if let Some(certs_dir) = &certs_dir {
            certs::init_ca(certs_dir).expect("CA");
            for id in 1..=total as u64 {
                certs::node(certs_dir, id, &["127.0.0.1".to_string()]).expect("node cert");
            }
            certs::operator(certs_dir, "ops").expect("operator cert");
        }
        let listen = SignerListener::tcp("127.0.0.1:0")
            .await
            .expect("bind validator");
        let public_key = ed25519_dalek::SigningKey::from_bytes(&SEED)
            .verifying_key()
            .to_bytes();
        let extra = |i: usize| {
            let peers = if i <= initial {
                &cluster_ports[..initial]
            } else {
                cluster_ports
            };
            let mut section = testnet::cluster_section(i, peers);
            if let Some(certs_dir) = &certs_dir {
                section.push_str(&format!(
                    "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
                    certs_dir.join("ca.pem").display(),
                    certs_dir.join(format!("node-{i}.pem")).display(),
                    certs_dir.join(format!("node-{i}.key")).display(),
                ));
            }
            section.push_str(&format!(
                "\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
                metric_ports[i - 1]
            ));
            section
        };
        let files = testnet::write_nodes(
            &root,
            total,
            SEED,
            &[listen.signer_addr()],
            Version::V0_38,
            &extra,
        )
        .expect("node files");
        let mut ops = Ops {
            nodes: (1..=total as u64).zip(files).collect(),
            ports: (1..=total as u64)
                .zip(cluster_ports.iter().copied())
                .collect(),
            metrics_ports: (1..=total as u64)
                .zip(metric_ports.iter().copied())
                .collect(),
            children: BTreeMap::new(),
            certs: certs_dir,
            public_key,
            listen: Some(listen),
            _serial: serial,
            _dir: dir,
        };
        for id in 1..=initial as u64 {
            ops.spawn(id);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ops.client(1).initialize().await {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => panic!("initialize: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        ops.leader(Duration::from_secs(10)).await;
        ops
    }

    /// The cluster address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[&id])
    }

    /// TLS files for `stem` (e.g. `operator-ops`, `node-1`).
    pub fn tls_files(&self, stem: &str) -> Option<TlsConfig> {
        self.certs.as_ref().map(|dir| TlsConfig {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        })
    }

    /// An operator's admin client for node `id`.
    pub fn client(&self, id: u64) -> Client {
        let client = Client::new(self.addr(id), Duration::from_secs(10));
        match self.tls_files("operator-ops") {
            Some(tls) => client.with_tls(&tls).expect("operator TLS"),
            None => client,
        }
    }

    /// Starts node `id`'s process.
    pub fn spawn(&mut self, id: u64) {
        let child = testnet::spawn_node(&exe(), &self.nodes[&id]).expect("spawn");
        self.children.insert(id, child);
    }

    /// kill -9 node `id`.
    pub async fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Node `id`'s status.
    pub async fn status(&self, id: u64) -> Result<Status, ClientError> {
        self.client(id).status().await
    }

    /// The leader, as the running nodes agree on it.
    pub async fn leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            for id in self.children.keys() {
                if let Ok(status) = self.status(*id).await
                    && let Some(leader) = status.leader
                    && self.children.contains_key(&leader)
                    && self.status(leader).await.is_ok_and(|s| s.role == "Leader")
                {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// Starts the validator signing heights in the background.
    pub fn start_signing(&mut self) -> Signing {
        let listen = self.listen.take().expect("one validator per cluster");
        let checker = Checker::new();
        let timing = ValidatorTiming {
            io_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_millis(500),
            retry_interval: Duration::from_millis(100),
            retries: 50,
            accept_timeout: Duration::from_secs(15),
        };
        let mut validator = MockValidator::new(
            listen,
            CHAIN_ID,
            Version::V0_38,
            self.public_key,
            timing,
            checker.clone(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let address = consensus::address(&self.public_key);
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut height = 0;
            while !flag.load(Ordering::SeqCst) {
                height += 1;
                let block = consensus::block_id(height, 0);
                let proposal = consensus::proposal(height, 0, block.clone(), 0);
                let prevote = consensus::vote(
                    Version::V0_38,
                    false,
                    height,
                    0,
                    Some(block.clone()),
                    &address,
                    10,
                );
                let precommit =
                    consensus::vote(Version::V0_38, true, height, 0, Some(block), &address, 20);
                let mut outcomes = vec![
                    validator.sign_proposal(proposal).await,
                    validator.sign_vote(prevote).await,
                ];
                if height % 5 == 0 {
                    // A conflicting prevote: the cluster must refuse it.
                    let other = Some(consensus::block_id(height, 1));
                    let conflicting =
                        consensus::vote(Version::V0_38, false, height, 0, other, &address, 10);
                    match validator.sign_vote(conflicting).await {
                        SignOutcome::Refused(_) => tally.refused += 1,
                        SignOutcome::Signed { .. } => panic!("a conflicting prevote was signed"),
                        SignOutcome::Failed(_) => tally.failed += 1,
                    }
                }
                outcomes.push(validator.sign_vote(precommit).await);
                for outcome in outcomes {
                    match outcome {
                        SignOutcome::Signed { .. } => tally.signed += 1,
                        _ => tally.failed += 1,
                    }
                }
                tally.heights = height;
                validator.keep_alive().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tally
        });
        Signing {
            stop,
            task,
            checker,
        }
    }

    /// Fetches `path` from node `id`'s metrics endpoint: (status line, body).
    pub async fn http_get(&self, id: u64, path: &str) -> (String, String) {
        http_get(self.metrics_ports[&id], path).await
    }

    /// Node `id`'s log.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.nodes[&id].dir.join("node.log")).unwrap_or_default()
    }

    /// Stops every process.
    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id).await;
        }
    }
}

/// A plain HTTP GET on 127.0.0.1:`port`: (status line, body).
pub async fn http_get(port: u16, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to metrics");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string())
}

/// The value of the first sample of `metric` whose labels contain every
/// `label="value"` in `labels`.
pub fn sample(body: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(metric)
                && line[metric.len()..].starts_with(['{', ' '])
                && labels.iter().all(|l| line.contains(l))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Retries `f` until it succeeds or `within` passes; returns the last
/// result.
pub async fn retry<T, E, F, Fut>(within: Duration, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
