//! `quorumkms threshold`: split a chain's Ed25519 key into t-of-n share
//! files, show a share file's public data, and check a set of share files
//! before a cluster signs with them.
//!
//! Share files are written 0600 and never overwritten. Output is public
//! data only: a share's secret is never printed.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use frost_ed25519 as frost;
use zeroize::Zeroizing;

use super::softsign::print_key;
use crate::keys::softsign::{import_priv_validator_key, read_seed_file};
use crate::keys::{ConsensusSigner as _, KeyType, PublicKey};
use crate::threshold::{self, KeyShare, dealer};

pub use super::softsign::CliError;

/// The message `check` signs to show the shares work together.
const TEST_MESSAGE: &[u8] = b"quorumkms threshold check: test signature";

/// `threshold` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Split a whole Ed25519 key into t-of-n share files, one per node
    /// (run once, on an offline host, then destroy the whole key).
    Split(SplitArgs),
    /// Print a share file's public data: chain, node, t of n, holders,
    /// group key and address.
    Show {
        /// The share file.
        file: PathBuf,
    },
    /// Check that share files belong together (one chain, one split,
    /// distinct nodes), optionally that their group key is the validator's,
    /// and, given t or more of them, make and verify a test signature.
    Check(CheckArgs),
    /// Make a new key that no host ever holds: a distributed key generation
    /// over every voter of the running cluster, coordinated by the node
    /// named (each voter writes its share to the chain's `share_file`; the
    /// chain must be in threshold mode on every node, with no share yet).
    /// Prints the new group key: the validator key to register on chain.
    Dkg {
        /// The node to coordinate (its config, or --addr), and the
        /// operator's certificate.
        #[command(flatten)]
        target: super::cluster::Target,
        /// The threshold-mode chain to make a key for.
        #[arg(long)]
        chain_id: String,
    },
}

/// `threshold split` arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(group = clap::ArgGroup::new("key").required(true).args(["priv_validator_key", "soft_key"]))]
pub struct SplitArgs {
    /// The chain the key signs for (it names the share files).
    #[arg(long)]
    pub chain_id: String,
    /// The key to split: a CometBFT priv_validator_key.json.
    #[arg(long, value_name = "FILE")]
    pub priv_validator_key: Option<PathBuf>,
    /// The key to split: a softsign key file (read as Ed25519, the only
    /// type threshold mode signs with; compare the address printed with
    /// your validator's).
    #[arg(long, value_name = "FILE")]
    pub soft_key: Option<PathBuf>,
    /// t: how many shares each signature needs (2 or more, at most the
    /// number of nodes).
    #[arg(long)]
    pub threshold: u16,
    /// The node ids that get a share, comma separated (their cluster node
    /// ids: a node's share is its FROST identifier).
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<u64>,
    /// The directory to write `<chain>.share-<node>.json` into (created
    /// 0700 when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `threshold check` arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CheckArgs {
    /// The share files (from one split or key generation).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The validator's public key, base64 (as in `pub_key.value`).
    #[arg(long, conflicts_with = "priv_validator_key")]
    pub pubkey: Option<String>,
    /// The validator's priv_validator_key.json (only its `pub_key` is read).
    #[arg(long, value_name = "FILE")]
    pub priv_validator_key: Option<PathBuf>,
}

/// Runs a `threshold` subcommand, printing to stdout.
///
/// # Errors
///
/// A key or share file cannot be read, parsed or written, the split is
/// refused, or (for `check`) any check failed.
pub fn run(cmd: &Command) -> Result<(), CliError> {
    run_with_output(cmd, &mut std::io::stdout().lock())
}

/// Runs a `threshold` subcommand, printing to `out`.
///
/// # Errors
///
/// As [`run`].
pub fn run_with_output(cmd: &Command, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        Command::Split(args) => split(args, out),
        Command::Show { file } => show(file, out),
        Command::Check(args) => check(args, out),
        Command::Dkg { target, chain_id } => dkg(target, chain_id, out),
    }
}

/// Every voter's three steps, and the deliveries between them, in one call.
const DKG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn dkg(
    target: &super::cluster::Target,
    chain_id: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let client = target
        .client(DKG_TIMEOUT)
        .map_err(|e| -> CliError { e.to_string().into() })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let message = runtime.block_on(client.threshold_dkg(chain_id))?;
    writeln!(out, "{message}")?;
    writeln!(
        out,
        "next: `quorumkms threshold show` on any node's share file prints the key's address; \
         the key is new, so the validator must be registered (or rotated) to it on chain"
    )?;
    Ok(())
}

