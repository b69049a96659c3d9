//! Leases: claim, ack, nack, extend, release, the steps of `work`, and the
//! lazy transitions (due delayed messages, expired leases, retention) that
//! writers perform on the way.

use crate::store::backend::Tx;
use crate::store::error::Result;
use crate::store::receipt::Release;
use crate::store::rules::{self, AfterFailure, Held};
use crate::store::types::{QueueRow, State};

/// The statements of leasing and settling.
pub(crate) trait LeaseTx: Tx {
    /// Moves the due delayed messages and expired leases of `q` back to
    /// ready, or to dead for a lease that ran out on the last allowed
    /// attempt ([`rules::effective`] in SQL), counting the moves and letting
    /// the groups of the dead go on.
    fn promote_due(&mut self, q: &QueueRow) -> Result<()>;

    /// Bounded cleanup that writers of `q` pay for: acked messages past
    /// retention (and, on PostgreSQL, folding `stats` rows).
    fn housekeeping(&mut self, q: &QueueRow) -> Result<()>;

    /// Sets a delivery's state and the time it becomes visible (or its
    /// lease ends). Counting the move is the caller's.
    fn set_state(&mut self, queue: i64, msg: i64, state: State, visible_at: i64) -> Result<()>;

    /// Ends a delivery in `to` (acked or dead) at [`Tx::now`]. Counting the
    /// move is the caller's.
    fn mark_done(&mut self, queue: i64, msg: i64, to: State) -> Result<()>;

    /// Deletes one delivery. Counting it is the caller's.
    fn delete_delivery(&mut self, queue: i64, msg: i64) -> Result<()>;

    /// Deletes the messages among `msgs` that no delivery holds any more.
    fn delete_orphans(&mut self, msgs: &[i64]) -> Result<()>;

    /// `finished`, maybe the head of `group`, reached a final state: the
    /// next held message of the group becomes its head (at once on SQLite;
    /// on PostgreSQL before commit, in key order, see `postgres::lease`).
    fn release_group(&mut self, queue: i64, group: &str, finished: i64) -> Result<()>;
}

/// Ends a leased delivery as acked (kept, or deleted when the queue's
/// retention is 0) or dead, and lets the next message of its group go.
pub(crate) fn finish(
    tx: &mut (impl LeaseTx + ?Sized),
    q: &QueueRow,
    msg: i64,
    group: Option<&str>,
    to: State,
) -> Result<()> {
    if to == State::Acked && q.settings.retention.is_zero() {
        tx.delete_delivery(q.id, msg)?;
        tx.delete_orphans(&[msg])?;
        tx.counts().acked_and_deleted(q.id, 1);
    } else {
        tx.mark_done(q.id, msg, to)?;
        tx.counts().moved(q.id, Some(State::Leased), Some(to));
    }
    if let Some(group) = group {
        tx.release_group(q.id, group, msg)?;
    }
    Ok(())
}

/// Gives a held delivery back after a failed attempt: deliverable again per
/// `release`, or dead when this was its last allowed attempt. Returns the
/// new state.
pub(crate) fn give_back(
    tx: &mut (impl LeaseTx + ?Sized),
    q: &QueueRow,
    msg: i64,
    held: &Held,
    release: Release,
) -> Result<State> {
    match rules::after_failure(&q.settings, held.attempts, release, tx.now()) {
        AfterFailure::Dead => {
            finish(tx, q, msg, held.group.as_deref(), State::Dead)?;
            Ok(State::Dead)
        }
        AfterFailure::Back { state, visible_at } => {
            tx.set_state(q.id, msg, state, visible_at)?;
            tx.counts().moved(q.id, Some(State::Leased), Some(state));
            tx.notify(&q.name);
            Ok(state)
        }
    }
}
