//! The drill's canary: simulated validator sentries of the canary chain,
//! one per plan address, asking for a proposal, votes and now and then a
//! conflicting vote at every height, as CometBFT would. Every answer goes
//! into the [`CanaryRequest`] timeline and every signature into a [`Checker`].
//!
//! All sentries ask for the same heights on one clock, as the sentries of
//! one validator do; a sentry that fell behind skips to the current one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::plan;
use super::timeline::CanaryRequest;
use crate::validator::{
    Checker, DOUBLE_SIGN_STEP, MockValidator, SignOutcome, SignerListener, ValidatorTiming,
    consensus, produce_height,
};

/// What the sentries share.
struct Seen {
    config: plan::CanaryPlan,
    public_key: crate::keys::PublicKey,
    started: Instant,
    first_height: i64,
    attempts: Mutex<Vec<CanaryRequest>>,
    // The SecretConnection id of the signer that signed last.
    last_signer: Mutex<Option<String>>,
}

impl Seen {
    /// The height due now.
    fn height_now(&self) -> i64 {
        let ticks = self.started.elapsed().as_nanos() / self.config.block_time.as_nanos().max(1);
        self.first_height + i64::try_from(ticks).unwrap_or(i64::MAX / 2)
    }

    /// Waits for the first height after `last` and returns it.
    async fn next_height(&self, last: i64) -> i64 {
        loop {
            let now = self.height_now();
            if now > last {
                return now;
            }
            let ticks = u32::try_from(last + 1 - self.first_height).unwrap_or(u32::MAX);
            tokio::time::sleep_until(self.started + self.config.block_time * ticks).await;
        }
    }
}

/// Running canary sentries.
pub struct Canary {
    shared: Arc<Seen>,
    checker: Checker,
    sentries: Vec<Option<JoinHandle<()>>>,
}

impl Canary {
    /// Binds every sentry address, waits (up to `within`) for a signer to
    /// announce the canary key, and starts asking from `first_height`.
    ///
    /// # Errors
    ///
    /// An address that cannot be bound, or no signer within `within`.
    pub async fn start(
        config: &plan::CanaryPlan,
        first_height: i64,
        within: Duration,
    ) -> Result<Canary, String> {
        let checker = Checker::new();
        let mut validators = Vec::new();
        for addr in &config.sentries {
            validators.push(sentry(config, SignerListener::bind(addr).await?, &checker));
        }
        let deadline = Instant::now() + within;
        let public_key = loop {
            match validators[0].pub_key().await {
                Ok(key) => break key,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "no signer answered the canary at {} within {within:?} ({e}): every signer \
                         needs a [[chain]] {:?} with a key and a [[validator]] for it with this address",
                        config.sentries[0], config.chain_id
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let shared = Arc::new(Seen {
            config: config.clone(),
            public_key,
            started: Instant::now(),
            first_height,
            attempts: Mutex::new(Vec::new()),
            last_signer: Mutex::new(None),
        });
        let sentries = validators
            .into_iter()
            .map(|mut v| {
                v.set_public_key(public_key);
                Some(tokio::spawn(ask(v, shared.clone())))
            })
            .collect();
        Ok(Canary {
            shared,
            checker,
            sentries,
        })
    }

    /// Time since the canary started; attempts are stamped with it.
    pub fn now(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Every attempt so far.
    pub fn attempts(&self) -> Vec<CanaryRequest> {
        lock(&self.shared.attempts).clone()
    }

    /// The signature log.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// The key the signers announced.
    pub fn public_key(&self) -> crate::keys::PublicKey {
        self.shared.public_key
    }

    /// The SecretConnection id of the signer that signed last.
    pub fn last_signer(&self) -> Option<String> {
        lock(&self.shared.last_signer).clone()
    }

    /// Number of sentries.
    pub fn len(&self) -> usize {
        self.sentries.len()
    }

    /// Whether there are no sentries.
    pub fn is_empty(&self) -> bool {
        self.sentries.is_empty()
    }

    /// Takes sentry `i` down: its listener and connections close.
    pub fn stop_sentry(&mut self, i: usize) {
        if let Some(task) = self.sentries[i].take() {
            task.abort();
        }
    }

    /// Brings sentry `i` back on its address.
    ///
    /// # Errors
    ///
    /// The address cannot be bound again.
    pub async fn start_sentry(&mut self, i: usize) -> Result<(), String> {
        let addr = &self.shared.config.sentries[i];
        // The aborted task releases its listener once it has been dropped.
        let mut listen = Err(String::new());
        for _ in 0..50 {
            listen = SignerListener::bind(addr).await;
            if listen.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut v = sentry(&self.shared.config, listen?, &self.checker);
        v.set_public_key(self.shared.public_key);
        self.sentries[i] = Some(tokio::spawn(ask(v, self.shared.clone())));
        Ok(())
    }

    /// Stops every sentry.
    pub fn stop(&mut self) {
        for i in 0..self.sentries.len() {
            self.stop_sentry(i);
        }
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sentry(config: &plan::CanaryPlan, listen: SignerListener, checker: &Checker) -> MockValidator {
    let timing = ValidatorTiming {
        accept_timeout: config.block_time.max(Duration::from_secs(1)),
        ..ValidatorTiming::default()
    };
    MockValidator::new(
        listen,
        &config.chain_id,
        config.protocol,
        [0; 32],
        timing,
        checker.clone(),
    )
}

fn record(shared: &Seen, height: i64, at: Duration, results: &[(&'static str, SignOutcome)]) {
    let mut attempts = lock(&shared.attempts);
    for (step, outcome) in results {
        if let SignOutcome::Signed { via, .. } = outcome {
            *lock(&shared.last_signer) = Some(via.clone());
        }
        attempts.push(CanaryRequest {
            height,
            step,
            at,
            signed: matches!(outcome, SignOutcome::Signed { .. }),
            double_sign: *step == DOUBLE_SIGN_STEP,
        });
    }
}

/// One sentry's loop: every height, the validator's requests.
async fn ask(mut validator: MockValidator, shared: Arc<Seen>) {
    let address = consensus::address(&shared.public_key);
    let every = shared.config.double_sign_every;
    let mut last = shared.first_height - 1;
    loop {
        let height = shared.next_height(last).await;
        let double_sign = every > 0 && height % every == 0;
        let results = produce_height(
            &mut validator,
            shared.config.protocol,
            &address,
            height,
            double_sign,
        )
        .await;
        let at = shared.started.elapsed();
        record(&shared, height, at, &results);
        validator.keep_alive().await;
        last = height;
    }
}
