//! `init` and `start` from the operator's side: generated files, and clear
//! errors for broken configs, missing or corrupt state and loose key files.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{exe, run_cli};

fn init(dir: &std::path::Path) -> std::path::PathBuf {
    let (ok, out, err) = run_cli(&["init", "-n", "cosmoshub-4,osmosis-1", "node"], dir);
    assert!(ok, "init failed: {out}{err}");
    dir.join("node/quorumkms.toml")
}

/// Starts the node, waits for `needle` in its output, then kills it.
fn start_until(config: &std::path::Path, extra: &[&str], needle: &str) -> String {
    let log = config.with_file_name("start.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(exe())
        .arg("start")
        .arg("-c")
        .arg(config)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(needle) || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn init_writes_a_config_that_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path());
    let node = config.parent().unwrap();
    for file in [
        "secrets/kms-identity.key",
        "secrets/cosmoshub-4-consensus.key",
        "secrets/osmosis-1-consensus.key",
        "state/cosmoshub-4-consensus.json",
        "state/osmosis-1-consensus.json",
    ] {
        assert!(node.join(file).exists(), "{file} missing");
    }
    let mode = std::fs::metadata(node.join("secrets/cosmoshub-4-consensus.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
    let text = start_until(&config, &[], "quorumkms started");
    assert!(text.contains("quorumkms started"), "{text}");
    // A second init into the same directory refuses to overwrite.
    let (ok, _, err) = run_cli(&["init", "node"], dir.path());
    assert!(!ok && err.contains("already exists"), "{err}");
}

#[test]
fn a_broken_config_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path());
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "protocol_version = \"v0.38\"",
        "protocol_version = \"v9\"",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let (ok, _, err) = run_cli(&["start", "-c", config.to_str().unwrap()], dir.path());
    assert!(!ok);
    assert!(
        err.contains("quorumkms.toml") && err.contains("v9"),
        "{err}"
    );
}

#[test]
fn missing_or_corrupt_state_stops_the_node_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path());
    let state = config.with_file_name("state/cosmoshub-4-consensus.json");
    // The journal beside the file would stand in for it (a file torn by a
    // crash): take both away.
    std::fs::remove_file(&state).unwrap();
    std::fs::remove_file(state.with_extension("json.journal")).unwrap();
    let (ok, _, err) = run_cli(&["start", "-c", config.to_str().unwrap()], dir.path());
    assert!(
        !ok && err.contains("does not exist") && err.contains("--allow-empty-state"),
        "{err}"
    );

    std::fs::write(&state, "{\"height\": ").unwrap();
    let (ok, _, err) = run_cli(&["start", "-c", config.to_str().unwrap()], dir.path());
    assert!(!ok && err.contains("corrupt"), "{err}");

    let text = start_until(&config, &["--allow-empty-state"], "quorumkms started");
    assert!(text.contains("quorumkms started"), "{text}");
    assert!(
        state.with_extension("corrupt").exists(),
        "the corrupt file was kept aside"
    );
    assert!(
        std::fs::read_to_string(&state)
            .unwrap()
            .contains("\"height\": \"0\"")
    );
}

#[test]
fn a_world_readable_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path());
    let key = config.with_file_name("secrets/osmosis-1-consensus.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = run_cli(&["start", "-c", config.to_str().unwrap()], dir.path());
    assert!(!ok && err.contains("osmosis-1-consensus.key"), "{err}");
}

#[test]
fn a_cluster_port_off_loopback_needs_tls_or_insecure_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path());
    let port = quorumkms::testnet::free_ports(1).unwrap()[0];
    let base = std::fs::read_to_string(&config).unwrap();
    let cluster = format!(
        "\n[cluster]\nnode_id = 1\nlisten = \"0.0.0.0:{port}\"\ndata_dir = \"raft\"\n\
         peers = [{{ id = 1, addr = \"127.0.0.1:{port}\" }}]\n"
    );
    std::fs::write(&config, format!("{base}{cluster}")).unwrap();
    let (ok, _, err) = run_cli(&["start", "-c", config.to_str().unwrap()], dir.path());
    assert!(!ok, "a plaintext cluster port on 0.0.0.0 started");
    for needle in [
        "cluster.tls: required",
        "quorumkms cluster certs",
        "insecure_plaintext = true",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    // Asked for by name, it starts, and says what it is doing.
    std::fs::write(
        &config,
        format!("{base}{cluster}insecure_plaintext = true\n"),
    )
    .unwrap();
    let text = start_until(&config, &[], "cluster node started");
    assert!(text.contains("cluster node started"), "{text}");
    assert!(text.contains("cluster.insecure_plaintext is set"), "{text}");
}
