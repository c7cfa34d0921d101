use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand_core::OsRng;

use super::coordinator::{self, Job};
use super::participant::{Commitment, MAX_OPEN_SESSIONS, decode_package};
use super::*;
use crate::keys::ConsensusSigner as _;
use crate::keys::softsign::SoftSigner;

const CHAIN: &str = "test-chain";

fn split_3(t: u16) -> (SoftSigner, Vec<KeyShare>) {
    let key = SoftSigner::from_seed([7; 32]);
    let shares = dealer::split(CHAIN, &key.seed(), t, &[1, 2, 3], &mut OsRng).unwrap();
    (key, shares)
}

/// How a test cosigner behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Honest,
    Down,
    /// Answers round 1, then gives a share over other bytes.
    BadShare,
    /// Never answers (a partitioned node).
    Silent,
}

/// A node in memory: a share holder, the bytes its "applied state" has
/// granted, and how it behaves.
struct TestNode {
    commits: std::sync::atomic::AtomicUsize,
    holder: local::Holder,
    granted: Mutex<Vec<u8>>,
    behaviour: Behaviour,
}

impl TestNode {
    fn new(share: KeyShare, behaviour: Behaviour) -> Arc<TestNode> {
        Arc::new(TestNode {
            commits: std::sync::atomic::AtomicUsize::new(0),
            holder: local::Holder::new(share),
            granted: Mutex::new(Vec::new()),
            behaviour,
        })
    }

    fn grant(&self, bytes: &[u8]) {
        *self.granted.lock().unwrap() = bytes.to_vec();
    }
}

impl Cosigner for TestNode {
    fn node(&self) -> u64 {
        self.holder.node()
    }

    fn commit<'a>(&'a self, chain_id: &'a str) -> BoxFuture<'a, Result<Commitment, CosignError>> {
        Box::pin(async move {
            self.commits
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match self.behaviour {
                Behaviour::Down => return Err(CosignError::Unreachable("down".into())),
                Behaviour::Silent => std::future::pending::<()>().await,
                _ => {}
            }
            self.holder.commit(chain_id).await
        })
    }

    fn sign<'a>(
        &'a self,
        chain_id: &'a str,
        session: u64,
        package: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, CosignError>> {
        Box::pin(async move {
            let refused = |e: ShareError| CosignError::Refused(e.to_string());
            let mut package = decode_package(package).map_err(refused)?;
            if self.behaviour == Behaviour::BadShare {
                package = frost_ed25519::SigningPackage::new(
                    package.signing_commitments().clone(),
                    b"something else",
                );
            } else if package.message() != self.granted.lock().unwrap().as_slice() {
                return Err(refused(ShareError::NotGranted("other bytes".into())));
            }
            let bytes = package
                .serialize()
                .map_err(|e| CosignError::Refused(e.to_string()))?;
            self.holder.sign(chain_id, session, &bytes).await
        })
    }
}

fn job<'a>(message: &'a [u8], share: &'a KeyShare) -> Job<'a> {
    Job {
        chain_id: CHAIN,
        message,
        public: share.public_package(),
        threshold: share.threshold(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(5),
        call_timeout: Duration::from_secs(1),
        hedge: coordinator::hedge_delay(Duration::from_secs(1)),
    }
}

fn cosigners(nodes: &[Arc<TestNode>]) -> Vec<Arc<dyn Cosigner>> {
    nodes
        .iter()
        .map(|n| n.clone() as Arc<dyn Cosigner>)
        .collect()
}

#[test]
fn a_split_key_keeps_its_public_key_and_any_two_shares_sign_for_it() {
    let (key, shares) = split_3(2);
    for share in &shares {
        assert_eq!(share.group_key().unwrap(), key.public_key());
        assert_eq!((share.threshold(), share.shares()), (2, 3));
        assert_eq!(share.holders(), vec![1, 2, 3]);
    }
    let message = b"granted sign bytes";
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let chosen: Vec<&KeyShare> = pair.iter().map(|i| &shares[*i]).collect();
        let signature = sign_in_memory(&chosen, message);
        // As CometBFT verifies: plain Ed25519 under the validator's key.
        assert!(key.public_key().verify(message, &signature));
        let vk = ed25519_consensus::VerificationKey::try_from(key.public_key().as_bytes()).unwrap();
        vk.verify(&ed25519_consensus::Signature::from(signature), message)
            .unwrap();
    }
}

