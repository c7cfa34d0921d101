//! Vetting an operator's raise before it is proposed: the server's own
//! checks, whatever the client checked.
//!
//! A raise can never be undone, so a node refuses one that is malformed
//! (sign bytes that are not a vote or proposal of that chain at that
//! position, a chain id CometBFT would not accept) or implausible (a
//! height no chain will reach, or a jump far above the current watermark)
//! unless the operator forces it. Of the rest, a signature is kept only
//! as the 64-byte partner of vetted sign bytes (so an export back to a
//! file signer carries the pair a file signer needs; a wrong one could at
//! worst be repeated by it, never sign anything new), and height
//! ownership starts afresh with the next request.

use super::{Position, SignState, inspect};

/// An Ed25519 signature's length.
const SIGNATURE_LEN: usize = 64;

/// CometBFT's longest chain id.
pub const MAX_CHAIN_ID_LEN: usize = 50;

/// Heights above this are refused without `force`: at one block a second
/// a chain takes over 300 years to get there.
pub const MAX_PLAUSIBLE_HEIGHT: i64 = 10_000_000_000;

/// A raise more heights than this above the current watermark is refused
/// without `force`: over 100 days of blocks at one a second.
pub const MAX_RAISE_JUMP: i64 = 10_000_000;

/// Why a raise is refused before it is proposed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VetError {
    /// The chain id is empty, too long or has control characters.
    #[error("chain id {0:?} is not a CometBFT chain id (1 to 50 printable characters)")]
    ChainId(String),
    /// A negative height or round.
    #[error("position {0} is negative")]
    Negative(Position),
    /// The sign bytes do not match the chain or the position.
    #[error("{0}")]
    SignBytes(String),
    /// A height no chain reaches.
    #[error(
        "height {height} is implausibly high (above {MAX_PLAUSIBLE_HEIGHT}); \
         force the raise if it is right: it can never be undone"
    )]
    Implausible {
        /// The raise's height.
        height: i64,
    },
    /// A jump far above the current watermark.
    #[error(
        "height {height} is {} heights above the current watermark at {current}, more than \
         {MAX_RAISE_JUMP}; force the raise if it is right: it can never be undone",
        height - current
    )]
    TooFar {
        /// The raise's height.
        height: i64,
        /// The current watermark's height.
        current: i64,
    },
}

/// Checks a raise of `chain_id` from `current` to `raised`, and returns
/// the state to propose. `force` lets an implausible height through; a
/// malformed raise is refused either way.
///
/// # Errors
///
/// The first problem found.
pub fn raise(
    chain_id: &str,
    current: Option<Position>,
    raised: &SignState,
    force: bool,
) -> Result<SignState, VetError> {
    if chain_id.is_empty()
        || chain_id.len() > MAX_CHAIN_ID_LEN
        || chain_id.chars().any(char::is_control)
    {
        return Err(VetError::ChainId(chain_id.to_string()));
    }
    if let Some(position) = raised.position {
        if position.height < 0 || position.round < 0 {
            return Err(VetError::Negative(position));
        }
        if !force {
            if position.height > MAX_PLAUSIBLE_HEIGHT {
                return Err(VetError::Implausible {
                    height: position.height,
                });
            }
            if let Some(current) = current
                && position.height.saturating_sub(current.height) > MAX_RAISE_JUMP
            {
                return Err(VetError::TooFar {
                    height: position.height,
                    current: current.height,
                });
            }
        }
    }
    inspect::check(chain_id, raised.position, &raised.sign_bytes).map_err(VetError::SignBytes)?;
    let signature = raised
        .signature
        .clone()
        .filter(|signature| !raised.sign_bytes.is_empty() && signature.len() == SIGNATURE_LEN);
    Ok(SignState {
        position: raised.position,
        sign_bytes: raised.sign_bytes.clone(),
        signature,
        owner: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::Step;
    use crate::watermark::inspect::tests::sign_bytes;

    fn at(height: i64) -> Position {
        Position {
            height,
            round: 0,
            step: Step::Precommit,
        }
    }

    fn state(height: i64) -> SignState {
        SignState {
            position: Some(at(height)),
            ..SignState::default()
        }
    }

    #[test]
    fn an_implausible_height_needs_force() {
        let evil = state(9_000_000_000_000_000);
        assert!(matches!(
            raise("test-chain-1", None, &evil, false),
            Err(VetError::Implausible { .. })
        ));
        assert!(matches!(
            raise("test-chain-1", None, &state(i64::MAX), false),
            Err(VetError::Implausible { .. })
        ));
        assert_eq!(
            raise("test-chain-1", None, &evil, true).unwrap().position,
            evil.position
        );
        // A migration onto a fresh cluster at a real chain's height is fine.
        assert!(raise("cosmoshub-4", None, &state(25_000_000), false).is_ok());
    }

    #[test]
    fn a_far_jump_above_the_watermark_needs_force() {
        let current = Some(at(1_000));
        let far = state(1_000 + MAX_RAISE_JUMP + 1);
        assert_eq!(
            raise("c", current, &far, false),
            Err(VetError::TooFar {
                height: 1_000 + MAX_RAISE_JUMP + 1,
                current: 1_000
            })
        );
        assert!(raise("c", current, &far, true).is_ok());
        assert!(raise("c", current, &state(1_000 + MAX_RAISE_JUMP), false).is_ok());
    }

    #[test]
    fn malformed_raises_are_refused_even_when_forced() {
        for bad in ["", "a\nb", &"x".repeat(MAX_CHAIN_ID_LEN + 1)] {
            assert_eq!(
                raise(bad, None, &state(5), true),
                Err(VetError::ChainId(bad.to_string()))
            );
        }
        let mut negative = state(5);
        negative.position = Some(Position {
            height: 5,
            round: -1,
            step: Step::Prevote,
        });
        assert!(matches!(
            raise("c", None, &negative, true),
            Err(VetError::Negative(_))
        ));
        // Sign bytes of another chain, or another position, or garbage.
        let mut other_chain = state(5);
        other_chain.sign_bytes = sign_bytes("other", 5, 0, Step::Precommit, true);
        let mut other_height = state(5);
        other_height.sign_bytes = sign_bytes("c", 6, 0, Step::Precommit, true);
        let mut garbage = state(5);
        garbage.sign_bytes = vec![0xff; 40];
        for raised in [other_chain, other_height, garbage] {
            assert!(matches!(
                raise("c", None, &raised, true),
                Err(VetError::SignBytes(_))
            ));
        }
    }

    #[test]
    fn a_signature_is_kept_only_beside_sign_bytes_and_owners_never() {
        let mut raised = state(5);
        raised.sign_bytes = sign_bytes("c", 5, 0, Step::Precommit, true);
        raised.signature = Some(vec![7; 64]);
        raised.owner = Some("someone".into());
        let kept = raise("c", None, &raised, false).unwrap();
        assert_eq!(kept.position, raised.position);
        assert_eq!(kept.sign_bytes, raised.sign_bytes);
        assert_eq!(kept.signature, raised.signature);
        assert_eq!(kept.owner, None);

        raised.signature = Some(vec![7; 65]);
        assert_eq!(raise("c", None, &raised, false).unwrap().signature, None);
        let mut bare = state(5);
        bare.signature = Some(vec![7; 64]);
        assert_eq!(raise("c", None, &bare, false).unwrap().signature, None);
    }
}
