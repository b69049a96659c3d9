//! A whole spool database as rows, the same on both backends: what
//! `export` reads from SQLite and `postgres::import` writes into PostgreSQL
//! (`spool migrate`). Each [`Table`] names its columns once; a row is one
//! [`Value`] per column, raw as stored (states as numbers, lease tokens,
//! times in ms).

use super::error::Result;

/// One stored value; `None` is NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer column.
    Int(Option<i64>),
    /// A boolean (0 or 1 in SQLite).
    Bool(bool),
    /// A text column.
    Text(Option<String>),
    /// A blob (`bytea`).
    Bytes(Vec<u8>),
}

impl Value {
    /// The integer; 0 for NULL or a value of another kind.
    pub fn int(&self) -> i64 {
        self.int_or_null().unwrap_or(0)
    }

    /// The integer, or `None`.
    pub fn int_or_null(&self) -> Option<i64> {
        match self {
            Value::Int(n) => *n,
            _ => None,
        }
    }

    /// The text, or `None`.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => t.as_deref(),
            _ => None,
        }
    }

    /// The blob (empty for another kind).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Value::Bytes(b) => b,
            _ => &[],
        }
    }
}

/// One row: a [`Value`] per column of its [`Table`], in order.
pub type Row = Vec<Value>;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bigint`.
    Int,
    /// `bool`.
    Bool,
    /// `text`.
    Text,
    /// `bytea`.
    Bytes,
}

use Kind::{Bool, Bytes, Int, Text};

/// A table as copied: its name on PostgreSQL and its columns, in the order
/// rows hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The table on PostgreSQL.
    pub name: &'static str,
    /// Column names and kinds.
    pub columns: &'static [(&'static str, Kind)],
}

/// Queues and topics, by id. Its rows carry nine more integers, which
/// PostgreSQL keeps in `stats` instead: `published_total`, the stored
/// counters `n_ready` … `n_held` (in [`super::State`] order), then
/// `expired_total` and `dropped_total`.
pub const QUEUES: Table = Table {
    name: "queues",
    columns: &[
        ("id", Int),
        ("name", Text),
        ("is_topic", Bool),
        ("visibility_ms", Int),
        ("max_attempts", Int),
        ("retention_ms", Int),
        ("max_size", Int),
        ("retry_delay_ms", Int),
        ("created_at", Int),
        ("flow", Text),
        ("rate_full_at", Int),
        ("schedule_at", Int),
    ],
};

/// Recurring schedules, by id (their targets are queue ids).
pub const SCHEDULES: Table = Table {
    name: "schedules",
    columns: &[
        ("id", Int),
        ("name", Text),
        ("target_id", Int),
        ("every_ms", Int),
        ("cron", Text),
        ("tz", Text),
        ("start_ms", Int),
        ("catch_up", Text),
        ("body", Bytes),
        ("raw", Bool),
        ("headers", Text),
        ("priority", Int),
        ("grp", Text),
        ("ttl_ms", Int),
        ("paused", Bool),
        ("last_at", Int),
        ("next_at", Int),
        ("last_error", Text),
        ("created_at", Int),
    ],
};

/// Subscriptions of queues to topics.
pub const SUBSCRIPTIONS: Table = Table {
    name: "subscriptions",
    columns: &[("topic_id", Int), ("queue_id", Int), ("created_at", Int)],
};

/// The versions of every queue's JSON Schema (`schema` NULL: removed).
pub const SCHEMAS: Table = Table {
    name: "schemas",
    columns: &[
        ("queue_id", Int),
        ("version", Int),
        ("created_at", Int),
        ("schema", Text),
    ],
};

/// The message heading each ordered group of a queue (`groups` in SQLite).
pub const GROUPS: Table = Table {
    name: "group_heads",
    columns: &[("queue_id", Int), ("grp", Text), ("head_id", Int)],
};

/// Publishes and acks per queue and second, for the last hour. Not copied
/// as it is: PostgreSQL keeps them as `stats` rows.
pub const RATES: Table = Table {
    name: "rates",
    columns: &[
        ("queue_id", Int),
        ("second", Int),
        ("published", Int),
        ("acked", Int),
    ],
};

/// Messages, each stored once however many queues hold it.
pub const MESSAGES: Table = Table {
    name: "messages",
    columns: &[
        ("id", Int),
        ("origin_id", Int),
        ("key", Text),
        ("published_at", Int),
        ("raw", Bool),
        ("headers", Text),
        ("body", Bytes),
    ],
};

/// Deliveries: one message in one queue, in any state.
pub const DELIVERIES: Table = Table {
    name: "deliveries",
    columns: &[
        ("msg_id", Int),
        ("queue_id", Int),
        ("state", Int),
        ("priority", Int),
        ("visible_at", Int),
        ("attempts", Int),
        ("lease", Int),
        ("grp", Text),
        ("done_at", Int),
        ("schema_version", Int),
        ("expires_at", Int),
        ("ttl_ms", Int),
        ("dead_reason", Text),
        ("last_error", Text),
    ],
};

/// Where an export goes. Called in order: [`ExportSink::ids`] once, then
/// [`ExportSink::rows`] for [`QUEUES`], [`SUBSCRIPTIONS`], [`SCHEDULES`],
/// [`SCHEMAS`], [`GROUPS`] and [`RATES`] (each at once), then for [`MESSAGES`] (by id)
/// and [`DELIVERIES`] (by queue and message) in chunks. A table without
/// rows is not called for. An error from the sink ends the export with it.
pub trait ExportSink {
    /// The id the next message gets, and the highest queue id ever given
    /// (deleted queues included), so the target never reuses an id.
    fn ids(&mut self, next_message_id: i64, last_queue_id: i64) -> Result<()>;
    /// Rows of `table`.
    fn rows(&mut self, table: Table, rows: &[Row]) -> Result<()>;
}
