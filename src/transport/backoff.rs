//! Reconnect delays: capped exponential backoff with bounded jitter.
//!
//! A pure iterator of delays. It never sleeps; the dial loop that owns it
//! does. The random source is injected so tests are reproducible.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Capped exponential backoff with jitter.
///
/// Each call to [`Iterator::next`] yields the next delay: the base delay
/// starts at `initial`, doubles after each yield and stops growing at
/// `max`; the yielded delay is the base scaled by a random factor in
/// `[1 - jitter, 1 + jitter]`, and never exceeds `max`. The iterator never
/// ends. Call [`Backoff::reset`] after a successful connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    current: Duration,
    rng: StdRng,
}

impl Backoff {
    /// Default first delay.
    pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);
    /// Default cap.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(5);
    /// Default jitter fraction (plus or minus 20%).
    pub const DEFAULT_JITTER: f64 = 0.2;

    /// A backoff from `initial` to `max` with the default jitter, seeded
    /// from the operating system.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self::with_rng(initial, max, StdRng::from_entropy())
    }

    /// A backoff with a fixed seed (reproducible delays, for tests and
    /// simulation).
    pub fn with_seed(initial: Duration, max: Duration, seed: u64) -> Self {
        Self::with_rng(initial, max, StdRng::seed_from_u64(seed))
    }

    /// A backoff drawing its jitter from `rng`.
    ///
    /// `max` below `initial` is raised to `initial`.
    pub fn with_rng(initial: Duration, max: Duration, rng: StdRng) -> Self {
        let max = max.max(initial);
        Self {
            initial,
            max,
            jitter: Self::DEFAULT_JITTER,
            current: initial,
            rng,
        }
    }

    /// Sets the jitter fraction, clamped to `[0, 1]`.
    #[must_use]
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The first delay.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The cap on every delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Starts again from the initial delay (call after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::DEFAULT_INITIAL, Self::DEFAULT_MAX)
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.current;
        let factor = if self.jitter > 0.0 {
            1.0 + self.rng.gen_range(-self.jitter..=self.jitter)
        } else {
            1.0
        };
        let delay = base.mul_f64(factor).min(self.max);
        self.current = base.saturating_mul(2).min(self.max);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_delays() {
        let a: Vec<_> = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(5), 7)
            .take(20)
            .collect();
        let b: Vec<_> = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(5), 7)
            .take(20)
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn no_jitter_doubles_then_caps() {
        let delays: Vec<_> =
            Backoff::with_seed(Duration::from_millis(100), Duration::from_millis(1000), 1)
                .jitter(0.0)
                .take(6)
                .map(|d| d.as_millis())
                .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }
}
