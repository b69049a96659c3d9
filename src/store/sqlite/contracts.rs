//! The JSON Schemas of queues and topics (`schemas`, one row per version):
//! the statements (the rules are in [`crate::store::ops::contracts`], the
//! compiled-contract cache in [`crate::store::checks`]).

use rusqlite::{Connection, OptionalExtension};

use crate::store::Result;

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
