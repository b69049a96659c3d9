//! Publishing, queue and topic settings, subscriptions and JSON Schemas.
//!
//! The operations are in [`super::queues`], [`super::topics`],
//! [`super::contracts`] and below (publish); this trait is what they need of
//! a backend. Where the backends differ, the difference is a method:
//! PostgreSQL serialises writers of one name with advisory locks
//! ([`PublishTx::lock_shared`], [`PublishTx::lock_exclusive`]) where SQLite's
//! writers take turns anyway, and creates rows with `ON CONFLICT` where a
//! concurrent writer may have created them first.

use crate::store::backend::Tx;
use crate::store::error::Result;
use crate::store::types::{QueueRow, SchemaVersion, Settings};

/// The statements of publishing and of queue, topic and schema changes.
pub(crate) trait PublishTx: Tx {
    /// Inserts a queue named `name` (checked by the caller) with `settings`.
    /// `None` when a concurrent transaction created the name first (only
    /// PostgreSQL: SQLite's writers take turns).
    fn insert_queue(&mut self, name: &str, settings: &Settings) -> Result<Option<QueueRow>>;

    /// Writes the settings of queue `id`.
    fn write_settings(&mut self, id: i64, settings: &Settings) -> Result<()>;

    /// Locks the row of queue `id` until the transaction ends, so that two
    /// concurrent patches both apply (the caller reads the row again).
    /// Nothing on SQLite, where writers take turns.
    fn lock_row(&mut self, id: i64) -> Result<()>;

    /// Takes shared locks on these queue names until the transaction ends:
    /// writers that add deliveries (publish, replay) hold them, so a queue
    /// cannot be deleted or turned into a topic, nor a topic's subscriptions
    /// change, under them. Nothing on SQLite, where writers take turns.
    fn lock_shared(&mut self, names: &[&str]) -> Result<()>;

    /// Takes the exclusive lock of a queue name (see
    /// [`PublishTx::lock_shared`]) until the transaction ends: for deleting
    /// it, making it a topic, changing a topic's subscriptions or a schema.
    fn lock_exclusive(&mut self, name: &str) -> Result<()>;

    /// Marks queue `id` as a topic.
    fn make_topic(&mut self, id: i64) -> Result<()>;

    /// True when queue `id` holds a message in any state.
    fn holds_messages(&mut self, id: i64) -> Result<bool>;

    /// The names of the topics queue `id` subscribes to, sorted.
    fn topics_of(&mut self, id: i64) -> Result<Vec<String>>;

    /// Subscribes queue `queue` to topic `topic`; false when it already was.
    fn add_subscription(&mut self, topic: i64, queue: i64) -> Result<bool>;

    /// Ends the subscription of `queue` to `topic`; false when there was none.
    fn remove_subscription(&mut self, topic: i64, queue: i64) -> Result<bool>;

    /// The latest version of a queue's schema: its number and text (`None`
    /// when that version removed the schema). `None` when it never had one.
    fn latest_schema(&mut self, queue: i64) -> Result<Option<(i64, Option<String>)>>;

    /// Records version `version` of a queue's schema (`None`: removed).
    fn record_schema(&mut self, queue: i64, version: i64, schema: Option<&str>) -> Result<()>;

    /// Every version of a queue's schema, oldest first.
    fn schema_versions(&mut self, queue: i64) -> Result<Vec<SchemaVersion>>;
}
