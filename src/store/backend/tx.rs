//! The base every backend transaction offers ([`Tx`]: the time it acts at,
//! the counter changes it owes, wake-ups, queue rows) and the errors that
//! need nothing more of it.

use crate::store::counters::Counters;
use crate::store::error::{Error, Result};
use crate::store::types::QueueRow;

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

    /// How many deliveries of `queue` are leased now (lease not ended),
    /// counting no further than `at_most`.
    fn count_leased(&mut self, queue: i64, at_most: u32) -> Result<u64>;

    /// Whether `queue` has a ready delivery.
    fn any_ready(&mut self, queue: i64) -> Result<bool>;
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
