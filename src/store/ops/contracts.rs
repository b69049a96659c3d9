//! The JSON Schemas of queues and topics (one row per version; the newest is
//! in force), and the checks a publish applies (see [`crate::store::checks`]
//! for the compiled-contract cache).
//!
//! Concurrency: a schema change takes the exclusive lock of the queue's name
//! (see [`PublishTx::lock_exclusive`]), which every publish and replay into
//! that queue holds shared until it commits. So a publish either commits
//! before the change (checked against the old version) or reads the new
//! version: messages committed after a change always meet it. On SQLite,
//! writers take turns and the locks are nothing.

use crate::contract::Contract;
use crate::store::backend::{PublishTx, ReadTx, unknown_queue};
use crate::store::checks::{self, Check, ContractCache, PublishChecks, same_schema, wanted};
use crate::store::error::Result;
use crate::store::types::{QueueRow, SchemaChange, SchemaVersion};

/// Applies a schema change to a queue whose name lock the caller holds
/// exclusively. Returns the new version's number, or `None` when nothing
/// changed (the same schema again, or `--no-schema` on a queue without one).
pub(crate) fn apply(
    tx: &mut (impl PublishTx + ?Sized),
    queue: i64,
    change: SchemaChange<'_>,
) -> Result<Option<i64>> {
    let Some(wanted) = wanted(change) else {
        return Ok(None);
    };
    let latest = tx.latest_schema(queue)?;
    let text = latest.as_ref().and_then(|(_, text)| text.as_deref());
    if same_schema(text, wanted) {
        return Ok(None);
    }
    let version = latest.map_or(1, |(v, _)| v + 1);
    tx.record_schema(queue, version, wanted.map(Contract::text))?;
    Ok(Some(version))
}

/// The checks for publishing to `origin` (a queue, or a topic delivering to
/// `targets`). The caller holds the name locks of all of them.
pub(crate) fn for_publish(
    tx: &mut (impl PublishTx + ?Sized),
    cache: &mut ContractCache,
    origin: &QueueRow,
    targets: &[QueueRow],
) -> Result<PublishChecks> {
    PublishChecks::of(origin, targets, |queue| check_for(tx, cache, queue))
}

/// The contract in force for a queue, compiled once per `cache` and version.
pub(crate) fn check_for(
    tx: &mut (impl ReadTx + ?Sized),
    cache: &mut ContractCache,
    queue: &QueueRow,
) -> Result<Option<Check>> {
    let Some((version, Some(text))) = tx.latest_schema(queue.id)? else {
        return Ok(None);
    };
    checks::check(cache, queue, version, || Ok(text)).map(Some)
}

/// Every version of the schema of queue or topic `name`, oldest first.
pub(crate) fn schema_history(
    tx: &mut (impl ReadTx + ?Sized),
    name: &str,
) -> Result<Vec<SchemaVersion>> {
    let Some(row) = tx.queue(name)? else {
        return Err(unknown_queue(tx, name));
    };
    tx.schema_versions(row.id)
}

/// The queue whose schema would refuse a raw body published to `name`:
/// `name` itself, or for a topic the topic or one of its subscribers.
/// `None` when no schema is in force there (or `name` does not exist yet).
pub(crate) fn schema_holder(tx: &mut (impl ReadTx + ?Sized), name: &str) -> Result<Option<String>> {
    let Some(origin) = tx.queue(name)? else {
        return Ok(None);
    };
    let mut candidates = vec![origin.clone()];
    if origin.is_topic {
        candidates.extend(tx.subscribers(origin.id)?);
    }
    for q in candidates {
        if let Some((_, Some(_))) = tx.latest_schema(q.id)? {
            return Ok(Some(q.name));
        }
    }
    Ok(None)
}
