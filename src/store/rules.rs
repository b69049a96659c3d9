//! The rules of a queue, as pure functions: no SQL, no connection, the same
//! for both backends and tested once here. Each backend reads the rows these
//! rules judge and writes what they decide.
//!
//! Where a rule must run inside a statement for speed (the lazy transitions
//! of a claim, the due-row summaries of `stats`), the SQL names the function
//! here that it implements, and a test in the backend checks that the two
//! agree.

use std::time::Duration;

use super::flow::{self, DeadReason};
use super::receipt::{Receipt, ReceiptError, Release, random_unit};
use super::types::{ReplayFilter, Settings, State, ms};

// ---------------------------------------------------------------------------
// What a message may carry
// ---------------------------------------------------------------------------

/// The longest key or group a message may carry, in bytes. PostgreSQL
/// indexes both (with the queue), and an index entry must fit in a third
/// of a page (2,704 bytes); SQLite would take more, but a database must be
/// able to move to PostgreSQL (`spool migrate`) and behave the same there.
pub const MAX_LABEL_BYTES: usize = 1024;

/// Why `value` cannot be a message's key or group, on either backend: too
/// long ([`MAX_LABEL_BYTES`]), or holding a NUL character, which
/// PostgreSQL's text cannot hold. `None` when it can.
pub fn label_problem(value: &str) -> Option<String> {
    if value.len() > MAX_LABEL_BYTES {
        Some(format!(
            "is {} bytes long; keys and groups may be at most {MAX_LABEL_BYTES} bytes",
            value.len()
        ))
    } else if value.contains('\0') {
        Some("holds a NUL character (\\u0000), which keys and groups may not".to_owned())
    } else {
        None
    }
}

/// `text` as a failure reason is stored (`last_error`): a NUL character,
/// which PostgreSQL's text cannot hold, becomes U+FFFD on both backends.
pub(crate) fn storable_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

// ---------------------------------------------------------------------------
// The state of a row at a time
// ---------------------------------------------------------------------------

/// True when a lease that ran out on attempt number `attempts` leaves its
/// message dead: the queue limits attempts (`max_attempts` > 0) and this was
/// the last one. The lazy transitions of a claim (`promote_due` on both
/// backends) and the due-row summaries of `stats` write this rule in SQL as
/// `state = 2 AND max > 0 AND attempts >= max`.
pub(crate) fn lease_dies(attempts: i64, max_attempts: i64) -> bool {
    max_attempts > 0 && attempts >= max_attempts
}

/// The state a row really is in at `now`, with the lazy transitions a claim
/// would apply first: a message past its TTL (`expires_at`) that is ready,
/// delayed or held is dead ([`expired_at`]); a due delayed message is
/// ready; an expired lease is dead when its message's TTL has passed or it
/// was the last allowed attempt ([`lease_dies`]), else ready. The flag is
/// true when a transition applied (the row as stored is out of date).
pub(crate) fn effective(
    state: State,
    visible_at: i64,
    attempts: i64,
    max_attempts: i64,
    expires_at: Option<i64>,
    now: i64,
) -> (State, bool) {
    if expired_at(state, visible_at, expires_at, now).is_some() {
        return (State::Dead, true);
    }
    match state {
        State::Delayed if visible_at <= now => (State::Ready, true),
        State::Leased if visible_at <= now && lease_dies(attempts, max_attempts) => {
            (State::Dead, true)
        }
        State::Leased if visible_at <= now => (State::Ready, true),
        other => (other, false),
    }
}

/// When a row that [`effective`] reads as dead of its TTL at `now` died:
/// a ready, delayed or held message when its TTL passed, a lease when it
/// ended (a lease that began before the TTL passed holds to its end).
/// `None`: it has not expired (or is finished already). The claims'
/// `promote_due` writes this rule in SQL as `state IN (0, 1, 5) AND
/// expires_at <= now` (`deliveries_expiring`) and `state = 2 AND
/// visible_at <= now AND expires_at <= now`.
pub(crate) fn expired_at(
    state: State,
    visible_at: i64,
    expires_at: Option<i64>,
    now: i64,
) -> Option<i64> {
    if !flow::expired(expires_at, now) {
        return None;
    }
    match state {
        State::Ready | State::Delayed | State::Held => expires_at,
        State::Leased if visible_at <= now => Some(visible_at),
        _ => None,
    }
}

/// The state a held message takes when the head of its group finished (or
/// died): ready, or delayed while the delay it was published with runs.
pub(crate) fn released_state(visible_at: i64, now: i64) -> State {
    if visible_at > now {
        State::Delayed
    } else {
        State::Ready
    }
}

