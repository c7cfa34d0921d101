//! Mutual TLS on a cluster of real processes: operators with an operator
//! certificate are served; no certificate, a certificate from another CA,
//! or a node certificate on the admin API are refused; the Raft port
//! refuses everything but node certificates. Key files are 0600 and never
//! logged.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::Cluster;
use crate::support::signing::start_cluster;
use quorumkms::cluster::admin::Client;
use quorumkms::cluster::network::{self, Channels};
use quorumkms::cluster::{ClusterId, TcpTransport, TlsConfig, TlsTransport, certs};

const T: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_cluster_certificates_with_the_right_role_get_in() {
    let (mut ops, _validator) = start_cluster(Cluster::builder(3).tls().metrics()).await;
    let addr = ops.addr(1);

    // The operator is served.
    let status = ops.client(1).status().await.expect("operator status");
    assert_eq!(status.members.len(), 3);

    // No certificate at all.
    let refused = Client::new(addr.clone(), T).status().await;
    assert!(refused.is_err(), "plaintext client was served");

    // A node certificate on the admin API.
    let node_cert = ops.tls_files("node-2").expect("tls");
    let refused = Client::new(addr.clone(), T)
        .with_tls(&node_cert)
        .expect("node tls")
        .status()
        .await
        .expect_err("node certificate on the admin API");
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );

    // An operator certificate from another CA, trusting either CA.
    let other = tempfile::tempdir().expect("tempdir");
    certs::init_ca(other.path()).expect("other CA");
    let foreign = certs::operator(other.path(), "mallory").expect("foreign cert");
    for ca in [
        other.path().join("ca.pem"),
        ops.certs().expect("certs").to_path_buf().join("ca.pem"),
    ] {
        let tls = TlsConfig::new(ca, foreign.cert.clone(), foreign.key.clone());
        // Trusting our CA, the foreign certificate fails its own check
        // before dialling; trusting its own, the node refuses it.
        if let Ok(client) = Client::new(addr.clone(), T).with_tls(&tls) {
            let refused = client.status().await;
            assert!(refused.is_err(), "a foreign certificate was served");
        }
    }

    // The Raft port: a node certificate passes, an operator's does not,
    // plaintext does not (each calling as a member of the cluster).
    let cluster_id: ClusterId = status
        .cluster_id
        .as_deref()
        .expect("a cluster id")
        .parse()
        .expect("cluster id");
    let as_node = TlsTransport::from_config(&node_cert).expect("node transport");
    let channels = Channels::new(Arc::new(as_node), T).in_cluster(cluster_id);
    assert_eq!(network::ping(&channels, &addr, T).await, Ok(1));
    let operator = ops.operator_tls().expect("tls");
    let as_operator = TlsTransport::from_config(&operator).expect("operator transport");
    let channels = Channels::new(Arc::new(as_operator), T).in_cluster(cluster_id);
    let refused = network::ping(&channels, &addr, T)
        .await
        .expect_err("operator on the Raft port");
    assert!(
        refused.to_string().contains("PermissionDenied")
            || refused.to_string().contains("node certificate"),
        "{refused}"
    );
    let channels = Channels::new(Arc::new(TcpTransport), T).in_cluster(cluster_id);
    assert!(network::ping(&channels, &addr, T).await.is_err());

    // The cluster still works after all that.
    let status = ops.client(2).status().await.expect("status");
    assert!(status.leader.is_some());

    // The CLI: with the operator's files it works; without them it says
    // why.
    let certs_dir = ops.certs().expect("certs").to_path_buf();
    let out = std::process::Command::new(support::exe())
        .args(["cluster", "status", "--addr", &addr, "--json", "--ca"])
        .arg(certs_dir.join("ca.pem"))
        .arg("--cert")
        .arg(certs_dir.join("operator-ops.pem"))
        .arg("--key")
        .arg(certs_dir.join("operator-ops.key"))
        .output()
        .expect("run cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json status");
    assert_eq!(json["members"].as_array().map(Vec::len), Some(3));
    let out = std::process::Command::new(support::exe())
        .args(["cluster", "status", "-c"])
        .arg(&ops.nodes()[0].config)
        .env_remove("QUORUMKMS_CERT")
        .env_remove("QUORUMKMS_KEY")
        .output()
        .expect("run cli");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("uses TLS"));

    // Keys are private, and no key material reaches the logs.
    for entry in std::fs::read_dir(&certs_dir).expect("certs dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "key") {
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }
    ops.stop_all().await;
    for id in 1..=3 {
        let log = ops.log(id);
        assert!(!log.contains("PRIVATE KEY"), "node {id} logged a key");
        assert!(log.contains("cluster node started"), "node {id} log: {log}");
        assert!(!log.contains("plaintext"), "node {id} ran without TLS");
    }
}

