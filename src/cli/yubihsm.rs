//! `quorumkms yubihsm`: set up a YubiHSM 2 and manage its consensus keys.
//!
//! `setup` creates the authentication key quorumkms uses; `keys generate`,
//! `keys import` and `keys list` manage Ed25519 keys. Passwords come from
//! files, never from the command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::keys::softsign::{SoftSigner, import_priv_validator_key};
use crate::keys::yubihsm::{self as hsm, Connector};
use crate::keys::{ConsensusSigner as _, KeyType, PublicKey};

pub use super::softsign::CliError;

/// `yubihsm` arguments: how to reach the device, then the subcommand.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// How to reach and authenticate to the HSM.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Connector and authentication flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConnectionArgs {
    /// Connect over USB.
    #[arg(long, conflicts_with = "http")]
    pub usb: bool,
    /// USB serial number of the device (with --usb).
    #[arg(long, requires = "usb")]
    pub serial: Option<String>,
    /// Connect through yubihsm-connector at ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// Use the in-process mock HSM (debug builds with the mockhsm feature).
    #[cfg(feature = "mockhsm")]
    #[arg(long, conflicts_with_all = ["usb", "http"])]
    pub mock: bool,
    /// Authentication key id.
    #[arg(long, default_value_t = 1)]
    pub auth_key_id: u16,
    /// File holding the authentication password (first line). Without
    /// it the factory default password is used.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
}

/// `yubihsm` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Create the authentication key quorumkms will use.
    Setup {
        /// Id of the new authentication key.
        #[arg(long, default_value_t = 2)]
        new_auth_key_id: u16,
        /// File holding the new key's password (first line).
        #[arg(long, value_name = "PATH")]
        new_password_file: PathBuf,
        /// Delete the factory default authentication key (id 1) afterwards.
        #[arg(long)]
        delete_default: bool,
    },
    /// Manage Ed25519 consensus keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `yubihsm keys` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate an Ed25519 key inside the HSM.
    Generate {
        /// Object id of the new key.
        id: u16,
        /// Object label.
        #[arg(long, default_value = "quorumkms consensus key")]
        label: String,
        /// ed25519 or secp256k1 (CometBFT v1.0; set the same key_type in
        /// the config's key entry).
        #[arg(long, default_value = "ed25519")]
        key_type: KeyType,
    },
    /// Import a softsign key file or a priv_validator_key.json.
    Import {
        /// Object id of the new key.
        id: u16,
        /// The key file (base64 secret) or priv_validator_key.json.
        #[arg(long)]
        path: PathBuf,
        /// Object label.
        #[arg(long, default_value = "quorumkms consensus key")]
        label: String,
        /// The key type of a softsign key file (a priv_validator_key.json
        /// says its own).
        #[arg(long, default_value = "ed25519")]
        key_type: KeyType,
    },
    /// List the Ed25519 and secp256k1 keys in the HSM.
    List,
}

/// The factory default password of authentication key 1.
const DEFAULT_PASSWORD: &str = "password";

impl ConnectionArgs {
    /// The connector these flags select.
    ///
    /// # Errors
    ///
    /// When none or a malformed `--http` is given.
    pub fn connector(&self) -> Result<Connector, CliError> {
        #[cfg(feature = "mockhsm")]
        if self.mock {
            return Ok(Connector::Mock);
        }
        if self.usb {
            return Ok(Connector::Usb {
                serial: self.serial.clone(),
            });
        }
        if let Some(http) = &self.http {
            let (addr, port) = http
                .rsplit_once(':')
                .ok_or_else(|| format!("--http {http:?}: expected ADDR:PORT"))?;
            let port = port
                .parse()
                .map_err(|_| format!("--http {http:?}: invalid port"))?;
            return Ok(Connector::Http {
                addr: addr.to_owned(),
                port,
            });
        }
        Err("choose a connector: --usb or --http ADDR:PORT".into())
    }