// ---------------------------------------------------------------------------
// What a failure leads to
// ---------------------------------------------------------------------------

/// Where a delivery goes after a failed attempt (nack, or `work` retrying).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Dead (its group moves on): its last allowed attempt failed, or a
    /// consumer rejected it.
    Dead(DeadReason),
    /// Back in the queue: `Ready` now, or `Delayed` until `visible_at`.
    Back {
        /// `Ready` or `Delayed`.
        state: State,
        /// When it becomes deliverable (ms).
        visible_at: i64,
    },
}

/// What becomes of a delivery whose attempt number `attempts` failed at
/// `now`, released per `release`: rejected when the consumer says so; dead
/// as expired when its message's TTL (`expires_at`) has passed, also on the
/// last attempt; dead when the queue's attempts are used up
/// ([`lease_dies`]); else ready or delayed by the delay or the backoff.
pub(crate) fn after_failure(
    settings: &Settings,
    attempts: i64,
    release: Release,
    expires_at: Option<i64>,
    now: i64,
) -> AfterFailure {
    if release == Release::Dead {
        return AfterFailure::Dead(DeadReason::Rejected);
    }
    if flow::expired(expires_at, now) {
        return AfterFailure::Dead(DeadReason::Expired);
    }
    if lease_dies(attempts, i64::from(settings.max_attempts)) {
        return AfterFailure::Dead(DeadReason::MaxAttempts);
    }
    let delay = match release {
        Release::Now | Release::Dead => Duration::ZERO,
        Release::After(d) => d,
        Release::Backoff => backoff(settings.retry_delay, attempts),
    };
    let state = if delay.is_zero() {
        State::Ready
    } else {
        State::Delayed
    };
    AfterFailure::Back {
        state,
        visible_at: now.saturating_add(ms(delay)),
    }
}

// ---------------------------------------------------------------------------
// Backoff
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------

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

/// A finished message as a replay filter sees it at `now`: `Some((state,
/// done_at))` when it is acked (within retention) or dead, including an
/// expired lease on its last attempt (dead since its lease ended) and a
/// message past its TTL (`row`: `(state, visible_at, attempts, done_at,
/// expires_at)`, [`expired_at`]), and matches `filter` (for a dead one,
/// also its `dead_reason`: `reason` as stored, none meaning
/// `max_attempts`); `None` otherwise.
pub(crate) fn replay_candidate(
    filter: &ReplayFilter,
    settings: &Settings,
    row: (State, i64, i64, Option<i64>, Option<i64>),
    reason: Option<DeadReason>,
    now: i64,
) -> Option<(State, i64)> {
    let (state, visible_at, attempts, done_at, expires_at) = row;
    let max = i64::from(settings.max_attempts);
    let expired = expired_at(state, visible_at, expires_at, now);
    let reason = if expired.is_some() {
        Some(DeadReason::Expired)
    } else {
        reason
    };
    let (state, done_at) = match (state, expired) {
        (_, Some(at)) => (State::Dead, at),
        (State::Leased, _) if visible_at <= now && lease_dies(attempts, max) => {
            (State::Dead, visible_at)
        }
        (State::Acked | State::Dead, _) => (state, done_at.unwrap_or(0)),
        _ => return None,
    };
    let cutoff = now.saturating_sub(ms(settings.retention));
    if state == State::Acked && done_at <= cutoff {
        return None;
    }
    let reason_ok = match filter.dead_reason {
        Some(wanted) => state == State::Dead && reason.unwrap_or(DeadReason::MaxAttempts) == wanted,
        None => true,
    };
    (reason_ok && replay_wants(filter, state, done_at)).then_some((state, done_at))
}

// ---------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------

/// The delivery row a receipt names, as ack, nack, extend and release read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Its state as stored.
    pub state: State,
    /// Its lease token (`None` when never leased or replayed since).
    pub lease: Option<i64>,
    /// When its lease ends (or its delay does).
    pub visible_at: i64,
    /// Deliveries so far.
    pub attempts: i64,
    /// Its ordered group, if any.
    pub group: Option<String>,
    /// When its message expires (`None`: never).
    pub expires_at: Option<i64>,
}

/// A delivery whose lease holds, as the settle operations act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// Deliveries so far, this one included.
    pub attempts: i64,
    /// Its ordered group, if any.
    pub group: Option<String>,
    /// When its message expires (`None`: never).
    pub expires_at: Option<i64>,
}

/// What a receipt is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Its lease holds: the operation may act.
    Held(Held),
    /// Already finished with this receipt (acked, or gone): acking again is
    /// harmless, nack and extend are refused ([`Repeat`]).
    Done,
    /// Refused, for this reason.
    Refused(ReceiptError),
}

