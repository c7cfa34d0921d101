//! `quorumkms cluster ...`: operate a running cluster through a node's
//! admin API (status, bootstrap, membership, leadership, snapshots), and
//! create the cluster's certificates (`cluster certs ...`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::admin;
use crate::cluster::{TlsConfig, certs};
use crate::config;

/// How to reach a node: its config (the node's own `[cluster] listen`) or
/// an explicit address, and the operator's TLS certificate.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The node's configuration file.
    #[arg(short = 'c', long = "config", default_value = "quorumkms.toml")]
    pub config: PathBuf,
    /// The node's cluster address (host:port), instead of reading the config.
    #[arg(long)]
    pub addr: Option<String>,
    /// The cluster CA certificate (default: the config's cluster.tls.ca).
    #[arg(long, env = "QUORUMKMS_CA")]
    pub ca: Option<PathBuf>,
    /// The operator certificate (`quorumkms cluster certs operator`).
    #[arg(long, env = "QUORUMKMS_CERT")]
    pub cert: Option<PathBuf>,
    /// The operator certificate's key.
    #[arg(long, env = "QUORUMKMS_KEY")]
    pub key: Option<PathBuf>,
}

impl Target {
    fn load_config(&self) -> Result<Option<config::Config>, Box<dyn std::error::Error>> {
        if self.addr.is_some() && !self.config.exists() {
            return Ok(None);
        }
        Ok(Some(config::load(&self.config)?))
    }

    /// The node's address.
    ///
    /// # Errors
    ///
    /// No `--addr` and no readable config with a `[cluster]` section.
    pub fn addr(&self) -> Result<String, Box<dyn std::error::Error>> {
        if let Some(addr) = &self.addr {
            return Ok(addr.clone());
        }
        let config = config::load(&self.config)?;
        let cluster = config
            .cluster
            .ok_or_else(|| format!("{} has no [cluster] section", self.config.display()))?;
        Ok(local_addr(&cluster.listen))
    }

    /// An admin client for the node, with TLS when the flags or the
    /// node's config call for it.
    ///
    /// # Errors
    ///
    /// Missing or unusable certificate files, or no address.
    pub fn client(&self, timeout: Duration) -> Result<admin::Client, Box<dyn std::error::Error>> {
        let addr = self.addr()?;
        let node_tls = self
            .load_config()?
            .and_then(|c| c.cluster)
            .and_then(|c| c.tls);
        let client = admin::Client::new(addr, timeout);
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let ca = match (&self.ca, &node_tls) {
                    (Some(ca), _) => ca.clone(),
                    (None, Some(tls)) => tls.ca.clone(),
                    (None, None) => return Err("--ca is required with --cert".into()),
                };
                let tls = TlsConfig::new(ca, cert.clone(), key.clone());
                Ok(client.with_tls(&tls)?)
            }
            (Some(_), None) | (None, Some(_)) => Err("--cert and --key go together".into()),
            (None, None) if node_tls.is_some() => Err(
                "this cluster uses TLS: pass --cert and --key of an operator certificate \
                 (quorumkms cluster certs operator), or set QUORUMKMS_CERT and QUORUMKMS_KEY"
                    .into(),
            ),
            (None, None) => Ok(client),
        }
    }
}

/// The address to reach a node listening on `listen` from its own host.
fn local_addr(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => listen.to_string(),
    }
}

/// `cluster` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Bootstrap a new cluster: run once, on one node, after starting all
    /// of them with empty stores. Every configured peer gets the new
    /// cluster's id and becomes a voter; every one must be running.
    Init(Target),
    /// Show a node's view: role, leader, term, indexes, members and each
    /// chain's watermark.
    Status {
        /// Which node.
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a node as a learner: it copies the log but does not vote yet.
    /// Start the new node first, with `quorumkms start --join` (its peers
    /// list may name only itself).
    AddLearner {
        /// The new node's id.
        id: u64,
        /// The new node's cluster address (host:port).
        node_addr: String,
        /// Any current member (calls are sent on to the leader).
        #[command(flatten)]
        target: Target,
    },
    /// Make a learner a voter; refused until it has caught up.
    Promote {
        /// The learner's id.
        id: u64,
        /// Any current member.
        #[command(flatten)]
        target: Target,
    },
    /// Remove a node. Refused when the voters left would not have a
    /// healthy majority, or when it leads, unless --force.
    Remove {
        /// The node's id.
        id: u64,
        /// Remove it even so.
        #[arg(long)]
        force: bool,
        /// Any current member.
        #[command(flatten)]
        target: Target,
    },
    /// Move leadership to a caught-up voter (best effort: the leader pauses
    /// its heartbeats and asks the target to run an election).
    TransferLeader {
        /// The voter that should lead.
        id: u64,
        /// Any current member.
        #[command(flatten)]
        target: Target,
    },
    /// Build a snapshot on the node now (and purge the log behind it).
    Snapshot(Target),
    /// Create the cluster CA, node and operator certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
}

