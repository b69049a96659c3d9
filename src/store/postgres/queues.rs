//! Queue and topic rows: lookup (the statements that create and change them
//! are the `PublishTx` implementation in `publish.rs`).

use std::time::Duration;

use postgres::Row;

use super::{Conn, RowExt};
use crate::store::error::Result;
use crate::store::flow::Flow;
use crate::store::types::Settings;

pub(crate) use crate::store::types::QueueRow;

pub(super) const COLUMNS: &str = "id, name, is_topic, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, flow, rate_full_at, schedule_at";

pub(super) fn from_row(row: &Row) -> Result<QueueRow> {
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
            flow: Flow::from_stored(row.at::<Option<&str>>(8)?),
        },
        acked: 0,
        rate_full_at: row.at(9)?,
        may_expire: true,
        schedule_at: row.at(10)?,
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

pub(crate) use crate::store::ops::queues::ensure;