/// Judges receipt `r` against the row it names, at `now`: the lease holds
/// when the token matches and the lease has not run out; a matching token
/// on an acked row is a repeat; anything else has lost its lease.
pub(crate) fn judge_receipt(r: &Receipt, row: LeaseRow, now: i64) -> Judgement {
    let own = row.lease == Some(r.lease);
    match row.state {
        State::Leased if own && row.visible_at > now => Judgement::Held(Held {
            attempts: row.attempts,
            group: row.group,
            expires_at: row.expires_at,
        }),
        State::Acked if own => Judgement::Done,
        State::Dead => Judgement::Refused(ReceiptError::Dead),
        _ => Judgement::Refused(ReceiptError::LeaseEnded),
    }
}

/// Judges receipt `r` whose row is gone, given the highest message id ever
/// handed out: a message deleted on ack (retention 0), by retention or by
/// a purge is finished, so acking it again changes nothing; an id never
/// handed out is not a receipt spool issued.
pub(crate) fn judge_missing(r: &Receipt, last_message_id: i64) -> Judgement {
    if r.msg_id <= last_message_id {
        Judgement::Done
    } else {
        Judgement::Refused(ReceiptError::Unknown)
    }
}

/// What a receipt of a finished delivery means to a settle operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Acking again is harmless.
    Harmless,
    /// Nack and extend need a lease that holds: answering yes would tell
    /// the caller the message is back in the queue, or still theirs.
    Refused,
}

