//! `quorumkms start`: load the config and run the node until a signal.

use std::path::PathBuf;

use crate::{config, node};

/// Arguments of `start`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config", default_value = "quorumkms.toml")]
    pub config: PathBuf,
    /// Begin from an empty watermark when a state file is missing or
    /// corrupt. A corrupt file is renamed aside, never deleted. Only use
    /// this when you know the key has not signed anywhere else.
    #[arg(long)]
    pub allow_empty_state: bool,
    /// Cluster mode: with an empty Raft store, join a running cluster as a
    /// learner, once an operator has added this node (`cluster
    /// add-learner`; a voter whose store was lost is removed first). Without
    /// it a node with an empty store waits for `cluster init`, and stops if
    /// a running cluster calls it. No effect on a store that already belongs
    /// to a cluster.
    #[arg(long)]
    pub join: bool,
}

/// Runs `start`.
///
/// # Errors
///
/// An invalid config or a start-up failure.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = config::load(&args.config)?;
    let options = node::Options {
        allow_empty_state: args.allow_empty_state,
        join: args.join,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(node::run(config, options, shutdown_signal()))?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
