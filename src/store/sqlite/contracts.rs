//! The JSON Schemas of queues and topics (`schemas`, one row per version),
//! and the compiled contracts a publish or a replay checks messages against.
//!
//! A schema is compiled when it is set (by the command, before the database
//! is opened) and again, once per process and version, when a publish first
//! needs it: [`ContractCache`] keeps compiled contracts by queue and version,
//! so the batches of `publish --stream` read only the current version numbers
//! at each commit, and a schema set meanwhile applies from the next commit on.

use rusqlite::{Connection, OptionalExtension};

use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::contract::Contract;
use crate::store::checks::{Check, ContractCache, PublishChecks, compiled, same_schema, wanted};
use crate::store::types::{SchemaChange, SchemaVersion};
use crate::store::{Result, SqliteStore};

/// The latest version of a queue's schema: its number and text (`None` when
/// that version removed the schema). `None` when it never had one.
pub(crate) fn latest(conn: &Connection, queue_id: i64) -> Result<Option<(i64, Option<String>)>> {
    Ok(conn
        .prepare_cached(
            "SELECT version, schema FROM schemas WHERE queue_id = ?1 ORDER BY version DESC LIMIT 1",
        )?
        .query_row([queue_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The version number of the schema in force, if the queue has one.
pub(crate) fn current_version(conn: &Connection, queue_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT version, schema IS NOT NULL FROM schemas WHERE queue_id = ?1
             ORDER BY version DESC LIMIT 1",
        )?
        .query_row([queue_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
        })
        .optional()?
        .and_then(|(version, set)| set.then_some(version)))
}

/// Records a new version (`None`: the schema was removed) and returns its number.
fn record(tx: &Tx<'_>, queue_id: i64, schema: Option<&str>) -> Result<i64> {
    let version = latest(&tx.tx, queue_id)?.map_or(1, |(v, _)| v + 1);
    tx.tx
        .prepare_cached(
            "INSERT INTO schemas (queue_id, version, created_at, schema) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute((queue_id, version, tx.now, schema))?;
    Ok(version)
}

/// True when `contract` is the schema in force (as JSON: layout and key
/// order do not count), or, for `None`, when no schema is in force.
pub(crate) fn is_current(
    conn: &Connection,
    queue_id: i64,
    contract: Option<&Contract>,
) -> Result<bool> {
    let text = latest(conn, queue_id)?.and_then(|(_, text)| text);
    Ok(same_schema(text.as_deref(), contract))
}

/// Applies a schema change to a queue. Returns the new version's number, or
/// `None` when nothing changed (the same schema again, or `--no-schema` on a
/// queue without one).
pub(crate) fn apply(tx: &Tx<'_>, queue_id: i64, change: SchemaChange<'_>) -> Result<Option<i64>> {
    let Some(wanted) = wanted(change) else {
        return Ok(None);
    };
    if is_current(&tx.tx, queue_id, wanted)? {
        return Ok(None);
    }
    record(tx, queue_id, wanted.map(Contract::text)).map(Some)
}

/// The contract in force for a queue, compiled once per process and version.
pub(crate) fn check_for(
    conn: &Connection,
    cache: &mut ContractCache,
    queue: &QueueRow,
) -> Result<Option<Check>> {
    let Some(version) = current_version(conn, queue.id)? else {
        return Ok(None);
    };
    let contract = compiled(cache, (queue.id, &queue.name), version, || {
        Ok(conn
            .prepare_cached("SELECT schema FROM schemas WHERE queue_id = ?1 AND version = ?2")?
            .query_row((queue.id, version), |r| r.get(0))?)
    })?;
    Ok(Some(Check {
        queue: queue.name.clone(),
        version,
        contract,
    }))
}

/// The checks for publishing to `origin` (a queue, or a topic delivering to
/// `targets`).
pub(crate) fn for_publish(
    conn: &Connection,
    cache: &mut ContractCache,
    origin: &QueueRow,
    targets: &[QueueRow],
) -> Result<PublishChecks> {
    let mut out = PublishChecks::default();
    if origin.is_topic {
        out.checks.extend(check_for(conn, cache, origin)?);
    }
    for target in targets {
        let check = check_for(conn, cache, target)?;
        out.versions.push(check.as_ref().map(|c| c.version));
        out.checks.extend(check);
    }
    Ok(out)
}

impl SqliteStore {
    /// Every version of the schema of queue or topic `name`, oldest first.
    pub fn schema_history(&self, name: &str) -> Result<Vec<SchemaVersion>> {
        let Some(row) = queues::lookup(&self.conn, name)? else {
            return Err(self.unknown_queue(name));
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT version, created_at, schema FROM schemas WHERE queue_id = ?1 ORDER BY version",
        )?;
        let rows = stmt
            .query_map([row.id], |r| {
                Ok(SchemaVersion {
                    version: r.get(0)?,
                    created_at: r.get(1)?,
                    schema: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The queue whose schema would refuse a raw body published to `name`:
    /// `name` itself, or for a topic the topic or one of its subscribers.
    /// `None` when no schema is in force there (or `name` does not exist yet).
    pub fn schema_holder(&self, name: &str) -> Result<Option<String>> {
        let Some(origin) = queues::lookup(&self.conn, name)? else {
            return Ok(None);
        };
        let mut candidates = vec![origin.clone()];
        if origin.is_topic {
            candidates.extend(queues::subscribers(&self.conn, origin.id)?);
        }
        for q in candidates {
            if current_version(&self.conn, q.id)?.is_some() {
                return Ok(Some(q.name));
            }
        }
        Ok(None)
    }
}
