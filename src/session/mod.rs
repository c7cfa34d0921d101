//! One validator connection: decode → grant → sign → reply.
//!
//! A session answers one request at a time. It never judges a sign request
//! itself: it asks the [`Granter`] and signs only the bytes the granter
//! returns. This module is also the only place that maps outcomes to privval
//! error codes (see [`code`]).
//!
//! Refusals (double-sign rules, wrong chain id, max height) are answered
//! with an error reply, which CometBFT treats as final for that vote, and the
//! connection stays open. Transient failures (no quorum, storage, key
//! backend) are never answered with an error: the session ends so the
//! validator drops this signer and fails over to another one.

mod signer;
mod supervisor;

pub use signer::ChainSigner;
pub use supervisor::{Dial, Supervisor, SupervisorConfig};

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use crate::grant::{GrantError, Granter};
use crate::metrics::{Stage, timed};
use crate::privval::codec::{self, FrameReader, ReadError};
use crate::privval::{self, Request, Response, SignRequest, Version, canonical};
use crate::watermark::{Attempt, Verdict};

/// privval `RemoteSignerError` codes sent by quorumkms.
pub mod code {
    /// The request could not be decoded.
    pub const MALFORMED: i32 = 1;
    /// The request names another chain.
    pub const WRONG_CHAIN: i32 = 2;
    /// The double-sign rules refused the request.
    pub const DOUBLE_SIGN: i32 = 3;
    /// The request is above the chain's configured `max_height`.
    pub const MAX_HEIGHT: i32 = 4;
    /// The request kind is not served (raw byte signing).
    pub const UNSUPPORTED: i32 = 5;
    /// The chain has no watermark and no floor could be had.
    pub const NO_FLOOR: i32 = 6;
}

/// Everything a session needs, shared by all sessions of one validator.
#[derive(Clone)]
pub struct Context {
    /// The chain this validator runs.
    pub chain_id: String,
    /// Protocol version spoken on this connection.
    pub version: Version,
    /// Where permission to sign comes from.
    pub granter: Arc<dyn Granter>,
    /// The chain's key.
    pub signer: ChainSigner,
    /// Refuse to sign above this height.
    pub max_height: Option<i64>,
    /// This validator node's name, when height ownership is on.
    pub origin: Option<String>,
    /// Largest frame accepted.
    pub max_frame: usize,
}

/// Why a session ended without an I/O error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The validator closed the connection.
    Closed,
    /// No grant could be had (no quorum, storage, key backend): the
    /// connection was dropped so the validator fails over.
    Unavailable(String),
}

/// What to do after handling one frame. Short-lived, so the size
/// difference between its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Next {
    Reply(Response),
    Close(String),
}

/// Serves one connection until it closes or a grant is unavailable.
///
/// # Errors
///
/// Only I/O errors on the connection.
pub async fn serve<S>(ctx: &Context, stream: S) -> std::io::Result<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut frames = FrameReader::new(read, ctx.max_frame);
    loop {
        let next = match frames.read_frame().await {
            Ok(None) => return Ok(Ended::Closed),
            Ok(Some(body)) => handle(ctx, &body).await,
            Err(ReadError::Io(e)) => return Err(e),
            Err(ReadError::Codec(e)) => {
                warn!(chain_id = %ctx.chain_id, error = %e, "bad frame");
                Next::Reply(privval::error_reply_unknown(
                    code::MALFORMED,
                    &e.to_string(),
                ))
            }
        };
        match next {
            Next::Reply(response) => {
                let started = std::time::Instant::now();
                codec::write_frame(&mut write, &response.encode(ctx.version)).await?;
                crate::metrics::global().stage(Stage::Reply, started.elapsed());
            }
            Next::Close(reason) => return Ok(Ended::Unavailable(reason)),
        }
    }
}