fn split(args: &SplitArgs, out: &mut dyn Write) -> Result<(), CliError> {
    check_chain_file_name(&args.chain_id)?;
    threshold::check_threshold(
        args.threshold,
        u16::try_from(args.nodes.len()).unwrap_or(u16::MAX),
    )?;
    let (source, seed) = read_whole_key(args)?;
    let targets: Vec<PathBuf> = args
        .nodes
        .iter()
        .map(|node| share_path(&args.out, &args.chain_id, *node))
        .collect();
    // Refuse before writing anything, so a refusal leaves no partial set.
    if let Some(existing) = targets.iter().find(|path| path.exists()) {
        return Err(format!(
            "{} already exists: share files are never overwritten; choose another --out \
             directory or remove the old shares first",
            existing.display()
        )
        .into());
    }
    let shares = dealer::split(
        &args.chain_id,
        &seed,
        args.threshold,
        &args.nodes,
        &mut rand_core::OsRng,
    )?;
    drop(seed);
    create_private_dir(&args.out)?;
    for (index, (share, path)) in shares.iter().zip(&targets).enumerate() {
        if let Err(e) = share.write(path, false) {
            let written: Vec<String> = targets[..index]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(format!(
                "{e}; already written (remove them before splitting again): [{}]",
                written.join(", ")
            )
            .into());
        }
    }
    let group = shares
        .first()
        .ok_or("no shares were made")?
        .group_key()
        .map_err(|e| format!("group key: {e}"))?;
    writeln!(
        out,
        "split the key in {} into {} shares of chain {}; any {} of them sign",
        source.display(),
        shares.len(),
        args.chain_id,
        args.threshold
    )?;
    writeln!(out, "group public key = the validator's key:")?;
    print_key(&group, out)?;
    writeln!(
        out,
        "shares (each to its node, as [chain.threshold] share_file, mode 0600):"
    )?;
    for (share, path) in shares.iter().zip(&targets) {
        writeln!(out, "  node {}: {}", share.node(), path.display())?;
    }
    writeln!(
        out,
        "next: copy each file to its node only, set [chain.threshold] share_file there, and run \
         `quorumkms threshold check` on the set (with --pubkey {}) before starting the cluster",
        BASE64.encode(group.as_bytes())
    )?;
    writeln!(
        out,
        "WARNING: {} is the whole key, and any {} of these share files are too. Once every share \
         is on its node and checked, destroy {}, every backup of it, and the shares left in {} \
         (e.g. shred -u); keep no node's share anywhere but on that node.",
        source.display(),
        args.threshold,
        source.display(),
        args.out.display()
    )?;
    Ok(())
}

/// The Ed25519 seed of the key `split` was given, and the file it came from.
fn read_whole_key(args: &SplitArgs) -> Result<(PathBuf, Zeroizing<[u8; 32]>), CliError> {
    if let Some(path) = &args.priv_validator_key {
        let json = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        let signer =
            import_priv_validator_key(&json).map_err(|e| format!("{}: {e}", path.display()))?;
        let key_type = signer.public_key().key_type();
        if key_type != KeyType::Ed25519 {
            return Err(ed25519_only(path, key_type).into());
        }
        return Ok((path.clone(), Zeroizing::new(signer.seed())));
    }
    if let Some(path) = &args.soft_key {
        return Ok((path.clone(), read_seed_file(path)?));
    }
    Err("give the key to split: --priv-validator-key FILE or --soft-key FILE".into())
}

fn ed25519_only(path: &Path, key_type: KeyType) -> String {
    format!(
        "{} holds a {key_type} key: threshold mode is Ed25519 only; keep this chain in mode = \
         \"key\"",
        path.display()
    )
}

/// A chain id names the share files, so it must be one file name.
fn check_chain_file_name(chain_id: &str) -> Result<(), String> {
    if chain_id.is_empty()
        || chain_id == "."
        || chain_id == ".."
        || chain_id.contains(['/', '\\', '\0'])
    {
        return Err(format!(
            "--chain-id {chain_id:?} cannot name a share file: give the chain's id as the \
             validator's genesis has it"
        ));
    }
    Ok(())
}

/// Where `split` writes `node`'s share.
pub fn share_path(dir: &Path, chain_id: &str, node: u64) -> PathBuf {
    dir.join(format!("{chain_id}.share-{node}.json"))
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()).into())
}