/// `cluster certs` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CertsCommand {
    /// Create the cluster CA (ca.pem, ca.key) in DIR.
    Init {
        /// Directory for the CA and certificates.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Create node-ID.pem and node-ID.key, signed by the CA in DIR.
    Node {
        /// Directory holding the CA.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The node's Raft id.
        #[arg(long)]
        id: u64,
        /// Host names or IP addresses the node is reached at (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Create operator-NAME.pem and operator-NAME.key for the admin CLI.
    Operator {
        /// Directory holding the CA.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The operator's name (letters, digits, '-', '_').
        #[arg(long)]
        name: String,
    },
    /// Revoke certificates: add them to crl.pem in DIR, signed by the CA.
    /// Copy crl.pem to every node (tls.crl) and restart them.
    Revoke {
        /// Directory holding the CA.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// A certificate file to revoke (repeatable).
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
        /// A serial number (hex) to revoke (repeatable).
        #[arg(long = "serial")]
        serials: Vec<String>,
    },
}

/// How long an admin call may take; transfers wait for an election.
const TIMEOUT: Duration = Duration::from_secs(10);

fn print_written(what: &str, written: &certs::Written) {
    println!(
        "{what}: certificate {} (serial {}), key {} (mode 0600)",
        written.cert.display(),
        written.serial,
        written.key.display()
    );
}

fn run_certs(command: &CertsCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        CertsCommand::Init { dir } => {
            let written = certs::init_ca(dir)?;
            print_written("cluster CA", &written);
            println!(
                "keep {} offline once all certificates are made",
                written.key.display()
            );
        }
        CertsCommand::Node { dir, id, hosts } => {
            let written = certs::node(dir, *id, hosts)?;
            print_written(&format!("node {id}"), &written);
            println!("{}", tls_hint(dir, &written.cert, &written.key));
        }
        CertsCommand::Operator { dir, name } => {
            let written = certs::operator(dir, name)?;
            print_written(&format!("operator {name}"), &written);
            println!(
                "use: quorumkms cluster status --ca {} --cert {} --key {}",
                dir.join("ca.pem").display(),
                written.cert.display(),
                written.key.display()
            );
        }
        CertsCommand::Revoke {
            dir,
            certs: files,
            serials,
        } => {
            let revoked = certs::revoke(dir, serials, files)?;
            println!(
                "{} now revokes {} certificate(s): {}",
                revoked.crl.display(),
                revoked.serials.len(),
                revoked.serials.join(", ")
            );
            println!(
                "copy it to every node, set tls = {{ ..., crl = \"{}\" }} in its [cluster] \
                 section (or list the serials in tls.revoked) and restart the nodes one by one",
                revoked.crl.display()
            );
        }
    }
    Ok(())
}

fn tls_hint(dir: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "in the node's [cluster] section: tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
        dir.join("ca.pem").display(),
        cert.display(),
        key.display()
    )
}

/// Runs a `cluster` subcommand.
///
/// # Errors
///
/// The node cannot be reached or refuses.
pub fn run(command: &Command) -> Result<(), Box<dyn std::error::Error>> {
    if let Command::Certs(certs) = command {
        return run_certs(certs);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    match command {
        Command::Init(target) => {
            let client = target.client(TIMEOUT)?;
            if runtime.block_on(client.initialize())? {
                println!("cluster initialized through {}", client.addr());
            } else {
                println!("cluster was already initialized; nothing changed");
            }
        }
        Command::Status { target, json } => {
            let status = runtime.block_on(target.client(TIMEOUT)?.status())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render(&status));
            }
        }
        Command::AddLearner {
            id,
            node_addr,
            target,
        } => {
            let client = target.client(TIMEOUT)?;
            println!("{}", runtime.block_on(client.add_learner(*id, node_addr))?);
        }
        Command::Promote { id, target } => {
            println!(
                "{}",
                runtime.block_on(target.client(TIMEOUT)?.promote(*id))?
            );
        }
        Command::Remove { id, force, target } => {
            let client = target.client(TIMEOUT)?;
            println!("{}", runtime.block_on(client.remove(*id, *force))?);
        }
        Command::TransferLeader { id, target } => {
            let client = target.client(TIMEOUT)?;
            println!("{}", runtime.block_on(client.transfer_leader(*id))?);
        }
        Command::Snapshot(target) => {
            println!("{}", runtime.block_on(target.client(TIMEOUT)?.snapshot())?);
        }
        Command::Certs(_) => {}
    }
    Ok(())
}

