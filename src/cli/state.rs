//! `quorumkms state show|import|export`: move watermarks between quorumkms
//! and CometBFT's file signer, tmkms, or another quorumkms, in CometBFT,
//! tmkms or interchange format (docs/interchange.md).
//!
//! With a `[cluster]` section the commands talk to the local node's admin
//! API and an import is one raise-only Raft entry per chain. Without one
//! they work on the chains' state files, holding each file's lock (which a
//! running single-node signer also holds, so the node must be stopped).
//! Either way an import is checked completely first, changes nothing when
//! any chain would not move strictly up, and never lowers a watermark.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::cluster::Target;
use crate::cluster::admin;
use crate::config::{self, Config};
use crate::keys::ConsensusSigner;
use crate::keys::softsign::SoftSigner;
use crate::watermark::interchange::ChainState;
use crate::watermark::migrate::{self, Format};
use crate::watermark::{self, Position, SignState, StateFile, StateFileError, vet};

type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

/// `state` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print each chain's watermark.
    Show {
        /// Only this chain.
        #[arg(long)]
        chain: Option<String>,
        /// The node's config (and, in cluster mode, optionally its address).
        #[command(flatten)]
        target: Target,
    },
    /// Raise watermarks from a CometBFT, tmkms or interchange file. Never
    /// lowers one: an import at or below the current watermark is refused
    /// and nothing changes. In single-node mode the node must be stopped.
    Import {
        /// The chain to import (required for CometBFT and tmkms files; for
        /// an interchange file, selects one chain instead of all).
        #[arg(long)]
        chain: Option<String>,
        /// The file's format.
        #[arg(long, value_enum, default_value_t = Format::Auto)]
        format: Format,
        /// The state file to import.
        file: PathBuf,
        /// Raise even to a height implausibly high or far above the current
        /// watermark (a raise can never be undone).
        #[arg(long)]
        force: bool,
        /// The node's config (and, in cluster mode, optionally its address).
        #[command(flatten)]
        target: Target,
    },
    /// Write watermarks as a CometBFT, tmkms or interchange file.
    Export {
        /// The chain to export (required for CometBFT and tmkms; without
        /// it an interchange file holds every chain).
        #[arg(long)]
        chain: Option<String>,
        /// The output format.
        #[arg(long, value_enum, default_value_t = Format::Interchange)]
        format: Format,
        /// Write here (atomically) instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// The node's config (and, in cluster mode, optionally its address).
        #[command(flatten)]
        target: Target,
    },
}

/// Runs a `state` subcommand.
///
/// # Errors
///
/// Unreadable or malformed input, an unknown chain, a refused import, an
/// unreachable node; nothing has changed unless the message says so.
pub fn run(command: &Command) -> CliResult<()> {
    match command {
        Command::Show { chain, target } => {
            let (config, store) = Store::open(target)?;
            let chains = store.read(&config, chain.as_deref())?;
            print!("{}", render_show(&chains));
        }
        Command::Import {
            chain,
            format,
            file,
            force,
            target,
        } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let imported = migrate::parse(&text, *format, chain.as_deref())?;
            let (config, store) = Store::open(target)?;
            check_chains(&config, &target.config, &imported)?;
            for line in store.import(&config, &imported, *force)? {
                println!("{line}");
            }
        }
        Command::Export {
            chain,
            format,
            output,
            target,
        } => {
            if *format == Format::Auto {
                return Err("choose an export format: cometbft, tmkms or interchange".into());
            }
            if chain.is_none() && *format != Format::Interchange {
                return Err(format!("the {format} format holds one chain; pass --chain").into());
            }
            let (config, store) = Store::open(target)?;
            let mut chains = store.read(&config, chain.as_deref())?;
            let keys = public_keys(&config);
            for c in &mut chains {
                c.public_key = keys.get(&c.chain_id).copied();
            }
            let mut text = migrate::render(&chains, *format)?;
            text.push('\n');
            match output {
                Some(path) => {
                    watermark::write_atomically(path, text.as_bytes())
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    eprintln!(
                        "wrote {} chain(s) in {format} format to {}",
                        chains.len(),
                        path.display()
                    );
                }
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
        }
    }
    Ok(())
}

