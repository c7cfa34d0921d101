//! `quorumkms doctor -c FILE`: the checks an operator runs before `start`
//! and after an incident. Each check prints one line, PASS, WARN, FAIL or
//! SKIP, and every FAIL or WARN says how to fix it. Any FAIL makes the
//! command exit non-zero.
//!
//! What it checks: the config; key and PIN files (mode 0600, loadable);
//! that the key backend answers, and (through the admin API) that every
//! node signs with the same public key; the cluster certificate; each
//! peer's reachability, certificate and node id; the clock offset to each
//! peer; that each validator address resolves and accepts a connection;
//! that the state directory is on a filesystem that honours fsync; free
//! disk space.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster::Target;
use crate::cluster::subject::not_after;
use crate::cluster::tls::{Identity, NODE_NAME, peer_info};
use crate::config::{self, Config};
use crate::keys;
use crate::metrics::page::format_unix_ms;
use crate::transport::Address;

/// `doctor` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The node's config, and (for the admin checks) an operator
    /// certificate, as for `quorumkms cluster status`.
    #[command(flatten)]
    pub target: Target,
    /// Seconds each network check may take.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
    /// Only resolve the validator addresses; do not connect. (A validator
    /// that already has a signer accepts a probe's connection only later,
    /// and then spends a moment on its failed handshake.)
    #[arg(long)]
    pub no_dial: bool,
}

/// A certificate expiring sooner than this is a warning.
const CERT_WARN_DAYS: i64 = 30;
/// A clock further off than this from a peer's is a warning.
const CLOCK_WARN_MS: i64 = 1000;
/// Less free space than this fails; less than `DISK_WARN` warns.
const DISK_FAIL: u64 = 64 << 20;
const DISK_WARN: u64 = 1 << 30;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Pass,
    Warn,
    Fail,
    Skip,
}

#[derive(Default)]
struct Report {
    checks: usize,
    fails: usize,
    warns: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: impl Display, fix: Option<String>) {
        self.checks += 1;
        let tag = match level {
            Level::Pass => "PASS",
            Level::Warn => {
                self.warns += 1;
                "WARN"
            }
            Level::Fail => {
                self.fails += 1;
                "FAIL"
            }
            Level::Skip => "SKIP",
        };
        println!("{tag}  {what}");
        if let Some(fix) = fix {
            println!("      fix: {fix}");
        }
    }

    fn pass(&mut self, what: impl Display) {
        self.line(Level::Pass, what, None);
    }

    fn fail(&mut self, what: impl Display, fix: impl Into<String>) {
        self.line(Level::Fail, what, Some(fix.into()));
    }

    fn warn(&mut self, what: impl Display, fix: impl Into<String>) {
        self.line(Level::Warn, what, Some(fix.into()));
    }
}

/// Runs every check and prints the report.
///
/// # Errors
///
/// Any check failed.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut report = Report::default();
    let path = &args.target.config;
    let config = match config::load(path) {
        Ok(config) => {
            report.pass(format!(
                "config {}: valid ({} chain(s), {} validator node(s), {})",
                path.display(),
                config.chain.len(),
                config.validator.len(),
                config
                    .cluster
                    .as_ref()
                    .map_or("single-node mode".to_string(), |c| format!(
                        "cluster node {} of {}",
                        c.node_id,
                        c.peers.len()
                    ))
            ));
            Some(config)
        }
        Err(e) => {
            report.fail(
                format!("config {}: {e}", path.display()),
                "correct the keys named above (every problem is listed)",
            );
            None
        }
    };
    if let Some(config) = config {
        let timeout = Duration::from_secs(args.timeout.max(1));
        let runtime = tokio::runtime::Runtime::new()?;
        let local_keys = check_keys(&mut report, &config);
        if let Some(cluster) = &config.cluster {
            runtime.block_on(check_cluster(
                &mut report,
                &args.target,
                cluster,
                &local_keys,
                timeout,
            ));
        }
        runtime.block_on(check_validators(
            &mut report,
            &config,
            timeout,
            !args.no_dial,
        ));
        check_storage(&mut report, &config);
    }
    println!(
        "doctor: {} check(s), {} failed, {} warning(s)",
        report.checks, report.fails, report.warns
    );
    if report.fails > 0 {
        return Err(format!("{} check(s) failed", report.fails).into());
    }
    Ok(())
}

