//! The rules of a queue, as pure functions: no SQL, no connection, the same
//! for both backends and tested once here. Each backend reads the rows these
//! rules judge and writes what they decide.
//!
//! Where a rule must run inside a statement for speed (the lazy transitions
//! of a claim, the due-row summaries of `stats`), the SQL names the function
//! here that it implements, and a test in the backend checks that the two
//! agree.

use std::time::Duration;

use super::receipt::random_unit;
use super::types::{ReplayFilter, State};

/// The longest backoff `nack --backoff` and `work` wait.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The backoff after failed attempt number `attempt`: `retry_delay ×
/// 2^(attempt−1)`, ±20% jitter, capped at one hour.
pub fn backoff(retry_delay: Duration, attempt: i64) -> Duration {
    backoff_with(retry_delay, attempt, random_unit())
}

/// [`backoff`] with the jitter drawn by the caller: `unit` in [0, 1) gives
/// a factor from 0.8 to 1.2.
fn backoff_with(retry_delay: Duration, attempt: i64, unit: f64) -> Duration {
    let exponent = attempt.clamp(1, 40) as u32 - 1;
    let base = retry_delay
        .checked_mul(1u32 << exponent.min(31))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    let jitter = 0.8 + 0.4 * unit;
    base.mul_f64(jitter).min(MAX_BACKOFF)
}

/// True when a finished message (acked or dead at `done_at`) matches a
/// replay filter: its state is asked for and `done_at` is in `since..until`.
pub(crate) fn replay_wants(filter: &ReplayFilter, state: State, done_at: i64) -> bool {
    let state_ok = match state {
        State::Acked => filter.acked,
        State::Dead => filter.dead,
        _ => false,
    };
    state_ok
        && filter.since.is_none_or(|t| done_at >= t)
        && filter.until.is_none_or(|t| done_at < t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps_at_an_hour() {
        let base = Duration::from_secs(1);
        for attempt in 1..=5 {
            let d = backoff(base, attempt);
            let expected = base.as_secs_f64() * 2f64.powi(attempt as i32 - 1);
            assert!(d.as_secs_f64() >= expected * 0.8 - 1e-9, "{attempt}: {d:?}");
            assert!(d.as_secs_f64() <= expected * 1.2 + 1e-9, "{attempt}: {d:?}");
        }
        assert!(backoff(base, 100) <= Duration::from_secs(3600));
        assert_eq!(backoff_with(base, 3, 0.0), Duration::from_millis(3200));
        assert_eq!(
            backoff_with(base, 0, 0.5),
            base,
            "attempt 0 counts as the first"
        );
        assert_eq!(
            backoff_with(Duration::from_secs(1000), 3, 0.99),
            MAX_BACKOFF
        );
    }
}
