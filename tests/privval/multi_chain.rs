//! One signer serving several chains, each with its own validators: every
//! chain keeps its own watermark, and a request for a chain a connection
//! does not serve is refused.

use crate::support;
use quorumkms::privval::Version;
use quorumkms::testnet;
use quorumkms::validator::{Checker, MockValidator, SignOutcome, SignerListener, consensus};

#[tokio::test]
async fn two_chains_keep_separate_watermarks() {
    let dir = tempfile::tempdir().unwrap();
    let seed = [5u8; 32];
    let public_key = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    let chains = ["alpha-1".to_string(), "beta-2".to_string()];
    let mut listens = Vec::new();
    let mut validators_cfg = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        // Two validator nodes per chain: one on tcp, one on unix.
        let tcp = SignerListener::tcp("127.0.0.1:0").await.unwrap();
        let unix = SignerListener::unix(dir.path().join(format!("v{i}.sock"))).unwrap();
        validators_cfg.push((chain.clone(), tcp.signer_addr()));
        validators_cfg.push((chain.clone(), unix.signer_addr()));
        listens.push((chain.clone(), tcp));
        listens.push((chain.clone(), unix));
    }
    let node = testnet::write_node(
        dir.path(),
        1,
        seed,
        &chains,
        &validators_cfg,
        Version::V0_38,
        "",
    )
    .unwrap();
    let _child = testnet::spawn_node(&support::exe(), &node).unwrap();
    let checker = Checker::new();
    let mut validators: Vec<MockValidator> = listens
        .into_iter()
        .map(|(chain, listen)| {
            MockValidator::new(
                listen,
                &chain,
                Version::V0_38,
                public_key,
                support::fast_timing(),
                checker.clone(),
            )
        })
        .collect();
    let address = consensus::address(&public_key);
    // alpha reaches height 20, beta only 3; each chain's two validator
    // nodes ask in lockstep, as a validator and its sentry would.
    for (pair, top) in validators.chunks_mut(2).zip([20, 3]) {
        for height in 1..=top {
            for v in pair.iter_mut() {
                let block = Some(consensus::block_id(height, 0));
                let vote = consensus::vote(Version::V0_38, false, height, 0, block, &address, 0);
                let outcome = v.sign_vote(vote).await;
                assert!(
                    matches!(outcome, SignOutcome::Signed { .. }),
                    "{height}: {outcome:?}"
                );
            }
        }
    }
    // The second validator of each chain asked for the same heights: the
    // same payloads, so the same signatures, never conflicts.
    let report = checker.report();
    assert_eq!(
        (report.released, report.conflicts, report.invalid),
        (46, 0, 0)
    );
    assert_eq!(checker.highest("alpha-1").map(|p| p.height), Some(20));
    assert_eq!(checker.highest("beta-2").map(|p| p.height), Some(3));
}
