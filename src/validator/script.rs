//! What a validator asks its signer for at one height: the script the
//! demo, `validator-sim` and the drills' canary all follow.

use crate::privval::Version;

use super::consensus;
use super::mock::{MockValidator, SignOutcome};

/// The step name [`produce_height`] gives a double-sign attempt.
pub const DOUBLE_SIGN_STEP: &str = "double-sign attempt";

/// Asks for the signatures a validator needs at `height`, round 0: a
/// proposal on odd heights, a prevote and a precommit for the honest block.
/// With `double_sign`, a prevote for another block at the same height,
/// round and step is also requested (the signer must refuse it). Returns
/// each step's name and outcome, in order.
pub async fn produce_height(
    validator: &mut MockValidator,
    version: Version,
    address: &[u8],
    height: i64,
    double_sign: bool,
) -> Vec<(&'static str, SignOutcome)> {
    let block = consensus::block_id(height, 0);
    let mut results = Vec::new();
    if height % 2 == 1 {
        let proposal = consensus::proposal(height, 0, block.clone(), 0);
        results.push(("proposal", validator.sign_proposal(proposal).await));
    }
    let prevote = consensus::vote(version, false, height, 0, Some(block.clone()), address, 10);
    results.push(("prevote", validator.sign_vote(prevote).await));
    if double_sign {
        // A faulty validator asks to prevote for another block at the
        // same height, round and step: the signer must refuse.
        let other = Some(consensus::block_id(height, 1));
        let conflicting = consensus::vote(version, false, height, 0, other, address, 10);
        results.push((DOUBLE_SIGN_STEP, validator.sign_vote(conflicting).await));
    }
    let precommit = consensus::vote(version, true, height, 0, Some(block), address, 20);
    results.push(("precommit", validator.sign_vote(precommit).await));
    results
}
