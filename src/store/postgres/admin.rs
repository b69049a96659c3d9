//! The PostgreSQL statements of recovery and housekeeping (`replay`, `queue
//! purge`, `queue delete`, releasing a stuck lease); the operations are
//! [`crate::store::ops::admin`]'s. Here concurrent writers meet: names are
//! locked through [`PublishTx::lock_shared`] and [`PublishTx::lock_exclusive`],
//! group rows in key order.

use super::RowExt;
use super::contracts;
use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::checks::Check;
use crate::store::error::Result;
use crate::store::ops::admin::{AdminTx, ReplayReadTx, ReplayRow};
use crate::store::ops::publish::PublishTx;
use crate::store::types::State;

/// The first column of each row, as ids.
fn ids(rows: &[postgres::Row]) -> Result<Vec<i64>> {
    rows.iter().map(|r| r.at(0)).collect()
}

impl ReplayReadTx for Tx<'_> {
    fn done_ids(&mut self, queue: i64, state: State, since: i64, until: i64) -> Result<Vec<i64>> {
        ids(&self.query(
            "SELECT msg_id FROM deliveries
             WHERE queue_id = $1 AND state IN (3, 4) AND state = $2
               AND done_at >= $3 AND done_at < $4",
            &[&queue, &(state as i64), &since, &until],
        )?)
    }

    fn expired_on_last_attempt(&mut self, queue: i64, max: i64) -> Result<Vec<i64>> {
        let now = self.now;
        ids(&self.query(
            "SELECT msg_id FROM deliveries
             WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $2
               AND state = 2 AND attempts >= $3",
            &[&queue, &now, &max],
        )?)
    }

    fn replay_rows(&mut self, queue: i64, ids: &[i64], lock: bool) -> Result<Vec<ReplayRow>> {
        let sql = if lock {
            "SELECT msg_id, state, visible_at, attempts, done_at, priority, grp FROM deliveries
             WHERE queue_id = $1 AND msg_id = ANY($2) ORDER BY msg_id FOR UPDATE"
        } else {
            "SELECT msg_id, state, visible_at, attempts, done_at, priority, grp FROM deliveries
             WHERE queue_id = $1 AND msg_id = ANY($2) ORDER BY msg_id"
        };
        self.query(sql, &[&queue, &ids])?
            .iter()
            .map(|r| {
                Ok(ReplayRow {
                    id: r.at(0)?,
                    state: State::from_i64(r.at(1)?),
                    visible_at: r.at(2)?,
                    attempts: r.at(3)?,
                    done_at: r.at(4)?,
                    priority: r.at(5)?,
                    group: r.at(6)?,
                })
            })
            .collect()
    }

    fn holds(&mut self, queue: i64, msg: i64) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM deliveries WHERE msg_id = $1 AND queue_id = $2",
                &[&msg, &queue],
            )?
            .is_some())
    }

    fn schema_check(&mut self, queue: &QueueRow) -> Result<Option<Check>> {
        let mut cache = std::mem::take(&mut self.contracts);
        let check = crate::store::ops::contracts::check_for(self, &mut cache, queue);
        self.contracts = cache;
        check
    }

    fn check_stored(&mut self, check: &Check, id: i64) -> Result<()> {
        contracts::check_stored(self, check, id)
    }
}

impl AdminTx for Tx<'_> {
    fn replay_target(&mut self, name: &str) -> Result<QueueRow> {
        PublishTx::lock_shared(self, &[name])?;
        queues::ensure(self, name)
    }

    fn lock_name_exclusive(&mut self, name: &str) -> Result<()> {
        PublishTx::lock_exclusive(self, name)
    }

    /// Locks the existing `group_heads` rows before `enter_group` upserts
    /// them in message order: every writer locks group rows in key order,
    /// so none waits for another in a cycle.
    fn lock_heads(&mut self, queue: i64, groups: &[&str]) -> Result<()> {
        self.execute(
            "SELECT 1 FROM group_heads WHERE queue_id = $1 AND grp = ANY($2)
             ORDER BY grp COLLATE \"C\" FOR UPDATE",
            &[&queue, &groups],
        )?;
        Ok(())
    }

    fn enter_group(&mut self, queue: i64, group: &str, msg: i64) -> Result<bool> {
        super::publish::claim_group(self, queue, group, msg)
    }

    fn reset_delivery(&mut self, queue: i64, msg: i64, state: State) -> Result<()> {
        let now = self.now;
        self.execute(
            "UPDATE deliveries SET state = $3, attempts = 0, lease = NULL, done_at = NULL,
               visible_at = $4
             WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &queue, &(state as i64), &now],
        )?;
        Ok(())
    }

    fn add_delivery(&mut self, queue: i64, row: &ReplayRow, version: Option<i64>) -> Result<()> {
        let now = self.now;
        self.execute(
            "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&row.id, &queue, &(row.state as i64), &row.priority, &now, &row.group, &version],
        )?;
        Ok(())
    }

    fn delete_in_state(&mut self, queue: i64, state: State) -> Result<Vec<(i64, Option<String>)>> {
        self.query(
            "DELETE FROM deliveries WHERE queue_id = $1 AND state = $2 RETURNING msg_id, grp",
            &[&queue, &(state as i64)],
        )?
        .iter()
        .map(|r| Ok((r.at(0)?, r.at(1)?)))
        .collect()
    }

    fn pending(&mut self, queue: i64) -> Result<i64> {
        Ok(self
            .query_opt(
                "SELECT count(*) FROM deliveries WHERE queue_id = $1 AND state <> 3",
                &[&queue],
            )?
            .map(|r| r.at(0))
            .transpose()?
            .unwrap_or(0))
    }

    fn delete_deliveries(&mut self, queue: i64) -> Result<Vec<i64>> {
        ids(&self.query(
            "DELETE FROM deliveries WHERE queue_id = $1 RETURNING msg_id",
            &[&queue],
        )?)
    }

    fn drop_queue(&mut self, queue: i64) -> Result<()> {
        for sql in [
            // In key order, as every writer locks group rows.
            "DELETE FROM group_heads WHERE queue_id = $1 AND grp IN (
                 SELECT grp FROM group_heads WHERE queue_id = $1
                 ORDER BY grp COLLATE \"C\" FOR UPDATE)",
            "DELETE FROM stats WHERE queue_id = $1",
            "DELETE FROM subscriptions WHERE queue_id = $1 OR topic_id = $1",
            "DELETE FROM schemas WHERE queue_id = $1",
            "DELETE FROM queues WHERE id = $1",
        ] {
            self.execute(sql, &[&queue])?;
        }
        Ok(())
    }
}
