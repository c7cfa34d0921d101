//! The happy path for every protocol version over both transports: a
//! validator asks for its key, then proposals, prevotes and precommits (nil
//! and not) over several heights; every signature verifies.

use crate::support::{Single, Transport};
use quorumkms::privval::Version;
use quorumkms::validator::SignOutcome;

async fn happy_path(version: Version, transport: Transport) {
    let mut s = Single::start(version, transport).await;
    let key = s.validator.pub_key().await.expect("public key");
    assert_eq!(key, s.public_key);
    for height in 1..=5 {
        let outcomes = [
            s.validator.sign_proposal(s.proposal(height, 0, 0, 0)).await,
            s.validator.sign_vote(s.prevote(height, 0, 0, 10)).await,
            // Odd heights precommit nil, even ones the block (with an
            // extension where the version has them).
            s.validator
                .sign_vote(s.precommit(height, 0, (height % 2 == 0).then_some(0), 20))
                .await,
        ];
        for outcome in outcomes {
            assert!(
                matches!(outcome, SignOutcome::Signed { .. }),
                "height {height}: {outcome:?}\n{}",
                s.log()
            );
        }
    }
    let report = s.checker.report();
    assert_eq!(
        (report.released, report.conflicts, report.invalid),
        (15, 0, 0)
    );
    assert_eq!(s.validator.accepted, 1, "the connection was kept");
}

#[tokio::test]
async fn v0_34_over_secret_connection() {
    happy_path(Version::V0_34, Transport::Tcp).await;
}

#[tokio::test]
async fn v0_37_over_secret_connection() {
    happy_path(Version::V0_37, Transport::Tcp).await;
}

#[tokio::test]
async fn v0_38_over_secret_connection() {
    happy_path(Version::V0_38, Transport::Tcp).await;
}

#[tokio::test]
async fn v1_0_over_secret_connection() {
    happy_path(Version::V1_0, Transport::Tcp).await;
}

#[tokio::test]
async fn v0_34_over_unix() {
    happy_path(Version::V0_34, Transport::Unix).await;
}

#[tokio::test]
async fn v0_37_over_unix() {
    happy_path(Version::V0_37, Transport::Unix).await;
}

#[tokio::test]
async fn v0_38_over_unix() {
    happy_path(Version::V0_38, Transport::Unix).await;
}

#[tokio::test]
async fn v1_0_over_unix() {
    happy_path(Version::V1_0, Transport::Unix).await;
}
