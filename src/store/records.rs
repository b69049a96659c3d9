//! A whole spool database as rows, the same on both backends: what
//! `export` reads from SQLite and `postgres::import` writes into PostgreSQL
//! (`spool migrate`).

use super::error::Result;

/// A `queues` row, with its stored counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    /// The id receipts and subscriptions name it by.
    pub id: i64,
    /// The name.
    pub name: String,
    /// True for a topic.
    pub is_topic: bool,
    /// Settings, as stored (ms and bytes).
    pub visibility_ms: i64,
    /// Deliveries before a message is dead (0: unlimited).
    pub max_attempts: i64,
    /// How long acked messages are kept, in ms.
    pub retention_ms: i64,
    /// The largest body, in bytes.
    pub max_size: i64,
    /// Base of the retry backoff, in ms.
    pub retry_delay_ms: i64,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// Messages ever published to it.
    pub published_total: i64,
    /// The stored per-state counters (`n_ready` … `n_held`, in
    /// [`super::State`] order).
    pub counters: [i64; 6],
}

/// A `subscriptions` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The topic's queue id.
    pub topic_id: i64,
    /// The subscribed queue's id.
    pub queue_id: i64,
    /// When it subscribed (ms since the epoch).
    pub created_at: i64,
}

/// A `schemas` row: one version of a queue's JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRecord {
    /// The queue or topic.
    pub queue_id: i64,
    /// The version number.
    pub version: i64,
    /// When it was set (ms since the epoch).
    pub created_at: i64,
    /// The schema text; `None` for a version that removed the schema.
    pub schema: Option<String>,
}

/// A `groups` row: the message heading an ordered group in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The queue.
    pub queue_id: i64,
    /// The group.
    pub group: String,
    /// The id of the message the group waits on.
    pub head_id: i64,
}

/// A `rates` row: publishes and acks of a queue in one second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRecord {
    /// The queue or topic.
    pub queue_id: i64,
    /// Seconds since the epoch.
    pub second: i64,
    /// Messages published in that second.
    pub published: i64,
    /// Messages acked in that second.
    pub acked: i64,
}

/// A `messages` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// The id.
    pub id: i64,
    /// The queue or topic it was published to.
    pub origin_id: i64,
    /// The deduplication key.
    pub key: Option<String>,
    /// When it was published (ms since the epoch).
    pub published_at: i64,
    /// True when the body is raw text.
    pub raw: bool,
    /// Headers as a JSON object text.
    pub headers: Option<String>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

/// A `deliveries` row: one message in one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The message.
    pub msg_id: i64,
    /// The queue.
    pub queue_id: i64,
    /// The state as stored ([`super::State`] as a number).
    pub state: i64,
    /// The priority.
    pub priority: i64,
    /// When it becomes due, its lease ends, or it became ready (ms).
    pub visible_at: i64,
    /// Deliveries so far.
    pub attempts: i64,
    /// The lease token of its current or last receipt.
    pub lease: Option<i64>,
    /// The ordered group.
    pub group: Option<String>,
    /// When it was acked or died (ms).
    pub done_at: Option<i64>,
    /// The version of the queue's schema its message was checked against.
    pub schema_version: Option<i64>,
}

/// Everything but messages and deliveries, read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    /// The id the next message gets (`meta.next_message_id`).
    pub next_message_id: i64,
    /// The highest queue id ever given (deleted queues included), so ids are
    /// never reused.
    pub last_queue_id: i64,
    /// Every queue and topic, by id.
    pub queues: Vec<QueueRecord>,
    /// Every subscription.
    pub subscriptions: Vec<SubscriptionRecord>,
    /// Every schema version of every queue.
    pub schemas: Vec<SchemaRecord>,
    /// Every group head.
    pub groups: Vec<GroupRecord>,
    /// The per-second rates kept (the last hour).
    pub rates: Vec<RateRecord>,
    /// How many messages follow.
    pub messages: u64,
    /// How many deliveries follow.
    pub deliveries: u64,
}

/// Where an export goes. Called in order: [`ExportSink::tables`] once, then
/// [`ExportSink::messages`] for each chunk of messages (by id), then
/// [`ExportSink::deliveries`] for each chunk of deliveries (by queue and
/// message). An error from the sink ends the export with that error.
pub trait ExportSink {
    /// The small tables.
    fn tables(&mut self, tables: &Tables) -> Result<()>;
    /// A chunk of messages.
    fn messages(&mut self, chunk: &[MessageRecord]) -> Result<()>;
    /// A chunk of deliveries.
    fn deliveries(&mut self, chunk: &[DeliveryRecord]) -> Result<()>;
}
