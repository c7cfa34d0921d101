//! quorumkms.toml: parsing and validation.
//!
//! The file mirrors tmkms's: `[[chain]]`, `[[validator]]`,
//! `[[providers.softsign]]` / `[[providers.yubihsm]]` /
//! `[[providers.pkcs11]]`, plus an optional
//! `[cluster]` section. [`load`] parses, resolves relative paths against the
//! file's directory and validates everything, reporting every problem at
//! once with the key it concerns, so nothing is first discovered at connect
//! time.

mod duration;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::grant::floor::Floor;
use crate::grant::floor::http::RpcUrl;
use crate::keys::KeyType;
use crate::privval::Version;
use crate::transport::Address;

pub use duration::{DurationError, parse_duration};

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Chains this signer serves.
    #[serde(default)]
    pub chain: Vec<ChainConfig>,
    /// Validator nodes to dial (a validator and any sentries running as it).
    #[serde(default)]
    pub validator: Vec<ValidatorConfig>,
    /// Key backends.
    #[serde(default)]
    pub providers: ProvidersConfig,
    /// Present in cluster mode; absent means single-node mode.
    pub cluster: Option<crate::cluster::Config>,
    /// Prometheus `/metrics`, `/healthz` and `/readyz`; absent: not served.
    pub metrics: Option<MetricsConfig>,
}

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// host:port of the HTTP listener, e.g. `127.0.0.1:9100`.
    pub listen: String,
}

/// One `[[chain]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// The chain id, e.g. `cosmoshub-4`.
    pub id: String,
    /// Single-node mode's watermark file, in CometBFT's
    /// `priv_validator_state.json` format.
    pub state_file: PathBuf,
    /// Refuse to sign above this height (an operator's brake for upgrades).
    pub max_height: Option<i64>,
    /// With several validator nodes, the first to be granted a new position
    /// at a height owns that height (ARCHITECTURE.md, "Height ownership").
    /// On by default.
    #[serde(default = "default_true")]
    pub height_ownership: bool,
    /// Where the watermark starts while the chain has none (a fresh
    /// signer, no `state import`): `rpc` (the chain's latest height, from
    /// `floor_rpc`), `first-request` or `none`. Unset: a chain without a
    /// watermark signs nothing (see `grant::floor`).
    #[serde(default)]
    pub floor: Option<FloorChoice>,
    /// CometBFT RPC addresses (`http://host:26657`) for `floor = "rpc"`.
    #[serde(default)]
    pub floor_rpc: Vec<String>,
    /// `key` (every node holds the whole key) or `threshold` (each node
    /// holds one FROST share; cluster mode only).
    #[serde(default)]
    pub mode: ChainMode,
    /// `[chain.threshold]`: the shares, for `mode = "threshold"`.
    #[serde(default)]
    pub threshold: Option<ThresholdConfig>,
}

/// `[[chain]] mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainMode {
    /// Every node holds the whole key (in its HSM or a soft file).
    #[default]
    Key,
    /// Each node holds a share; `threshold` of them sign together, each
    /// only for bytes its own applied Raft state has granted.
    Threshold,
}

/// `[chain.threshold]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Shares each signature needs (t).
    pub threshold: u16,
    /// Shares in all (n), one per voting node.
    pub shares: u16,
    /// This node's share (0600), from `quorumkms threshold split` or the
    /// key generation.
    pub share_file: PathBuf,
}

/// `[[chain]] floor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloorChoice {
    /// The chain's latest height from a CometBFT RPC.
    Rpc,
    /// The first request's height.
    FirstRequest,
    /// No floor.
    None,
}

impl ChainConfig {
    /// What is wrong with the chain's mode and its `[chain.threshold]`.
    fn mode_problems(&self, clustered: bool) -> Vec<String> {
        match (self.mode, &self.threshold) {
            (ChainMode::Key, None) => Vec::new(),
            (ChainMode::Key, Some(_)) => vec![
                "threshold: set only with mode = \"threshold\" (this chain's mode is \"key\")"
                    .to_string(),
            ],
            (ChainMode::Threshold, None) => vec![
                "threshold: mode = \"threshold\" needs [chain.threshold] with threshold, shares \
                 and share_file"
                    .to_string(),
            ],
            (ChainMode::Threshold, Some(t)) => {
                let mut problems = Vec::new();
                if !clustered {
                    problems.push(
                        "mode: threshold mode needs a [cluster]: the shares are on its nodes"
                            .to_string(),
                    );
                }
                if let Err(e) = crate::threshold::check_threshold(t.threshold, t.shares) {
                    problems.push(format!("threshold: {e}"));
                }
                problems
            }
        }
    }

