//! [`LeaseTx`]: the statements of leasing and settling, which the operations
//! of `ops::lease` and `ops::work` are written over.

use super::tx::Tx;
use crate::store::error::Result;
use crate::store::flow::DeadReason;
use crate::store::receipt::Receipt;
use crate::store::rules::LeaseRow;
use crate::store::types::{Delivery, QueueRow, State};

/// The statements of leasing and settling.
pub trait LeaseTx: Tx {
    /// Moves the due delayed messages and expired leases of `q` back to
    /// ready, or to dead for a lease that ran out on the last allowed
    /// attempt ([`crate::store::rules::effective`] in SQL), counting the
    /// moves and letting the groups of the dead go on.
    fn promote_due(&mut self, q: &QueueRow) -> Result<()>;

    /// Bounded cleanup that writers of `q` pay for: acked messages past
    /// retention (and, on PostgreSQL, folding `stats` rows).
    fn housekeeping(&mut self, q: &QueueRow) -> Result<()>;

    /// Sets a delivery's state and the time it becomes visible (or its
    /// lease ends). Counting the move is the caller's.
    fn set_state(&mut self, queue: i64, msg: i64, state: State, visible_at: i64) -> Result<()>;

    /// Ends a delivery of `q` in `to` (acked or dead) at [`Tx::now`].
    /// Counting the move is the caller's.
    fn mark_done(&mut self, q: &QueueRow, msg: i64, to: State) -> Result<()>;

    /// Ends at [`Tx::now`], in one statement, the deliveries of `q` that
    /// `receipts` (all of `q`) name and whose lease holds (the token
    /// matches, the delivery is leased and its lease has not run out:
    /// [`crate::store::rules::judge_receipt`]'s `Held`): marked acked
    /// (keeping no expiry), or deleted when `q`'s retention is 0. Returns
    /// the receipts it ended, each with its delivery's group. It may leave
    /// some whose lease holds (SQLite leaves those in a group), which the
    /// caller judges and ends one by one. Counting, releasing the groups
    /// and deleting orphaned messages are the caller's.
    fn ack_held(
        &mut self,
        q: &QueueRow,
        receipts: &[Receipt],
    ) -> Result<Vec<(Receipt, Option<String>)>>;

    /// Deletes one delivery. Counting it is the caller's.
    fn delete_delivery(&mut self, queue: i64, msg: i64) -> Result<()>;

    /// Deletes the messages among `msgs` that no delivery holds any more.
    fn delete_orphans(&mut self, msgs: &[i64]) -> Result<()>;

    /// `finished`, maybe the head of `group`, reached a final state: the
    /// next held message of the group becomes its head (at once on SQLite;
    /// on PostgreSQL before commit, in key order, see `postgres::lease`).
    fn release_group(&mut self, queue: i64, group: &str, finished: i64) -> Result<()>;

    /// Lets go now the groups [`LeaseTx::release_group`] noted and has not
    /// released yet (PostgreSQL defers them to release them sorted; SQLite
    /// has none left).
    fn release_groups(&mut self) -> Result<()>;

    /// Leases the next `max` ready deliveries of `q` until `lease_end`, each
    /// with a fresh random token, and returns them with their messages,
    /// highest priority first, then oldest. Counting the moves is the
    /// caller's.
    fn lease_next(&mut self, q: &QueueRow, max: usize, lease_end: i64) -> Result<Vec<Delivery>>;

    /// The delivery a receipt names, as
    /// [`crate::store::rules::judge_receipt`] needs it (PostgreSQL locks the
    /// row, so the judgement holds until commit).
    fn lease_row(&mut self, r: &Receipt) -> Result<Option<LeaseRow>>;

    /// The highest message id ever handed out.
    fn last_message_id(&mut self) -> Result<i64>;

    /// Puts a leased delivery whose lease still holds back to ready now,
    /// with the attempt the lease counted taken back (not below 0); true
    /// when it did. A lease past its end is left to the lazy transitions.
    /// Counting the move is the caller's.
    fn unlease(&mut self, queue: i64, msg: i64) -> Result<bool>;

    /// Locks the row of queue `id` until commit and reads it again
    /// (PostgreSQL; SQLite's writers take turns anyway): claims of a queue
    /// with a pause, cap or rate take turns, so the count of leases and the
    /// rate's bucket they read still hold when they commit.
    fn lock_queue(&mut self, id: i64) -> Result<Option<QueueRow>>;

    /// Stores the state of `queue`'s rate bucket (see `flow::Rate`).
    fn set_rate_state(&mut self, queue: i64, full_at: i64) -> Result<()>;

    /// Records why a delivery failed: its `dead_reason` (when it died for
    /// another reason than its attempts) and its `last_error`, each left as
    /// it was when `None`.
    fn note_failure(
        &mut self,
        queue: i64,
        msg: i64,
        reason: Option<DeadReason>,
        error: Option<&str>,
    ) -> Result<()>;

    /// The queues and topics with these ids (unknown ids are left out).
    fn queues_by_ids(&mut self, ids: &[i64]) -> Result<Vec<QueueRow>> {
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            rows.extend(self.queue_by_id(id)?);
        }
        Ok(rows)
    }
}
