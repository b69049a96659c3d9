//! What the read-only views (`peek`, `stats`, `queue list`, `top`) and
//! `doctor` report, the same on both backends.

use std::path::PathBuf;

use super::types::{Delivery, Settings, State};

/// Message counts of one queue, by state as users see them (held messages
/// count as delayed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Deliverable now.
    pub ready: i64,
    /// Deliverable later (including messages held behind their group).
    pub delayed: i64,
    /// Delivered, lease still running.
    pub leased: i64,
    /// Done, kept for replay until retention removes them.
    pub acked: i64,
    /// Failed `max_attempts` times.
    pub dead: i64,
}

/// What `stats` and `queue list` show about one queue or topic.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// The queue or topic name.
    pub name: String,
    /// True for a topic (which holds no messages itself).
    pub is_topic: bool,
    /// For a topic: the queues subscribed to it, by name.
    pub subscribers: Vec<String>,
    /// For a queue: the topics it subscribes to, by name.
    pub topics: Vec<String>,
    /// The queue's settings.
    pub settings: Settings,
    /// When the queue was created (ms since the epoch).
    pub created_at: i64,
    /// Messages per state, with due delayed messages and expired leases
    /// counted where the next claim will put them.
    pub counts: Counts,
    /// Messages ever published to it (for a queue: deliveries added to it).
    pub published_total: i64,
    /// How long ago the oldest ready message was published; `None` if none is ready.
    pub oldest_ready_age_ms: Option<i64>,
    /// Messages published in the last 60 seconds.
    pub published_last_minute: i64,
    /// Messages acked in the last 60 seconds.
    pub acked_last_minute: i64,
    /// The version of its JSON Schema in force; `None` when it has none.
    pub schema_version: Option<i64>,
}

/// The database file, for `stats`.
#[derive(Debug, Clone, Default)]
pub struct DatabaseInfo {
    /// The database path.
    pub path: PathBuf,
    /// Size of the database file in bytes (0 if it does not exist).
    pub size_bytes: u64,
    /// Size of its write-ahead log in bytes (0 when there is none).
    pub wal_bytes: u64,
    /// Bytes of free pages inside the file, waiting to be reused or handed back.
    pub free_bytes: u64,
}

impl DatabaseInfo {
    /// The sizes of `path` as seen on the file system, without opening it.
    pub fn of_path(path: PathBuf) -> DatabaseInfo {
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        DatabaseInfo {
            size_bytes: size(&path),
            wal_bytes: size(std::path::Path::new(&wal)),
            free_bytes: 0,
            path,
        }
    }
}

/// One message as `peek` shows it.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The message, with a meaningless receipt (peek never leases).
    pub delivery: Delivery,
    /// Its state as users see it, with the lazy transitions applied.
    pub state: State,
    /// When its lease ends, for a leased message.
    pub lease_end: Option<i64>,
    /// When it becomes deliverable, for a delayed message.
    pub due_at: Option<i64>,
    /// When it was acked or died.
    pub done_at: Option<i64>,
}

/// Which messages `peek` shows. Held messages count as delayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeekQuery {
    /// Show ready messages.
    pub ready: bool,
    /// Show delayed (and held) messages.
    pub delayed: bool,
    /// Show leased messages.
    pub leased: bool,
    /// Show acked messages (within retention).
    pub acked: bool,
    /// Show dead messages.
    pub dead: bool,
    /// At most this many.
    pub limit: usize,
}

/// Publishes and acks of one queue or topic per minute, for the sparklines
/// of `top`: index 0 is the oldest minute, the last one the 60 seconds up to
/// now (the same window as [`QueueInfo::published_last_minute`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateHistory {
    /// Messages published in each minute.
    pub published: Vec<i64>,
    /// Messages acked in each minute.
    pub acked: Vec<i64>,
}

/// A queue's JSON Schema in force that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenSchema {
    /// The queue or topic.
    pub queue: String,
    /// The schema version in force.
    pub version: i64,
    /// Why it does not compile.
    pub reason: String,
}

/// One queue's settings, stored counters and actual row counts.
#[derive(Debug, Clone)]
pub struct QueueHealth {
    /// The name.
    pub name: String,
    /// True for a topic (holds no messages itself).
    pub is_topic: bool,
    /// The settings in force.
    pub settings: Settings,
    /// `queues.n_*`, indexed by [`State`] as stored.
    pub counters: [i64; 6],
    /// `count(*)` of its `deliveries` rows per stored state.
    pub counted: [i64; 6],
}

impl QueueHealth {
    /// True when the stored counters match the rows.
    pub fn consistent(&self) -> bool {
        self.counters == self.counted
    }
}

/// The state names in storage order, as the counters are indexed (held
/// is kept apart here, where users see it as delayed elsewhere).
pub const STATE_COLUMNS: [&str; 6] = ["ready", "delayed", "leased", "acked", "dead", "held"];

const _: () = assert!(State::Held as usize == STATE_COLUMNS.len() - 1);
