//! A full restart of every signer process (kill -9 all, start all) keeps
//! every watermark: regressions and conflicting payloads are refused after
//! the restart, and an identical request gets the identical signature.

use std::time::Duration;

use crate::support;
use crate::support::{Cluster, assert_no_conflicts, fast_timing, precommit, prevote, proposal};
use quorumkms::validator::{Checker, SignOutcome};
use quorumkms::watermark::{Position, Step};

fn is_refused(o: &SignOutcome) -> bool {
    matches!(o, SignOutcome::Refused(_))
}

#[test]
fn full_restart_keeps_every_watermark() {
    support::run(async {
        let checker = Checker::new();
        let mut c = Cluster::builder(3).build();
        let (mut v, addr) = support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr.clone()]);
        c.start(Duration::from_secs(20)).await;
        let mut last = None;
        for h in 1..=10 {
            for o in [
                v.sign_proposal(proposal(h, 0)).await,
                v.sign_vote(prevote(h, 0)).await,
                v.sign_vote(precommit(h, 0)).await,
            ] {
                assert!(matches!(o, SignOutcome::Signed { .. }), "height {h}: {o:?}");
                last = Some(o);
            }
        }
        let top = Position {
            height: 10,
            round: 0,
            step: Step::Precommit,
        };
        for i in 1..=3 {
            c.wait_status(i, "at 10/0/precommit", Duration::from_secs(5), |s| {
                s.chains
                    .get(quorumkms::testnet::CHAIN_ID)
                    .and_then(|c| c.position)
                    == Some(top)
            })
            .await;
        }

        for i in 1..=3 {
            c.kill(i).await;
        }
        v.drop_connection();
        c.spawn_all();
        // No new initialization: the cluster comes back from its stores.
        c.wait_ready(&[1, 2, 3], Duration::from_secs(20)).await;
        for i in 1..=3 {
            assert_eq!(
                c.watermark(i).await,
                Some(top),
                "node {i} after the restart"
            );
        }
        // Regressions: a lower height, and a lower step at the top height.
        let o = v.sign_vote(prevote(5, 0)).await;
        assert!(is_refused(&o), "height regression: {o:?}");
        let o = v.sign_vote(prevote(10, 0)).await;
        assert!(is_refused(&o), "step regression: {o:?}");
        let o = v.sign_proposal(proposal(10, 0)).await;
        assert!(is_refused(&o), "proposal regression: {o:?}");
        // A conflicting payload at the watermark itself.
        let o = v.sign_vote(precommit(10, 1)).await;
        assert!(is_refused(&o), "conflict at the watermark: {o:?}");
        // The identical request: the identical signature.
        let again = v.sign_vote(precommit(10, 0)).await;
        let before = support::signature(last.as_ref().expect("signed"), "before");
        assert_eq!(support::signature(&again, "identical"), before);
        // And signing goes on above it.
        for h in 11..=13 {
            let o = v.sign_vote(prevote(h, 0)).await;
            assert!(matches!(o, SignOutcome::Signed { .. }), "height {h}: {o:?}");
        }
        assert_no_conflicts(&checker);
    });
}