/// The status as a table.
pub fn render(status: &admin::Status) -> String {
    let leader = status.leader.map_or("none".to_string(), |l| l.to_string());
    let mut out = format!(
        "node {}: {} (leader {leader}, term {}, log {}, applied {}){}\n",
        status.node_id,
        status.role,
        status.term,
        status.last_log_index.map_or("-".into(), |i| i.to_string()),
        status.applied_index.map_or("-".into(), |i| i.to_string()),
        match &status.storage_fault {
            Some(fault) => format!(" STORAGE FAULT: {fault}"),
            None => String::new(),
        }
    );
    match &status.cluster_id {
        Some(id) => out.push_str(&format!("cluster {id}\n")),
        None => out.push_str("cluster: none yet (waiting for `cluster init`, or to be added)\n"),
    }
    let voters = status.members.iter().filter(|m| m.voter).count();
    match status.can_lose_voters {
        _ if voters == 0 => out.push_str("quorum: no membership yet\n"),
        Some(n) => out.push_str(&format!(
            "quorum: can lose {n} more voter(s) of {voters} and keep a majority\n"
        )),
        None => out.push_str(&format!(
            "quorum: NONE - fewer than a majority of {voters} voter(s) are up\n"
        )),
    }
    out.push_str("members:\n");
    for m in &status.members {
        let role = if status.leader == Some(m.id) {
            "leader"
        } else if m.voter {
            "voter"
        } else {
            "learner"
        };
        let matched = m
            .matched_index
            .map_or(String::new(), |i| format!("  replicated to {i}"));
        let lag = m.lag.map_or(String::new(), |l| format!("  lag {l}"));
        let reach = match (m.reachable, &m.probe_error) {
            (Some(true), _) => "  up".to_string(),
            (Some(false), Some(e)) => format!("  DOWN ({e})"),
            (Some(false), None) => "  DOWN".to_string(),
            (None, _) => String::new(),
        };
        out.push_str(&format!(
            "  {:>3}  {:<24} {role}{matched}{lag}{reach}\n",
            m.id, m.addr
        ));
    }
    if !status.validators.is_empty() {
        out.push_str("validators:\n");
        for v in &status.validators {
            let state = if v.connected {
                "connected"
            } else {
                "not connected"
            };
            out.push_str(&format!("  {:<24} {:<48} {state}\n", v.chain_id, v.addr));
        }
    }
    out.push_str("watermarks:\n");
    for (chain, c) in &status.chains {
        let position = c.position.map_or("none".to_string(), |p| p.to_string());
        let owner = c.owner.as_deref().unwrap_or("-");
        out.push_str(&format!("  {chain:<24} {position:<20} owner {owner}\n"));
        if let Some(signed) = &c.last_signed {
            out.push_str(&format!(
                "  {:<24} last signature {}\n",
                "",
                describe_signed(signed)
            ));
        }
        if let Some(raise) = &c.last_raise {
            out.push_str(&format!("  {:<24} last raise {raise}\n", ""));
        }
    }
    out
}

use crate::metrics::page::format_unix_ms;

/// "at TIME by node N for VALIDATOR (index I, H/R/S)".
pub fn describe_signed(signed: &crate::cluster::SignedRecord) -> String {
    let at = signed
        .at_ms
        .map_or("at an unrecorded time".to_string(), |ms| {
            format!("at {}", format_unix_ms(ms))
        });
    let node = signed
        .node
        .map_or("an unrecorded node".to_string(), |n| format!("node {n}"));
    let validator = signed
        .validator
        .as_deref()
        .map_or(String::new(), |v| format!(" for {v}"));
    format!(
        "{at} by {node}{validator} ({}, index {})",
        signed.position, signed.index
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn quorum_margin() {
        use crate::cluster::admin::status::can_lose;
        assert_eq!(can_lose(3, 3), Some(1));
        assert_eq!(can_lose(3, 2), Some(0));
        assert_eq!(can_lose(3, 1), None);
        assert_eq!(can_lose(5, 5), Some(2));
        assert_eq!(can_lose(4, 4), Some(1));
        assert_eq!(can_lose(0, 0), None);
    }
}
