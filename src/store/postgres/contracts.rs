//! The JSON Schemas of queues and topics on PostgreSQL (`schemas`, one row
//! per version): the counterpart of `store::contracts`, whose backend-neutral
//! parts (the compiled-contract cache, the checks of a publish) it reuses.
//!
//! Concurrency: a schema change takes the exclusive lock of the queue's name
//! (see [`queues::lock_exclusive`]), which every publish and replay into that
//! queue holds shared until it commits. So a publish either commits before
//! the change (checked against the old version) or reads the new version:
//! messages committed after a change always meet it, as on SQLite where
//! writers take turns.

use super::queues::{self, QueueRow};
use super::tx::Tx;
use super::{Conn, PostgresStore, RowExt};
use crate::store::checks::{self, Check, PublishChecks, compiled, same_schema};
use crate::store::error::{Error, Result};
use crate::store::types::{SchemaChange, SchemaVersion};

/// The latest version of a queue's schema: its number and text (`None` when
/// that version removed the schema). `None` when it never had one.
pub(crate) fn latest(conn: &mut Conn, queue_id: i64) -> Result<Option<(i64, Option<String>)>> {
    conn.query_opt(
        "SELECT version, schema FROM schemas WHERE queue_id = $1 ORDER BY version DESC LIMIT 1",
        &[&queue_id],
    )?
    .map(|r| Ok((r.at(0)?, r.at(1)?)))
    .transpose()
}

/// The version number of the schema in force, if the queue has one.
pub(crate) fn current_version(conn: &mut Conn, queue_id: i64) -> Result<Option<i64>> {
    Ok(latest(conn, queue_id)?.and_then(|(version, text)| text.map(|_| version)))
}

/// True when `contract` is the schema in force (see [`same_schema`]).
pub(crate) fn latest_is(
    conn: &mut Conn,
    queue_id: i64,
    contract: Option<&crate::contract::Contract>,
) -> Result<bool> {
    let text = latest(conn, queue_id)?.and_then(|(_, text)| text);
    Ok(same_schema(text.as_deref(), contract))
}

/// Applies a schema change to a queue whose name lock the caller holds
/// exclusively. Returns the new version's number, or `None` when nothing
/// changed (the same schema again, or a removal where none is in force).
pub(crate) fn apply(
    tx: &mut Tx<'_>,
    queue_id: i64,
    change: SchemaChange<'_>,
) -> Result<Option<i64>> {
    let Some(wanted) = checks::wanted(change) else {
        return Ok(None);
    };
    let latest = latest(tx, queue_id)?;
    let text = latest.as_ref().and_then(|(_, text)| text.as_deref());
    if same_schema(text, wanted) {
        return Ok(None);
    }
    let version = latest.map_or(1, |(v, _)| v + 1);
    let now = tx.now;
    tx.execute(
        "INSERT INTO schemas (queue_id, version, created_at, schema) VALUES ($1, $2, $3, $4)",
        &[&queue_id, &version, &now, &wanted.map(|c| c.text())],
    )?;
    Ok(Some(version))
}

/// The contract in force for a queue, compiled once per connection and version.
pub(crate) fn check_for(conn: &mut Conn, queue: &QueueRow) -> Result<Option<Check>> {
    let Some((version, Some(text))) = latest(conn, queue.id)? else {
        return Ok(None);
    };
    let contract = compiled(
        &mut conn.contracts,
        (queue.id, &queue.name),
        version,
        || Ok(text),
    )?;
    Ok(Some(Check {
        queue: queue.name.clone(),
        version,
        contract,
    }))
}

/// The checks for publishing to `origin` (a queue, or a topic delivering to
/// `targets`). The caller holds the name locks of all of them.
pub(crate) fn for_publish(
    conn: &mut Conn,
    origin: &QueueRow,
    targets: &[QueueRow],
) -> Result<PublishChecks> {
    let mut out = PublishChecks::default();
    if origin.is_topic {
        out.checks.extend(check_for(conn, origin)?);
    }
    for target in targets {
        let check = check_for(conn, target)?;
        out.versions.push(check.as_ref().map(|c| c.version));
        out.checks.extend(check);
    }
    Ok(out)
}

/// Checks stored message `id` against `check`, for a replay into its queue.
pub(crate) fn check_stored(conn: &mut Conn, check: &Check, id: i64) -> Result<()> {
    let row = conn.query_opt("SELECT body, raw FROM messages WHERE id = $1", &[&id])?;
    let Some(row) = row else {
        return Err(Error::Postgres(format!(
            "message {id} vanished while replaying"
        )));
    };
    check.stored(id, row.at(0)?, row.at(1)?)
}

impl PostgresStore {
    /// Every version of the schema of queue or topic `name`, oldest first.
    pub fn schema_history(&self, name: &str) -> Result<Vec<SchemaVersion>> {
        let row = queues::lookup(&mut self.conn.borrow_mut(), name)?;
        let Some(row) = row else {
            return Err(self.unknown_queue(name));
        };
        let rows = self.conn.borrow_mut().query(
            "SELECT version, created_at, schema FROM schemas WHERE queue_id = $1 ORDER BY version",
            &[&row.id],
        )?;
        rows.iter()
            .map(|r| {
                Ok(SchemaVersion {
                    version: r.at(0)?,
                    created_at: r.at(1)?,
                    schema: r.at(2)?,
                })
            })
            .collect()
    }

    /// The queue whose schema would refuse a raw body published to `name`:
    /// `name` itself, or for a topic the topic or one of its subscribers.
    /// `None` when no schema is in force there (or `name` does not exist yet).
    pub fn schema_holder(&self, name: &str) -> Result<Option<String>> {
        let conn = &mut self.conn.borrow_mut();
        let Some(origin) = queues::lookup(conn, name)? else {
            return Ok(None);
        };
        let mut candidates = vec![origin.clone()];
        if origin.is_topic {
            candidates.extend(queues::subscribers(conn, origin.id)?);
        }
        for q in candidates {
            if current_version(conn, q.id)?.is_some() {
                return Ok(Some(q.name));
            }
        }
        Ok(None)
    }
}
