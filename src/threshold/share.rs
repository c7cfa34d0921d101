//! One node's share of a chain's threshold key, and its file.
//!
//! The file is JSON, written 0600 and refused when group or others may
//! read it (as soft keys are). It holds the node's FROST key package (its
//! secret share), the group's public key package (every node's verifying
//! share, to check the shares it aggregates) and the group key itself,
//! which is the chain's validator key.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use frost_ed25519 as frost;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::softsign::{check_permissions, overwrite_secret_file, write_secret_file};
use crate::keys::{Error, PublicKey};

/// What the file says it is, so another JSON file is never read as one.
const FILE_TYPE: &str = "quorumkms/threshold-share";

/// A node's share of a chain's key.
#[derive(Clone, Debug)]
pub struct KeyShare {
    chain_id: String,
    node: u64,
    key_package: frost::keys::KeyPackage,
    public: frost::keys::PublicKeyPackage,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareFile {
    #[serde(rename = "type")]
    file_type: String,
    chain_id: String,
    node_id: u64,
    threshold: u16,
    shares: u16,
    /// Base64 of the group's Ed25519 public key (the validator's key).
    group_public_key: String,
    /// Hex of FROST's serialized key package (the secret share).
    key_package: String,
    /// Hex of FROST's serialized public key package.
    public_key_package: String,
}

impl KeyShare {
    /// A share from FROST's packages, checked to belong together.
    ///
    /// # Errors
    ///
    /// The key package is not `node`'s, or its verifying share or group key
    /// differ from the public package's.
    pub fn new(
        chain_id: &str,
        node: u64,
        key_package: frost::keys::KeyPackage,
        public: frost::keys::PublicKeyPackage,
    ) -> Result<KeyShare, String> {
        let id = super::identifier(node)?;
        if *key_package.identifier() != id {
            return Err(format!("the key package is not node {node}'s"));
        }
        if key_package.verifying_key() != public.verifying_key() {
            return Err("the key package's group key differs from the public package's".into());
        }
        if public.verifying_shares().get(&id) != Some(key_package.verifying_share()) {
            return Err(format!(
                "node {node}'s verifying share differs from the public package's"
            ));
        }
        let n = public.verifying_shares().len();
        super::check_threshold(
            *key_package.min_signers(),
            u16::try_from(n).map_err(|_| format!("{n} shares: at most 255"))?,
        )?;
        let share = KeyShare {
            chain_id: chain_id.to_string(),
            node,
            key_package,
            public,
        };
        share.group_key()?;
        Ok(share)
    }

    /// The chain the share signs for.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The node that holds it.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// How many shares a signature needs (t).
    pub fn threshold(&self) -> u16 {
        *self.key_package.min_signers()
    }

    /// How many shares there are (n).
    pub fn shares(&self) -> u16 {
        u16::try_from(self.public.verifying_shares().len()).unwrap_or(u16::MAX)
    }

    /// The node ids holding the shares, in order.
    pub fn holders(&self) -> Vec<u64> {
        self.public
            .verifying_shares()
            .keys()
            .filter_map(super::node_of)
            .collect()
    }

    /// The group's public key: the chain's validator key.
    ///
    /// # Errors
    ///
    /// The package holds no valid Ed25519 point (never, once constructed).
    pub fn group_key(&self) -> Result<PublicKey, String> {
        group_key(&self.public)
    }

    /// The secret share.
    pub fn key_package(&self) -> &frost::keys::KeyPackage {
        &self.key_package
    }

    /// Every node's verifying share and the group key.
    pub fn public_package(&self) -> &frost::keys::PublicKeyPackage {
        &self.public
    }

