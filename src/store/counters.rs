//! The per-queue counter changes a write transaction owes, the same on both
//! backends: every state change of a delivery is recorded here as it is
//! made, and the transaction writes the sums once per queue at commit (the
//! `queues.n_*` counters and `rates` on SQLite, one insert-only `stats` row
//! on PostgreSQL). So a batch of a million messages updates the counters
//! once, and the counts `stats` shows never need counting rows.

use std::collections::BTreeMap;

use super::types::State;

/// What one queue's counters change by.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deltas {
    /// Per stored state, indexed by [`State`].
    pub states: [i64; 6],
    /// Messages published (deliveries added).
    pub published: i64,
    /// Messages acked.
    pub acked: i64,
    /// Messages whose TTL ran out (they died as `expired`).
    pub expired: i64,
    /// Messages a full queue dropped (they died as `dropped`).
    pub dropped: i64,
}

impl Deltas {
    /// True when nothing changes.
    pub fn is_zero(&self) -> bool {
        *self == Deltas::default()
    }
}

/// The changes owed, by queue id (in id order).
#[derive(Debug, Default)]
pub struct Counters {
    deltas: BTreeMap<i64, Deltas>,
}

impl Counters {
    /// Records that one delivery of `queue` went from `from` to `to`
    /// (`None`: it did not exist before, or no longer exists).
    pub fn moved(&mut self, queue: i64, from: Option<State>, to: Option<State>) {
        self.moved_many(queue, from, to, 1);
    }

    /// Like [`Counters::moved`], for `n` deliveries at once. A move into
    /// [`State::Acked`] counts as an ack.
    pub fn moved_many(&mut self, queue: i64, from: Option<State>, to: Option<State>, n: i64) {
        if n == 0 || from == to {
            return;
        }
        let d = self.deltas.entry(queue).or_default();
        if let Some(s) = from {
            d.states[s as usize] -= n;
        }
        if let Some(s) = to {
            d.states[s as usize] += n;
        }
        if to == Some(State::Acked) {
            d.acked += n;
        }
    }

    /// Counts `n` acks whose deliveries were deleted at once (retention 0).
    pub fn acked_and_deleted(&mut self, queue: i64, n: i64) {
        if n == 0 {
            return;
        }
        let d = self.deltas.entry(queue).or_default();
        d.states[State::Leased as usize] -= n;
        d.acked += n;
    }

    /// Counts `n` messages of `queue` that died for `reason`, for the
    /// totals of `stats` (expired, dropped; the other reasons have none).
    pub fn died(&mut self, queue: i64, reason: super::flow::DeadReason, n: i64) {
        use super::flow::DeadReason;
        if n == 0 {
            return;
        }
        let d = self.deltas.entry(queue).or_default();
        match reason {
            DeadReason::Expired => d.expired += n,
            DeadReason::Dropped => d.dropped += n,
            DeadReason::MaxAttempts | DeadReason::Rejected => {}
        }
    }

    /// Counts `n` newly published messages in `queue`.
    pub fn published(&mut self, queue: i64, n: i64) {
        if n != 0 {
            self.deltas.entry(queue).or_default().published += n;
        }
    }

    /// Adds `n` to the stored count of `state` in `queue` (a repair), without
    /// counting it as a publish or an ack.
    pub fn correct(&mut self, queue: i64, state: State, n: i64) {
        if n != 0 {
            self.deltas.entry(queue).or_default().states[state as usize] += n;
        }
    }

    /// True when no change was recorded.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// The changes, by queue id, leaving out queues whose changes cancel.
    pub fn changes(&self) -> impl Iterator<Item = (i64, &Deltas)> {
        self.deltas
            .iter()
            .filter(|(_, d)| !d.is_zero())
            .map(|(q, d)| (*q, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_publishes_and_acks_sum_per_queue() {
        let mut c = Counters::default();
        c.published(1, 3);
        c.moved_many(1, None, Some(State::Ready), 3);
        c.moved(1, Some(State::Ready), Some(State::Leased));
        c.moved(1, Some(State::Leased), Some(State::Acked));
        c.moved(2, Some(State::Leased), Some(State::Leased));
        c.moved_many(2, Some(State::Ready), Some(State::Dead), 0);
        c.acked_and_deleted(3, 2);
        c.correct(4, State::Held, 0);
        let changes: Vec<(i64, Deltas)> = c.changes().map(|(q, d)| (q, d.clone())).collect();
        let one = Deltas {
            states: [2, 0, 0, 1, 0, 0],
            published: 3,
            acked: 1,
            ..Deltas::default()
        };
        let three = Deltas {
            states: [0, 0, -2, 0, 0, 0],
            published: 0,
            acked: 2,
            ..Deltas::default()
        };
        assert_eq!(changes, [(1, one), (3, three)]);
    }

    #[test]
    fn changes_that_cancel_are_left_out() {
        let mut c = Counters::default();
        c.moved(1, Some(State::Ready), Some(State::Leased));
        c.moved(1, Some(State::Leased), Some(State::Ready));
        assert!(!c.is_empty());
        assert_eq!(c.changes().count(), 0);
    }
}
