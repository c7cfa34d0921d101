//! `quorumkms doctor`: a good node passes every check; a loose or missing
//! key file and an unreachable peer each fail with a fix, and make the
//! command exit non-zero.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::run_cli;

/// A node directory from `init` whose validator address is `validator`.
fn node(dir: &Path, validator: &str) -> PathBuf {
    let (ok, out, err) = run_cli(&["init", "-n", "demo-1", "node"], dir);
    assert!(ok, "init failed: {out}{err}");
    let config = dir.join("node/quorumkms.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace("tcp://127.0.0.1:26658", &format!("tcp://{validator}"));
    std::fs::write(&config, text).expect("write config");
    config
}

fn doctor(config: &Path) -> (bool, String) {
    let (ok, out, err) = run_cli(
        &[
            "doctor",
            "-c",
            config.to_str().expect("utf-8"),
            "--timeout",
            "2",
        ],
        config.parent().expect("dir"),
    );
    (ok, format!("{out}{err}"))
}

fn fail_line<'a>(report: &'a str, needle: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(needle))
        .unwrap_or_else(|| panic!("no FAIL line with {needle:?}:\n{report}"))
}

#[test]
fn a_good_node_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let validator = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = node(dir.path(), &validator.local_addr().unwrap().to_string());
    let (ok, report) = doctor(&config);
    assert!(ok, "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    for needle in [
        "PASS  config",
        "PASS  consensus key for demo-1",
        "PASS  identity key",
        "PASS  key backend answers for demo-1: public key ",
        "accepts connections at 127.0.0.1:",
        "writable, fsync succeeds",
        "GiB free",
        "0 failed",
    ] {
        assert!(report.contains(needle), "no {needle:?}:\n{report}");
    }
}

#[test]
fn a_loose_or_missing_key_file_fails_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let validator = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = node(dir.path(), &validator.local_addr().unwrap().to_string());
    let key = dir.path().join("node/secrets/demo-1-consensus.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, report) = doctor(&config);
    assert!(!ok, "{report}");
    assert!(
        fail_line(&report, "consensus key").contains("644"),
        "{report}"
    );
    assert!(
        report.contains(&format!("fix: chmod 600 {}", key.display())),
        "{report}"
    );
    assert!(report.contains("SKIP  key backend"), "{report}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(dir.path().join("node/secrets/kms-identity.key")).unwrap();
    let (ok, report) = doctor(&config);
    assert!(!ok, "{report}");
    assert!(
        fail_line(&report, "identity key").contains("missing"),
        "{report}"
    );
    assert!(report.contains("fix: restore it"), "{report}");
}

#[test]
fn an_unreachable_peer_and_validator_fail() {
    let dir = tempfile::tempdir().unwrap();
    let ports = quorumkms::testnet::ports::free_ports(4).unwrap();
    let config = node(dir.path(), &format!("127.0.0.1:{}", ports[3]));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[cluster]\nnode_id = 1\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"raft\"\n\
         peers = [{{ id = 1, addr = \"127.0.0.1:{}\" }}, {{ id = 2, addr = \"127.0.0.1:{}\" }}, \
         {{ id = 3, addr = \"127.0.0.1:{}\" }}]\n",
        ports[0], ports[0], ports[1], ports[2]
    ));
    std::fs::write(&config, text).unwrap();
    let (ok, report) = doctor(&config);
    assert!(!ok, "{report}");
    assert!(report.contains("cluster node 1 of 3"), "{report}");
    for id in [2, 3] {
        let line = fail_line(&report, &format!("peer {id} at 127.0.0.1:"));
        assert!(line.contains("unreachable"), "{report}");
    }
    assert!(
        report.contains("fix: start it, or check its address"),
        "{report}"
    );
    assert!(
        fail_line(&report, "validator").contains("no connection"),
        "{report}"
    );
    assert!(report.contains("priv_validator_laddr"), "{report}");
    // The node itself is not running: its admin checks are skipped, not
    // failed; the Raft directory does not exist yet and is checked where
    // it will be made.
    assert!(report.contains("SKIP  node 1"), "{report}");
    assert!(report.contains("state directory"), "{report}");
    assert!(report.contains(", 3 failed,"), "{report}");
}

#[test]
fn a_threshold_node_checks_its_share_and_reports_the_group_key() {
    use quorumkms::keys::ConsensusSigner as _;
    use quorumkms::testnet::{self, NodeKeys};
    let dir = tempfile::tempdir().unwrap();
    let seed = [3; 32];
    let ports = testnet::free_ports(3).unwrap();
    let node = testnet::write_node_keyed(
        dir.path(),
        2,
        NodeKeys::Threshold {
            seed,
            threshold: 2,
            shares: 3,
        },
        &[testnet::CHAIN_ID.to_string()],
        &[],
        quorumkms::privval::Version::V0_38,
        &testnet::cluster_section(2, &ports),
    )
    .unwrap();
    let group = hex::encode(quorumkms::keys::softsign::SoftSigner::from_seed(seed).public_key());
    let (_, report) = doctor(&node.config);
    assert!(
        report.contains("PASS  threshold share for demo-1"),
        "{report}"
    );
    assert!(
        report.contains(&format!("2-of-3, group key {group}")),
        "{report}"
    );
    assert!(!report.contains("has no key"), "{report}");

    std::fs::remove_file(node.dir.join("secrets/demo-1.share.json")).unwrap();
    let (_, report) = doctor(&node.config);
    assert!(
        report.contains("WARN  threshold share for demo-1") && report.contains("threshold dkg"),
        "{report}"
    );
}
