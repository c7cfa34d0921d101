//! Double-sign attempts are answered with a privval error and the
//! connection is kept; a timestamp-only change gets the stored signature.

use crate::support::{Single, Transport, refused_with};
use quorumkms::privval::Version;
use quorumkms::session::code;
use quorumkms::validator::SignOutcome;

#[tokio::test]
async fn conflicts_and_regressions_are_refused_and_the_connection_kept() {
    let mut s = Single::start(Version::V0_38, Transport::Tcp).await;
    let signed = s.validator.sign_proposal(s.proposal(10, 1, 0, 0)).await;
    assert!(matches!(signed, SignOutcome::Signed { .. }), "{signed:?}");
    // The same position, another block.
    refused_with(
        &s.validator.sign_proposal(s.proposal(10, 1, 1, 0)).await,
        code::DOUBLE_SIGN,
        "conflicting data",
    );
    let signed = s.validator.sign_vote(s.prevote(10, 1, 0, 0)).await;
    assert!(matches!(signed, SignOutcome::Signed { .. }), "{signed:?}");
    refused_with(
        &s.validator.sign_vote(s.prevote(10, 1, 1, 0)).await,
        code::DOUBLE_SIGN,
        "conflicting data",
    );
    // Regressions of each kind.
    refused_with(
        &s.validator.sign_vote(s.prevote(9, 5, 0, 0)).await,
        code::DOUBLE_SIGN,
        "height regression",
    );
    refused_with(
        &s.validator.sign_vote(s.prevote(10, 0, 0, 0)).await,
        code::DOUBLE_SIGN,
        "round regression",
    );
    refused_with(
        &s.validator.sign_proposal(s.proposal(10, 1, 0, 0)).await,
        code::DOUBLE_SIGN,
        "step regression",
    );
    // Still serving on the same connection.
    let signed = s.validator.sign_vote(s.precommit(10, 1, Some(0), 0)).await;
    assert!(matches!(signed, SignOutcome::Signed { .. }), "{signed:?}");
    assert_eq!(s.validator.accepted, 1);
    assert_eq!(s.checker.report().conflicts, 0);
}

#[tokio::test]
async fn identical_request_gets_the_identical_signature() {
    let mut s = Single::start(Version::V0_37, Transport::Unix).await;
    let first = s.validator.sign_vote(s.prevote(3, 0, 0, 0)).await;
    let again = s.validator.sign_vote(s.prevote(3, 0, 0, 0)).await;
    assert!(matches!(first, SignOutcome::Signed { .. }));
    assert_eq!(first, again);
}

#[tokio::test]
async fn timestamp_only_change_gets_the_stored_timestamp_and_signature() {
    let mut s = Single::start(Version::V0_38, Transport::Tcp).await;
    let first = s.validator.sign_vote(s.prevote(7, 0, 0, 100)).await;
    let later = s.validator.sign_vote(s.prevote(7, 0, 0, 900)).await;
    let (
        SignOutcome::Signed {
            signature: sig1,
            timestamp: ts1,
            ..
        },
        SignOutcome::Signed {
            signature: sig2,
            timestamp: ts2,
            ..
        },
    ) = (&first, &later)
    else {
        panic!("expected two signatures: {first:?} {later:?}");
    };
    assert_eq!(sig1, sig2);
    assert_eq!(ts1, ts2, "the reply carries the stored timestamp");
    let proposal = s.validator.sign_proposal(s.proposal(8, 0, 0, 0)).await;
    let moved = s.validator.sign_proposal(s.proposal(8, 0, 0, 500)).await;
    match (&proposal, &moved) {
        (SignOutcome::Signed { signature: a, .. }, SignOutcome::Signed { signature: b, .. }) => {
            assert_eq!(a, b)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wrong_chain_id_is_refused_and_the_node_keeps_serving() {
    let mut s = Single::start(Version::V0_38, Transport::Tcp).await;
    let vote = s.prevote(4, 0, 0, 0);
    let request = quorumkms::privval::SignRequest::from_vote(
        Version::V0_38,
        "not-my-chain".into(),
        vote,
        false,
    )
    .unwrap();
    let reply = s
        .validator
        .send_raw(&quorumkms::privval::Request::Sign(request).encode(Version::V0_38))
        .await
        .expect("reply");
    let error = reply.error().expect("an error reply");
    assert_eq!(error.code, code::WRONG_CHAIN);
    assert!(error.description.contains("wrong chain id"), "{error:?}");
    let signed = s.validator.sign_vote(s.prevote(4, 0, 0, 0)).await;
    assert!(matches!(signed, SignOutcome::Signed { .. }), "{signed:?}");
}

#[tokio::test]
async fn max_height_is_enforced() {
    let mut s = Single::start_with(Version::V0_38, Transport::Unix, "max_height = 5").await;
    let ok = s.validator.sign_vote(s.prevote(5, 0, 0, 0)).await;
    assert!(matches!(ok, SignOutcome::Signed { .. }), "{ok:?}");
    refused_with(
        &s.validator.sign_vote(s.prevote(6, 0, 0, 0)).await,
        code::MAX_HEIGHT,
        "max_height",
    );
}
