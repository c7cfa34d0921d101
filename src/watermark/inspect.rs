//! Reads what stored sign bytes say about themselves: the position they sign
//! at and the block they sign for.
//!
//! Imports use it to check that a file's sign bytes really are a canonical
//! vote or proposal at the file's position; the tmkms export uses it to
//! recover the block id tmkms keeps next to its watermark. The canonical
//! messages are the same on the wire in every supported CometBFT version.

use prost::Message;
use tendermint_proto::v0_38::types::{CanonicalBlockId, CanonicalProposal, CanonicalVote};

use super::{Position, Step};

const TYPE_PREVOTE: i32 = 1;
const TYPE_PRECOMMIT: i32 = 2;
const TYPE_PROPOSAL: i32 = 32;

/// A block id as CometBFT names it: the block hash and its part set header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockId {
    /// The block hash.
    pub hash: Vec<u8>,
    /// Number of parts.
    pub parts_total: u32,
    /// Merkle root of the parts.
    pub parts_hash: Vec<u8>,
}

/// What a canonical vote or proposal signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// Height, round and step.
    pub position: Position,
    /// The block, or `None` for a vote for nil.
    pub block_id: Option<BlockId>,
    /// The chain id inside the bytes.
    pub chain_id: String,
}

fn block_id(id: Option<CanonicalBlockId>) -> Option<BlockId> {
    let id = id?;
    let parts = id.part_set_header.unwrap_or_default();
    if id.hash.is_empty() && parts.total == 0 && parts.hash.is_empty() {
        return None;
    }
    Some(BlockId {
        hash: id.hash,
        parts_total: parts.total,
        parts_hash: parts.hash,
    })
}

fn position(height: i64, round: i64, step: Step) -> Option<Position> {
    Some(Position {
        height,
        round: i32::try_from(round).ok()?,
        step,
    })
}

/// Decodes length-delimited canonical vote or proposal sign bytes. `None`
/// when they are neither.
pub fn signed(sign_bytes: &[u8]) -> Option<Signed> {
    if let Ok(vote) = CanonicalVote::decode_length_delimited(sign_bytes) {
        let step = match vote.r#type {
            TYPE_PREVOTE => Some(Step::Prevote),
            TYPE_PRECOMMIT => Some(Step::Precommit),
            _ => None,
        };
        if let Some(step) = step {
            return Some(Signed {
                position: position(vote.height, vote.round, step)?,
                block_id: block_id(vote.block_id),
                chain_id: vote.chain_id,
            });
        }
    }
    let proposal = CanonicalProposal::decode_length_delimited(sign_bytes).ok()?;
    if proposal.r#type != TYPE_PROPOSAL {
        return None;
    }
    Some(Signed {
        position: position(proposal.height, proposal.round, Step::Propose)?,
        block_id: block_id(proposal.block_id),
        chain_id: proposal.chain_id,
    })
}

/// Checks that `sign_bytes` (when not empty) are a canonical vote or
/// proposal for `chain_id` at exactly `position`.
///
/// # Errors
///
/// A sentence saying what does not match.
pub fn check(chain_id: &str, position: Option<Position>, sign_bytes: &[u8]) -> Result<(), String> {
    if sign_bytes.is_empty() {
        return Ok(());
    }
    let Some(position) = position else {
        return Err("sign bytes are present but there is no watermark position".into());
    };
    let signed =
        signed(sign_bytes).ok_or("sign bytes are not a canonical CometBFT vote or proposal")?;
    if signed.position != position {
        return Err(format!(
            "sign bytes sign at {}, but the watermark says {position}",
            signed.position
        ));
    }
    if signed.chain_id != chain_id {
        return Err(format!(
            "sign bytes are for chain {:?}, not {chain_id:?}",
            signed.chain_id
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tendermint_proto::google::protobuf::Timestamp;
    use tendermint_proto::v0_38::types::CanonicalPartSetHeader;

    /// Canonical sign bytes for `step` at `height`/`round` on `chain_id`,
    /// for a block (`block` true) or nil.
    pub(crate) fn sign_bytes(
        chain_id: &str,
        height: i64,
        round: i64,
        step: Step,
        block: bool,
    ) -> Vec<u8> {
        let id = block.then(|| CanonicalBlockId {
            hash: vec![0xab; 32],
            part_set_header: Some(CanonicalPartSetHeader {
                total: 1,
                hash: vec![0xcd; 32],
            }),
        });
        let timestamp = Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        });
        match step {
            Step::Propose => CanonicalProposal {
                r#type: TYPE_PROPOSAL,
                height,
                round,
                pol_round: -1,
                block_id: id,
                timestamp,
                chain_id: chain_id.into(),
            }
            .encode_length_delimited_to_vec(),
            Step::Prevote | Step::Precommit | Step::None => CanonicalVote {
                r#type: if step == Step::Precommit {
                    TYPE_PRECOMMIT
                } else {
                    TYPE_PREVOTE
                },
                height,
                round,
                block_id: id,
                timestamp,
                chain_id: chain_id.into(),
            }
            .encode_length_delimited_to_vec(),
        }
    }

    #[test]
    fn reads_votes_and_proposals() {
        for step in [Step::Propose, Step::Prevote, Step::Precommit] {
            let bytes = sign_bytes("c-1", 7, 2, step, true);
            let s = signed(&bytes).expect("decodes");
            assert_eq!(
                s.position,
                Position {
                    height: 7,
                    round: 2,
                    step
                }
            );
            assert_eq!(s.chain_id, "c-1");
            assert_eq!(s.block_id.expect("block").parts_total, 1);
        }
        let nil = signed(&sign_bytes("c-1", 7, 0, Step::Prevote, false)).expect("decodes");
        assert_eq!(nil.block_id, None);
        assert_eq!(signed(&[1, 2, 0xab]), None);
        assert_eq!(signed(&[]), None);
    }

    #[test]
    fn check_matches_position_and_chain() {
        let p = Position {
            height: 7,
            round: 2,
            step: Step::Precommit,
        };
        let bytes = sign_bytes("c-1", 7, 2, Step::Precommit, true);
        assert!(check("c-1", Some(p), &bytes).is_ok());
        assert!(check("c-1", Some(p), &[]).is_ok());
        assert!(check("c-2", Some(p), &bytes).unwrap_err().contains("chain"));
        let lower = Position {
            step: Step::Prevote,
            ..p
        };
        assert!(
            check("c-1", Some(lower), &bytes)
                .unwrap_err()
                .contains("7/2/precommit")
        );
        assert!(check("c-1", None, &bytes).is_err());
        assert!(check("c-1", Some(p), &[9, 9]).is_err());
    }
}
