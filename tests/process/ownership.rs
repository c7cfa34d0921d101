//! Height ownership across real signer processes: two validator nodes of
//! one validator (e.g. the validator and a sentry), each dialled by all
//! three signer nodes, ask for different blocks at one height. Only the
//! height's owner (the first one granted there) gets new positions signed;
//! the other gets only re-serves of bytes already signed at that height.

use std::time::Duration;

use crate::support;
use crate::support::{Cluster, assert_no_conflicts, fast_timing, precommit, prevote, signature};
use quorumkms::validator::{Checker, MockValidator, SignOutcome};

fn refused(o: &SignOutcome, what: &str) -> String {
    match o {
        SignOutcome::Refused(e) => e.description.clone(),
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn only_the_height_owner_is_signed() {
    support::run(async {
        let checker = Checker::new();
        let mut c = Cluster::builder(3).build();
        let (mut a, addr_a) =
            support::validator(&c.validator_host(), &checker, fast_timing()).await;
        let (mut b, addr_b) =
            support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr_a.clone(), addr_b.clone()]);
        c.start(Duration::from_secs(20)).await;
        c.connect(&mut a, Duration::from_secs(15)).await;
        c.connect(&mut b, Duration::from_secs(15)).await;

        for h in 1..=10i64 {
            // The owner alternates: A first at odd heights, B at even ones.
            let (owner, other): (&mut MockValidator, &mut MockValidator) = if h % 2 == 1 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let first = owner.sign_vote(prevote(h, 0)).await;
            let first_sig = signature(&first, &format!("height {h}: owner's prevote"));
            // A different block at the same position: refused.
            let o = other.sign_vote(prevote(h, 1)).await;
            refused(&o, &format!("height {h}: other's conflicting prevote"));
            // A new position at the owned height: refused, naming the owner.
            let o = other.sign_vote(precommit(h, 1)).await;
            let why = refused(&o, &format!("height {h}: other's precommit"));
            assert!(why.contains("owned"), "height {h}: {why}");
            // The very bytes the owner got signed: re-served, identical.
            let again = other.sign_vote(prevote(h, 0)).await;
            assert_eq!(
                signature(&again, &format!("height {h}: re-serve")),
                first_sig
            );
            // The owner goes on.
            let pc = owner.sign_vote(precommit(h, 0)).await;
            signature(&pc, &format!("height {h}: owner's precommit"));
            // Now the other cannot even get the owner's precommit bytes
            // for another block.
            let o = other.sign_vote(precommit(h, 2)).await;
            refused(&o, &format!("height {h}: other's late precommit"));
        }
        let report = checker.report();
        assert_eq!(report.released, 30, "{report:?}");
        assert_no_conflicts(&checker);
    });
}
