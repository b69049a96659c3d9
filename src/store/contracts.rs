//! The JSON Schemas of queues and topics (`schemas`, one row per version),
//! and the compiled contracts a publish or a replay checks messages against.
//!
//! A schema is compiled when it is set (by the command, before the database
//! is opened) and again, once per process and version, when a publish first
//! needs it: [`ContractCache`] keeps compiled contracts by queue and version,
//! so the batches of `publish --stream` read only the current version numbers
//! at each commit, and a schema set meanwhile applies from the next commit on.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};

use super::queues::{self, QueueRow};
use super::tx::Tx;
use super::{Error, Result, Store};
use crate::contract::Contract;

/// Compiled contracts by (queue id, schema version).
pub(crate) type ContractCache = HashMap<(i64, i64), Arc<Contract>>;

/// One version of a queue's schema, as `queue show` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    /// 1 for the first schema the queue had, then one more per change.
    pub version: i64,
    /// When it was set (ms since the epoch).
    pub created_at: i64,
    /// The schema text; `None` for a version that removed the schema.
    pub schema: Option<String>,
}

/// What `queue set` does to a queue's schema.
#[derive(Debug, Clone, Copy, Default)]
pub enum SchemaChange<'a> {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Check messages against this schema from now on.
    Set(&'a Contract),
    /// Check nothing from now on (`--no-schema`).
    Remove,
}

/// A contract in force for one queue or topic, as a publish checks it.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub queue: String,
    pub version: i64,
    pub contract: Arc<Contract>,
}

impl Check {
    /// Checks one body; a broken rule becomes [`Error::Invalid`] (for message
    /// `id`, when the message already has one).
    pub fn body(&self, value: &serde_json::Value, id: Option<i64>) -> Result<()> {
        self.contract
            .check(value)
            .map_err(|violation| Error::Invalid {
                id,
                queue: self.queue.clone(),
                version: self.version,
                violation,
            })
    }

    /// Checks stored message `id` (its body and raw flag as stored), for a
    /// replay into this check's queue: raw text and invalid JSON break it too.
    pub fn stored(&self, id: i64, body: &[u8], raw: bool) -> Result<()> {
        let value = crate::contract::parse_body(body, raw).map_err(|violation| Error::Invalid {
            id: Some(id),
            queue: self.queue.clone(),
            version: self.version,
            violation,
        })?;
        self.body(&value, Some(id))
    }
}

/// The schema a change asks for: `None` to leave it as it is, `Some(None)`
/// to remove it. The same on every backend.
pub(crate) fn wanted(change: SchemaChange<'_>) -> Option<Option<&Contract>> {
    match change {
        SchemaChange::Keep => None,
        SchemaChange::Set(c) => Some(Some(c)),
        SchemaChange::Remove => Some(None),
    }
}

/// True when `contract` is the schema whose text is in force (as JSON:
/// layout and key order do not count), or, for `None`, when none is.
pub(crate) fn same_schema(in_force: Option<&str>, contract: Option<&Contract>) -> bool {
    match (in_force, contract) {
        (None, None) => true,
        (Some(text), Some(c)) => c.same_text(text),
        _ => false,
    }
}

/// The compiled contract of version `version` of `queue`'s schema, from the
/// cache or compiled from `text()` (and kept). A stored schema that does not
/// compile is [`Error::BrokenSchema`].
pub(crate) fn compiled(
    cache: &mut ContractCache,
    queue: (i64, &str),
    version: i64,
    text: impl FnOnce() -> Result<String>,
) -> Result<Arc<Contract>> {
    if let Some(c) = cache.get(&(queue.0, version)) {
        return Ok(Arc::clone(c));
    }
    let compiled = Contract::compile(&text()?).map_err(|reason| Error::BrokenSchema {
        queue: queue.1.to_owned(),
        version,
        reason,
    })?;
    let compiled = Arc::new(compiled);
    cache.insert((queue.0, version), Arc::clone(&compiled));
    Ok(compiled)
}

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

/// What a publish checks: every contract a message must meet (the topic's
/// own and each receiving queue's), and per receiving queue the version its
/// deliveries record.
#[derive(Debug, Default)]
pub(crate) struct PublishChecks {
    pub checks: Vec<Check>,
    pub versions: Vec<Option<i64>>,
}

impl PublishChecks {
    /// Checks a message published to `origin` against every schema in
    /// force, parsing it once: a raw body is [`Error::RawBody`], a broken
    /// rule [`Error::Invalid`] naming the first schema it breaks.
    pub fn message(&self, origin: &str, body: &[u8], raw: bool) -> Result<()> {
        let Some(first) = self.checks.first() else {
            return Ok(());
        };
        if raw {
            return Err(Error::RawBody {
                name: origin.to_owned(),
                holder: first.queue.clone(),
            });
        }
        let value =
            crate::contract::parse_body(body, false).map_err(|violation| Error::Invalid {
                id: None,
                queue: first.queue.clone(),
                version: first.version,
                violation,
            })?;
        for check in &self.checks {
            check.body(&value, None)?;
        }
        Ok(())
    }
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

impl Store {
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
