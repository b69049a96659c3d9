//! [`PublishTx`]: the statements of publishing and of queue, topic and
//! schema changes, which `ops::publish`, `ops::queues`, `ops::topics` and
//! `ops::contracts` are written over.
//!
//! Where the backends differ, the difference is a method:
//! PostgreSQL serialises writers of one name with advisory locks
//! ([`PublishTx::lock_shared`], [`PublishTx::lock_exclusive`]) where SQLite's
//! writers take turns anyway, and creates rows with `ON CONFLICT` where a
//! concurrent writer may have created them first.

use super::read::ReadTx;
use super::tx::Tx;
use crate::store::error::Result;
use crate::store::flow::Load;
use crate::store::types::{NewMessage, QueueRow, Settings, State};

/// The statements of publishing and of queue, topic and schema changes.
pub trait PublishTx: Tx + ReadTx {
    /// Inserts a queue named `name` (checked by the caller) with `settings`.
    /// `None` when a concurrent transaction created the name first (only
    /// PostgreSQL: SQLite's writers take turns).
    fn insert_queue(&mut self, name: &str, settings: &Settings) -> Result<Option<QueueRow>>;

    /// Writes the settings of queue `id`.
    fn write_settings(&mut self, id: i64, settings: &Settings) -> Result<()>;

    /// The queue's TTL changed to `ttl_ms`: its unfinished deliveries
    /// without a TTL of their own expire that long after their message's
    /// publish (never with `None`). Reads every delivery of the queue.
    fn retime_ttl(&mut self, queue: i64, ttl_ms: Option<i64>) -> Result<()>;

    /// Locks the row of queue `id` until the transaction ends, so that two
    /// concurrent patches both apply (the caller reads the row again).
    /// Nothing on SQLite, where writers take turns (`BEGIN IMMEDIATE`).
    fn lock_row(&mut self, _id: i64) -> Result<()> {
        Ok(())
    }

    /// Takes shared locks on these queue names until the transaction ends:
    /// writers that add deliveries (publish, replay) hold them, so a queue
    /// cannot be deleted or turned into a topic, nor a topic's subscriptions
    /// change, under them. Nothing on SQLite, where writers take turns.
    /// True when it took locks (what was read before may have changed
    /// while it waited).
    fn lock_shared(&mut self, _names: &[&str]) -> Result<bool> {
        Ok(false)
    }

    /// Takes the exclusive lock of a queue name (see
    /// [`PublishTx::lock_shared`]) until the transaction ends: for deleting
    /// it, making it a topic, changing a topic's subscriptions or a schema.
    fn lock_exclusive(&mut self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Marks queue `id` as a topic.
    fn make_topic(&mut self, id: i64) -> Result<()>;

    /// What `queue` holds now in ready, delayed, held and leased messages:
    /// how many, and (with `bytes`) the bytes of their bodies. Counts rows,
    /// so its cost grows with the queue; it runs only for queues with a
    /// length limit.
    fn load(&mut self, queue: i64, bytes: bool) -> Result<Load>;

    /// Up to `limit` ready deliveries of `queue` with ids below `below`,
    /// oldest first: id, body size and group.
    fn oldest_ready(
        &mut self,
        queue: i64,
        below: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64, Option<String>)>>;

    /// True when queue `id` holds a message in any state.
    fn holds_messages(&mut self, id: i64) -> Result<bool>;

    /// Subscribes queue `queue` to topic `topic`; false when it already was.
    fn add_subscription(&mut self, topic: i64, queue: i64) -> Result<bool>;

    /// Ends the subscription of `queue` to `topic`; false when there was none.
    fn remove_subscription(&mut self, topic: i64, queue: i64) -> Result<bool>;

    /// Records version `version` of a queue's schema (`None`: removed).
    fn record_schema(&mut self, queue: i64, version: i64, schema: Option<&str>) -> Result<()>;

    /// Runs `fill` with the backend's [`Inserter`] for `fanout`, writes
    /// what it buffered, and returns what was added.
    fn inserting(
        &mut self,
        fanout: &Fanout<'_>,
        fill: &mut dyn FnMut(&mut dyn Inserter) -> Result<()>,
    ) -> Result<Tally>;
}

/// What a publish writes into: the origin (the queue or topic published
/// to), the queues that receive a delivery, and per receiving queue the
/// schema version its deliveries record.
pub struct Fanout<'a> {
    pub origin: &'a QueueRow,
    pub targets: &'a [QueueRow],
    pub versions: &'a [Option<i64>],
}

/// What the messages of a publish added, once written.
#[derive(Debug, Default)]
pub struct Tally {
    /// Deliveries added per target queue (in [`Fanout::targets`] order) and state.
    pub added: Vec<[i64; 6]>,
    /// New messages (not deduplicated).
    pub published: i64,
    /// Queues that lost an acked delivery past retention, one entry each.
    pub swept: Vec<i64>,
}

impl Tally {
    /// An empty tally for `targets` receiving queues.
    pub fn new(targets: usize) -> Tally {
        Tally {
            added: vec![[0; 6]; targets],
            ..Tally::default()
        }
    }
}

/// A backend's writer of one publish's messages: its statements, and the
/// messages it buffers to write many at a time. Plain messages (no key, no
/// group) may wait in a buffer; a key lookup must see every earlier message.
pub trait Inserter {
    /// The message `key` names in the origin, and whether a queue still
    /// holds it: a delivery that is not acked past its queue's retention.
    /// An expired one may not have been swept yet (each write sweeps a
    /// bounded batch).
    fn find_key(&mut self, key: &str) -> Result<Option<(i64, bool)>>;

    /// Removes the deliveries of message `id` that are acked past
    /// retention, and the message when none is left, noting the queues in
    /// [`Tally::swept`] (PostgreSQL re-checks each under its row lock: one
    /// that a replay made ready meanwhile stays).
    fn remove_expired(&mut self, id: i64) -> Result<()>;

    /// Writes (or buffers) a new message, first `state` at `visible_at` in
    /// every target (held behind its group's head where it has one), and
    /// returns its id. On PostgreSQL a key that a concurrent publish
    /// committed first answers with that message's id.
    fn insert(&mut self, msg: &NewMessage<'_>, state: State, visible_at: i64) -> Result<i64>;
}
