//! `quorumkms threshold split | show | check`, and `testnet-config
//! --threshold`, run as the built binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use frost_ed25519 as frost;
use quorumkms::keys::softsign::{SoftSigner, export_priv_validator_key, write_secret_file};
use quorumkms::keys::{ConsensusSigner, KeyType};
use quorumkms::threshold::KeyShare;

use crate::support::run_cli;

const CHAIN: &str = "cosmoshub-4";
const FIXTURE: &str = "tests/privval/fixtures/priv_validator_key.json";
const FIXTURE_PUB_B64: &str = "8mv0sqLoTOt6U8PxrndAh3myAGR4L7rb3w42WVnuRTQ=";
const FIXTURE_ADDRESS: &str = "AD7DAE5FEC609CF02F9BDE7D81D0C3CD66141563";
/// The start of the fixture's `priv_key.value` (its seed, base64).
const FIXTURE_SECRET_B64: &str = "skHDGUYe2pOhwfSrXZQ6KeKnmKgTOn";

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(FIXTURE)
        .display()
        .to_string()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Splits `key` (a priv_validator_key.json) 2-of-3 into `out`, returning
/// the share files by node.
fn split(key: &str, out: &Path) -> Vec<PathBuf> {
    let (ok, stdout, stderr) = run_cli(
        &[
            "threshold",
            "split",
            "--chain-id",
            CHAIN,
            "--priv-validator-key",
            key,
            "--threshold",
            "2",
            "--nodes",
            "1,2,3",
            "--out",
            s(out),
        ],
        out.parent().expect("parent"),
    );
    assert!(ok, "split failed: {stdout}{stderr}");
    (1..=3)
        .map(|node| out.join(format!("{CHAIN}.share-{node}.json")))
        .collect()
}

/// Runs `threshold check` on `files` with `extra` arguments.
fn check(files: &[&Path], extra: &[&str], cwd: &Path) -> (bool, String) {
    let mut args = vec!["threshold", "check"];
    args.extend(files.iter().map(|f| s(f)));
    args.extend(extra);
    let (ok, stdout, stderr) = run_cli(&args, cwd);
    (ok, format!("{stdout}{stderr}"))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn split_writes_0600_shares_of_the_validators_key_that_show_and_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("shares");
    let (ok, stdout, stderr) = run_cli(
        &[
            "threshold",
            "split",
            "--chain-id",
            CHAIN,
            "--priv-validator-key",
            &fixture(),
            "--threshold",
            "2",
            "--nodes",
            "1,2,3",
            "--out",
            s(&out),
        ],
        dir.path(),
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(FIXTURE_PUB_B64), "{stdout}");
    assert!(stdout.contains(FIXTURE_ADDRESS), "{stdout}");
    assert!(stdout.contains("WARNING"), "{stdout}");
    for node in 1..=3u64 {
        let file = out.join(format!("{CHAIN}.share-{node}.json"));
        assert!(
            stdout.contains(&format!("node {node}: {}", file.display())),
            "{stdout}"
        );
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        let share = KeyShare::load(&file, Some(CHAIN)).expect("share loads");
        assert_eq!(share.node(), node);
        assert_eq!((share.threshold(), share.shares()), (2, 3));
        assert_eq!(share.holders(), vec![1, 2, 3]);
        assert_eq!(
            base64_of(share.group_key().expect("group key").as_bytes()),
            FIXTURE_PUB_B64
        );
    }
    assert!(!stdout.contains(FIXTURE_SECRET_B64), "{stdout}");

    let file = out.join(format!("{CHAIN}.share-2.json"));
    let (ok, shown, stderr) = run_cli(&["threshold", "show", s(&file)], dir.path());
    assert!(ok, "{shown}{stderr}");
    assert!(
        shown.contains(&format!("public key (base64): {FIXTURE_PUB_B64}")),
        "{shown}"
    );
    assert!(shown.contains(FIXTURE_ADDRESS), "{shown}");
    assert!(
        shown.contains("2 of 3") && shown.contains("nodes 1, 2, 3"),
        "{shown}"
    );
    assert!(
        shown.contains(CHAIN) && shown.contains("node:                2"),
        "{shown}"
    );
    // No secret: neither the secret share (hex or base64) nor the file's
    // key package.
    let loaded = KeyShare::load(&file, None).expect("load");
    let secret = loaded.key_package().signing_share().serialize();
    assert!(!shown.contains(&hex::encode(&secret)), "{shown}");
    assert!(!shown.contains(&base64_of(&secret)), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&file).expect("read")).expect("json");
    let package = json["key_package"].as_str().expect("key_package");
    assert!(!shown.contains(package), "{shown}");

    let files: Vec<PathBuf> = (1..=3)
        .map(|node| out.join(format!("{CHAIN}.share-{node}.json")))
        .collect();
    let all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, report) = check(&all, &["--priv-validator-key", &fixture()], dir.path());
    assert!(ok, "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    assert!(
        report.contains("PASS  test signature by nodes 1, 2, 3"),
        "{report}"
    );
    let (ok, report) = check(&all[1..], &["--pubkey", FIXTURE_PUB_B64], dir.path());
    assert!(ok, "{report}");
    assert!(
        report.contains("PASS  test signature by nodes 2, 3"),
        "{report}"
    );
    // One file: its public data only, no test signature.
    let (ok, report) = check(&all[..1], &["--pubkey", FIXTURE_PUB_B64], dir.path());
    assert!(ok, "{report}");
    assert!(report.contains("SKIP  test signature"), "{report}");
}

