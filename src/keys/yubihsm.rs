//! YubiHSM 2 backend: the consensus key never leaves the device.
//!
//! The [`yubihsm::Client`] is a value built at startup from config (see
//! [`connect`]) and handed to [`YubiHsmSigner::new`]; there is no global
//! client. The key helpers (`generate_key`, `import_key`, `list_keys`,
//! `setup`) back the `quorumkms yubihsm` subcommands.
//!
//! Ed25519 keys sign with `sign_ed25519`; secp256k1 keys (CometBFT v1.0)
//! with ECDSA on the SHA-256 of the sign bytes, the device's DER answer
//! brought to CometBFT's 64-byte low-S form here. The device draws its own
//! ECDSA nonces, so those signatures are valid but not deterministic.

use std::fmt;
use std::sync::Mutex;

use yubihsm::asymmetric::Algorithm;
use yubihsm::object::{self, Filter, Label};
use yubihsm::{Capability, Client, Credentials, Domain};
use zeroize::Zeroize;

use sha2::{Digest as _, Sha256};

use super::{ConsensusSigner, Error, KeyType, PublicKey};

/// How to reach the HSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connector {
    /// USB (needs the crate feature `usb`), optionally a given serial number.
    Usb {
        /// The device serial number, when several are attached.
        serial: Option<String>,
    },
    /// The yubihsm-connector HTTP service.
    Http {
        /// Host or IP of yubihsm-connector.
        addr: String,
        /// Its port (usually 12345).
        port: u16,
    },
    /// yubihsm's in-process mock HSM (tests and debug builds only).
    #[cfg(any(feature = "mockhsm", test))]
    Mock,
}

impl fmt::Display for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connector::Usb { serial: None } => f.write_str("usb"),
            Connector::Usb { serial: Some(s) } => write!(f, "usb (serial {s})"),
            Connector::Http { addr, port } => write!(f, "http://{addr}:{port}"),
            #[cfg(any(feature = "mockhsm", test))]
            Connector::Mock => f.write_str("mockhsm"),
        }
    }
}

fn hsm_err(what: &str, e: impl fmt::Display) -> Error {
    Error::Key(format!("yubihsm: {what}: {e}"))
}

/// Builds the yubihsm connector for `connector`.
///
/// # Errors
///
/// When USB is asked for but the `usb` feature is off, or the serial
/// number is malformed.
pub fn connector(connector: &Connector) -> Result<yubihsm::Connector, Error> {
    match connector {
        #[cfg(feature = "usb")]
        Connector::Usb { serial } => {
            let serial = serial
                .as_deref()
                .map(str::parse::<yubihsm::device::SerialNumber>)
                .transpose()
                .map_err(|e| hsm_err("invalid serial number", e))?;
            Ok(yubihsm::Connector::usb(&yubihsm::UsbConfig {
                serial,
                ..Default::default()
            }))
        }
        #[cfg(not(feature = "usb"))]
        Connector::Usb { .. } => Err(Error::Key(
            "yubihsm: USB support is not built in (rebuild with --features usb, or use http)"
                .into(),
        )),
        Connector::Http { addr, port } => Ok(yubihsm::Connector::http(&yubihsm::HttpConfig {
            addr: addr.clone(),
            port: *port,
            ..Default::default()
        })),
        #[cfg(any(feature = "mockhsm", test))]
        Connector::Mock => Ok(yubihsm::Connector::mockhsm()),
    }
}

/// Opens an authenticated session with the HSM.
///
/// The client reconnects by itself when a session expires.
///
/// # Errors
///
/// When the device cannot be reached or authentication fails.
pub fn connect(connector: &Connector, auth_key_id: u16, password: &str) -> Result<Client, Error> {
    let credentials = Credentials::from_password(auth_key_id, password.as_bytes());
    let conn = self::connector(connector)?;
    Client::open(conn, credentials, true).map_err(|e| {
        hsm_err(
            &format!("cannot open a session via {connector} with auth key {auth_key_id}"),
            e,
        )
    })
}

/// A consensus key stored in a YubiHSM 2.
pub struct YubiHsmSigner {
    client: Mutex<Client>,
    key_id: u16,
    public_key: PublicKey,
}

