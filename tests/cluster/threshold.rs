//! Threshold mode on a real cluster: a signature takes two nodes' shares,
//! and a node gives its share only for bytes its own applied state has
//! granted, whoever asks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quorumkms::cluster::keygen::ShareSlot;
use quorumkms::cluster::network::{self, CallError, Channels};
use quorumkms::cluster::pb;
use quorumkms::cluster::transport::TcpTransport;
use quorumkms::keys::ConsensusSigner as _;
use quorumkms::keys::softsign::SoftSigner;
use quorumkms::threshold::{GroupSigner, KeyShare, Participant, SignError, dealer};
use quorumkms::watermark::{Step, Verdict};

use crate::support::{TestCluster, attempt};

const CHAIN: &str = "threshold-chain";

/// A 2-of-3 cluster whose nodes hold shares of one key, and that key.
async fn start() -> (TestCluster, SoftSigner) {
    let key = SoftSigner::from_seed([42; 32]);
    let shares = dealer::split(CHAIN, &key.seed(), 2, &[1, 2, 3], &mut rand_core::OsRng).unwrap();
    let participants: BTreeMap<u64, Arc<Participant>> = shares
        .into_iter()
        .map(|share| (share.node(), Arc::new(Participant::new([share]))))
        .collect();
    (TestCluster::start_sharing(3, true, participants).await, key)
}

fn signer(cluster: &TestCluster, id: u64) -> Arc<dyn GroupSigner> {
    cluster.node(id).threshold_signer(CHAIN)
}

