//! Software signing: an Ed25519 or secp256k1 key held in memory, loaded
//! from a file.
//!
//! Key files hold one line: base64 of the 32-byte secret (an Ed25519 seed,
//! as tmkms softsign writes them, or a secp256k1 scalar); for Ed25519,
//! base64 of the 64-byte seed || public key is also accepted. The file does
//! not say which type it holds: the config's `key_type` does.
//! Files are created 0600 and refused when group or others can read them.
//! No function here logs or formats secret bytes.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::{ConsensusSigner, Error, KeyType, PublicKey, secp256k1};

/// A consensus key in memory (ed25519-dalek or k256).
///
/// `Debug` shows only the public key.
pub struct SoftSigner {
    key: SoftKey,
}

enum SoftKey {
    Ed25519(SigningKey),
    Secp256k1(k256::ecdsa::SigningKey),
}

impl SoftSigner {
    /// The Ed25519 key for a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut seed = seed;
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        Self {
            key: SoftKey::Ed25519(key),
        }
    }

    /// The key of `key_type` for a 32-byte secret (an Ed25519 seed or a
    /// secp256k1 scalar).
    ///
    /// # Errors
    ///
    /// A secp256k1 scalar that is zero or not below the group order.
    pub fn from_secret(key_type: KeyType, secret: &[u8; 32]) -> Result<Self, Error> {
        match key_type {
            KeyType::Ed25519 => Ok(Self::from_seed(*secret)),
            KeyType::Secp256k1 => Ok(Self {
                key: SoftKey::Secp256k1(secp256k1::signing_key(secret)?),
            }),
        }
    }

    /// A fresh random Ed25519 key from the operating system's RNG.
    pub fn generate() -> Self {
        Self::generate_type(KeyType::Ed25519)
    }

    /// A fresh random key of `key_type` from the operating system's RNG.
    pub fn generate_type(key_type: KeyType) -> Self {
        let key = match key_type {
            KeyType::Ed25519 => SoftKey::Ed25519(SigningKey::generate(&mut rand_core::OsRng)),
            KeyType::Secp256k1 => SoftKey::Secp256k1(secp256k1::generate()),
        };
        Self { key }
    }

    /// Loads an Ed25519 key file (see the module doc for the format).
    ///
    /// # Errors
    ///
    /// When the file is readable by group or others, cannot be read, or
    /// does not hold a valid key. Messages name the file, never its content.
    pub fn load(path: &Path) -> Result<Self, Error> {
        Self::load_type(path, KeyType::Ed25519)
    }

    /// Loads a key file holding a key of `key_type`.
    ///
    /// # Errors
    ///
    /// As [`SoftSigner::load`].
    pub fn load_type(path: &Path, key_type: KeyType) -> Result<Self, Error> {
        let seed = read_seed_file(path)?;
        Self::from_secret(key_type, &seed)
            .map_err(|e| Error::Key(format!("invalid key file {}: {e}", path.display())))
    }

    /// The 32-byte secret (Ed25519 seed or secp256k1 scalar), for writing
    /// the key out. Zeroize the copy.
    pub fn seed(&self) -> [u8; 32] {
        match &self.key {
            SoftKey::Ed25519(key) => key.to_bytes(),
            SoftKey::Secp256k1(key) => *secp256k1::secret(key),
        }
    }

    /// Writes this key to a new key file (mode 0600).
    ///
    /// # Errors
    ///
    /// When the file exists or cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let mut seed = self.seed();
        let result = write_secret_file(path, encode_seed(&seed).as_bytes());
        seed.zeroize();
        result
    }

    /// The validator address bytes (for Ed25519 also the node id,
    /// `sha256(pub)[..20]`).
    pub fn address(&self) -> [u8; 20] {
        self.public_key().address()
    }
}

