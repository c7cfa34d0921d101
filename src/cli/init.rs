//! `quorumkms init`: a new node directory with a commented config, an
//! identity key, one state file per chain, and the chains' keys: soft key
//! files, or the config for keys on a YubiHSM 2 or a PKCS#11 token (made
//! afterwards with `quorumkms yubihsm` / `quorumkms pkcs11`).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::keys::{KeyType, identity, softsign};
use crate::watermark::{SignState, StateFile};

/// Arguments of `init`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Comma-separated chain ids (known: cosmoshub-4, osmosis-1,
    /// theta-testnet-001; any other id gets a placeholder address).
    #[arg(
        short = 'n',
        long = "networks",
        value_delimiter = ',',
        default_value = "cosmoshub-4"
    )]
    pub networks: Vec<String>,
    /// Where the consensus keys live.
    #[arg(long, value_enum, default_value = "soft")]
    pub key_backend: KeyBackend,
    /// The consensus key type: ed25519, or secp256k1 (CometBFT v1.0 chains
    /// only; the validators are then set to protocol v1.0).
    #[arg(long, default_value = "ed25519")]
    pub key_type: KeyType,
    /// With --key-backend pkcs11: the vendor's PKCS#11 library.
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    pub pkcs11_module: PathBuf,
    /// With --key-backend pkcs11: the token's label.
    #[arg(long, default_value = "quorumkms")]
    pub pkcs11_token: String,
    /// Directory to create.
    pub dir: PathBuf,
}

/// `init --key-backend`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyBackend {
    /// Key files written now (base64 secret, mode 0600).
    #[default]
    Soft,
    /// Keys on a YubiHSM 2 (Ed25519).
    Yubihsm,
    /// Keys on a PKCS#11 token (network HSMs, SoftHSM2, ...).
    Pkcs11,
}

/// What `init` writes for the keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPlan {
    /// The backend.
    pub backend: KeyBackend,
    /// The key type.
    pub key_type: KeyType,
    /// PKCS#11 module.
    pub pkcs11_module: PathBuf,
    /// PKCS#11 token label.
    pub pkcs11_token: String,
}

impl Default for KeyPlan {
    fn default() -> Self {
        KeyPlan {
            backend: KeyBackend::Soft,
            key_type: KeyType::Ed25519,
            pkcs11_module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            pkcs11_token: "quorumkms".into(),
        }
    }
}

/// Chains `init` knows: id and a typical validator privval address.
const KNOWN: &[(&str, &str)] = &[
    ("cosmoshub-4", "tcp://127.0.0.1:26658"),
    ("osmosis-1", "tcp://127.0.0.1:26668"),
    ("theta-testnet-001", "tcp://127.0.0.1:26678"),
];

