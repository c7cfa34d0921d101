//! Real-process cluster harness: `quorumkms start` processes forming a Raft
//! cluster, mock validators that share one [`Checker`],
//! and the fault tools the scenarios need: kill -9, network namespaces with
//! a real kernel cut, and a small tmpfs for a data dir that fills up.
//!
//! Every wait polls the nodes' admin status (or a validator) against a
//! deadline. Every namespace, mount and process is removed by a guard, also
//! when a test panics; on a panic the tail of each node's log is printed.
//!
//! The privileged tools (namespaces, iptables, mount) need root. Without it
//! they fail loudly; `QUORUMKMS_PRIVILEGED_TESTS=0` makes the tests that
//! need them return early instead, saying so, for environments that cannot
//! grant it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ed25519_dalek::Signer;
use quorumkms::cluster::admin::{self, Status};
use quorumkms::privval::{Proposal, Version, Vote};
use quorumkms::testnet::{self, CHAIN_ID, NodeFiles};
use quorumkms::validator::{
    Checker, MockValidator, SignOutcome, SignerListener, ValidatorTiming, consensus,
};
use quorumkms::watermark::Position;
use tokio::process::Child;
use tokio::time::Instant;

pub mod ops;
#[path = "../../support/timing.rs"]
mod timing;
pub use timing::fast_timing;

/// The consensus key every node holds.
pub const SEED: [u8; 32] = [42; 32];
/// The protocol every validator speaks.
pub const VERSION: Version = Version::V0_38;
/// The cluster port inside a network namespace (each node has its own
/// address there, so they can share it).
const NETNS_PORT: u16 = 7100;

/// Waits until no other cluster of this test binary runs, and holds that
/// until dropped: each cluster starts several processes on a small machine.
pub fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one scenario on a fresh runtime, one scenario at a time (see
/// [`one_cluster_at_a_time`]).
pub fn run<F: std::future::Future<Output = ()>>(scenario: F) {
    let _serial = one_cluster_at_a_time();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(scenario);
}

/// False when the environment declared it cannot run privileged tests
/// (`QUORUMKMS_PRIVILEGED_TESTS=0`); the caller then returns early.
pub fn privileged_allowed(test: &str) -> bool {
    if std::env::var("QUORUMKMS_PRIVILEGED_TESTS").as_deref() == Ok("0") {
        eprintln!(
            "!!! {test}: NOT RUN: QUORUMKMS_PRIVILEGED_TESTS=0 (needs root for namespaces, iptables or mount)"
        );
        return false;
    }
    true
}

/// The binary under test.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumkms"))
}

/// The consensus public key.
pub fn public_key() -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .verifying_key()
        .to_bytes()
}

/// The signature every node must give for `sign_bytes` (ed25519 is
/// deterministic).
pub fn expected_signature(sign_bytes: &[u8]) -> Vec<u8> {
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .sign(sign_bytes)
        .to_bytes()
        .to_vec()
}

/// For a validator whose requests are expected to fail: gives up quickly.
pub fn short_timing() -> ValidatorTiming {
    ValidatorTiming {
        accept_timeout: Duration::from_millis(1500),
        retries: 2,
        ..fast_timing()
    }
}

/// A validator listening on `host` (port chosen by the kernel), recording
/// into `checker`. Returns it with the address signers dial.
pub async fn validator(
    host: &str,
    checker: &Checker,
    timing: ValidatorTiming,
) -> (MockValidator, String) {
    let listen = SignerListener::tcp(&format!("{host}:0"))
        .await
        .expect("bind validator");
    let addr = listen.signer_addr();
    let v = MockValidator::new(
        listen,
        CHAIN_ID,
        VERSION,
        public_key(),
        timing,
        checker.clone(),
    );
    (v, addr)
}

fn address() -> Vec<u8> {
    consensus::address(&public_key())
}

/// A prevote for block `variant` at `height`, round 0.
pub fn prevote(height: i64, variant: u8) -> Vote {
    let block = consensus::block_id(height, variant);
    consensus::vote(VERSION, false, height, 0, Some(block), &address(), 10)
}

/// A precommit for block `variant` at `height`, round 0.
pub fn precommit(height: i64, variant: u8) -> Vote {
    let block = consensus::block_id(height, variant);
    consensus::vote(VERSION, true, height, 0, Some(block), &address(), 20)
}

/// A proposal of block `variant` at `height`, round 0.
pub fn proposal(height: i64, variant: u8) -> Proposal {
    consensus::proposal(height, 0, consensus::block_id(height, variant), 0)
}

/// The signature of a signed outcome; panics with `what` otherwise.
pub fn signature(outcome: &SignOutcome, what: &str) -> Vec<u8> {
    match outcome {
        SignOutcome::Signed { signature, .. } => signature.clone(),
        other => panic!("{what}: expected a signature, got {other:?}"),
    }
}