fn show(file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let share = KeyShare::load(file, None)?;
    let group = share.group_key()?;
    writeln!(out, "share file:          {}", file.display())?;
    writeln!(out, "chain:               {}", share.chain_id())?;
    writeln!(out, "node:                {}", share.node())?;
    writeln!(
        out,
        "threshold:           {} of {}",
        share.threshold(),
        share.shares()
    )?;
    writeln!(out, "holders:             nodes {}", list(&share.holders()))?;
    print_key(&group, out)?;
    Ok(())
}

fn list(nodes: &[u64]) -> String {
    nodes
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// PASS and FAIL lines, as `quorumkms doctor` prints them.
struct Report<'a> {
    out: &'a mut dyn Write,
    checks: usize,
    fails: usize,
}

impl Report<'_> {
    fn pass(&mut self, what: impl Display) -> std::io::Result<()> {
        self.checks += 1;
        writeln!(self.out, "PASS  {what}")
    }

    fn fail(&mut self, what: impl Display, fix: impl Display) -> std::io::Result<()> {
        self.checks += 1;
        self.fails += 1;
        writeln!(self.out, "FAIL  {what}")?;
        writeln!(self.out, "      fix: {fix}")
    }

    fn skip(&mut self, what: impl Display) -> std::io::Result<()> {
        writeln!(self.out, "SKIP  {what}")
    }

    fn result(&mut self, ok: bool, what: impl Display, fix: impl Display) -> std::io::Result<()> {
        if ok {
            self.pass(what)
        } else {
            self.fail(what, fix)
        }
    }
}

fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut report = Report {
        out,
        checks: 0,
        fails: 0,
    };
    let expected = match expected_key(args) {
        Ok(key) => key,
        Err(e) => {
            report.fail(e, "give the validator's Ed25519 public key")?;
            None
        }
    };
    let mut shares: Vec<(&Path, KeyShare)> = Vec::new();
    for path in &args.files {
        match KeyShare::load(path, None) {
            Ok(share) => {
                check_one(&mut report, path, &share)?;
                shares.push((path, share));
            }
            Err(e) => report.fail(
                e,
                "give a share file written by `quorumkms threshold split` (or a key generation), \
                 mode 0600, unchanged since",
            )?,
        }
    }
    let one_set = !shares.is_empty() && check_set(&mut report, &shares)?;
    if let (Some(expected), Some((_, first))) = (expected, shares.first()) {
        for group in distinct(shares.iter().map(|(_, s)| s.group_key().ok())) {
            let shown = group.map_or("(none)".into(), |g| BASE64.encode(g.as_bytes()));
            let wanted = BASE64.encode(expected.as_bytes());
            report.result(
                group == Some(expected),
                if group == Some(expected) {
                    format!("group key is the validator's key {wanted}")
                } else {
                    format!("group key {shown} is not the validator's key {wanted}")
                },
                format_args!(
                    "these shares sign for another key than the validator's: split the \
                     validator's own key (chain {})",
                    first.chain_id()
                ),
            )?;
        }
    }
    test_signature(&mut report, &shares, one_set)?;
    writeln!(
        report.out,
        "threshold check: {} check(s), {} failed",
        report.checks, report.fails
    )?;
    if report.fails > 0 {
        return Err(format!("{} check(s) failed", report.fails).into());
    }
    Ok(())
}

/// The per-file check beyond loading: the secret share is the one the
/// public package names for this node.
fn check_one(report: &mut Report<'_>, path: &Path, share: &KeyShare) -> std::io::Result<()> {
    let package = share.key_package();
    let matches =
        frost::keys::VerifyingShare::from(*package.signing_share()) == *package.verifying_share();
    report.result(
        matches,
        format_args!(
            "{}: node {}'s share of chain {}, {} of {}{}",
            path.display(),
            share.node(),
            share.chain_id(),
            share.threshold(),
            share.shares(),
            if matches {
                ""
            } else {
                ", but its secret share is not the one its public data names"
            }
        ),
        "the file is damaged or was changed: restore it from the node, or split again",
    )
}

