//! Distributed key generation (FROST's three-part DKG, RFC 9591's
//! companion Pedersen DKG with proofs of knowledge): every node draws its
//! own secret, and the group key's secret is never whole anywhere.
//!
//! One node's side of it, free of I/O: the cluster carries round 1's
//! packages (public: each node broadcasts one) and round 2's (secret: one
//! per recipient, sent to it alone over the nodes' mutual TLS).

use std::collections::BTreeMap;

use frost_ed25519 as frost;
use frost_ed25519::keys::dkg;
use rand_core::{CryptoRng, RngCore};

use super::KeyShare;

/// One node's run of the DKG, between rounds.
pub struct Dkg {
    chain_id: String,
    node: u64,
    participants: Vec<u64>,
    round1_secret: dkg::round1::SecretPackage,
    round1: Option<BTreeMap<frost::Identifier, dkg::round1::Package>>,
    round2_secret: Option<dkg::round2::SecretPackage>,
}

impl std::fmt::Debug for Dkg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dkg")
            .field("chain_id", &self.chain_id)
            .field("node", &self.node)
            .field("participants", &self.participants)
            .finish_non_exhaustive()
    }
}

impl Dkg {
    /// Starts `node`'s part in a `t`-of-`participants` key for `chain_id`;
    /// returns its round 1 package, for every other participant.
    ///
    /// # Errors
    ///
    /// A bad threshold, or `node` not among `participants`.
    pub fn start(
        chain_id: &str,
        node: u64,
        t: u16,
        participants: &[u64],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Dkg, Vec<u8>), String> {
        let n = u16::try_from(participants.len())
            .map_err(|_| format!("{} participants: at most 255", participants.len()))?;
        super::check_threshold(t, n)?;
        let mut sorted = participants.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != participants.len() {
            return Err(format!("participants {participants:?} repeat"));
        }
        if !sorted.contains(&node) {
            return Err(format!(
                "node {node} is not among the participants {sorted:?}"
            ));
        }
        let (secret, package) =
            dkg::part1(super::identifier(node)?, n, t, rng).map_err(|e| e.to_string())?;
        let bytes = package.serialize().map_err(|e| e.to_string())?;
        Ok((
            Dkg {
                chain_id: chain_id.to_string(),
                node,
                participants: sorted,
                round1_secret: secret,
                round1: None,
                round2_secret: None,
            },
            bytes,
        ))
    }

    /// Takes every other participant's round 1 package; returns this node's
    /// round 2 packages, one per other participant and secret to it.
    ///
    /// # Errors
    ///
    /// A package missing, unexpected, malformed or with a bad proof.
    pub fn round2(
        &mut self,
        round1: &BTreeMap<u64, Vec<u8>>,
    ) -> Result<BTreeMap<u64, Vec<u8>>, String> {
        let others = self.others_packages(round1, |bytes| {
            dkg::round1::Package::deserialize(bytes).map_err(|e| e.to_string())
        })?;
        let (secret, packages) =
            dkg::part2(self.round1_secret.clone(), &others).map_err(|e| e.to_string())?;
        self.round1 = Some(others);
        self.round2_secret = Some(secret);
        packages
            .iter()
            .map(|(id, package)| {
                let node = super::node_of(id).ok_or("a round 2 package for no node")?;
                Ok((node, package.serialize().map_err(|e| e.to_string())?))
            })
            .collect()
    }

    /// Takes the round 2 packages the others sent this node and derives its
    /// share.
    ///
    /// # Errors
    ///
    /// Called before [`Dkg::round2`], or a package missing, unexpected,
    /// malformed or inconsistent with its sender's round 1 commitment.
    pub fn finish(self, round2: &BTreeMap<u64, Vec<u8>>) -> Result<KeyShare, String> {
        let (Some(round1), Some(secret)) = (&self.round1, &self.round2_secret) else {
            return Err("round 2 has not run".into());
        };
        let received = self.others_packages(round2, |bytes| {
            dkg::round2::Package::deserialize(bytes).map_err(|e| e.to_string())
        })?;
        let (key_package, public) =
            dkg::part3(secret, round1, &received).map_err(|e| e.to_string())?;
        KeyShare::new(&self.chain_id, self.node, key_package, public)
    }

    /// The participants other than this node.
    pub fn others(&self) -> impl Iterator<Item = u64> + '_ {
        self.participants
            .iter()
            .copied()
            .filter(|p| *p != self.node)
    }

    /// Exactly one package from each other participant, decoded.
    fn others_packages<P>(
        &self,
        packages: &BTreeMap<u64, Vec<u8>>,
        decode: impl Fn(&[u8]) -> Result<P, String>,
    ) -> Result<BTreeMap<frost::Identifier, P>, String> {
        let expected: Vec<u64> = self.others().collect();
        let got: Vec<u64> = packages.keys().copied().collect();
        if got != expected {
            return Err(format!(
                "expected packages from nodes {expected:?}, got {got:?}"
            ));
        }
        packages
            .iter()
            .map(|(node, bytes)| {
                let package = decode(bytes).map_err(|e| format!("node {node}'s package: {e}"))?;
                Ok((super::identifier(*node)?, package))
            })
            .collect()
    }
}
