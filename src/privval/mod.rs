//! The privval protocol: framing, per-version messages and sign bytes.
//!
//! A validator sends a `privval.Message` per frame ([`codec`]); its shape
//! depends on the CometBFT [`Version`]. [`Request::decode`] turns one into a
//! version-neutral [`Request`], validating it and computing the canonical
//! sign bytes on the way ([`sign_bytes`]); [`Response::encode`] writes the
//! answer back in the same version. Decoding never signs, checks chain ids
//! or consults the watermark: that is the session's job.
//!
//! The reverse direction ([`Request::encode`], [`Response::decode`]) exists
//! for tools and tests that play the validator.

pub mod canonical;
pub mod codec;
pub mod sign_bytes;

mod response;
mod v1;
mod wire;

// The tendermint-proto versions, each mapped to and from the
// version-neutral form by one macro; v0.34 and v0.37 votes carry no
// extension fields.
mod v0_34 {
    super::wire::tendermint_codec!(v0_34);
}
mod v0_37 {
    super::wire::tendermint_codec!(v0_37);
}
mod v0_38 {
    super::wire::tendermint_codec!(v0_38, extension, extension_signature);
}

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::types::{BlockId, SignedMsgType};

pub use codec::CodecError;
pub use response::{Response, error_reply, error_reply_for_malformed, error_reply_unknown};
/// A proposal of any version (the message is the same in all of them).
pub use tendermint_proto::v0_38::types::Proposal;
/// A vote of any version, in its v0.38 form (v0.34 and v0.37 lack only the
/// extension fields; v1.0 is the same message).
pub use tendermint_proto::v0_38::types::Vote;

use crate::watermark::{Position, Step};
use wire::Wire;

/// A CometBFT privval protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Version {
    /// CometBFT v0.34.
    #[serde(rename = "v0.34")]
    V0_34,
    /// CometBFT v0.37.
    #[serde(rename = "v0.37")]
    V0_37,
    /// CometBFT v0.38: adds vote extensions.
    #[serde(rename = "v0.38")]
    V0_38,
    /// CometBFT v1.0: raw public key bytes, optional extension signing and
    /// sign-bytes requests.
    #[serde(rename = "v1.0")]
    V1_0,
}

impl Version {
    /// Every supported version, oldest first.
    pub const ALL: [Version; 4] = [
        Version::V0_34,
        Version::V0_37,
        Version::V0_38,
        Version::V1_0,
    ];

    /// Whether a validator of this version can run with a key of
    /// `key_type`: secp256k1 consensus keys arrived with CometBFT v1.0
    /// (`pub_key_type` in `PubKeyResponse`); earlier versions take only
    /// ed25519 from a remote signer.
    pub fn supports_key_type(self, key_type: crate::keys::KeyType) -> bool {
        match key_type {
            crate::keys::KeyType::Ed25519 => true,
            crate::keys::KeyType::Secp256k1 => self == Version::V1_0,
        }
    }

    /// Whether votes of this version carry extensions.
    pub fn has_vote_extensions(self) -> bool {
        matches!(self, Version::V0_38 | Version::V1_0)
    }

    fn decode(self, body: &[u8]) -> Result<Wire, CodecError> {
        match self {
            Version::V0_34 => v0_34::decode(body),
            Version::V0_37 => v0_37::decode(body),
            Version::V0_38 => v0_38::decode(body),
            Version::V1_0 => v1::decode(body),
        }
    }

    fn encode(self, wire: &Wire) -> Vec<u8> {
        match self {
            Version::V0_34 => v0_34::encode(wire),
            Version::V0_37 => v0_37::encode(wire),
            Version::V0_38 => v0_38::encode(wire),
            Version::V1_0 => v1::encode(wire),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V0_34 => "v0.34",
            Version::V0_37 => "v0.37",
            Version::V0_38 => "v0.38",
            Version::V1_0 => "v1.0",
        })
    }
}

/// A version string that names no supported version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown privval version {0:?} (want v0.34, v0.37, v0.38 or v1.0)")]
pub struct UnknownVersion(pub String);

