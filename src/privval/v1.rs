//! CometBFT v1.0 privval messages, written by hand from
//! `proto/cometbft/privval/v1/types.proto` (v1.0.1), since tendermint-proto
//! does not ship them, and mapped to and from the version-neutral form.
//!
//! v1.0 differs from v0.38 in three places: `PubKeyResponse` carries raw key
//! bytes and a key type name (field 1 is reserved), `SignVoteRequest` has
//! `skip_extension_signing`, and there is a `SignBytesRequest`/`Response`
//! pair. `cometbft.types.v1.Vote` and `Proposal` are field for field the
//! v0.38 messages, so those are used as they are.

use prost::Message as _;

use super::codec::CodecError;
use super::wire::{self, Wire};
use super::{Proposal, RemoteError, Vote};

use crate::keys::{KeyType, PublicKey};

#[derive(Clone, PartialEq, prost::Message)]
struct RemoteSignerError {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PubKeyRequest {
    #[prost(string, tag = "1")]
    chain_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PubKeyResponse {
    #[prost(message, optional, tag = "2")]
    error: Option<RemoteSignerError>,
    #[prost(bytes = "vec", tag = "3")]
    pub_key_bytes: Vec<u8>,
    #[prost(string, tag = "4")]
    pub_key_type: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignVoteRequest {
    #[prost(message, optional, tag = "1")]
    vote: Option<Vote>,
    #[prost(string, tag = "2")]
    chain_id: String,
    #[prost(bool, tag = "3")]
    skip_extension_signing: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignedVoteResponse {
    #[prost(message, optional, tag = "1")]
    vote: Option<Vote>,
    #[prost(message, optional, tag = "2")]
    error: Option<RemoteSignerError>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignProposalRequest {
    #[prost(message, optional, tag = "1")]
    proposal: Option<Proposal>,
    #[prost(string, tag = "2")]
    chain_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignedProposalResponse {
    #[prost(message, optional, tag = "1")]
    proposal: Option<Proposal>,
    #[prost(message, optional, tag = "2")]
    error: Option<RemoteSignerError>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignBytesRequest {
    #[prost(bytes = "vec", tag = "1")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignBytesResponse {
    #[prost(bytes = "vec", tag = "1")]
    signature: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    error: Option<RemoteSignerError>,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
struct PingRequest {}

#[derive(Clone, Copy, PartialEq, prost::Message)]
struct PingResponse {}

#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    #[prost(oneof = "Sum", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    sum: Option<Sum>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Sum {
    #[prost(message, tag = "1")]
    PubKeyRequest(PubKeyRequest),
    #[prost(message, tag = "2")]
    PubKeyResponse(PubKeyResponse),
    #[prost(message, tag = "3")]
    SignVoteRequest(SignVoteRequest),
    #[prost(message, tag = "4")]
    SignedVoteResponse(SignedVoteResponse),
    #[prost(message, tag = "5")]
    SignProposalRequest(SignProposalRequest),
    #[prost(message, tag = "6")]
    SignedProposalResponse(SignedProposalResponse),
    #[prost(message, tag = "7")]
    PingRequest(PingRequest),
    #[prost(message, tag = "8")]
    PingResponse(PingResponse),
    #[prost(message, tag = "9")]
    SignBytesRequest(SignBytesRequest),
    #[prost(message, tag = "10")]
    SignBytesResponse(SignBytesResponse),
}

fn error_in(e: RemoteSignerError) -> RemoteError {
    RemoteError {
        code: e.code,
        description: e.description,
    }
}

fn error_out(e: &RemoteError) -> RemoteSignerError {
    RemoteSignerError {
        code: e.code,
        description: e.description.clone(),
    }
}

fn key_in(r: &PubKeyResponse) -> Result<Option<PublicKey>, CodecError> {
    match r.pub_key_type.as_str() {
        "" if r.pub_key_bytes.is_empty() => Ok(None),
        name => match name.parse::<KeyType>() {
            Ok(key_type) => wire::public_key(key_type, &r.pub_key_bytes),
            Err(_) => Err(CodecError::Malformed(format!(
                "unsupported public key type {name:?}"
            ))),
        },
    }
}

/// Decodes a v1.0 `privval.Message` body.
pub(super) fn decode(body: &[u8]) -> Result<Wire, CodecError> {
    let msg = Message::decode(body).map_err(wire::undecodable)?;
    Ok(match msg.sum {
        None => return Err(wire::no_message(body)),
        Some(Sum::PubKeyRequest(r)) => Wire::PubKeyRequest {
            chain_id: r.chain_id,
        },
        Some(Sum::PubKeyResponse(r)) => Wire::PubKeyResponse {
            key: key_in(&r)?,
            error: r.error.map(error_in),
        },
        Some(Sum::SignVoteRequest(r)) => Wire::SignVoteRequest {
            vote: r.vote,
            chain_id: r.chain_id,
            skip_extension_signing: r.skip_extension_signing,
        },
        Some(Sum::SignedVoteResponse(r)) => Wire::SignedVoteResponse {
            vote: r.vote.unwrap_or_default(),
            error: r.error.map(error_in),
        },
        Some(Sum::SignProposalRequest(r)) => Wire::SignProposalRequest {
            proposal: r.proposal,
            chain_id: r.chain_id,
        },
        Some(Sum::SignedProposalResponse(r)) => Wire::SignedProposalResponse {
            proposal: r.proposal.unwrap_or_default(),
            error: r.error.map(error_in),
        },
        Some(Sum::PingRequest(_)) => Wire::PingRequest,
        Some(Sum::PingResponse(_)) => Wire::PingResponse,
        Some(Sum::SignBytesRequest(r)) => Wire::SignBytesRequest { value: r.value },
        Some(Sum::SignBytesResponse(r)) => Wire::SignBytesResponse {
            signature: r.signature,
            error: r.error.map(error_in),
        },
    })
}

/// Encodes `wire` as a v1.0 `privval.Message` body.
pub(super) fn encode(wire: &Wire) -> Vec<u8> {
    let sum = match wire {
        Wire::PubKeyRequest { chain_id } => Sum::PubKeyRequest(PubKeyRequest {
            chain_id: chain_id.clone(),
        }),
        Wire::PubKeyResponse { key, error } => Sum::PubKeyResponse(PubKeyResponse {
            error: error.as_ref().map(error_out),
            pub_key_bytes: key.map(|k| k.as_bytes().to_vec()).unwrap_or_default(),
            pub_key_type: key
                .map(|k| k.key_type().name().to_string())
                .unwrap_or_default(),
        }),
        Wire::SignVoteRequest {
            vote,
            chain_id,
            skip_extension_signing,
        } => Sum::SignVoteRequest(SignVoteRequest {
            vote: vote.clone(),
            chain_id: chain_id.clone(),
            skip_extension_signing: *skip_extension_signing,
        }),
        Wire::SignedVoteResponse { vote, error } => Sum::SignedVoteResponse(SignedVoteResponse {
            vote: Some(vote.clone()),
            error: error.as_ref().map(error_out),
        }),
        Wire::SignProposalRequest { proposal, chain_id } => {
            Sum::SignProposalRequest(SignProposalRequest {
                proposal: proposal.clone(),
                chain_id: chain_id.clone(),
            })
        }
        Wire::SignedProposalResponse { proposal, error } => {
            Sum::SignedProposalResponse(SignedProposalResponse {
                proposal: Some(proposal.clone()),
                error: error.as_ref().map(error_out),
            })
        }
        Wire::PingRequest => Sum::PingRequest(PingRequest {}),
        Wire::PingResponse => Sum::PingResponse(PingResponse {}),
        Wire::SignBytesRequest { value } => Sum::SignBytesRequest(SignBytesRequest {
            value: value.clone(),
        }),
        Wire::SignBytesResponse { signature, error } => Sum::SignBytesResponse(SignBytesResponse {
            signature: signature.clone(),
            error: error.as_ref().map(error_out),
        }),
    };
    Message { sum: Some(sum) }.encode_to_vec()
}
