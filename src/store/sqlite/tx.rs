//! A write transaction that keeps the per-queue counters in step with the
//! state changes it makes.

use rusqlite::{Transaction, TransactionBehavior};

use super::SqliteStore;
use super::queues::{self, QueueRow};
use crate::store::Result;
use crate::store::backend;
use crate::store::counters::Counters;

/// How long per-second publish/ack rates are kept (for `stats` and `top`).
const RATE_WINDOW_SECONDS: i64 = 3600;

/// Free pages above which a write hands pages back to the file system.
const VACUUM_THRESHOLD: i64 = 256;

/// A `BEGIN IMMEDIATE` transaction plus the counter changes it owes.
///
/// Every state change is recorded in [`Tx::counts`]; [`Tx::commit`] writes the
/// summed changes to `queues` and `rates` once per queue, so a batch of a
/// million messages updates the counters once.
pub(crate) struct Tx<'c> {
    pub tx: Transaction<'c>,
    /// The time this transaction acts at, in ms since the epoch.
    pub now: i64,
    /// The counter changes this transaction owes.
    pub counts: Counters,
    freed: bool,
}

impl<'c> Tx<'c> {
    /// Takes the write lock now (waiting up to the busy timeout).
    pub fn begin(conn: &'c mut rusqlite::Connection) -> Result<Tx<'c>> {
        Ok(Tx::new(conn.transaction_with_behavior(
            TransactionBehavior::Immediate,
        )?))
    }

    /// Starts a deferred transaction for reading: one snapshot throughout,
    /// and no lock that keeps a writer waiting.
    pub fn read(conn: &'c rusqlite::Connection) -> Result<Tx<'c>> {
        Ok(Tx::new(conn.unchecked_transaction()?))
    }

    fn new(tx: Transaction<'c>) -> Tx<'c> {
        Tx {
            tx,
            now: crate::store::now_ms(),
            counts: Counters::default(),
            freed: false,
        }
    }

    /// Notes that rows were deleted, so commit may hand free pages back.
    pub fn freed_pages(&mut self) {
        self.freed = true;
    }

    /// Writes the counters and commits.
    pub fn commit(self) -> Result<()> {
        let second = self.now / 1000;
        for (queue, d) in self.counts.changes() {
            let s = &d.states;
            self.tx
                .prepare_cached(
                    "UPDATE queues SET n_ready = n_ready + ?2, n_delayed = n_delayed + ?3,
                       n_leased = n_leased + ?4, n_acked = n_acked + ?5, n_dead = n_dead + ?6,
                       n_held = n_held + ?7, published_total = published_total + ?8
                     WHERE id = ?1",
                )?
                .execute((queue, s[0], s[1], s[2], s[3], s[4], s[5], d.published))?;
            if d.expired != 0 || d.dropped != 0 {
                self.tx
                    .prepare_cached(
                        "UPDATE queues SET expired_total = expired_total + ?2,
                           dropped_total = dropped_total + ?3 WHERE id = ?1",
                    )?
                    .execute((queue, d.expired, d.dropped))?;
            }
            if d.published != 0 || d.acked != 0 {
                self.tx
                    .prepare_cached(
                        "INSERT INTO rates (queue_id, second, published, acked) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (queue_id, second) DO UPDATE SET
                           published = published + excluded.published, acked = acked + excluded.acked",
                    )?
                    .execute((queue, second, d.published, d.acked))?;
                self.tx
                    .prepare_cached("DELETE FROM rates WHERE queue_id = ?1 AND second < ?2")?
                    .execute((queue, second - RATE_WINDOW_SECONDS))?;
            }
        }
        if self.freed {
            vacuum_step(&self)?;
        }
        self.tx.commit()?;
        Ok(())
    }
}

impl backend::Tx for Tx<'_> {
    fn now(&self) -> i64 {
        self.now
    }

    fn counts(&mut self) -> &mut Counters {
        &mut self.counts
    }

    fn notify(&mut self, _queue: &str) {}

    fn queue(&mut self, name: &str) -> Result<Option<QueueRow>> {
        queues::lookup(&self.tx, name)
    }

    fn queue_by_id(&mut self, id: i64) -> Result<Option<QueueRow>> {
        queues::by_id(&self.tx, id)
    }

    fn subscribers(&mut self, topic_id: i64) -> Result<Vec<QueueRow>> {
        queues::subscribers(&self.tx, topic_id)
    }

    fn count_leased(&mut self, queue: i64, at_most: u32) -> Result<u64> {
        let sql = "SELECT count(*) FROM (SELECT 1 FROM deliveries
            WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at > ?2 AND state = 2 LIMIT ?3)";
        let n: i64 = self
            .tx
            .prepare_cached(sql)?
            .query_row((queue, self.now, at_most), |row| row.get(0))?;
        Ok(n.max(0) as u64)
    }

    fn any_ready(&mut self, queue: i64) -> Result<bool> {
        let sql = "SELECT EXISTS (SELECT 1 FROM deliveries WHERE queue_id = ?1 AND state = 0)";
        Ok(self
            .tx
            .prepare_cached(sql)?
            .query_row([queue], |row| row.get(0))?)
    }

    fn names(&mut self) -> Result<Vec<String>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT name FROM queues ORDER BY name")?;
        let names = stmt
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }
}

impl backend::Backend for SqliteStore {
    fn write_dyn(
        &mut self,
        op: &mut dyn FnMut(&mut dyn backend::WriteTx) -> Result<()>,
    ) -> Result<()> {
        let mut tx = Tx::begin(&mut self.conn)?;
        op(&mut tx)?;
        tx.commit()
    }

    fn read_dyn(&self, op: &mut dyn FnMut(&mut dyn backend::ReadTx) -> Result<()>) -> Result<()> {
        let mut tx = Tx::read(&self.conn)?;
        op(&mut tx)
    }

    fn contracts(&mut self) -> &mut crate::store::checks::ContractCache {
        &mut self.contracts
    }
}

/// Hands free pages back to the file system, a bounded step at a time.
fn vacuum_step(tx: &Tx<'_>) -> Result<()> {
    let free: i64 = tx
        .tx
        .pragma_query_value(None, "freelist_count", |row| row.get(0))?;
    if free > VACUUM_THRESHOLD {
        // The pragma frees one page per step (each step yields an empty row),
        // so it must be stepped to the end: `execute_batch` steps once and
        // would free a single page.
        let sql = format!(
            "PRAGMA incremental_vacuum({})",
            free.min(4 * VACUUM_THRESHOLD)
        );
        let mut stmt = tx.tx.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(())
}
