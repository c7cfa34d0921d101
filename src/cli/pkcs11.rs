//! `quorumkms pkcs11`: inspect a PKCS#11 module's slots and manage the
//! consensus keys on one of its tokens.
//!
//! `slots` needs no PIN; `keys ...` log in as the token's user with the PIN
//! from `--pin-file`, never from the command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::keys::pkcs11::{Admin, KeyRef, TokenSelector};
use crate::keys::{KeyType, PublicKey};

pub use super::softsign::CliError;

/// `pkcs11` arguments: the module and token, then the subcommand.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// The vendor's PKCS#11 library, e.g.
    /// /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, value_name = "PATH")]
    pub module: PathBuf,
    /// The token, by label.
    #[arg(long, conflicts_with = "slot")]
    pub token_label: Option<String>,
    /// The token, by slot id.
    #[arg(long)]
    pub slot: Option<u64>,
    /// File holding the user PIN (first line).
    #[arg(long, value_name = "PATH")]
    pub pin_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `pkcs11` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// List the module's slots, their tokens and whether they sign with
    /// EdDSA and ECDSA.
    Slots,
    /// Manage consensus keys on the token.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// How a command names a key.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct KeyArgs {
    /// The key's label (CKA_LABEL).
    #[arg(long, required_unless_present = "id")]
    pub label: Option<String>,
    /// The key's id (CKA_ID), hex.
    #[arg(long)]
    pub id: Option<String>,
}

/// `pkcs11 keys` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum KeysCommand {
    /// List the Ed25519 and secp256k1 keys on the token.
    List,
    /// Generate a key pair on the token (sensitive, never extractable).
    Generate {
        /// CKA_LABEL of the new key pair.
        #[arg(long)]
        label: String,
        /// CKA_ID, hex (default: the first 8 bytes of sha256(label)).
        #[arg(long)]
        id: Option<String>,
        /// ed25519 (CKM_EDDSA) or secp256k1 (CKM_ECDSA; CometBFT v1.0).
        #[arg(long, default_value = "ed25519")]
        key_type: KeyType,
    },
    /// Import a softsign key file or a priv_validator_key.json, where the
    /// token accepts plaintext keys (many network HSMs do not).
    Import {
        /// The key file (base64 secret) or priv_validator_key.json.
        #[arg(long)]
        path: PathBuf,
        /// The key type of a softsign key file (a priv_validator_key.json
        /// says its own).
        #[arg(long, default_value = "ed25519")]
        key_type: KeyType,
        /// CKA_LABEL of the new key pair.
        #[arg(long)]
        label: String,
        /// CKA_ID, hex (default: the first 8 bytes of sha256(label)).
        #[arg(long)]
        id: Option<String>,
    },
    /// Print a key's public key and validator address.
    Pubkey(KeyArgs),
    /// Sign a message with a key and check the signature (a smoke test of
    /// the token; prints the signature in hex).
    SignTest {
        /// Which key.
        #[command(flatten)]
        key: KeyArgs,
        /// The message, as text.
        #[arg(long, default_value = "quorumkms pkcs11 sign-test")]
        message: String,
    },
}

impl KeyArgs {
    fn key_ref(&self) -> Result<KeyRef, CliError> {
        match (&self.label, &self.id) {
            (Some(label), None) => Ok(KeyRef::Label(label.clone())),
            (None, Some(id)) => Ok(KeyRef::Id(parse_id(id)?)),
            _ => Err("give --label or --id".into()),
        }
    }
}

fn parse_id(id: &str) -> Result<Vec<u8>, CliError> {
    match hex::decode(id) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(format!("--id {id:?}: expected hex bytes").into()),
    }
}

/// The id a new key gets unless one is given.
fn default_id(label: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(label.as_bytes())[..8].to_vec()
}

impl Args {
    fn selector(&self) -> Result<TokenSelector, CliError> {
        match (&self.token_label, self.slot) {
            (Some(label), _) => Ok(TokenSelector::Label(label.clone())),
            (None, Some(slot)) => Ok(TokenSelector::Slot(slot)),
            (None, None) => Err("name the token: --token-label LABEL or --slot ID".into()),
        }
    }

