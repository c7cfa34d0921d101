//! PKCS#11 backend: consensus keys on any token with a PKCS#11 module
//! (network HSMs, the YubiHSM's PKCS#11 module, SoftHSM2).
//!
//! Ed25519 keys sign through `CKM_EDDSA` (pure Ed25519, deterministic: the
//! same signature as softsign for the same seed); secp256k1 keys through
//! `CKM_ECDSA` on the SHA-256 of the sign bytes, brought to CometBFT's
//! low-S form here. An HSM draws its own ECDSA nonces, so its secp256k1
//! signatures of one message differ from each other and from softsign's;
//! every one of them verifies.
//!
//! A [`Token`] is one `[[providers.pkcs11]]`: the module, the token (by
//! label or slot) and the user PIN. Each [`Pkcs11Signer`] keeps a small pool
//! of logged-in sessions so several chains and validators can sign at once.
//! A failed signature drops every pooled session and the module's
//! context: the error goes to the session, which closes the validator
//! connection (as with a failing YubiHSM), and the next signature starts
//! over with `C_Initialize`, the token lookup and `C_Login`, so the node
//! recovers by itself once the token is back.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{ConsensusSigner, Error, KeyType, PublicKey};

/// DER of the Ed25519 curve OID 1.3.101.112 (`CKA_EC_PARAMS`).
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the secp256k1 curve OID 1.3.132.0.10.
const SECP256K1_PARAMS: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

/// Which token of the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token whose label is this (trailing blanks ignored).
    Label(String),
    /// The slot with this id.
    Slot(u64),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(label) => write!(f, "token {label:?}"),
            TokenSelector::Slot(slot) => write!(f, "slot {slot}"),
        }
    }
}

/// A key on the token: by `CKA_LABEL` or by `CKA_ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// `CKA_LABEL`.
    Label(String),
    /// `CKA_ID` bytes.
    Id(Vec<u8>),
}

impl KeyRef {
    fn attribute(&self) -> Attribute {
        match self {
            KeyRef::Label(label) => Attribute::Label(label.as_bytes().to_vec()),
            KeyRef::Id(id) => Attribute::Id(id.clone()),
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRef::Label(label) => write!(f, "key {label:?}"),
            KeyRef::Id(id) => write!(f, "key id {}", hex::encode(id)),
        }
    }
}

/// A PKCS#11 error in a few words: the function and the return value.
fn ck(what: &str, e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{what}: {function:?} returned {rv:?}"),
        CkError::LibraryLoading(e) => format!("{what}: cannot load the module: {e}"),
        other => format!("{what}: {other}"),
    }
}

/// The module loaded and initialised, and the token's slot in it.
struct Context {
    pkcs11: Pkcs11,
    slot: Slot,
    /// Bumped on every new context, so sessions of an old one are dropped.
    generation: u64,
}

/// One token behind a PKCS#11 module, shared by the keys on it.
pub struct Token {
    module: PathBuf,
    selector: TokenSelector,
    pin: Zeroizing<String>,
    context: Mutex<Option<Arc<Context>>>,
    generations: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.module)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

/// Loads and initialises `module`.
fn load(module: &Path) -> Result<Pkcs11, String> {
    let pkcs11 =
        Pkcs11::new(module).map_err(|e| ck(&format!("pkcs11 module {}", module.display()), &e))?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(pkcs11),
        Err(e) => Err(ck(&format!("pkcs11 module {}", module.display()), &e)),
    }
}

/// The slot holding the token `selector` names.
fn find_slot(pkcs11: &Pkcs11, selector: &TokenSelector) -> Result<Slot, String> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| ck("cannot list slots", &e))?;
    match selector {
        TokenSelector::Slot(id) => slots
            .into_iter()
            .find(|s| s.id() == *id)
            .ok_or_else(|| format!("no token in slot {id}")),
        TokenSelector::Label(label) => {
            let mut found = Vec::new();
            for slot in slots {
                if let Ok(info) = pkcs11.get_token_info(slot)
                    && info.label().trim_end() == label
                {
                    found.push(slot);
                }
            }
            match found.as_slice() {
                [slot] => Ok(*slot),
                [] => Err(format!("no token labelled {label:?}")),
                _ => Err(format!(
                    "{} tokens are labelled {label:?}; name one by slot",
                    found.len()
                )),
            }
        }
    }
}