/// The answer for one receipt of a settle operation: `Ok(Some(()))` when
/// it acted, `Ok(None)` when the delivery was already finished.
pub(crate) fn settle_answer(
    outcome: Result<Option<()>, ReceiptError>,
    repeat: Repeat,
) -> Result<(), ReceiptError> {
    match outcome {
        Ok(Some(())) => Ok(()),
        Ok(None) if repeat == Repeat::Harmless => Ok(()),
        Ok(None) => Err(ReceiptError::Finished),
        Err(e) => Err(e),
    }
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

    const NOW: i64 = 1_000_000;

    fn settings(max_attempts: u32) -> Settings {
        Settings {
            max_attempts,
            retry_delay: Duration::from_secs(2),
            retention: Duration::from_secs(10),
            ..Settings::default()
        }
    }

    #[test]
    fn a_lease_dies_on_its_last_allowed_attempt_only() {
        assert!(!lease_dies(1, 0), "0: unlimited attempts");
        assert!(!lease_dies(100, 0));
        assert!(!lease_dies(2, 3));
        assert!(lease_dies(3, 3));
        assert!(lease_dies(4, 3), "attempts past the limit (it was lowered)");
    }

    #[test]
    fn effective_applies_the_lazy_transitions_of_a_claim() {
        let past = NOW - 1;
        let future = NOW + 1;
        // A due delay, or one due exactly now, is ready.
        assert_eq!(
            effective(State::Delayed, past, 0, 3, None, NOW),
            (State::Ready, true)
        );
        assert_eq!(
            effective(State::Delayed, NOW, 0, 3, None, NOW),
            (State::Ready, true)
        );
        assert_eq!(
            effective(State::Delayed, future, 0, 3, None, NOW),
            (State::Delayed, false)
        );
        // An expired lease is ready, or dead on its last attempt.
        assert_eq!(
            effective(State::Leased, past, 2, 3, None, NOW),
            (State::Ready, true)
        );
        assert_eq!(
            effective(State::Leased, past, 3, 3, None, NOW),
            (State::Dead, true)
        );
        assert_eq!(
            effective(State::Leased, past, 9, 0, None, NOW),
            (State::Ready, true)
        );
        assert_eq!(
            effective(State::Leased, future, 3, 3, None, NOW),
            (State::Leased, false)
        );
        // Other states are what they are, whatever their times.
        for state in [State::Ready, State::Acked, State::Dead, State::Held] {
            assert_eq!(
                effective(state, past, 5, 3, None, NOW),
                (state, false),
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_message_past_its_ttl_is_dead_but_a_lease_holds_to_its_end() {
        let (past, future) = (NOW - 1, NOW + 1);
        let dead = (State::Dead, true);
        for state in [State::Ready, State::Delayed, State::Held] {
            assert_eq!(effective(state, future, 0, 3, Some(NOW), NOW), dead);
            assert_eq!(expired_at(state, future, Some(past), NOW), Some(past));
            assert_eq!(
                effective(state, future, 0, 3, Some(future), NOW).0,
                state,
                "{state:?} before its TTL"
            );
        }
        // A lease that began before the TTL passed holds until it ends...
        assert_eq!(
            effective(State::Leased, future, 1, 3, Some(past), NOW),
            (State::Leased, false)
        );
        // ... then dies of the TTL (also with attempts left), at its end.
        assert_eq!(effective(State::Leased, past, 1, 3, Some(past), NOW), dead);
        assert_eq!(
            expired_at(State::Leased, NOW - 5, Some(past), NOW),
            Some(NOW - 5)
        );
        assert_eq!(
            effective(State::Leased, past, 1, 3, Some(future), NOW),
            (State::Ready, true)
        );
        for state in [State::Acked, State::Dead] {
            assert_eq!(
                effective(state, past, 1, 3, Some(past), NOW),
                (state, false)
            );
            assert_eq!(expired_at(state, past, Some(past), NOW), None);
        }
    }

    #[test]
    fn a_failure_past_the_ttl_is_expired_even_on_the_last_attempt() {
        let s = settings(3);
        let expired = AfterFailure::Dead(DeadReason::Expired);
        assert_eq!(after_failure(&s, 1, Release::Now, Some(NOW), NOW), expired);
        assert_eq!(
            after_failure(&s, 3, Release::Backoff, Some(NOW - 1), NOW),
            expired
        );
        assert_eq!(
            after_failure(&s, 1, Release::Dead, Some(NOW), NOW),
            AfterFailure::Dead(DeadReason::Rejected)
        );
        assert_eq!(
            after_failure(&s, 1, Release::Now, Some(NOW + 1), NOW),
            AfterFailure::Back {
                state: State::Ready,
                visible_at: NOW
            }
        );
    }

    #[test]
    fn a_released_group_member_waits_for_its_own_delay() {
        assert_eq!(released_state(NOW, NOW), State::Ready);
        assert_eq!(released_state(NOW - 5, NOW), State::Ready);
        assert_eq!(released_state(NOW + 5, NOW), State::Delayed);
    }

    #[test]
    fn a_failure_leads_to_ready_delayed_or_dead() {
        let s = settings(3);
        let back = |state, visible_at| AfterFailure::Back { state, visible_at };
        assert_eq!(
            after_failure(&s, 1, Release::Now, None, NOW),
            back(State::Ready, NOW)
        );
        let after = Release::After(Duration::from_millis(1500));
        assert_eq!(
            after_failure(&s, 2, after, None, NOW),
            back(State::Delayed, NOW + 1500)
        );
        assert_eq!(
            after_failure(&s, 1, Release::After(Duration::ZERO), None, NOW),
            back(State::Ready, NOW)
        );
        assert_eq!(
            after_failure(&s, 3, Release::Now, None, NOW),
            AfterFailure::Dead(DeadReason::MaxAttempts)
        );
        assert_eq!(
            after_failure(&settings(0), 50, Release::Now, None, NOW),
            back(State::Ready, NOW)
        );
        // Backoff after attempt 2 of a 2 s retry delay: 4 s ± 20%.
        let AfterFailure::Back { state, visible_at } =
            after_failure(&s, 2, Release::Backoff, None, NOW)
        else {
            panic!("attempt 2 of 3 is not the last");
        };
        assert_eq!(state, State::Delayed);
        assert!(
            (NOW + 3200..=NOW + 4800).contains(&visible_at),
            "{visible_at}"
        );
    }

    fn receipt(lease: i64) -> Receipt {
        Receipt {
            queue_id: 1,
            msg_id: 10,
            lease,
        }
    }

    fn row(state: State, lease: Option<i64>, visible_at: i64) -> LeaseRow {
        LeaseRow {
            state,
            lease,
            visible_at,
            attempts: 2,
            group: Some("g".into()),
            expires_at: None,
        }
    }

    #[test]
    fn a_receipt_holds_while_its_lease_runs() {
        let held = Judgement::Held(Held {
            attempts: 2,
            group: Some("g".into()),
            expires_at: None,
        });
        let ended = Judgement::Refused(ReceiptError::LeaseEnded);
        let r = receipt(7);
        assert_eq!(
            judge_receipt(&r, row(State::Leased, Some(7), NOW + 1), NOW),
            held
        );
        assert_eq!(
            judge_receipt(&r, row(State::Leased, Some(7), NOW), NOW),
            ended
        );
        assert_eq!(
            judge_receipt(&r, row(State::Leased, Some(8), NOW + 1), NOW),
            ended
        );
        assert_eq!(
            judge_receipt(&r, row(State::Leased, None, NOW + 1), NOW),
            ended
        );
        assert_eq!(
            judge_receipt(&r, row(State::Acked, Some(7), 0), NOW),
            Judgement::Done
        );
        assert_eq!(judge_receipt(&r, row(State::Acked, Some(8), 0), NOW), ended);
        for state in [State::Ready, State::Delayed, State::Held] {
            assert_eq!(judge_receipt(&r, row(state, Some(7), NOW + 1), NOW), ended);
        }
        // A dead message says so, whichever receipt of it is given.
        let dead = Judgement::Refused(ReceiptError::Dead);
        for token in [Some(7), Some(8), None] {
            assert_eq!(
                judge_receipt(&r, row(State::Dead, token, NOW + 1), NOW),
                dead
            );
        }
        // The row is gone: finished if its id was handed out, else unknown.
        assert_eq!(judge_missing(&r, 10), Judgement::Done);
        assert_eq!(judge_missing(&r, 11), Judgement::Done);
        assert_eq!(
            judge_missing(&r, 9),
            Judgement::Refused(ReceiptError::Unknown)
        );
    }

    #[test]
    fn a_repeat_is_harmless_for_ack_only() {
        use Repeat::{Harmless, Refused};
        assert_eq!(settle_answer(Ok(Some(())), Refused), Ok(()));
        assert_eq!(settle_answer(Ok(None), Harmless), Ok(()));
        assert_eq!(
            settle_answer(Ok(None), Refused),
            Err(ReceiptError::Finished)
        );
        let unknown = ReceiptError::Unknown;
        assert_eq!(settle_answer(Err(unknown), Harmless), Err(unknown));
    }

    #[test]
    fn replay_selects_finished_messages_in_the_filter() {
        let s = settings(3);
        let all = ReplayFilter {
            acked: true,
            dead: true,
            ..ReplayFilter::default()
        };
        let pick = |f: &ReplayFilter, row| replay_candidate(f, &s, row, None, NOW);
        assert_eq!(
            pick(&all, (State::Acked, 0, 1, Some(NOW - 5), None)),
            Some((State::Acked, NOW - 5))
        );
        assert_eq!(
            pick(&all, (State::Dead, 0, 3, Some(NOW - 50), None)),
            Some((State::Dead, NOW - 50))
        );
        // Acked past retention (10 s) is gone; dead stays.
        assert_eq!(
            pick(&all, (State::Acked, 0, 1, Some(NOW - 10_000), None)),
            None
        );
        assert!(pick(&all, (State::Dead, 0, 3, Some(NOW - 10_000), None)).is_some());
        // An expired last lease is dead since its lease ended.
        assert_eq!(
            pick(&all, (State::Leased, NOW - 7, 3, None, None)),
            Some((State::Dead, NOW - 7))
        );
        assert_eq!(pick(&all, (State::Leased, NOW - 7, 2, None, None)), None);
        assert_eq!(pick(&all, (State::Leased, NOW + 7, 3, None, None)), None);
        for state in [State::Ready, State::Delayed, State::Held] {
            assert_eq!(pick(&all, (state, 0, 0, None, None)), None, "{state:?}");
            // Past its TTL: dead since it expired, with reason `expired`.
            let expired = (state, NOW + 9, 0, None, Some(NOW - 3));
            assert_eq!(pick(&all, expired), Some((State::Dead, NOW - 3)));
            let by_reason = ReplayFilter {
                dead_reason: Some(DeadReason::Expired),
                ..all.clone()
            };
            assert!(pick(&by_reason, expired).is_some());
        }
        // A lease past its TTL dies when it ends, not before.
        let lease = |end| (State::Leased, end, 1, None, Some(NOW - 30));
        assert_eq!(pick(&all, lease(NOW - 7)), Some((State::Dead, NOW - 7)));
        assert_eq!(pick(&all, lease(NOW + 7)), None);
        // States and the time range `since..until`.
        let dead_only = ReplayFilter {
            dead: true,
            ..ReplayFilter::default()
        };
        assert_eq!(
            pick(&dead_only, (State::Acked, 0, 1, Some(NOW - 5), None)),
            None
        );
        let range = ReplayFilter {
            since: Some(NOW - 10),
            until: Some(NOW - 5),
            ..all.clone()
        };
        assert!(pick(&range, (State::Dead, 0, 3, Some(NOW - 10), None)).is_some());
        assert!(pick(&range, (State::Dead, 0, 3, Some(NOW - 6), None)).is_some());
        assert_eq!(pick(&range, (State::Dead, 0, 3, Some(NOW - 5), None)), None);
        assert_eq!(
            pick(&range, (State::Dead, 0, 3, Some(NOW - 11), None)),
            None
        );
    }
}
