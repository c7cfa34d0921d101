//! Threshold mode: a chain's Ed25519 key split t-of-n with FROST, so that
//! no node ever holds the whole key.
//!
//! The Raft watermark stops a correct node from double signing; it does
//! not stop a compromised host from asking its own key to sign anything.
//! In threshold mode a node holds one share ([`KeyShare`]), a signature
//! needs `t` shares, and every node answers a share request only for bytes
//! its own applied Raft state has granted (the cluster's `cosign` service
//! checks that before it calls [`Participant::sign`]). A compromised node
//! can then neither sign alone nor obtain shares for anything the majority
//! has not committed.
//!
//! - `share`: one node's share and its file (0600).
//! - `dealer`: splitting an existing key into shares (migration from a
//!   single key).
//! - `dkg`: distributed key generation, for new keys no host ever holds.
//! - `local`: a signature from shares held in one process (the CLI's
//!   test signature).
//! - `participant`: a node's side of a signature: fresh nonces per
//!   signature, kept in memory only and used once.
//! - `coordinator`: the serving node's side: collect commitments and
//!   shares from `t` nodes through the [`Cosigner`] seam, aggregate, and
//!   verify the result before it leaves.
//!
//! FROST signatures take fresh nonces, so a repeat request for the same
//! granted bytes may get a different valid signature, where FilePV hands
//! back the same one. That is safe: CometBFT's double-sign evidence
//! compares the block ids two votes sign at one height, round and step,
//! never their signatures, and the bytes signed are still the granted ones.

use frost_ed25519 as frost;

pub mod coordinator;
pub mod dealer;
pub mod dkg;
pub mod local;
pub mod participant;
pub mod share;

pub use coordinator::{CosignError, Cosigner, SignError};
pub use local::sign_with_shares;
pub use participant::{Participant, ShareError};
pub use share::KeyShare;

/// A chain's key in threshold mode, as a session sees it: the group key,
/// and signatures that take `t` nodes' shares.
pub trait GroupSigner: Send + Sync + std::fmt::Debug {
    /// The group key (the chain's validator key); `None` while this node
    /// has no share yet (before the key generation).
    fn public_key(&self) -> Option<crate::keys::PublicKey>;

    /// Signs `msg`, which a committed grant must already cover on every
    /// node that gives a share.
    fn sign<'a>(
        &'a self,
        msg: &'a [u8],
    ) -> futures_util::future::BoxFuture<'a, Result<[u8; 64], SignError>>;
}

/// The FROST identifier of a cluster node: its node id (1..=65535).
///
/// # Errors
///
/// Node id 0 or above 65535.
pub fn identifier(node: u64) -> Result<frost::Identifier, String> {
    u16::try_from(node)
        .ok()
        .and_then(|id| frost::Identifier::try_from(id).ok())
        .ok_or_else(|| format!("node id {node} cannot hold a share: it must be 1..=65535"))
}

/// The node id an identifier was made from by [`identifier`], if it was.
pub fn node_of(id: &frost::Identifier) -> Option<u64> {
    // Identifiers serialize as little-endian scalars.
    let bytes = id.serialize();
    let (low, high) = bytes.split_at(2);
    high.iter()
        .all(|b| *b == 0)
        .then(|| u64::from(u16::from_le_bytes([low[0], low[1]])))
        .filter(|node| *node != 0)
}

/// Checks `t` of `n`: at least two shares must sign (one would be the
/// whole key again), and no more than there are.
///
/// # Errors
///
/// A threshold below 2 or above `n`, or `n` above 255.
pub fn check_threshold(t: u16, n: u16) -> Result<(), String> {
    if t < 2 {
        return Err(format!(
            "threshold {t}: at least 2 shares must sign (with 1, every share is the whole key)"
        ));
    }
    if t > n {
        return Err(format!("threshold {t} is more than the {n} shares"));
    }
    if n > 255 {
        return Err(format!("{n} shares: at most 255"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
