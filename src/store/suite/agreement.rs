//! The cases of the agreement test (`inspect.rs`, run on both backends):
//! rows set up in every combination the lazy transitions tell apart, and
//! what [`effective`] says of them. The backends' SQL (a claim's
//! `promote_due`, the due summary of `stats`, `peek`) must agree. The
//! model test (`model.rs`) counts with [`tally`] too.

use crate::store::rules::effective;
use crate::store::types::State;
use crate::store::views::Counts;

/// The queue's `max_attempts` in these cases.
pub const MAX_ATTEMPTS: u32 = 2;

/// Leased rows: (lease ends this many ms from now, attempts). Negative:
/// expired. Far from now, so the time a test takes does not matter.
pub const LEASED: [(i64, i64); 6] = [
    (-60_000, 0),
    (-60_000, 1),
    (-60_000, 2),
    (-60_000, 3),
    (600_000, 2),
    (600_000, 1),
];

/// Delayed rows: due this many ms from now.
pub const DELAYED: [i64; 2] = [-60_000, 600_000];

/// Every row above comes once with each of these TTLs: the message expires
/// this many ms from now (passed when negative), or never.
pub const EXPIRES: [Option<i64>; 3] = [None, Some(-30_000), Some(600_000)];

/// What a row stored in `state` with these times reads as at `now`.
pub fn expected(
    state: State,
    visible_at: i64,
    attempts: i64,
    expires_at: Option<i64>,
    now: i64,
) -> State {
    effective(
        state,
        visible_at,
        attempts,
        i64::from(MAX_ATTEMPTS),
        expires_at,
        now,
    )
    .0
}

/// The counts `stats` must show for rows in these states.
pub fn tally(states: &[State]) -> Counts {
    let mut c = Counts::default();
    for s in states {
        match s {
            State::Ready => c.ready += 1,
            State::Delayed | State::Held => c.delayed += 1,
            State::Leased => c.leased += 1,
            State::Acked => c.acked += 1,
            State::Dead => c.dead += 1,
        }
    }
    c
}
