//! Publishing: one transaction per batch, one message row per message and one
//! delivery row per receiving queue.

use rusqlite::{CachedStatement, OptionalExtension};

use super::queues::{self, QueueRow};
use super::tx::Tx;
use super::{Error, Result, State, Store};

/// A message to publish.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewMessage<'a> {
    /// The body bytes, stored as they are.
    pub body: &'a [u8],
    /// True when the body is raw text rather than JSON.
    pub raw: bool,
    /// Deduplication key, scoped to the queue or topic published to.
    pub key: Option<&'a str>,
    /// Ordered group.
    pub group: Option<&'a str>,
    /// Headers as a JSON object text.
    pub headers: Option<&'a str>,
    /// Higher first.
    pub priority: i64,
    /// Not deliverable before this time (ms since the epoch).
    pub available_at: Option<i64>,
}

/// An open publish transaction, handed to the closure of
/// [`Store::publish_batch`]. Its statements are prepared once per batch.
pub struct PublishBatch<'t> {
    insert_message: CachedStatement<'t>,
    insert_delivery: CachedStatement<'t>,
    find_key: CachedStatement<'t>,
    claim_group: CachedStatement<'t>,
    origin: &'t QueueRow,
    targets: &'t [QueueRow],
    max_size: u64,
    now: i64,
    next_id: i64,
    /// Deliveries added per target queue and state.
    added: Vec<[i64; 6]>,
    /// New messages (not deduplicated).
    published: i64,
}

impl Store {
    /// Publishes to a queue (created if missing) or a topic (fanned out to its
    /// subscribers) in one transaction: `fill` adds messages to the batch, and
    /// they become visible together when it returns `Ok`. If `fill` fails,
    /// nothing is published. Holds the write lock while `fill` runs.
    pub fn publish_batch<T, E: From<Error>>(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut PublishBatch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = Tx::begin(&mut self.conn)?;
        let origin = queues::ensure(&tx, name)?;
        let targets = if origin.is_topic {
            queues::subscribers(&tx.tx, origin.id)?
        } else {
            vec![origin.clone()]
        };
        if targets.is_empty() {
            return Err(Error::NoSubscribers {
                topic: name.to_owned(),
            }
            .into());
        }
        let first_id = next_message_id(&tx)?;
        let (value, next_id, added, published) = {
            let mut batch = PublishBatch::new(&tx, &origin, &targets, first_id)?;
            let value = fill(&mut batch)?;
            (value, batch.next_id, batch.added, batch.published)
        };
        for (queue, counts) in targets.iter().zip(&added) {
            for (state, n) in State::ALL.iter().zip(counts) {
                tx.moved_many(queue.id, None, Some(*state), *n);
            }
            tx.published(queue.id, counts.iter().sum());
        }
        if origin.is_topic {
            tx.published(origin.id, published);
        }
        // Retention cleanup in small steps, paid by the writers of each queue.
        for queue in &targets {
            super::lease::sweep(&mut tx, queue)?;
        }
        if next_id != first_id {
            tx.tx
                .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'next_message_id'")
                .and_then(|mut stmt| stmt.execute([next_id]))
                .map_err(Error::from)?;
        }
        tx.commit()?;
        Ok(value)
    }
}

fn next_message_id(tx: &Tx<'_>) -> Result<i64> {
    Ok(tx
        .tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'next_message_id'")?
        .query_row([], |row| row.get(0))?)
}

impl<'t> PublishBatch<'t> {
    fn new(
        tx: &'t Tx<'_>,
        origin: &'t QueueRow,
        targets: &'t [QueueRow],
        next_id: i64,
    ) -> Result<Self> {
        let max_size = targets
            .iter()
            .chain(std::iter::once(origin))
            .map(|q| q.settings.max_size)
            .min()
            .unwrap_or(u64::MAX);
        Ok(PublishBatch {
            insert_message: tx.tx.prepare_cached(
                "INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
            insert_delivery: tx.tx.prepare_cached(
                "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?,
            find_key: tx
                .tx
                .prepare_cached("SELECT id FROM messages WHERE origin_id = ?1 AND key = ?2")?,
            claim_group: tx.tx.prepare_cached(
                "INSERT INTO groups (queue_id, grp, head_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (queue_id, grp) DO NOTHING",
            )?,
            origin,
            targets,
            max_size,
            now: tx.now,
            next_id,
            added: vec![[0; 6]; targets.len()],
            published: 0,
        })
    }

    /// The largest body this batch accepts, in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Adds one message and returns its id, or the id of the message the
    /// queue already holds under the same key.
    pub fn publish(&mut self, msg: &NewMessage<'_>) -> Result<i64> {
        if msg.body.len() as u64 > self.max_size {
            return Err(Error::TooLarge {
                size: msg.body.len(),
                limit: self.max_size,
            });
        }
        if let Some(key) = msg.key {
            let existing = self
                .find_key
                .query_row((self.origin.id, key), |row| row.get(0))
                .optional()?;
            if let Some(id) = existing {
                return Ok(id);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.insert_message.execute((
            id,
            self.origin.id,
            msg.key,
            self.now,
            msg.raw,
            msg.headers,
            msg.body,
        ))?;
        for i in 0..self.targets.len() {
            self.deliver(i, id, msg)?;
        }
        self.published += 1;
        Ok(id)
    }

    fn deliver(&mut self, target: usize, id: i64, msg: &NewMessage<'_>) -> Result<()> {
        let queue = self.targets[target].id;
        let visible_at = msg.available_at.unwrap_or(self.now).max(self.now);
        let mut state = if visible_at > self.now {
            State::Delayed
        } else {
            State::Ready
        };
        if let Some(group) = msg.group {
            // The first unfinished message of a group is its head; later ones
            // wait (held) until the head is done.
            if self.claim_group.execute((queue, group, id))? == 0 {
                state = State::Held;
            }
        }
        self.insert_delivery.execute((
            id,
            queue,
            state as i64,
            msg.priority,
            visible_at,
            msg.group,
        ))?;
        self.added[target][state as usize] += 1;
        Ok(())
    }
}
