//! A real network cut: three signer processes, each in its own network
//! namespace on one bridge; node 3 is cut off from nodes 1 and 2 by
//! iptables rules inside its namespace (the validators stay reachable).
//! Node 3 cannot sign; the validator it served fails over to the majority
//! side and keeps getting signatures; an export asked of node 3 is never
//! its stale state; after the cut heals, node 3 signs again.
//!
//! It also runs in threshold mode (2 of 3): cut off, node 3 gets neither a
//! grant nor a share, nodes 1 and 2 sign with their two shares, and after
//! the heal node 3's signatures take a share from one of them.
//!
//! Needs root (namespaces, iptables); see the harness docs.

use std::time::Duration;

use crate::support;
use crate::support::{
    Cluster, ClusterBuilder, assert_no_conflicts, fast_timing, precommit, prevote, short_timing,
};
use quorumkms::cluster::admin;
use quorumkms::testnet::CHAIN_ID;
use quorumkms::validator::{Checker, SignOutcome};
use quorumkms::watermark::{Position, Step};
use tokio::time::Instant;

#[test]
fn a_cut_off_node_cannot_sign_and_its_validator_fails_over() {
    a_cut_off_node_cannot_sign(Cluster::builder(3));
}

#[test]
fn a_cut_off_node_cannot_sign_and_its_validator_fails_over_in_threshold_mode() {
    a_cut_off_node_cannot_sign(Cluster::builder(3).threshold(2));
}

/// The scenario on `builder`'s cluster, each node in its own namespace.
fn a_cut_off_node_cannot_sign(builder: ClusterBuilder) {
    if !support::privileged_allowed("partition") {
        return;
    }
    support::run(async {
        const CUT: usize = 3;
        let checker = Checker::new();
        let mut c = builder.netns().build();
        let host = c.validator_host();
        // A: dialled by every node. B: dialled by node 3 alone.
        let (mut a, addr_a) = support::validator(&host, &checker, fast_timing()).await;
        let (mut b, addr_b) = support::validator(&host, &checker, short_timing()).await;
        c.write(&|i| {
            let mut addrs = vec![addr_a.clone()];
            if i == CUT {
                addrs.push(addr_b.clone());
            }
            addrs
        });
        c.start(Duration::from_secs(20)).await;
        c.make_active(&mut a, CUT, Duration::from_secs(15)).await;
        c.connect(&mut b, Duration::from_secs(10)).await;
        for h in 1..=5 {
            let o = a.sign_vote(prevote(h, 0)).await;
            assert_eq!(c.served_by(&o), Some(CUT), "height {h}: {o:?}");
        }
        let o = b.sign_vote(prevote(6, 0)).await;
        assert_eq!(c.served_by(&o), Some(CUT), "B before the cut: {o:?}");

        c.isolate(CUT);
        let cut_at = Instant::now();
        // The majority side keeps (or elects) a leader; node 3 gives up.
        c.wait_status(
            CUT,
            "without a quorum leader",
            Duration::from_secs(10),
            |s| !s.has_quorum_leader,
        )
        .await;
        // A keeps asking: every answer comes from the majority side.
        let mut first_after = None;
        for h in 7..=15 {
            for vote in [prevote(h, 0), precommit(h, 0)] {
                let o = a.sign_vote(vote).await;
                let via = c.served_by(&o);
                assert!(
                    matches!(via, Some(1 | 2)),
                    "height {h} after the cut: {o:?}"
                );
                first_after.get_or_insert_with(|| cut_at.elapsed());
            }
        }
        c.wait_ready(&[1, 2], Duration::from_secs(10)).await;
        // B only has node 3: nothing is signed for it.
        let o = b.sign_vote(prevote(16, 9)).await;
        assert!(
            matches!(o, SignOutcome::Failed(_)),
            "B during the cut: {o:?}"
        );
        let status = c
            .status(CUT)
            .await
            .expect("node 3 answers on its admin port");
        assert!(!status.has_quorum_leader, "{status:?}");
        // Node 3's own state stops at height 6; an export asked of it must
        // not hand that out as the watermark: it comes from the leader, or
        // fails.
        let signed = Position {
            height: 15,
            round: 0,
            step: Step::Precommit,
        };
        if let Ok(states) = admin::Client::new(c.addr(CUT), Duration::from_secs(5))
            .export()
            .await
        {
            let exported = states.get(CHAIN_ID).and_then(|s| s.position);
            assert!(
                exported >= Some(signed),
                "stale export through the cut-off node: {exported:?}"
            );
        }

        c.heal(CUT);
        c.wait_ready(&[1, 2, 3], Duration::from_secs(15)).await;
        // Node 3 signs again: B (still only node 3) owns a fresh height.
        c.connect(&mut b, Duration::from_secs(10)).await;
        let o = b.sign_vote(prevote(17, 0)).await;
        assert_eq!(c.served_by(&o), Some(CUT), "B after the heal: {o:?}");
        let o = a.sign_vote(prevote(18, 0)).await;
        assert!(
            matches!(o, SignOutcome::Signed { .. }),
            "A after the heal: {o:?}"
        );
        assert_no_conflicts(&checker);
        eprintln!(
            "partition: first signature on the majority side {:.0} ms after the cut",
            first_after.unwrap_or_default().as_secs_f64() * 1e3
        );
    });
}
