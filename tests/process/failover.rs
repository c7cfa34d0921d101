//! Losing signer processes while the validator keeps asking: kill -9 the
//! leader mid-stream (3 nodes), kill -9 two of five nodes, and a node that
//! dies holding a fresh grant before it replies. Signing resumes on the
//! others, every retry gets the signature the grant allowed, and no
//! conflicting signature is ever released.
//!
//! The three-node cases also run in threshold mode (2 of 3), where the
//! signature needs the shares of the two nodes left: the killed leader
//! served the validator, or gave shares to the follower that serves it,
//! or died between its grant and its share round.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::support;
use crate::support::{
    Cluster, ClusterBuilder, assert_no_conflicts, expected_signature, fast_timing, precommit,
    prevote,
};
use quorumkms::grant::test_hook::DIE_AFTER_GRANT_ENV;
use quorumkms::validator::checker::verify;
use quorumkms::validator::{Checker, MockValidator, SignOutcome};
use tokio::time::Instant;

/// Signs prevote and precommit at `heights`, asserting each is signed;
/// returns when each signature arrived and which node served it.
async fn sign_heights(
    c: &Cluster,
    v: &mut MockValidator,
    heights: std::ops::RangeInclusive<i64>,
) -> Vec<(Instant, Option<usize>)> {
    let mut out = Vec::new();
    for h in heights {
        for vote in [prevote(h, 0), precommit(h, 0)] {
            let o = v.sign_vote(vote).await;
            assert!(matches!(o, SignOutcome::Signed { .. }), "height {h}: {o:?}");
            out.push((Instant::now(), c.served_by(&o)));
        }
    }
    out
}

/// The longest time between two consecutive signatures.
fn longest_gap(times: &[(Instant, Option<usize>)]) -> Duration {
    times
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default()
}

#[test]
fn kill_9_the_leader_mid_stream() {
    kill_9_the_leader_mid_stream_of(Cluster::builder(3));
}

#[test]
fn kill_9_the_leader_mid_stream_in_threshold_mode() {
    kill_9_the_leader_mid_stream_of(Cluster::builder(3).threshold(2));
}

fn kill_9_the_leader_mid_stream_of(builder: ClusterBuilder) {
    support::run(async {
        let checker = Checker::new();
        let mut c = builder.build();
        let (mut v, addr) = support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr.clone()]);
        let leader = c.start(Duration::from_secs(20)).await;
        // The worst case: the leader is also the validator's signer.
        c.make_active(&mut v, leader, Duration::from_secs(15)).await;
        let mut times = sign_heights(&c, &mut v, 1..=10).await;
        assert!(times.iter().all(|t| t.1 == Some(leader)));
        c.kill(leader).await;
        let killed_at = Instant::now();
        let after = sign_heights(&c, &mut v, 11..=25).await;
        let first_after = after[0].0 - killed_at;
        times.extend(after.iter().copied());
        assert!(after.iter().all(|t| t.1.is_some_and(|i| i != leader)));
        let rest: Vec<usize> = (1..=3).filter(|&i| i != leader).collect();
        let new_leader = c.wait_ready(&rest, Duration::from_secs(10)).await;
        assert_ne!(new_leader, leader);
        assert_no_conflicts(&checker);
        let gap = longest_gap(&times);
        eprintln!(
            "leader kill: node {leader} killed; first signature {:.0} ms later, longest gap {:.0} ms; new leader node {new_leader}",
            first_after.as_secs_f64() * 1e3,
            gap.as_secs_f64() * 1e3
        );
        // CometBFT would have retried for 5 s; the gap must fit well within.
        assert!(gap < Duration::from_secs(4), "gap {gap:?}");
    });
}

#[test]
fn kill_9_the_leader_while_a_follower_serves() {
    kill_9_the_leader_while_a_follower_serves_of(Cluster::builder(3));
}

/// The follower's signatures took the leader's share or the other
/// follower's; with the leader gone, only the other follower's is left.
#[test]
fn kill_9_the_leader_while_a_follower_serves_in_threshold_mode() {
    kill_9_the_leader_while_a_follower_serves_of(Cluster::builder(3).threshold(2));
}

fn kill_9_the_leader_while_a_follower_serves_of(builder: ClusterBuilder) {
    support::run(async {
        let checker = Checker::new();
        let mut c = builder.build();
        let (mut v, addr) = support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr.clone()]);
        let leader = c.start(Duration::from_secs(20)).await;
        let follower = (1..=3).find(|&i| i != leader).expect("a follower");
        c.make_active(&mut v, follower, Duration::from_secs(15))
            .await;
        let mut times = sign_heights(&c, &mut v, 1..=10).await;
        let accepted = v.accepted;
        c.kill(leader).await;
        let killed_at = Instant::now();
        let after = sign_heights(&c, &mut v, 11..=25).await;
        let first_after = after[0].0 - killed_at;
        times.extend(after.iter().copied());
        assert_no_conflicts(&checker);
        let gap = longest_gap(&times);
        eprintln!(
            "leader kill, follower {follower} serving: first signature {:.0} ms later, longest gap {:.0} ms, signer changes {}",
            first_after.as_secs_f64() * 1e3,
            gap.as_secs_f64() * 1e3,
            v.accepted - accepted
        );
        // The follower holds the request through the election (well under
        // its grant timeout) and keeps the validator: no failover needed.
        assert!(
            after.iter().all(|t| t.1 == Some(follower)),
            "the validator lost its signer: {after:?}"
        );
        assert_eq!(v.accepted, accepted, "the validator had to change signers");
    });
}

