//! The version-neutral form of a `privval.Message`, which every per-version
//! module decodes into and encodes from, and the macro that writes those
//! modules for the tendermint-proto versions (v0.34, v0.37, v0.38).
//!
//! Votes and proposals are held in their v0.38 form: v0.34 and v0.37 lack
//! only the vote extension fields, and v1.0 is identical on the wire. This
//! module does no validation; `privval::Request` does.

use super::codec::CodecError;
use super::{Proposal, RemoteError, Vote};
use crate::keys::{KeyType, PublicKey};

/// One `privval.Message`, whatever its version.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Wire {
    PubKeyRequest {
        chain_id: String,
    },
    PubKeyResponse {
        key: Option<PublicKey>,
        error: Option<RemoteError>,
    },
    SignVoteRequest {
        vote: Option<Vote>,
        chain_id: String,
        /// v1.0 only; always false in earlier versions.
        skip_extension_signing: bool,
    },
    SignedVoteResponse {
        vote: Vote,
        error: Option<RemoteError>,
    },
    SignProposalRequest {
        proposal: Option<Proposal>,
        chain_id: String,
    },
    SignedProposalResponse {
        proposal: Proposal,
        error: Option<RemoteError>,
    },
    PingRequest,
    PingResponse,
    /// v1.0 only.
    SignBytesRequest {
        value: Vec<u8>,
    },
    /// v1.0 only.
    SignBytesResponse {
        signature: Vec<u8>,
        error: Option<RemoteError>,
    },
}

impl Wire {
    /// The oneof field's protobuf name.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Wire::PubKeyRequest { .. } => "pub_key_request",
            Wire::PubKeyResponse { .. } => "pub_key_response",
            Wire::SignVoteRequest { .. } => "sign_vote_request",
            Wire::SignedVoteResponse { .. } => "signed_vote_response",
            Wire::SignProposalRequest { .. } => "sign_proposal_request",
            Wire::SignedProposalResponse { .. } => "signed_proposal_response",
            Wire::PingRequest => "ping_request",
            Wire::PingResponse => "ping_response",
            Wire::SignBytesRequest { .. } => "sign_bytes_request",
            Wire::SignBytesResponse { .. } => "sign_bytes_response",
        }
    }
}

/// The field number of the first field of a message body, read from its
/// first key alone, so it works on bodies that do not decode.
pub(super) fn first_field(body: &[u8]) -> Option<u64> {
    let mut key = 0u64;
    for (i, &byte) in body.iter().take(10).enumerate() {
        key |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(key >> 3);
        }
    }
    None
}

/// The error for a body that decoded to no known oneof member.
pub(super) fn no_message(body: &[u8]) -> CodecError {
    match first_field(body) {
        Some(n) => CodecError::Malformed(format!("unknown message field {n}")),
        None => CodecError::Malformed("empty message".into()),
    }
}

/// The error for a body protobuf could not decode.
pub(super) fn undecodable(err: prost::DecodeError) -> CodecError {
    CodecError::Malformed(err.to_string())
}

/// A key of `key_type` from its raw bytes; empty means no key.
pub(super) fn public_key(key_type: KeyType, bytes: &[u8]) -> Result<Option<PublicKey>, CodecError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    PublicKey::from_type_and_bytes(key_type, bytes)
        .map(Some)
        .map_err(CodecError::Malformed)
}