impl Token {
    /// A token of `module`. Nothing is opened until the first use.
    pub fn new(module: PathBuf, selector: TokenSelector, pin: Zeroizing<String>) -> Arc<Token> {
        Arc::new(Token {
            module,
            selector,
            pin,
            context: Mutex::new(None),
            generations: Mutex::new(0),
        })
    }

    fn name(&self) -> String {
        format!("pkcs11 {} of {}", self.selector, self.module.display())
    }

    /// The current context, making one when there is none.
    fn context(&self) -> Result<Arc<Context>, Error> {
        let mut current = lock(&self.context);
        if let Some(context) = &*current {
            return Ok(context.clone());
        }
        let pkcs11 = load(&self.module).map_err(Error::Signing)?;
        let slot = find_slot(&pkcs11, &self.selector)
            .map_err(|e| Error::Signing(format!("{}: {e}", self.name())))?;
        let generation = {
            let mut g = lock(&self.generations);
            *g += 1;
            *g
        };
        let context = Arc::new(Context {
            pkcs11,
            slot,
            generation,
        });
        *current = Some(context.clone());
        Ok(context)
    }

    /// Forgets context `generation` after a failure: the next use loads the
    /// module again and finds the token anew (a token that came back may
    /// sit in another slot, and some modules see a new token only after
    /// `C_Initialize`).
    fn reset(&self, generation: u64) {
        let mut current = lock(&self.context);
        if current.as_ref().is_some_and(|c| c.generation == generation)
            && let Some(old) = current.take()
        {
            // Finalising while another thread still signs on the old context
            // only makes that signature fail too, which resets nothing more.
            let _ = old.pkcs11.clone().finalize();
        }
    }

    /// Closes a session no longer wanted, if its context is still the
    /// current one. A session of a finalised context is only forgotten:
    /// `C_Finalize` closed it already, and closing its handle again could
    /// close a session of the new context that reuses the number.
    fn discard(&self, session: Session, generation: u64) {
        let current = lock(&self.context);
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            let _ = session.close();
        }
    }

    /// A new logged-in session. It is never closed on drop: see
    /// [`Token::discard`].
    fn session(&self, context: &Context) -> Result<Session, Error> {
        let session = context
            .pkcs11
            .open_ro_session_no_drop(context.slot)
            .map_err(|e| {
                Error::Signing(ck(&format!("{}: cannot open a session", self.name()), &e))
            })?;
        if let Err(e) = login(&session, &self.pin) {
            let _ = session.close();
            return Err(Error::Signing(format!("{}: {e}", self.name())));
        }
        Ok(session)
    }
}

/// Logs the user in (once per application, so an already logged-in
/// session is fine).
fn login(session: &Session, pin: &str) -> Result<(), String> {
    let pin = AuthPin::from(pin.to_string());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
            Err("the PIN is wrong (C_Login: CKR_PIN_INCORRECT)".into())
        }
        Err(e) => Err(ck("cannot log in", &e)),
    }
}

/// A logged-in session with the key's handle found in it.
struct Pooled {
    session: Session,
    key: ObjectHandle,
    generation: u64,
}

