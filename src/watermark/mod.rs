//! The double-sign rules: one pure function, shared by single-node mode and
//! the Raft state machine.
//!
//! Nothing here does I/O or reads a clock. Given the last signed state of a
//! chain and a sign attempt, [`decide`] says whether to sign, which bytes to
//! sign, and how the state moves. The rules are CometBFT FilePV's, plus one
//! cluster rule (height ownership, see [`Attempt::origin`]).
//!
//! # Invariant
//!
//! For one (height, round, step) the state only ever grants one sign payload
//! (modulo the timestamp, in which case the stored payload is granted again).
//! A state never moves to a lower position.

pub mod inspect;
pub mod interchange;
pub mod migrate;
mod state_file;
mod state_write;
pub mod tmkms;
pub mod vet;

pub use state_file::{StateFile, StateFileError, StateLock, write_atomically};

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::privval::canonical;

/// Consensus step, numbered as CometBFT's FilePV numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Nothing signed yet at this height and round.
    None = 0,
    /// A block proposal.
    Propose = 1,
    /// A prevote.
    Prevote = 2,
    /// A precommit.
    Precommit = 3,
}

impl Step {
    /// The step for FilePV's numeric form.
    pub fn from_i8(n: i8) -> Option<Step> {
        match n {
            0 => Some(Step::None),
            1 => Some(Step::Propose),
            2 => Some(Step::Prevote),
            3 => Some(Step::Precommit),
            _ => None,
        }
    }

    /// FilePV's numeric form.
    pub fn as_i8(self) -> i8 {
        self as i8
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Step::None => "none",
            Step::Propose => "proposal",
            Step::Prevote => "prevote",
            Step::Precommit => "precommit",
        };
        f.write_str(name)
    }
}

/// A point in consensus: (height, round, step), ordered lexicographically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Block height.
    pub height: i64,
    /// Consensus round within the height.
    pub round: i32,
    /// Step within the round.
    pub step: Step,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.height, self.round, self.step)
    }
}

/// The last thing a chain's key signed: the watermark.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignState {
    /// Highest position signed so far. `None` before the first signature
    /// (FilePV writes height 0, round 0, step 0 for that).
    pub position: Option<Position>,
    /// Canonical sign bytes granted at `position`. Empty after an import of a
    /// state file that did not carry them: then nothing at exactly `position`
    /// can be signed again, only higher positions.
    pub sign_bytes: Vec<u8>,
    /// Signature over `sign_bytes`, where known (FilePV stores it; the
    /// cluster does not, since every node re-derives it deterministically).
    pub signature: Option<Vec<u8>>,
    /// The validator node that owns `position.height`, when height
    /// ownership is on (see [`Attempt::origin`]).
    pub owner: Option<String>,
}

/// A request to sign `sign_bytes` at `position`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Where in consensus these bytes sign.
    pub position: Position,
    /// Canonical sign bytes (length-delimited, as CometBFT signs them).
    pub sign_bytes: Vec<u8>,
    /// The validator node that asked, when height ownership is enforced.
    /// The first validator node granted a new position at a height owns that
    /// height; others get only repeats of what was already granted there.
    pub origin: Option<String>,
    /// The vote extension's sign bytes that go with a precommit, in
    /// threshold mode only: there the grant is what lets the other nodes
    /// give their shares for them. The rules never read it (CometBFT does
    /// not protect extensions against double signing). Absent in entries
    /// logged before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<Vec<u8>>,
}

/// Why an attempt was refused. Refusals are final answers, sent to the
/// validator as privval errors; they are not faults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The attempt's height is below the watermark.
    #[error("height regression: got {got}, last height {last}")]
    HeightRegression {
        /// Requested height.
        got: i64,
        /// Watermark height.
        last: i64,
    },
    /// Same height, lower round.
    #[error("round regression at height {height}: got {got}, last round {last}")]
    RoundRegression {
        /// Height of both.
        height: i64,
        /// Requested round.
        got: i32,
        /// Watermark round.
        last: i32,
    },
    /// Same height and round, earlier step.
    #[error("step regression at height {height} round {round}: got {got}, last step {last}")]
    StepRegression {
        /// Height of both.
        height: i64,
        /// Round of both.
        round: i32,
        /// Requested step.
        got: Step,
        /// Watermark step.
        last: Step,
    },
    /// Same position, different payload: a double sign.
    #[error("conflicting data at {position}")]
    ConflictingData {
        /// The contested position.
        position: Position,
    },
    /// Same position, but the stored state has no sign bytes to compare with.
    #[error("no sign bytes stored for {position}")]
    NoSignBytes {
        /// The contested position.
        position: Position,
    },
    /// Another validator node owns this height.
    #[error("height {height} is owned by validator node {owner}")]
    HeightOwned {
        /// The owned height.
        height: i64,
        /// The validator node that owns it.
        owner: String,
    },
}

