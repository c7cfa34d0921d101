//! `quorumkms demo` as a user runs it: in threshold mode (2 of 3) it
//! kills the leader with SIGKILL, every signature still takes two nodes'
//! shares and verifies, and it says so; `--threshold` that cannot work is
//! refused before any node starts.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

/// Runs `quorumkms ARGS`, killing it after `within`.
fn run_cli(args: &[&str], within: Duration) -> Output {
    let mut child = Command::new(support::exe())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run quorumkms");
    // Drain the pipes while waiting, so a chatty child never blocks.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "quorumkms {args:?} still ran after {within:?}:\n{}",
                String::from_utf8_lossy(&out.join().expect("stdout"))
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
    }
}

#[test]
fn the_demo_in_threshold_mode_signs_through_a_leader_kill_with_two_shares_each() {
    // The demo starts three nodes of its own.
    let _serial = support::one_cluster_at_a_time();
    let out = run_cli(
        &[
            "demo",
            "--threshold",
            "2",
            "--blocks",
            "12",
            "--block-time",
            "100ms",
            "--kill-leader-after",
            "1s",
        ],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for want in [
        "split 2 of 3: each node holds one share, none the whole key",
        "with SIGKILL",
        "0 requests failed, 0 conflicting signatures, 0 invalid",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    // Every height after the kill was signed too, with two shares each.
    let heights: Vec<&str> = stdout.lines().filter(|l| l.starts_with("height")).collect();
    assert_eq!(heights.len(), 12, "{stdout}");
    for line in &heights {
        assert!(line.contains("with 2 shares each"), "{line}");
    }
    let done = stdout
        .lines()
        .find(|l| l.starts_with("threshold mode: each of the "))
        .unwrap_or_else(|| panic!("no threshold summary in:\n{stdout}"));
    // 12 heights: a prevote and a precommit each, a proposal on odd ones.
    assert_eq!(
        done,
        "threshold mode: each of the 30 signatures took 2 of the 3 nodes' shares"
    );
}

#[test]
fn the_demo_refuses_a_threshold_it_cannot_run() {
    for (args, says) in [
        (
            &["demo", "--threshold", "2", "--nodes", "1"][..],
            "--nodes 3",
        ),
        (&["demo", "--threshold", "4"][..], "more than the 3 shares"),
        (
            &["demo", "--threshold", "2", "--key-type", "secp256k1"][..],
            "ed25519",
        ),
    ] {
        let out = run_cli(args, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
