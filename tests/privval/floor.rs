//! A chain's floor on a fresh single node: with an empty state file and
//! nothing imported, nothing at or below the chain's latest height (from a
//! CometBFT RPC) or below the first request is signed, and a chain with
//! no floor configured signs nothing.

use crate::support::{Single, Transport, refused_with};
use quorumkms::privval::Version;
use quorumkms::session::code;
use quorumkms::testnet::CHAIN_ID;
use quorumkms::testnet::rpc::FakeRpc;
use quorumkms::validator::SignOutcome;
use quorumkms::watermark::StateFile;

fn signed(outcome: &SignOutcome) {
    assert!(matches!(outcome, SignOutcome::Signed { .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_fresh_node_signs_nothing_at_or_below_the_rpcs_latest_height() {
    let rpc = FakeRpc::start(CHAIN_ID, 1000).await.expect("fake rpc");
    rpc.set_up(false);
    let extra = format!("floor = \"rpc\"\nfloor_rpc = [\"{}\"]", rpc.url());
    let mut s = Single::start_with(Version::V0_38, Transport::Tcp, &extra).await;

    // No RPC, no floor: refused, and the connection is kept.
    refused_with(
        &s.validator.sign_vote(s.prevote(1001, 0, 0, 0)).await,
        code::NO_FLOOR,
        "no RPC gave its latest height",
    );
    // Once it answers, the next request takes the floor.
    rpc.set_up(true);
    refused_with(
        &s.validator.sign_vote(s.prevote(900, 0, 0, 0)).await,
        code::DOUBLE_SIGN,
        "height regression: got 900, last height 1000",
    );
    refused_with(
        &s.validator.sign_vote(s.prevote(1000, 3, 0, 0)).await,
        code::DOUBLE_SIGN,
        "round regression at height 1000",
    );
    signed(&s.validator.sign_vote(s.prevote(1001, 0, 0, 0)).await);
    assert!(
        s.log().contains(&format!("rpc {}", rpc.url())),
        "the log names the floor's source:\n{}",
        s.log()
    );

    // The floor is the state file's watermark now: a restart does not
    // take another one, even from an RPC that moved on.
    rpc.set_height(5000);
    s.kill().await;
    s.restart();
    signed(
        &s.validator
            .sign_vote(s.precommit(1001, 0, Some(0), 0))
            .await,
    );
    let state = StateFile::new(s.node.dir.join(format!("state/{CHAIN_ID}.json")))
        .load()
        .expect("state file");
    assert_eq!(state.position.map(|p| p.height), Some(1001));
    assert_eq!(s.checker.report().conflicts, 0);
}

#[tokio::test]
async fn the_first_request_sets_the_floor_when_asked_to() {
    let mut s =
        Single::start_with(Version::V0_38, Transport::Tcp, "floor = \"first-request\"").await;
    signed(&s.validator.sign_vote(s.prevote(50, 1, 0, 0)).await);
    refused_with(
        &s.validator.sign_vote(s.prevote(49, 0, 0, 0)).await,
        code::DOUBLE_SIGN,
        "height regression",
    );
    assert!(
        s.log().contains("first request (height 50)"),
        "the log names the floor's source:\n{}",
        s.log()
    );
}

#[tokio::test]
async fn without_a_floor_an_empty_chain_signs_nothing_and_says_what_to_do() {
    // The layout's `floor = "none"` taken out: no floor configured.
    let mut s = Single::start_with(Version::V0_38, Transport::Tcp, "# floor: unset").await;
    let refused = s.validator.sign_vote(s.prevote(5, 0, 0, 0)).await;
    for choice in ["\"rpc\"", "\"first-request\"", "\"none\"", "state import"] {
        refused_with(&refused, code::NO_FLOOR, choice);
    }
    // Still refused on the next request: nothing was taken as a floor.
    refused_with(
        &s.validator.sign_vote(s.prevote(6, 0, 0, 0)).await,
        code::NO_FLOOR,
        "no floor",
    );
}