    /// The chain's floor.
    ///
    /// # Errors
    ///
    /// `floor = "rpc"` without usable `floor_rpc` addresses, or
    /// `floor_rpc` with another choice.
    pub fn floor(&self) -> Result<Floor, String> {
        match self.floor {
            Some(FloorChoice::Rpc) => {
                if self.floor_rpc.is_empty() {
                    return Err(
                        "floor_rpc: floor = \"rpc\" needs at least one CometBFT RPC address, \
                         e.g. floor_rpc = [\"http://10.0.0.5:26657\"]"
                            .to_string(),
                    );
                }
                let urls = self
                    .floor_rpc
                    .iter()
                    .map(|url| RpcUrl::parse(url))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("floor_rpc: {e}"))?;
                Ok(Floor::Rpc(urls))
            }
            _ if !self.floor_rpc.is_empty() => {
                Err("floor_rpc: used only with floor = \"rpc\"".to_string())
            }
            Some(FloorChoice::FirstRequest) => Ok(Floor::FirstRequest),
            Some(FloorChoice::None) => Ok(Floor::None),
            None => Ok(Floor::Unset),
        }
    }
}

/// One `[[validator]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Chain this validator node runs.
    pub chain_id: String,
    /// `tcp://NODE_ID@host:port` or `unix:///path`.
    pub addr: String,
    /// The validator node's name for height ownership: every signer node
    /// must give one validator node the same name, however it spells the
    /// address. Default: [`ValidatorConfig::owner_name`].
    #[serde(default)]
    pub name: Option<String>,
    /// The SecretConnection identity key (`kms-identity.key`), for tcp.
    pub secret_key: Option<PathBuf>,
    /// privval protocol version: `v0.34`, `v0.37`, `v0.38` or `v1.0`.
    #[serde(default = "default_protocol_version")]
    pub protocol_version: Version,
    /// Keep redialling after a disconnect.
    #[serde(default = "default_true")]
    pub reconnect: bool,
    /// Largest privval frame accepted, in bytes.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// Read/write timeout on the connection, in milliseconds.
    #[serde(default = "default_io_timeout_ms")]
    pub timeout_ms: u64,
    /// Deadline on the whole SecretConnection handshake, in milliseconds
    /// (a day by default: a dial may wait its turn in the validator's
    /// accept queue for as long as another signer is connected; see
    /// `transport::Timeouts`).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

impl ValidatorConfig {
    /// Who this validator node is when it asks for a height: `name` when
    /// set, else the node id of a `tcp://NODE_ID@` address (lowercase hex,
    /// the same on every signer node whatever host name each dials), else
    /// the address as written.
    pub fn owner_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.trim().to_string();
        }
        match self.addr.parse::<Address>() {
            Ok(address) => match address.peer_id() {
                Some(id) => hex::encode(id),
                None => self.addr.trim().to_string(),
            },
            Err(_) => self.addr.trim().to_string(),
        }
    }
}

/// `[providers]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Soft keys on disk.
    #[serde(default)]
    pub softsign: Vec<SoftsignConfig>,
    /// YubiHSM 2 devices.
    #[serde(default)]
    pub yubihsm: Vec<YubihsmConfig>,
    /// PKCS#11 tokens (network HSMs, SoftHSM2, ...).
    #[serde(default)]
    pub pkcs11: Vec<Pkcs11Config>,
}

/// One `[[providers.softsign]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftsignConfig {
    /// Chains this key signs for.
    pub chain_ids: Vec<String>,
    /// Key file (base64 of the 32-byte secret, mode 0600).
    pub path: PathBuf,
    /// What the file holds: `ed25519` (default) or `secp256k1`.
    #[serde(default)]
    pub key_type: KeyType,
}

/// One `[[providers.pkcs11]]`: a token behind a PKCS#11 module.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 library (`.so`).
    pub module: PathBuf,
    /// The token, by label (preferred: slot numbers can change).
    pub token_label: Option<String>,
    /// The token, by slot id.
    pub slot: Option<u64>,
    /// File holding the user PIN (mode 0600).
    pub pin_file: PathBuf,
    /// Sessions kept open for concurrent signing (default 4).
    #[serde(default = "default_pkcs11_sessions")]
    pub sessions: usize,
    /// Keys on the token and the chains they sign for.
    pub keys: Vec<Pkcs11Key>,
}