/// Runs `init`.
///
/// # Errors
///
/// An existing config in `dir`, or any file that cannot be written.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let config_path = args.dir.join("quorumkms.toml");
    if config_path.exists() {
        return Err(format!(
            "{} already exists; refusing to overwrite it",
            config_path.display()
        )
        .into());
    }
    for chain in &args.networks {
        if chain.is_empty() || chain.chars().any(char::is_whitespace) {
            return Err(format!("invalid chain id {chain:?}").into());
        }
    }
    let plan = KeyPlan {
        backend: args.key_backend,
        key_type: args.key_type,
        pkcs11_module: args.pkcs11_module.clone(),
        pkcs11_token: args.pkcs11_token.clone(),
    };

    std::fs::create_dir_all(args.dir.join("secrets"))?;
    std::fs::create_dir_all(args.dir.join("state"))?;
    let identity_path = args.dir.join("secrets/kms-identity.key");
    identity::generate(&identity_path)?;
    for chain in &args.networks {
        let state_path = args.dir.join(format!("state/{chain}-consensus.json"));
        StateFile::new(&state_path).save(&SignState::default())?;
        if plan.backend != KeyBackend::Soft {
            continue;
        }
        let key_path = args.dir.join(format!("secrets/{chain}-consensus.key"));
        let key = softsign::SoftSigner::generate_type(plan.key_type);
        key.write(&key_path)?;
        println!(
            "{chain}: {} consensus key {}",
            plan.key_type,
            hex::encode(crate::keys::ConsensusSigner::public_key(&key))
        );
    }
    std::fs::write(&config_path, render_with(&args.networks, &plan))?;
    println!("wrote {}", config_path.display());
    match plan.backend {
        KeyBackend::Soft => {}
        KeyBackend::Yubihsm => println!(
            "next: put the authentication key's password in {}/secrets/yubihsm-password (mode 0600) \
             and create each chain's key: quorumkms yubihsm --usb keys generate ID --key-type {}",
            args.dir.display(),
            plan.key_type
        ),
        KeyBackend::Pkcs11 => {
            println!(
                "next: put the token's user PIN in {}/secrets/pkcs11-pin (mode 0600) and create each chain's key:",
                args.dir.display()
            );
            for chain in &args.networks {
                println!(
                    "  quorumkms pkcs11 --module {} --token-label {} --pin-file {}/secrets/pkcs11-pin \
                     keys generate --label {chain}-consensus --key-type {}",
                    plan.pkcs11_module.display(),
                    plan.pkcs11_token,
                    args.dir.display(),
                    plan.key_type
                );
            }
        }
    }
    println!(
        "next: set each [[validator]] addr and floor_rpc, then `quorumkms start -c {}`",
        config_path.display()
    );
    Ok(())
}

fn address_of(chain: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|(id, _)| *id == chain)
        .map_or("tcp://127.0.0.1:26658", |(_, addr)| addr)
}

/// The commented configuration for `chains` with soft Ed25519 keys.
pub fn render(chains: &[String]) -> String {
    render_with(chains, &KeyPlan::default())
}

/// The `[[providers.softsign]]` of one chain's key file.
fn soft_provider(chain: &str, key_type: KeyType) -> String {
    let key_type = match key_type {
        KeyType::Ed25519 => String::new(),
        other => format!("key_type = \"{other}\"\n"),
    };
    format!(
        "[[providers.softsign]]\n\
         chain_ids = [\"{chain}\"]\n\
         path = \"secrets/{chain}-consensus.key\"\n{key_type}\n"
    )
}

/// One device's section with a key for each chain.
fn device_provider(chains: &[String], plan: &KeyPlan) -> String {
    let mut out = String::new();
    match plan.backend {
        KeyBackend::Soft => {}
        KeyBackend::Yubihsm => {
            let key_type = match plan.key_type {
                KeyType::Ed25519 => String::new(),
                other => format!(", key_type = \"{other}\""),
            };
            let keys: Vec<String> = chains
                .iter()
                .enumerate()
                .map(|(i, chain)| {
                    format!("{{ chain_ids = [\"{chain}\"], key = {}{key_type} }}", i + 1)
                })
                .collect();
            let _ = write!(
                out,
                "# Each chain's {} key is an object on the YubiHSM 2\n\
                 # (quorumkms yubihsm --usb keys generate ID --key-type {}).\n\
                 [[providers.yubihsm]]\n\
                 adapter = {{ type = \"usb\" }}            # or {{ type = \"http\", addr = \"127.0.0.1\", port = 12345 }}\n\
                 auth = {{ key = 1, password_file = \"secrets/yubihsm-password\" }}\n\
                 keys = [{}]\n\n",
                plan.key_type,
                plan.key_type,
                keys.join(", ")
            );
        }
        KeyBackend::Pkcs11 => {
            let _ = write!(
                out,
                "# Keys on a PKCS#11 token (quorumkms pkcs11 ... keys generate --label LABEL\n\
                 # --key-type {key_type}). Name the token by token_label or slot; the user PIN\n\
                 # comes from a 0600 file.\n\
                 [[providers.pkcs11]]\n\
                 module = \"{module}\"\n\
                 token_label = \"{token}\"\n\
                 pin_file = \"secrets/pkcs11-pin\"\n\
                 # sessions = 4   # sessions kept open for concurrent signing\n\n",
                module = plan.pkcs11_module.display(),
                token = plan.pkcs11_token,
                key_type = plan.key_type,
            );
            for chain in chains {
                let _ = write!(
                    out,
                    "[[providers.pkcs11.keys]]\n\
                     chain_ids = [\"{chain}\"]\n\
                     label = \"{chain}-consensus\"   # or id = \"hex CKA_ID\"\n\
                     key_type = \"{}\"\n\n",
                    plan.key_type
                );
            }
        }
    }
    out
}

