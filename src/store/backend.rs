//! What a backend offers the operations: a transaction that speaks its SQL
//! dialect. The queue operations (`ops`) are written once against these
//! traits; `sqlite/` and `postgres/` implement them and hold nothing but
//! SQL and connection handling.
//!
//! - [`Tx`]: the base every transaction offers: the time it acts at, the
//!   counter changes it owes, wake-ups, and queue rows.
//! - The per-area traits, each beside the operations that use it:
//!   [`LeaseTx`] (claim, settle, lazy transitions, groups), [`AdminTx`]
//!   (replay, purge, delete), [`PublishTx`] (publish, queues, topics,
//!   schemas) and [`ReadTx`] (the views of `peek`, `stats`, `queue list`).
//! - [`WriteTx`]: all of them at once, the transaction write operations get.
//! - [`Backend`]: opens a transaction, runs an operation in it and commits
//!   (PostgreSQL runs it again after a deadlock, see
//!   `postgres::PostgresStore::retrying`).
//!
//! The traits are object safe: what an operation does inside its
//! transaction is compiled once (over `&mut dyn WriteTx`), and a backend's
//! fast path can still override a whole operation where one statement does
//! what the generic code does in several.

use super::checks::ContractCache;
use super::counters::Counters;
use super::error::{Error, Result};
pub(crate) use super::ops::admin::AdminTx;
pub(crate) use super::ops::inspect::ReadTx;
pub(crate) use super::ops::lease::LeaseTx;
pub(crate) use super::ops::publish::PublishTx;
use super::types::QueueRow;

/// The base of every backend transaction.
pub trait Tx {
    /// The time this transaction acts at, in ms since the epoch: this
    /// machine's clock on SQLite, the server's on PostgreSQL, read once at
    /// the start so that every row it writes agrees.
    fn now(&self) -> i64;

    /// The counter changes this transaction owes (written at commit).
    fn counts(&mut self) -> &mut Counters;

    /// Wakes the consumers waiting on `queue` (in other processes too)
    /// once this transaction commits. SQLite's waiters watch the data
    /// version instead, so there it does nothing.
    fn notify(&mut self, queue: &str);

    /// The queue or topic named `name`, if it exists.
    fn queue(&mut self, name: &str) -> Result<Option<QueueRow>>;

    /// The queue or topic with this id, if it exists.
    fn queue_by_id(&mut self, id: i64) -> Result<Option<QueueRow>>;

    /// The queues subscribed to the topic `topic_id`, sorted by name.
    fn subscribers(&mut self, topic_id: i64) -> Result<Vec<QueueRow>>;

    /// Names of every queue and topic, sorted.
    fn names(&mut self) -> Result<Vec<String>>;
}

/// The transaction write operations run in: every area's statements.
pub trait WriteTx: Tx + LeaseTx + AdminTx + PublishTx + ReadTx {}

impl<T: Tx + LeaseTx + AdminTx + PublishTx + ReadTx + ?Sized> WriteTx for T {}

/// An open database, as the operations see it.
pub trait Backend {
    /// Runs `op` in a write transaction and commits it when `op` returns
    /// `Ok`; an error rolls everything back. PostgreSQL runs `op` again in a
    /// fresh transaction after a deadlock or serialization failure, so `op`
    /// must not keep effects outside the transaction between runs.
    fn write_dyn(&mut self, op: &mut dyn FnMut(&mut dyn WriteTx) -> Result<()>) -> Result<()>;

    /// Runs `op` in a read transaction that sees one snapshot throughout.
    fn read_dyn(&self, op: &mut dyn FnMut(&mut dyn ReadTx) -> Result<()>) -> Result<()>;

    /// The JSON Schemas this connection compiled, by queue and version.
    fn contracts(&mut self) -> &mut ContractCache;
}

/// Runs `op` in a write transaction of `store` (see [`Backend::write_dyn`])
/// and returns what it returned.
pub(crate) fn write<R>(
    store: &mut (impl Backend + ?Sized),
    mut op: impl FnMut(&mut dyn WriteTx) -> Result<R>,
) -> Result<R> {
    let mut out = None;
    store.write_dyn(&mut |tx| {
        out = Some(op(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| Error::Internal("a write transaction committed without running".into()))
}

/// Runs `op` in a read transaction of `store` (see [`Backend::read_dyn`])
/// and returns what it returned.
pub(crate) fn read<R>(
    store: &(impl Backend + ?Sized),
    mut op: impl FnMut(&mut dyn ReadTx) -> Result<R>,
) -> Result<R> {
    let mut out = None;
    store.read_dyn(&mut |tx| {
        out = Some(op(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| Error::Internal("a read transaction ended without running".into()))
}

/// [`Error::UnknownQueue`] for `name`, with the closest existing names.
pub(crate) fn unknown_queue(tx: &mut (impl Tx + ?Sized), name: &str) -> Error {
    let names = tx.names().unwrap_or_default();
    Error::UnknownQueue {
        name: name.to_owned(),
        similar: crate::suggest::similar(name, &names),
    }
}

/// [`Error::NameIsTopic`] for a topic row, naming its subscribers.
pub(crate) fn topic_error(tx: &mut (impl Tx + ?Sized), row: QueueRow) -> Result<Error> {
    let subscribers = tx
        .subscribers(row.id)?
        .into_iter()
        .map(|q| q.name)
        .collect();
    Ok(Error::NameIsTopic {
        name: row.name,
        subscribers,
    })
}

/// The queue (not a topic) named `name`: an unknown name or a topic is an
/// error.
pub(crate) fn existing_queue(tx: &mut (impl Tx + ?Sized), name: &str) -> Result<QueueRow> {
    match tx.queue(name)? {
        None => Err(unknown_queue(tx, name)),
        Some(q) if q.is_topic => Err(topic_error(tx, q)?),
        Some(q) => Ok(q),
    }
}