async fn handle(ctx: &Context, body: &[u8]) -> Next {
    let request = match timed(Stage::Decode, || Request::decode(ctx.version, body)) {
        Ok(request) => request,
        Err(e) => {
            warn!(chain_id = %ctx.chain_id, error = %e, "malformed request");
            let description = format!("malformed request: {e}");
            let reply = privval::error_reply_for_malformed(
                ctx.version,
                body,
                code::MALFORMED,
                &description,
            )
            .unwrap_or_else(|| privval::error_reply_unknown(code::MALFORMED, &description));
            return Next::Reply(reply);
        }
    };
    match &request {
        Request::Ping => Next::Reply(Response::pong()),
        Request::PubKey { chain_id } => {
            if let Some(reply) = wrong_chain(ctx, &request, chain_id) {
                return Next::Reply(reply);
            }
            let Some(key) = ctx.signer.public_key() else {
                // Nothing to offer until a key generation gives this node
                // a share: the validator tries another signer.
                return Next::Close(format!(
                    "no share of chain {} on this node yet (run `quorumkms threshold dkg`)",
                    ctx.chain_id
                ));
            };
            if !ctx.version.supports_key_type(key.key_type()) {
                warn!(chain_id = %ctx.chain_id, version = %ctx.version, key_type = %key.key_type(),
                    "public key request for a key type this protocol version cannot carry");
                return Next::Reply(privval::error_reply(
                    &request,
                    code::UNSUPPORTED,
                    &format!(
                        "this signer holds a {} key for chain {}; CometBFT {} validators take only \
                         ed25519 keys from a remote signer (secp256k1 needs v1.0)",
                        key.key_type(),
                        ctx.chain_id,
                        ctx.version
                    ),
                ));
            }
            Next::Reply(Response::pub_key(key))
        }
        Request::SignRawBytes { .. } => Next::Reply(privval::error_reply(
            &request,
            code::UNSUPPORTED,
            "raw byte signing is refused: it bypasses double-sign protection",
        )),
        Request::Sign(sign) => sign_request(ctx, &request, sign).await,
    }
}

fn wrong_chain(ctx: &Context, request: &Request, chain_id: &str) -> Option<Response> {
    (chain_id != ctx.chain_id).then(|| {
        warn!(expected = %ctx.chain_id, got = %chain_id, "request for another chain");
        privval::error_reply(
            request,
            code::WRONG_CHAIN,
            &format!("wrong chain id: expected {}, got {chain_id}", ctx.chain_id),
        )
    })
}

async fn sign_request(ctx: &Context, request: &Request, sign: &SignRequest) -> Next {
    let kind = sign.position.step.to_string();
    let next = decide(ctx, request, sign).await;
    crate::metrics::global().sign(&ctx.chain_id, &kind, next.1);
    next.0
}