/// Both FROST rounds over `shares`, in one place.
fn sign_in_memory(shares: &[&KeyShare], message: &[u8]) -> [u8; 64] {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(sign_with_shares(shares, message))
        .unwrap()
}

#[test]
fn one_share_alone_signs_nothing() {
    let (key, shares) = split_3(2);
    let lone = Participant::new([shares[0].clone()]);
    let commitment = lone.commit(CHAIN).unwrap();
    let only_own = BTreeMap::from([(
        identifier(1).unwrap(),
        frost_ed25519::round1::SigningCommitments::deserialize(&commitment.commitments).unwrap(),
    )]);
    let package = frost_ed25519::SigningPackage::new(only_own, b"anything");
    // FROST refuses a package with fewer than t commitments...
    assert!(matches!(
        lone.sign(CHAIN, commitment.session, &package),
        Err(ShareError::Frost(_))
    ));
    // ...and a coordinator with one node, however it sets the threshold,
    // gets no signature that verifies.
    let node = TestNode::new(shares[0].clone(), Behaviour::Honest);
    node.grant(b"anything");
    let mut one = job(b"anything", &shares[0]);
    one.threshold = 1;
    let result = tokio_test_block_on(coordinator::sign(&one, &cosigners(&[node])));
    assert!(result.is_err(), "one share made a signature: {result:?}");
    let _ = key;
}

fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_session_signs_once_and_only_for_its_chain() {
    let (_, shares) = split_3(2);
    let message = b"bytes";
    let a = Participant::new([shares[0].clone()]);
    let b = Participant::new([shares[1].clone()]);
    let (ca, cb) = (a.commit(CHAIN).unwrap(), b.commit(CHAIN).unwrap());
    let map = [(1, &ca), (2, &cb)]
        .into_iter()
        .map(|(node, c)| {
            (
                identifier(node).unwrap(),
                frost_ed25519::round1::SigningCommitments::deserialize(&c.commitments).unwrap(),
            )
        })
        .collect();
    let package = frost_ed25519::SigningPackage::new(map, message);
    assert_eq!(
        a.sign("other-chain", ca.session, &package),
        Err(ShareError::WrongChain {
            session: ca.session,
            opened: CHAIN.into(),
            asked: "other-chain".into()
        })
    );
    // The wrong-chain call used the nonces up too.
    assert_eq!(
        a.sign(CHAIN, ca.session, &package),
        Err(ShareError::UnknownSession(ca.session))
    );
    b.sign(CHAIN, cb.session, &package).unwrap();
    assert_eq!(
        b.sign(CHAIN, cb.session, &package),
        Err(ShareError::UnknownSession(cb.session))
    );
    assert_eq!(
        a.commit("other-chain"),
        Err(ShareError::UnknownChain("other-chain".into()))
    );
}

#[test]
fn open_sessions_are_bounded_and_the_oldest_go_first() {
    let (_, shares) = split_3(2);
    let p = Participant::new([shares[0].clone()]);
    let first = p.commit(CHAIN).unwrap();
    for _ in 0..MAX_OPEN_SESSIONS {
        p.commit(CHAIN).unwrap();
    }
    assert_eq!(p.open_sessions(), MAX_OPEN_SESSIONS);
    let package = frost_ed25519::SigningPackage::new(BTreeMap::new(), b"x");
    assert_eq!(
        p.sign(CHAIN, first.session, &package),
        Err(ShareError::UnknownSession(first.session))
    );
}

