//! The watermark survives restarts and kill -9: nothing is ever signed
//! below a released signature.

use std::time::Duration;

use crate::support;
use crate::support::{Single, Transport};
use quorumkms::privval::Version;
use quorumkms::validator::SignOutcome;

#[tokio::test]
async fn restart_keeps_the_watermark() {
    let mut s = Single::start(Version::V0_38, Transport::Tcp).await;
    for h in 1..=10 {
        assert!(matches!(
            s.validator.sign_vote(s.prevote(h, 0, 0, 0)).await,
            SignOutcome::Signed { .. }
        ));
    }
    let last = s.validator.sign_vote(s.prevote(10, 0, 0, 0)).await;
    s.kill().await;
    s.restart();
    // Below the watermark: refused. At it with the same bytes: the same signature.
    let lower = s.validator.sign_vote(s.prevote(9, 0, 0, 0)).await;
    assert!(matches!(lower, SignOutcome::Refused(_)), "{lower:?}");
    let conflicting = s.validator.sign_vote(s.prevote(10, 0, 1, 0)).await;
    assert!(
        matches!(conflicting, SignOutcome::Refused(_)),
        "{conflicting:?}"
    );
    assert_eq!(s.validator.sign_vote(s.prevote(10, 0, 0, 0)).await, last);
    assert_eq!(s.checker.report().conflicts, 0);
}

/// Kill -9 at arbitrary moments while the validator keeps asking, and
/// restart at once, as a supervisor would; the validator retries as
/// CometBFT does. After each restart, everything below the highest released
/// position and every conflicting payload at it is refused.
#[tokio::test]
async fn kill_9_mid_stream_never_signs_below_a_released_signature() {
    let mut s = Single::start(Version::V0_38, Transport::Unix).await;
    let mut height = 0;
    for round in 0..4u64 {
        let mut child = s.child.take().expect("running");
        let node = s.node.clone();
        let delay = Duration::from_millis(150 + 70 * round);
        let killer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = child.start_kill();
            let _ = child.wait().await;
            quorumkms::testnet::spawn_node(&support::exe(), &node).expect("respawn")
        });
        while !killer.is_finished() {
            height += 1;
            let outcome = s.validator.sign_vote(s.prevote(height, 0, 0, 0)).await;
            assert!(
                matches!(outcome, SignOutcome::Signed { .. }),
                "{outcome:?}\n{}",
                s.log()
            );
        }
        s.child = Some(killer.await.expect("killer"));
        let highest = s
            .checker
            .highest(quorumkms::testnet::CHAIN_ID)
            .expect("something was signed");
        // Every position below the highest released one is refused.
        let below = s
            .validator
            .sign_vote(s.prevote(highest.height - 1, 0, 0, 0))
            .await;
        assert!(
            matches!(below, SignOutcome::Refused(_)),
            "below {highest}: {below:?}\n{}",
            s.log()
        );
        let other = s
            .validator
            .sign_vote(s.prevote(highest.height, 0, 1, 0))
            .await;
        assert!(
            matches!(other, SignOutcome::Refused(_)),
            "conflict at {highest}: {other:?}"
        );
        height = highest.height;
    }
    let report = s.checker.report();
    assert_eq!((report.conflicts, report.invalid), (0, 0), "{report:?}");
    assert!(report.released >= 4, "{report:?}");
}
