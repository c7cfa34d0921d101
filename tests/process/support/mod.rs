//! The process tests' support: one cluster harness ([`Cluster`], a
//! builder for `quorumkms start` processes on loopback or in network
//! namespaces, with TLS, metrics, per-node environment and tmpfs data
//! dirs), mock validators that share one [`Checker`], a validator signing
//! in the background ([`signing`]), and the privileged fault tools
//! ([`net`]: kill -9 aside, a real kernel cut and a disk that fills up).
//!
//! Every wait polls the nodes' admin status (or a validator) against a
//! deadline. Every namespace, mount and process is removed by a guard, also
//! when a test panics; on a panic the tail of each node's log is printed.
//!
//! The privileged tools (namespaces, iptables, mount) need root. Without it
//! they fail loudly; `QUORUMKMS_PRIVILEGED_TESTS=0` makes the tests that
//! need them return early instead, saying so, for environments that cannot
//! grant it.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ed25519_dalek::Signer;
use quorumkms::privval::{Proposal, Version, Vote};
use quorumkms::testnet::CHAIN_ID;
use quorumkms::validator::{
    Checker, MockValidator, SignOutcome, SignerListener, ValidatorTiming, consensus,
};
use tokio::time::Instant;

pub mod browser;
pub mod cluster;
pub mod metrics;
pub mod net;
pub mod signing;
#[path = "../../support/timing.rs"]
mod timing;
pub use cluster::{Cluster, ClusterBuilder};
pub use quorumkms::testnet::cluster::tail;
pub use timing::fast_timing;

/// The consensus key every node holds.
pub const SEED: [u8; 32] = [42; 32];
/// The protocol every validator speaks.
pub const VERSION: Version = Version::V0_38;

/// Waits until no other cluster of this test binary runs, and holds that
/// until dropped: each cluster starts several processes on a small machine.
pub fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one scenario on a fresh runtime (its [`Cluster`] waits for any
/// other to finish: see [`one_cluster_at_a_time`]).
pub fn run<F: std::future::Future<Output = ()>>(scenario: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(scenario);
}

/// False when the environment declared it cannot run privileged tests
/// (`QUORUMKMS_PRIVILEGED_TESTS=0`); the caller then returns early.
pub fn privileged_allowed(test: &str) -> bool {
    if std::env::var("QUORUMKMS_PRIVILEGED_TESTS").as_deref() == Ok("0") {
        eprintln!(
            "!!! {test}: NOT RUN: QUORUMKMS_PRIVILEGED_TESTS=0 (needs root for namespaces, iptables or mount)"
        );
        return false;
    }
    true
}

/// The binary under test.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quorumkms"))
}

/// The consensus public key.
pub fn public_key() -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .verifying_key()
        .to_bytes()
}

/// The signature every node must give for `sign_bytes` (ed25519 is
/// deterministic).
pub fn expected_signature(sign_bytes: &[u8]) -> Vec<u8> {
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .sign(sign_bytes)
        .to_bytes()
        .to_vec()
}

/// For a validator whose requests are expected to fail: gives up quickly.
pub fn short_timing() -> ValidatorTiming {
    ValidatorTiming {
        accept_timeout: Duration::from_millis(1500),
        retries: 2,
        ..fast_timing()
    }
}

/// A validator listening on `host` (port chosen by the kernel), recording
/// into `checker`. Returns it with the address signers dial.
pub async fn validator(
    host: &str,
    checker: &Checker,
    timing: ValidatorTiming,
) -> (MockValidator, String) {
    let listen = SignerListener::tcp(&format!("{host}:0"))
        .await
        .expect("bind validator");
    let addr = listen.signer_addr();
    let v = MockValidator::new(
        listen,
        CHAIN_ID,
        VERSION,
        public_key(),
        timing,
        checker.clone(),
    );
    (v, addr)
}

fn address() -> Vec<u8> {
    consensus::address(&public_key())
}

/// A prevote for block `variant` at `height`, round 0.
pub fn prevote(height: i64, variant: u8) -> Vote {
    let block = consensus::block_id(height, variant);
    consensus::vote(VERSION, false, height, 0, Some(block), &address(), 10)
}

/// A precommit for block `variant` at `height`, round 0.
pub fn precommit(height: i64, variant: u8) -> Vote {
    let block = consensus::block_id(height, variant);
    consensus::vote(VERSION, true, height, 0, Some(block), &address(), 20)
}

/// A proposal of block `variant` at `height`, round 0.
pub fn proposal(height: i64, variant: u8) -> Proposal {
    consensus::proposal(height, 0, consensus::block_id(height, variant), 0)
}

/// The signature of a signed outcome; panics with `what` otherwise.
pub fn signature(outcome: &SignOutcome, what: &str) -> Vec<u8> {
    match outcome {
        SignOutcome::Signed { signature, .. } => signature.clone(),
        other => panic!("{what}: expected a signature, got {other:?}"),
    }
}

/// Asserts that the checker saw no conflicting or invalid signature.
pub fn assert_no_conflicts(checker: &Checker) {
    let report = checker.report();
    assert_eq!(
        (report.conflicts, report.invalid),
        (0, 0),
        "conflicting or invalid signatures: {report:?} at {:?}",
        checker.conflicting_positions()
    );
}

/// Retries `f` until it succeeds or `within` passes; returns the last
/// result.
pub async fn retry<T, E, F, Fut>(within: Duration, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
