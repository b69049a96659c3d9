//! The store's clock as tests move it. A test calls [`advance`] instead of
//! sleeping until a lease or a delay runs out, or faking its end in the
//! rows: every time the store reads afterwards, on this thread, is that much
//! later. SQLite's transactions and readers take their time from
//! [`crate::store::now_ms`], which adds the offset; PostgreSQL's from the
//! server's `clock_timestamp()`, through the `NOW_MS` fragment, which adds
//! it to the SQL (see [`Shifted`]).
//!
//! The offset is per thread, and the test harness runs each test on a
//! thread of its own, so tests running in parallel do not move each other's
//! clocks; a thread a test spawns starts at the real time (give it the
//! offset with [`set_offset_ms`] if it must share the test's time). Only
//! built for tests (`cfg(test)` or the `test-hooks` feature): a release
//! build reads the real clock and writes the SQL as it is.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

thread_local! {
    static OFFSET_MS: Cell<i64> = const { Cell::new(0) };
}

/// Moves this thread's store clock forward by `by`.
pub fn advance(by: Duration) {
    let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    OFFSET_MS.with(|o| o.set(o.get().saturating_add(by)));
}

/// How far this thread's store clock is ahead of the real one, in ms.
pub fn offset_ms() -> i64 {
    OFFSET_MS.with(Cell::get)
}

/// Sets this thread's offset: 0 puts the clock back to the real time.
pub fn set_offset_ms(ms: i64) {
    OFFSET_MS.with(|o| o.set(ms));
}

/// `ms` (a real time) as this thread's store clock reads it.
pub(crate) fn shift(ms: i64) -> i64 {
    ms.saturating_add(offset_ms())
}

/// An SQL expression for the time in ms, written with this thread's offset
/// added when it is not zero (`(expr + offset)`), and as it is otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Shifted(pub &'static str);

impl fmt::Display for Shifted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match offset_ms() {
            0 => f.write_str(self.0),
            offset => write!(f, "({} + {offset})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_moves_now_and_the_sql_of_this_thread_only() {
        set_offset_ms(0);
        let sql = Shifted("now_ms()");
        assert_eq!(sql.to_string(), "now_ms()");
        let before = crate::store::now_ms();
        advance(Duration::from_secs(60));
        assert!(crate::store::now_ms() >= before + 60_000);
        assert_eq!(sql.to_string(), "(now_ms() + 60000)");
        let other = std::thread::spawn(move || (offset_ms(), sql.to_string()));
        assert_eq!(
            other.join().expect("thread"),
            (0, "now_ms()".to_owned()),
            "a new thread starts at the real time"
        );
        set_offset_ms(0);
        assert!(crate::store::now_ms() < before + 60_000);
    }
}
