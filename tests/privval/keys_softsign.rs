//! Soft keys and key files: formats, permissions, priv_validator_key.json
//! import, and the connection identity.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quorumkms::keys::softsign::{
    SoftSigner, check_permissions, import_priv_validator_key, overwrite_secret_file,
    write_secret_file,
};
use quorumkms::keys::{ConsensusSigner, identity};

const VECTOR_JSON: &str = include_str!("fixtures/priv_validator_key.json");
const VECTOR_PUB_HEX: &str = "f26bf4b2a2e84ceb7a53c3f1ae77408779b20064782fbadbdf0e365959ee4534";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn verify(signer: &dyn ConsensusSigner, msg: &[u8], sig: &[u8; 64]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(
        &signer.public_key().as_bytes().try_into().unwrap(),
    )
    .expect("public key");
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .expect("signature verifies");
}

#[test]
fn imports_the_cometbft_vector_key() {
    let signer = import_priv_validator_key(VECTOR_JSON).expect("import");
    assert_eq!(hex::encode(signer.public_key()), VECTOR_PUB_HEX);
    assert_eq!(
        hex::encode_upper(signer.address()),
        "AD7DAE5FEC609CF02F9BDE7D81D0C3CD66141563"
    );
    let sig = signer.sign(b"vote").expect("sign");
    verify(&signer, b"vote", &sig);
}

#[test]
fn import_errors_are_clear_and_quote_no_secret() {
    let secret =
        "skHDGUYe2pOhwfSrXZQ6KeKnmKgTOn+f++Vmj4OOqIHya/SyouhM63pTw/Gud0CHebIAZHgvutvfDjZZWe5FNA==";
    let other_pub = BASE64.encode(SoftSigner::from_seed([1; 32]).public_key());
    let cases = [
        (
            VECTOR_JSON.replace("8mv0sqLoTOt6U8PxrndAh3myAGR4L7rb3w42WVnuRTQ=", &other_pub),
            "pub_key.value does not match",
        ),
        (
            VECTOR_JSON.replace("AD7DAE5F", "00000000"),
            "address 00000000",
        ),
        (
            VECTOR_JSON.replace("tendermint/PrivKeyEd25519", "tendermint/PrivKeySecp256k1"),
            "goes with \"tendermint/PubKeySecp256k1\"",
        ),
        (
            VECTOR_JSON.replace("tendermint/PrivKeyEd25519", "tendermint/PrivKeyBls12_381"),
            "only \"tendermint/PrivKeyEd25519\" and \"tendermint/PrivKeySecp256k1\"",
        ),
        (
            VECTOR_JSON.replace(secret, &secret.replace("skHD", "skHE")),
            "the public key half does not match",
        ),
        (
            VECTOR_JSON.replace(secret, "not base64"),
            "priv_key.value: expected one line of base64",
        ),
        // A wrong shape: serde would quote the secret; we must not.
        (
            format!("{{\"pub_key\": 1, \"priv_key\": \"{secret}\"}}"),
            "line 1",
        ),
        ("not json".to_string(), "invalid priv_validator_key.json"),
    ];
    for (json, wanted) in cases {
        let err = import_priv_validator_key(&json)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains(wanted), "{err} (wanted {wanted:?})");
        assert!(
            !err.contains("skHD") && !err.contains("skHE"),
            "secret in: {err}"
        );
    }
}

#[test]
fn key_file_round_trip_is_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("consensus.key");
    let signer = SoftSigner::generate();
    signer.write(&path).expect("write");
    assert_eq!(mode(&path), 0o600);
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(text.trim().len(), 44, "one line of base64(32 bytes)");
    let loaded = SoftSigner::load(&path).expect("load");
    assert_eq!(loaded.public_key(), signer.public_key());
}

#[test]
fn loads_a_seed_pub_keypair_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pair.key");
    let signer = SoftSigner::from_seed([3; 32]);
    let mut pair = [3u8; 64];
    pair[32..].copy_from_slice(signer.public_key().as_bytes());
    write_secret_file(&path, BASE64.encode(pair).as_bytes()).expect("write");
    assert_eq!(
        SoftSigner::load(&path).expect("load").public_key(),
        signer.public_key()
    );
}

#[test]
fn refuses_group_or_world_readable_key_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("open.key");
    SoftSigner::generate().write(&path).expect("write");
    for bad in [0o644, 0o640, 0o604, 0o660, 0o606] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).expect("chmod");
        let err = SoftSigner::load(&path)
            .expect_err("must refuse")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        assert!(check_permissions(&path).is_err());
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
    assert!(SoftSigner::load(&path).is_ok());
}

#[test]
fn never_overwrites_unless_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k");
    write_secret_file(&path, b"first").expect("write");
    let err = write_secret_file(&path, b"second")
        .expect_err("refuse")
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read(&path).expect("read"), b"first");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    overwrite_secret_file(&path, b"second").expect("overwrite");
    assert_eq!(fs::read(&path).expect("read"), b"second");
    assert_eq!(mode(&path), 0o600, "replacement is 0600 again");
    let leftovers = fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(leftovers, 1, "no temporary file left behind");
}

