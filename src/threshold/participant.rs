//! A node's side of a threshold signature: round 1 commits to fresh
//! nonces, round 2 signs with them once.
//!
//! Nonces live in memory only, so a restart can never reuse one: it
//! forgets them, and the signing session they belonged to fails and starts
//! over with new ones. Each is removed from the book before it is used,
//! whatever the outcome, so a session signs at most once. The book is
//! bounded: a caller that opens sessions and never finishes them pushes out
//! the oldest, never grows memory.
//!
//! Whether the bytes may be signed at all is the caller's question: the
//! cluster's `cosign` service asks its own applied Raft state before it
//! calls [`Participant::sign`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use frost_ed25519 as frost;
use rand_core::{CryptoRng, OsRng, RngCore};

use super::KeyShare;

/// Signing sessions a node keeps open at once. A session lives from round
/// 1 to round 2, a few milliseconds; this leaves room for many chains'
/// grants at once and for coordinators that asked more nodes than they
/// needed.
pub const MAX_OPEN_SESSIONS: usize = 1024;

/// Why a node gives no share.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The node holds no share of the chain.
    #[error("no share of chain {0} on this node")]
    UnknownChain(String),
    /// The session is unknown: never opened here, already used, pushed out,
    /// or lost in a restart.
    #[error("signing session {0} is unknown here (used, expired, or lost in a restart)")]
    UnknownSession(u64),
    /// The session was opened for another chain.
    #[error("signing session {session} was opened for chain {opened}, not {asked}")]
    WrongChain {
        /// The session.
        session: u64,
        /// The chain it was opened for.
        opened: String,
        /// The chain asked for.
        asked: String,
    },
    /// The signing package does not decode.
    #[error("malformed signing package: {0}")]
    Malformed(String),
    /// The bytes are not granted by this node's applied state.
    #[error("not granted here: {0}")]
    NotGranted(String),
    /// FROST refused to sign (the package lacks this node's commitment).
    #[error("cannot sign: {0}")]
    Frost(String),
}

/// Round 1's answer: the session to sign in, and the public commitments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commitment {
    /// The session, named in round 2.
    pub session: u64,
    /// FROST's serialized signing commitments.
    pub commitments: Vec<u8>,
}

struct Open {
    session: u64,
    chain_id: String,
    nonces: frost::round1::SigningNonces,
}

/// A node's shares and its open signing sessions.
pub struct Participant {
    shares: RwLock<BTreeMap<String, Arc<KeyShare>>>,
    open: Mutex<VecDeque<Open>>,
    rng: Mutex<Box<dyn RngSource>>,
}

/// A source of randomness for nonces and session ids: the OS, or a seeded
/// one in the simulation.
pub trait RngSource: RngCore + CryptoRng + Send {}
impl<R: RngCore + CryptoRng + Send> RngSource for R {}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("chains", &self.chains())
            .finish_non_exhaustive()
    }
}

impl Participant {
    /// A participant holding `shares`, drawing nonces from the OS.
    pub fn new(shares: impl IntoIterator<Item = KeyShare>) -> Participant {
        Participant::with_rng(shares, Box::new(OsRng))
    }

    /// A participant drawing nonces from `rng` (seeded in the simulation
    /// only: nonces must be unpredictable).
    pub fn with_rng(
        shares: impl IntoIterator<Item = KeyShare>,
        rng: Box<dyn RngSource>,
    ) -> Participant {
        Participant {
            shares: RwLock::new(
                shares
                    .into_iter()
                    .map(|share| (share.chain_id().to_string(), Arc::new(share)))
                    .collect(),
            ),
            open: Mutex::new(VecDeque::new()),
            rng: Mutex::new(rng),
        }
    }

    /// This node's share of `chain_id`, if it holds one.
    pub fn share(&self, chain_id: &str) -> Option<Arc<KeyShare>> {
        self.read().get(chain_id).cloned()
    }

    /// The chains this node holds shares of.
    pub fn chains(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Takes a new share (from a key generation), replacing any older one
    /// of its chain.
    pub fn install(&self, share: KeyShare) {
        let mut shares = self.shares.write().unwrap_or_else(|e| e.into_inner());
        shares.insert(share.chain_id().to_string(), Arc::new(share));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<KeyShare>>> {
        self.shares.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Round 1: opens a session with fresh nonces.
    ///
    /// # Errors
    ///
    /// No share of `chain_id` here.
    pub fn commit(&self, chain_id: &str) -> Result<Commitment, ShareError> {
        let share = self
            .share(chain_id)
            .ok_or_else(|| ShareError::UnknownChain(chain_id.to_string()))?;
        let (session, nonces, commitments) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let (nonces, commitments) =
                frost::round1::commit(share.key_package().signing_share(), &mut *rng);
            (rng.next_u64(), nonces, commitments)
        };
        let commitments = commitments
            .serialize()
            .map_err(|e| ShareError::Frost(e.to_string()))?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= MAX_OPEN_SESSIONS {
            open.pop_front();
        }
        open.push_back(Open {
            session,
            chain_id: chain_id.to_string(),
            nonces,
        });
        Ok(Commitment {
            session,
            commitments,
        })
    }

    /// Round 2: signs `package` with the session's nonces, which are gone
    /// afterwards whatever happens. The caller has checked that the
    /// package's message is granted.
    ///
    /// # Errors
    ///
    /// An unknown session, one opened for another chain, or a package
    /// without this session's commitment.
    pub fn sign(
        &self,
        chain_id: &str,
        session: u64,
        package: &frost::SigningPackage,
    ) -> Result<Vec<u8>, ShareError> {
        let open = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let at = open
                .iter()
                .position(|o| o.session == session)
                .ok_or(ShareError::UnknownSession(session))?;
            open.remove(at).ok_or(ShareError::UnknownSession(session))?
        };
        if open.chain_id != chain_id {
            return Err(ShareError::WrongChain {
                session,
                opened: open.chain_id,
                asked: chain_id.to_string(),
            });
        }
        let share = self
            .share(chain_id)
            .ok_or_else(|| ShareError::UnknownChain(chain_id.to_string()))?;
        let signature = frost::round2::sign(package, &open.nonces, share.key_package())
            .map_err(|e| ShareError::Frost(e.to_string()))?;
        Ok(signature.serialize())
    }

    /// Drops `session`'s nonces unused (a refused request).
    pub fn forget(&self, session: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|o| o.session != session);
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Decodes a signing package from the wire.
///
/// # Errors
///
/// Bytes that are not one.
pub fn decode_package(bytes: &[u8]) -> Result<frost::SigningPackage, ShareError> {
    frost::SigningPackage::deserialize(bytes).map_err(|e| ShareError::Malformed(e.to_string()))
}