#[test]
fn check_fails_for_mixed_splits_a_wrong_key_a_repeated_node_and_a_tampered_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = split(&fixture(), &dir.path().join("a"));
    let b = split(&fixture(), &dir.path().join("b"));
    let cwd = dir.path();

    // The same key split twice: one group key, shares that do not combine.
    let (ok, report) = check(&[&a[0], &b[1]], &[], cwd);
    assert!(!ok, "{report}");
    assert!(report.contains("PASS  one group key"), "{report}");
    assert!(report.contains("FAIL  one split"), "{report}");
    assert!(report.contains("check(s) failed"), "{report}");

    // Another validator's key.
    let other = base64_of(SoftSigner::from_seed([5; 32]).public_key().as_bytes());
    let (ok, report) = check(&[&a[0], &a[1]], &["--pubkey", &other], cwd);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!(
            "FAIL  group key {FIXTURE_PUB_B64} is not the validator's key {other}"
        )),
        "{report}"
    );

    // Node 1's share twice, under two names.
    let copy = dir.path().join("copy-of-1.json");
    write_secret_file(&copy, &fs::read(&a[0]).expect("read")).expect("copy");
    let (ok, report) = check(&[&a[0], &copy], &[], cwd);
    assert!(!ok, "{report}");
    assert!(
        report.contains("FAIL  distinct nodes: node 1 in"),
        "{report}"
    );

    // Node 2's file with node 3's secret in it, its public data intact.
    let tampered = dir.path().join("tampered-2.json");
    let two = KeyShare::load(&a[1], None).expect("load");
    let three = KeyShare::load(&a[2], None).expect("load");
    let package = two.key_package();
    let swapped = frost::keys::KeyPackage::new(
        *package.identifier(),
        *three.key_package().signing_share(),
        *package.verifying_share(),
        *package.verifying_key(),
        *package.min_signers(),
    );
    KeyShare::new(CHAIN, 2, swapped, two.public_package().clone())
        .expect("consistent public data")
        .write(&tampered, false)
        .expect("write");
    let (ok, report) = check(&[&a[0], &tampered], &[], cwd);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!("FAIL  {}: node 2's share", tampered.display())),
        "{report}"
    );
    assert!(
        report.contains("FAIL  test signature by nodes 1, 2"),
        "{report}"
    );
    assert!(report.contains("node 2: invalid share"), "{report}");

    // A file whose stated group key was edited does not load.
    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&a[2]).expect("read")).expect("json");
    json["group_public_key"] = other.clone().into();
    let edited = dir.path().join("edited-3.json");
    write_secret_file(&edited, json.to_string().as_bytes()).expect("write");
    let (ok, report) = check(&[&a[0], &edited], &[], cwd);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!("FAIL  key: share file {}", edited.display())),
        "{report}"
    );

    // The untouched set still passes.
    let (ok, report) = check(&[&a[0], &a[1], &a[2]], &[], cwd);
    assert!(ok, "{report}");
}

#[test]
fn split_refuses_existing_shares_bad_thresholds_and_secp256k1_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("shares");
    let files = split(&fixture(), &out);
    let before: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).expect("read")).collect();
    let refuse = |key: &str, t: &str, nodes: &str, out: &Path| {
        let (ok, stdout, stderr) = run_cli(
            &[
                "threshold",
                "split",
                "--chain-id",
                CHAIN,
                "--priv-validator-key",
                key,
                "--threshold",
                t,
                "--nodes",
                nodes,
                "--out",
                s(out),
            ],
            dir.path(),
        );
        assert!(!ok, "split succeeded: {stdout}");
        stderr
    };

    let err = refuse(&fixture(), "2", "1,2,3", &out);
    assert!(err.contains("already exists"), "{err}");
    let after: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).expect("read")).collect();
    assert_eq!(before, after, "a share was overwritten");
    // One new node's file would be new, but another's exists: nothing written.
    let err = refuse(&fixture(), "2", "4,1", &out);
    assert!(err.contains("already exists"), "{err}");
    assert!(!out.join(format!("{CHAIN}.share-4.json")).exists());

    let fresh = dir.path().join("fresh");
    let err = refuse(&fixture(), "1", "1,2,3", &fresh);
    assert!(err.contains("at least 2 shares must sign"), "{err}");
    let err = refuse(&fixture(), "4", "1,2,3", &fresh);
    assert!(err.contains("more than the 3 shares"), "{err}");

    let secp = SoftSigner::generate_type(KeyType::Secp256k1);
    let secp_file = dir.path().join("secp_priv_validator_key.json");
    write_secret_file(&secp_file, export_priv_validator_key(&secp).as_bytes()).expect("write");
    let err = refuse(s(&secp_file), "2", "1,2,3", &fresh);
    assert!(
        err.contains("secp256k1") && err.contains("Ed25519 only"),
        "{err}"
    );
    assert!(!fresh.exists(), "a refused split wrote {}", fresh.display());
}