impl fmt::Debug for SoftSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftSigner")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl ConsensusSigner for SoftSigner {
    fn public_key(&self) -> PublicKey {
        match &self.key {
            SoftKey::Ed25519(key) => PublicKey::Ed25519(key.verifying_key().to_bytes()),
            SoftKey::Secp256k1(key) => PublicKey::Secp256k1(secp256k1::public_key(key)),
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Error> {
        Ok(match &self.key {
            SoftKey::Ed25519(key) => key.sign(msg).to_bytes(),
            SoftKey::Secp256k1(key) => secp256k1::sign(key, msg),
        })
    }
}

/// base64 of a seed plus a newline, the key file content.
pub fn encode_seed(seed: &[u8; 32]) -> Zeroizing<String> {
    let mut line = BASE64.encode(seed);
    line.push('\n');
    Zeroizing::new(line)
}

/// Reads a key file and returns its 32-byte seed.
///
/// Checks permissions first ([`check_permissions`]). Accepts base64 of a
/// 32-byte seed or of a 64-byte seed || public key; in the latter case the
/// public half must match the seed.
///
/// # Errors
///
/// As [`SoftSigner::load`].
pub fn read_seed_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, Error> {
    check_permissions(path)?;
    let text = Zeroizing::new(
        fs::read_to_string(path)
            .map_err(|e| Error::Key(format!("cannot read key file {}: {e}", path.display())))?,
    );
    decode_seed(text.trim())
        .map_err(|reason| Error::Key(format!("invalid key file {}: {reason}", path.display())))
}

/// Decodes base64 of a seed (32 bytes) or seed || public key (64 bytes).
fn decode_seed(text: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    let bytes = Zeroizing::new(
        BASE64
            .decode(text)
            .map_err(|_| "expected one line of base64".to_string())?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    match bytes.len() {
        32 => seed.copy_from_slice(&bytes),
        64 => {
            seed.copy_from_slice(&bytes[..32]);
            let derived = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
            if derived[..] != bytes[32..] {
                return Err(
                    "the public key half does not match the private key (corrupt keypair)".into(),
                );
            }
        }
        n => {
            return Err(format!(
                "expected a 32-byte seed or a 64-byte keypair, got {n} bytes"
            ));
        }
    }
    Ok(seed)
}

/// Creates `path` with `contents`, readable by the owner only (0600).
///
/// The mode is set when the file is created, so it is never briefly
/// readable by others. The data is fsync'd. An existing file is never
/// replaced: use [`overwrite_secret_file`] for that.
///
/// # Errors
///
/// When the file exists or cannot be written; a partial file is removed.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let mut file = create_private(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Key(format!(
                "{} already exists; refusing to overwrite a key file",
                path.display()
            ))
        } else {
            Error::Key(format!("cannot create {}: {e}", path.display()))
        }
    })?;
    if let Err(e) = file.write_all(contents).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(Error::Key(format!("cannot write {}: {e}", path.display())));
    }
    sync_parent(path);
    Ok(())
}