/// Asserts that the checker saw no conflicting or invalid signature.
pub fn assert_no_conflicts(checker: &Checker) {
    let report = checker.report();
    assert_eq!(
        (report.conflicts, report.invalid),
        (0, 0),
        "conflicting or invalid signatures: {report:?} at {:?}",
        checker.conflicting_positions()
    );
}

/// Runs a command, panicking loudly (with its output) when it fails.
pub fn sh(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}{}\n(these tests need root; set QUORUMKMS_PRIVILEGED_TESTS=0 to leave them out)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command for clean-up, ignoring failures.
fn sh_quiet(program: &str, args: &[&str]) {
    let _ = std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Network namespaces, one per node, on one bridge (in a namespace of its
/// own, so the host's firewall never sees the bridged traffic). The host
/// reaches the bridge through a veth with address `.1`: validators listen
/// there and the admin API is reached from there. Node `i` has `.(10+i)`.
pub struct Net {
    tag: String,
    prefix: String,
    nodes: usize,
}

impl Net {
    /// Creates the namespaces and links. Panics (after cleaning up) when
    /// the environment does not allow it.
    pub fn new(nodes: usize) -> Net {
        let pid = std::process::id();
        let net = Net {
            tag: format!("qk{pid}"),
            prefix: format!("10.{}.{}", 100 + (pid >> 8) % 100, pid % 256),
            nodes,
        };
        let lan = net.lan();
        sh("ip", &["netns", "add", &lan]);
        sh("ip", &["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        sh("ip", &["-n", &lan, "link", "set", "br0", "up"]);
        let host = format!("{}h", net.tag);
        sh(
            "ip",
            &[
                "link", "add", &host, "type", "veth", "peer", "name", "hostport",
            ],
        );
        sh("ip", &["link", "set", "hostport", "netns", &lan]);
        sh(
            "ip",
            &["-n", &lan, "link", "set", "hostport", "master", "br0", "up"],
        );
        sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", net.host_ip()),
                "dev",
                &host,
            ],
        );
        sh("ip", &["link", "set", &host, "up"]);
        for i in 1..=nodes {
            let ns = net.ns(i);
            let (inner, outer) = (format!("{}a{i}", net.tag), format!("{}b{i}", net.tag));
            sh("ip", &["netns", "add", &ns]);
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            sh(
                "ip",
                &[
                    "link", "add", &inner, "type", "veth", "peer", "name", &outer,
                ],
            );
            sh("ip", &["link", "set", &inner, "netns", &ns]);
            sh("ip", &["-n", &ns, "link", "set", &inner, "name", "eth0"]);
            sh(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", net.node_ip(i)),
                    "dev",
                    "eth0",
                ],
            );
            sh("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            sh("ip", &["link", "set", &outer, "netns", &lan]);
            sh(
                "ip",
                &["-n", &lan, "link", "set", &outer, "master", "br0", "up"],
            );
        }
        net
    }

    fn lan(&self) -> String {
        format!("{}-lan", self.tag)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.tag)
    }

    /// The host's address on the bridge.
    pub fn host_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    /// Cuts node `i` off from every other node, inside its namespace: its
    /// packets to and from them are dropped. The host (validators, admin)
    /// stays reachable.
    pub fn isolate(&self, i: usize) {
        let ns = self.ns(i);
        for j in (1..=self.nodes).filter(|&j| j != i) {
            let peer = self.node_ip(j);
            sh(
                "ip",
                &[
                    "netns", "exec", &ns, "iptables", "-A", "INPUT", "-s", &peer, "-j", "DROP",
                ],
            );
            sh(
                "ip",
                &[
                    "netns", "exec", &ns, "iptables", "-A", "OUTPUT", "-d", &peer, "-j", "DROP",
                ],
            );
        }
    }

    /// Undoes [`Net::isolate`].
    pub fn heal(&self, i: usize) {
        let ns = self.ns(i);
        sh("ip", &["netns", "exec", &ns, "iptables", "-F", "INPUT"]);
        sh("ip", &["netns", "exec", &ns, "iptables", "-F", "OUTPUT"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            sh_quiet("ip", &["netns", "del", &self.ns(i)]);
        }
        sh_quiet("ip", &["link", "del", &format!("{}h", self.tag)]);
        sh_quiet("ip", &["netns", "del", &self.lan()]);
    }
}

/// A small tmpfs mounted over a directory, with a filler file to make it
/// full. Unmounted on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `16m`) at `path` (created).
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let p = path.to_str().expect("utf-8 path");
        sh(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", p],
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Writes the filler until the file system has no room left.
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).expect("filler");
        let chunk = vec![0xa5u8; 4096];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(
                    e.raw_os_error(),
                    Some(28),
                    "expected ENOSPC filling the tmpfs, got {e}"
                );
                break;
            }
        }
        let _ = file.sync_all();
    }

    /// Removes the filler: the disk has room again.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(p) = self.path.to_str() {
            sh_quiet("umount", &["-l", p]);
        }
    }
}