    /// The password from `--password-file`, or the factory default.
    ///
    /// # Errors
    ///
    /// When the file cannot be read.
    pub fn password(&self) -> Result<Zeroizing<String>, CliError> {
        match &self.password_file {
            Some(path) => read_password(path),
            None => Ok(Zeroizing::new(DEFAULT_PASSWORD.to_owned())),
        }
    }
}

fn read_password(path: &Path) -> Result<Zeroizing<String>, CliError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("").trim_end();
    if line.is_empty() {
        return Err(format!("password file {} is empty", path.display()).into());
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// Connects as the flags say and runs the subcommand, printing to stdout.
///
/// # Errors
///
/// When the HSM cannot be reached or refuses, or a file cannot be read.
pub fn run(args: &Args) -> Result<(), CliError> {
    let connector = args.connection.connector()?;
    let password = args.connection.password()?;
    let client = hsm::connect(&connector, args.connection.auth_key_id, &password)?;
    run_with_client(&args.command, &client, &mut std::io::stdout().lock())
}

/// Runs the subcommand against an open client, printing to `out`.
///
/// # Errors
///
/// As [`run`].
pub fn run_with_client(
    command: &Command,
    client: &yubihsm::Client,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        Command::Setup {
            new_auth_key_id,
            new_password_file,
            delete_default,
        } => {
            let password = read_password(new_password_file)?;
            hsm::setup(client, *new_auth_key_id, &password, *delete_default)?;
            writeln!(out, "created authentication key {new_auth_key_id}")?;
            if *delete_default {
                writeln!(out, "deleted the default authentication key 1")?;
            }
        }
        Command::Keys(KeysCommand::Generate {
            id,
            label,
            key_type,
        }) => {
            let pk = hsm::generate_typed_key(client, *id, label, *key_type)?;
            let name = match key_type {
                KeyType::Ed25519 => "Ed25519",
                KeyType::Secp256k1 => "secp256k1",
            };
            writeln!(out, "generated {name} key {id}")?;
            print_key(*id, &pk, out)?;
        }
        Command::Keys(KeysCommand::Import {
            id,
            path,
            label,
            key_type,
        }) => {
            let signer = load_importable(path, *key_type)?;
            let mut seed = signer.seed();
            let result =
                hsm::import_typed_key(client, *id, label, signer.public_key().key_type(), &seed);
            zeroize::Zeroize::zeroize(&mut seed);
            let pk = result?;
            writeln!(out, "imported {} as key {id}", path.display())?;
            print_key(*id, &pk, out)?;
        }
        Command::Keys(KeysCommand::List) => {
            let keys = hsm::list_keys(client)?;
            if keys.is_empty() {
                writeln!(out, "no Ed25519 or secp256k1 keys")?;
            }
            for key in keys {
                writeln!(
                    out,
                    "{:>5}  {}  {:?}  {}",
                    key.key_id,
                    hex::encode(key.public_key),
                    key.label,
                    key.public_key.key_type()
                )?;
            }
        }
    }
    Ok(())
}

/// A softsign key file holding a `key_type` key, or a
/// priv_validator_key.json (detected by content, either key type).
pub fn load_importable(path: &Path, key_type: KeyType) -> Result<SoftSigner, CliError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    if text.trim_start().starts_with('{') {
        Ok(import_priv_validator_key(&text)?)
    } else {
        Ok(SoftSigner::load_type(path, key_type)?)
    }
}

fn print_key(id: u16, pk: &PublicKey, out: &mut dyn Write) -> std::io::Result<()> {
    use base64::Engine as _;
    writeln!(out, "key {id} public key (hex):    {}", hex::encode(pk))?;
    writeln!(
        out,
        "key {id} public key (base64): {}",
        base64::engine::general_purpose::STANDARD.encode(pk)
    )?;
    writeln!(
        out,
        "key {id} validator address:   {}",
        hex::encode_upper(pk.address())
    )
}