#[test]
fn five_nodes_keep_signing_with_two_down() {
    support::run(async {
        let checker = Checker::new();
        let mut c = Cluster::builder(5).build();
        let (mut v, addr) = support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr.clone()]);
        let leader = c.start(Duration::from_secs(20)).await;
        c.connect(&mut v, Duration::from_secs(15)).await;
        let mut times = sign_heights(&c, &mut v, 1..=5).await;
        // Kill the validator's signer and the leader (another node when
        // they are the same one).
        let serving = times.last().and_then(|t| t.1).expect("served");
        let second = if serving == leader {
            (1..=5).find(|&i| i != leader).expect("another node")
        } else {
            leader
        };
        c.kill(serving).await;
        c.kill(second).await;
        let after = sign_heights(&c, &mut v, 6..=20).await;
        assert!(
            after
                .iter()
                .all(|t| t.1.is_some_and(|i| i != serving && i != second))
        );
        times.extend(after);
        let rest: Vec<usize> = (1..=5).filter(|&i| i != serving && i != second).collect();
        let new_leader = c.wait_ready(&rest, Duration::from_secs(10)).await;
        assert_no_conflicts(&checker);
        let gap = longest_gap(&times);
        eprintln!(
            "five nodes: killed nodes {serving} (serving) and {second} (leader {leader}); longest gap {:.0} ms; new leader node {new_leader}",
            gap.as_secs_f64() * 1e3
        );
        assert!(gap < Duration::from_secs(4), "gap {gap:?}");
    });
}

#[test]
fn a_node_dying_with_a_fresh_grant_is_covered_by_the_retry() {
    a_node_dying_with_a_fresh_grant_is_covered_by_the_retry_of(Cluster::builder(3));
}

/// In threshold mode the node dies between its grant and its share round:
/// the retry's node collects shares for the granted bytes from the two
/// nodes left.
#[test]
fn a_node_dying_with_a_fresh_grant_is_covered_by_the_retry_in_threshold_mode() {
    a_node_dying_with_a_fresh_grant_is_covered_by_the_retry_of(Cluster::builder(3).threshold(2));
}

fn a_node_dying_with_a_fresh_grant_is_covered_by_the_retry_of(builder: ClusterBuilder) {
    support::run(async {
        const DIE_AT: i64 = 5;
        let checker = Checker::new();
        // Node 2 aborts right after its first grant at DIE_AT, before it
        // signs or replies.
        let victim = 2;
        let mut c = builder
            .env(victim, DIE_AFTER_GRANT_ENV, &DIE_AT.to_string())
            .build();
        let threshold = c.is_threshold();
        let (mut v, addr) = support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr.clone()]);
        c.start(Duration::from_secs(20)).await;
        c.make_active(&mut v, victim, Duration::from_secs(15)).await;
        let before = sign_heights(&c, &mut v, 1..=DIE_AT - 1).await;
        assert!(before.iter().all(|t| t.1 == Some(victim)));

        let vote = prevote(DIE_AT, 0);
        let sent = Instant::now();
        let o = v.sign_vote(vote).await;
        let took = sent.elapsed();
        let SignOutcome::Signed {
            sign_bytes,
            signature,
            via,
            ..
        } = &o
        else {
            panic!("the retry was not signed: {o:?}\n{}", c.log(victim));
        };
        let served = c.index_of(via).expect("known node");
        assert_ne!(served, victim, "served by the node that died");
        if threshold {
            // FROST takes fresh nonces: another valid signature of the
            // granted bytes under the validator's key.
            assert!(verify(&support::public_key(), sign_bytes, signature));
        } else {
            // The identical signature the dead node would have released.
            assert_eq!(*signature, expected_signature(sign_bytes));
        }
        // The victim really died of the hook, after its grant committed.
        let status = c.wait_exit(victim, Duration::from_secs(5)).await;
        assert_eq!(status.signal(), Some(6), "{status:?}");
        let log = c.log(victim);
        assert!(
            log.contains(DIE_AFTER_GRANT_ENV)
                && log.contains(&format!("granted demo-1 {DIE_AT}/0/prevote")),
            "{log}"
        );
        // Its grant stands: a different block at that position is refused.
        let other = v.sign_vote(prevote(DIE_AT, 1)).await;
        assert!(matches!(other, SignOutcome::Refused(_)), "{other:?}");
        sign_heights(&c, &mut v, DIE_AT..=DIE_AT + 3).await;
        assert_no_conflicts(&checker);
        eprintln!(
            "die after grant: node {victim} aborted holding the grant; node {served} re-served it after {:.0} ms",
            took.as_secs_f64() * 1e3
        );
    });
}