/// Where the nodes run.
pub enum Layout {
    /// Every node on 127.0.0.1, on free ports.
    Loopback,
    /// Every node in its own network namespace.
    Netns,
}

/// Signer nodes as real processes.
pub struct Procs {
    pub nodes: Vec<NodeFiles>,
    /// host:port of each node's cluster (and admin) service.
    pub admin: Vec<String>,
    children: Vec<Option<Child>>,
    env: Vec<Vec<(String, String)>>,
    pub net: Option<Net>,
    pub mounts: Vec<Tmpfs>,
    dir: tempfile::TempDir,
}

impl Procs {
    /// Creates the network (for [`Layout::Netns`]) and a directory; nodes
    /// are written by [`Procs::write`] once the validators exist.
    pub fn new(count: usize, layout: Layout) -> Procs {
        let dir = tempfile::Builder::new()
            .prefix("quorumkms-procs-")
            .tempdir()
            .expect("tempdir");
        let (net, admin) = match layout {
            Layout::Loopback => {
                let ports = testnet::free_ports(count).expect("free ports");
                (
                    None,
                    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
                )
            }
            Layout::Netns => {
                let net = Net::new(count);
                let admin = (1..=count)
                    .map(|i| format!("{}:{NETNS_PORT}", net.node_ip(i)))
                    .collect();
                (Some(net), admin)
            }
        };
        Procs {
            nodes: Vec::new(),
            admin,
            children: (0..count).map(|_| None).collect(),
            env: vec![Vec::new(); count],
            net,
            mounts: Vec::new(),
            dir,
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

    /// Writes every node's files: node `i` (1-based) dials the validator
    /// addresses `validators(i)`.
    pub fn write(&mut self, validators: &dyn Fn(usize) -> Vec<String>) {
        let chains = [CHAIN_ID.to_string()];
        let nodes: Result<Vec<NodeFiles>, _> = (1..=self.len())
            .map(|i| {
                let dials: Vec<(String, String)> = validators(i)
                    .into_iter()
                    .map(|addr| (CHAIN_ID.to_string(), addr))
                    .collect();
                let cluster = testnet::cluster_section_at(i, &self.admin[i - 1], &self.admin);
                testnet::write_node(self.dir.path(), i, SEED, &chains, &dials, VERSION, &cluster)
            })
            .collect();
        self.nodes = nodes.expect("write node files");
    }

    /// Node `i`'s Raft data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i - 1].dir.join("raft")
    }

    /// Sets an environment variable for node `i`'s later starts.
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        self.env[i - 1].push((key.to_string(), value.to_string()));
    }

    /// Starts node `i`.
    pub fn spawn(&mut self, i: usize) {
        assert!(self.children[i - 1].is_none(), "node {i} is running");
        let netns = self.net.as_ref().map(|net| net.ns(i));
        let child = testnet::spawn_node_with_env(
            &exe(),
            &self.nodes[i - 1],
            netns.as_deref(),
            &self.env[i - 1],
        )
        .expect("spawn node");
        self.children[i - 1] = Some(child);
    }

    /// Starts every node.
    pub fn spawn_all(&mut self) {
        for i in 1..=self.len() {
            self.spawn(i);
        }
    }

    /// Starts every node, bootstraps the cluster through node 1 and waits
    /// (up to `within`) until all of them follow one leader with quorum.
    /// Returns the leader.
    pub async fn start(&mut self, within: Duration) -> usize {
        self.spawn_all();
        self.initialize(1).await;
        let all: Vec<usize> = (1..=self.len()).collect();
        self.wait_ready(&all, within).await
    }

    /// kill -9 node `i` and reaps it.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i - 1].take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
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
        if let Err(e) =
            testnet::initialize_cluster_at(&self.admin[i - 1], Duration::from_secs(20)).await
        {
            panic!("initialize via node {i}: {e}");
        }
    }

    /// Node `i`'s status, if it answers quickly.
    pub async fn status(&self, i: usize) -> Option<Status> {
        admin::Client::new(self.admin[i - 1].clone(), Duration::from_millis(800))
            .status()
            .await
            .ok()
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

    /// Node `i`'s watermark for the demo chain.
    pub async fn watermark(&self, i: usize) -> Option<Position> {
        self.status(i)
            .await
            .and_then(|s| s.chains.get(CHAIN_ID).and_then(|c| c.position))
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

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Procs {
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
