//! Validator timing shared by the in-process and the real-process test
//! harnesses.

use quorumkms::validator::ValidatorTiming;
use std::time::Duration;

/// CometBFT's behaviour, shorter waits.
pub fn fast_timing() -> ValidatorTiming {
    ValidatorTiming {
        io_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_millis(500),
        retry_interval: Duration::from_millis(100),
        retries: 50,
        accept_timeout: Duration::from_secs(15),
    }
}