/// Answers one sign request, with the result label for the metrics.
async fn decide(ctx: &Context, request: &Request, sign: &SignRequest) -> (Next, &'static str) {
    if let Some(reply) = wrong_chain(ctx, request, &sign.chain_id) {
        return (Next::Reply(reply), "wrong_chain");
    }
    let position = sign.position;
    if let Some(max) = ctx.max_height
        && position.height > max
    {
        let reply = privval::error_reply(
            request,
            code::MAX_HEIGHT,
            &format!("height {} is above max_height {max}", position.height),
        );
        return (Next::Reply(reply), "max_height");
    }
    let attempt = Attempt {
        position,
        sign_bytes: sign.sign_bytes.clone(),
        origin: ctx.origin.clone(),
        extension: sign
            .extension_sign_bytes
            .clone()
            .filter(|_| ctx.signer.needs_granted_extension()),
    };
    let started = std::time::Instant::now();
    let verdict = ctx.granter.grant(&ctx.chain_id, attempt).await;
    crate::metrics::global().grant_time(&ctx.chain_id, started.elapsed());
    let granted = match verdict {
        Ok(Verdict::Sign(bytes)) => bytes,
        Ok(Verdict::Refuse(refusal)) => {
            info!(chain_id = %ctx.chain_id, %position, %refusal, "refused");
            let reply = privval::error_reply(request, code::DOUBLE_SIGN, &refusal.to_string());
            return (Next::Reply(reply), "refused");
        }
        Err(GrantError::UnknownChain(chain)) => {
            let reply = privval::error_reply(
                request,
                code::WRONG_CHAIN,
                &format!("chain {chain} is not served here"),
            );
            return (Next::Reply(reply), "wrong_chain");
        }
        // Every signer of this chain would lack the floor too: answer, so
        // the validator learns why, and try again on the next request.
        Err(GrantError::NoFloor(cause)) => {
            let reply = privval::error_reply(request, code::NO_FLOOR, &cause.to_string());
            return (Next::Reply(reply), "no_floor");
        }
        Err(e) => return (Next::Close(e.to_string()), "unavailable"),
    };
    // Defence in depth: a grant may only hand back these bytes or stored
    // ones that differ from them in the timestamp alone.
    if granted != sign.sign_bytes && !canonical::same_except_timestamp(&granted, &sign.sign_bytes) {
        warn!(chain_id = %ctx.chain_id, %position, "granted bytes do not match the request");
        let reply = privval::error_reply(
            request,
            code::DOUBLE_SIGN,
            "granted bytes do not match the request",
        );
        return (Next::Reply(reply), "refused");
    }
    let started = std::time::Instant::now();
    let signature = match ctx.signer.sign(&granted).await {
        Ok(signature) => signature,
        Err(e) => return (Next::Close(e), "key_error"),
    };
    crate::metrics::global().stage(Stage::Sign, started.elapsed());
    let extension_signature = match &sign.extension_sign_bytes {
        None => None,
        Some(bytes) => match ctx.signer.sign(bytes).await {
            Ok(signature) => Some(signature),
            Err(e) => return (Next::Close(e), "key_error"),
        },
    };
    debug!(chain_id = %ctx.chain_id, %position, "signed");
    (
        Next::Reply(sign.reply(&granted, signature, extension_signature)),
        "signed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::softsign::SoftSigner;
    use crate::keys::{ConsensusSigner, KeyType, PublicKey};

    /// Never asked: public key requests need no grant.
    struct NoGrants;

    impl Granter for NoGrants {
        fn grant<'a>(
            &'a self,
            chain_id: &'a str,
            _attempt: Attempt,
        ) -> futures_util::future::BoxFuture<'a, Result<Verdict, GrantError>> {
            Box::pin(async move { Err(GrantError::UnknownChain(chain_id.to_string())) })
        }
    }

    async fn ask_pub_key(version: Version, signer: Arc<dyn ConsensusSigner>) -> Response {
        let ctx = Context {
            chain_id: "c".into(),
            version,
            granter: Arc::new(NoGrants),
            signer: ChainSigner::Key(signer),
            max_height: None,
            origin: None,
            max_frame: codec::DEFAULT_MAX_FRAME,
        };
        let body = Request::PubKey {
            chain_id: "c".into(),
        }
        .encode(version);
        match handle(&ctx, &body).await {
            Next::Reply(response) => response,
            Next::Close(reason) => panic!("closed: {reason}"),
        }
    }

    #[tokio::test]
    async fn secp256k1_public_key_only_over_v1() {
        let signer = Arc::new(SoftSigner::generate_type(KeyType::Secp256k1));
        let public = signer.public_key();
        let reply = ask_pub_key(Version::V1_0, signer.clone()).await;
        assert_eq!(reply, Response::pub_key(public));
        for version in [Version::V0_34, Version::V0_37, Version::V0_38] {
            match ask_pub_key(version, signer.clone()).await {
                Response::PubKey {
                    key: None,
                    error: Some(error),
                } => {
                    assert_eq!(error.code, code::UNSUPPORTED);
                    assert!(
                        error.description.contains("secp256k1 needs v1.0"),
                        "{error:?}"
                    );
                }
                other => panic!("{version}: {other:?}"),
            }
        }
        // Ed25519 keys are served to every version.
        let ed = Arc::new(SoftSigner::from_seed([1; 32]));
        let reply = ask_pub_key(Version::V0_34, ed.clone()).await;
        assert!(matches!(
            reply,
            Response::PubKey {
                key: Some(PublicKey::Ed25519(_)),
                ..
            }
        ));
    }
}
