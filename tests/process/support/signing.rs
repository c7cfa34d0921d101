//! A validator signing heights in the background while a test changes the
//! cluster under it (membership, TLS, metrics), and the count of what it
//! got.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quorumkms::testnet::CHAIN_ID;
use quorumkms::validator::{
    Checker, MockValidator, SignOutcome, SignerListener, ValidatorTiming, consensus,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cluster::{Cluster, ClusterBuilder};
use super::{VERSION, public_key};

/// How long the cluster may take to form.
const FORM_WITHIN: Duration = Duration::from_secs(20);

/// Signing results of the background validator.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub heights: i64,
    pub signed: u64,
    pub refused: u64,
    pub failed: u64,
}

/// The validator every node of a [`start_cluster`] cluster dials, until it
/// starts signing.
pub struct BackgroundValidator {
    listen: SignerListener,
}

/// Builds `builder`'s cluster with every node dialling one validator on
/// the validator host, starts it, and returns it with that validator (not
/// signing yet: see [`BackgroundValidator::start_signing`]).
pub async fn start_cluster(builder: ClusterBuilder) -> (Cluster, BackgroundValidator) {
    let mut cluster = builder.build();
    let listen = SignerListener::tcp(&format!("{}:0", cluster.validator_host()))
        .await
        .expect("bind validator");
    let addr = listen.signer_addr();
    cluster.write(&|_| vec![addr.clone()]);
    cluster.start(FORM_WITHIN).await;
    (cluster, BackgroundValidator { listen })
}

impl BackgroundValidator {
    /// Starts signing heights in the background: a proposal, a prevote and
    /// a precommit each, and at every fifth height a conflicting prevote
    /// the cluster must refuse.
    pub fn start_signing(self) -> Signing {
        let checker = Checker::new();
        let timing = ValidatorTiming {
            io_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_millis(500),
            retry_interval: Duration::from_millis(100),
            retries: 50,
            accept_timeout: Duration::from_secs(15),
        };
        let public_key = public_key();
        let mut validator = MockValidator::new(
            self.listen,
            CHAIN_ID,
            VERSION,
            public_key,
            timing,
            checker.clone(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let address = consensus::address(&public_key);
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut height = 0;
            while !flag.load(Ordering::SeqCst) {
                height += 1;
                let block = consensus::block_id(height, 0);
                let proposal = consensus::proposal(height, 0, block.clone(), 0);
                let prevote =
                    consensus::vote(VERSION, false, height, 0, Some(block.clone()), &address, 10);
                let precommit =
                    consensus::vote(VERSION, true, height, 0, Some(block), &address, 20);
                let mut outcomes = vec![
                    validator.sign_proposal(proposal).await,
                    validator.sign_vote(prevote).await,
                ];
                if height % 5 == 0 {
                    // A conflicting prevote: the cluster must refuse it.
                    let other = Some(consensus::block_id(height, 1));
                    let conflicting =
                        consensus::vote(VERSION, false, height, 0, other, &address, 10);
                    match validator.sign_vote(conflicting).await {
                        SignOutcome::Refused(_) => tally.refused += 1,
                        SignOutcome::Signed { .. } => panic!("a conflicting prevote was signed"),
                        SignOutcome::Failed(_) => tally.failed += 1,
                    }
                }
                outcomes.push(validator.sign_vote(precommit).await);
                for outcome in outcomes {
                    match outcome {
                        SignOutcome::Signed { .. } => tally.signed += 1,
                        _ => tally.failed += 1,
                    }
                }
                tally.heights = height;
                validator.keep_alive().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tally
        });
        Signing {
            stop,
            task,
            checker,
        }
    }
}

/// A validator signing heights in the background until stopped.
pub struct Signing {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Tally>,
    pub checker: Checker,
}

impl Signing {
    /// Stops after the current height and returns the tally.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("signing task")
    }

    /// Signatures verified so far.
    pub fn released(&self) -> usize {
        self.checker.report().released
    }

    /// Waits until `more` signatures beyond now were released.
    pub async fn wait_more(&self, more: usize, within: Duration) {
        let target = self.released() + more;
        let deadline = Instant::now() + within;
        while self.released() < target {
            assert!(
                Instant::now() < deadline,
                "validator stalled at {} signatures",
                self.released()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