fn secret_file(report: &mut Report, what: &str, path: &Path) -> bool {
    match keys::softsign::check_permissions(path) {
        Ok(()) => true,
        Err(e) if !path.exists() => {
            report.fail(
                format!("{what} {}: missing ({e})", path.display()),
                format!(
                    "restore it from your backup, or correct its path in the config; \
                     then chmod 600 {}",
                    path.display()
                ),
            );
            false
        }
        Err(e) => {
            report.fail(
                format!("{what} {}: {e}", path.display()),
                format!("chmod 600 {}", path.display()),
            );
            false
        }
    }
}

/// Key and PIN files, and the key backend; returns each chain's public
/// key (hex) as loaded here.
fn check_keys(report: &mut Report, config: &Config) -> BTreeMap<String, String> {
    let mut files_ok = true;
    for soft in &config.providers.softsign {
        let what = format!("consensus key for {}", soft.chain_ids.join(", "));
        if !secret_file(report, &what, &soft.path) {
            files_ok = false;
            continue;
        }
        match keys::softsign::SoftSigner::load(&soft.path) {
            Ok(_) => report.pass(format!("{what} {}: mode 0600, loads", soft.path.display())),
            Err(e) => {
                files_ok = false;
                report.fail(
                    format!("{what} {}: {e}", soft.path.display()),
                    "replace it with the validator's priv_validator_key.json \
                     (quorumkms softsign import) from your backup",
                );
            }
        }
    }
    for hsm in &config.providers.yubihsm {
        let path = &hsm.auth.password_file;
        if secret_file(report, "YubiHSM PIN file", path) {
            report.pass(format!("YubiHSM PIN file {}: mode 0600", path.display()));
        } else {
            files_ok = false;
        }
    }
    for v in &config.validator {
        let Some(path) = &v.secret_key else { continue };
        let what = format!("identity key for {}", v.addr);
        if !secret_file(report, &what, path) {
            files_ok = false;
            continue;
        }
        match keys::identity::load(path) {
            Ok(_) => report.pass(format!("{what} {}: mode 0600, loads", path.display())),
            Err(e) => {
                files_ok = false;
                report.fail(
                    format!("{what} {}: {e}", path.display()),
                    "write a new identity key (any 32-byte ed25519 seed; `quorumkms init` \
                     makes one) and chmod 600 it",
                );
            }
        }
    }
    let mut public = BTreeMap::new();
    if !files_ok {
        report.line(
            Level::Skip,
            "key backend: not tried until the key files above pass",
            None,
        );
        return public;
    }
    check_shares(report, config, &mut public);
    match crate::node::load_signers(config) {
        Ok(signers) => {
            for chain in config
                .chain
                .iter()
                .filter(|c| c.mode != crate::config::ChainMode::Threshold)
            {
                match signers.get(&chain.id) {
                    Some(signer) => {
                        let key = hex::encode(signer.public_key());
                        report.pass(format!(
                            "key backend answers for {}: public key {key}",
                            chain.id
                        ));
                        public.insert(chain.id.clone(), key);
                    }
                    None => report.fail(
                        format!("chain {} has no key", chain.id),
                        "list it in a provider's chain_ids",
                    ),
                }
            }
        }
        Err(e) => report.fail(
            format!("key backend: {e}"),
            "check the HSM is connected and its connector (USB or yubihsm-connector) runs, \
             and the auth key and PIN",
        ),
    }
    public
}

/// Threshold-mode chains: this node's share file, and its group key as the
/// chain's public key (every node's must be the same).
fn check_shares(report: &mut Report, config: &Config, public: &mut BTreeMap<String, String>) {
    let node_id = config.cluster.as_ref().map(|c| c.node_id);
    for chain in &config.chain {
        let Some(t) = chain.threshold.as_ref() else {
            continue;
        };
        let what = format!("threshold share for {}", chain.id);
        let file = t.share_file.display();
        if !t.share_file.exists() {
            report.warn(
                format!("{what}: {file} does not exist yet: this node signs nothing for the chain"),
                "run `quorumkms threshold dkg` against the running cluster, or put this node's \
                 file from `quorumkms threshold split` there (mode 0600)",
            );
            continue;
        }
        match crate::threshold::KeyShare::load(&t.share_file, Some(&chain.id)) {
            Ok(share) if Some(share.node()) != node_id => report.fail(
                format!("{what} {file}: it is node {}'s share", share.node()),
                "give each node its own share file (the node id is the FROST identifier)",
            ),
            Ok(share) if (share.threshold(), share.shares()) != (t.threshold, t.shares) => report
                .fail(
                    format!(
                        "{what} {file}: a {}-of-{} share, the config says {}-of-{}",
                        share.threshold(),
                        share.shares(),
                        t.threshold,
                        t.shares
                    ),
                    "set [chain.threshold] threshold and shares to the split's",
                ),
            Ok(share) => match share.group_key() {
                Ok(key) => {
                    let key = hex::encode(key);
                    report.pass(format!(
                        "{what} {file}: mode 0600, loads, {}-of-{}, group key {key}",
                        t.threshold, t.shares
                    ));
                    public.insert(chain.id.clone(), key);
                }
                Err(e) => report.fail(format!("{what} {file}: {e}"), "restore it from backup"),
            },
            Err(e) => report.fail(
                format!("{what} {file}: {e}"),
                "restore the node's share from backup (chmod 600), or make a new key",
            ),
        }
    }
}

