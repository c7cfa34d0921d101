//! Replies to the validator: [`Response`], version-neutral until
//! [`Response::encode`], and the error replies the session sends, shaped
//! as CometBFT expects for each kind of request.

use tendermint_proto::v0_38::types::{BlockId, PartSetHeader};

use super::wire::{self, Wire};
use super::{
    CodecError, Proposal, RemoteError, Request, Signable, Version, Vote, malformed, sign_bytes,
};
use crate::keys::PublicKey;

/// A reply to the validator, version-neutral until [`Response::encode`].
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// Answer to a ping.
    Pong,
    /// The public key, or why there is none.
    PubKey {
        /// The key; `None` with an error.
        key: Option<PublicKey>,
        /// Set when the key cannot be given.
        error: Option<RemoteError>,
    },
    /// A signed vote, or the zero vote and an error.
    SignedVote {
        /// The vote with its signature(s).
        vote: Vote,
        /// Set on refusal.
        error: Option<RemoteError>,
    },
    /// A signed proposal, or the zero proposal and an error.
    SignedProposal {
        /// The proposal with its signature.
        proposal: Proposal,
        /// Set on refusal.
        error: Option<RemoteError>,
    },
    /// v1.0 answer to a sign-bytes request.
    SignedBytes {
        /// The signature; empty with an error.
        signature: Vec<u8>,
        /// Set on refusal.
        error: Option<RemoteError>,
    },
}

impl Response {
    /// The answer to a ping.
    pub fn pong() -> Response {
        Response::Pong
    }

    /// The answer to a public key request.
    pub fn pub_key(key: impl Into<PublicKey>) -> Response {
        Response::PubKey {
            key: Some(key.into()),
            error: None,
        }
    }

    /// The error this response carries, if any.
    pub fn error(&self) -> Option<&RemoteError> {
        match self {
            Response::Pong => None,
            Response::PubKey { error, .. }
            | Response::SignedVote { error, .. }
            | Response::SignedProposal { error, .. }
            | Response::SignedBytes { error, .. } => error.as_ref(),
        }
    }

    /// Encodes this response as a `privval.Message` body of `version` (no
    /// length prefix). [`Response::SignedBytes`] exists only in v1.0 and
    /// encodes as an empty message before it.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        let wire = match self {
            Response::Pong => Wire::PingResponse,
            Response::PubKey { key, error } => Wire::PubKeyResponse {
                key: *key,
                error: error.clone(),
            },
            Response::SignedVote { vote, error } => Wire::SignedVoteResponse {
                vote: vote.clone(),
                error: error.clone(),
            },
            Response::SignedProposal { proposal, error } => Wire::SignedProposalResponse {
                proposal: proposal.clone(),
                error: error.clone(),
            },
            Response::SignedBytes { signature, error } => Wire::SignBytesResponse {
                signature: signature.clone(),
                error: error.clone(),
            },
        };
        version.encode(&wire)
    }

    /// Decodes a response body of `version` (for tools that play the
    /// validator). Nothing but the message shape is checked.
    ///
    /// # Errors
    ///
    /// [`CodecError::Malformed`] for bytes that do not decode, a public key
    /// of an unknown type or length, or a request instead of a response.
    pub fn decode(version: Version, body: &[u8]) -> Result<Response, CodecError> {
        match version.decode(body)? {
            Wire::PingResponse => Ok(Response::Pong),
            Wire::PubKeyResponse { key, error } => Ok(Response::PubKey { key, error }),
            Wire::SignedVoteResponse { vote, error } => Ok(Response::SignedVote { vote, error }),
            Wire::SignedProposalResponse { proposal, error } => {
                Ok(Response::SignedProposal { proposal, error })
            }
            Wire::SignBytesResponse { signature, error } => {
                Ok(Response::SignedBytes { signature, error })
            }
            other => Err(malformed(format!(
                "unexpected message {}, want a response",
                other.name()
            ))),
        }
    }
}

/// What kind of answer a request gets.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Ping,
    PubKey,
    Vote,
    Proposal,
    Bytes,
}

pub(super) fn error_for(kind: Kind, code: i32, description: &str) -> Response {
    let error = Some(RemoteError {
        code,
        description: description.to_owned(),
    });
    match kind {
        Kind::Ping => Response::Pong,
        Kind::PubKey => Response::PubKey { key: None, error },
        Kind::Vote => Response::SignedVote {
            vote: zero_vote(),
            error,
        },
        Kind::Proposal => Response::SignedProposal {
            proposal: zero_proposal(),
            error,
        },
        Kind::Bytes => Response::SignedBytes {
            signature: Vec::new(),
            error,
        },
    }
}

/// An error reply of the kind matching `request`: a `PubKeyResponse`,
/// `SignedVoteResponse` or `SignedProposalResponse` (with a zero vote or
/// proposal, as CometBFT sends), or v1.0's `SignBytesResponse`, each with a
/// `RemoteSignerError{code, description}`.
///
/// A ping cannot fail and has no error field: its reply is a pong.
pub fn error_reply(request: &Request, code: i32, description: &str) -> Response {
    let kind = match request {
        Request::Ping => Kind::Ping,
        Request::PubKey { .. } => Kind::PubKey,
        Request::Sign(sign) => match &*sign.message {
            Signable::Vote { .. } => Kind::Vote,
            Signable::Proposal(_) => Kind::Proposal,
        },
        Request::SignRawBytes { .. } => Kind::Bytes,
    };
    error_for(kind, code, description)
}

/// An error reply for a frame whose kind cannot be known (oversized, or not
/// a recognisable message). Votes are what a validator asks for most, so
/// the error comes as a `SignedVoteResponse`: the validator reads an error
/// either way, and the connection stays in sync.
pub fn error_reply_unknown(code: i32, description: &str) -> Response {
    error_for(Kind::Vote, code, description)
}

/// An error reply for a request body that [`Request::decode`] refused, of
/// the kind its oneof field number asks for, so a bad request still gets
/// an answer of the right kind. `None` when the field number names no
/// request of `version` (answer nothing, or close the connection).
pub fn error_reply_for_malformed(
    version: Version,
    body: &[u8],
    code: i32,
    description: &str,
) -> Option<Response> {
    let kind = match wire::first_field(body)? {
        1 => Kind::PubKey,
        3 => Kind::Vote,
        5 => Kind::Proposal,
        7 => Kind::Ping,
        9 if version == Version::V1_0 => Kind::Bytes,
        _ => return None,
    };
    Some(error_for(kind, code, description))
}

/// The zero vote as CometBFT encodes it in an error reply: its block id
/// and timestamp are non-nullable, so they are present and empty (the
/// timestamp is Go's zero time).
fn zero_vote() -> Vote {
    Vote {
        block_id: Some(zero_block_id()),
        timestamp: Some(sign_bytes::timestamp_or_zero(None)),
        ..Vote::default()
    }
}

/// The zero proposal as CometBFT encodes it in an error reply.
fn zero_proposal() -> Proposal {
    Proposal {
        block_id: Some(zero_block_id()),
        timestamp: Some(sign_bytes::timestamp_or_zero(None)),
        ..Proposal::default()
    }
}

fn zero_block_id() -> BlockId {
    BlockId {
        hash: Vec::new(),
        part_set_header: Some(PartSetHeader::default()),
    }
}