/// A key on a PKCS#11 token, by label or by id.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Key {
    /// Chains it signs for.
    pub chain_ids: Vec<String>,
    /// `CKA_LABEL` of the private key.
    pub label: Option<String>,
    /// `CKA_ID` of the private key, in hex.
    pub id: Option<String>,
    /// `ed25519` (default, `CKM_EDDSA`) or `secp256k1` (`CKM_ECDSA`).
    #[serde(default)]
    pub key_type: KeyType,
}

fn default_pkcs11_sessions() -> usize {
    4
}

/// One `[[providers.yubihsm]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YubihsmConfig {
    /// How to reach the device.
    pub adapter: YubihsmAdapter,
    /// Authentication key.
    pub auth: YubihsmAuth,
    /// Keys on the device and the chains they sign for.
    pub keys: Vec<YubihsmKey>,
}

/// How to reach a YubiHSM.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum YubihsmAdapter {
    /// Directly over USB (optionally a given serial number).
    Usb {
        /// Device serial number.
        serial_number: Option<String>,
    },
    /// Through yubihsm-connector.
    Http {
        /// Connector host.
        addr: String,
        /// Connector port.
        port: u16,
    },
    /// The in-process mock HSM (debug builds with the `mockhsm` feature).
    Mock,
}

/// YubiHSM authentication.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YubihsmAuth {
    /// Authentication key id.
    pub key: u16,
    /// File holding the password (mode 0600).
    pub password_file: PathBuf,
}

/// A key on a YubiHSM.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YubihsmKey {
    /// Chains it signs for.
    pub chain_ids: Vec<String>,
    /// Object id of the key.
    pub key: u16,
    /// `ed25519` (default) or `secp256k1`.
    #[serde(default)]
    pub key_type: KeyType,
}

impl Pkcs11Config {
    /// The problems of this section alone, each naming its key.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.token_label, self.slot) {
            (None, None) => {
                problems.push("token_label: name the token by token_label (or slot)".to_string())
            }
            (Some(_), Some(_)) => {
                problems.push("slot: give token_label or slot, not both".to_string());
            }
            _ => {}
        }
        if !(1..=64).contains(&self.sessions) {
            problems.push(format!("sessions: {} is outside 1..=64", self.sessions));
        }
        if self.keys.is_empty() {
            problems.push("keys: at least one [[providers.pkcs11.keys]] is required".to_string());
        }
        for (j, k) in self.keys.iter().enumerate() {
            match (&k.label, &k.id) {
                (None, None) => {
                    problems.push(format!("keys[{j}]: give the key's label or id"));
                }
                (Some(_), Some(_)) => {
                    problems.push(format!("keys[{j}]: give label or id, not both"));
                }
                (None, Some(id)) if hex::decode(id).map_or(true, |b| b.is_empty()) => {
                    problems.push(format!("keys[{j}].id: {id:?} is not hex"));
                }
                _ => {}
            }
        }
        problems
    }
}

fn default_true() -> bool {
    true
}

fn default_protocol_version() -> Version {
    Version::V0_38
}

fn default_max_frame() -> usize {
    crate::privval::codec::DEFAULT_MAX_FRAME
}

fn default_io_timeout_ms() -> u64 {
    5_000
}