#[tokio::test]
async fn the_coordinator_signs_around_a_node_that_is_down_or_lies() {
    let (key, shares) = split_3(2);
    let message = b"granted";
    for behaviours in [
        [Behaviour::Honest, Behaviour::Down, Behaviour::Honest],
        [Behaviour::Honest, Behaviour::BadShare, Behaviour::Honest],
        [Behaviour::Down, Behaviour::Honest, Behaviour::Honest],
    ] {
        let nodes: Vec<Arc<TestNode>> = shares
            .iter()
            .zip(behaviours)
            .map(|(s, b)| TestNode::new(s.clone(), b))
            .collect();
        for n in &nodes {
            n.grant(message);
        }
        let signature = coordinator::sign(&job(message, &shares[0]), &cosigners(&nodes))
            .await
            .unwrap();
        assert!(key.public_key().verify(message, &signature));
    }
}

#[tokio::test]
async fn round_1_asks_t_nodes_and_the_rest_only_when_one_is_silent() {
    let (key, shares) = split_3(2);
    let message = b"granted";
    let honest: Vec<Arc<TestNode>> = shares
        .iter()
        .map(|s| TestNode::new(s.clone(), Behaviour::Honest))
        .collect();
    for n in &honest {
        n.grant(message);
    }
    coordinator::sign(&job(message, &shares[0]), &cosigners(&honest))
        .await
        .unwrap();
    let asked: Vec<usize> = honest
        .iter()
        .map(|n| n.commits.load(std::sync::atomic::Ordering::SeqCst))
        .collect();
    assert_eq!(asked, vec![1, 1, 0]);

    // Node 2 is partitioned: it never answers, and node 3 is asked after
    // the hedge delay, long before the call would time out.
    let nodes: Vec<Arc<TestNode>> = shares
        .iter()
        .zip([Behaviour::Honest, Behaviour::Silent, Behaviour::Honest])
        .map(|(s, b)| TestNode::new(s.clone(), b))
        .collect();
    for n in &nodes {
        n.grant(message);
    }
    // Calls that would take an hour to time out: only the hedge can bring
    // node 3 in (the outer bound only turns a hang into a failure).
    let mut slow = job(message, &shares[0]);
    slow.call_timeout = Duration::from_secs(3600);
    slow.deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    slow.hedge = Duration::from_millis(10);
    let signature = tokio::time::timeout(
        Duration::from_secs(600),
        coordinator::sign(&slow, &cosigners(&nodes)),
    )
    .await
    .expect("node 3 was never asked while node 2 stayed silent")
    .unwrap();
    assert!(key.public_key().verify(message, &signature));
}

#[tokio::test]
async fn no_signature_without_t_nodes_that_granted_the_bytes() {
    let (_, shares) = split_3(2);
    let nodes: Vec<Arc<TestNode>> = shares
        .iter()
        .map(|s| TestNode::new(s.clone(), Behaviour::Honest))
        .collect();
    // Only node 1 (the would-be compromised coordinator) granted them.
    nodes[0].grant(b"ungranted");
    nodes[1].grant(b"what the majority committed");
    nodes[2].grant(b"what the majority committed");
    let result = coordinator::sign(&job(b"ungranted", &shares[0]), &cosigners(&nodes)).await;
    match result {
        Err(SignError::NotEnough {
            got,
            needed,
            errors,
        }) => {
            assert_eq!(needed, 2);
            assert!(got < 2);
            assert!(errors.contains("not granted"), "{errors}");
        }
        other => panic!("expected no signature, got {other:?}"),
    }
    // Two nodes down: none either.
    let down: Vec<Arc<TestNode>> = shares
        .iter()
        .zip([Behaviour::Honest, Behaviour::Down, Behaviour::Down])
        .map(|(s, b)| TestNode::new(s.clone(), b))
        .collect();
    down[0].grant(b"x");
    assert!(matches!(
        coordinator::sign(&job(b"x", &shares[0]), &cosigners(&down)).await,
        Err(SignError::NotEnough { got: 1, .. })
    ));
}

