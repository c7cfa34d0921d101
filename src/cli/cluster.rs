//! `quorumkms cluster ...`: operate a running cluster through a node's
//! admin API.

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::admin;
use crate::config;

/// How to reach a node: its config (the node's own `[cluster] listen`) or
/// an explicit address.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The node's configuration file.
    #[arg(short = 'c', long = "config", default_value = "quorumkms.toml")]
    pub config: PathBuf,
    /// The node's cluster address (host:port), instead of reading the config.
    #[arg(long)]
    pub addr: Option<String>,
}

impl Target {
    pub(crate) fn addr(&self) -> Result<String, Box<dyn std::error::Error>> {
        if let Some(addr) = &self.addr {
            return Ok(addr.clone());
        }
        let config = config::load(&self.config)?;
        let cluster = config
            .cluster
            .ok_or_else(|| format!("{} has no [cluster] section", self.config.display()))?;
        Ok(local_addr(&cluster.listen))
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
    /// of them. Every configured peer becomes a voter.
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
}

/// Runs a `cluster` subcommand.
///
/// # Errors
///
/// The node cannot be reached or refuses.
pub fn run(command: &Command) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let timeout = Duration::from_secs(5);
    match command {
        Command::Init(target) => {
            let addr = target.addr()?;
            if runtime.block_on(admin::initialize(&addr, timeout))? {
                println!("cluster initialized through {addr}");
            } else {
                println!("cluster was already initialized; nothing changed");
            }
        }
        Command::Status { target, json } => {
            let addr = target.addr()?;
            let status = runtime.block_on(admin::status(&addr, timeout))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render(&status));
            }
        }
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
    out.push_str("members:\n");
    for m in &status.members {
        let role = if m.voter { "voter" } else { "learner" };
        out.push_str(&format!("  {:>3}  {:<24} {role}\n", m.id, m.addr));
    }
    out.push_str("watermarks:\n");
    for (chain, c) in &status.chains {
        let position = c.position.map_or("none".to_string(), |p| p.to_string());
        let owner = c.owner.as_deref().unwrap_or("-");
        out.push_str(&format!("  {chain:<24} {position:<20} owner {owner}\n"));
    }
    out
}