    fn pin(&self) -> Result<Zeroizing<String>, CliError> {
        let path = self
            .pin_file
            .as_ref()
            .ok_or("--pin-file is required to log in to the token")?;
        read_pin(path)
    }
}

fn read_pin(path: &Path) -> Result<Zeroizing<String>, CliError> {
    crate::keys::softsign::check_permissions(path)?;
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read PIN file {}: {e}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("").trim_end();
    if line.is_empty() {
        return Err(format!("PIN file {} is empty", path.display()).into());
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// Runs a `pkcs11` subcommand, printing to stdout.
///
/// # Errors
///
/// When the module, token or key cannot be used, or a file cannot be read.
pub fn run(args: &Args) -> Result<(), CliError> {
    run_with_output(args, &mut std::io::stdout().lock())
}

/// Runs a `pkcs11` subcommand, printing to `out`.
///
/// # Errors
///
/// As [`run`].
pub fn run_with_output(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let keys = match &args.command {
        Command::Slots => {
            for slot in crate::keys::pkcs11::list_slots(&args.module)? {
                match &slot.token_label {
                    None => writeln!(out, "slot {}: no token", slot.id)?,
                    Some(label) => writeln!(
                        out,
                        "slot {}: token {label:?}, {}; EdDSA {}, ECDSA {}",
                        slot.id,
                        slot.token,
                        yes_no(slot.eddsa),
                        yes_no(slot.ecdsa)
                    )?,
                }
            }
            return Ok(());
        }
        Command::Keys(keys) => keys,
    };
    let admin = Admin::open(&args.module, &args.selector()?, &args.pin()?)?;
    let result = run_keys(&admin, keys, out);
    admin.close();
    result
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn run_keys(admin: &Admin, command: &KeysCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        KeysCommand::List => {
            let keys = admin.list()?;
            if keys.is_empty() {
                writeln!(out, "no Ed25519 or secp256k1 keys")?;
            }
            for key in keys {
                writeln!(
                    out,
                    "{:?}  id {}  {}  {}",
                    key.label,
                    key.id,
                    key.public_key.key_type(),
                    hex::encode(key.public_key)
                )?;
            }
        }
        KeysCommand::Generate {
            label,
            id,
            key_type,
        } => {
            let id = id.as_deref().map(parse_id).transpose()?;
            let id = id.unwrap_or_else(|| default_id(label));
            let pk = admin.generate(*key_type, label, &id)?;
            writeln!(
                out,
                "generated {key_type} key {label:?} (id {}) on the token",
                hex::encode(&id)
            )?;
            print(&pk, out)?;
        }
        KeysCommand::Import {
            path,
            key_type,
            label,
            id,
        } => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            );
            let signer = if text.trim_start().starts_with('{') {
                crate::keys::softsign::import_priv_validator_key(&text)?
            } else {
                crate::keys::softsign::SoftSigner::load_type(path, *key_type)?
            };
            let id = id.as_deref().map(parse_id).transpose()?;
            let id = id.unwrap_or_else(|| default_id(label));
            let pk = admin.import(&signer, label, &id)?;
            writeln!(
                out,
                "imported {} as {} key {label:?} (id {})",
                path.display(),
                pk.key_type(),
                hex::encode(&id)
            )?;
            print(&pk, out)?;
        }
        KeysCommand::Pubkey(key) => {
            let pk = admin.public_key(&key.key_ref()?)?;
            print(&pk, out)?;
        }
        KeysCommand::SignTest { key, message } => {
            let key_ref = key.key_ref()?;
            let pk = admin.public_key(&key_ref)?;
            let signature = admin.sign(&key_ref, pk, message.as_bytes())?;
            writeln!(out, "signature (hex):     {}", hex::encode(signature))?;
            writeln!(out, "verified against     {pk}")?;
        }
    }
    Ok(())
}

fn print(pk: &PublicKey, out: &mut dyn Write) -> std::io::Result<()> {
    super::softsign::print_key(pk, out)
}
