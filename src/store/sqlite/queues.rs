//! Queue and topic rows: lookup, creation on first use, settings.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row};

use super::publish;
use super::tx::Tx;
use crate::store::backend::PublishTx;
use crate::store::ops::publish::{Fanout, Inserter, Tally};
use crate::store::{Error, Result, Settings, ms};

pub(crate) use crate::store::types::QueueRow;

const COLUMNS: &str = "id, name, is_topic, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, n_acked";

fn from_row(row: &Row<'_>) -> rusqlite::Result<QueueRow> {
    let dur = |i| {
        row.get::<_, i64>(i)
            .map(|v| Duration::from_millis(v.max(0) as u64))
    };
    Ok(QueueRow {
        id: row.get(0)?,
        name: row.get(1)?,
        is_topic: row.get(2)?,
        settings: Settings {
            visibility: dur(3)?,
            max_attempts: row.get(4)?,
            retention: dur(5)?,
            max_size: row.get::<_, i64>(6)? as u64,
            retry_delay: dur(7)?,
        },
        acked: row.get(8)?,
    })
}

/// The queue or topic named `name`, if it exists.
pub(crate) fn lookup(conn: &Connection, name: &str) -> Result<Option<QueueRow>> {
    let sql = format!("SELECT {COLUMNS} FROM queues WHERE name = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([name], from_row)
        .optional()?)
}

/// The queue or topic with this id.
pub(crate) fn by_id(conn: &Connection, id: i64) -> Result<Option<QueueRow>> {
    let sql = format!("SELECT {COLUMNS} FROM queues WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// The queues subscribed to a topic, by name.
pub(crate) fn subscribers(conn: &Connection, topic_id: i64) -> Result<Vec<QueueRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM queues WHERE id IN (SELECT queue_id FROM subscriptions WHERE topic_id = ?1) ORDER BY name"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map([topic_id], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Inserts a queue with `settings`; the caller checked that the name is free.
pub(crate) fn insert(tx: &Tx<'_>, name: &str, settings: &Settings) -> Result<QueueRow> {
    if crate::parse::queue_name(name).is_err() {
        return Err(Error::BadName {
            name: name.to_owned(),
        });
    }
    insert_row(tx, name, settings)
}

fn insert_row(tx: &Tx<'_>, name: &str, settings: &Settings) -> Result<QueueRow> {
    tx.tx
        .prepare_cached(
            "INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute((
            name,
            ms(settings.visibility),
            settings.max_attempts,
            ms(settings.retention),
            settings.max_size as i64,
            ms(settings.retry_delay),
            tx.now,
        ))?;
    Ok(QueueRow {
        id: tx.tx.last_insert_rowid(),
        name: name.to_owned(),
        is_topic: false,
        settings: *settings,
        acked: 0,
    })
}

/// The queue named `name`, created with default settings if it does not exist.
pub(crate) fn ensure(tx: &Tx<'_>, name: &str) -> Result<QueueRow> {
    match lookup(&tx.tx, name)? {
        Some(row) => Ok(row),
        None => insert(tx, name, &Settings::default()),
    }
}

impl PublishTx for Tx<'_> {
    fn insert_queue(&mut self, name: &str, settings: &Settings) -> Result<Option<QueueRow>> {
        insert_row(self, name, settings).map(Some)
    }

    fn write_settings(&mut self, id: i64, s: &Settings) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE queues SET visibility_ms = ?2, max_attempts = ?3, retention_ms = ?4,
                   max_size = ?5, retry_delay_ms = ?6 WHERE id = ?1",
            )?
            .execute((
                id,
                ms(s.visibility),
                s.max_attempts,
                ms(s.retention),
                s.max_size as i64,
                ms(s.retry_delay),
            ))?;
        Ok(())
    }

    // Writers take turns (`BEGIN IMMEDIATE`): nothing to lock.
    fn lock_row(&mut self, _id: i64) -> Result<()> {
        Ok(())
    }

    fn lock_shared(&mut self, _names: &[&str]) -> Result<bool> {
        Ok(false)
    }

    fn lock_exclusive(&mut self, _name: &str) -> Result<()> {
        Ok(())
    }

    fn make_topic(&mut self, id: i64) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE queues SET is_topic = 1 WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    // The per-state counters are exact, so this reads one row.
    fn holds_messages(&mut self, id: i64) -> Result<bool> {
        let held: i64 = self
            .tx
            .prepare_cached(
                "SELECT n_ready + n_delayed + n_leased + n_acked + n_dead + n_held
                 FROM queues WHERE id = ?1",
            )?
            .query_row([id], |r| r.get(0))?;
        Ok(held > 0)
    }

    fn add_subscription(&mut self, topic: i64, queue: i64) -> Result<bool> {
        let added = self
            .tx
            .prepare_cached(
                "INSERT INTO subscriptions (topic_id, queue_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic_id, queue_id) DO NOTHING",
            )?
            .execute((topic, queue, self.now))?;
        Ok(added > 0)
    }

    fn remove_subscription(&mut self, topic: i64, queue: i64) -> Result<bool> {
        let removed = self
            .tx
            .prepare_cached("DELETE FROM subscriptions WHERE topic_id = ?1 AND queue_id = ?2")?
            .execute((topic, queue))?;
        Ok(removed > 0)
    }

    fn record_schema(&mut self, queue_id: i64, version: i64, schema: Option<&str>) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO schemas (queue_id, version, created_at, schema) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute((queue_id, version, self.now, schema))?;
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
