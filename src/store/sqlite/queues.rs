//! Queue and topic rows: lookup, creation on first use, settings.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row};

use super::contracts;
use super::tx::Tx;
use crate::contract::Contract;
use crate::store::types::SchemaChange;
use crate::store::types::{Created, QueueSet};
use crate::store::{Error, Result, Settings, SettingsPatch, SqliteStore, ms};

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

fn write_settings(tx: &Tx<'_>, id: i64, s: &Settings) -> Result<()> {
    tx.tx
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

impl SqliteStore {
    /// Creates a queue with the given settings (the rest default) and, if
    /// given, a JSON Schema (its version 1). An existing queue with the same
    /// settings, and the same schema or none given, is left alone; one with
    /// other settings or another schema is [`Error::SettingsConflict`].
    pub fn create_queue(
        &mut self,
        name: &str,
        patch: &SettingsPatch,
        schema: Option<&Contract>,
    ) -> Result<Created> {
        let tx = Tx::begin(&mut self.conn)?;
        let outcome = match lookup(&tx.tx, name)? {
            Some(row) if row.is_topic => return Err(topic_error(&tx.tx, row)?),
            Some(row) => {
                let same_schema =
                    schema.is_none() || contracts::is_current(&tx.tx, row.id, schema)?;
                if patch.apply(row.settings) != row.settings || !same_schema {
                    return Err(Error::SettingsConflict {
                        name: name.to_owned(),
                    });
                }
                Created::Existed
            }
            None => {
                let row = insert(&tx, name, &patch.apply(Settings::default()))?;
                if let Some(c) = schema {
                    contracts::apply(&tx, row.id, SchemaChange::Set(c))?;
                }
                Created::New
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Changes settings and the schema of an existing queue. A topic takes a
    /// schema (checked before its messages fan out) but no settings.
    pub fn set_queue(
        &mut self,
        name: &str,
        patch: &SettingsPatch,
        schema: SchemaChange<'_>,
    ) -> Result<QueueSet> {
        let tx = Tx::begin(&mut self.conn)?;
        let Some(row) = lookup(&tx.tx, name)? else {
            drop(tx);
            return Err(self.unknown_queue(name));
        };
        let schema_only = patch.is_empty() && !matches!(schema, SchemaChange::Keep);
        if row.is_topic && !schema_only {
            return Err(topic_error(&tx.tx, row)?);
        }
        let settings = patch.apply(row.settings);
        if !row.is_topic {
            write_settings(&tx, row.id, &settings)?;
        }
        let schema_version = contracts::apply(&tx, row.id, schema)?;
        tx.commit()?;
        Ok(QueueSet {
            settings,
            schema_version,
        })
    }

    /// The settings of a queue, or `None` if no queue has this name.
    pub fn settings(&self, name: &str) -> Result<Option<Settings>> {
        Ok(lookup(&self.conn, name)?
            .filter(|row| !row.is_topic)
            .map(|row| row.settings))
    }
}

/// [`Error::NameIsTopic`] for a topic row, naming its subscribers.
pub(crate) fn topic_error(conn: &Connection, row: QueueRow) -> Result<Error> {
    let subscribers = subscribers(conn, row.id)?
        .into_iter()
        .map(|q| q.name)
        .collect();
    Ok(Error::NameIsTopic {
        name: row.name,
        subscribers,
    })
}

/// [`Error::UnknownQueue`] for `name`, with the closest existing names.
pub(crate) fn unknown(conn: &Connection, name: &str) -> Error {
    let names: Vec<String> = conn
        .prepare_cached("SELECT name FROM queues ORDER BY name")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .unwrap_or_default();
    Error::UnknownQueue {
        name: name.to_owned(),
        similar: crate::suggest::similar(name, &names),
    }
}

impl SqliteStore {
    /// The largest body a publish to `name` accepts: the queue's `max_size`,
    /// or for a topic the smallest of its subscribers' (a topic holds nothing,
    /// so its own setting does not count). A name that does not exist yet, or
    /// a topic without subscribers, gets the default.
    pub fn max_size(&self, name: &str) -> Result<u64> {
        let Some(row) = lookup(&self.conn, name)? else {
            return Ok(Settings::default().max_size);
        };
        if !row.is_topic {
            return Ok(row.settings.max_size);
        }
        let limit = subscribers(&self.conn, row.id)?
            .iter()
            .map(|sub| sub.settings.max_size)
            .min();
        Ok(limit.unwrap_or(Settings::default().max_size))
    }
}