/// One chain, one group key, one t of n, one split, distinct nodes.
/// Returns whether all held.
fn check_set(report: &mut Report<'_>, shares: &[(&Path, KeyShare)]) -> std::io::Result<bool> {
    let fails = report.fails;
    let chains = distinct(shares.iter().map(|(_, s)| s.chain_id().to_string()));
    report.result(
        chains.len() == 1,
        format_args!("one chain: {}", chains.join(", ")),
        "give the share files of one chain",
    )?;
    let groups = distinct(shares.iter().map(|(_, s)| {
        s.group_key()
            .map_or_else(|e| e, |g| BASE64.encode(g.as_bytes()))
    }));
    report.result(
        groups.len() == 1,
        format_args!("one group key: {}", groups.join(", ")),
        "these files are shares of different keys: give one split's files",
    )?;
    let sizes = distinct(
        shares
            .iter()
            .map(|(_, s)| format!("{} of {}", s.threshold(), s.shares())),
    );
    report.result(
        sizes.len() == 1,
        format_args!("one threshold: {}", sizes.join(", ")),
        "give the files of one split",
    )?;
    let first = shares[0].1.public_package();
    let strays = distinct(
        shares
            .iter()
            .filter(|(_, s)| s.public_package() != first)
            .map(|(path, _)| path.display().to_string()),
    );
    report.result(
        strays.is_empty(),
        if strays.is_empty() {
            "one split: every file holds the same public shares".to_string()
        } else {
            format!(
                "one split: {} come from another split than {} (a key split twice gives \
                 shares that do not combine)",
                strays.join(", "),
                shares[0].0.display()
            )
        },
        "give the files of one split, and destroy the other split's",
    )?;
    let mut by_node: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (path, share) in shares {
        by_node
            .entry(share.node())
            .or_default()
            .push(path.display().to_string());
    }
    let repeated: Vec<String> = by_node
        .iter()
        .filter(|(_, paths)| paths.len() > 1)
        .map(|(node, paths)| format!("node {node} in {}", paths.join(" and ")))
        .collect();
    let nodes: Vec<u64> = by_node.keys().copied().collect();
    report.result(
        repeated.is_empty(),
        if repeated.is_empty() {
            format!("distinct nodes: {}", list(&nodes))
        } else {
            format!("distinct nodes: {}", repeated.join("; "))
        },
        "each node holds one share: give each node's file once",
    )?;
    Ok(report.fails == fails)
}

fn test_signature(
    report: &mut Report<'_>,
    shares: &[(&Path, KeyShare)],
    one_set: bool,
) -> std::io::Result<()> {
    let Some((_, first)) = shares.first() else {
        return report.skip("test signature: no share file loaded");
    };
    let needed = usize::from(first.threshold());
    if !one_set {
        return report.skip("test signature: the files are not one set");
    }
    if shares.len() < needed {
        return report.skip(format_args!(
            "test signature: needs {needed} share files, got {}",
            shares.len()
        ));
    }
    let refs: Vec<&KeyShare> = shares.iter().map(|(_, s)| s).collect();
    let nodes = list(&refs.iter().map(|s| s.node()).collect::<Vec<_>>());
    let signed = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| runtime.block_on(threshold::sign_with_shares(&refs, TEST_MESSAGE)));
    match signed {
        Ok(_) => report.pass(format_args!(
            "test signature by nodes {nodes}: verifies under the group key"
        )),
        Err(e) => report.fail(
            format_args!("test signature by nodes {nodes}: {e}"),
            "a share named above is damaged or was changed: restore it from the node, or split \
             again",
        ),
    }
}

/// The validator key `check` compares with, when one is given.
fn expected_key(args: &CheckArgs) -> Result<Option<PublicKey>, String> {
    if let Some(b64) = &args.pubkey {
        let bytes = BASE64
            .decode(b64.trim())
            .map_err(|_| format!("--pubkey {b64}: not base64"))?;
        return PublicKey::from_type_and_bytes(KeyType::Ed25519, &bytes)
            .map(Some)
            .map_err(|e| format!("--pubkey {b64}: {e} (threshold mode is Ed25519 only)"));
    }
    let Some(path) = &args.priv_validator_key else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| format!("{}: not JSON", path.display()))?;
    let pub_key = &json["pub_key"];
    match pub_key["type"].as_str() {
        Some("tendermint/PubKeyEd25519") => {}
        Some("tendermint/PubKeySecp256k1") => {
            return Err(ed25519_only(path, KeyType::Secp256k1));
        }
        other => {
            return Err(format!(
                "{}: pub_key.type is {other:?}, expected \"tendermint/PubKeyEd25519\"",
                path.display()
            ));
        }
    }
    let bytes = pub_key["value"]
        .as_str()
        .and_then(|v| BASE64.decode(v.trim()).ok())
        .ok_or_else(|| format!("{}: pub_key.value is not base64", path.display()))?;
    PublicKey::from_type_and_bytes(KeyType::Ed25519, &bytes)
        .map(Some)
        .map_err(|e| format!("{}: pub_key.value: {e}", path.display()))
}

/// The distinct values, in first-seen order.
fn distinct<T: PartialEq>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen
}
