//! A threshold signature made with shares held in one process: the test
//! signature of `quorumkms threshold check`, and the tests. A running
//! cluster never does this; its shares live on different nodes and meet
//! only through the coordinator.

use std::collections::BTreeMap;

use frost_ed25519 as frost;

use super::{KeyShare, Participant, identifier};

/// Signs `message` with every share in `shares` (at least `t` of one
/// split, each of a different node), through both FROST rounds as the
/// nodes would run them, and checks the result under the group key.
///
/// # Errors
///
/// Fewer than `t` shares, shares of different chains or splits, a node
/// twice, or a share that does not sign (named by its node).
pub fn sign_with_shares(shares: &[&KeyShare], message: &[u8]) -> Result<[u8; 64], String> {
    let first = shares.first().ok_or("no shares to sign with")?;
    if shares.len() < usize::from(first.threshold()) {
        return Err(format!(
            "{} share(s) cannot sign: {} are needed",
            shares.len(),
            first.threshold()
        ));
    }
    let mut nodes = BTreeMap::new();
    for share in shares {
        if share.chain_id() != first.chain_id() {
            return Err(format!(
                "node {}'s share is of chain {}, node {}'s of {}",
                share.node(),
                share.chain_id(),
                first.node(),
                first.chain_id()
            ));
        }
        if share.public_package() != first.public_package() {
            return Err(format!(
                "node {}'s share is of another split than node {}'s",
                share.node(),
                first.node()
            ));
        }
        if nodes.insert(share.node(), ()).is_some() {
            return Err(format!("node {} holds two of the shares", share.node()));
        }
    }
    let chain = first.chain_id();
    let participants: Vec<Participant> = shares
        .iter()
        .map(|share| Participant::new([(*share).clone()]))
        .collect();
    let mut sessions = Vec::with_capacity(shares.len());
    let mut commitments = BTreeMap::new();
    for (share, participant) in shares.iter().zip(&participants) {
        let commitment = participant.commit(chain).map_err(|e| e.to_string())?;
        let decoded = frost::round1::SigningCommitments::deserialize(&commitment.commitments)
            .map_err(|e| format!("node {}'s commitment: {e}", share.node()))?;
        commitments.insert(identifier(share.node())?, decoded);
        sessions.push(commitment.session);
    }
    let package = frost::SigningPackage::new(commitments, message);
    let mut signature_shares = BTreeMap::new();
    for ((share, participant), session) in shares.iter().zip(&participants).zip(sessions) {
        let bytes = participant
            .sign(chain, session, &package)
            .map_err(|e| format!("node {}: {e}", share.node()))?;
        let decoded = frost::round2::SignatureShare::deserialize(&bytes)
            .map_err(|e| format!("node {}'s signature share: {e}", share.node()))?;
        signature_shares.insert(identifier(share.node())?, decoded);
    }
    let signature = frost::aggregate(&package, &signature_shares, first.public_package()).map_err(
        |e| match e.culprit().as_ref().and_then(super::node_of) {
            Some(node) => format!("node {node}'s share does not sign: {e}"),
            None => format!("the shares do not sign: {e}"),
        },
    )?;
    let bytes: [u8; 64] = signature
        .serialize()
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "the signature is not 64 bytes".to_string())?;
    if !first.group_key()?.verify(message, &bytes) {
        return Err("the signature does not verify under the group key".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;
    use crate::threshold::dealer;

    const SEED: [u8; 32] = [9; 32];

    #[test]
    fn signs_with_t_or_more_shares_and_names_what_does_not_fit() {
        let shares = dealer::split("c", &SEED, 2, &[1, 2, 3], &mut OsRng).unwrap();
        let group = shares[0].group_key().unwrap();
        let all: Vec<&KeyShare> = shares.iter().collect();
        assert!(group.verify(b"m", &sign_with_shares(&all, b"m").unwrap()));
        assert!(group.verify(b"m", &sign_with_shares(&all[1..], b"m").unwrap()));

        let err = sign_with_shares(&all[..1], b"m").unwrap_err();
        assert!(err.contains("2 are needed"), "{err}");
        let err = sign_with_shares(&[&shares[0], &shares[0]], b"m").unwrap_err();
        assert!(err.contains("node 1 holds two"), "{err}");
        // The same key split again: same group key, other shares.
        let again = dealer::split("c", &SEED, 2, &[1, 2, 3], &mut OsRng).unwrap();
        let err = sign_with_shares(&[&shares[0], &again[1]], b"m").unwrap_err();
        assert!(err.contains("another split"), "{err}");
        let other_chain = dealer::split("d", &SEED, 2, &[1, 2, 3], &mut OsRng).unwrap();
        let err = sign_with_shares(&[&shares[0], &other_chain[1]], b"m").unwrap_err();
        assert!(err.contains("chain d"), "{err}");
    }
}
