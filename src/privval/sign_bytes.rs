//! Canonical sign bytes: exactly the bytes CometBFT's FilePV signs for a
//! vote, a proposal and a vote extension (`types/vote.go`,
//! `types/proposal.go`, `types/canonical.go`).
//!
//! Each is a uvarint length-delimited `Canonical*` message. The canonical
//! messages are the same on the wire in v0.34, v0.37, v0.38 and v1.0. These
//! functions do not validate their input; [`super::Request::decode`] does
//! that before it calls them.

use prost::Message;
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::types::{
    BlockId, CanonicalBlockId, CanonicalPartSetHeader, CanonicalProposal, CanonicalVote,
    CanonicalVoteExtension, SignedMsgType,
};

use super::{Proposal, Vote};

/// Seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z) since the Unix
/// epoch. CometBFT's timestamps are non-nullable, so an absent timestamp
/// is this one, and it is signed as such.
pub const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// The timestamp CometBFT sees for an optional protobuf timestamp.
pub fn timestamp_or_zero(ts: Option<&Timestamp>) -> Timestamp {
    ts.copied().unwrap_or(Timestamp {
        seconds: GO_ZERO_TIME_SECONDS,
        nanos: 0,
    })
}

/// True for the nil block id (empty hash and zero part set header), which
/// canonical messages leave out and which marks a nil vote.
pub fn block_id_is_nil(id: Option<&BlockId>) -> bool {
    match id {
        None => true,
        Some(id) => {
            id.hash.is_empty()
                && id
                    .part_set_header
                    .as_ref()
                    .is_none_or(|p| p.total == 0 && p.hash.is_empty())
        }
    }
}

fn canonical_block_id(id: Option<&BlockId>) -> Option<CanonicalBlockId> {
    if block_id_is_nil(id) {
        return None;
    }
    let id = id?;
    let psh = id.part_set_header.clone().unwrap_or_default();
    Some(CanonicalBlockId {
        hash: id.hash.clone(),
        part_set_header: Some(CanonicalPartSetHeader {
            total: psh.total,
            hash: psh.hash,
        }),
    })
}

/// The bytes signed for `vote` on `chain_id` (`VoteSignBytes`). The vote
/// extension is not part of them.
pub fn vote(chain_id: &str, vote: &Vote) -> Vec<u8> {
    CanonicalVote {
        r#type: vote.r#type,
        height: vote.height,
        round: i64::from(vote.round),
        block_id: canonical_block_id(vote.block_id.as_ref()),
        timestamp: Some(timestamp_or_zero(vote.timestamp.as_ref())),
        chain_id: chain_id.to_owned(),
    }
    .encode_length_delimited_to_vec()
}

/// The bytes signed for `proposal` on `chain_id` (`ProposalSignBytes`). The
/// canonical type is always "proposal", whatever the message says.
pub fn proposal(chain_id: &str, proposal: &Proposal) -> Vec<u8> {
    CanonicalProposal {
        r#type: SignedMsgType::Proposal as i32,
        height: proposal.height,
        round: i64::from(proposal.round),
        pol_round: i64::from(proposal.pol_round),
        block_id: canonical_block_id(proposal.block_id.as_ref()),
        timestamp: Some(timestamp_or_zero(proposal.timestamp.as_ref())),
        chain_id: chain_id.to_owned(),
    }
    .encode_length_delimited_to_vec()
}

/// The bytes signed for the extension of `vote` on `chain_id`
/// (`VoteExtensionSignBytes`, v0.38 and later).
pub fn vote_extension(chain_id: &str, vote: &Vote) -> Vec<u8> {
    CanonicalVoteExtension {
        extension: vote.extension.clone(),
        height: vote.height,
        round: i64::from(vote.round),
        chain_id: chain_id.to_owned(),
    }
    .encode_length_delimited_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tendermint_proto::v0_38::types::PartSetHeader;

    #[test]
    fn zero_vote_signs_go_zero_time() {
        let bytes = vote("", &Vote::default());
        assert_eq!(hex::encode(bytes), "0d2a0b088092b8c398feffffff01");
    }

    #[test]
    fn nil_block_id_is_left_out() {
        let mut v = Vote {
            r#type: 2,
            height: 1,
            round: 1,
            ..Vote::default()
        };
        let without = vote("c", &v);
        v.block_id = Some(BlockId {
            hash: vec![],
            part_set_header: Some(PartSetHeader::default()),
        });
        assert_eq!(vote("c", &v), without);
        assert!(block_id_is_nil(v.block_id.as_ref()));
    }

    #[test]
    fn extension_sign_bytes_layout() {
        let v = Vote {
            height: 3,
            round: 2,
            extension: b"ext".to_vec(),
            ..Vote::default()
        };
        // extension, height and round as sfixed64, chain id.
        let expected = "1d0a03657874110300000000000000190200000000000000220474657374";
        assert_eq!(hex::encode(vote_extension("test", &v)), expected);
    }
}
