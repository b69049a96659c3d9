//! A fair busy handler: how a connection waits for another process's lock.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `--busy-timeout` in ms, for every connection of this process.
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(10_000);

thread_local! {
    /// When the current wait began (the handler is told only the attempt number).
    static WAIT_START: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Sets how long [`wait`] keeps trying before it reports busy.
pub(crate) fn set_timeout(timeout: Duration) {
    TIMEOUT_MS.store(timeout.as_millis() as u64, Ordering::Relaxed);
}

/// The busy timeout in force, for the message of [`crate::store::Error::Busy`].
pub(crate) fn timeout() -> Duration {
    Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed))
}

/// SQLite calls this while a lock is held elsewhere; `attempt` counts the calls
/// for this one lock request. Sleeps a random 50–100% of a step that grows by
/// 0.25 ms per attempt up to 4 ms, and gives up (busy) past the timeout.
pub(crate) fn wait(attempt: i32) -> bool {
    let now = Instant::now();
    let start = WAIT_START.with(|s| {
        if attempt == 0 || s.get().is_none() {
            s.set(Some(now));
        }
        s.get().unwrap_or(now)
    });
    let timeout = Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed));
    let waited = now.duration_since(start);
    if waited >= timeout {
        WAIT_START.with(|s| s.set(None));
        return false;
    }
    let step_us = (250 * (attempt as u64 + 1)).min(4_000);
    let sleep = Duration::from_micros(step_us / 2 + jitter(step_us / 2));
    std::thread::sleep(sleep.min(timeout - waited));
    true
}

/// A random number in `0..=max` from the standard library's hasher seeds.
fn jitter(max: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(Instant::now());
    if max == 0 { 0 } else { bits % (max + 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_in_short_steps_and_gives_up_after_the_timeout() {
        set_timeout(Duration::from_millis(60));
        let start = Instant::now();
        let mut attempt = 0;
        while wait(attempt) {
            attempt += 1;
            assert!(attempt < 10_000, "the handler never gave up");
        }
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(60), "{waited:?}");
        assert!(
            attempt >= 10,
            "steps should be short: only {attempt} in {waited:?}"
        );
        assert!(wait(0), "a new wait starts a new clock");
        set_timeout(Duration::from_secs(10));
    }
}