/// Where the watermarks live: the cluster (through a node) or the state
/// files.
enum Store {
    Cluster { client: admin::Client },
    Files,
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    fn open(target: &Target) -> CliResult<(Config, Store)> {
        let config = config::load(&target.config)?;
        let store = if config.cluster.is_some() {
            Store::Cluster {
                client: target.client(ADMIN_TIMEOUT)?,
            }
        } else {
            Store::Files
        };
        Ok((config, store))
    }

    /// The watermarks of `only`, or of every configured chain (plus, in
    /// cluster mode, any other chain the cluster holds).
    fn read(&self, config: &Config, only: Option<&str>) -> CliResult<Vec<ChainState>> {
        if let Some(id) = only
            && !config.chain.iter().any(|c| c.id == id)
        {
            return Err(format!("chain {id:?} is not configured").into());
        }
        let wanted = |id: &str| only.is_none_or(|o| o == id);
        let mut states: BTreeMap<String, SignState> = BTreeMap::new();
        match self {
            Store::Cluster { client } => {
                let all = runtime()?.block_on(client.export())?;
                for c in &config.chain {
                    states.insert(c.id.clone(), SignState::default());
                }
                states.extend(all);
            }
            Store::Files => {
                for c in &config.chain {
                    if wanted(&c.id) {
                        states.insert(c.id.clone(), load_or_empty(&StateFile::new(&c.state_file))?);
                    }
                }
            }
        }
        Ok(states
            .into_iter()
            .filter(|(id, _)| wanted(id))
            .map(|(chain_id, state)| ChainState {
                chain_id,
                public_key: None,
                state,
            })
            .collect())
    }