impl YubiHsmSigner {
    /// Uses key `key_id` (Ed25519 or secp256k1) through `client`.
    ///
    /// # Errors
    ///
    /// When the key does not exist or is of another type.
    pub fn new(client: Client, key_id: u16) -> Result<Self, Error> {
        let public_key = typed_public_key(&client, key_id)?;
        Ok(Self {
            client: Mutex::new(client),
            key_id,
            public_key,
        })
    }

    /// The key's object id.
    pub fn key_id(&self) -> u16 {
        self.key_id
    }
}

impl fmt::Debug for YubiHsmSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YubiHsmSigner")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl ConsensusSigner for YubiHsmSigner {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Error> {
        let client = self
            .client
            .lock()
            .map_err(|_| Error::Signing("yubihsm client lock poisoned".into()))?;
        let failed =
            |e: yubihsm::client::Error| Error::Signing(format!("yubihsm key {}: {e}", self.key_id));
        match self.public_key {
            PublicKey::Ed25519(_) => Ok(client
                .sign_ed25519(self.key_id, msg)
                .map_err(failed)?
                .to_bytes()),
            PublicKey::Secp256k1(_) => {
                let der = client
                    .sign_ecdsa_prehash_raw(self.key_id, Sha256::digest(msg).to_vec())
                    .map_err(failed)?;
                let signature = k256::ecdsa::Signature::from_der(&der).map_err(|_| {
                    Error::Signing(format!(
                        "yubihsm key {}: malformed ECDSA signature",
                        self.key_id
                    ))
                })?;
                let signature = super::secp256k1::normalize(&signature.to_bytes())?;
                // A device that answers garbage must not reach the validator.
                if !self.public_key.verify(msg, &signature) {
                    return Err(Error::Signing(format!(
                        "yubihsm key {}: the signature does not verify",
                        self.key_id
                    )));
                }
                Ok(signature)
            }
        }
    }
}

/// The public key of object `key_id`, Ed25519 or secp256k1.
///
/// # Errors
///
/// When the key is missing or of another type.
pub fn typed_public_key(client: &Client, key_id: u16) -> Result<PublicKey, Error> {
    let pk = client
        .get_public_key(key_id)
        .map_err(|e| hsm_err(&format!("cannot read public key {key_id}"), e))?;
    decode_public_key(&pk).ok_or_else(|| {
        Error::Key(format!(
            "yubihsm: key {key_id} is neither Ed25519 nor secp256k1 ({:?})",
            pk.algorithm
        ))
    })
}

fn decode_public_key(pk: &yubihsm::asymmetric::PublicKey) -> Option<PublicKey> {
    match pk.algorithm {
        Algorithm::Ed25519 => pk.ed25519().map(|k| PublicKey::Ed25519(k.into_bytes())),
        Algorithm::EcK256 => {
            // The device gives x || y; SEC1 wants the 0x04 tag in front.
            let mut uncompressed = vec![0x04];
            uncompressed.extend_from_slice(pk.as_slice());
            let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&uncompressed).ok()?;
            PublicKey::from_type_and_bytes(
                KeyType::Secp256k1,
                key.to_encoded_point(true).as_bytes(),
            )
            .ok()
        }
        _ => None,
    }
}

/// The Ed25519 public key of object `key_id`.
///
/// # Errors
///
/// When the key is missing or not Ed25519.
pub fn public_key(client: &Client, key_id: u16) -> Result<[u8; 32], Error> {
    let pk = client
        .get_public_key(key_id)
        .map_err(|e| hsm_err(&format!("cannot read public key {key_id}"), e))?;
    pk.ed25519()
        .map(|k| k.into_bytes())
        .ok_or_else(|| Error::Key(format!("yubihsm: key {key_id} is not an Ed25519 key")))
}

/// Capabilities given to consensus keys: signing, and nothing that would
/// let the key be read back.
fn key_capabilities(key_type: KeyType) -> Capability {
    match key_type {
        KeyType::Ed25519 => Capability::SIGN_EDDSA,
        KeyType::Secp256k1 => Capability::SIGN_ECDSA,
    }
}

