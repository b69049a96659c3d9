//! Queue and topic rows: lookup (the statements that create and change them
//! are the `PublishTx` implementation in `publish.rs`).

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row};

use crate::store::flow::Flow;
use crate::store::{Result, Settings};

pub(crate) use crate::store::types::QueueRow;

const COLUMNS: &str = "id, name, is_topic, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, n_acked, flow, rate_full_at, may_expire, schedule_at";

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
            flow: Flow::from_stored(row.get_ref(9)?.as_str_or_null()?),
        },
        acked: row.get(8)?,
        rate_full_at: row.get(10)?,
        may_expire: row.get(11)?,
        schedule_at: row.get(12)?,
    })
}

/// Notes that a delivery of queue `id` may have an expiry (see
/// [`QueueRow::may_expire`]); whatever writes an expiry calls it, in the
/// same transaction.
pub(crate) fn mark_expiring(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("UPDATE queues SET may_expire = 1 WHERE id = ?1 AND may_expire = 0")?
        .execute([id])?;
    Ok(())
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

pub(crate) use crate::store::ops::queues::ensure;