/// Replaces `path` atomically with a new 0600 file holding `contents`.
///
/// Writes a temporary file next to it (0600 from creation, fsync'd), then
/// renames it over `path`.
///
/// # Errors
///
/// When the temporary file cannot be written or renamed.
pub fn overwrite_secret_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let Some(name) = path.file_name() else {
        return Err(Error::Key(format!("{} is not a file path", path.display())));
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = fs::remove_file(&tmp);
    write_secret_file(&tmp, contents)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Key(format!(
            "cannot replace {}: {e}",
            path.display()
        )));
    }
    sync_parent(path);
    Ok(())
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Best effort: makes a new directory entry durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Refuses a key file that group or others may read or write.
///
/// # Errors
///
/// When the file cannot be inspected, or its mode has any group/other bit
/// set; the message names the file and the fix (`chmod 600`).
pub fn check_permissions(path: &Path) -> Result<(), Error> {
    let meta = fs::metadata(path)
        .map_err(|e| Error::Key(format!("cannot read key file {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Key(format!(
                "key file {} is accessible by group or others (mode {mode:03o}); \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// A CometBFT `priv_validator_key.json`.
#[derive(Deserialize)]
struct PrivValidatorKey {
    address: Option<String>,
    pub_key: TypedValue,
    priv_key: TypedValue,
}

#[derive(Deserialize)]
struct TypedValue {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

impl Drop for TypedValue {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

const ED25519_PUB: &str = "tendermint/PubKeyEd25519";
const ED25519_PRIV: &str = "tendermint/PrivKeyEd25519";
const SECP256K1_PUB: &str = "tendermint/PubKeySecp256k1";
const SECP256K1_PRIV: &str = "tendermint/PrivKeySecp256k1";

/// Reads a CometBFT `priv_validator_key.json` holding an Ed25519
/// (`tendermint/PrivKeyEd25519`) or a secp256k1
/// (`tendermint/PrivKeySecp256k1`) key.
///
/// Ed25519: `priv_key.value` is base64(seed || public key); secp256k1:
/// base64 of the 32-byte scalar. The public half, `pub_key.value` and
/// `address` (when present) must all match the private key.
///
/// # Errors
///
/// With a message saying which field is wrong; secret values are never
/// quoted.
pub fn import_priv_validator_key(json: &str) -> Result<SoftSigner, Error> {
    let bad = |reason: String| Error::Key(format!("invalid priv_validator_key.json: {reason}"));
    // serde_json's messages can quote values, so only its position is kept.
    let parsed: PrivValidatorKey = serde_json::from_str(json).map_err(|e| {
        bad(format!(
            "expected {{\"pub_key\": {{..}}, \"priv_key\": {{..}}}} ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let (key_type, pub_type) = match parsed.priv_key.kind.as_str() {
        ED25519_PRIV => (KeyType::Ed25519, ED25519_PUB),
        SECP256K1_PRIV => (KeyType::Secp256k1, SECP256K1_PUB),
        other => {
            return Err(bad(format!(
                "priv_key.type is {other:?}; only {ED25519_PRIV:?} and {SECP256K1_PRIV:?} are supported"
            )));
        }
    };
    if parsed.pub_key.kind != pub_type {
        return Err(bad(format!(
            "pub_key.type is {:?}; a {:?} private key goes with {pub_type:?}",
            parsed.pub_key.kind, parsed.priv_key.kind
        )));
    }
    let signer = match key_type {
        KeyType::Ed25519 => {
            let seed = decode_seed(parsed.priv_key.value.trim())
                .map_err(|reason| bad(format!("priv_key.value: {reason}")))?;
            SoftSigner::from_seed(*seed)
        }
        KeyType::Secp256k1 => {
            let bytes = Zeroizing::new(
                BASE64
                    .decode(parsed.priv_key.value.trim())
                    .map_err(|_| bad("priv_key.value is not base64".into()))?,
            );
            let secret: Zeroizing<[u8; 32]> =
                Zeroizing::new(bytes.as_slice().try_into().map_err(|_| {
                    bad(format!(
                        "priv_key.value: expected a 32-byte secp256k1 key, got {} bytes",
                        bytes.len()
                    ))
                })?);
            SoftSigner::from_secret(KeyType::Secp256k1, &secret)
                .map_err(|e| bad(format!("priv_key.value: {e}")))?
        }
    };
    let public = signer.public_key();
    let claimed = BASE64
        .decode(parsed.pub_key.value.trim())
        .map_err(|_| bad("pub_key.value is not base64".into()))?;
    if claimed[..] != *public.as_bytes() {
        return Err(bad(format!(
            "pub_key.value does not match priv_key (derived {})",
            BASE64.encode(public.as_bytes())
        )));
    }
    if let Some(address) = parsed.address {
        let expected = hex::encode_upper(signer.address());
        if !address.eq_ignore_ascii_case(&expected) {
            return Err(bad(format!(
                "address {address} does not match the key (expected {expected})"
            )));
        }
    }
    Ok(signer)
}

/// The `priv_validator_key.json` CometBFT would write for `signer`'s key.
/// The result holds the secret: write it 0600.
pub fn export_priv_validator_key(signer: &SoftSigner) -> Zeroizing<String> {
    let public = signer.public_key();
    let mut secret = Zeroizing::new(signer.seed().to_vec());
    let priv_type = match public {
        PublicKey::Ed25519(_) => {
            secret.extend_from_slice(public.as_bytes());
            ED25519_PRIV
        }
        PublicKey::Secp256k1(_) => SECP256K1_PRIV,
    };
    let value = Zeroizing::new(BASE64.encode(&*secret));
    Zeroizing::new(format!(
        "{{\n  \"address\": \"{}\",\n  \"pub_key\": {{\n    \"type\": \"{}\",\n    \"value\": \"{}\"\n  }},\n  \"priv_key\": {{\n    \"type\": \"{priv_type}\",\n    \"value\": \"{}\"\n  }}\n}}\n",
        hex::encode_upper(signer.address()),
        public.json_type(),
        BASE64.encode(public.as_bytes()),
        value.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_seed() {
        let signer = SoftSigner::from_seed([7u8; 32]);
        let debug = format!("{signer:?}");
        assert!(debug.contains(&hex::encode(signer.public_key().as_bytes())));
        assert!(!debug.contains(&hex::encode([7u8; 32])));
        assert!(!debug.contains(&BASE64.encode([7u8; 32])));
    }

    #[test]
    fn decodes_seed_and_keypair() {
        let signer = SoftSigner::from_seed([9u8; 32]);
        let mut pair = [0u8; 64];
        pair[..32].copy_from_slice(&[9u8; 32]);
        pair[32..].copy_from_slice(signer.public_key().as_bytes());
        assert_eq!(*decode_seed(&BASE64.encode([9u8; 32])).unwrap(), [9u8; 32]);
        assert_eq!(*decode_seed(&BASE64.encode(pair)).unwrap(), [9u8; 32]);
        pair[63] ^= 1;
        assert!(
            decode_seed(&BASE64.encode(pair))
                .unwrap_err()
                .contains("does not match")
        );
        assert!(
            decode_seed(&BASE64.encode([1u8; 31]))
                .unwrap_err()
                .contains("31 bytes")
        );
        assert!(decode_seed("not base64!").is_err());
    }

    #[test]
    fn signature_verifies() {
        let signer = SoftSigner::generate();
        let sig = signer.sign(b"hello").unwrap();
        let PublicKey::Ed25519(public) = signer.public_key() else {
            panic!("not ed25519");
        };
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        vk.verify_strict(b"hello", &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap();
    }

    /// A secp256k1 `priv_validator_key.json` as CometBFT writes it, for
    /// the key of its secp256k1 test table.
    const SECP_JSON: &str = r#"{
  "address": "7C2BB42A8BE69791EC763E51F5A49BCD41E82237",
  "pub_key": {
    "type": "tendermint/PubKeySecp256k1",
    "value": "ApUOHN/LEz1gJBCf1In3NO60UCQY5TjChIHyK84nbySM"
  },
  "priv_key": {
    "type": "tendermint/PrivKeySecp256k1",
    "value": "qW5i7TlV5lvjJwPxLYe2tc8mA57PqUjcUQeklUGOUzA="
  }
}"#;

    #[test]
    fn imports_and_exports_secp256k1_keys() {
        let signer = import_priv_validator_key(SECP_JSON).expect("import");
        assert_eq!(signer.public_key().key_type(), KeyType::Secp256k1);
        assert_eq!(
            hex::encode(signer.public_key().as_bytes()),
            "02950e1cdfcb133d6024109fd489f734eeb4502418e538c28481f22bce276f248c"
        );
        let exported = export_priv_validator_key(&signer);
        let again = import_priv_validator_key(&exported).expect("round trip");
        assert_eq!(again.seed(), signer.seed());
        let wrong_address = SECP_JSON.replace("7C2B", "7C2C");
        assert!(
            import_priv_validator_key(&wrong_address)
                .err()
                .unwrap()
                .to_string()
                .contains("does not match")
        );
        let mixed = SECP_JSON.replace("PubKeySecp256k1", "PubKeyEd25519");
        assert!(import_priv_validator_key(&mixed).is_err());
    }

    #[test]
    fn ed25519_export_round_trips() {
        let signer = SoftSigner::from_seed([3; 32]);
        let again = import_priv_validator_key(&export_priv_validator_key(&signer)).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
    }

    #[test]
    fn secp256k1_key_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let signer = SoftSigner::generate_type(KeyType::Secp256k1);
        signer.write(&path).unwrap();
        let loaded = SoftSigner::load_type(&path, KeyType::Secp256k1).unwrap();
        assert_eq!(loaded.public_key(), signer.public_key());
        let sig = loaded.sign(b"m").unwrap();
        assert!(signer.public_key().verify(b"m", &sig));
    }
}