impl FromStr for Version {
    type Err = UnknownVersion;

    /// Accepts "v0.34", "v0.37", "v0.38", "v1.0", with or without the "v".
    fn from_str(s: &str) -> Result<Version, UnknownVersion> {
        match s.trim().trim_start_matches('v') {
            "0.34" => Ok(Version::V0_34),
            "0.37" => Ok(Version::V0_37),
            "0.38" => Ok(Version::V0_38),
            "1.0" | "1" => Ok(Version::V1_0),
            _ => Err(UnknownVersion(s.to_owned())),
        }
    }
}

/// The error a signer reports in a response (`RemoteSignerError`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteError {
    /// Error code (CometBFT does not interpret it).
    pub code: i32,
    /// Human-readable reason.
    pub description: String,
}

/// A request from the validator, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Liveness check; answered with [`Response::pong`].
    Ping,
    /// The validator asks for the public key it expects to sign with.
    PubKey {
        /// Chain the validator runs (may be empty in old versions).
        chain_id: String,
    },
    /// A vote or proposal to sign.
    Sign(SignRequest),
    /// v1.0 `SignBytesRequest`: arbitrary bytes to sign. quorumkms refuses
    /// these, as they bypass double-sign protection: answer them with
    /// [`error_reply`].
    SignRawBytes {
        /// The bytes the validator wants signed.
        bytes: Vec<u8>,
    },
}

impl Request {
    /// Decodes and validates a `privval.Message` body of `version`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Malformed`] for bytes that do not decode, a response
    /// or unknown message instead of a request, a negative height or round,
    /// a vote type other than prevote/precommit in a vote request or other
    /// than proposal in a proposal request, an invalid timestamp or block
    /// id, or a vote extension where CometBFT's FilePV refuses one.
    pub fn decode(version: Version, body: &[u8]) -> Result<Request, CodecError> {
        match version.decode(body)? {
            Wire::PingRequest => Ok(Request::Ping),
            Wire::PubKeyRequest { chain_id } => Ok(Request::PubKey { chain_id }),
            Wire::SignVoteRequest {
                vote,
                chain_id,
                skip_extension_signing,
            } => {
                let vote = vote.ok_or_else(|| malformed("sign_vote_request without a vote"))?;
                SignRequest::from_vote(version, chain_id, vote, skip_extension_signing)
                    .map(Request::Sign)
            }
            Wire::SignProposalRequest { proposal, chain_id } => {
                let proposal = proposal
                    .ok_or_else(|| malformed("sign_proposal_request without a proposal"))?;
                SignRequest::from_proposal(chain_id, proposal).map(Request::Sign)
            }
            Wire::SignBytesRequest { value } => Ok(Request::SignRawBytes { bytes: value }),
            other => Err(malformed(format!(
                "unexpected message {}, want a request",
                other.name()
            ))),
        }
    }

    /// Encodes this request as a `privval.Message` body of `version` (for
    /// tools that play the validator). A [`Request::SignRawBytes`] encodes
    /// as an empty message before v1.0.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        let wire = match self {
            Request::Ping => Wire::PingRequest,
            Request::PubKey { chain_id } => Wire::PubKeyRequest {
                chain_id: chain_id.clone(),
            },
            Request::Sign(sign) => match &*sign.message {
                Signable::Vote {
                    vote,
                    skip_extension_signing,
                } => Wire::SignVoteRequest {
                    vote: Some(vote.clone()),
                    chain_id: sign.chain_id.clone(),
                    skip_extension_signing: *skip_extension_signing,
                },
                Signable::Proposal(proposal) => Wire::SignProposalRequest {
                    proposal: Some(proposal.clone()),
                    chain_id: sign.chain_id.clone(),
                },
            },
            Request::SignRawBytes { bytes } => Wire::SignBytesRequest {
                value: bytes.clone(),
            },
        };
        version.encode(&wire)
    }
}

/// The vote or proposal a sign request carried, kept to echo it back.
#[derive(Clone, Debug, PartialEq)]
enum Signable {
    Vote {
        vote: Vote,
        skip_extension_signing: bool,
    },
    Proposal(Proposal),
}

