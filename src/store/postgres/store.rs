//! [`PostgresStore`] as a [`Store`]: what only this backend knows; every
//! operation is the trait's, written once.

use std::time::Duration;

use super::doctor::value;
use super::tx::Tx;
use super::{PostgresStore, RowExt, lease, schema};
use crate::store::Store;
use crate::store::backend::Stored;
use crate::store::backend::{ReadTx, Tx as _};
use crate::store::error::Result;
use crate::store::ops::doctor;
use crate::store::types::{State, Sync};

/// Connections that write at once where a caller can use several (`spool
/// serve`'s group commit).
const WRITERS: usize = 4;
use crate::store::views::{DatabaseHealth, DatabaseInfo, Health, ServerHealth};

impl Store for PostgresStore {
    fn file(&self) -> Option<&std::path::Path> {
        None
    }

    fn wait_step(
        &self,
        queue: &str,
        version: i64,
        nap: Duration,
        pause: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<bool> {
        let news = self.data_version()? != version
            || self.wait_news(queue, std::time::Instant::now() + nap)?;
        Ok(news || pause(Duration::ZERO))
    }

    /// The one-statement claim first (see `lease::fast_claim`), then the
    /// generic one.
    fn claim(
        &mut self,
        queue: &str,
        max: usize,
        visibility: Option<Duration>,
        ack: bool,
    ) -> Result<Vec<crate::store::Delivery>> {
        if !ack
            && let Some(leased) = self
                .retrying(|store| lease::fast_claim(store.conn.get_mut(), queue, max, visibility))?
        {
            return Ok(leased);
        }
        crate::store::ops::schedules::claim(self, queue, max, visibility, ack)
    }

    /// The one-statement ack first, then one set-based statement for the
    /// rest (see `lease::ack_once`).
    fn ack(
        &mut self,
        receipts: &[crate::store::Receipt],
    ) -> Result<Vec<Result<(), crate::store::ReceiptError>>> {
        self.retrying(|store| store.ack_once(receipts))
    }

    /// `synchronous_commit`: the WAL is flushed in order, so a durable
    /// commit makes every earlier one durable too.
    fn set_sync(&mut self, sync: Sync) -> Result<()> {
        let value = match sync {
            Sync::Full => "on",
            Sync::Normal => "off",
        };
        self.conn
            .get_mut()
            .batch(&format!("SET synchronous_commit = {value}"))
    }

    /// Commits a transaction that writes WAL (it takes a transaction id) with `synchronous_commit = on`, which
    /// waits until the WAL up to it, and so every earlier commit of any
    /// connection, is on the server's disk.
    fn flush(&self) -> Result<()> {
        let mut conn = self.conn.borrow_mut();
        conn.batch("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT")
    }

    /// The database as `stats` shows it: `path` is the URL (without the
    /// password) and `size_bytes` the size of spool's tables and indexes in
    /// its schema; PostgreSQL has no WAL file or free pages of spool's own,
    /// so those are 0.
    fn database_info(&self) -> Result<DatabaseInfo> {
        let mut conn = self.conn.borrow_mut();
        let schema = conn.target.schema.clone();
        let size: i64 = conn
            .query_opt(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'S')",
                &[&schema],
            )?
            .map(|r| r.at(0))
            .transpose()?
            .unwrap_or(0);
        Ok(DatabaseInfo {
            path: conn.target.display.clone().into(),
            size_bytes: size.max(0) as u64,
            wal_bytes: None,
            free_bytes: None,
        })
    }

    fn health(&self) -> Result<Health> {
        let size_bytes = self.database_info()?.size_bytes;
        let database = {
            let mut conn = self.conn.borrow_mut();
            let mut tx = Tx::read(&mut conn)?;
            DatabaseHealth {
                path: tx.target.display.clone(),
                server: Some(ServerHealth {
                    backend: "postgres",
                    server_version: value(&mut tx, "SHOW server_version")?.unwrap_or_default(),
                    stats_rows: value(&mut tx, "SELECT count(*) FROM stats")?.unwrap_or(0),
                }),
                size_bytes,
                file: None,
                schema_version: value(&mut tx, "SELECT max(version) FROM version")?.unwrap_or(0),
                schema_supported: schema::CURRENT,
            }
        };
        let mut health = doctor::report(database);
        doctor::check(self, &mut health)?;
        Ok(health)
    }

    /// Counts are fixed by a correcting `stats` row per queue whose sums
    /// differ from its rows.
    fn repair(&mut self) -> Result<usize> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        // No claim or ack may change rows between the count and the fix.
        tx.batch("LOCK TABLE deliveries, stats IN SHARE ROW EXCLUSIVE MODE")?;
        let counted = doctor::counted(&mut tx)?;
        let mut changed = 0;
        for name in tx.names()? {
            let Some(q) = tx.queue(&name)? else {
                continue;
            };
            let summed = Stored::from(tx.stored(q.id, 0)?).states;
            let counted = counted.get(&q.id).copied().unwrap_or_default();
            if summed != counted {
                for state in State::ALL {
                    let diff = counted[state as usize] - summed[state as usize];
                    tx.counts.correct(q.id, state, diff);
                }
                changed += 1;
            }
        }
        // Schedules that can never publish go first, then every queue's
        // next occurrence is recomputed from the schedules left.
        changed += tx.execute(doctor::REMOVE_LOST_SCHEDULES, &[])? as usize;
        changed += tx.execute(&doctor::repair_schedule_at("IS DISTINCT FROM"), &[])? as usize;
        changed += tx.execute(
            "DELETE FROM messages m
             WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id)",
            &[],
        )? as usize;
        if let Some(max) = value::<i64>(&mut tx, "SELECT max(id) FROM messages")?
            && tx.next_message_id()? <= max
        {
            tx.execute("SELECT setval('message_ids', $1)", &[&max])?;
            changed += 1;
        }
        tx.commit()?;
        Ok(changed)
    }

    /// `postgres://user@host:port/db?schema=NAME`.
    fn display(&self) -> String {
        self.conn.borrow().target.display.clone()
    }

    /// Notifications received (see `notify`): changes when a transaction
    /// that made messages deliverable in this schema commits. The first call
    /// starts listening, so call it before the claim whose emptiness makes
    /// you wait. No round trip once listening.
    fn data_version(&self) -> Result<i64> {
        let mut conn = self.conn.borrow_mut();
        conn.listen()?;
        conn.drain()?;
        Ok(conn.seen)
    }

    /// A few: past that, transactions mostly wait for each other's locks
    /// on the same queue rows.
    fn writers(&self) -> usize {
        WRITERS
    }

    /// By the server's clock: one query for the due time, one for its now.
    fn due_in(&self, queue: &str) -> Result<Option<Duration>> {
        let Some(at) = self.next_due(queue)? else {
            return Ok(None);
        };
        let now = self.conn.borrow_mut().server_now()?;
        Ok(Some(Duration::from_millis(
            at.saturating_sub(now).max(0) as u64
        )))
    }
}