    /// Raises every chain in `imported`, all or nothing as far as the
    /// checks go. Returns one line per chain.
    fn import(
        &self,
        config: &Config,
        imported: &[ChainState],
        force: bool,
    ) -> CliResult<Vec<String>> {
        match self {
            Store::Files => import_files(config, imported, force),
            Store::Cluster { client } => {
                let runtime = runtime()?;
                let current = runtime.block_on(client.export())?;
                let current_of = |id: &str| current.get(id).cloned().unwrap_or_default();
                check_all(imported, force, |id| Ok(current_of(id)))?;
                let mut lines = Vec::new();
                for chain in imported {
                    let before = current_of(&chain.chain_id);
                    let answer =
                        runtime.block_on(client.raise(&chain.chain_id, &chain.state, force));
                    let failure = match answer {
                        Ok(()) => {
                            lines.push(raised_line(&chain.chain_id, &before, &chain.state));
                            continue;
                        }
                        Err(admin::ClientError::Refused { reason, .. }) => format!(
                            "chain {}: the cluster refused the import at {}: {reason}",
                            chain.chain_id,
                            show_position(chain.state.position)
                        ),
                        Err(e) => format!("chain {}: {e}", chain.chain_id),
                    };
                    let done = if lines.is_empty() {
                        "nothing was changed".to_string()
                    } else {
                        format!("already committed:\n  {}", lines.join("\n  "))
                    };
                    return Err(format!("{failure}\n{done}").into());
                }
                Ok(lines)
            }
        }
    }
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A missing state file reads as the empty watermark (the node would
/// create it); a corrupt one is an error.
fn load_or_empty(file: &StateFile) -> CliResult<SignState> {
    match file.load() {
        Ok(state) => Ok(state),
        Err(StateFileError::Missing(_)) => Ok(SignState::default()),
        Err(e) => Err(e.into()),
    }
}

fn import_files(config: &Config, imported: &[ChainState], force: bool) -> CliResult<Vec<String>> {
    let mut files = BTreeMap::new();
    let mut locks = Vec::new();
    for chain in imported {
        let c = config
            .chain
            .iter()
            .find(|c| c.id == chain.chain_id)
            .ok_or_else(|| format!("chain {:?} is not configured", chain.chain_id))?;
        let file = StateFile::new(&c.state_file);
        locks.push(file.try_lock()?);
        files.insert(chain.chain_id.clone(), file);
    }
    let mut before = BTreeMap::new();
    for (id, file) in &files {
        before.insert(id.clone(), load_or_empty(file)?);
    }
    let next = check_all(imported, force, |id| Ok(before[id].clone()))?;
    let mut lines = Vec::new();
    for (chain, state) in imported.iter().zip(next) {
        files[&chain.chain_id].save(&state)?;
        lines.push(raised_line(
            &chain.chain_id,
            &before[&chain.chain_id],
            &state,
        ));
    }
    drop(locks);
    Ok(lines)
}

/// Applies the raise-only rule to every chain against its current state.
/// Returns the raised states, or one error listing every refusal.
fn check_all(
    imported: &[ChainState],
    force: bool,
    current: impl Fn(&str) -> CliResult<SignState>,
) -> CliResult<Vec<SignState>> {
    let mut raised = Vec::new();
    let mut refusals = Vec::new();
    for chain in imported {
        let mut state = current(&chain.chain_id)?;
        let last = state.position;
        if let Err(e) = vet::raise(&chain.chain_id, last, &chain.state, force) {
            refusals.push(format!("chain {}: {e}", chain.chain_id));
            continue;
        }
        match watermark::raise(&mut state, &chain.state) {
            Ok(()) => raised.push(state),
            Err(_) => refusals.push(format!(
                "chain {}: the file's watermark {} is not above the current watermark {}",
                chain.chain_id,
                show_position(chain.state.position),
                show_position(last)
            )),
        }
    }
    if refusals.is_empty() {
        Ok(raised)
    } else {
        let hint = if imported.len() > 1 {
            "; pass --chain to import one chain of an interchange file"
        } else {
            ""
        };
        Err(format!(
            "import refused, nothing was changed (an import only ever raises a watermark, \
             and --force lets only an implausibly high one through{hint}):\n  {}",
            refusals.join("\n  ")
        )
        .into())
    }
}

/// Every imported chain must be configured, and a public key in the file
/// must be this signer's (when its soft key can be read).
fn check_chains(config: &Config, path: &std::path::Path, imported: &[ChainState]) -> CliResult<()> {
    let keys = public_keys(config);
    for chain in imported {
        if !config.chain.iter().any(|c| c.id == chain.chain_id) {
            return Err(format!(
                "chain {:?} is not configured in {}; nothing was changed",
                chain.chain_id,
                path.display()
            )
            .into());
        }
        if let (Some(theirs), Some(ours)) = (chain.public_key, keys.get(&chain.chain_id))
            && theirs != *ours
        {
            return Err(format!(
                "chain {}: the file's public key {} is not this signer's key {}; nothing was changed",
                chain.chain_id,
                BASE64.encode(theirs),
                BASE64.encode(ours)
            )
            .into());
        }
    }
    Ok(())
}

/// Public keys of the chains whose soft keys can be read (HSM keys are not
/// opened: the running node may hold the device).
fn public_keys(config: &Config) -> BTreeMap<String, [u8; 32]> {
    let mut keys = BTreeMap::new();
    for soft in &config.providers.softsign {
        // The exchange formats carry ed25519 keys only.
        if let Ok(signer) = SoftSigner::load_type(&soft.path, soft.key_type)
            && let crate::keys::PublicKey::Ed25519(key) = signer.public_key()
        {
            for chain in &soft.chain_ids {
                keys.insert(chain.clone(), key);
            }
        }
    }
    keys
}

fn show_position(position: Option<Position>) -> String {
    position.map_or_else(|| "(nothing signed)".to_string(), |p| p.to_string())
}

fn raised_line(chain_id: &str, before: &SignState, after: &SignState) -> String {
    if before.position == after.position {
        format!(
            "chain {chain_id}: unchanged at {}",
            show_position(after.position)
        )
    } else {
        format!(
            "chain {chain_id}: raised from {} to {}",
            show_position(before.position),
            show_position(after.position)
        )
    }
}

/// The `state show` table: chain, position, whether sign bytes are known,
/// owner.
pub fn render_show(chains: &[ChainState]) -> String {
    let mut out = String::new();
    for c in chains {
        let bytes = if c.state.sign_bytes.is_empty() {
            "no sign bytes".to_string()
        } else {
            format!("{} sign bytes", c.state.sign_bytes.len())
        };
        let owner = c.state.owner.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "{:<24} {:<24} {bytes:<16} owner {owner}\n",
            c.chain_id,
            show_position(c.state.position)
        ));
    }
    out
}