/// A consensus key on a PKCS#11 token.
pub struct Pkcs11Signer {
    token: Arc<Token>,
    key: KeyRef,
    public_key: PublicKey,
    pool: Mutex<Vec<Pooled>>,
    pool_size: usize,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("token", &self.token)
            .field("key", &self.key)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Uses `key` (of `key_type`) on `token`, keeping up to `pool_size`
    /// sessions open. Opens one session now, so a wrong PIN, a missing
    /// token or key, or a key of another type is reported at start.
    ///
    /// # Errors
    ///
    /// When the module cannot be loaded, the token or key is not there, the
    /// PIN is refused, or the key is not of `key_type`.
    pub fn new(
        token: Arc<Token>,
        key: KeyRef,
        key_type: KeyType,
        pool_size: usize,
    ) -> Result<Self, Error> {
        let as_key = |e: Error| match e {
            Error::Signing(m) | Error::Key(m) => Error::Key(m),
        };
        let context = token.context().map_err(as_key)?;
        let session = token.session(&context).map_err(as_key)?;
        let public_key = read_public_key(&session, &key)
            .map_err(|e| Error::Key(format!("{}: {e}", token.name())))?;
        if public_key.key_type() != key_type {
            return Err(Error::Key(format!(
                "{}: {key} is a {} key, but the config says {key_type}",
                token.name(),
                public_key.key_type()
            )));
        }
        let handle = find_private(&session, &key)
            .map_err(|e| Error::Key(format!("{}: {e}", token.name())))?;
        let signer = Self {
            token,
            key,
            public_key,
            pool: Mutex::new(Vec::new()),
            pool_size: pool_size.max(1),
        };
        lock(&signer.pool).push(Pooled {
            session,
            key: handle,
            generation: context.generation,
        });
        Ok(signer)
    }

    /// A pooled session of the current context, or a new one.
    fn take(&self) -> Result<Pooled, Error> {
        let context = self.token.context()?;
        {
            let mut pool = lock(&self.pool);
            pool.retain(|p| p.generation == context.generation);
            if let Some(pooled) = pool.pop() {
                return Ok(pooled);
            }
        }
        let session = match self.token.session(&context) {
            Ok(session) => session,
            Err(e) => {
                self.token.reset(context.generation);
                return Err(e);
            }
        };
        match find_private(&session, &self.key) {
            Ok(key) => Ok(Pooled {
                session,
                key,
                generation: context.generation,
            }),
            Err(e) => {
                self.token.reset(context.generation);
                Err(Error::Signing(format!("{}: {e}", self.token.name())))
            }
        }
    }

    fn sign_with(&self, pooled: &Pooled, msg: &[u8]) -> Result<[u8; 64], String> {
        sign_on(&pooled.session, pooled.key, &self.key, self.public_key, msg)
    }
}

/// Signs `msg` with the private key `handle` (named `key`, whose public key
/// is `public_key`): `CKM_EDDSA` on the message, or `CKM_ECDSA` on its
/// SHA-256 then low-S. Checks the result before anyone sees it.
fn sign_on(
    session: &Session,
    handle: ObjectHandle,
    key: &KeyRef,
    public_key: PublicKey,
    msg: &[u8],
) -> Result<[u8; 64], String> {
    let signature = match public_key.key_type() {
        KeyType::Ed25519 => session.sign(
            &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Ed25519)),
            handle,
            msg,
        ),
        KeyType::Secp256k1 => session.sign(&Mechanism::Ecdsa, handle, &Sha256::digest(msg)),
    }
    .map_err(|e| ck(&format!("{key}: cannot sign"), &e))?;
    let signature = match public_key.key_type() {
        KeyType::Ed25519 => <[u8; 64]>::try_from(signature.as_slice())
            .map_err(|_| format!("EdDSA signature of {} bytes", signature.len()))?,
        KeyType::Secp256k1 => super::secp256k1::normalize(&signature).map_err(|e| e.to_string())?,
    };
    // A token that answers garbage must not reach the validator.
    if !public_key.verify(msg, &signature) {
        return Err(format!("{key}: the token's signature does not verify"));
    }
    Ok(signature)
}

impl ConsensusSigner for Pkcs11Signer {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Error> {
        let pooled = self.take()?;
        match self.sign_with(&pooled, msg) {
            Ok(signature) => {
                let mut pool = lock(&self.pool);
                if pool.len() < self.pool_size {
                    pool.push(pooled);
                } else {
                    drop(pool);
                    self.token.discard(pooled.session, pooled.generation);
                }
                Ok(signature)
            }
            Err(e) => {
                // Finalising closes every session of the context, these
                // and the pooled ones, which are then only forgotten.
                self.token.reset(pooled.generation);
                drop(pooled);
                lock(&self.pool).clear();
                Err(Error::Signing(format!("{}: {e}", self.token.name())))
            }
        }
    }
}