    /// Reads a share file, refusing one others may read.
    ///
    /// # Errors
    ///
    /// Loose permissions, unreadable or malformed file, packages that do not
    /// belong together, or a file for another chain than `chain_id` when
    /// one is given.
    pub fn load(path: &Path, chain_id: Option<&str>) -> Result<KeyShare, Error> {
        check_permissions(path)?;
        let bad = |reason: String| Error::Key(format!("share file {}: {reason}", path.display()));
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        let file: ShareFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let share = Self::from_file(&file).map_err(bad)?;
        if let Some(expected) = chain_id
            && expected != share.chain_id
        {
            return Err(bad(format!(
                "it is a share of chain {}, not of {expected}",
                share.chain_id
            )));
        }
        Ok(share)
    }

    fn from_file(file: &ShareFile) -> Result<KeyShare, String> {
        if file.file_type != FILE_TYPE {
            return Err(format!(
                "type is {:?}, expected {FILE_TYPE:?}",
                file.file_type
            ));
        }
        let key_bytes = Zeroizing::new(
            hex::decode(&file.key_package).map_err(|e| format!("key_package: {e}"))?,
        );
        let key_package = frost::keys::KeyPackage::deserialize(&key_bytes)
            .map_err(|e| format!("key_package: {e}"))?;
        let public_bytes = hex::decode(&file.public_key_package)
            .map_err(|e| format!("public_key_package: {e}"))?;
        let public = frost::keys::PublicKeyPackage::deserialize(&public_bytes)
            .map_err(|e| format!("public_key_package: {e}"))?;
        let share = KeyShare::new(&file.chain_id, file.node_id, key_package, public)?;
        if share.threshold() != file.threshold || share.shares() != file.shares {
            return Err(format!(
                "the file says {} of {}, its packages {} of {}",
                file.threshold,
                file.shares,
                share.threshold(),
                share.shares()
            ));
        }
        let group = BASE64.encode(share.group_key()?.as_bytes());
        if group != file.group_public_key {
            return Err(format!(
                "group_public_key {} is not the packages' group key {group}",
                file.group_public_key
            ));
        }
        Ok(share)
    }

    /// The file's contents (secret: zeroized when dropped).
    ///
    /// # Errors
    ///
    /// FROST cannot serialize a package (never for a constructed share).
    pub fn to_file(&self) -> Result<Zeroizing<String>, String> {
        let key = Zeroizing::new(
            self.key_package
                .serialize()
                .map_err(|e| format!("serialize key package: {e}"))?,
        );
        let public = self
            .public
            .serialize()
            .map_err(|e| format!("serialize public package: {e}"))?;
        let file = ShareFile {
            file_type: FILE_TYPE.to_string(),
            chain_id: self.chain_id.clone(),
            node_id: self.node,
            threshold: self.threshold(),
            shares: self.shares(),
            group_public_key: BASE64.encode(self.group_key()?.as_bytes()),
            key_package: hex::encode(&*key),
            public_key_package: hex::encode(public),
        };
        serde_json::to_string_pretty(&file)
            .map(Zeroizing::new)
            .map_err(|e| e.to_string())
    }

    /// Writes the share to a new 0600 file, fsync'd; refuses to replace
    /// one unless `overwrite`.
    ///
    /// # Errors
    ///
    /// The file exists (without `overwrite`) or cannot be written.
    pub fn write(&self, path: &Path, overwrite: bool) -> Result<(), Error> {
        let text = self.to_file().map_err(Error::Key)?;
        if overwrite {
            overwrite_secret_file(path, text.as_bytes())
        } else {
            write_secret_file(path, text.as_bytes())
        }
    }
}

/// The Ed25519 public key of a FROST group.
///
/// # Errors
///
/// The package's key does not serialize to a 32-byte Ed25519 key.
pub fn group_key(public: &frost::keys::PublicKeyPackage) -> Result<PublicKey, String> {
    let bytes = public
        .verifying_key()
        .serialize()
        .map_err(|e| format!("group key: {e}"))?;
    PublicKey::from_type_and_bytes(crate::keys::KeyType::Ed25519, &bytes)
}
