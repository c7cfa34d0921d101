//! `quorumkms state import|export|show` as an operator runs them, against
//! real processes: a single node's state file (round trips through every
//! format, lower imports refused, a running node's file locked, malformed
//! files change nothing) and a 3-node cluster (import through Raft, lower
//! import refused, export equals what was imported).

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{exe, run_cli};
use quorumkms::privval::{Version, sign_bytes};
use quorumkms::testnet::{self, CHAIN_ID, NodeFiles};
use quorumkms::validator::consensus;
use quorumkms::watermark::{Position, SignState, StateFile, Step};

const SEED: [u8; 32] = [42; 32];

fn public_key() -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .verifying_key()
        .to_bytes()
}

/// Real canonical precommit sign bytes for a block at `height`/`round`.
fn precommit_bytes(height: i64, round: i32) -> Vec<u8> {
    let vote = consensus::vote(
        Version::V0_38,
        true,
        height,
        round,
        Some(consensus::block_id(height, 0)),
        &consensus::address(&public_key()),
        0,
    );
    sign_bytes::vote(CHAIN_ID, &vote)
}

/// A CometBFT `priv_validator_state.json` for a precommit at `height`.
fn cometbft_file(height: i64, round: i32) -> String {
    format!(
        r#"{{
  "height": "{height}",
  "round": {round},
  "step": 3,
  "signature": "{}",
  "signbytes": "{}"
}}"#,
        base64::engine::general_purpose::STANDARD.encode([7u8; 64]),
        hex::encode_upper(precommit_bytes(height, round))
    )
}

fn precommit(height: i64, round: i32) -> Position {
    Position {
        height,
        round,
        step: Step::Precommit,
    }
}

fn single_node(root: &Path) -> NodeFiles {
    testnet::write_nodes(root, 1, SEED, &[], Version::V0_38, &|_| String::new())
        .expect("node files")
        .remove(0)
}

fn cli(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let (ok, out, err) = run_cli(args, cwd);
    eprintln!("$ quorumkms {}\n{out}{err}", args.join(" "));
    (ok, out, err)
}

fn state_path(node: &NodeFiles) -> PathBuf {
    node.dir.join(format!("state/{CHAIN_ID}.json"))
}

#[test]
fn single_node_round_trip_through_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let config = node.config.to_str().unwrap();
    let input = dir.path().join("priv_validator_state.json");
    std::fs::write(&input, cometbft_file(100, 1)).unwrap();

    let (ok, out, _) = cli(
        &[
            "state",
            "import",
            "--chain",
            CHAIN_ID,
            input.to_str().unwrap(),
            "-c",
            config,
        ],
        dir.path(),
    );
    assert!(ok);
    assert!(
        out.contains("raised from (nothing signed) to 100/1/precommit"),
        "{out}"
    );
    let state = StateFile::new(state_path(&node)).load().unwrap();
    assert_eq!(state.position, Some(precommit(100, 1)));
    assert_eq!(state.sign_bytes, precommit_bytes(100, 1));

    let (ok, out, _) = cli(&["state", "show", "-c", config], dir.path());
    assert!(ok && out.contains("100/1/precommit"), "{out}");

    // CometBFT out, equal to what came in.
    let out_file = dir.path().join("out-cometbft.json");
    let (ok, _, _) = cli(
        &[
            "state",
            "export",
            "--chain",
            CHAIN_ID,
            "--format",
            "cometbft",
            "-o",
            out_file.to_str().unwrap(),
            "-c",
            config,
        ],
        dir.path(),
    );
    assert!(ok);
    let exported = std::fs::read_to_string(&out_file).unwrap();
    let value: serde_json::Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(value["height"], "100");
    assert_eq!(value["round"], 1);
    assert_eq!(value["step"], 3);
    assert_eq!(
        value["signbytes"],
        hex::encode_upper(precommit_bytes(100, 1))
    );

    // tmkms out: its own step numbering and the block id from the bytes.
    let (ok, tmkms, _) = cli(
        &[
            "state", "export", "--chain", CHAIN_ID, "--format", "tmkms", "-c", config,
        ],
        dir.path(),
    );
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(&tmkms).unwrap();
    assert_eq!(value["height"], "100");
    assert_eq!(value["round"], "1");
    assert_eq!(value["step"], 2);
    assert_eq!(
        value["block_id"]["hash"],
        hex::encode_upper(consensus::block_id(100, 0).hash)
    );

    // Interchange out carries the public key and the sign bytes; it
    // imports into a fresh node and gives the same state.
    let (ok, interchange, _) = cli(&["state", "export", "-c", config], dir.path());
    assert!(ok);
    let value: serde_json::Value = serde_json::from_str(&interchange).unwrap();
    assert_eq!(value["version"], 1);
    use base64::Engine;
    assert_eq!(
        value["chains"][0]["pub_key"]["value"],
        base64::engine::general_purpose::STANDARD.encode(public_key())
    );
    let other_dir = tempfile::tempdir().unwrap();
    let other = single_node(other_dir.path());
    let file = other_dir.path().join("interchange.json");
    std::fs::write(&file, &interchange).unwrap();
    let (ok, _, _) = cli(
        &[
            "state",
            "import",
            file.to_str().unwrap(),
            "-c",
            other.config.to_str().unwrap(),
        ],
        other_dir.path(),
    );
    assert!(ok);
    assert_eq!(StateFile::new(state_path(&other)).load().unwrap(), state);

    // A tmkms file one step higher raises it (tmkms step 2 is a precommit).
    let tmkms_file = dir.path().join("tmkms-state.json");
    std::fs::write(
        &tmkms_file,
        r#"{"height":"101","round":"0","step":0,"block_id":null}"#,
    )
    .unwrap();
    let (ok, out, _) = cli(
        &[
            "state",
            "import",
            "--chain",
            CHAIN_ID,
            tmkms_file.to_str().unwrap(),
            "-c",
            config,
        ],
        dir.path(),
    );
    assert!(ok && out.contains("to 101/0/proposal"), "{out}");

    // Going back down is refused, naming both positions; nothing changes.
    let before = std::fs::read(state_path(&node)).unwrap();
    let (ok, _, err) = cli(
        &[
            "state",
            "import",
            "--chain",
            CHAIN_ID,
            input.to_str().unwrap(),
            "-c",
            config,
        ],
        dir.path(),
    );
    assert!(!ok);
    assert!(
        err.contains("100/1/precommit") && err.contains("101/0/proposal"),
        "{err}"
    );
    assert_eq!(std::fs::read(state_path(&node)).unwrap(), before);
}

