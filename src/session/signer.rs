//! How a session signs what its grant allows: with the whole key on this
//! node, or with `t` nodes' shares in threshold mode.

use std::sync::Arc;

use crate::keys::{ConsensusSigner, PublicKey};
use crate::threshold::GroupSigner;

/// A chain's key as a session uses it.
#[derive(Clone, Debug)]
pub enum ChainSigner {
    /// The whole key, in this node's HSM or soft file.
    Key(Arc<dyn ConsensusSigner>),
    /// Threshold mode: shares from `t` nodes, each of which checks the
    /// grant in its own applied state first.
    Threshold(Arc<dyn GroupSigner>),
}

impl ChainSigner {
    /// The chain's validator key; `None` in threshold mode while this
    /// node holds no share yet.
    pub fn public_key(&self) -> Option<PublicKey> {
        match self {
            ChainSigner::Key(key) => Some(key.public_key()),
            ChainSigner::Threshold(group) => group.public_key(),
        }
    }

    /// Whether the other nodes must find the granted bytes in their own
    /// applied state (threshold mode): then the grant carries the vote
    /// extension too.
    pub fn needs_granted_extension(&self) -> bool {
        matches!(self, ChainSigner::Threshold(_))
    }

    /// Signs `bytes`, which a committed grant covers.
    ///
    /// # Errors
    ///
    /// The key backend failed, or too few nodes gave shares in time.
    pub async fn sign(&self, bytes: &[u8]) -> Result<[u8; 64], String> {
        match self {
            ChainSigner::Key(key) => key.sign(bytes).map_err(|e| format!("key backend: {e}")),
            ChainSigner::Threshold(group) => group
                .sign(bytes)
                .await
                .map_err(|e| format!("threshold signature: {e}")),
        }
    }
}