fn unix_now_ms() -> i64 {
    i64::try_from(crate::cluster::deps::system_clock_ms()).unwrap_or(i64::MAX)
}

fn expiry_line(report: &mut Report, what: &str, der: &[u8]) {
    match not_after(der) {
        Some(expiry) => {
            let days = (expiry * 1000 - unix_now_ms()) / 86_400_000;
            let until = format_unix_ms(u64::try_from(expiry * 1000).unwrap_or(0));
            if days < CERT_WARN_DAYS {
                report.warn(
                    format!("{what}: expires in {days} day(s), at {until}"),
                    "issue a new one (quorumkms cluster certs node --id N) and restart the node",
                );
            } else {
                report.pass(format!("{what}: valid until {until} ({days} days)"));
            }
        }
        None => report.warn(
            format!("{what}: its expiry cannot be read"),
            "check it with openssl x509 -noout -enddate",
        ),
    }
}

/// This node's certificate, every peer's reachability, certificate and
/// node id, and through the admin API their keys and clocks.
async fn check_cluster(
    report: &mut Report,
    target: &Target,
    cluster: &crate::cluster::Config,
    local_keys: &BTreeMap<String, String>,
    timeout: Duration,
) {
    let identity = match &cluster.tls {
        None => {
            report.warn(
                "cluster port: plaintext (no [cluster] tls)",
                "allowed on loopback only; off it, set tls = { ca, cert, key } \
                 (quorumkms cluster certs)",
            );
            None
        }
        Some(tls) => match Identity::load(tls).and_then(|identity| {
            identity.check_node(tls, cluster.node_id)?;
            Ok(identity)
        }) {
            Ok(identity) => {
                if let Some(der) = std::fs::read(&tls.cert).ok().and_then(|pem| {
                    use rustls::pki_types::CertificateDer;
                    use rustls::pki_types::pem::PemObject;
                    CertificateDer::from_pem_slice(&pem).ok()
                }) {
                    expiry_line(
                        report,
                        &format!(
                            "certificate {} for node {}",
                            tls.cert.display(),
                            cluster.node_id
                        ),
                        der.as_ref(),
                    );
                }
                secret_file(report, "cluster TLS key", &tls.key).then(|| {
                    report.pass(format!("cluster TLS key {}: mode 0600", tls.key.display()))
                });
                Some(identity)
            }
            Err(e) => {
                report.fail(
                    format!("cluster certificate: {e}"),
                    format!(
                        "issue this node's certificate from the cluster CA: \
                         quorumkms cluster certs node --id {} --host <its host>",
                        cluster.node_id
                    ),
                );
                None
            }
        },
    };
    for peer in cluster.peers.iter().filter(|p| p.id != cluster.node_id) {
        let what = format!("peer {} at {}", peer.id, peer.addr);
        let tcp =
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&peer.addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    report.fail(
                        format!("{what}: unreachable ({e})"),
                        "start it, or check its address, its [cluster] listen and the firewall",
                    );
                    continue;
                }
                Err(_) => {
                    report.fail(
                        format!("{what}: no answer within {} s", timeout.as_secs()),
                        "check the route and the firewall to its cluster port",
                    );
                    continue;
                }
            };
        let Some(identity) = &identity else {
            report.pass(format!("{what}: reachable"));
            continue;
        };
        let handshake = async {
            let connector = identity.connector().map_err(|e| e.to_string())?;
            let name =
                rustls::pki_types::ServerName::try_from(NODE_NAME).map_err(|e| e.to_string())?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .cloned()
                .ok_or("no certificate")?;
            Ok::<_, String>(cert)
        };
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(cert)) => {
                let info = peer_info(&cert);
                if info.node_id == Some(peer.id) {
                    expiry_line(
                        report,
                        &format!("{what}: reachable, certificate for node {}", peer.id),
                        cert.as_ref(),
                    );
                } else {
                    report.fail(
                        format!(
                            "{what}: its certificate names node {:?}, not {}",
                            info.node_id, peer.id
                        ),
                        "fix the peers list, or issue that node the right certificate",
                    );
                }
            }
            Ok(Err(e)) => report.fail(
                format!("{what}: TLS handshake failed ({e})"),
                format!(
                    "issue it a current certificate from this cluster's CA \
                     (quorumkms cluster certs node --id {})",
                    peer.id
                ),
            ),
            Err(_) => report.fail(
                format!("{what}: TLS handshake timed out"),
                "check that the port is the node's cluster port",
            ),
        }
    }
    check_admin(report, target, cluster, local_keys, timeout).await;
}

