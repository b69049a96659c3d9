//! A transaction on the PostgreSQL connection that acts at one server time,
//! collects the per-queue count changes it owes, and writes them as one
//! insert-only `stats` row per queue together with its notifications and
//! `COMMIT`, in one round trip.

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};

use super::queues::{self, QueueRow};
use super::{Conn, PostgresStore, RowExt};
use crate::store::backend;
use crate::store::counters::Counters;
use crate::store::error::{Error, Result};

/// The server's clock in ms since the epoch.
#[cfg(not(any(test, feature = "test-hooks")))]
pub(crate) const NOW_MS: &str = SERVER_NOW_MS;
/// The server's clock in ms since the epoch, moved by the test's clock
/// (`store::clock`).
#[cfg(any(test, feature = "test-hooks"))]
pub(crate) const NOW_MS: crate::store::clock::Shifted = crate::store::clock::Shifted(SERVER_NOW_MS);
const SERVER_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The notification channel of a schema (at most 63 bytes: schema names are
/// at most 57).
pub(crate) fn channel(schema: &str) -> String {
    format!("spool_{schema}")
}

/// An open transaction. Dropping it without [`Tx::commit`] rolls it back.
pub(crate) struct Tx<'c> {
    conn: &'c mut Conn,
    /// When this transaction acts, in ms since the epoch, by the server's clock.
    pub now: i64,
    /// The count changes this transaction owes.
    pub counts: Counters,
    notify: BTreeSet<String>,
    /// Groups whose head finished, to let go in key order (see
    /// `lease::release_groups`): queue id, group, finished message.
    pub releases: Vec<(i64, String, i64)>,
    open: bool,
}

impl<'c> Tx<'c> {
    /// Starts a READ COMMITTED transaction for writing.
    pub fn begin(conn: &'c mut Conn) -> Result<Tx<'c>> {
        Tx::start(conn, "BEGIN")
    }

    /// Starts a read-only transaction that sees one snapshot throughout.
    pub fn read(conn: &'c mut Conn) -> Result<Tx<'c>> {
        Tx::start(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }

    fn start(conn: &'c mut Conn, begin: &str) -> Result<Tx<'c>> {
        let mut tx = Tx {
            conn,
            now: 0,
            counts: Counters::default(),
            notify: BTreeSet::new(),
            releases: Vec::new(),
            open: true,
        };
        let now = tx.conn.simple_value(&format!("{begin}; SELECT {NOW_MS}"))?;
        tx.now = now
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::Postgres("the server did not tell its time".into()))?;
        Ok(tx)
    }

    /// Wakes the consumers waiting on `queue` when this transaction commits.
    pub fn notify(&mut self, queue: &str) {
        if !self.notify.contains(queue) {
            self.notify.insert(queue.to_owned());
        }
    }

    /// Writes the count deltas and notifications, and commits: one round trip.
    pub fn commit(mut self) -> Result<()> {
        backend::LeaseTx::release_groups(&mut self)?;
        let sql = self.commit_sql();
        self.open = false;
        self.conn.batch(&sql)
    }

    fn commit_sql(&self) -> String {
        let second = self.now.div_euclid(1000);
        let mut sql = String::new();
        #[cfg(any(test, feature = "test-hooks"))]
        if let Some(extra) = &self.conn.before_commit
            && !self.counts.is_empty()
        {
            sql.push_str(extra);
        }
        let rows: Vec<String> = self
            .counts
            .changes()
            .map(|(queue, d)| {
                let s = &d.states;
                format!(
                    "({queue},{second},{},{},{},{},{},{},{},{},{},{})",
                    s[0], s[1], s[2], s[3], s[4], s[5], d.published, d.acked, d.expired, d.dropped
                )
            })
            .collect();
        if !rows.is_empty() {
            sql.push_str(
                "INSERT INTO stats (queue_id, second, n_ready, n_delayed, n_leased, n_acked, n_dead, n_held, published, acked, expired, dropped) VALUES ",
            );
            sql.push_str(&rows.join(","));
            sql.push(';');
        }
        let channel = channel(&self.conn.target.schema);
        for queue in &self.notify {
            // Queue names are letters, digits and `._-:`; quoting is for safety.
            let queue = queue.replace('\'', "''");
            sql.push_str(&format!("SELECT pg_notify('{channel}', '{queue}');"));
        }
        sql.push_str("COMMIT");
        sql
    }
}

impl Deref for Tx<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            // On a broken connection there is nothing to roll back: the
            // server already did.
            let _ = self.conn.batch("ROLLBACK");
        }
    }
}

impl backend::Tx for Tx<'_> {
    fn now(&self) -> i64 {
        self.now
    }

    fn counts(&mut self) -> &mut Counters {
        &mut self.counts
    }

    fn notify(&mut self, queue: &str) {
        Tx::notify(self, queue);
    }

    fn queue(&mut self, name: &str) -> Result<Option<QueueRow>> {
        queues::lookup(self, name)
    }

    fn queue_by_id(&mut self, id: i64) -> Result<Option<QueueRow>> {
        Ok(queues::by_ids(self, &[id])?.pop())
    }

    fn subscribers(&mut self, topic_id: i64) -> Result<Vec<QueueRow>> {
        queues::subscribers(self, topic_id)
    }

    fn count_leased(&mut self, queue: i64, at_most: u32) -> Result<u64> {
        let now = self.now;
        let row = self.query_opt(
            "SELECT count(*) FROM (SELECT 1 FROM deliveries
             WHERE queue_id = $1 AND state IN (1, 2) AND visible_at > $2 AND state = 2 LIMIT $3) AS l",
            &[&queue, &now, &i64::from(at_most)],
        )?;
        Ok(row.map_or(Ok(0), |r| r.at::<i64>(0))?.max(0) as u64)
    }

    fn any_ready(&mut self, queue: i64) -> Result<bool> {
        let row = self.query_opt(
            "SELECT 1 FROM deliveries WHERE queue_id = $1 AND state = 0 LIMIT 1",
            &[&queue],
        )?;
        Ok(row.is_some())
    }

    fn names(&mut self) -> Result<Vec<String>> {
        self.query("SELECT name FROM queues ORDER BY name", &[])?
            .iter()
            .map(|row| row.at(0))
            .collect()
    }
}

impl backend::Backend for PostgresStore {
    fn write_dyn(
        &mut self,
        op: &mut dyn FnMut(&mut dyn backend::WriteTx) -> Result<()>,
    ) -> Result<()> {
        self.retrying(|store| {
            let mut tx = Tx::begin(store.conn.get_mut())?;
            op(&mut tx)?;
            tx.commit()
        })
    }

    fn read_dyn(&self, op: &mut dyn FnMut(&mut dyn backend::ReadTx) -> Result<()>) -> Result<()> {
        let mut conn = self.conn.borrow_mut();
        let mut tx = Tx::read(&mut conn)?;
        op(&mut tx)
    }

    fn contracts(&mut self) -> &mut crate::store::checks::ContractCache {
        &mut self.conn.get_mut().contracts
    }
}