/// A validated request to sign a vote or a proposal.
#[derive(Clone, Debug, PartialEq)]
pub struct SignRequest {
    /// Chain the validator signs for, as it says (unchecked).
    pub chain_id: String,
    /// Height, round and step of the vote or proposal.
    pub position: Position,
    /// Canonical sign bytes, length-delimited: exactly what CometBFT's
    /// FilePV signs.
    pub sign_bytes: Vec<u8>,
    /// Canonical vote extension sign bytes, for non-nil precommits in v0.38
    /// and v1.0 (unless v1.0's `skip_extension_signing` is set). They are
    /// signed fresh every time, without double-sign protection.
    pub extension_sign_bytes: Option<Vec<u8>>,
    /// Whether the reply's extension signature is set by the signer (v0.38,
    /// or v1.0 without `skip_extension_signing`) rather than echoed.
    signs_extensions: bool,
    message: Box<Signable>,
}

impl SignRequest {
    /// Validates a vote to sign and computes its sign bytes, as
    /// [`Request::decode`] does for a `SignVoteRequest` of `version`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Malformed`] as described on [`Request::decode`], and for
    /// extension fields or `skip_extension_signing` in a version without
    /// them.
    pub fn from_vote(
        version: Version,
        chain_id: String,
        vote: Vote,
        skip_extension_signing: bool,
    ) -> Result<SignRequest, CodecError> {
        let step = match SignedMsgType::try_from(vote.r#type) {
            Ok(SignedMsgType::Prevote) => Step::Prevote,
            Ok(SignedMsgType::Precommit) => Step::Precommit,
            _ => {
                return Err(malformed(format!(
                    "vote of type {}, want prevote (1) or precommit (2)",
                    vote.r#type
                )));
            }
        };
        check_height_round(vote.height, vote.round)?;
        check_timestamp(vote.timestamp.as_ref())?;
        check_block_id(vote.block_id.as_ref())?;
        if !version.has_vote_extensions()
            && (!vote.extension.is_empty() || !vote.extension_signature.is_empty())
        {
            return Err(malformed(format!("vote extension in a {version} vote")));
        }
        if skip_extension_signing && version != Version::V1_0 {
            return Err(malformed(format!(
                "skip_extension_signing in a {version} request"
            )));
        }
        let signs_extensions = version.has_vote_extensions() && !skip_extension_signing;
        let extension_sign_bytes = if !signs_extensions {
            None
        } else if step == Step::Precommit && !sign_bytes::block_id_is_nil(vote.block_id.as_ref()) {
            Some(sign_bytes::vote_extension(&chain_id, &vote))
        } else if !vote.extension.is_empty() {
            return Err(malformed(
                "unexpected vote extension: extensions are only allowed in non-nil precommits",
            ));
        } else {
            None
        };
        Ok(SignRequest {
            position: Position {
                height: vote.height,
                round: vote.round,
                step,
            },
            sign_bytes: sign_bytes::vote(&chain_id, &vote),
            extension_sign_bytes,
            chain_id,
            signs_extensions,
            message: Box::new(Signable::Vote {
                vote,
                skip_extension_signing,
            }),
        })
    }

