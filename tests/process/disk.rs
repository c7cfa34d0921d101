//! A signer process whose data dir fills up: node 3's Raft store lives on a
//! small tmpfs that the test fills. Node 3 refuses to sign (it drops its
//! validators rather than answer), the cluster keeps signing through the
//! other two, and once the disk has room again node 3 recovers and signs.
//!
//! Needs root (mount); see the harness docs.

use std::time::Duration;

use crate::support;
use crate::support::{Cluster, assert_no_conflicts, fast_timing, prevote, short_timing};
use quorumkms::validator::{Checker, SignOutcome};
use tokio::time::Instant;

#[test]
fn a_full_disk_refuses_then_recovers() {
    if !support::privileged_allowed("disk") {
        return;
    }
    support::run(async {
        const FULL: usize = 3;
        let checker = Checker::new();
        let mut c = Cluster::builder(3).tmpfs(FULL, "16m").build();
        let host = c.validator_host();
        // A: dialled by every node. B: dialled by node 3 alone.
        let (mut a, addr_a) = support::validator(&host, &checker, fast_timing()).await;
        let (mut b, addr_b) = support::validator(&host, &checker, short_timing()).await;
        c.write(&|i| {
            let mut addrs = vec![addr_a.clone()];
            if i == FULL {
                addrs.push(addr_b.clone());
            }
            addrs
        });
        c.spawn_all();
        // Bootstrapped through node 3, which then usually leads.
        c.initialize(FULL).await;
        let leader = c.wait_ready(&[1, 2, 3], Duration::from_secs(20)).await;
        c.connect(&mut a, Duration::from_secs(15)).await;
        c.connect(&mut b, Duration::from_secs(10)).await;
        let mut h = 0;
        for _ in 0..5 {
            h += 1;
            let o = a.sign_vote(prevote(h, 0)).await;
            assert!(matches!(o, SignOutcome::Signed { .. }), "height {h}: {o:?}");
        }
        h += 1;
        let o = b.sign_vote(prevote(h, 0)).await;
        assert_eq!(
            c.served_by(&o),
            Some(FULL),
            "B before the disk fills: {o:?}"
        );

        c.disk(FULL).fill();
        let filled_at = Instant::now();
        // Keep signing through A until node 3's writes fail; every request
        // is signed all along.
        let deadline = filled_at + Duration::from_secs(30);
        let (faulted, fault_after) = loop {
            h += 1;
            let o = a.sign_vote(prevote(h, 0)).await;
            assert!(matches!(o, SignOutcome::Signed { .. }), "height {h}: {o:?}");
            if let Some(s) = c.status(FULL).await
                && s.storage_fault.is_some()
            {
                break (s, filled_at.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "node 3 never noticed its full disk (height {h})\n{}",
                c.log(FULL)
            );
        };
        assert!(!faulted.has_quorum_leader, "{faulted:?}");
        // The others go on; node 3 serves nobody.
        for _ in 0..10 {
            h += 1;
            let o = a.sign_vote(prevote(h, 0)).await;
            assert!(
                matches!(o, SignOutcome::Signed { .. }) && c.served_by(&o) != Some(FULL),
                "height {h}: {o:?}"
            );
        }
        c.wait_ready(&[1, 2], Duration::from_secs(10)).await;
        h += 1;
        let o = b.sign_vote(prevote(h, 9)).await;
        if !matches!(o, SignOutcome::Failed(_)) {
            // redb can still find free pages inside its own file after the
            // filesystem is full, so the node may recover before the disk
            // is freed. Then, and only then, it may sign again.
            let status = c.status(FULL).await;
            assert!(
                status.as_ref().is_some_and(|s| s.storage_fault.is_none()),
                "B was answered while node 3 reports a storage fault: {o:?} {status:?}"
            );
        }

        c.disk(FULL).free();
        let freed_at = Instant::now();
        c.wait_status(FULL, "recovered", Duration::from_secs(20), |s| {
            s.storage_fault.is_none() && s.has_quorum_leader
        })
        .await;
        let recovered = freed_at.elapsed();
        c.wait_ready(&[1, 2, 3], Duration::from_secs(10)).await;
        c.connect(&mut b, Duration::from_secs(10)).await;
        h += 1;
        let o = b.sign_vote(prevote(h, 0)).await;
        assert_eq!(c.served_by(&o), Some(FULL), "B after recovery: {o:?}");
        h += 1;
        let o = a.sign_vote(prevote(h, 0)).await;
        assert!(
            matches!(o, SignOutcome::Signed { .. }),
            "A after recovery: {o:?}"
        );
        assert_no_conflicts(&checker);
        eprintln!(
            "full disk: leader was node {leader}; fault after {:.0} ms, recovered {:.0} ms after freeing\n fault: {:?}",
            fault_after.as_secs_f64() * 1e3,
            recovered.as_secs_f64() * 1e3,
            faulted.storage_fault
        );
    });
}