/// Writes `decode` and `encode` between [`Wire`] and one tendermint-proto
/// version's `privval.Message`. The optional idents name the vote fields
/// that version has beyond v0.34's (the vote extension fields).
macro_rules! tendermint_codec {
    ($v:ident $(, $ext:ident)*) => {
        use prost::Message as _;
        use tendermint_proto::$v::crypto::{PublicKey as ProtoPublicKey, public_key};
        use crate::keys::{KeyType, PublicKey as KeyPublicKey};
        use tendermint_proto::$v::privval as pv;
        use tendermint_proto::$v::types as t;
        use tendermint_proto::v0_38::types as neutral;

        use super::codec::CodecError;
        use super::wire::{self, Wire};
        use super::{Proposal, RemoteError, Vote};
        use pv::message::Sum;

        /// Decodes a `privval.Message` body of this version.
        pub(super) fn decode(body: &[u8]) -> Result<Wire, CodecError> {
            let msg = pv::Message::decode(body).map_err(wire::undecodable)?;
            Ok(match msg.sum {
                None => return Err(wire::no_message(body)),
                Some(Sum::PubKeyRequest(r)) => Wire::PubKeyRequest { chain_id: r.chain_id },
                Some(Sum::PubKeyResponse(r)) => Wire::PubKeyResponse {
                    key: key_in(r.pub_key)?,
                    error: r.error.map(error_in),
                },
                Some(Sum::SignVoteRequest(r)) => Wire::SignVoteRequest {
                    vote: r.vote.map(vote_in),
                    chain_id: r.chain_id,
                    skip_extension_signing: false,
                },
                Some(Sum::SignedVoteResponse(r)) => Wire::SignedVoteResponse {
                    vote: r.vote.map(vote_in).unwrap_or_default(),
                    error: r.error.map(error_in),
                },
                Some(Sum::SignProposalRequest(r)) => Wire::SignProposalRequest {
                    proposal: r.proposal.map(proposal_in),
                    chain_id: r.chain_id,
                },
                Some(Sum::SignedProposalResponse(r)) => Wire::SignedProposalResponse {
                    proposal: r.proposal.map(proposal_in).unwrap_or_default(),
                    error: r.error.map(error_in),
                },
                Some(Sum::PingRequest(_)) => Wire::PingRequest,
                Some(Sum::PingResponse(_)) => Wire::PingResponse,
            })
        }

        /// Encodes `wire` as this version's `privval.Message` body. Messages
        /// the version does not have (v1.0's sign-bytes pair) encode as an
        /// empty message.
        pub(super) fn encode(wire: &Wire) -> Vec<u8> {
            let sum = match wire {
                Wire::PubKeyRequest { chain_id } => Some(Sum::PubKeyRequest(pv::PubKeyRequest {
                    chain_id: chain_id.clone(),
                })),
                Wire::PubKeyResponse { key, error } => {
                    Some(Sum::PubKeyResponse(pv::PubKeyResponse {
                        pub_key: Some(ProtoPublicKey {
                            sum: key.map(|k| match k {
                                KeyPublicKey::Ed25519(k) => public_key::Sum::Ed25519(k.to_vec()),
                                KeyPublicKey::Secp256k1(k) => {
                                    public_key::Sum::Secp256k1(k.to_vec())
                                }
                            }),
                        }),
                        error: error.as_ref().map(error_out),
                    }))
                }
                Wire::SignVoteRequest { vote, chain_id, .. } => {
                    Some(Sum::SignVoteRequest(pv::SignVoteRequest {
                        vote: vote.as_ref().map(vote_out),
                        chain_id: chain_id.clone(),
                    }))
                }
                Wire::SignedVoteResponse { vote, error } => {
                    Some(Sum::SignedVoteResponse(pv::SignedVoteResponse {
                        vote: Some(vote_out(vote)),
                        error: error.as_ref().map(error_out),
                    }))
                }
                Wire::SignProposalRequest { proposal, chain_id } => {
                    Some(Sum::SignProposalRequest(pv::SignProposalRequest {
                        proposal: proposal.as_ref().map(proposal_out),
                        chain_id: chain_id.clone(),
                    }))
                }
                Wire::SignedProposalResponse { proposal, error } => {
                    Some(Sum::SignedProposalResponse(pv::SignedProposalResponse {
                        proposal: Some(proposal_out(proposal)),
                        error: error.as_ref().map(error_out),
                    }))
                }
                Wire::PingRequest => Some(Sum::PingRequest(pv::PingRequest {})),
                Wire::PingResponse => Some(Sum::PingResponse(pv::PingResponse {})),
                Wire::SignBytesRequest { .. } | Wire::SignBytesResponse { .. } => None,
            };
            pv::Message { sum }.encode_to_vec()
        }

        fn key_in(key: Option<ProtoPublicKey>) -> Result<Option<KeyPublicKey>, CodecError> {
            match key.and_then(|k| k.sum) {
                None => Ok(None),
                Some(public_key::Sum::Ed25519(bytes)) => {
                    wire::public_key(KeyType::Ed25519, &bytes)
                }
                Some(public_key::Sum::Secp256k1(bytes)) => {
                    wire::public_key(KeyType::Secp256k1, &bytes)
                }
                #[allow(unreachable_patterns)]
                Some(_) => Err(CodecError::Malformed("unsupported public key type".into())),
            }
        }

        fn error_in(e: pv::RemoteSignerError) -> RemoteError {
            RemoteError {
                code: e.code,
                description: e.description,
            }
        }

        fn error_out(e: &RemoteError) -> pv::RemoteSignerError {
            pv::RemoteSignerError {
                code: e.code,
                description: e.description.clone(),
            }
        }

        fn block_id_in(b: t::BlockId) -> neutral::BlockId {
            neutral::BlockId {
                hash: b.hash,
                part_set_header: b.part_set_header.map(|p| neutral::PartSetHeader {
                    total: p.total,
                    hash: p.hash,
                }),
            }
        }

        fn block_id_out(b: &neutral::BlockId) -> t::BlockId {
            t::BlockId {
                hash: b.hash.clone(),
                part_set_header: b.part_set_header.as_ref().map(|p| t::PartSetHeader {
                    total: p.total,
                    hash: p.hash.clone(),
                }),
            }
        }

        #[allow(clippy::needless_update)]
        fn vote_in(v: t::Vote) -> Vote {
            Vote {
                r#type: v.r#type,
                height: v.height,
                round: v.round,
                block_id: v.block_id.map(block_id_in),
                timestamp: v.timestamp,
                validator_address: v.validator_address,
                validator_index: v.validator_index,
                signature: v.signature,
                $($ext: v.$ext,)*
                ..Vote::default()
            }
        }

        fn vote_out(v: &Vote) -> t::Vote {
            t::Vote {
                r#type: v.r#type,
                height: v.height,
                round: v.round,
                block_id: v.block_id.as_ref().map(block_id_out),
                timestamp: v.timestamp,
                validator_address: v.validator_address.clone(),
                validator_index: v.validator_index,
                signature: v.signature.clone(),
                $($ext: v.$ext.clone(),)*
            }
        }

        fn proposal_in(p: t::Proposal) -> Proposal {
            Proposal {
                r#type: p.r#type,
                height: p.height,
                round: p.round,
                pol_round: p.pol_round,
                block_id: p.block_id.map(block_id_in),
                timestamp: p.timestamp,
                signature: p.signature,
            }
        }

        fn proposal_out(p: &Proposal) -> t::Proposal {
            t::Proposal {
                r#type: p.r#type,
                height: p.height,
                round: p.round,
                pol_round: p.pol_round,
                block_id: p.block_id.as_ref().map(block_id_out),
                timestamp: p.timestamp,
                signature: p.signature.clone(),
            }
        }
    };
}

pub(super) use tendermint_codec;
