//! Three real signer processes in a Raft cluster, all dialling one
//! validator that holds one signer connection at a time, as CometBFT does:
//! every request is signed, double-sign attempts are refused, and every
//! node ends with the same watermark.

use std::time::Duration;

use crate::support;
use crate::support::{Cluster, assert_no_conflicts, fast_timing, precommit, prevote, proposal};
use quorumkms::testnet::CHAIN_ID;
use quorumkms::validator::{Checker, SignOutcome};
use quorumkms::watermark::{Position, Step};
use tokio::time::Instant;

const HEIGHTS: i64 = 30;

#[test]
fn three_nodes_sign_for_one_validator() {
    three_nodes_sign(Cluster::builder(3));
}

/// The same in threshold mode, 2 of 3: each signature takes two nodes'
/// shares, and the validator sees plain Ed25519 signatures under its key.
#[test]
fn three_nodes_sign_for_one_validator_in_threshold_mode() {
    three_nodes_sign(Cluster::builder(3).threshold(2));
}

fn three_nodes_sign(builder: support::ClusterBuilder) {
    support::run(async {
        let checker = Checker::new();
        let mut c = builder.build();
        let (mut v, addr) = support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr.clone()]);
        c.start(Duration::from_secs(20)).await;

        let started = Instant::now();
        let mut refused = 0;
        for h in 1..=HEIGHTS {
            let outcomes = [
                v.sign_proposal(proposal(h, 0)).await,
                v.sign_vote(prevote(h, 0)).await,
                v.sign_vote(precommit(h, 0)).await,
            ];
            for o in &outcomes {
                assert!(matches!(o, SignOutcome::Signed { .. }), "height {h}: {o:?}");
            }
            if h % 5 == 0 {
                // A conflicting precommit at the same H/R/step: refused.
                let other = v.sign_vote(precommit(h, 1)).await;
                assert!(
                    matches!(other, SignOutcome::Refused(_)),
                    "height {h}: {other:?}"
                );
                refused += 1;
            }
        }
        let elapsed = started.elapsed();
        // One signer served the whole run: the others waited in the queue.
        assert_eq!(v.accepted, 1, "the validator had to change signers");
        let serving = c
            .index_of(v.peer().expect("connected"))
            .expect("a known node");
        let last = Position {
            height: HEIGHTS,
            round: 0,
            step: Step::Precommit,
        };
        for i in 1..=3 {
            c.wait_status(i, "at the last watermark", Duration::from_secs(5), |s| {
                s.chains.get(CHAIN_ID).and_then(|c| c.position) == Some(last)
            })
            .await;
        }
        let report = checker.report();
        assert_eq!(report.released, 3 * HEIGHTS as usize, "{report:?}");
        assert_eq!(refused, HEIGHTS / 5);
        assert_no_conflicts(&checker);
        eprintln!(
            "happy path: {} signatures in {:.0} ms via node {serving} ({:.1} ms each)",
            report.released,
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e3 / report.released as f64
        );
    });
}