fn algorithm(key_type: KeyType) -> Algorithm {
    match key_type {
        KeyType::Ed25519 => Algorithm::Ed25519,
        KeyType::Secp256k1 => Algorithm::EcK256,
    }
}

fn label(text: &str) -> Result<Label, Error> {
    Label::from_bytes(text.as_bytes()).map_err(|e| hsm_err("invalid label (at most 40 bytes)", e))
}

/// Refuses an object id that already holds an asymmetric key (the device
/// would refuse too; this gives a clearer message).
fn ensure_free(client: &Client, key_id: u16) -> Result<(), Error> {
    match client.get_object_info(key_id, object::Type::AsymmetricKey) {
        Ok(_) => Err(Error::Key(format!(
            "yubihsm: key id {key_id} is already in use; pick another id"
        ))),
        Err(_) => Ok(()),
    }
}

/// Generates an Ed25519 key inside the HSM as object `key_id` and returns
/// its public key.
///
/// # Errors
///
/// When the id is taken or the device refuses.
pub fn generate_key(client: &Client, key_id: u16, label_text: &str) -> Result<[u8; 32], Error> {
    match generate_typed_key(client, key_id, label_text, KeyType::Ed25519)? {
        PublicKey::Ed25519(k) => Ok(k),
        PublicKey::Secp256k1(_) => Err(Error::Key("yubihsm: not an Ed25519 key".into())),
    }
}

/// Generates a key of `key_type` inside the HSM as object `key_id` and
/// returns its public key.
///
/// # Errors
///
/// When the id is taken or the device refuses.
pub fn generate_typed_key(
    client: &Client,
    key_id: u16,
    label_text: &str,
    key_type: KeyType,
) -> Result<PublicKey, Error> {
    ensure_free(client, key_id)?;
    client
        .generate_asymmetric_key(
            key_id,
            label(label_text)?,
            Domain::DOM1,
            key_capabilities(key_type),
            algorithm(key_type),
        )
        .map_err(|e| hsm_err(&format!("cannot generate key {key_id}"), e))?;
    typed_public_key(client, key_id)
}

/// Imports an Ed25519 seed as object `key_id` and returns its public key.
///
/// # Errors
///
/// When the id is taken or the device refuses.
pub fn import_key(
    client: &Client,
    key_id: u16,
    label_text: &str,
    seed: &[u8; 32],
) -> Result<[u8; 32], Error> {
    match import_typed_key(client, key_id, label_text, KeyType::Ed25519, seed)? {
        PublicKey::Ed25519(k) => Ok(k),
        PublicKey::Secp256k1(_) => Err(Error::Key("yubihsm: not an Ed25519 key".into())),
    }
}

/// Imports a 32-byte secret of `key_type` (an Ed25519 seed or a secp256k1
/// scalar) as object `key_id` and returns its public key.
///
/// # Errors
///
/// When the id is taken or the device refuses.
pub fn import_typed_key(
    client: &Client,
    key_id: u16,
    label_text: &str,
    key_type: KeyType,
    secret: &[u8; 32],
) -> Result<PublicKey, Error> {
    ensure_free(client, key_id)?;
    let mut bytes = secret.to_vec();
    let result = client.put_asymmetric_key(
        key_id,
        label(label_text)?,
        Domain::DOM1,
        key_capabilities(key_type),
        algorithm(key_type),
        bytes.clone(),
    );
    bytes.zeroize();
    result.map_err(|e| hsm_err(&format!("cannot import key {key_id}"), e))?;
    typed_public_key(client, key_id)
}

/// An Ed25519 or secp256k1 key found in the HSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Object id.
    pub key_id: u16,
    /// Object label.
    pub label: String,
    /// Public key.
    pub public_key: PublicKey,
}

