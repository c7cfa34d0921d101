//! The YubiHSM signer against yubihsm's MockHsm: generated keys sign
//! verifiable signatures, and an imported seed signs exactly as the
//! software key with the same seed.

use quorumkms::keys::softsign::SoftSigner;
use quorumkms::keys::yubihsm::{self as hsm, YubiHsmSigner};
use quorumkms::keys::{ConsensusSigner, PublicKey};

fn mock_client() -> yubihsm::Client {
    yubihsm::Client::open(
        yubihsm::Connector::mockhsm(),
        yubihsm::Credentials::default(),
        true,
    )
    .expect("mock hsm")
}

#[test]
fn generated_key_signs_verifiable_signatures() {
    let client = mock_client();
    let pk = hsm::generate_key(&client, 1, "test").expect("generate");
    let signer = YubiHsmSigner::new(client, 1).expect("signer");
    assert_eq!(signer.public_key(), pk.into());
    let msg = b"canonical vote bytes";
    let sig = signer.sign(msg).expect("sign");
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).expect("public key");
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("verifies");
    assert!(
        vk.verify_strict(b"other", &ed25519_dalek::Signature::from_bytes(&sig))
            .is_err()
    );
}

#[test]
fn imported_seed_signs_like_softsign() {
    let client = mock_client();
    let seed = [0x5au8; 32];
    let soft = SoftSigner::from_seed(seed);
    let pk = hsm::import_key(&client, 9, "imported", &seed).expect("import");
    assert_eq!(PublicKey::from(pk), soft.public_key());
    let signer = YubiHsmSigner::new(client, 9).expect("signer");
    for msg in [&b""[..], b"a", &[7u8; 300][..]] {
        assert_eq!(
            signer.sign(msg).expect("hsm sign"),
            soft.sign(msg).expect("soft sign"),
            "ed25519 is deterministic: same seed, same signature"
        );
    }
}

#[test]
fn missing_key_and_debug() {
    let client = mock_client();
    let err = YubiHsmSigner::new(client.clone(), 42).expect_err("no such key");
    assert!(err.to_string().contains("42"), "{err}");
    hsm::generate_key(&client, 4, "x").expect("generate");
    let signer = YubiHsmSigner::new(client, 4).expect("signer");
    let debug = format!("{signer:?}");
    assert!(debug.contains("key_id: 4"), "{debug}");
}

#[test]
fn list_keys_reports_ed25519_keys() {
    let client = mock_client();
    assert!(hsm::list_keys(&client).expect("list").is_empty());
    let a = hsm::generate_key(&client, 3, "a").expect("generate");
    let b = hsm::import_key(&client, 1, "b", &[1; 32]).expect("import");
    let keys = hsm::list_keys(&client).expect("list");
    assert_eq!(keys.len(), 2);
    assert_eq!(
        (keys[0].key_id, keys[0].public_key, keys[0].label.as_str()),
        (1, PublicKey::from(b), "b")
    );
    assert_eq!(
        (keys[1].key_id, keys[1].public_key, keys[1].label.as_str()),
        (3, PublicKey::from(a), "a")
    );
}

#[test]
fn taken_key_id_is_refused() {
    let client = mock_client();
    hsm::generate_key(&client, 5, "first").expect("generate");
    let err = hsm::generate_key(&client, 5, "second").expect_err("taken");
    assert!(
        err.to_string().contains("key id 5 is already in use"),
        "{err}"
    );
    let err = hsm::import_key(&client, 5, "third", &[2; 32]).expect_err("taken");
    assert!(err.to_string().contains("already in use"), "{err}");
}
