//! Publishing: one transaction per batch, one message row per message and one
//! delivery row per receiving queue.

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

/// An open publish transaction. Messages added to it become visible together
/// at [`PublishBatch::commit`]; dropping it publishes nothing.
pub struct PublishBatch<'c> {
    tx: Tx<'c>,
    origin: QueueRow,
    targets: Vec<QueueRow>,
    max_size: u64,
    next_id: i64,
    first_unsaved_id: i64,
}

impl Store {
    /// Starts publishing to a queue (created if missing) or a topic (fanned out
    /// to its subscribers). Takes the write lock until commit or drop.
    pub fn begin_publish(&mut self, name: &str) -> Result<PublishBatch<'_>> {
        let tx = Tx::begin(&mut self.conn)?;
        let origin = queues::ensure(&tx, name)?;
        let targets = if origin.is_topic {
            queues::subscribers(&tx.tx, origin.id)?
        } else {
            vec![origin.clone()]
        };
        if targets.is_empty() {
            return Err(Error::NoSubscribers {
                topic: name.to_owned(),
            });
        }
        let max_size = targets
            .iter()
            .chain(std::iter::once(&origin))
            .map(|q| q.settings.max_size)
            .min()
            .unwrap_or(u64::MAX);
        let next_id = next_message_id(&tx)?;
        Ok(PublishBatch {
            tx,
            origin,
            targets,
            max_size,
            next_id,
            first_unsaved_id: next_id,
        })
    }
}

fn next_message_id(tx: &Tx<'_>) -> Result<i64> {
    Ok(tx
        .tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'next_message_id'")?
        .query_row([], |row| row.get(0))?)
}

impl PublishBatch<'_> {
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
            if let Some(id) = self.existing_key(key)? {
                return Ok(id);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.tx
            .tx
            .prepare_cached(
                "INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute((
                id,
                self.origin.id,
                msg.key,
                self.tx.now,
                msg.raw,
                msg.headers,
                msg.body,
            ))?;
        for i in 0..self.targets.len() {
            let queue = self.targets[i].id;
            self.deliver(queue, id, msg)?;
        }
        if self.origin.is_topic {
            self.tx.published(self.origin.id, 1);
        }
        Ok(id)
    }

    fn existing_key(&self, key: &str) -> Result<Option<i64>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .tx
            .tx
            .prepare_cached("SELECT id FROM messages WHERE origin_id = ?1 AND key = ?2")?
            .query_row((self.origin.id, key), |row| row.get(0))
            .optional()?)
    }

    fn deliver(&mut self, queue: i64, id: i64, msg: &NewMessage<'_>) -> Result<()> {
        let now = self.tx.now;
        let visible_at = msg.available_at.unwrap_or(now).max(now);
        let mut state = if visible_at > now {
            State::Delayed
        } else {
            State::Ready
        };
        if let Some(group) = msg.group {
            if !claim_group_head(&self.tx, queue, group, id)? {
                state = State::Held;
            }
        }
        self.tx
            .tx
            .prepare_cached(
                "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute((id, queue, state as i64, msg.priority, visible_at, msg.group))?;
        self.tx.moved(queue, None, Some(state));
        self.tx.published(queue, 1);
        Ok(())
    }

    /// Makes everything added so far durable and visible, all at once.
    pub fn commit(self) -> Result<()> {
        if self.next_id != self.first_unsaved_id {
            self.tx
                .tx
                .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'next_message_id'")?
                .execute([self.next_id])?;
        }
        self.tx.commit()
    }
}

/// Makes `id` the head of its group in `queue` if the group has no unfinished
/// message there. Returns false when an earlier message holds the group.
fn claim_group_head(tx: &Tx<'_>, queue: i64, group: &str, id: i64) -> Result<bool> {
    let inserted = tx
        .tx
        .prepare_cached(
            "INSERT INTO groups (queue_id, grp, head_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (queue_id, grp) DO NOTHING",
        )?
        .execute((queue, group, id))?;
    Ok(inserted == 1)
}