/// Lists the Ed25519 and secp256k1 asymmetric keys visible to this
/// session, by id.
///
/// # Errors
///
/// When the device refuses.
pub fn list_keys(client: &Client) -> Result<Vec<KeyInfo>, Error> {
    let entries = client
        .list_objects(&[Filter::Type(object::Type::AsymmetricKey)])
        .map_err(|e| hsm_err("cannot list objects", e))?;
    let mut keys = Vec::new();
    for entry in entries {
        let pk = client
            .get_public_key(entry.object_id)
            .map_err(|e| hsm_err(&format!("cannot read public key {}", entry.object_id), e))?;
        let Some(public_key) = decode_public_key(&pk) else {
            continue;
        };
        let info = client
            .get_object_info(entry.object_id, object::Type::AsymmetricKey)
            .map_err(|e| hsm_err(&format!("cannot read object {}", entry.object_id), e))?;
        keys.push(KeyInfo {
            key_id: entry.object_id,
            label: info.label.to_string(),
            public_key,
        });
    }
    keys.sort_by_key(|k| k.key_id);
    Ok(keys)
}

/// Creates the authentication key quorumkms uses day to day.
///
/// The new key (id `auth_key_id`, derived from `password`) may generate,
/// import, list and sign with Ed25519 keys in domain 1, and nothing else.
/// With `delete_default`, the factory authentication key (id 1, password
/// "password") is deleted afterwards.
///
/// # Errors
///
/// When the id is taken or the device refuses.
pub fn setup(
    client: &Client,
    auth_key_id: u16,
    password: &str,
    delete_default: bool,
) -> Result<(), Error> {
    if delete_default && auth_key_id == yubihsm::authentication::DEFAULT_AUTHENTICATION_KEY_ID {
        return Err(Error::Key(
            "yubihsm: the new authentication key cannot replace the default key id 1".into(),
        ));
    }
    let caps = Capability::GENERATE_ASYMMETRIC_KEY
        | Capability::PUT_ASYMMETRIC_KEY
        | Capability::SIGN_EDDSA
        | Capability::SIGN_ECDSA
        | Capability::GET_OPTION;
    client
        .put_authentication_key(
            auth_key_id,
            label("quorumkms")?,
            Domain::DOM1,
            caps,
            key_capabilities(KeyType::Ed25519) | key_capabilities(KeyType::Secp256k1),
            yubihsm::authentication::Algorithm::default(),
            yubihsm::authentication::Key::derive_from_password(password.as_bytes()),
        )
        .map_err(|e| {
            hsm_err(
                &format!("cannot create authentication key {auth_key_id}"),
                e,
            )
        })?;
    if delete_default {
        client
            .delete_object(
                yubihsm::authentication::DEFAULT_AUTHENTICATION_KEY_ID,
                object::Type::AuthenticationKey,
            )
            .map_err(|e| hsm_err("cannot delete the default authentication key", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_authenticates() {
        let client = connect(&Connector::Mock, 1, "password").expect("default credentials");
        let pk = generate_key(&client, 1, "k").expect("generate");
        let signer = YubiHsmSigner::new(client, 1).expect("signer");
        assert_eq!(signer.public_key(), pk.into());
        let Err(err) = connect(&Connector::Mock, 1, "wrong") else {
            panic!("authenticated with a wrong password");
        };
        assert!(err.to_string().contains("auth key 1"), "{err}");
    }

    #[test]
    fn secp256k1_keys_sign_as_cometbft_verifies() {
        let client = connect(&Connector::Mock, 1, "password").expect("default credentials");
        let pk = generate_typed_key(&client, 3, "k1", KeyType::Secp256k1).expect("generate");
        assert_eq!(pk.key_type(), KeyType::Secp256k1);
        let soft = crate::keys::softsign::SoftSigner::generate_type(KeyType::Secp256k1);
        let imported = import_typed_key(&client, 4, "imported", KeyType::Secp256k1, &soft.seed())
            .expect("import");
        assert_eq!(imported, soft.public_key());
        for id in [3, 4] {
            let signer = YubiHsmSigner::new(client.clone(), id).expect("signer");
            for msg in [&b""[..], b"vote", &[9u8; 200][..]] {
                let sig = signer.sign(msg).expect("sign");
                assert!(
                    signer.public_key().verify(msg, &sig),
                    "low-S r||s over sha256"
                );
            }
        }
        let keys = list_keys(&client).expect("list");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].public_key, soft.public_key());
    }

    #[test]
    fn usb_without_the_feature_is_explained() {
        let result = connector(&Connector::Usb { serial: None });
        if cfg!(not(feature = "usb")) {
            let err = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("--features usb"), "{err}");
        }
    }
}
