//! The SQLite statements of recovery and housekeeping (`replay`, `queue
//! purge`, `queue delete`, releasing a stuck lease); the operations are
//! [`crate::store::ops::admin`]'s. SQLite's writers take turns on the whole
//! database, so the name and group locks of PostgreSQL are nothing here.

use rusqlite::OptionalExtension;

use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::checks::Check;
use crate::store::ops::admin::{AdminTx, ReplayReadTx, ReplayRow};
use crate::store::ops::contracts;
use crate::store::{Result, State};

/// Replay's selection: the rows of queue `?1` in state `?2` (acked or
/// dead) done from `?3` to before `?4`, through `deliveries_done`.
pub(crate) const DONE_IDS: &str = "SELECT msg_id FROM deliveries
    WHERE queue_id = ?1 AND state IN (3, 4) AND state = ?2
      AND done_at >= ?3 AND done_at < ?4";

/// The expired leases of queue `?1` at `?2` on their last attempt (`?3`),
/// which replay counts as dead.
pub(crate) const EXPIRED_ON_LAST_ATTEMPT: &str = "SELECT msg_id FROM deliveries
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
      AND state = 2 AND attempts >= ?3";

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

/// The first column of the rows `sql` returns, as ids.
fn ids(tx: &Tx<'_>, sql: &str, params: impl rusqlite::Params) -> Result<Vec<i64>> {
    let mut stmt = tx.tx.prepare_cached(sql)?;
    let ids = stmt
        .query_map(params, |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

impl ReplayReadTx for Tx<'_> {
    fn done_ids(&mut self, queue: i64, state: State, since: i64, until: i64) -> Result<Vec<i64>> {
        let sql = DONE_IDS;
        ids(self, sql, (queue, state as i64, since, until))
    }

    fn expired_on_last_attempt(&mut self, queue: i64, max: i64) -> Result<Vec<i64>> {
        let sql = EXPIRED_ON_LAST_ATTEMPT;
        ids(self, sql, (queue, self.now, max))
    }

    fn replay_rows(&mut self, queue: i64, ids: &[i64], _lock: bool) -> Result<Vec<ReplayRow>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT state, visible_at, attempts, done_at, priority, grp FROM deliveries
             WHERE msg_id = ?1 AND queue_id = ?2",
        )?;
        let mut rows = Vec::new();
        for &id in ids {
            let row = stmt
                .query_row((id, queue), |r| {
                    Ok(ReplayRow {
                        id,
                        state: State::from_i64(r.get(0)?),
                        visible_at: r.get(1)?,
                        attempts: r.get(2)?,
                        done_at: r.get(3)?,
                        priority: r.get(4)?,
                        group: r.get(5)?,
                    })
                })
                .optional()?;
            rows.extend(row);
        }
        Ok(rows)
    }

    fn holds(&mut self, queue: i64, msg: i64) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT 1 FROM deliveries WHERE msg_id = ?1 AND queue_id = ?2")?
            .query_row((msg, queue), |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn schema_check(&mut self, queue: &QueueRow) -> Result<Option<Check>> {
        contracts::check_for(self, &mut Default::default(), queue)
    }

    fn check_stored(&mut self, check: &Check, id: i64) -> Result<()> {
        let (body, raw): (Vec<u8>, bool) = self
            .tx
            .prepare_cached("SELECT body, raw FROM messages WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        check.stored(id, &body, raw)
    }
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

    fn reset_delivery(&mut self, queue: i64, msg: i64, state: State) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = 0, lease = NULL, done_at = NULL,
                   visible_at = ?4
                 WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .execute((msg, queue, state as i64, self.now))?;
        Ok(())
    }

    fn add_delivery(&mut self, queue: i64, row: &ReplayRow, version: Option<i64>) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute((row.id, queue, row.state as i64, row.priority, self.now, &row.group, version))?;
        Ok(())
    }

    /// Deletes through the index of `state`.
    fn delete_in_state(&mut self, queue: i64, state: State) -> Result<Vec<(i64, Option<String>)>> {
        let sql = delete_in_state_sql(state);
        let rows = self
            .tx
            .prepare_cached(&sql)?
            .query_map((queue, state as i64), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// From the queue's counters (exact: the lazy transitions only move
    /// messages between these states).
    fn pending(&mut self, queue: i64) -> Result<i64> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT n_ready + n_delayed + n_leased + n_dead + n_held FROM queues WHERE id = ?1",
            )?
            .query_row([queue], |r| r.get(0))?)
    }

    fn delete_deliveries(&mut self, queue: i64) -> Result<Vec<i64>> {
        ids(
            self,
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