#[test]
fn a_share_file_round_trips_and_refuses_tampering() {
    let (key, shares) = split_3(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("share.json");
    shares[1].write(&path, false).unwrap();
    assert!(shares[1].write(&path, false).is_err(), "overwrote a share");
    let loaded = KeyShare::load(&path, Some(CHAIN)).unwrap();
    assert_eq!(loaded.node(), 2);
    assert_eq!(loaded.group_key().unwrap(), key.public_key());
    let wrong_chain = KeyShare::load(&path, Some("other"))
        .unwrap_err()
        .to_string();
    assert!(wrong_chain.contains("not of other"), "{wrong_chain}");

    let text = std::fs::read_to_string(&path).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["node_id"] = 3.into();
    let tampered = dir.path().join("tampered.json");
    crate::keys::softsign::write_secret_file(&tampered, json.to_string().as_bytes()).unwrap();
    let err = KeyShare::load(&tampered, None).unwrap_err().to_string();
    assert!(err.contains("not node 3's"), "{err}");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        KeyShare::load(&path, None).is_err(),
        "read a world-readable share"
    );
}

#[test]
fn bad_thresholds_and_node_ids_are_refused() {
    let seed = [1; 32];
    assert!(dealer::split(CHAIN, &seed, 1, &[1, 2, 3], &mut OsRng).is_err());
    assert!(dealer::split(CHAIN, &seed, 4, &[1, 2, 3], &mut OsRng).is_err());
    assert!(dealer::split(CHAIN, &seed, 2, &[1, 1, 3], &mut OsRng).is_err());
    assert!(dealer::split(CHAIN, &seed, 2, &[0, 1, 3], &mut OsRng).is_err());
    assert!(dealer::split(CHAIN, &seed, 2, &[1, 2, 70_000], &mut OsRng).is_err());
    assert_eq!(node_of(&identifier(513).unwrap()), Some(513));
}

#[test]
fn a_distributed_key_generation_gives_one_group_key_and_working_shares() {
    let nodes = [1u64, 2, 3];
    let mut runs = BTreeMap::new();
    let mut round1 = BTreeMap::new();
    for node in nodes {
        let (dkg, package) = dkg::Dkg::start(CHAIN, node, 2, &nodes, &mut OsRng).unwrap();
        runs.insert(node, dkg);
        round1.insert(node, package);
    }
    // Each node gets the others' round 1 packages, and sends each other
    // node its own round 2 package.
    let mut inbox: BTreeMap<u64, BTreeMap<u64, Vec<u8>>> = BTreeMap::new();
    for (node, dkg) in &mut runs {
        let others = round1
            .iter()
            .filter(|(from, _)| *from != node)
            .map(|(from, p)| (*from, p.clone()))
            .collect();
        for (to, package) in dkg.round2(&others).unwrap() {
            inbox.entry(to).or_default().insert(*node, package);
        }
    }
    let shares: Vec<KeyShare> = runs
        .into_iter()
        .map(|(node, dkg)| dkg.finish(&inbox[&node]).unwrap())
        .collect();
    let group = shares[0].group_key().unwrap();
    assert!(shares.iter().all(|s| s.group_key().unwrap() == group));
    let signature = sign_in_memory(&[&shares[2], &shares[0]], b"new key");
    assert!(group.verify(b"new key", &signature));
    // A missing package is named.
    let (mut lone, _) = dkg::Dkg::start(CHAIN, 1, 2, &nodes, &mut OsRng).unwrap();
    let err = lone
        .round2(&BTreeMap::from([(2, round1[&2].clone())]))
        .unwrap_err();
    assert!(err.contains("expected packages from nodes [2, 3]"), "{err}");
}