    /// Validates a proposal to sign and computes its sign bytes, as
    /// [`Request::decode`] does for a `SignProposalRequest`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Malformed`] as described on [`Request::decode`], and for
    /// a POL round below -1.
    pub fn from_proposal(chain_id: String, proposal: Proposal) -> Result<SignRequest, CodecError> {
        if proposal.r#type != SignedMsgType::Proposal as i32 {
            return Err(malformed(format!(
                "proposal of type {}, want proposal (32)",
                proposal.r#type
            )));
        }
        check_height_round(proposal.height, proposal.round)?;
        if proposal.pol_round < -1 {
            return Err(malformed(format!(
                "proposal POL round {}, want -1 or more",
                proposal.pol_round
            )));
        }
        check_timestamp(proposal.timestamp.as_ref())?;
        check_block_id(proposal.block_id.as_ref())?;
        Ok(SignRequest {
            position: Position {
                height: proposal.height,
                round: proposal.round,
                step: Step::Propose,
            },
            sign_bytes: sign_bytes::proposal(&chain_id, &proposal),
            extension_sign_bytes: None,
            chain_id,
            signs_extensions: false,
            message: Box::new(Signable::Proposal(proposal)),
        })
    }

    /// The vote to sign, when this is a vote request.
    pub fn vote(&self) -> Option<&Vote> {
        match &*self.message {
            Signable::Vote { vote, .. } => Some(vote),
            Signable::Proposal(_) => None,
        }
    }

    /// The proposal to sign, when this is a proposal request.
    pub fn proposal(&self) -> Option<&Proposal> {
        match &*self.message {
            Signable::Proposal(p) => Some(p),
            Signable::Vote { .. } => None,
        }
    }

    /// Whether a v1.0 validator asked not to have the extension signed.
    pub fn skip_extension_signing(&self) -> bool {
        matches!(
            &*self.message,
            Signable::Vote {
                skip_extension_signing: true,
                ..
            }
        )
    }

    /// The signed reply: the request's vote or proposal with `signature`,
    /// and with its timestamp replaced by the one inside `signed_bytes`
    /// (the granted bytes may be stored ones carrying an earlier timestamp,
    /// and the timestamp must match what was signed).
    ///
    /// For votes, `extension_signature` is set when given; when the signer
    /// is responsible for extensions and none is given, the extension
    /// signature is cleared, as FilePV does for prevotes and nil precommits.
    pub fn reply(
        &self,
        signed_bytes: &[u8],
        signature: [u8; 64],
        extension_signature: Option<[u8; 64]>,
    ) -> Response {
        let timestamp = canonical::timestamp(signed_bytes);
        match &*self.message {
            Signable::Vote { vote, .. } => {
                let mut vote = vote.clone();
                if timestamp.is_some() {
                    vote.timestamp = timestamp;
                }
                vote.signature = signature.to_vec();
                match extension_signature {
                    Some(sig) => vote.extension_signature = sig.to_vec(),
                    None if self.signs_extensions => vote.extension_signature.clear(),
                    None => {}
                }
                Response::SignedVote { vote, error: None }
            }
            Signable::Proposal(proposal) => {
                let mut proposal = proposal.clone();
                if timestamp.is_some() {
                    proposal.timestamp = timestamp;
                }
                proposal.signature = signature.to_vec();
                Response::SignedProposal {
                    proposal,
                    error: None,
                }
            }
        }
    }
}

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::Malformed(reason.into())
}

fn check_height_round(height: i64, round: i32) -> Result<(), CodecError> {
    if height < 0 {
        return Err(malformed(format!("negative height {height}")));
    }
    if round < 0 {
        return Err(malformed(format!("negative round {round}")));
    }
    Ok(())
}

/// Seconds of 10000-01-01T00:00:00Z, the first instant a protobuf
/// timestamp cannot hold.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_800;

/// Rejects timestamps Go's protobuf runtime would refuse to decode.
fn check_timestamp(ts: Option<&Timestamp>) -> Result<(), CodecError> {
    let Some(ts) = ts else { return Ok(()) };
    if !(sign_bytes::GO_ZERO_TIME_SECONDS..MAX_TIMESTAMP_SECONDS).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(malformed(format!(
            "timestamp out of range: {}s {}ns",
            ts.seconds, ts.nanos
        )));
    }
    Ok(())
}

/// Rejects block ids CometBFT cannot canonicalize (hashes must be empty or
/// 32 bytes).
fn check_block_id(id: Option<&BlockId>) -> Result<(), CodecError> {
    let Some(id) = id else { return Ok(()) };
    let psh_hash = id.part_set_header.as_ref().map_or(0, |p| p.hash.len());
    for (what, len) in [("block hash", id.hash.len()), ("part set hash", psh_hash)] {
        if len != 0 && len != 32 {
            return Err(malformed(format!("{what} of {len} bytes, want 0 or 32")));
        }
    }
    Ok(())
}
