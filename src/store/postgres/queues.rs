//! Queue and topic rows: lookup, creation on first use, settings.

use std::time::Duration;

use postgres::Row;

use super::contracts;
use super::tx::Tx;
use super::{Conn, PostgresStore, RowExt};
use crate::contract::Contract;
use crate::store::error::{Error, Result};
use crate::store::types::{Created, QueueSet, SchemaChange, Settings, SettingsPatch, ms};

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

/// The queue named `name`, created with `settings` if it does not exist,
/// and whether this call created it. Safe against a concurrent creation of
/// the same name: one insert wins and the other reads its row.
pub(crate) fn ensure_with(
    tx: &mut Tx<'_>,
    name: &str,
    settings: &Settings,
) -> Result<(QueueRow, bool)> {
    if let Some(row) = lookup(tx, name)? {
        return Ok((row, false));
    }
    if crate::parse::queue_name(name).is_err() {
        return Err(Error::BadName {
            name: name.to_owned(),
        });
    }
    let now = tx.now;
    let sql = format!(
        "INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO NOTHING
         RETURNING {COLUMNS}"
    );
    let inserted = tx.query_opt(
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
    )?;
    match inserted {
        Some(row) => Ok((from_row(&row)?, true)),
        None => lookup(tx, name)?
            .map(|row| (row, false))
            .ok_or_else(|| Error::Postgres(format!("queue `{name}` vanished while being created"))),
    }
}

/// The queue named `name`, created with default settings if it does not exist.
pub(crate) fn ensure(tx: &mut Tx<'_>, name: &str) -> Result<QueueRow> {
    Ok(ensure_with(tx, name, &Settings::default())?.0)
}

fn write_settings(tx: &mut Tx<'_>, id: i64, s: &Settings) -> Result<()> {
    tx.execute(
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

/// [`Error::NameIsTopic`] for a topic row, naming its subscribers.
pub(crate) fn topic_error(conn: &mut Conn, row: QueueRow) -> Result<Error> {
    let subscribers = subscribers(conn, row.id)?
        .into_iter()
        .map(|q| q.name)
        .collect();
    Ok(Error::NameIsTopic {
        name: row.name,
        subscribers,
    })
}

impl PostgresStore {
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
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let (row, new) = ensure_with(&mut tx, name, &patch.apply(Settings::default()))?;
        let outcome = if new {
            // Nobody sees the queue before this commit, schema and all.
            if let Some(c) = schema {
                contracts::apply(&mut tx, row.id, SchemaChange::Set(c))?;
            }
            Created::New
        } else if row.is_topic {
            return Err(topic_error(&mut tx, row)?);
        } else {
            let same_schema = schema.is_none() || contracts::latest_is(&mut tx, row.id, schema)?;
            if patch.apply(row.settings) != row.settings || !same_schema {
                return Err(Error::SettingsConflict {
                    name: name.to_owned(),
                });
            }
            Created::Existed
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
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let changes_schema = !matches!(schema, SchemaChange::Keep);
        if changes_schema {
            // Publishes into the queue hold this lock shared to their commit.
            lock_exclusive(&mut tx, name)?;
        }
        let Some(row) = lookup(&mut tx, name)? else {
            drop(tx);
            return Err(self.unknown_queue(name));
        };
        let schema_only = patch.is_empty() && changes_schema;
        if row.is_topic && !schema_only {
            return Err(topic_error(&mut tx, row)?);
        }
        let settings = if row.is_topic {
            row.settings
        } else {
            // Lock the row so two concurrent patches both apply.
            tx.execute("SELECT 1 FROM queues WHERE id = $1 FOR UPDATE", &[&row.id])?;
            let current = lookup(&mut tx, name)?.map_or(row.settings, |r| r.settings);
            let settings = patch.apply(current);
            write_settings(&mut tx, row.id, &settings)?;
            settings
        };
        let schema_version = contracts::apply(&mut tx, row.id, schema)?;
        tx.commit()?;
        Ok(QueueSet {
            settings,
            schema_version,
        })
    }

    /// The settings of a queue, or `None` if no queue has this name.
    pub fn settings(&self, name: &str) -> Result<Option<Settings>> {
        Ok(lookup(&mut self.conn.borrow_mut(), name)?
            .filter(|row| !row.is_topic)
            .map(|row| row.settings))
    }

    /// The largest body a publish to `name` accepts: the queue's `max_size`,
    /// or for a topic the smallest of its subscribers'. A name that does not
    /// exist yet, or a topic without subscribers, gets the default.
    pub fn max_size(&self, name: &str) -> Result<u64> {
        let conn = &mut self.conn.borrow_mut();
        let Some(row) = lookup(conn, name)? else {
            return Ok(Settings::default().max_size);
        };
        if !row.is_topic {
            return Ok(row.settings.max_size);
        }
        let limit = subscribers(conn, row.id)?
            .iter()
            .map(|sub| sub.settings.max_size)
            .min();
        Ok(limit.unwrap_or(Settings::default().max_size))
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
