//! Publishing: one transaction per batch, one message row per message and one
//! delivery row per receiving queue.

use rusqlite::{CachedStatement, Connection, OptionalExtension};

use super::contracts;
use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::checks::PublishChecks;
use crate::store::types::NewMessage;
use crate::store::{Error, Result, SqliteStore, State};

/// An open publish transaction, handed to the closure of
/// [`SqliteStore::publish_batch`]. Each statement is prepared once per batch, when
/// it is first needed: preparing the multi-row inserts costs more than a
/// one-message publish does otherwise.
pub struct PublishBatch<'t> {
    conn: &'t Connection,
    insert_message: Option<CachedStatement<'t>>,
    insert_delivery: Option<CachedStatement<'t>>,
    insert_messages: Option<CachedStatement<'t>>,
    insert_deliveries: Option<CachedStatement<'t>>,
    /// Plain messages (no key, no group) waiting to be inserted CHUNK at a time.
    pending: Vec<PendingRow>,
    /// Their bodies, back to back.
    arena: Vec<u8>,
    find_key: Option<CachedStatement<'t>>,
    claim_group: Option<CachedStatement<'t>>,
    origin: &'t QueueRow,
    targets: &'t [QueueRow],
    /// The schemas each message must meet, and the versions deliveries record.
    checks: &'t PublishChecks,
    max_size: u64,
    now: i64,
    next_id: i64,
    /// Deliveries added per target queue and state.
    added: Vec<[i64; 6]>,
    /// New messages (not deduplicated).
    published: i64,
    /// Queues that lost an acked delivery past retention, one entry each.
    swept: Vec<i64>,
}

impl SqliteStore {
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
        let checks = contracts::for_publish(&tx.tx, &mut self.contracts, &origin, &targets)?;
        let first_id = next_message_id(&tx)?;
        let (value, next_id, added, published, swept) = {
            let mut batch = PublishBatch::new(&tx, &origin, &targets, &checks, first_id)?;
            let value = fill(&mut batch)?;
            batch.flush_pending()?;
            (
                value,
                batch.next_id,
                batch.added,
                batch.published,
                batch.swept,
            )
        };
        for queue in swept {
            tx.counts.moved(queue, Some(State::Acked), None);
            tx.freed_pages();
        }
        for (queue, counts) in targets.iter().zip(&added) {
            for (state, n) in State::ALL.iter().zip(counts) {
                tx.counts.moved_many(queue.id, None, Some(*state), *n);
            }
            tx.counts.published(queue.id, counts.iter().sum());
        }
        if origin.is_topic {
            tx.counts.published(origin.id, published);
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

/// Rows per multi-row INSERT. One statement per 64 rows instead of per row
/// roughly halves SQLite's per-message overhead in large batches.
const CHUNK: usize = 64;

/// A buffered message: everything but the body, which lives in the arena.
struct PendingRow {
    id: i64,
    body_end: usize,
    raw: bool,
    headers: Option<String>,
    priority: i64,
    visible_at: i64,
    state: State,
}

fn values_list(columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(","));
    vec![row; rows].join(",")
}

const INSERT_MESSAGE: &str =
    "INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_DELIVERY: &str =
    "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
/// The message holding a key, and whether a queue still holds it: a
/// delivery that is not acked past its queue's retention. An expired one
/// may not have been swept yet (each write sweeps a bounded batch).
const FIND_KEY: &str = "SELECT m.id, EXISTS (
         SELECT 1 FROM deliveries d JOIN queues q ON q.id = d.queue_id
         WHERE d.msg_id = m.id AND (d.state = 3 AND d.done_at <= ?3 - q.retention_ms) IS NOT TRUE)
     FROM messages m WHERE m.origin_id = ?1 AND m.key = ?2";
const CLAIM_GROUP: &str = "INSERT INTO groups (queue_id, grp, head_id) VALUES (?1, ?2, ?3)
     ON CONFLICT (queue_id, grp) DO NOTHING";

