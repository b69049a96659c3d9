//! The JSON Schemas of queues and topics on PostgreSQL (`schemas`, one row
//! per version): the statements (the rules, and why a schema change takes
//! the name lock, are in [`crate::store::ops::contracts`]; the compiled
//! contracts are cached per connection, see [`crate::store::checks`]).

use super::{Conn, RowExt};
use crate::store::checks::Check;
use crate::store::error::{Error, Result};

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