/// Public keys and clocks of every member, through the admin API.
async fn check_admin(
    report: &mut Report,
    target: &Target,
    cluster: &crate::cluster::Config,
    local_keys: &BTreeMap<String, String>,
    timeout: Duration,
) {
    let client = match target.client(timeout) {
        Ok(client) => client,
        Err(e) => {
            report.line(
                Level::Skip,
                format!("key match and clock offsets through the admin API: {e}"),
                None,
            );
            return;
        }
    };
    for peer in &cluster.peers {
        let addr = if peer.id == cluster.node_id {
            client.addr().to_string()
        } else {
            peer.addr.clone()
        };
        let what = format!("node {} (admin API at {addr})", peer.id);
        let before = unix_now_ms();
        let status = match client.to(addr.clone()).status().await {
            Ok(status) => status,
            Err(e) => {
                report.line(Level::Skip, format!("{what}: no status ({e})"), None);
                continue;
            }
        };
        let after = unix_now_ms();
        if status.node_id != peer.id {
            report.fail(
                format!("{what}: answers as node {}", status.node_id),
                "fix the peers list",
            );
            continue;
        }
        for (chain, key) in local_keys {
            match status.public_keys.get(chain) {
                Some(theirs) if theirs == key => {
                    report.pass(format!("{what}: same public key for {chain}"));
                }
                Some(theirs) => report.fail(
                    format!("{what}: public key for {chain} is {theirs}, this node's is {key}"),
                    "every node must hold the validator's one key: load the same key on both",
                ),
                None => report.line(
                    Level::Skip,
                    format!("{what}: reports no public key for {chain}"),
                    None,
                ),
            }
        }
        if peer.id == cluster.node_id {
            continue;
        }
        if let Some(theirs) = status.time_unix_ms.and_then(|t| i64::try_from(t).ok()) {
            let offset = theirs - (before + after) / 2;
            let within = (after - before) / 2;
            let line = format!("{what}: clock offset {offset:+} ms (± {within} ms)");
            if offset.abs() > CLOCK_WARN_MS + within {
                report.warn(line, "run NTP (chrony, systemd-timesyncd) on every node");
            } else {
                report.pass(line);
            }
        }
    }
}

/// Each validator address resolves and accepts a TCP (or unix) connection.
async fn check_validators(report: &mut Report, config: &Config, timeout: Duration, dial: bool) {
    for v in &config.validator {
        let what = format!("validator {}", v.addr);
        let address: Address = match v.addr.parse() {
            Ok(address) => address,
            Err(e) => {
                report.fail(format!("{what}: {e}"), "correct the address");
                continue;
            }
        };
        match address {
            Address::Tcp { host, port, .. } => {
                let resolved =
                    tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                        .await;
                let addrs: Vec<std::net::SocketAddr> = match resolved {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(e)) => {
                        report.fail(
                            format!("{what}: {host} does not resolve ({e})"),
                            "correct the host name, or check DNS",
                        );
                        continue;
                    }
                    Err(_) => {
                        report.fail(format!("{what}: resolving {host} timed out"), "check DNS");
                        continue;
                    }
                };
                if !dial {
                    report.pass(format!("{what}: resolves to {addrs:?} (not dialled)"));
                    continue;
                }
                let mut connected = None;
                let mut last = String::from("no address");
                for addr in &addrs {
                    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await
                    {
                        Ok(Ok(_)) => {
                            connected = Some(*addr);
                            break;
                        }
                        Ok(Err(e)) => last = e.to_string(),
                        Err(_) => last = format!("no answer within {} s", timeout.as_secs()),
                    }
                }
                match connected {
                    Some(addr) => report.pass(format!("{what}: accepts connections at {addr}")),
                    None => report.fail(
                        format!("{what}: no connection ({last})"),
                        format!(
                            "set priv_validator_laddr = \"tcp://0.0.0.0:{port}\" in the \
                             validator's config.toml, start it, and open the port to this host"
                        ),
                    ),
                }
            }
            Address::Unix(path) => {
                match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(&path)).await {
                    Ok(Ok(_)) => report.pass(format!("{what}: accepts connections")),
                    Ok(Err(e)) => report.fail(
                        format!("{what}: no connection ({e})"),
                        "start the validator with priv_validator_laddr = \"unix://...\" \
                         naming this socket",
                    ),
                    Err(_) => report.fail(format!("{what}: no answer"), "check the validator"),
                }
            }
        }
    }
}

