//! The SQLite statements of recovery and housekeeping (`replay`, `queue
//! purge`, `queue delete`, releasing a stuck lease); the operations are
//! [`crate::store::ops::admin`]'s. SQLite's writers take turns on the whole
//! database, so the name and group locks of PostgreSQL are nothing here.

use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::backend::{AdminTx, ReplayRow};
use crate::store::{Result, State};

/// Replay's selection: the rows of queue `?1` in state `?2` (acked or
/// dead) done from `?3` to before `?4`, through `deliveries_done`.
pub(crate) const DONE_IDS: &str = "SELECT msg_id FROM deliveries
    WHERE queue_id = ?1 AND state IN (3, 4) AND state = ?2
      AND done_at >= ?3 AND done_at < ?4";

/// Purge's delete of the rows of queue `?1` in state `?2`. Each state
/// names its partial index's condition, so the delete walks that index
/// rather than the whole table.
pub(crate) fn delete_in_state_sql(state: State) -> String {
    let index_filter = match state {
        State::Ready => "state = 0",
        State::Delayed | State::Leased => "state IN (1, 2)",
        State::Acked | State::Dead => "state IN (3, 4)",
        State::Held => "state = 5",
    };
    format!(
        "DELETE FROM deliveries WHERE queue_id = ?1 AND msg_id IN (
             SELECT msg_id FROM deliveries WHERE queue_id = ?1 AND {index_filter} AND state = ?2)
         RETURNING msg_id, grp"
    )
}

impl AdminTx for Tx<'_> {
    fn replay_target(&mut self, name: &str) -> Result<QueueRow> {
        queues::ensure(self, name)
    }

    fn enter_group(&mut self, queue: i64, group: &str, msg: i64) -> Result<bool> {
        let claimed = self
            .tx
            .prepare_cached(super::publish::CLAIM_GROUP)?
            .execute((queue, group, msg))?;
        Ok(claimed > 0)
    }

    fn reset_delivery(
        &mut self,
        queue: i64,
        msg: i64,
        state: State,
        expires_at: Option<i64>,
    ) -> Result<()> {
        if expires_at.is_some() {
            queues::mark_expiring(&self.tx, queue)?;
        }
        self.tx
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = 0, lease = NULL, done_at = NULL, dead_reason = NULL,
                   visible_at = ?4, expires_at = ?5
                 WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .execute((msg, queue, state as i64, self.now, expires_at))?;
        Ok(())
    }

    fn add_delivery(
        &mut self,
        queue: i64,
        row: &ReplayRow,
        version: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<()> {
        if expires_at.is_some() {
            queues::mark_expiring(&self.tx, queue)?;
        }
        self.tx
            .prepare_cached(
                "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version,
                   expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute((
                row.id,
                queue,
                row.state as i64,
                row.priority,
                self.now,
                &row.group,
                version,
                expires_at,
            ))?;
        Ok(())
    }

    fn delete_in_state(&mut self, queue: i64, state: State) -> Result<Vec<(i64, Option<String>)>> {
        self.rows(&delete_in_state_sql(state), (queue, state as i64))
    }

    /// From the queue's counters (exact: the lazy transitions only move
    /// messages between these states).
    fn pending(&mut self, queue: i64) -> Result<i64> {
        let sql =
            "SELECT n_ready + n_delayed + n_leased + n_dead + n_held FROM queues WHERE id = ?1";
        Ok(self.one(sql, [queue])?.map_or(0, |(n,)| n))
    }

    fn delete_deliveries(&mut self, queue: i64) -> Result<Vec<i64>> {
        self.column(
            "DELETE FROM deliveries WHERE queue_id = ?1 RETURNING msg_id",
            [queue],
        )
    }

    fn drop_queue(&mut self, queue: i64) -> Result<()> {
        for sql in [
            "DELETE FROM groups WHERE queue_id = ?1",
            "DELETE FROM rates WHERE queue_id = ?1",
            "DELETE FROM subscriptions WHERE queue_id = ?1 OR topic_id = ?1",
            "DELETE FROM schemas WHERE queue_id = ?1",
            "DELETE FROM queues WHERE id = ?1",
        ] {
            self.tx.prepare_cached(sql)?.execute([queue])?;
        }
        Ok(())
    }

    fn freed_pages(&mut self) {
        Tx::freed_pages(self);
    }
}