/// The statement in `slot`, prepared from `sql()` on first use.
fn prepared<'s, 't>(
    slot: &'s mut Option<CachedStatement<'t>>,
    conn: &'t Connection,
    sql: impl FnOnce() -> String,
) -> Result<&'s mut CachedStatement<'t>> {
    if slot.is_none() {
        *slot = Some(conn.prepare_cached(&sql())?);
    }
    Ok(slot.as_mut().expect("prepared just above"))
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
        checks: &'t PublishChecks,
        next_id: i64,
    ) -> Result<Self> {
        // A topic holds nothing, so only its subscribers' limits count: the
        // message must fit every queue that receives it.
        let max_size = targets
            .iter()
            .map(|q| q.settings.max_size)
            .min()
            .unwrap_or(u64::MAX);
        Ok(PublishBatch {
            conn: &tx.tx,
            insert_message: None,
            insert_delivery: None,
            insert_messages: None,
            insert_deliveries: None,
            pending: Vec::with_capacity(CHUNK),
            arena: Vec::new(),
            find_key: None,
            claim_group: None,
            origin,
            targets,
            checks,
            max_size,
            now: tx.now,
            next_id,
            added: vec![[0; 6]; targets.len()],
            published: 0,
            swept: Vec::new(),
        })
    }

    /// The largest body this batch accepts, in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Adds one message and returns its id, or the id of the message the
    /// queue already holds under the same key. A message that breaks a schema
    /// of the queue, or of the topic or any of its subscribers, is refused
    /// ([`Error::Invalid`]), also when its key was seen before.
    pub fn publish(&mut self, msg: &NewMessage<'_>) -> Result<i64> {
        if msg.body.len() as u64 > self.max_size {
            return Err(Error::TooLarge {
                size: msg.body.len(),
                limit: self.max_size,
            });
        }
        self.check(msg)?;
        if let Some(key) = msg.key {
            let existing: Option<(i64, bool)> =
                prepared(&mut self.find_key, self.conn, || FIND_KEY.into())?
                    .query_row((self.origin.id, key, self.now), |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
            match existing {
                Some((id, true)) => return Ok(id),
                Some((id, false)) => self.remove_expired(id)?,
                None => {}
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.published += 1;
        if msg.key.is_none() && msg.group.is_none() {
            return self.buffer(id, msg);
        }
        // Keyed and grouped messages go one by one, after what is buffered,
        // so dedup lookups and group heads see every earlier message.
        self.flush_pending()?;
        prepared(&mut self.insert_message, self.conn, || {
            INSERT_MESSAGE.into()
        })?
        .execute((
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
        Ok(id)
    }

    /// Removes message `id`, whose every delivery is acked past retention,
    /// so its key is free for a new message (the key is unique per origin).
    /// The sweep would remove it later; a key must not wait for that.
    fn remove_expired(&mut self, id: i64) -> Result<()> {
        let queues: Vec<i64> = self
            .conn
            .prepare_cached("DELETE FROM deliveries WHERE msg_id = ?1 RETURNING queue_id")?
            .query_map([id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        self.conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?
            .execute([id])?;
        self.swept.extend(queues);
        Ok(())
    }

    /// Checks a message against every schema in force, parsing it once.
    fn check(&self, msg: &NewMessage<'_>) -> Result<()> {
        self.checks.message(&self.origin.name, msg.body, msg.raw)
    }

    fn buffer(&mut self, id: i64, msg: &NewMessage<'_>) -> Result<i64> {
        let visible_at = msg.available_at.unwrap_or(self.now).max(self.now);
        let state = if visible_at > self.now {
            State::Delayed
        } else {
            State::Ready
        };
        self.arena.extend_from_slice(msg.body);
        self.pending.push(PendingRow {
            id,
            body_end: self.arena.len(),
            raw: msg.raw,
            headers: msg.headers.map(str::to_owned),
            priority: msg.priority,
            visible_at,
            state,
        });
        if self.pending.len() == CHUNK {
            self.flush_pending()?;
        }
        Ok(id)
    }

    /// Inserts the buffered messages: full chunks with the multi-row
    /// statements, a partial chunk row by row.
    fn flush_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        if rows.len() == CHUNK {
            self.insert_chunk(&rows)?;
        } else {
            self.insert_rows(&rows)?;
        }
        for counts in &mut self.added {
            for row in &rows {
                counts[row.state as usize] += 1;
            }
        }
        self.arena.clear();
        self.pending = rows;
        self.pending.clear();
        Ok(())
    }

    /// Inserts exactly [`CHUNK`] buffered messages, one statement per table
    /// and target queue.
    fn insert_chunk(&mut self, rows: &[PendingRow]) -> Result<()> {
        let m = prepared(&mut self.insert_messages, self.conn, || {
            format!(
                "INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body) VALUES {}",
                values_list(7, CHUNK)
            )
        })?;
        let mut start = 0;
        for (i, row) in rows.iter().enumerate() {
            let body = &self.arena[start..row.body_end];
            start = row.body_end;
            let p = i * 7;
            m.raw_bind_parameter(p + 1, row.id)?;
            m.raw_bind_parameter(p + 2, self.origin.id)?;
            m.raw_bind_parameter(p + 3, None::<&str>)?;
            m.raw_bind_parameter(p + 4, self.now)?;
            m.raw_bind_parameter(p + 5, row.raw)?;
            m.raw_bind_parameter(p + 6, row.headers.as_deref())?;
            m.raw_bind_parameter(p + 7, body)?;
        }
        m.raw_execute()?;
        let d = prepared(&mut self.insert_deliveries, self.conn, || {
            format!(
                "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version) VALUES {}",
                values_list(7, CHUNK)
            )
        })?;
        for (queue, version) in self.targets.iter().zip(&self.checks.versions) {
            for (i, row) in rows.iter().enumerate() {
                let p = i * 7;
                d.raw_bind_parameter(p + 1, row.id)?;
                d.raw_bind_parameter(p + 2, queue.id)?;
                d.raw_bind_parameter(p + 3, row.state as i64)?;
                d.raw_bind_parameter(p + 4, row.priority)?;
                d.raw_bind_parameter(p + 5, row.visible_at)?;
                d.raw_bind_parameter(p + 6, None::<&str>)?;
                d.raw_bind_parameter(p + 7, *version)?;
            }
            d.raw_execute()?;
        }
        Ok(())
    }

    /// Inserts fewer than a chunk of buffered messages, row by row.
    fn insert_rows(&mut self, rows: &[PendingRow]) -> Result<()> {
        let m = prepared(&mut self.insert_message, self.conn, || {
            INSERT_MESSAGE.into()
        })?;
        let mut start = 0;
        for row in rows {
            let body = &self.arena[start..row.body_end];
            start = row.body_end;
            m.execute((
                row.id,
                self.origin.id,
                None::<&str>,
                self.now,
                row.raw,
                row.headers.as_deref(),
                body,
            ))?;
        }
        let d = prepared(&mut self.insert_delivery, self.conn, || {
            INSERT_DELIVERY.into()
        })?;
        for (queue, version) in self.targets.iter().zip(&self.checks.versions) {
            for row in rows {
                d.execute((
                    row.id,
                    queue.id,
                    row.state as i64,
                    row.priority,
                    row.visible_at,
                    None::<&str>,
                    *version,
                ))?;
            }
        }
        Ok(())
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
            let claim = prepared(&mut self.claim_group, self.conn, || CLAIM_GROUP.into())?;
            if claim.execute((queue, group, id))? == 0 {
                state = State::Held;
            }
        }
        prepared(&mut self.insert_delivery, self.conn, || {
            INSERT_DELIVERY.into()
        })?
        .execute((
            id,
            queue,
            state as i64,
            msg.priority,
            visible_at,
            msg.group,
            self.checks.versions[target],
        ))?;
        self.added[target][state as usize] += 1;
        Ok(())
    }
}
