//! PKCS#11 keys against a real SoftHSM2 token (a private configuration and
//! token directory per test): keys generated on the token and imported
//! into it, signing through the whole privval path, the token lost and
//! back mid-stream, a wrong PIN, a missing module.
//!
//! Without SoftHSM2 these tests say why and pass, unless
//! QUORUMKMS_REQUIRE_SOFTHSM=1 (as `.ci/run` sets it).

use std::process::Command;
use std::time::Duration;

use quorumkms::keys::softsign::SoftSigner;
use quorumkms::keys::{ConsensusSigner, KeyType, PublicKey};
use quorumkms::privval::Version;
use quorumkms::testnet::softhsm::{self, SoftHsm};
use quorumkms::validator::SignOutcome;

use crate::support::{KeySetup, Single, Transport, exe};

/// A fresh token, or `None` (after saying why) when SoftHSM2 is missing.
fn token(dir: &std::path::Path) -> Option<SoftHsm> {
    match SoftHsm::create(dir) {
        Ok(hsm) => Some(hsm),
        Err(why) => {
            assert!(
                std::env::var("QUORUMKMS_REQUIRE_SOFTHSM").as_deref() != Ok("1"),
                "QUORUMKMS_REQUIRE_SOFTHSM=1 but SoftHSM2 cannot be used: {why}"
            );
            eprintln!("skipping the PKCS#11 test: {why}");
            None
        }
    }
}

/// Runs `quorumkms pkcs11 ... args` against the token: (success, stdout,
/// stderr).
fn cli(hsm: &SoftHsm, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(exe())
        .args(hsm.cli_args())
        .args(args)
        .envs(hsm.env())
        .output()
        .expect("run quorumkms pkcs11");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(hsm: &SoftHsm, args: &[&str]) -> String {
    let (ok, stdout, stderr) = cli(hsm, args);
    assert!(ok, "pkcs11 {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Generates a key labelled `label` of `key_type` on the token and
/// returns the public key it printed.
fn generate(hsm: &SoftHsm, label: &str, key_type: KeyType) -> PublicKey {
    let out = cli_ok(
        hsm,
        &[
            "keys",
            "generate",
            "--label",
            label,
            "--key-type",
            key_type.name(),
        ],
    );
    printed_key(&out, key_type)
}

/// The hex public key a `pkcs11 keys` command printed.
fn printed_key(out: &str, key_type: KeyType) -> PublicKey {
    let hex = out
        .lines()
        .find_map(|l| l.strip_prefix("public key (hex):"))
        .expect("a public key line")
        .trim();
    PublicKey::from_type_and_bytes(key_type, &hex::decode(hex).expect("hex")).expect("key")
}

async fn node_on_token(
    hsm: &SoftHsm,
    version: Version,
    label: &str,
    public_key: PublicKey,
) -> Single {
    Single::start_keyed(
        version,
        Transport::Tcp,
        "",
        Some(KeySetup {
            public_key,
            providers: hsm.providers(
                &[quorumkms::testnet::CHAIN_ID],
                label,
                public_key.key_type(),
            ),
            env: hsm.env(),
        }),
    )
    .await
}

fn signed(outcome: &SignOutcome) -> (&[u8], &[u8]) {
    match outcome {
        SignOutcome::Signed {
            sign_bytes,
            signature,
            ..
        } => (sign_bytes, signature),
        other => panic!("expected a signature, got {other:?}"),
    }
}

#[tokio::test]
async fn generated_key_signs_through_privval() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = token(dir.path()) else { return };
    let slots = cli_ok(&hsm, &["slots"]);
    assert!(slots.contains(softhsm::TOKEN_LABEL), "{slots}");
    assert!(slots.contains("EdDSA yes"), "{slots}");
    let public_key = generate(&hsm, "consensus", KeyType::Ed25519);
    let listed = cli_ok(&hsm, &["keys", "list"]);
    assert!(listed.contains(&hex::encode(public_key)), "{listed}");
    // A second key under a taken label is refused.
    let (ok, _, stderr) = cli(&hsm, &["keys", "generate", "--label", "consensus"]);
    assert!(!ok && stderr.contains("already on the token"), "{stderr}");

    let mut s = node_on_token(&hsm, Version::V0_38, "consensus", public_key).await;
    assert_eq!(s.validator.pub_key().await.expect("public key"), public_key);
    for h in 1..=3 {
        let outcome = s.validator.sign_vote(s.prevote(h, 0, 0, 0)).await;
        signed(&outcome);
        let outcome = s.validator.sign_vote(s.precommit(h, 0, Some(0), 0)).await;
        signed(&outcome);
    }
    let report = s.checker.report();
    assert_eq!(
        (report.released, report.invalid, report.conflicts),
        (6, 0, 0)
    );
}

#[tokio::test]
async fn imported_seed_signs_like_softsign() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = token(dir.path()) else { return };
    // The seed every Single node's validator expects by default.
    let soft = SoftSigner::from_seed([42; 32]);
    let key_file = dir.path().join("soft.key");
    soft.write(&key_file).unwrap();
    let out = cli_ok(
        &hsm,
        &[
            "keys",
            "import",
            "--path",
            key_file.to_str().unwrap(),
            "--label",
            "imported",
        ],
    );
    assert_eq!(printed_key(&out, KeyType::Ed25519), soft.public_key());
    let out = cli_ok(
        &hsm,
        &[
            "keys",
            "sign-test",
            "--label",
            "imported",
            "--message",
            "hello",
        ],
    );
    assert!(
        out.contains(&hex::encode(soft.sign(b"hello").unwrap())),
        "the token's Ed25519 signature differs from softsign's:\n{out}"
    );

    let mut s = node_on_token(&hsm, Version::V1_0, "imported", soft.public_key()).await;
    for h in 1..=3 {
        let outcome = s.validator.sign_vote(s.prevote(h, 0, 0, 0)).await;
        let (bytes, signature) = signed(&outcome);
        assert_eq!(
            signature,
            soft.sign(bytes).unwrap(),
            "same seed, same signature"
        );
    }
    let outcome = s.validator.sign_proposal(s.proposal(4, 0, 0, 0)).await;
    let (bytes, signature) = signed(&outcome);
    assert_eq!(signature, soft.sign(bytes).unwrap());
}

#[tokio::test]
async fn secp256k1_key_on_the_token_serves_v1() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = token(dir.path()) else { return };
    let public_key = generate(&hsm, "k1", KeyType::Secp256k1);
    let mut s = node_on_token(&hsm, Version::V1_0, "k1", public_key).await;
    assert_eq!(s.validator.pub_key().await.expect("public key"), public_key);
    for h in 1..=3 {
        let outcome = s.validator.sign_vote(s.prevote(h, 0, 0, 0)).await;
        let (bytes, signature) = signed(&outcome);
        assert!(public_key.verify(bytes, signature));
    }
    assert_eq!(s.checker.report().invalid, 0);
}

