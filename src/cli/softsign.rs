//! `quorumkms softsign`: create, import and inspect software key files.
//!
//! Key files are written 0600 and never overwritten without `--force`.
//! Output is public key material only.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::keys::softsign::{
    SoftSigner, encode_seed, import_priv_validator_key, overwrite_secret_file, write_secret_file,
};
use crate::keys::{ConsensusSigner, KeyType, PublicKey};

/// Errors from a CLI subcommand, shown to the operator.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// `softsign` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Generate a new key file (base64 of the secret, mode 0600).
    Keygen {
        /// Where to write the key.
        path: PathBuf,
        /// ed25519 or secp256k1 (CometBFT v1.0 only; set the same
        /// `key_type` in the config's [[providers.softsign]]).
        #[arg(long, default_value = "ed25519")]
        key_type: KeyType,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Import a CometBFT priv_validator_key.json (Ed25519 or secp256k1)
    /// into a key file.
    Import {
        /// The priv_validator_key.json to read.
        input: PathBuf,
        /// Where to write the key.
        output: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a key file.
    Pubkey {
        /// The key file.
        path: PathBuf,
        /// What the file holds.
        #[arg(long, default_value = "ed25519")]
        key_type: KeyType,
    },
}

/// Runs a `softsign` subcommand, printing to stdout.
///
/// # Errors
///
/// When a key file cannot be read, parsed or written.
pub fn run(cmd: &Command) -> Result<(), CliError> {
    run_with_output(cmd, &mut std::io::stdout().lock())
}

/// Runs a `softsign` subcommand, printing to `out`.
///
/// # Errors
///
/// As [`run`].
pub fn run_with_output(cmd: &Command, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        Command::Keygen {
            path,
            force,
            key_type,
        } => {
            let signer = SoftSigner::generate_type(*key_type);
            save(&signer, path, *force)?;
            writeln!(out, "wrote {}", path.display())?;
            print_public_key(&signer, out)?;
        }
        Command::Import {
            input,
            output,
            force,
        } => {
            let json = std::fs::read_to_string(input)
                .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
            let signer = import_priv_validator_key(&json)?;
            save(&signer, output, *force)?;
            writeln!(
                out,
                "imported {} into {}",
                input.display(),
                output.display()
            )?;
            print_public_key(&signer, out)?;
            if signer.public_key().key_type() != KeyType::Ed25519 {
                writeln!(
                    out,
                    "set key_type = \"{}\" in this key's [[providers.softsign]]",
                    signer.public_key().key_type()
                )?;
            }
        }
        Command::Pubkey { path, key_type } => {
            let signer = SoftSigner::load_type(path, *key_type)?;
            print_public_key(&signer, out)?;
        }
    }
    Ok(())
}

fn save(signer: &SoftSigner, path: &Path, force: bool) -> Result<(), CliError> {
    let mut seed = signer.seed();
    let line = encode_seed(&seed);
    zeroize::Zeroize::zeroize(&mut seed);
    if force {
        overwrite_secret_file(path, line.as_bytes())?;
    } else {
        write_secret_file(path, line.as_bytes())?;
    }
    Ok(())
}

/// Prints a public key as hex, as base64 and as CometBFT JSON, plus the
/// validator address.
///
/// # Errors
///
/// When `out` fails.
pub fn print_public_key(signer: &dyn ConsensusSigner, out: &mut dyn Write) -> std::io::Result<()> {
    print_key(&signer.public_key(), out)
}

/// As [`print_public_key`], for a public key.
///
/// # Errors
///
/// When `out` fails.
pub fn print_key(pk: &PublicKey, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "key type:            {}", pk.key_type())?;
    writeln!(out, "public key (hex):    {}", hex::encode(pk))?;
    writeln!(out, "public key (base64): {}", BASE64.encode(pk))?;
    writeln!(
        out,
        "cometbft pub_key:    {{\"type\":\"{}\",\"value\":\"{}\"}}",
        pk.json_type(),
        BASE64.encode(pk)
    )?;
    writeln!(
        out,
        "validator address:   {}",
        hex::encode_upper(pk.address())
    )
}
