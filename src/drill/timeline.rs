//! What the canary validators saw, and the figures a drill reports from
//! it. Pure: times are offsets from the drill's start, so the analysis is
//! tested without a clock.

use std::collections::BTreeMap;
use std::time::Duration;

/// One sign request as a canary sentry finished it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryRequest {
    /// Height asked for.
    pub height: i64,
    /// Step name (`proposal`, `prevote`, `precommit`, or a double-sign
    /// attempt, which is not expected to be signed).
    pub step: &'static str,
    /// When the answer (or the final failure) arrived, since the start.
    pub at: Duration,
    /// Whether a valid signature came back.
    pub signed: bool,
    /// Whether this was a deliberate double-sign attempt.
    pub double_sign: bool,
}

/// Figures over one window of the timeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Longest time without any signature, counted from the last
    /// signature before the window to the first one after it ends (or the
    /// window's end).
    pub longest_gap: Duration,
    /// Honest (height, step) positions asked for in the window.
    pub requested: usize,
    /// Of those, the ones no sentry got a signature for.
    pub missed: usize,
    /// Double-sign attempts in the window that were signed (must be 0;
    /// the checker also counts them as conflicts).
    pub double_signs_signed: usize,
    /// Double-sign attempts refused or failed.
    pub double_signs_refused: usize,
}

/// Analyses the attempts finished in `[from, to)`.
pub fn window(attempts: &[CanaryRequest], from: Duration, to: Duration) -> Window {
    let mut out = Window::default();
    let mut positions: BTreeMap<(i64, &str), bool> = BTreeMap::new();
    for a in attempts.iter().filter(|a| a.at >= from && a.at < to) {
        if a.double_sign {
            if a.signed {
                out.double_signs_signed += 1;
            } else {
                out.double_signs_refused += 1;
            }
            continue;
        }
        *positions.entry((a.height, a.step)).or_default() |= a.signed;
    }
    out.requested = positions.len();
    out.missed = positions.values().filter(|signed| !**signed).count();
    out.longest_gap = longest_gap(attempts, from, to);
    out
}

/// The longest stretch without a signature that overlaps `[from, to)`.
fn longest_gap(attempts: &[CanaryRequest], from: Duration, to: Duration) -> Duration {
    let mut times: Vec<Duration> = attempts
        .iter()
        .filter(|a| a.signed && !a.double_sign)
        .map(|a| a.at)
        .collect();
    times.sort();
    let before = times.iter().rev().find(|t| **t < from).copied();
    let mut last = before.unwrap_or(from);
    let mut longest = Duration::ZERO;
    for t in times.iter().copied().filter(|t| *t >= from) {
        longest = longest.max(t - last);
        last = t;
        if t >= to {
            return longest;
        }
    }
    longest.max(to.saturating_sub(last))
}

/// The first honest signature at or after `since`, if any.
pub fn first_signature_after(attempts: &[CanaryRequest], since: Duration) -> Option<Duration> {
    attempts
        .iter()
        .filter(|a| a.signed && !a.double_sign && a.at >= since)
        .map(|a| a.at)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn signed(height: i64, step: &'static str, at: u64) -> CanaryRequest {
        CanaryRequest {
            height,
            step,
            at: ms(at),
            signed: true,
            double_sign: false,
        }
    }

    fn failed(height: i64, step: &'static str, at: u64) -> CanaryRequest {
        CanaryRequest {
            signed: false,
            ..signed(height, step, at)
        }
    }

    #[test]
    fn gap_spans_the_fault_and_counts_the_signature_before_it() {
        let attempts = vec![
            signed(1, "prevote", 100),
            signed(1, "precommit", 200),
            failed(2, "prevote", 900),
            signed(2, "precommit", 1_700),
            signed(3, "prevote", 1_800),
        ];
        let w = window(&attempts, ms(500), ms(2_000));
        assert_eq!(w.longest_gap, ms(1_500));
        assert_eq!(w.requested, 3);
        assert_eq!(w.missed, 1);
    }

    #[test]
    fn no_signature_at_all_is_a_gap_to_the_window_end() {
        let attempts = vec![signed(1, "prevote", 100), failed(2, "prevote", 600)];
        let w = window(&attempts, ms(500), ms(3_000));
        assert_eq!(w.longest_gap, ms(2_900));
        assert_eq!(w.missed, 1);
    }

    #[test]
    fn a_position_signed_by_any_sentry_is_not_missed() {
        let attempts = vec![failed(5, "prevote", 100), signed(5, "prevote", 150)];
        assert_eq!(window(&attempts, ms(0), ms(1_000)).missed, 0);
    }

    #[test]
    fn double_sign_attempts_are_counted_apart() {
        let mut refused = failed(4, "double-sign attempt", 300);
        refused.double_sign = true;
        let mut leaked = signed(6, "double-sign attempt", 400);
        leaked.double_sign = true;
        let attempts = vec![signed(4, "prevote", 200), refused, leaked];
        let w = window(&attempts, ms(0), ms(1_000));
        assert_eq!(w.requested, 1);
        assert_eq!(w.double_signs_refused, 1);
        assert_eq!(w.double_signs_signed, 1);
        // A signed double-sign attempt does not close a gap.
        assert_eq!(w.longest_gap, ms(800));
    }

    #[test]
    fn first_signature_after_a_time() {
        let attempts = vec![signed(1, "prevote", 100), signed(2, "prevote", 700)];
        assert_eq!(first_signature_after(&attempts, ms(200)), Some(ms(700)));
        assert_eq!(first_signature_after(&attempts, ms(800)), None);
    }
}