/// SoftHSM2 keeps each token in a directory under its token directory and
/// checks it on every operation: with the directory gone, `C_SignInit`
/// fails (`CKR_OBJECT_HANDLE_INVALID`) and, after the node reloads the
/// module, the token is not found at all; with it back, a fresh
/// `C_Initialize` finds it again. That is the loss and return tested here.
#[tokio::test]
async fn token_lost_and_back_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = token(dir.path()) else { return };
    let public_key = generate(&hsm, "consensus", KeyType::Ed25519);
    let mut s = node_on_token(&hsm, Version::V0_38, "consensus", public_key).await;
    signed(&s.validator.sign_vote(s.prevote(1, 0, 0, 0)).await);

    // The token's directory goes away, as a token pulled from its slot.
    let aside = dir.path().join("tokens-aside");
    std::fs::rename(&hsm.tokens, &aside).unwrap();
    std::fs::create_dir(&hsm.tokens).unwrap();
    let outcome = s.validator.sign_vote(s.prevote(2, 0, 0, 0)).await;
    assert!(
        matches!(outcome, SignOutcome::Failed(_)),
        "signed without its token: {outcome:?}"
    );
    // The node dropped the validator connection, saying why.
    let log = s.log();
    assert!(
        log.contains("dropped the connection") && log.contains("no token labelled"),
        "{log}"
    );

    // Back: the node logs in again and signs on.
    std::fs::remove_dir(&hsm.tokens).unwrap();
    std::fs::rename(&aside, &hsm.tokens).unwrap();
    let mut outcome = s.validator.sign_vote(s.prevote(3, 0, 0, 0)).await;
    for _ in 0..20 {
        if matches!(outcome, SignOutcome::Signed { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        outcome = s.validator.sign_vote(s.prevote(3, 0, 0, 0)).await;
    }
    signed(&outcome);
    let report = s.checker.report();
    assert_eq!((report.invalid, report.conflicts), (0, 0));
}

#[tokio::test]
async fn wrong_pin_and_missing_module_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = token(dir.path()) else { return };
    let public_key = generate(&hsm, "consensus", KeyType::Ed25519);

    // A wrong PIN: the node does not start, and says why.
    quorumkms::keys::softsign::overwrite_secret_file(&hsm.pin_file, b"999999\n").unwrap();
    let mut s = node_on_token(&hsm, Version::V0_38, "consensus", public_key).await;
    let status = s.child.as_mut().unwrap().wait().await.unwrap();
    assert!(!status.success());
    let log = s.log();
    assert!(log.contains("PIN is wrong"), "{log}");
    let (ok, _, stderr) = cli(&hsm, &["keys", "list"]);
    assert!(!ok && stderr.contains("PIN is wrong"), "{stderr}");

    // A module that is not there.
    quorumkms::keys::softsign::overwrite_secret_file(
        &hsm.pin_file,
        format!("{}\n", softhsm::USER_PIN).as_bytes(),
    )
    .unwrap();
    let mut missing = hsm.clone();
    missing.module = dir.path().join("no-such-module.so");
    let mut s = node_on_token(&missing, Version::V0_38, "consensus", public_key).await;
    let status = s.child.as_mut().unwrap().wait().await.unwrap();
    assert!(!status.success());
    let log = s.log();
    assert!(
        log.contains("no-such-module.so") && log.contains("cannot load"),
        "{log}"
    );

    // And a v0.38 validator with a secp256k1 key on the token.
    let k1 = generate(&hsm, "k1", KeyType::Secp256k1);
    let mut s = node_on_token(&hsm, Version::V0_38, "k1", k1).await;
    let status = s.child.as_mut().unwrap().wait().await.unwrap();
    assert!(!status.success());
    let log = s.log();
    assert!(
        log.contains("protocol_version = \\\"v1.0\\\"") || log.contains("v1.0"),
        "{log}"
    );
}

