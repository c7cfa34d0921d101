//! Splitting an existing Ed25519 key into shares (a trusted dealer), for
//! a validator moving from a single key to threshold mode.
//!
//! The dealer holds the whole key while it splits it, so run it once, on
//! an offline host, then move each share to its node and destroy the key
//! and the shares it no longer needs. New keys that no host should ever
//! hold come from the distributed key generation ([`super::dkg`]).

use frost_ed25519 as frost;
use rand_core::{CryptoRng, RngCore};

use super::KeyShare;
use crate::keys::PublicKey;

/// Splits the Ed25519 key with `seed` (as in `priv_validator_key.json`)
/// into one share per node of `nodes`, any `t` of which sign for the key.
/// The group key is the key's own public key, so the chain sees no change.
///
/// # Errors
///
/// A bad threshold, node ids that cannot hold shares or repeat, or (never)
/// a group key that differs from the key's.
pub fn split(
    chain_id: &str,
    seed: &[u8; 32],
    t: u16,
    nodes: &[u64],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<KeyShare>, String> {
    let n =
        u16::try_from(nodes.len()).map_err(|_| format!("{} shares: at most 255", nodes.len()))?;
    super::check_threshold(t, n)?;
    let ids = nodes
        .iter()
        .map(|node| super::identifier(*node))
        .collect::<Result<Vec<_>, _>>()?;
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != ids.len() {
        return Err(format!(
            "node ids {nodes:?} repeat: each node holds one share"
        ));
    }
    let signing = ed25519_dalek::SigningKey::from_bytes(seed);
    // Ed25519's secret scalar (the clamped hash of the seed), reduced:
    // FROST takes canonical scalars, and the reduction names the same key.
    let scalar = zeroize::Zeroizing::new(signing.to_scalar().to_bytes());
    let key = frost::SigningKey::deserialize(&scalar[..]).map_err(|e| e.to_string())?;
    let (secret_shares, public) =
        frost::keys::split(&key, n, t, frost::keys::IdentifierList::Custom(&ids), rng)
            .map_err(|e| e.to_string())?;
    let expected = PublicKey::from_type_and_bytes(
        crate::keys::KeyType::Ed25519,
        signing.verifying_key().as_bytes(),
    )?;
    if super::share::group_key(&public)? != expected {
        return Err("the shares' group key differs from the key's public key".into());
    }
    nodes
        .iter()
        .zip(&ids)
        .map(|(node, id)| {
            let secret = secret_shares
                .get(id)
                .cloned()
                .ok_or_else(|| format!("no share was made for node {node}"))?;
            let key_package =
                frost::keys::KeyPackage::try_from(secret).map_err(|e| e.to_string())?;
            KeyShare::new(chain_id, *node, key_package, public.clone())
        })
        .collect()
}