/// Grants `bytes` at `height` (prevote) through node `via`.
async fn grant(cluster: &TestCluster, via: u64, height: i64, bytes: &str) -> Vec<u8> {
    match cluster
        .grant(via, CHAIN, attempt(height, 0, Step::Prevote, bytes))
        .await
        .expect("grant")
    {
        Verdict::Sign(granted) => granted,
        Verdict::Refuse(r) => panic!("refused: {r}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_signs_granted_bytes_with_two_shares_under_the_validator_key() {
    let (cluster, key) = start().await;
    for (height, via) in [(1, 1), (2, 2), (3, 3)] {
        let granted = grant(&cluster, via, height, &format!("block-{height}")).await;
        let group = signer(&cluster, via);
        assert_eq!(group.public_key(), Some(key.public_key()));
        let signature = group.sign(&granted).await.expect("threshold signature");
        assert!(key.public_key().verify(&granted, &signature));
        // A repeat of the same granted bytes: another valid signature.
        let again = group.sign(&granted).await.expect("repeat");
        assert!(key.public_key().verify(&granted, &again));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_share_for_bytes_the_log_never_granted() {
    let (cluster, _) = start().await;
    let granted = grant(&cluster, 1, 5, "the committed block").await;
    let forged = b"a block the majority never saw".to_vec();
    // Through the signer: every other node refuses, and one share is not
    // enough.
    match signer(&cluster, 1).sign(&forged).await {
        Err(SignError::NotEnough {
            got,
            needed: 2,
            errors,
        }) => {
            assert!(got < 2);
            assert!(errors.contains("grants no such bytes"), "{errors}");
        }
        other => panic!("a share was had for ungranted bytes: {other:?}"),
    }
    // As a compromised node 1 would: straight to node 2's RPCs, with a
    // package it builds itself around its own commitment.
    let channels = Channels::new(Arc::new(TcpTransport), Duration::from_secs(2))
        .in_cluster(cluster.node(1).cluster_id().expect("cluster id"));
    let addr = &cluster.configs[&2].listen;
    let own = cluster.participants[&1].commit(CHAIN).unwrap();
    let theirs = network::commit(&channels, addr, Duration::from_secs(2), CHAIN)
        .await
        .expect("round 1 is free");
    let commitments = [(1u64, own.commitments), (2, theirs.commitments.clone())]
        .into_iter()
        .map(|(node, bytes)| {
            (
                quorumkms::threshold::identifier(node).unwrap(),
                frost_ed25519::round1::SigningCommitments::deserialize(&bytes).unwrap(),
            )
        })
        .collect();
    let package = frost_ed25519::SigningPackage::new(commitments, &forged);
    let request = pb::ShareRequest {
        chain_id: CHAIN.into(),
        session: theirs.session,
        package: package.serialize().unwrap(),
    };
    match network::share(&channels, addr, Duration::from_secs(10), request.clone()).await {
        Err(CallError::Failed { code, message, .. }) => {
            assert_eq!(code, tonic::Code::FailedPrecondition);
            assert!(message.contains("grants no such bytes"), "{message}");
        }
        other => panic!("node 2 gave a share for ungranted bytes: {other:?}"),
    }
    // The refused session is gone: asking again with granted bytes in it
    // gets nothing either.
    let honest =
        frost_ed25519::SigningPackage::new(package.signing_commitments().clone(), &granted);
    let again = pb::ShareRequest {
        package: honest.serialize().unwrap(),
        ..request
    };
    match network::share(&channels, addr, Duration::from_secs(10), again).await {
        Err(CallError::Failed { code, message, .. }) => {
            assert_eq!(code, tonic::Code::FailedPrecondition);
            assert!(message.contains("unknown here"), "{message}");
        }
        other => panic!("a refused session signed later: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_down_still_signs_two_down_do_not() {
    let (mut cluster, key) = start().await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
    cluster.stop(other).await;
    let granted = grant(&cluster, follower, 7, "block-7").await;
    let signature = signer(&cluster, follower)
        .sign(&granted)
        .await
        .expect("2 of 3 up");
    assert!(key.public_key().verify(&granted, &signature));
    // Granted while both were up, signed after the other went down too.
    let granted = grant(&cluster, leader, 8, "block-8").await;
    cluster.stop(follower).await;
    assert!(matches!(
        signer(&cluster, leader).sign(&granted).await,
        Err(SignError::NotEnough { got: 1, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_extension_is_signed_only_as_granted_with_its_precommit() {
    let (cluster, key) = start().await;
    let mut precommit = attempt(9, 0, Step::Precommit, "precommit-9");
    precommit.extension = Some(b"extension-9".to_vec());
    let verdict = cluster.grant(2, CHAIN, precommit).await.expect("grant");
    assert!(matches!(verdict, Verdict::Sign(_)));
    let group = signer(&cluster, 2);
    let signature = group.sign(b"extension-9").await.expect("granted extension");
    assert!(key.public_key().verify(b"extension-9", &signature));
    assert!(group.sign(b"another extension").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_generation_over_the_cluster_gives_every_voter_a_share_of_one_new_key() {
    // Three nodes in threshold mode, none holding a share yet.
    let participants: BTreeMap<u64, Arc<Participant>> = (1..=3)
        .map(|id| (id, Arc::new(Participant::new([]))))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let slot = |id: u64| ShareSlot {
        file: dir.path().join(format!("node{id}.share.json")),
        threshold: 2,
        shares: 3,
    };
    let mut cluster = TestCluster::start_sharing(3, true, participants).await;
    // Slots are read at start: restart each node with its slot.
    for id in 1..=3 {
        cluster
            .share_slots
            .insert(id, BTreeMap::from([(CHAIN.to_string(), slot(id))]));
        cluster.stop(id).await;
        cluster.restart(id).await;
    }
    cluster.wait_leader(Duration::from_secs(10)).await;
    assert!(signer(&cluster, 1).public_key().is_none());
    assert!(matches!(
        signer(&cluster, 1).sign(b"x").await,
        Err(SignError::NoShare(_))
    ));

    let message = cluster.node(2).threshold_dkg(CHAIN).await.expect("dkg");
    assert!(message.contains("2-of-3"), "{message}");
    let group = signer(&cluster, 1).public_key().expect("a share now");
    for id in 1..=3 {
        assert_eq!(signer(&cluster, id).public_key(), Some(group));
        let file = slot(id).file;
        let share = KeyShare::load(&file, Some(CHAIN)).expect("a 0600 share file");
        assert_eq!(share.node(), id);
        assert_eq!(share.group_key().unwrap(), group);
    }
    // The new key signs granted bytes with any two nodes.
    let granted = grant(&cluster, 3, 1, "block-1").await;
    let signature = signer(&cluster, 3).sign(&granted).await.expect("signature");
    assert!(group.verify(&granted, &signature));
    // A second run never replaces the key.
    let again = cluster.node(1).threshold_dkg(CHAIN).await.unwrap_err();
    assert!(again.to_string().contains("already has a share"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_superseded_during_its_share_round_still_gets_shares_for_a_while() {
    let (cluster, key) = start().await;
    // Another grant commits on the chain before the first one's share
    // round (another validator node, or the next step).
    let first = grant(&cluster, 1, 20, "block-20").await;
    let next = grant(&cluster, 2, 21, "block-21").await;
    let signature = signer(&cluster, 1)
        .sign(&first)
        .await
        .expect("recent grant");
    assert!(key.public_key().verify(&first, &signature));
    assert!(signer(&cluster, 3).sign(&next).await.is_ok());
    // Bytes granted more than RECENT_GRANTS grants ago are out of reach.
    let recent = quorumkms::cluster::state_machine::RECENT_GRANTS as i64;
    for height in 22..22 + recent {
        grant(&cluster, 2, height, &format!("block-{height}")).await;
    }
    assert!(signer(&cluster, 1).sign(&first).await.is_err());
}