fn find_one(session: &Session, class: ObjectClass, key: &KeyRef) -> Result<ObjectHandle, String> {
    let found = session
        .find_objects(&[Attribute::Class(class), key.attribute()])
        .map_err(|e| ck(&format!("cannot look up {key}"), &e))?;
    let what = if class == ObjectClass::PRIVATE_KEY {
        "private"
    } else {
        "public"
    };
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no {what} {key} on the token")),
        more => Err(format!(
            "{} {what} keys match {key}; give each key its own label or id",
            more.len()
        )),
    }
}

fn find_private(session: &Session, key: &KeyRef) -> Result<ObjectHandle, String> {
    find_one(session, ObjectClass::PRIVATE_KEY, key)
}

/// The public key of `key`, from its public key object.
fn read_public_key(session: &Session, key: &KeyRef) -> Result<PublicKey, String> {
    let handle = find_one(session, ObjectClass::PUBLIC_KEY, key)?;
    public_key_of(session, handle).map_err(|e| format!("{key}: {e}"))
}

fn public_key_of(session: &Session, handle: ObjectHandle) -> Result<PublicKey, String> {
    let attributes = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(|e| ck("cannot read the public key", &e))?;
    let mut kind = None;
    let mut params = None;
    let mut point = None;
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(k) => kind = Some(k),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let (Some(kind), Some(params), Some(point)) = (kind, params, point) else {
        return Err("not an elliptic-curve key".into());
    };
    let point = unwrap_octet_string(&point);
    if kind == CkKeyType::EC_EDWARDS && is_ed25519(&params) {
        PublicKey::from_type_and_bytes(KeyType::Ed25519, point)
    } else if kind == CkKeyType::EC && params == SECP256K1_PARAMS {
        let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| "the secp256k1 point does not decode".to_string())?;
        let compressed = key.to_encoded_point(true);
        PublicKey::from_type_and_bytes(KeyType::Secp256k1, compressed.as_bytes())
    } else {
        Err(format!(
            "unsupported key (type {kind}, curve parameters {})",
            hex::encode(&params)
        ))
    }
}

/// Ed25519 by OID, or by one of the curve names (PrintableString) some
/// tokens write instead.
fn is_ed25519(params: &[u8]) -> bool {
    params == ED25519_PARAMS || params == b"\x13\x0cedwards25519" || params == b"\x13\x07Ed25519"
}

/// `CKA_EC_POINT` is a DER OCTET STRING holding the point; a few tokens
/// give the bare point.
fn unwrap_octet_string(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => rest,
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => bytes,
    }
}

fn octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    if bytes.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
    out
}

fn curve_params(key_type: KeyType) -> Vec<u8> {
    match key_type {
        KeyType::Ed25519 => ED25519_PARAMS.to_vec(),
        KeyType::Secp256k1 => SECP256K1_PARAMS.to_vec(),
    }
}

fn ck_key_type(key_type: KeyType) -> CkKeyType {
    match key_type {
        KeyType::Ed25519 => CkKeyType::EC_EDWARDS,
        KeyType::Secp256k1 => CkKeyType::EC,
    }
}

/// An administrator's read-write session on a token, for the
/// `quorumkms pkcs11` subcommands.
pub struct Admin {
    session: Session,
    // Kept for finalising when done.
    pkcs11: Pkcs11,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// One slot, for `pkcs11 slots`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot id.
    pub id: u64,
    /// Token label, or `None` when the slot holds no token.
    pub token_label: Option<String>,
    /// Token manufacturer, model and serial number.
    pub token: String,
    /// Whether the token can sign with Ed25519 (`CKM_EDDSA`) and with
    /// ECDSA (`CKM_ECDSA`).
    pub eddsa: bool,
    /// See `eddsa`.
    pub ecdsa: bool,
}

