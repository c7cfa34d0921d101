//! A full restart of every signer process (kill -9 all, start all) keeps
//! every watermark: regressions and conflicting payloads are refused after
//! the restart, and an identical request gets the identical signature. A
//! voter whose store was wiped needs `--join` to come back, as a learner.

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

/// A voter whose store was wiped refuses to start without `--join`: the
/// cluster calls it and it exits, saying why. Removed, started with
/// `--join` and added back, it joins as a learner, and is promoted.
#[test]
fn a_wiped_voter_needs_join_and_comes_back_as_a_learner() {
    const T: Duration = Duration::from_secs(30);
    support::run(async {
        let checker = Checker::new();
        let mut c = Cluster::builder(3).build();
        let (_v, addr) = support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr.clone()]);
        let leader = c.start(T).await;
        let wiped = (1..=3).find(|i| *i != leader).expect("a follower");
        c.kill(wiped).await;
        std::fs::remove_dir_all(c.data_dir(wiped)).expect("wipe the store");

        c.spawn(wiped);
        let status = c.wait_exit(wiped, T).await;
        assert!(!status.success(), "node {wiped} ran on with an empty store");
        let log = c.log(wiped);
        assert!(
            log.contains("empty store") && log.contains("--join"),
            "{}",
            support::tail(&log, 20)
        );

        let client = c.client(leader);
        client.remove(wiped as u64, false).await.expect("remove");
        c.spawn_joining(wiped);
        client
            .add_learner(wiped as u64, &c.addr(wiped))
            .await
            .expect("add learner");
        let status = c
            .wait_status(wiped, "a learner of the cluster", T, |s| {
                s.cluster_id.is_some() && s.role == "Learner"
            })
            .await;
        let leader_status = c.status(leader).await.expect("leader status");
        assert_eq!(status.cluster_id, leader_status.cluster_id);
        support::retry(T, || {
            let client = client.clone();
            async move { client.promote(wiped as u64).await }
        })
        .await
        .expect("promote");
        let mut voters = c.voters().await;
        voters.sort_unstable();
        assert_eq!(voters, vec![1, 2, 3]);
        c.wait_ready(&[1, 2, 3], T).await;
        c.stop_all().await;
    });
}