#[test]
fn split_reads_a_soft_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SoftSigner::from_seed([3; 32]);
    let key_file = dir.path().join("consensus.key");
    key.write(&key_file).expect("write");
    let out = dir.path().join("shares");
    let (ok, stdout, stderr) = run_cli(
        &[
            "threshold",
            "split",
            "--chain-id",
            CHAIN,
            "--soft-key",
            s(&key_file),
            "--threshold",
            "3",
            "--nodes",
            "1,2,3,4,5",
            "--out",
            s(&out),
        ],
        dir.path(),
    );
    assert!(ok, "{stdout}{stderr}");
    let share = KeyShare::load(&out.join(format!("{CHAIN}.share-5.json")), Some(CHAIN))
        .expect("share loads");
    assert_eq!(share.group_key().expect("group key"), key.public_key());
    assert_eq!((share.threshold(), share.shares()), (3, 5));
    assert_eq!(mode(&out), 0o700);
}

#[test]
fn testnet_config_with_threshold_gives_each_node_its_own_share_and_no_whole_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let testnet = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "testnet-config",
            "--dir",
            out,
            "--chain",
            CHAIN,
            "--validator",
            "tcp://127.0.0.1:26658",
            "--canary",
            "tcp://127.0.0.1:26690",
            "--listen-host",
            "127.0.0.1",
        ];
        args.extend_from_slice(extra);
        run_cli(&args, dir.path())
    };
    let peers = [
        "--peer",
        "127.0.0.1:7101",
        "--peer",
        "127.0.0.1:7102",
        "--peer",
        "127.0.0.1:7103",
    ];
    let mut args = peers.to_vec();
    args.extend(["--threshold", "2"]);
    let (ok, stdout, stderr) = testnet("net", &args);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("split 2 of 3"), "{stdout}");
    let public = fs::read_to_string(dir.path().join("net/consensus.pub")).expect("consensus.pub");
    let public = hex::decode(public.trim()).expect("hex");
    let canary = quorumkms::drill::plan::CANARY_CHAIN;
    let mut files = Vec::new();
    for node in 1..=3u64 {
        let root = dir.path().join(format!("net/node-{node}"));
        assert!(
            !root.join("secrets/consensus.key").exists(),
            "node {node} holds the whole key"
        );
        let config = quorumkms::config::load(&root.join("quorumkms.toml")).expect("valid config");
        for chain in [CHAIN, canary] {
            let c = config
                .chain
                .iter()
                .find(|c| c.id == chain)
                .expect("chain configured");
            assert_eq!(c.mode, quorumkms::config::ChainMode::Threshold);
            let t = c.threshold.as_ref().expect("[chain.threshold]");
            assert_eq!((t.threshold, t.shares), (2, 3));
            assert_eq!(mode(&t.share_file), 0o600, "{}", t.share_file.display());
            let share = KeyShare::load(&t.share_file, Some(chain)).expect("share loads");
            assert_eq!(share.node(), node);
            assert_eq!(
                share.group_key().expect("group key").as_bytes(),
                public.as_slice()
            );
            if chain == CHAIN {
                files.push(t.share_file.clone());
            }
        }
    }
    // The three shares are one split of the validator's key: two of them
    // make a signature that verifies under it.
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, out) = check(&files, &["--pubkey", &base64_of(&public)], dir.path());
    assert!(ok, "{out}");

    // One node has no one to share with.
    let (ok, _, stderr) = testnet("single", &["--threshold", "2"]);
    assert!(!ok);
    assert!(stderr.contains("--threshold needs a cluster"), "{stderr}");
    let mut args = peers.to_vec();
    args.extend(["--threshold", "4"]);
    let (ok, _, stderr) = testnet("high", &args);
    assert!(!ok);
    assert!(stderr.contains("more than the 3 shares"), "{stderr}");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