#[test]
fn malformed_files_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let config = node.config.to_str().unwrap();
    let input = dir.path().join("good.json");
    std::fs::write(&input, cometbft_file(50, 0)).unwrap();
    let (ok, _, _) = cli(
        &[
            "state",
            "import",
            "--chain",
            CHAIN_ID,
            input.to_str().unwrap(),
            "-c",
            config,
        ],
        dir.path(),
    );
    assert!(ok);
    let before = std::fs::read(state_path(&node)).unwrap();
    let bytes = hex::encode_upper(precommit_bytes(60, 0));
    let cases: Vec<(&str, String, &str)> = vec![
        ("auto", "{".into(), "EOF"),
        ("auto", r#"{"height":"60","round":"0","step":1}"#.into(), "--format"),
        ("cometbft", r#"{"height":"60","round":0,"step":"3"}"#.into(), "invalid cometbft file"),
        ("cometbft", r#"{"height":"-60","round":0,"step":3}"#.into(), "negative"),
        ("cometbft", r#"{"height":"60","round":0,"step":3,"signbytes":"XYZ"}"#.into(), "signbytes"),
        // Sign bytes for height 60 under a watermark claiming 61.
        ("cometbft", format!(r#"{{"height":"61","round":0,"step":3,"signbytes":"{bytes}"}}"#), "watermark says"),
        ("tmkms", r#"{"height":"60","round":0,"step":2,"block_id":null}"#.into(), "invalid tmkms file"),
        ("interchange", r#"{"version":2,"chains":[]}"#.into(), "unsupported interchange version 2"),
        (
            "interchange",
            format!(r#"{{"version":1,"chains":[{{"chain_id":"{CHAIN_ID}","watermark":{{"height":"60","round":0,"step":"precommit","sign_bytes":"nothex"}}}}]}}"#),
            "not hex",
        ),
        (
            "interchange",
            r#"{"version":1,"chains":[{"chain_id":"other-1","watermark":{"height":"60","round":0,"step":"precommit"}}]}"#.into(),
            "not configured",
        ),
        (
            "interchange",
            format!(r#"{{"version":1,"chains":[{{"chain_id":"{CHAIN_ID}","pub_key":{{"type":"tendermint/PubKeyEd25519","value":"{}"}},"watermark":{{"height":"60","round":0,"step":"precommit"}}}}]}}"#,
                "A".repeat(43) + "="),
            "not this signer's key",
        ),
    ];
    for (format, text, expected) in cases {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, &text).unwrap();
        let chain: &[&str] = if format == "interchange" {
            &[]
        } else {
            &["--chain", CHAIN_ID]
        };
        let mut args = vec![
            "state",
            "import",
            "--format",
            format,
            file.to_str().unwrap(),
            "-c",
            config,
        ];
        args.extend_from_slice(chain);
        let (ok, _, err) = cli(&args, dir.path());
        assert!(!ok, "accepted {text}");
        assert!(
            err.contains(expected),
            "{text}: expected {expected:?} in {err}"
        );
        assert_eq!(std::fs::read(state_path(&node)).unwrap(), before, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_single_node_keeps_its_state_file_locked() {
    let dir = tempfile::tempdir().unwrap();
    let node = single_node(dir.path());
    let mut child = testnet::spawn_node(&exe(), &node).expect("spawn");
    let log = node.dir.join("node.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("quorumkms started")
    {
        assert!(Instant::now() < deadline, "node did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let input = dir.path().join("in.json");
    std::fs::write(&input, cometbft_file(10, 0)).unwrap();
    let args = [
        "state",
        "import",
        "--chain",
        CHAIN_ID,
        input.to_str().unwrap(),
        "-c",
        node.config.to_str().unwrap(),
    ];
    let (ok, _, err) = cli(&args, dir.path());
    assert!(!ok && err.contains("locked"), "{err}");
    assert_eq!(
        StateFile::new(state_path(&node)).load().unwrap(),
        SignState::default()
    );
    child.kill().await.unwrap();
    let (ok, _, _) = cli(&args, dir.path());
    assert!(ok, "import after the node stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_import_is_raise_only_and_exports_what_was_imported() {
    let dir = tempfile::tempdir().unwrap();
    let ports = testnet::free_ports(3).unwrap();
    let nodes = testnet::write_nodes(dir.path(), 3, SEED, &[], Version::V0_38, &|i| {
        testnet::cluster_section(i, &ports)
    })
    .unwrap();
    let mut children: Vec<_> = nodes
        .iter()
        .map(|n| testnet::spawn_node(&exe(), n).expect("spawn"))
        .collect();
    testnet::initialize_cluster(&ports, Duration::from_secs(30))
        .await
        .expect("cluster initializes");
    let deadline = Instant::now() + Duration::from_secs(30);
    while testnet::find_leader(&ports).await.is_none() {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cwd = dir.path().to_path_buf();
    let config = |i: usize| nodes[i].config.to_str().unwrap().to_string();
    let run = |args: Vec<String>| {
        let cwd = cwd.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&args, &cwd)
        })
    };
    let input = dir.path().join("priv_validator_state.json");
    std::fs::write(&input, cometbft_file(200, 2)).unwrap();
    let import = |file: &Path, node: usize| {
        vec![
            "state".into(),
            "import".into(),
            "--chain".into(),
            CHAIN_ID.into(),
            file.to_str().unwrap().into(),
            "-c".into(),
            config(node),
        ]
    };

    // Import through a follower or the leader alike (node 2 here).
    let (ok, out, _) = run(import(&input, 1)).await.unwrap();
    assert!(ok && out.contains("to 200/2/precommit"), "{out}");

    // A lower import is refused, naming both positions.
    let lower = dir.path().join("lower.json");
    std::fs::write(&lower, cometbft_file(150, 0)).unwrap();
    let (ok, _, err) = run(import(&lower, 2)).await.unwrap();
    assert!(!ok);
    assert!(
        err.contains("150/0/precommit") && err.contains("200/2/precommit"),
        "{err}"
    );
    // So is the same one again.
    let (ok, _, err) = run(import(&input, 0)).await.unwrap();
    assert!(!ok && err.contains("not above"), "{err}");

    // Asked of any node, the export is what the cluster committed: the
    // leader answers once a quorum confirms it still leads. A failed answer
    // (an election under way) is retried; a stale one fails the test.
    for i in 0..3 {
        let args = vec![
            "state".into(),
            "export".into(),
            "--chain".into(),
            CHAIN_ID.into(),
            "--format".into(),
            "cometbft".into(),
            "-c".into(),
            config(i),
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        let out = loop {
            let (ok, out, err) = run(args.clone()).await.unwrap();
            if ok {
                break out;
            }
            assert!(
                Instant::now() < deadline,
                "export via node {}: {err}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["height"], "200", "export via node {}", i + 1);
        assert_eq!(value["round"], 2);
        assert_eq!(value["step"], 3);
        assert_eq!(
            value["signbytes"],
            hex::encode_upper(precommit_bytes(200, 2))
        );
        // FilePV panics on sign bytes without their signature.
        assert!(value["signature"].is_string(), "export via node {}", i + 1);
    }
    // The interchange export round-trips into a single-node signer.
    let (ok, interchange, _) = run(vec![
        "state".into(),
        "export".into(),
        "-c".into(),
        config(0),
    ])
    .await
    .unwrap();
    assert!(ok);
    let single_dir = tempfile::tempdir().unwrap();
    let single = single_node(single_dir.path());
    let file = single_dir.path().join("interchange.json");
    std::fs::write(&file, interchange).unwrap();
    let (ok, _, _) = cli(
        &[
            "state",
            "import",
            file.to_str().unwrap(),
            "-c",
            single.config.to_str().unwrap(),
        ],
        single_dir.path(),
    );
    assert!(ok);
    let state = StateFile::new(state_path(&single)).load().unwrap();
    assert_eq!(state.position, Some(precommit(200, 2)));
    assert_eq!(state.sign_bytes, precommit_bytes(200, 2));

    for child in &mut children {
        let _ = child.kill().await;
    }
}