/// The commented configuration for `chains` with keys as `plan` says.
/// Paths are relative to the config file's directory.
pub fn render_with(chains: &[String], plan: &KeyPlan) -> String {
    let version = match plan.key_type {
        KeyType::Ed25519 => "v0.38",
        // CometBFT takes secp256k1 consensus keys from v1.0 on.
        KeyType::Secp256k1 => "v1.0",
    };
    let mut out = String::from(
        "# quorumkms configuration (generated by `quorumkms init`).\n\
         # Relative paths are resolved against this file's directory.\n\n",
    );
    for chain in chains {
        let _ = write!(
            out,
            "# A chain this signer serves.\n\
             [[chain]]\n\
             id = \"{chain}\"\n\
             # Watermark in CometBFT's priv_validator_state.json format (single-node mode).\n\
             # To migrate, copy your validator's or tmkms's state file here.\n\
             state_file = \"state/{chain}-consensus.json\"\n\
             # max_height = 20000000   # refuse to sign above this height\n\
             # height_ownership = true # one validator node owns each height\n\
             # While the chain has no watermark (this empty state file, nothing imported),\n\
             # sign nothing at or below the chain's latest height, read from a CometBFT RPC\n\
             # (the validator's or a sentry's; the highest answer wins). Moving from another\n\
             # signer: stop it, then `quorumkms state import` its state file as well.\n\
             # Other choices: \"first-request\" (nothing below the first request's height)\n\
             # or \"none\" (no floor).\n\
             floor = \"rpc\"\n\
             floor_rpc = [\"http://127.0.0.1:26657\"]\n\n\
             # A validator node to dial (the validator, or a sentry running as it).\n\
             # Use tcp://NODE_ID@host:port to pin the validator's node id.\n\
             [[validator]]\n\
             chain_id = \"{chain}\"\n\
             addr = \"{addr}\"\n\
             secret_key = \"secrets/kms-identity.key\"\n\
             protocol_version = \"{version}\"   # v0.34, v0.37, v0.38 or v1.0\n\
             reconnect = true\n\n\
             {provider}",
            addr = address_of(chain),
            provider = if plan.backend == KeyBackend::Soft {
                soft_provider(chain, plan.key_type)
            } else {
                String::new()
            },
        );
    }
    out.push_str(&device_provider(chains, plan));
    if plan.backend == KeyBackend::Soft {
        out.push_str(
            "# A YubiHSM 2 or a PKCS#11 token instead of soft keys: see\n\
             # `quorumkms init --key-backend yubihsm|pkcs11` and the README's key section.\n\n",
        );
    }
    out.push_str(
        "\
         # Cluster mode: replicate the watermark through Raft across 3 or more nodes.\n\
         # [cluster]\n\
         # node_id = 1\n\
         # listen = \"0.0.0.0:7100\"\n\
         # data_dir = \"raft\"\n\
         # peers = [{ id = 1, addr = \"10.0.0.1:7100\" }, { id = 2, addr = \"10.0.0.2:7100\" }, { id = 3, addr = \"10.0.0.3:7100\" }]\n\
         # Mutual TLS, required off loopback (quorumkms cluster certs init / node --id 1):\n\
         # tls = { ca = \"certs/ca.pem\", cert = \"certs/node-1.pem\", key = \"certs/node-1.key\" }\n",
    );
    out
}
