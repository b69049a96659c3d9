//! Queue and topic rows: lookup, creation on first use, settings.

use std::time::Duration;

use postgres::Row;

use super::publish;
use super::tx::Tx;
use super::{Conn, RowExt};
use crate::store::backend::PublishTx;
use crate::store::error::Result;
use crate::store::ops;
use crate::store::ops::publish::{Fanout, Inserter, Tally};
use crate::store::types::{Settings, ms};

pub(crate) use crate::store::types::QueueRow;

const COLUMNS: &str =
    "id, name, is_topic, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms";

// The struct update keeps this building when a setting is added to
// `Settings` before the PostgreSQL schema stores it.
#[allow(clippy::needless_update)]
fn from_row(row: &Row) -> Result<QueueRow> {
    let dur =
        |i| -> Result<Duration> { Ok(Duration::from_millis(row.at::<i64>(i)?.max(0) as u64)) };
    Ok(QueueRow {
        id: row.at(0)?,
        name: row.at(1)?,
        is_topic: row.at(2)?,
        settings: Settings {
            visibility: dur(3)?,
            max_attempts: u32::try_from(row.at::<i64>(4)?).unwrap_or(u32::MAX),
            retention: dur(5)?,
            max_size: row.at::<i64>(6)?.max(0) as u64,
            retry_delay: dur(7)?,
            ..Settings::default()
        },
        acked: 0,
    })
}

/// The queue or topic named `name`, if it exists.
pub(crate) fn lookup(conn: &mut Conn, name: &str) -> Result<Option<QueueRow>> {
    let sql = format!("SELECT {COLUMNS} FROM queues WHERE name = $1");
    conn.query_opt(&sql, &[&name])?
        .map(|r| from_row(&r))
        .transpose()
}

/// The queues or topics with these ids.
pub(crate) fn by_ids(conn: &mut Conn, ids: &[i64]) -> Result<Vec<QueueRow>> {
    let sql = format!("SELECT {COLUMNS} FROM queues WHERE id = ANY($1)");
    conn.query(&sql, &[&ids])?.iter().map(from_row).collect()
}

/// The queues subscribed to a topic, by name.
pub(crate) fn subscribers(conn: &mut Conn, topic_id: i64) -> Result<Vec<QueueRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM queues
         WHERE id IN (SELECT queue_id FROM subscriptions WHERE topic_id = $1) ORDER BY name"
    );
    conn.query(&sql, &[&topic_id])?
        .iter()
        .map(from_row)
        .collect()
}

/// Inserts a queue; `None` when a concurrent transaction created the name
/// first (the caller reads its row).
fn insert(tx: &mut Tx<'_>, name: &str, settings: &Settings) -> Result<Option<QueueRow>> {
    let now = tx.now;
    let sql = format!(
        "INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO NOTHING
         RETURNING {COLUMNS}"
    );
    tx.query_opt(
        &sql,
        &[
            &name,
            &ms(settings.visibility),
            &i64::from(settings.max_attempts),
            &ms(settings.retention),
            &(settings.max_size.min(i64::MAX as u64) as i64),
            &ms(settings.retry_delay),
            &now,
        ],
    )?
    .map(|row| from_row(&row))
    .transpose()
}

/// The queue named `name`, created with default settings if it does not exist.
pub(crate) fn ensure(tx: &mut Tx<'_>, name: &str) -> Result<QueueRow> {
    ops::queues::ensure(tx, name)
}

impl PublishTx for Tx<'_> {
    fn insert_queue(&mut self, name: &str, settings: &Settings) -> Result<Option<QueueRow>> {
        insert(self, name, settings)
    }

    fn write_settings(&mut self, id: i64, s: &Settings) -> Result<()> {
        self.execute(
            "UPDATE queues SET visibility_ms = $2, max_attempts = $3, retention_ms = $4,
               max_size = $5, retry_delay_ms = $6 WHERE id = $1",
            &[
                &id,
                &ms(s.visibility),
                &i64::from(s.max_attempts),
                &ms(s.retention),
                &(s.max_size.min(i64::MAX as u64) as i64),
                &ms(s.retry_delay),
            ],
        )?;
        Ok(())
    }

    fn lock_row(&mut self, id: i64) -> Result<()> {
        self.execute("SELECT 1 FROM queues WHERE id = $1 FOR UPDATE", &[&id])?;
        Ok(())
    }

    fn lock_shared(&mut self, names: &[&str]) -> Result<bool> {
        lock_shared(self, names)?;
        Ok(true)
    }

    fn lock_exclusive(&mut self, name: &str) -> Result<()> {
        lock_exclusive(self, name)
    }

    fn make_topic(&mut self, id: i64) -> Result<()> {
        self.execute("UPDATE queues SET is_topic = true WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn holds_messages(&mut self, id: i64) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM deliveries WHERE queue_id = $1 LIMIT 1",
                &[&id],
            )?
            .is_some())
    }

    fn add_subscription(&mut self, topic: i64, queue: i64) -> Result<bool> {
        let now = self.now;
        let added = self.execute(
            "INSERT INTO subscriptions (topic_id, queue_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (topic_id, queue_id) DO NOTHING",
            &[&topic, &queue, &now],
        )?;
        Ok(added > 0)
    }

    fn remove_subscription(&mut self, topic: i64, queue: i64) -> Result<bool> {
        let removed = self.execute(
            "DELETE FROM subscriptions WHERE topic_id = $1 AND queue_id = $2",
            &[&topic, &queue],
        )?;
        Ok(removed > 0)
    }

    fn record_schema(&mut self, queue_id: i64, version: i64, schema: Option<&str>) -> Result<()> {
        let now = self.now;
        self.execute(
            "INSERT INTO schemas (queue_id, version, created_at, schema) VALUES ($1, $2, $3, $4)",
            &[&queue_id, &version, &now, &schema],
        )?;
        Ok(())
    }

    fn inserting(
        &mut self,
        fanout: &Fanout<'_>,
        fill: &mut dyn FnMut(&mut dyn Inserter) -> Result<()>,
    ) -> Result<Tally> {
        publish::inserting(self, fanout, fill)
    }
}

/// Takes shared locks on these queue names until the transaction ends:
/// writers that add deliveries (publish, replay) hold them, so a queue
/// cannot be deleted or turned into a topic, nor a topic's subscriptions
/// change, under them. Advisory locks live in the server's memory: taking
/// one writes no row, so concurrent publishers do not contend.
pub(crate) fn lock_shared(tx: &mut Tx<'_>, names: &[&str]) -> Result<()> {
    let prefix = lock_prefix(tx);
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended($1 || name, 0))
         FROM unnest($2::text[]) AS t(name) ORDER BY name",
        &[&prefix, &names],
    )?;
    Ok(())
}

/// Takes the exclusive lock of a queue name (see [`lock_shared`]) until the
/// transaction ends: for deleting it, making it a topic, or changing a
/// topic's subscriptions.
pub(crate) fn lock_exclusive(tx: &mut Tx<'_>, name: &str) -> Result<()> {
    let prefix = lock_prefix(tx);
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || $2::text, 0))",
        &[&prefix, &name],
    )?;
    Ok(())
}

fn lock_prefix(conn: &Conn) -> String {
    format!("spool queue {} ", conn.target.schema)
}