/// Lists the module's slots.
///
/// # Errors
///
/// When the module cannot be loaded.
pub fn list_slots(module: &Path) -> Result<Vec<SlotInfo>, Error> {
    let pkcs11 = load(module).map_err(Error::Key)?;
    let slots = pkcs11
        .get_all_slots()
        .map_err(|e| Error::Key(ck("cannot list slots", &e)))?;
    let mut out = Vec::new();
    for slot in slots {
        let token = pkcs11.get_token_info(slot).ok();
        // Asking for the two mechanisms alone: a whole mechanism list makes
        // cryptoki log every vendor mechanism it does not know.
        let has = |m| pkcs11.get_mechanism_info(slot, m).is_ok();
        out.push(SlotInfo {
            id: slot.id(),
            token_label: token.as_ref().map(|t| t.label().trim_end().to_string()),
            token: token.map_or_else(String::new, |t| {
                format!(
                    "{} {} (serial {})",
                    t.manufacturer_id().trim_end(),
                    t.model().trim_end(),
                    t.serial_number().trim_end()
                )
            }),
            eddsa: has(cryptoki::mechanism::MechanismType::EDDSA),
            ecdsa: has(cryptoki::mechanism::MechanismType::ECDSA),
        });
    }
    let _ = pkcs11.finalize();
    Ok(out)
}

/// A key found on a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id: String,
    /// The public key.
    pub public_key: PublicKey,
}

impl Admin {
    /// Opens a read-write session on the token and logs in.
    ///
    /// # Errors
    ///
    /// When the module, the token or the login fails.
    pub fn open(module: &Path, selector: &TokenSelector, pin: &str) -> Result<Admin, Error> {
        let pkcs11 = load(module).map_err(Error::Key)?;
        let slot = find_slot(&pkcs11, selector).map_err(Error::Key)?;
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(|e| Error::Key(ck("cannot open a session", &e)))?;
        login(&session, pin).map_err(Error::Key)?;
        Ok(Admin { session, pkcs11 })
    }

    /// Ends the session and finalises the module.
    pub fn close(self) {
        drop(self.session);
        let _ = self.pkcs11.finalize();
    }

    fn ensure_free(&self, key: &KeyRef) -> Result<(), Error> {
        let found = self
            .session
            .find_objects(&[key.attribute()])
            .map_err(|e| Error::Key(ck("cannot search the token", &e)))?;
        if found.is_empty() {
            Ok(())
        } else {
            Err(Error::Key(format!(
                "{key} is already on the token; pick another label or id"
            )))
        }
    }

    fn templates(key_type: KeyType, label: &str, id: &[u8]) -> (Vec<Attribute>, Vec<Attribute>) {
        let public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(curve_params(key_type)),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        (public, private)
    }

