//! Votes and proposals as a CometBFT validator would ask a signer to sign
//! them, for the mock validator and the simulation.

use sha2::{Digest, Sha256};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::types::{BlockId, PartSetHeader, SignedMsgType};

use crate::keys::ToPublicKey;
use crate::privval::{Proposal, Version, Vote};

/// Genesis time of the simulated chain; block h is stamped h seconds later.
const GENESIS_SECONDS: i64 = 1_700_000_000;

/// The block proposed at `height` (deterministic): `variant` 0 is the
/// honest block, other values make conflicting ones.
pub fn block_id(height: i64, variant: u8) -> BlockId {
    let mut hasher = Sha256::new();
    hasher.update(height.to_be_bytes());
    hasher.update([variant]);
    let hash = hasher.finalize().to_vec();
    BlockId {
        hash: hash.clone(),
        part_set_header: Some(PartSetHeader {
            total: 1,
            hash: Sha256::digest(&hash).to_vec(),
        }),
    }
}

/// The timestamp of block `height`, plus `offset_ms`.
pub fn timestamp(height: i64, offset_ms: i64) -> Timestamp {
    let millis = height * 1_000 + offset_ms;
    Timestamp {
        seconds: GENESIS_SECONDS + millis.div_euclid(1_000),
        nanos: (millis.rem_euclid(1_000) * 1_000_000) as i32,
    }
}

/// A proposal of `block` at `height`/`round`.
pub fn proposal(height: i64, round: i32, block: BlockId, offset_ms: i64) -> Proposal {
    Proposal {
        r#type: SignedMsgType::Proposal as i32,
        height,
        round,
        pol_round: -1,
        block_id: Some(block),
        timestamp: Some(timestamp(height, offset_ms)),
        signature: Vec::new(),
    }
}

/// A prevote or precommit for `block` (None votes nil).
pub fn vote(
    version: Version,
    precommit: bool,
    height: i64,
    round: i32,
    block: Option<BlockId>,
    validator_address: &[u8],
    offset_ms: i64,
) -> Vote {
    let msg_type = if precommit {
        SignedMsgType::Precommit
    } else {
        SignedMsgType::Prevote
    };
    // Non-nil precommits carry an application extension where the version
    // has them.
    let extension = if precommit && block.is_some() && version.has_vote_extensions() {
        format!("ext-{height}").into_bytes()
    } else {
        Vec::new()
    };
    Vote {
        r#type: msg_type as i32,
        height,
        round,
        block_id: block,
        timestamp: Some(timestamp(height, offset_ms)),
        validator_address: validator_address.to_vec(),
        validator_index: 0,
        signature: Vec::new(),
        extension,
        extension_signature: Vec::new(),
    }
}

/// A validator address: the first 20 bytes of sha256(public key) for
/// ed25519, RIPEMD-160 of it for secp256k1.
pub fn address(public_key: &impl ToPublicKey) -> Vec<u8> {
    public_key.to_public_key().address().to_vec()
}