/// Four chains share one key on the token and sign at once: the key's
/// session pool serves them concurrently, every signature verifies.
#[tokio::test]
async fn one_token_key_signs_for_chains_concurrently() {
    use quorumkms::testnet;
    use quorumkms::validator::{Checker, MockValidator, SignerListener, consensus};

    let dir = tempfile::tempdir().unwrap();
    let Some(hsm) = token(dir.path()) else { return };
    let public_key = generate(&hsm, "shared", KeyType::Ed25519);
    let chains: Vec<String> = (1..=4).map(|i| format!("chain-{i}")).collect();
    let mut listens = Vec::new();
    let mut validators_cfg = Vec::new();
    for chain in &chains {
        let listen = SignerListener::tcp("127.0.0.1:0").await.unwrap();
        validators_cfg.push((chain.clone(), listen.signer_addr()));
        listens.push((chain.clone(), listen));
    }
    let node = testnet::write_node(
        dir.path(),
        1,
        [0; 32],
        &chains,
        &validators_cfg,
        Version::V0_38,
        "",
    )
    .unwrap();
    // The soft key section goes; the token's key signs every chain.
    let text = std::fs::read_to_string(&node.config).unwrap();
    let start = text.find("[[providers.softsign]]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap() + 2;
    let names: Vec<&str> = chains.iter().map(String::as_str).collect();
    let config = format!(
        "{}{}\n{}",
        &text[..start],
        hsm.providers(&names, "shared", KeyType::Ed25519),
        &text[end..]
    );
    std::fs::write(&node.config, config).unwrap();
    let _child =
        testnet::spawn_node_with_env(&exe(), &node, None, &hsm.env(), &[]).expect("spawn node");
    let checker = Checker::new();
    let address = consensus::address(&public_key);
    let runs = listens.into_iter().map(|(chain, listen)| {
        let checker = checker.clone();
        let address = address.clone();
        tokio::spawn(async move {
            let mut v = MockValidator::new(
                listen,
                &chain,
                Version::V0_38,
                public_key,
                crate::support::fast_timing(),
                checker,
            );
            for height in 1..=10 {
                let block = Some(consensus::block_id(height, 0));
                let vote = consensus::vote(Version::V0_38, false, height, 0, block, &address, 0);
                let outcome = v.sign_vote(vote).await;
                assert!(
                    matches!(outcome, SignOutcome::Signed { .. }),
                    "{chain} {height}: {outcome:?}"
                );
            }
        })
    });
    for run in runs.collect::<Vec<_>>() {
        run.await.expect("validator task");
    }
    let report = checker.report();
    assert_eq!(
        (report.released, report.conflicts, report.invalid),
        (40, 0, 0)
    );
}

#[test]
fn pkcs11_arguments_parse() {
    use clap::Parser;
    use quorumkms::cli::pkcs11::{Command as P11, KeysCommand};
    use quorumkms::cli::{Cli, Command as Top};
    let cli = Cli::try_parse_from([
        "quorumkms",
        "pkcs11",
        "--module",
        "/opt/cloudhsm/lib/libcloudhsm_pkcs11.so",
        "--slot",
        "3",
        "--pin-file",
        "/etc/pin",
        "keys",
        "generate",
        "--label",
        "k",
        "--key-type",
        "secp256k1",
    ])
    .expect("parse");
    let Top::Pkcs11(args) = cli.command else {
        panic!("not pkcs11")
    };
    assert_eq!(args.slot, Some(3));
    assert!(matches!(
        args.command,
        P11::Keys(KeysCommand::Generate {
            key_type: KeyType::Secp256k1,
            ..
        })
    ));
    // One way to name the token, and a key by label or id.
    assert!(
        Cli::try_parse_from([
            "quorumkms",
            "pkcs11",
            "--module",
            "m",
            "--slot",
            "1",
            "--token-label",
            "t",
            "slots",
        ])
        .is_err()
    );
    assert!(
        Cli::try_parse_from(["quorumkms", "pkcs11", "--module", "m", "keys", "pubkey"]).is_err()
    );
    assert!(
        Cli::try_parse_from([
            "quorumkms",
            "pkcs11",
            "--module",
            "m",
            "keys",
            "pubkey",
            "--id",
            "0a0b",
        ])
        .is_ok()
    );
}
