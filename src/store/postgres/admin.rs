//! The PostgreSQL statements of recovery and housekeeping (`replay`, `queue
//! purge`, `queue delete`, releasing a stuck lease); the operations are
//! [`crate::store::ops::admin`]'s. Here concurrent writers meet: names are
//! locked through [`PublishTx::lock_shared`] and [`PublishTx::lock_exclusive`],
//! group rows in key order.

use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::backend::PublishTx;
use crate::store::backend::{AdminTx, ReplayRow};
use crate::store::error::Result;
use crate::store::types::State;

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

    fn reset_delivery(
        &mut self,
        queue: i64,
        msg: i64,
        state: State,
        expires_at: Option<i64>,
    ) -> Result<()> {
        let now = self.now;
        self.execute(
            "UPDATE deliveries SET state = $3, attempts = 0, lease = NULL, done_at = NULL, dead_reason = NULL,
               visible_at = $4, expires_at = $5
             WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &queue, &(state as i64), &now, &expires_at],
        )?;
        Ok(())
    }

    fn add_delivery(
        &mut self,
        queue: i64,
        row: &ReplayRow,
        version: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<()> {
        let now = self.now;
        self.execute(
            "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version,
               expires_at, ttl_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &row.id,
                &queue,
                &(row.state as i64),
                &row.priority,
                &now,
                &row.group,
                &version,
                &expires_at,
                &row.ttl_ms,
            ],
        )?;
        Ok(())
    }

    fn delete_in_state(&mut self, queue: i64, state: State) -> Result<Vec<(i64, Option<String>)>> {
        let sql = "DELETE FROM deliveries WHERE queue_id = $1 AND state = $2 RETURNING msg_id, grp";
        self.rows(sql, &[&queue, &(state as i64)])
    }

    fn pending(&mut self, queue: i64) -> Result<i64> {
        let sql = "SELECT count(*) FROM deliveries WHERE queue_id = $1 AND state <> 3";
        Ok(self.one(sql, &[&queue])?.map_or(0, |(n,)| n))
    }

    fn delete_deliveries(&mut self, queue: i64) -> Result<Vec<i64>> {
        self.column(
            "DELETE FROM deliveries WHERE queue_id = $1 RETURNING msg_id",
            &[&queue],
        )
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
