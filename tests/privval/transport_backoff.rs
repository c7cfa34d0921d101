//! `Backoff` properties: capped, growing, jitter bounded, reset, and
//! reproducible from a seed.

use std::time::Duration;

use proptest::prelude::*;
use quorumkms::transport::Backoff;

#[test]
fn default_starts_near_100ms_and_caps_at_5s() {
    let delays: Vec<_> = Backoff::default().take(30).collect();
    let first = delays[0];
    assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(5)));
    assert!(delays[29] >= Duration::from_secs(4), "{:?}", delays[29]);
}

#[test]
fn reset_starts_over() {
    let mut b =
        Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(5), 3).jitter(0.0);
    let _ = b.by_ref().take(10).count();
    assert_eq!(b.next(), Some(Duration::from_secs(5)));
    b.reset();
    assert_eq!(b.next(), Some(Duration::from_millis(100)));
    assert_eq!(b.next(), Some(Duration::from_millis(200)));
}

proptest! {
    #[test]
    fn delays_are_capped_and_jitter_bounded(
        seed in any::<u64>(),
        initial_ms in 1u64..2_000,
        max_ms in 1u64..20_000,
        jitter in 0.0f64..0.5,
    ) {
        let initial = Duration::from_millis(initial_ms);
        let max = Duration::from_millis(max_ms).max(initial);
        let mut base = initial;
        for delay in Backoff::with_seed(initial, max, seed).jitter(jitter).take(40) {
            prop_assert!(delay <= max, "{delay:?} > cap {max:?}");
            let low = base.mul_f64(1.0 - jitter).min(max);
            let high = base.mul_f64(1.0 + jitter).min(max);
            // One nanosecond of slack for float rounding.
            prop_assert!(delay + Duration::from_nanos(1) >= low, "{delay:?} < {low:?}");
            prop_assert!(delay <= high + Duration::from_nanos(1), "{delay:?} > {high:?}");
            base = (base * 2).min(max);
        }
    }

    #[test]
    fn delays_grow_until_the_cap(seed in any::<u64>()) {
        // With 20% jitter, the delay two steps later is always larger
        // (x4 base vs. at most 1.2/0.8 = x1.5 spread) until the cap.
        let max = Duration::from_secs(5);
        let delays: Vec<_> = Backoff::with_seed(Duration::from_millis(100), max, seed).take(12).collect();
        for w in delays.windows(3) {
            if w[2] < max.mul_f64(0.8) {
                prop_assert!(w[2] > w[0], "{:?} !> {:?}", w[2], w[0]);
            }
        }
        prop_assert!(delays[11] >= max.mul_f64(0.8));
    }

    #[test]
    fn same_seed_same_delays(seed in any::<u64>()) {
        let a: Vec<_> = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(5), seed).take(16).collect();
        let b: Vec<_> = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(5), seed).take(16).collect();
        prop_assert_eq!(a, b);
    }
}
