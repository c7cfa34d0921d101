//! One request, or conflicting requests, reaching all three signer
//! processes at once: three validator nodes of one validator (the
//! validator and two sentries), each dialled by one signer node.
//! Identical requests get identical signatures from every node; of
//! conflicting requests for one height/round/step exactly one is signed.

use std::time::Duration;

use crate::support;
use crate::support::{Cluster, assert_no_conflicts, fast_timing, precommit, prevote};
use quorumkms::validator::{Checker, MockValidator, SignOutcome};

/// Three validator nodes; signer node `i` dials only validator node `i`.
/// Returns them once each is connected to its signer.
async fn start(checker: &Checker) -> (Cluster, Vec<MockValidator>) {
    let mut c = Cluster::builder(3).build();
    let mut validators = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let (v, addr) = support::validator(&c.validator_host(), checker, fast_timing()).await;
        validators.push(v);
        addrs.push(addr);
    }
    c.write(&|i| vec![addrs[i - 1].clone()]);
    c.start(Duration::from_secs(20)).await;
    for (i, v) in validators.iter_mut().enumerate() {
        c.make_active(v, i + 1, Duration::from_secs(15)).await;
    }
    (c, validators)
}

#[test]
fn identical_requests_to_all_nodes_get_identical_signatures() {
    support::run(async {
        let checker = Checker::new();
        let (c, mut vs) = start(&checker).await;
        let mut precommits_signed = 0;
        for h in 1..=10 {
            let [a, b, d] = &mut vs[..] else {
                unreachable!()
            };
            // The first request at a height: whichever validator node is
            // granted first owns the height, and the others' identical
            // bytes are re-served, so all three are signed.
            let vote = prevote(h, 0);
            let (x, y, z) = tokio::join!(
                a.sign_vote(vote.clone()),
                b.sign_vote(vote.clone()),
                d.sign_vote(vote.clone())
            );
            let sigs: Vec<Vec<u8>> = [&x, &y, &z]
                .iter()
                .map(|o| support::signature(o, &format!("height {h}")))
                .collect();
            assert!(
                sigs.iter().all(|s| *s == sigs[0]),
                "height {h}: signatures differ"
            );
            // Each through its own signer node.
            let via: Vec<Option<usize>> = [&x, &y, &z].iter().map(|o| c.served_by(o)).collect();
            assert_eq!(via, vec![Some(1), Some(2), Some(3)], "height {h}");
            // A new position at the now owned height: a non-owner racing
            // ahead of the owner is refused (height ownership); whatever is
            // signed is identical, and the owner is always signed.
            let vote = precommit(h, 0);
            let (x, y, z) = tokio::join!(
                a.sign_vote(vote.clone()),
                b.sign_vote(vote.clone()),
                d.sign_vote(vote.clone())
            );
            let mut signed = Vec::new();
            for o in [&x, &y, &z] {
                match o {
                    SignOutcome::Signed { signature, .. } => signed.push(signature.clone()),
                    SignOutcome::Refused(e) => {
                        assert!(e.description.contains("owned"), "height {h}: {e:?}")
                    }
                    SignOutcome::Failed(e) => panic!("height {h}: precommit failed: {e}"),
                }
            }
            assert!(
                !signed.is_empty(),
                "height {h}: the owner's precommit was refused"
            );
            assert!(
                signed.iter().all(|s| *s == signed[0]),
                "height {h}: precommits differ"
            );
            precommits_signed += signed.len();
        }
        assert_eq!(checker.report().released, 30 + precommits_signed);
        assert_no_conflicts(&checker);
        eprintln!(
            "identical requests: 30/30 prevotes and {precommits_signed}/30 precommits signed"
        );
    });
}

#[test]
fn conflicting_requests_to_all_nodes_sign_at_most_one() {
    support::run(async {
        let checker = Checker::new();
        let (_c, mut vs) = start(&checker).await;
        let mut winners = [0usize; 3];
        for h in 1..=20 {
            // Each validator node asks for its own block: a conflict.
            let [a, b, d] = &mut vs[..] else {
                unreachable!()
            };
            let (x, y, z) = tokio::join!(
                a.sign_vote(prevote(h, 1)),
                b.sign_vote(prevote(h, 2)),
                d.sign_vote(prevote(h, 3))
            );
            let prevotes = [x, y, z];
            let signed: Vec<usize> = (0..3)
                .filter(|&k| matches!(prevotes[k], SignOutcome::Signed { .. }))
                .collect();
            assert_eq!(signed.len(), 1, "height {h} prevotes: {prevotes:?}");
            assert!(
                prevotes
                    .iter()
                    .all(|o| matches!(o, SignOutcome::Signed { .. } | SignOutcome::Refused(_))),
                "height {h}: a request went unanswered: {prevotes:?}"
            );
            winners[signed[0]] += 1;
            // Each precommits its own block: again only one is signed, and
            // it is the prevote's winner (it owns the height).
            let (x, y, z) = tokio::join!(
                a.sign_vote(precommit(h, 1)),
                b.sign_vote(precommit(h, 2)),
                d.sign_vote(precommit(h, 3))
            );
            let precommits = [x, y, z];
            let signed_pc: Vec<usize> = (0..3)
                .filter(|&k| matches!(precommits[k], SignOutcome::Signed { .. }))
                .collect();
            assert_eq!(signed_pc, signed, "height {h} precommits: {precommits:?}");
        }
        let report = checker.report();
        assert_eq!(report.released, 40, "{report:?}");
        assert_no_conflicts(&checker);
        eprintln!("conflicting requests: winners by validator node {winners:?}");
    });
}
