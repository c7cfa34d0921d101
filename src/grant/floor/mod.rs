//! A chain's floor: where its watermark starts when it has none.
//!
//! A fresh signer (a new cluster, a new chain, a state file nobody
//! imported) starts from an empty watermark and would sign anything. An
//! operator moving from another signer who forgets `state import` could
//! then sign heights the old signer signed. So before a chain's first
//! grant, [`FloorGranter`] takes a floor ([`Floor`], per `[[chain]]`):
//! - `rpc`: the latest block height H of the chain, from a CometBFT RPC's
//!   `/status` ([`status`], [`http`]); nothing at or below H is signed;
//! - `first-request`: the first request's height h; nothing below h is;
//! - `none`: no floor, on the operator's word;
//! - not configured: nothing is signed until the operator picks one of the
//!   three or imports the old signer's state.
//!
//! The floor becomes the chain's watermark the way an import does (the
//! state file, fsync'd; a `Raise` through Raft, which the state machine
//! applies only to a chain still without a watermark) before the request
//! that needed it is decided. When no floor can be had (no RPC answers),
//! the request is refused with [`GrantError::NoFloor`] and the next one
//! tries again: a chain without a watermark never signs without a floor.

pub mod http;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, join_all};

use self::http::RpcUrl;
use super::{Cause, GrantError, Granter};
use crate::watermark::{Attempt, Position, SignState, Step, Verdict};

/// How long one RPC may take to answer `/status`. The RPCs are asked at
/// once, and a validator waits 5 s for its signer.
pub const RPC_TIMEOUT: Duration = Duration::from_millis(1_500);

/// Where a chain's floor comes from (`[[chain]] floor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Floor {
    /// Not configured: a chain without a watermark signs nothing.
    Unset,
    /// No floor (`floor = "none"`).
    None,
    /// The first request's height (`floor = "first-request"`).
    FirstRequest,
    /// The latest height of the chain, from these RPCs (`floor = "rpc"`,
    /// `floor_rpc`): the highest answer wins.
    Rpc(Vec<RpcUrl>),
}

/// A floor found for a chain: nothing at or below `height` may be signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The highest height refused.
    pub height: i64,
    /// Where it came from, for the logs and the raise record:
    /// `rpc http://...` or `first request`.
    pub source: String,
}

impl Found {
    /// The watermark this floor stands for: the last position at
    /// `height`, with no sign bytes, so every position at `height` and
    /// below is refused and the next height is free (and owned, under
    /// height ownership, by whoever asks first).
    pub fn state(&self) -> SignState {
        SignState {
            position: Some(Position {
                height: self.height,
                round: i32::MAX,
                step: Step::Precommit,
            }),
            ..SignState::default()
        }
    }
}

/// Why a chain without a watermark has no floor.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// No floor configured.
    #[error(
        "chain {chain_id} has no watermark and no floor: set `floor` in its [[chain]] section to \
         \"rpc\" (with floor_rpc = [\"http://NODE:26657\"]: nothing at or below the chain's latest \
         height is signed), \"first-request\" (nothing below the first request's height) or \
         \"none\", or run `quorumkms state import` with the previous signer's state"
    )]
    Unset {
        /// The chain.
        chain_id: String,
    },
    /// No RPC gave a usable height.
    #[error(
        "chain {chain_id} has no watermark and no RPC gave its latest height, so nothing is \
         signed (the next request tries again): {}",
        .errors.join("; ")
    )]
    NoAnswer {
        /// The chain.
        chain_id: String,
        /// Each RPC's failure.
        errors: Vec<String>,
    },
}