#[test]
fn certificate_commands_write_private_keys_and_refuse_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        std::process::Command::new(support::exe())
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run cli")
    };
    assert!(
        run(&["cluster", "certs", "init", "--dir", "pki"])
            .status
            .success()
    );
    let node = run(&[
        "cluster",
        "certs",
        "node",
        "--dir",
        "pki",
        "--id",
        "1",
        "--host",
        "10.0.0.1",
        "--host",
        "signer-1.example",
    ]);
    assert!(
        node.status.success(),
        "{}",
        String::from_utf8_lossy(&node.stderr)
    );
    assert!(
        run(&[
            "cluster", "certs", "operator", "--dir", "pki", "--name", "alice"
        ])
        .status
        .success()
    );
    let again = run(&["cluster", "certs", "init", "--dir", "pki"]);
    assert!(!again.status.success(), "the CA was overwritten");
    let bad = run(&[
        "cluster", "certs", "operator", "--dir", "pki", "--name", "a b",
    ]);
    assert!(!bad.status.success());
    for key in ["ca.key", "node-1.key", "operator-alice.key"] {
        let mode = std::fs::metadata(dir.path().join("pki").join(key))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // Both certificates load as TLS identities against the CA.
    for stem in ["node-1", "operator-alice"] {
        let tls = TlsConfig::new(
            dir.path().join("pki/ca.pem"),
            dir.path().join(format!("pki/{stem}.pem")),
            dir.path().join(format!("pki/{stem}.key")),
        );
        quorumkms::cluster::tls::Identity::load(&tls)
            .and_then(|id| id.client_config())
            .expect("usable identity");
    }
}

#[test]
fn testnet_config_off_loopback_copies_node_certificates_or_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        std::process::Command::new(support::exe())
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run cli")
    };
    let testnet = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "testnet-config",
            "--dir",
            out,
            "--validator",
            "tcp://10.9.0.20:26658",
            "--peer",
            "10.9.0.11:7100",
            "--peer",
            "10.9.0.12:7100",
            "--peer",
            "10.9.0.13:7100",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let refused = testnet("plain", &[]);
    assert!(
        !refused.status.success(),
        "plaintext off loopback was written"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--certs"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    assert!(
        run(&["cluster", "certs", "init", "--dir", "pki"])
            .status
            .success()
    );
    for id in ["1", "2", "3"] {
        let node = run(&["cluster", "certs", "node", "--dir", "pki", "--id", id]);
        assert!(node.status.success());
    }
    let written = testnet("tls", &["--certs", "pki"]);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    for i in 1..=3 {
        let node = dir.path().join(format!("tls/node-{i}"));
        let config = quorumkms::config::load(&node.join("quorumkms.toml")).expect("valid config");
        let tls = config.cluster.expect("cluster").tls.expect("tls");
        assert_eq!(tls.cert, node.join("tls/node.pem"));
        let mode = std::fs::metadata(&tls.key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Node i's own certificate, not another's.
        assert_eq!(
            std::fs::read(&tls.cert).expect("cert"),
            std::fs::read(dir.path().join(format!("pki/node-{i}.pem"))).expect("issued")
        );
    }

    let insecure = testnet("insecure", &["--insecure-plaintext"]);
    assert!(insecure.status.success());
    let config =
        quorumkms::config::load(&dir.path().join("insecure/node-1/quorumkms.toml")).expect("load");
    assert!(config.cluster.expect("cluster").insecure_plaintext);
}
