//! The operators' view of a real three-node cluster: `cluster status`
//! names the node that served a chain's last signature and how many more
//! voters the cluster can lose, and the status page, loaded in a real
//! headless browser, shows members, chains and watermarks, and a killed
//! node as down; `doctor` checks a running cluster with mutual TLS.

use std::time::Duration;

use crate::support;
use crate::support::metrics::sample;
use crate::support::{Cluster, browser, fast_timing, precommit, prevote, proposal};
use quorumkms::testnet::CHAIN_ID;
use quorumkms::validator::{Checker, SignOutcome};

const T: Duration = Duration::from_secs(30);
const HEIGHTS: i64 = 5;

#[test]
fn status_page_and_cluster_status_show_who_signed_and_who_is_down() {
    support::run(async {
        let checker = Checker::new();
        let mut c = Cluster::builder(3).metrics().build();
        let (mut v, addr) = support::validator(&c.validator_host(), &checker, fast_timing()).await;
        c.write(&|_| vec![addr.clone()]);
        c.start(T).await;
        for h in 1..=HEIGHTS {
            for o in [
                v.sign_proposal(proposal(h, 0)).await,
                v.sign_vote(prevote(h, 0)).await,
                v.sign_vote(precommit(h, 0)).await,
            ] {
                assert!(matches!(o, SignOutcome::Signed { .. }), "height {h}: {o:?}");
            }
        }
        let serving = c.index_of(v.peer().expect("connected")).expect("a node");
        let leader = c.leader(T).await;
        let watermark = format!("{HEIGHTS}/0/precommit");

        // Every node's status names the serving node, once all probes
        // have answered.
        let status = c
            .wait_status(leader, "the last signature and a full quorum", T, |s| {
                s.can_lose_voters == Some(1)
                    && s.chains
                        .get(CHAIN_ID)
                        .and_then(|c| c.last_signed.as_ref())
                        .is_some_and(|l| l.position.height == HEIGHTS)
            })
            .await;
        let signed = status.chains[CHAIN_ID].last_signed.clone().expect("signed");
        assert_eq!(signed.node, Some(serving as u64), "{signed:?}");
        assert!(signed.at_ms.is_some(), "{signed:?}");
        let table = quorumkms::cli::cluster::render(&status);
        assert!(table.contains("can lose 1 more voter(s) of 3"), "{table}");
        assert!(
            table.contains("last signature at 20") && table.contains(&format!("by node {serving}")),
            "{table}"
        );

        let (_, json) = c.http_get(leader, "/status.json").await;
        let view: serde_json::Value = serde_json::from_str(&json).expect("status.json");
        assert_eq!(view["mode"], "cluster", "{json}");
        assert_eq!(view["chains"][0]["watermark"], watermark.as_str(), "{json}");

        let with_browser = browser::available("status_page");
        // The serving node's page: it has grant latencies to show.
        let url = format!("http://{}/", c.metrics_addr(serving).expect("metrics"));
        if with_browser {
            let dom = browser::dump_dom(&url).await;
            for id in 1..=3 {
                assert!(
                    dom.contains(&format!("data-member=\"{id}\" data-state=\"up\"")),
                    "node {id} not shown up:\n{dom}"
                );
            }
            // Leadership may move meanwhile; some member leads.
            assert!(dom.contains("data-role=\"leader\""), "{dom}");
            assert!(
                dom.contains(&format!(
                    "data-chain=\"{CHAIN_ID}\" data-height=\"{HEIGHTS}\""
                )),
                "{dom}"
            );
            assert!(dom.contains(&watermark), "{dom}");
            assert!(dom.contains(&format!("node {serving}")), "{dom}");
            assert!(
                dom.contains("data-health=\"quorum\" data-ok=\"true\""),
                "{dom}"
            );
            assert!(dom.contains("can lose 1 more voter(s)"), "{dom}");
            assert!(dom.contains("p99"), "no latency figures:\n{dom}");
        }

        // Kill another node: this node's page shows it down, and the
        // cluster one failure from losing its quorum.
        let victim = (1..=3).find(|i| *i != serving).expect("another node");
        c.kill(victim).await;
        c.wait_status(serving, "the killed node unreachable", T, |s| {
            s.can_lose_voters == Some(0)
                && s.members
                    .iter()
                    .any(|m| m.id == victim as u64 && m.reachable == Some(false))
        })
        .await;
        // The alerting gauges follow within a second or so.
        let node_label = format!("node=\"{victim}\"");
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let (_, body) = c.http_get(serving, "/metrics").await;
            let reachable = sample(&body, "quorumkms_raft_peer_reachable", &[&node_label]);
            let margin = sample(&body, "quorumkms_quorum_can_lose_voters", &[]);
            let signed = sample(
                &body,
                "quorumkms_last_signature_timestamp_seconds",
                &[&format!("chain=\"{CHAIN_ID}\"")],
            );
            if reachable == Some(0.0) && margin == Some(0.0) && signed.is_some_and(|t| t > 0.0) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gauges did not follow: {reachable:?} {margin:?} {signed:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if with_browser {
            let dom = browser::dump_dom(&url).await;
            assert!(
                dom.contains(&format!("data-member=\"{victim}\" data-state=\"down\"")),
                "node {victim} not shown down:\n{dom}"
            );
            assert!(dom.contains("can lose 0 more voter(s)"), "{dom}");
        }
        c.stop_all().await;
    });
}

/// `doctor` against a running cluster with mutual TLS: every peer is
/// reachable with a certificate naming the right node, every node holds
/// the same public key, and the clocks agree; a peer listed under another
/// node's id fails.
#[test]
fn doctor_checks_a_running_tls_cluster() {
    support::run(async {
        let (mut c, _validator) = support::signing::start_cluster(Cluster::builder(3).tls()).await;
        let certs = c.certs().expect("certs").to_path_buf();
        let config = c.nodes()[0].config.clone();
        let doctor = |config: &std::path::Path| {
            let out = std::process::Command::new(support::exe())
                .arg("doctor")
                .arg("-c")
                .arg(config)
                .arg("--no-dial")
                .arg("--cert")
                .arg(certs.join("operator-ops.pem"))
                .arg("--key")
                .arg(certs.join("operator-ops.key"))
                .output()
                .expect("run doctor");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let (ok, report) = doctor(&config);
        eprintln!("{report}");
        assert!(ok, "{report}");
        for id in [2, 3] {
            assert!(
                report.contains(&format!("certificate for node {id}: valid until")),
                "{report}"
            );
            assert!(
                report.contains(&format!("node {id} (admin API at"))
                    && report.contains("clock offset"),
                "{report}"
            );
        }
        for id in 1..=3 {
            assert!(
                report
                    .lines()
                    .any(|l| l.starts_with(&format!("PASS  node {id} "))
                        && l.contains(&format!("same public key for {CHAIN_ID}"))),
                "{report}"
            );
        }

        // Swap two peers' ids: their certificates name the other node.
        let text = std::fs::read_to_string(&config).expect("config");
        let swapped = text
            .replace("id = 2,", "id = 9,")
            .replace("id = 3,", "id = 2,")
            .replace("id = 9,", "id = 3,");
        assert_ne!(swapped, text, "the peers list is not as expected:\n{text}");
        let bad = config.with_file_name("swapped.toml");
        std::fs::write(&bad, swapped).expect("write");
        let (ok, report) = doctor(&bad);
        assert!(!ok, "{report}");
        assert!(
            report.lines().any(|l| l.starts_with("FAIL")
                && l.contains("its certificate names node Some(3), not 2")),
            "{report}"
        );
        c.stop_all().await;
    });
}