fn default_handshake_timeout_ms() -> u64 {
    crate::transport::DEFAULT_HANDSHAKE_TIMEOUT
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// The longest `handshake_timeout_ms` accepted: a week.
const MAX_HANDSHAKE_TIMEOUT_MS: u64 = 7 * 24 * 60 * 60 * 1_000;

/// Every problem found in a configuration file.
#[derive(Debug)]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// One line per problem, each naming its key.
    pub problems: Vec<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config {}:", self.path.display())?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Reads, parses and validates `path`. Relative paths inside are resolved
/// against the file's directory.
///
/// # Errors
///
/// Every problem at once: unreadable file, TOML errors with their key and
/// line, and every invalid field.
pub fn load(path: &Path) -> Result<Config, Error> {
    let fail = |problems| Error {
        path: path.to_path_buf(),
        problems,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(vec![format!("cannot read: {e}")]))?;
    let mut config = parse(&text).map_err(|p| fail(vec![p]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    config.resolve_paths(base);
    config.validate().map_err(fail)?;
    Ok(config)
}

/// Parses TOML text without validating it.
///
/// # Errors
///
/// The TOML error, with the offending key and position.
pub fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
}

fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

impl Config {
    fn resolve_paths(&mut self, base: &Path) {
        for c in &mut self.chain {
            resolve(base, &mut c.state_file);
            if let Some(t) = &mut c.threshold {
                resolve(base, &mut t.share_file);
            }
        }
        for v in &mut self.validator {
            if let Some(key) = &mut v.secret_key {
                resolve(base, key);
            }
            if let Some(rest) = v.addr.strip_prefix("unix://") {
                let mut p = PathBuf::from(rest);
                resolve(base, &mut p);
                v.addr = format!("unix://{}", p.display());
            }
        }
        for s in &mut self.providers.softsign {
            resolve(base, &mut s.path);
        }
        for y in &mut self.providers.yubihsm {
            resolve(base, &mut y.auth.password_file);
        }
        for p in &mut self.providers.pkcs11 {
            resolve(base, &mut p.pin_file);
            // A bare library name is left to the dynamic loader.
            if p.module.components().count() > 1 {
                resolve(base, &mut p.module);
            }
        }
        if let Some(cluster) = &mut self.cluster {
            resolve(base, &mut cluster.data_dir);
            if let Some(tls) = &mut cluster.tls {
                resolve(base, &mut tls.ca);
                resolve(base, &mut tls.cert);
                resolve(base, &mut tls.key);
                if let Some(crl) = &mut tls.crl {
                    resolve(base, crl);
                }
            }
        }
    }

    /// Checks every field, collecting all problems.
    ///
    /// # Errors
    ///
    /// One line per problem, each naming the key it concerns.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut chains = BTreeSet::new();
        if self.chain.is_empty() {
            problems.push("[[chain]]: at least one chain is required".to_string());
        }
        for (i, c) in self.chain.iter().enumerate() {
            if c.id.is_empty() || c.id.len() > 50 || c.id.chars().any(char::is_whitespace) {
                problems.push(format!(
                    "chain[{i}].id: {:?} is not a chain id (1 to 50 characters, no spaces)",
                    c.id
                ));
            }
            if !chains.insert(c.id.as_str()) {
                problems.push(format!("chain[{i}].id: chain {:?} is listed twice", c.id));
            }
            if let Some(h) = c.max_height
                && h <= 0
            {
                problems.push(format!("chain[{i}].max_height: must be positive, got {h}"));
            }
            if let Err(problem) = c.floor() {
                problems.push(format!("chain[{i}].{problem}"));
            }
            problems.extend(
                c.mode_problems(self.cluster.is_some())
                    .into_iter()
                    .map(|p| format!("chain[{i}].{p}")),
            );
        }
        let mut addrs = BTreeSet::new();
        // (chain, owner name) -> the address it names.
        let mut names = BTreeMap::new();
        for (i, v) in self.validator.iter().enumerate() {
            if v.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
                problems.push(format!(
                    "validator[{i}].name: must not be empty (leave it out for the default)"
                ));
            }
            let name = v.owner_name();
            match names.insert((v.chain_id.as_str(), name.clone()), v.addr.as_str()) {
                Some(other) if other != v.addr => problems.push(format!(
                    "validator[{i}]: the name {name:?} already names the validator node at {other}; \
                     height ownership needs one name per validator node"
                )),
                _ => {}
            }
            if !chains.contains(v.chain_id.as_str()) {
                problems.push(format!(
                    "validator[{i}].chain_id: no [[chain]] has id {:?}",
                    v.chain_id
                ));
            }
            match v.addr.parse::<Address>() {
                Ok(Address::Tcp { .. }) if v.secret_key.is_none() => problems.push(format!(
                    "validator[{i}].secret_key: required for tcp:// addresses (the kms-identity.key)"
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!("validator[{i}].addr: {e}")),
            }
            if !addrs.insert((v.chain_id.as_str(), v.addr.as_str())) {
                problems.push(format!("validator[{i}].addr: {} is listed twice", v.addr));
            }
            if !(1024..=64 << 20).contains(&v.max_frame_bytes) {
                problems.push(format!(
                    "validator[{i}].max_frame_bytes: {} is outside 1024..=67108864",
                    v.max_frame_bytes
                ));
            }
            if !(100..=60_000).contains(&v.timeout_ms) {
                problems.push(format!(
                    "validator[{i}].timeout_ms: {} is outside 100..=60000",
                    v.timeout_ms
                ));
            }
            if !(100..=MAX_HANDSHAKE_TIMEOUT_MS).contains(&v.handshake_timeout_ms) {
                problems.push(format!(
                    "validator[{i}].handshake_timeout_ms: {} is outside 100..={MAX_HANDSHAKE_TIMEOUT_MS}",
                    v.handshake_timeout_ms
                ));
            }
        }
        // chain -> (its key's type, where the key is configured)
        let mut keyed: BTreeMap<String, (KeyType, String)> = BTreeMap::new();
        let mut claim =
            |chain: &str, key_type: KeyType, key: String, problems: &mut Vec<String>| {
                if !chains.contains(chain) {
                    problems.push(format!("{key}: no [[chain]] has id {chain:?}"));
                } else if keyed.contains_key(chain) {
                    problems.push(format!("{key}: chain {chain:?} already has a key"));
                } else {
                    keyed.insert(chain.to_string(), (key_type, key));
                }
            };
        for (i, s) in self.providers.softsign.iter().enumerate() {
            for chain in &s.chain_ids {
                claim(
                    chain,
                    s.key_type,
                    format!("providers.softsign[{i}].chain_ids"),
                    &mut problems,
                );
            }
        }
        for (i, y) in self.providers.yubihsm.iter().enumerate() {
            for (j, k) in y.keys.iter().enumerate() {
                for chain in &k.chain_ids {
                    claim(
                        chain,
                        k.key_type,
                        format!("providers.yubihsm[{i}].keys[{j}].chain_ids"),
                        &mut problems,
                    );
                }
            }
        }
        let mut modules = BTreeSet::new();
        for (i, p) in self.providers.pkcs11.iter().enumerate() {
            // A module is one library in the process: a second section
            // would initialise and, after a failure, finalise it under the
            // first one's sessions.
            if !modules.insert(p.module.as_path()) {
                problems.push(format!(
                    "providers.pkcs11[{i}].module: {} is already used by another [[providers.pkcs11]]; \
                     one section per module (two tokens of one module are not supported)",
                    p.module.display()
                ));
            }
            problems.extend(
                p.problems()
                    .into_iter()
                    .map(|problem| format!("providers.pkcs11[{i}].{problem}")),
            );
            for (j, k) in p.keys.iter().enumerate() {
                for chain in &k.chain_ids {
                    claim(
                        chain,
                        k.key_type,
                        format!("providers.pkcs11[{i}].keys[{j}].chain_ids"),
                        &mut problems,
                    );
                }
            }
        }
        for (i, c) in self.chain.iter().enumerate() {
            if c.mode == ChainMode::Threshold {
                if let Some((_, key)) = keyed.get(&c.id) {
                    problems.push(format!(
                        "{key}: chain {:?} is in threshold mode, where no node holds the whole key; \
                         remove it from there (chain[{i}].threshold.share_file is its key)",
                        c.id
                    ));
                }
                continue;
            }
            if !keyed.contains_key(&c.id) {
                problems.push(format!(
                    "providers: chain {:?} has no key (add it to a [[providers.softsign]], [[providers.yubihsm]] or [[providers.pkcs11]] chain_ids)",
                    c.id
                ));
            }
        }
        for (i, v) in self.validator.iter().enumerate() {
            if let Some((key_type, key)) = keyed.get(&v.chain_id)
                && !v.protocol_version.supports_key_type(*key_type)
            {
                problems.push(format!(
                    "validator[{i}].protocol_version: chain {:?} has a {key_type} key ({key}), \
                     which CometBFT {} cannot use; secp256k1 consensus keys need protocol_version = \"v1.0\"",
                    v.chain_id, v.protocol_version
                ));
            }
        }
        if let Some(cluster) = &self.cluster
            && let Err(more) = cluster.validate()
        {
            problems.extend(more.into_iter().map(|p| format!("cluster.{p}")));
        }
        if let Some(metrics) = &self.metrics {
            if metrics.listen.parse::<std::net::SocketAddr>().is_err() {
                problems.push(format!(
                    "metrics.listen: {:?} is not ip:port (e.g. 127.0.0.1:9100)",
                    metrics.listen
                ));
            } else if let Some(cluster) = &self.cluster
                && cluster.listen == metrics.listen
            {
                problems.push("metrics.listen: must differ from cluster.listen".to_string());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests;
