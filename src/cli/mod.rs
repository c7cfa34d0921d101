//! The command line: one file per subcommand, each with its `Args` and a
//! `run` function. Only `main.rs` turns errors into an exit code.

pub mod cluster;
pub mod demo;
pub mod doctor;
pub mod drill;
pub mod init;
pub mod pkcs11;
pub mod softsign;
pub mod start;
pub mod state;
pub mod testnet;
pub mod threshold;
pub mod validator_sim;
pub mod yubihsm;

use clap::{Parser, Subcommand};

/// quorumkms: a highly available remote signer for CometBFT validators.
#[derive(Parser, Debug)]
#[command(name = "quorumkms", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a node directory: config, identity key, soft keys, state files.
    Init(init::Args),
    /// Run the signer.
    Start(start::Args),
    /// Run a local demo: signer nodes and a simulated validator.
    Demo(demo::Args),
    /// Soft (file) keys.
    #[command(subcommand)]
    Softsign(softsign::Command),
    /// YubiHSM 2 keys.
    Yubihsm(yubihsm::Args),
    /// Keys on a PKCS#11 token (network HSMs, SoftHSM2, ...).
    Pkcs11(pkcs11::Args),
    /// Threshold keys (t-of-n FROST Ed25519): split a key into share
    /// files, show one, check a set.
    #[command(subcommand)]
    Threshold(threshold::Command),
    /// Operate a cluster through a node's admin API.
    #[command(subcommand)]
    Cluster(cluster::Command),
    /// Show, import and export watermarks (CometBFT, tmkms, interchange).
    #[command(subcommand)]
    State(state::Command),
    /// Run a simulated validator node that asks signers to sign and checks
    /// every signature (for deployments and drills).
    ValidatorSim(validator_sim::Args),
    /// Rehearse a failure against a running cluster (leader-kill,
    /// follower-kill, partition-leader, partition-follower,
    /// partition-split, sentry-loss, rolling-restart, hsm-loss, all).
    Drill(drill::Args),
    /// Write node directories for a test deployment (shared soft key,
    /// cluster peers, validator addresses).
    TestnetConfig(testnet::Args),
    /// Check a node before `start` or after an incident: config, key and
    /// PIN files, key backend, peers and certificates, clocks, validator
    /// addresses, the state directory's filesystem and free space.
    Doctor(doctor::Args),
    /// Print the version.
    Version,
}

/// Runs a parsed command line.
///
/// # Errors
///
/// Whatever the subcommand reports; `main` prints it and exits non-zero.
pub fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Init(args) => init::run(&args),
        Command::Start(args) => start::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Softsign(cmd) => softsign::run(&cmd).map_err(|e| e as Box<dyn std::error::Error>),
        Command::Yubihsm(args) => yubihsm::run(&args).map_err(|e| e as Box<dyn std::error::Error>),
        Command::Pkcs11(args) => pkcs11::run(&args).map_err(|e| e as Box<dyn std::error::Error>),
        Command::Threshold(cmd) => {
            threshold::run(&cmd).map_err(|e| e as Box<dyn std::error::Error>)
        }
        Command::Cluster(cmd) => cluster::run(&cmd),
        Command::State(cmd) => state::run(&cmd),
        Command::ValidatorSim(args) => validator_sim::run(&args),
        Command::Drill(args) => drill::run(&args),
        Command::TestnetConfig(args) => testnet::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Version => {
            println!("quorumkms {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
