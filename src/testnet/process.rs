//! Starting signer nodes as real `quorumkms start` processes.

use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::layout::NodeFiles;

/// Starts `quorumkms start -c CONFIG` for a node, logging to `DIR/node.log`.
///
/// # Errors
///
/// When the process cannot be spawned.
pub fn spawn_node(exe: &Path, node: &NodeFiles) -> std::io::Result<Child> {
    spawn_node_in(exe, node, None)
}

/// [`spawn_node`], inside network namespace `netns` (through `ip netns
/// exec`, which execs the node: the child is the node itself) when given.
///
/// # Errors
///
/// When the process cannot be spawned.
pub fn spawn_node_in(exe: &Path, node: &NodeFiles, netns: Option<&str>) -> std::io::Result<Child> {
    spawn_node_with_env(exe, node, netns, &[], &[])
}

/// [`spawn_node_in`], with `env` added to the node's environment and
/// `args` (e.g. `--join`) to its command line.
///
/// # Errors
///
/// When the process cannot be spawned.
pub fn spawn_node_with_env(
    exe: &Path,
    node: &NodeFiles,
    netns: Option<&str>,
    env: &[(String, String)],
    args: &[&str],
) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.dir.join("node.log"))?;
    let mut command = match netns {
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns]).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .arg("start")
        .arg("-c")
        .arg(&node.config)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
}