impl Floor {
    /// Finds the floor of `chain_id` for a first request at `height`:
    /// `None` when no floor is wanted.
    ///
    /// # Errors
    ///
    /// No floor configured, or no RPC answered usably.
    pub async fn find(&self, chain_id: &str, height: i64) -> Result<Option<Found>, FloorError> {
        match self {
            Floor::None => Ok(None),
            Floor::Unset => Err(FloorError::Unset {
                chain_id: chain_id.to_string(),
            }),
            Floor::FirstRequest => Ok(Some(Found {
                height: height.saturating_sub(1).max(0),
                source: format!("first request (height {height})"),
            })),
            Floor::Rpc(urls) => {
                let answers = join_all(urls.iter().map(|url| ask(url, chain_id))).await;
                let mut best: Option<Found> = None;
                let mut errors = Vec::new();
                for (url, answer) in urls.iter().zip(answers) {
                    match answer {
                        Ok(height) if best.as_ref().is_none_or(|b| height > b.height) => {
                            best = Some(Found {
                                height,
                                source: format!("rpc {url}"),
                            });
                        }
                        Ok(_) => {}
                        Err(e) => errors.push(format!("{url}: {e}")),
                    }
                }
                match best {
                    Some(found) => Ok(Some(found)),
                    None => Err(FloorError::NoAnswer {
                        chain_id: chain_id.to_string(),
                        errors,
                    }),
                }
            }
        }
    }
}

/// Asks one RPC for the chain's latest height.
async fn ask(url: &RpcUrl, chain_id: &str) -> Result<i64, String> {
    let body = http::get_status(url, RPC_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let status = status::parse(&body).map_err(|e| e.to_string())?;
    if let Some(network) = &status.network
        && network != chain_id
    {
        return Err(format!("it serves chain {network:?}, not {chain_id:?}"));
    }
    if status.catching_up {
        return Err(format!(
            "it is catching up (at height {}): its latest height is not the chain's",
            status.latest_height
        ));
    }
    Ok(status.latest_height)
}

/// A granter whose chains can take a floor.
pub trait Floored: Granter {
    /// Whether `chain_id` has a watermark.
    fn has_watermark(&self, chain_id: &str) -> bool;

    /// Makes `found` the watermark of `chain_id`, durably, if the chain
    /// still has none (otherwise the floor is moot and nothing changes).
    fn set_floor<'a>(
        &'a self,
        chain_id: &'a str,
        found: &'a Found,
    ) -> BoxFuture<'a, Result<(), GrantError>>;
}

/// Takes each chain's floor before its first grant, then grants through
/// the inner granter.
pub struct FloorGranter<G> {
    inner: Arc<G>,
    floors: BTreeMap<String, Floor>,
}

impl<G: Floored> FloorGranter<G> {
    /// Grants through `inner`, with `floors` by chain id (a chain not
    /// listed has [`Floor::Unset`]).
    pub fn new(inner: Arc<G>, floors: BTreeMap<String, Floor>) -> FloorGranter<G> {
        FloorGranter { inner, floors }
    }

    async fn grant_above_floor(
        &self,
        chain_id: &str,
        attempt: Attempt,
    ) -> Result<Verdict, GrantError> {
        if !self.inner.has_watermark(chain_id) {
            let floor = self.floors.get(chain_id).unwrap_or(&Floor::Unset);
            match floor.find(chain_id, attempt.position.height).await {
                Ok(Some(found)) => {
                    tracing::info!(
                        %chain_id,
                        height = found.height,
                        source = %found.source,
                        "no watermark: taking the chain's floor"
                    );
                    self.inner.set_floor(chain_id, &found).await?;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(%chain_id, error = %e, "no floor: refusing to sign");
                    return Err(GrantError::NoFloor(Cause::new(e)));
                }
            }
        }
        self.inner.grant(chain_id, attempt).await
    }
}

impl<G: Floored> Granter for FloorGranter<G> {
    fn grant<'a>(
        &'a self,
        chain_id: &'a str,
        attempt: Attempt,
    ) -> BoxFuture<'a, Result<Verdict, GrantError>> {
        Box::pin(self.grant_above_floor(chain_id, attempt))
    }
}