/// The directories holding state: the Raft store, or the state files.
fn state_dirs(config: &Config) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match &config.cluster {
        Some(cluster) => vec![cluster.data_dir.clone()],
        None => config
            .chain
            .iter()
            .filter_map(|c| c.state_file.parent().map(Path::to_path_buf))
            .collect(),
    };
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The directory itself, or the nearest ancestor that exists.
fn existing(dir: &Path) -> Option<&Path> {
    dir.ancestors().find(|d| d.is_dir())
}

fn check_storage(report: &mut Report, config: &Config) {
    for dir in state_dirs(config) {
        let Some(at) = existing(&dir) else {
            report.fail(
                format!("state directory {}: no part of it exists", dir.display()),
                "correct the path",
            );
            continue;
        };
        let what = format!("state directory {}", dir.display());
        match filesystem(at) {
            Ok(fs) => {
                match fs.kind {
                    Some(name @ ("tmpfs" | "ramfs")) => report.warn(
                        format!(
                            "{what}: on {name}: fsync reaches no disk, a reboot loses the watermark"
                        ),
                        "put it on a disk-backed filesystem (ext4, xfs)",
                    ),
                    Some(name) => report.pass(format!("{what}: on {name}")),
                    None => report.pass(format!("{what}: on filesystem type {:#x}", fs.magic)),
                }
                let free = fs.available;
                let mib = free >> 20;
                if free < DISK_FAIL {
                    report.fail(
                        format!("{what}: {mib} MiB free"),
                        "free space on that filesystem: a full disk stops signing",
                    );
                } else if free < DISK_WARN {
                    report.warn(format!("{what}: {mib} MiB free"), "free space soon");
                } else {
                    report.pass(format!("{what}: {} GiB free", free >> 30));
                }
            }
            Err(e) => report.fail(format!("{what}: statfs: {e}"), "check the path"),
        }
        match write_probe(at) {
            Ok(()) => report.pass(format!("{what}: writable, fsync succeeds")),
            Err(e) => report.fail(
                format!("{what}: cannot write and fsync a file ({e})"),
                "check its permissions and that the filesystem is mounted read-write",
            ),
        }
    }
}

struct Filesystem {
    magic: i64,
    kind: Option<&'static str>,
    available: u64,
}

fn filesystem(path: &Path) -> std::io::Result<Filesystem> {
    let stat = rustix::fs::statfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::unnecessary_cast, clippy::cast_possible_wrap)] // widths differ by platform
    let magic = stat.f_type as i64;
    let kind = match magic {
        0x0102_1994 => Some("tmpfs"),
        0x8584_58f6 => Some("ramfs"),
        0xef53 => Some("ext4"),
        0x5846_5342 => Some("xfs"),
        0x9123_683e => Some("btrfs"),
        0x2fc1_2fc1 => Some("zfs"),
        0x794c_7630 => Some("overlayfs"),
        0x6969 => Some("nfs"),
        _ => None,
    };
    #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)]
    let available = (stat.f_bavail as u64).saturating_mul(stat.f_bsize as u64);
    Ok(Filesystem {
        magic,
        kind,
        available,
    })
}

fn write_probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(b"quorumkms doctor")?;
    file.as_file().sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filesystem_of_a_temp_dir_is_known_and_writable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = filesystem(dir.path()).expect("statfs");
        assert!(fs.available > 0);
        write_probe(dir.path()).expect("write and fsync");
        let missing = dir.path().join("a/b");
        assert_eq!(existing(&missing), Some(dir.path()));
    }
}
