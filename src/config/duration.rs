//! Durations as the command line and the drill plan write them.

use std::time::Duration;

/// A duration that [`parse_duration`] cannot read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number with an optional `ms` or `s` suffix.
    #[error("invalid duration {0:?}")]
    Invalid(String),
    /// Negative, or longer than a day.
    #[error("duration {0:?} is out of range")]
    OutOfRange(String),
}

/// Parses `300ms`, `2s`, `1.5s` or a plain number of seconds.
///
/// # Errors
///
/// Anything else, or a duration outside zero to one day.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(secs) = s.strip_suffix('s') {
        (secs, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| DurationError::Invalid(s.to_string()))?;
    if !(0.0..=86_400.0).contains(&value) {
        return Err(DurationError::OutOfRange(s.to_string()));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_milliseconds_seconds_and_plain_numbers() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration(" 1.5s "), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(
            parse_duration("soon"),
            Err(DurationError::Invalid("soon".into()))
        );
        assert_eq!(
            parse_duration("-1s"),
            Err(DurationError::OutOfRange("-1s".into()))
        );
    }
}
