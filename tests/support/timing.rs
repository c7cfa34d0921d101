//! Validator timing shared by the in-process and the real-process test
//! harnesses.

use std::time::Duration;

use quorumkms::demo::validator::Timing;

/// CometBFT's behaviour, shorter waits.
pub fn fast_timing() -> Timing {
    Timing {
        io_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_millis(500),
        retry_interval: Duration::from_millis(100),
        retries: 50,
        accept_timeout: Duration::from_secs(15),
    }
}