/// What to do with an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// New, higher position: sign the attempt's bytes and advance the
    /// watermark to them.
    Advance,
    /// Same position and same payload (or only the timestamp differs): sign
    /// the stored bytes again. The watermark does not move.
    Repeat {
        /// The stored bytes, which carry the stored timestamp.
        sign_bytes: Vec<u8>,
    },
    /// Do not sign.
    Refuse(Refusal),
}

/// Applies the double-sign rules to `attempt` against `state`.
///
/// Pure: the same inputs always give the same answer, on every node.
pub fn decide(state: &SignState, attempt: &Attempt) -> Decision {
    let Some(last) = state.position else {
        return Decision::Advance;
    };
    let next = attempt.position;
    match next.cmp(&last) {
        Ordering::Less => Decision::Refuse(regression(last, next)),
        Ordering::Greater => {
            if let (Some(owner), Some(origin)) = (&state.owner, &attempt.origin)
                && next.height == last.height
                && owner != origin
            {
                return Decision::Refuse(Refusal::HeightOwned {
                    height: next.height,
                    owner: owner.clone(),
                });
            }
            Decision::Advance
        }
        Ordering::Equal => {
            if state.sign_bytes.is_empty() {
                Decision::Refuse(Refusal::NoSignBytes { position: next })
            } else if state.sign_bytes == attempt.sign_bytes
                || canonical::same_except_timestamp(&state.sign_bytes, &attempt.sign_bytes)
            {
                Decision::Repeat {
                    sign_bytes: state.sign_bytes.clone(),
                }
            } else {
                Decision::Refuse(Refusal::ConflictingData { position: next })
            }
        }
    }
}

fn regression(last: Position, next: Position) -> Refusal {
    if next.height < last.height {
        Refusal::HeightRegression {
            got: next.height,
            last: last.height,
        }
    } else if next.round < last.round {
        Refusal::RoundRegression {
            height: next.height,
            got: next.round,
            last: last.round,
        }
    } else {
        Refusal::StepRegression {
            height: next.height,
            round: next.round,
            got: next.step,
            last: last.step,
        }
    }
}

/// The outcome of [`grant`]: the bytes to sign, or a refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Sign exactly these bytes.
    Sign(Vec<u8>),
    /// Do not sign.
    Refuse(Refusal),
}

/// Decides `attempt` and moves `state` accordingly. Returns the verdict and
/// whether the state changed (and so must be made durable before the
/// signature is released).
pub fn grant(state: &mut SignState, attempt: &Attempt) -> (Verdict, bool) {
    match decide(state, attempt) {
        Decision::Advance => {
            let new_height = state.position.map(|p| p.height) != Some(attempt.position.height);
            if new_height {
                state.owner = attempt.origin.clone();
            }
            state.position = Some(attempt.position);
            state.sign_bytes = attempt.sign_bytes.clone();
            state.signature = None;
            (Verdict::Sign(attempt.sign_bytes.clone()), true)
        }
        Decision::Repeat { sign_bytes } => (Verdict::Sign(sign_bytes), false),
        Decision::Refuse(refusal) => (Verdict::Refuse(refusal), false),
    }
}

/// Raises `state` to `imported` if, and only if, `imported` is strictly
/// higher. An import never lowers a watermark.
///
/// # Errors
///
/// Refuses an import at or below the current position.
pub fn raise(state: &mut SignState, imported: &SignState) -> Result<(), Refusal> {
    let Some(next) = imported.position else {
        return match state.position {
            None => Ok(()),
            Some(last) => Err(Refusal::HeightRegression {
                got: 0,
                last: last.height,
            }),
        };
    };
    match state.position {
        Some(last) if next <= last => Err(if next == last {
            Refusal::ConflictingData { position: next }
        } else {
            regression(last, next)
        }),
        _ => {
            *state = imported.clone();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