    /// Generates a key pair on the token: the private key is sensitive and
    /// not extractable. Returns its public key.
    ///
    /// # Errors
    ///
    /// When the label or id is taken, or the token refuses (e.g. no
    /// secp256k1 support).
    pub fn generate(&self, key_type: KeyType, label: &str, id: &[u8]) -> Result<PublicKey, Error> {
        self.ensure_free(&KeyRef::Label(label.to_string()))?;
        self.ensure_free(&KeyRef::Id(id.to_vec()))?;
        let (public, private) = Self::templates(key_type, label, id);
        let mechanism = match key_type {
            KeyType::Ed25519 => Mechanism::EccEdwardsKeyPairGen,
            KeyType::Secp256k1 => Mechanism::EccKeyPairGen,
        };
        let (handle, _) = self
            .session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| Error::Key(ck(&format!("cannot generate a {key_type} key"), &e)))?;
        public_key_of(&self.session, handle).map_err(Error::Key)
    }

    /// Imports a soft key (its 32-byte secret) as a sensitive,
    /// non-extractable private key plus its public key object.
    ///
    /// # Errors
    ///
    /// When the label or id is taken, or the token refuses the import (many
    /// network HSMs accept keys only wrapped, or not at all).
    pub fn import(
        &self,
        signer: &super::softsign::SoftSigner,
        label: &str,
        id: &[u8],
    ) -> Result<PublicKey, Error> {
        self.ensure_free(&KeyRef::Label(label.to_string()))?;
        self.ensure_free(&KeyRef::Id(id.to_vec()))?;
        let public_key = signer.public_key();
        let key_type = public_key.key_type();
        let (mut public, mut private) = Self::templates(key_type, label, id);
        let point = match public_key {
            PublicKey::Ed25519(k) => k.to_vec(),
            PublicKey::Secp256k1(k) => k256::ecdsa::VerifyingKey::from_sec1_bytes(&k)
                .map_err(|_| Error::Key("bad secp256k1 public key".into()))?
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
        };
        public.extend([
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(ck_key_type(key_type)),
            Attribute::EcPoint(octet_string(&point)),
        ]);
        let secret = Zeroizing::new(signer.seed().to_vec());
        private.extend([
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(ck_key_type(key_type)),
            Attribute::EcParams(curve_params(key_type)),
            Attribute::Value(secret.to_vec()),
        ]);
        let created = self
            .session
            .create_object(&private)
            .map_err(|e| Error::Key(ck("the token refused the private key", &e)));
        // The attribute copy of the secret goes with the template.
        drop(private);
        let private_handle = created?;
        if let Err(e) = self.session.create_object(&public) {
            let _ = self.session.destroy_object(private_handle);
            return Err(Error::Key(ck("the token refused the public key", &e)));
        }
        Ok(public_key)
    }

    /// Signs `msg` with `key` as a running node would, and checks the
    /// signature against `public_key`.
    ///
    /// # Errors
    ///
    /// When the key is missing or the token fails or answers garbage.
    pub fn sign(&self, key: &KeyRef, public_key: PublicKey, msg: &[u8]) -> Result<[u8; 64], Error> {
        let handle = find_private(&self.session, key).map_err(Error::Key)?;
        sign_on(&self.session, handle, key, public_key, msg).map_err(Error::Signing)
    }

    /// The public key of `key`.
    ///
    /// # Errors
    ///
    /// When the key is missing or of an unsupported type.
    pub fn public_key(&self, key: &KeyRef) -> Result<PublicKey, Error> {
        read_public_key(&self.session, key).map_err(Error::Key)
    }

    /// Ed25519 and secp256k1 public keys on the token.
    ///
    /// # Errors
    ///
    /// When the token refuses the search.
    pub fn list(&self) -> Result<Vec<KeyInfo>, Error> {
        let handles = self
            .session
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
            .map_err(|e| Error::Key(ck("cannot list keys", &e)))?;
        let mut keys = Vec::new();
        for handle in handles {
            let Ok(public_key) = public_key_of(&self.session, handle) else {
                continue;
            };
            let attributes = self
                .session
                .get_attributes(handle, &[AttributeType::Label, AttributeType::Id])
                .unwrap_or_default();
            let mut info = KeyInfo {
                label: String::new(),
                id: String::new(),
                public_key,
            };
            for attribute in attributes {
                match attribute {
                    Attribute::Label(l) => info.label = String::from_utf8_lossy(&l).into_owned(),
                    Attribute::Id(i) => info.id = hex::encode(i),
                    _ => {}
                }
            }
            keys.push(info);
        }
        keys.sort_by(|a, b| a.label.cmp(&b.label).then(a.id.cmp(&b.id)));
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_strings_round_trip() {
        let point = [7u8; 65];
        assert_eq!(unwrap_octet_string(&octet_string(&point)), &point[..]);
        let short = [1u8; 32];
        assert_eq!(unwrap_octet_string(&octet_string(&short)), &short[..]);
        assert_eq!(unwrap_octet_string(&short), &short[..]);
    }

    #[test]
    fn a_missing_module_is_a_clear_key_error() {
        let token = Token::new(
            PathBuf::from("/nonexistent/libpkcs11.so"),
            TokenSelector::Label("t".into()),
            Zeroizing::new("1234".into()),
        );
        let err = Pkcs11Signer::new(token, KeyRef::Label("k".into()), KeyType::Ed25519, 2)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/libpkcs11.so"), "{err}");
        assert!(err.contains("cannot load the module"), "{err}");
    }
}