#[test]
fn malformed_key_files_are_refused_without_echoing_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content, wanted) in [
        ("short", BASE64.encode([1u8; 16]), "got 16 bytes"),
        ("garbage", "SECRETSECRET!!".to_string(), "base64"),
        ("empty", String::new(), "got 0 bytes"),
    ] {
        let path = dir.path().join(name);
        write_secret_file(&path, content.as_bytes()).expect("write");
        let err = SoftSigner::load(&path).expect_err("must fail").to_string();
        assert!(err.contains(wanted), "{err}");
        assert!(err.contains(name), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }
    let missing = SoftSigner::load(&dir.path().join("absent")).expect_err("missing");
    assert!(missing.to_string().contains("absent"));
}

#[test]
fn identity_key_generate_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kms-identity.key");
    let created = identity::load_or_generate(&path).expect("generate");
    assert_eq!(mode(&path), 0o600);
    let loaded = identity::load_or_generate(&path).expect("load");
    assert_eq!(created.verification_key(), loaded.verification_key());
    assert_eq!(identity::node_id(&created), identity::node_id(&loaded));
    assert!(
        identity::generate(&path).is_err(),
        "never replaces an identity"
    );
    // Same file format as softsign: both read the same seed.
    let soft = SoftSigner::load(&path).expect("softsign reads it");
    assert_eq!(
        soft.public_key().as_bytes(),
        loaded.verification_key().as_bytes()
    );
}

#[test]
fn node_id_matches_the_published_vector() {
    let mut pk = [0u8; 32];
    hex::decode_to_slice(
        "f7feb0b5ba0760b2c58893e329475d1ea81781dd636e37144b6d599ad38aa825",
        &mut pk,
    )
    .expect("hex");
    assert_eq!(
        hex::encode(quorumkms::transport::node_id(&pk)),
        "117c95c4fd7e636c38d303493302d2c271a39669"
    );
}

/// A secp256k1 soft key (key file in `dir`) for a `Single` node.
fn secp256k1_setup(dir: &std::path::Path, signer: &SoftSigner) -> crate::support::KeySetup {
    let path = dir.join("secp256k1.key");
    signer.write(&path).expect("write key");
    crate::support::KeySetup {
        public_key: signer.public_key(),
        providers: format!(
            "[[providers.softsign]]\nchain_ids = [\"{}\"]\npath = \"{}\"\nkey_type = \"secp256k1\"\n",
            quorumkms::testnet::CHAIN_ID,
            path.display()
        ),
        env: Vec::new(),
    }
}

#[tokio::test]
async fn secp256k1_soft_key_serves_a_v1_validator() {
    use quorumkms::keys::KeyType;
    use quorumkms::privval::Version;
    use quorumkms::validator::SignOutcome;
    let dir = tempfile::tempdir().unwrap();
    let signer = SoftSigner::generate_type(KeyType::Secp256k1);
    let setup = secp256k1_setup(dir.path(), &signer);
    let mut s = crate::support::Single::start_keyed(
        Version::V1_0,
        crate::support::Transport::Tcp,
        "",
        Some(setup),
    )
    .await;
    let key = s.validator.pub_key().await.expect("public key");
    assert_eq!(key, signer.public_key());
    assert_eq!(key.key_type(), KeyType::Secp256k1);
    for h in 1..=3 {
        for vote in [s.prevote(h, 0, 0, 0), s.precommit(h, 0, Some(0), 0)] {
            match s.validator.sign_vote(vote).await {
                SignOutcome::Signed {
                    sign_bytes,
                    signature,
                    ..
                } => {
                    // Deterministic (RFC 6979) and low-S: the very bytes a
                    // CometBFT secp256k1 key would produce.
                    assert_eq!(signature, signer.sign(&sign_bytes).unwrap());
                }
                other => panic!("expected a signature, got {other:?}"),
            }
        }
    }
    let report = s.checker.report();
    assert_eq!(
        (report.released, report.invalid, report.conflicts),
        (6, 0, 0)
    );
}

#[tokio::test]
async fn secp256k1_soft_key_with_a_v038_validator_is_refused_at_start() {
    use quorumkms::keys::KeyType;
    use quorumkms::privval::Version;
    let dir = tempfile::tempdir().unwrap();
    let signer = SoftSigner::generate_type(KeyType::Secp256k1);
    let setup = secp256k1_setup(dir.path(), &signer);
    let mut s = crate::support::Single::start_keyed(
        Version::V0_38,
        crate::support::Transport::Tcp,
        "",
        Some(setup),
    )
    .await;
    let status = s.child.as_mut().unwrap().wait().await.unwrap();
    assert!(!status.success());
    let log = s.log();
    assert!(
        log.contains("validator[0].protocol_version") && log.contains("secp256k1"),
        "{log}"
    );
}
