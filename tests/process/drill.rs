//! `quorumkms drill` against three real signer processes, each in its own
//! network namespace. The plan's hooks are a small control script per
//! node (start in the namespace, kill -9, cut or restore its links to the
//! other nodes), as an operator's would be. Every drill must pass with no
//! conflicting signature, and a drill whose node never comes back must
//! fail. All of it runs again in threshold mode (2 of 3), where every
//! canary signature takes two nodes' shares.
//!
//! Needs root (namespaces, iptables); see the harness docs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support;
use crate::support::{Cluster, ClusterBuilder};
use quorumkms::drill::{self, Drill, plan::Plan};
use quorumkms::testnet::CHAIN_ID;

/// Kills every node the control scripts started, also on a panic.
struct Started(Vec<PathBuf>);

impl Drop for Started {
    fn drop(&mut self) {
        for dir in &self.0 {
            if let Ok(pid) = std::fs::read_to_string(dir.join("pid")) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid.trim()])
                    .status();
            }
        }
    }
}

/// Writes `DIR/ctl` for node `i`: `ctl start|stop|isolate|rejoin`.
fn control_script(c: &Cluster, i: usize) -> PathBuf {
    let net = c.net();
    let node = &c.nodes()[i - 1];
    let dir = node.dir.display();
    let ns = net.ns(i);
    let mut cut = String::new();
    for j in (1..=c.len()).filter(|j| *j != i) {
        let peer = net.node_ip(j);
        cut.push_str(&format!(
            "ip netns exec {ns} iptables -A INPUT -s {peer} -j DROP\n    \
             ip netns exec {ns} iptables -A OUTPUT -d {peer} -j DROP\n    "
        ));
    }
    let script = format!(
        "#!/bin/sh\nset -e\ncase \"$1\" in\n\
         start)\n    RUST_LOG=info ip netns exec {ns} {exe} start -c {config} >> {dir}/node.log 2>&1 &\n    \
         echo $! > {dir}/pid ;;\n\
         stop)\n    kill -9 \"$(cat {dir}/pid)\"\n    sleep 0.2 ;;\n\
         isolate)\n    {cut};;\n\
         rejoin)\n    ip netns exec {ns} iptables -F INPUT\n    ip netns exec {ns} iptables -F OUTPUT ;;\n\
         esac\n",
        exe = support::exe().display(),
        config = node.config.display(),
    );
    let path = node.dir.join("ctl");
    std::fs::write(&path, script).expect("write ctl");
    let status = std::process::Command::new("chmod")
        .args(["+x", path.to_str().expect("utf-8")])
        .status()
        .expect("chmod");
    assert!(status.success());
    path
}

fn plan_text(c: &Cluster, ctl: &[PathBuf], sentries: &[String], recover_within: &str) -> String {
    let quoted: Vec<String> = sentries.iter().map(|s| format!("\"{s}\"")).collect();
    let mut text = format!(
        "[canary]\nchain_id = \"{CHAIN_ID}\"\nsentries = [{}]\nblock_time = \"200ms\"\n\
         double_sign_every = 3\nsigner_names = \"signers.txt\"\n\n\
         [timing]\nwarmup = \"2s\"\nhold = \"3s\"\nrecover_within = \"{recover_within}\"\n\
         settle = \"1s\"\nhook_timeout = \"10s\"\n\n",
        quoted.join(", ")
    );
    for (i, script) in ctl.iter().enumerate() {
        let s = script.display();
        text.push_str(&format!(
            "[[node]]\nname = \"{}\"\nadmin = \"{}\"\nstop = \"{s} stop\"\nstart = \"{s} start\"\n\
             isolate = \"{s} isolate\"\nrejoin = \"{s} rejoin\"\n\n",
            c.nodes()[i].name,
            c.addrs()[i]
        ));
    }
    text
}

fn write_plan(dir: &Path, name: &str, text: &str) -> Plan {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write plan");
    Plan::load(&path).expect("plan")
}

#[test]
fn every_drill_passes_with_no_conflict_and_a_node_that_stays_down_fails_one() {
    every_drill(Cluster::builder(3));
}

#[test]
fn every_drill_passes_with_no_conflict_and_a_node_that_stays_down_fails_one_in_threshold_mode() {
    every_drill(Cluster::builder(3).threshold(2));
}

/// Every drill, then a broken plan, against `builder`'s cluster (each node
/// in its own namespace, started by its control script).
fn every_drill(builder: ClusterBuilder) {
    if !support::privileged_allowed("drill") {
        return;
    }
    support::run(async {
        let mut c = builder.netns().build();
        let host = c.validator_host();
        let ports = quorumkms::testnet::free_ports(2).expect("ports");
        let sentries: Vec<String> = ports.iter().map(|p| format!("tcp://{host}:{p}")).collect();
        let dial = sentries.clone();
        c.write(&|_| dial.clone());
        let ctl: Vec<PathBuf> = (1..=3).map(|i| control_script(&c, i)).collect();
        let _started = Started(c.nodes().iter().map(|n| n.dir.clone()).collect());
        for script in &ctl {
            let status = std::process::Command::new(script)
                .arg("start")
                .status()
                .expect("start");
            assert!(status.success());
        }
        c.initialize(1).await;
        c.wait_ready(&[1, 2, 3], Duration::from_secs(30)).await;
        let root = c.nodes()[0].dir.parent().expect("root").to_path_buf();
        let names: String = c
            .nodes()
            .iter()
            .map(|n| format!("{} {}\n", n.node_id, n.name))
            .collect();
        std::fs::write(root.join("signers.txt"), names).expect("signers.txt");
        let plan = write_plan(&root, "drill.toml", &plan_text(&c, &ctl, &sentries, "30s"));

        let mut signatures = 0;
        for d in Drill::ALL {
            let report = drill::run(&plan, d, None).await.expect("drill starts");
            println!("{report}");
            assert!(
                report.passed(),
                "{} failed: {:?}",
                d.name(),
                report.problems
            );
            assert_eq!(report.conflicts, 0);
            assert_eq!(report.invalid, 0);
            assert!(report.resumed_after.is_some() && report.healthy_after.is_some());
            assert!(report.requested > 0, "{}: nothing was asked", d.name());
            assert!(
                report.double_signs_refused > 0,
                "{}: no double-sign attempt",
                d.name()
            );
            signatures += report.signatures;
        }
        assert!(
            signatures > 100,
            "only {signatures} signatures over all drills"
        );

        // Nodes whose start hook does nothing never come back: the drill
        // must say the cluster did not recover.
        let mut broken = plan_text(&c, &ctl, &sentries, "4s");
        for script in &ctl {
            broken = broken.replace(&format!("{} start", script.display()), "true");
        }
        let plan = write_plan(&root, "broken.toml", &broken);
        let report = drill::run(&plan, Drill::FollowerKill, None)
            .await
            .expect("drill starts");
        println!("{report}");
        assert!(!report.passed());
        assert!(report.healthy_after.is_none());
        assert!(
            report.problems.iter().any(|p| p.contains("not healthy")),
            "{:?}",
            report.problems
        );
        assert_eq!(report.conflicts, 0);

        // The same plan refuses to start a drill on the unhealthy cluster.
        let refused = drill::run(&plan, Drill::LeaderKill, None)
            .await
            .unwrap_err();
        assert!(refused.contains("not healthy"), "{refused}");
    });
}
