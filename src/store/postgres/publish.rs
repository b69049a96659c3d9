//! Publishing: one transaction per batch. Plain messages are buffered and
//! written a chunk at a time (one statement inserts the messages and their
//! deliveries to every target from arrays); keyed and grouped ones go one
//! statement each, so deduplication and group heads see every earlier one.

use std::collections::VecDeque;

use super::contracts;
use super::lease::delete_orphans;
use super::queues::{self, QueueRow};
use super::tx::Tx;
use super::{Conn, PostgresStore, RowExt};
use crate::store::checks::PublishChecks;
use crate::store::error::{Error, Result};
use crate::store::types::{NewMessage, State};

/// Rows per multi-row insert, at most.
const CHUNK: usize = 1000;

/// Body bytes per multi-row insert, at most (one chunk may pass it by one body).
const CHUNK_BYTES: usize = 4 << 20;

/// The most ids taken from the sequence in one round trip.
const MAX_ID_BLOCK: i64 = 1024;

/// An open publish transaction, handed to the closure of
/// [`PostgresStore::publish_batch`]: the PostgreSQL counterpart of
/// [`crate::store::PublishBatch`], with the same two methods.
pub struct PgPublishBatch<'t> {
    conn: &'t mut Conn,
    origin: QueueRow,
    targets: Vec<QueueRow>,
    target_ids: Vec<i64>,
    target_names: Vec<String>,
    /// The schemas each message must meet, and the versions deliveries record.
    checks: PublishChecks,
    max_size: u64,
    now: i64,
    /// Ids taken from the sequence and not used yet.
    ids: VecDeque<i64>,
    /// How many ids the next trip to the sequence takes.
    next_block: i64,
    /// True once the group locks of the targets are held.
    group_locked: bool,
    pending: Vec<Pending>,
    arena: Vec<u8>,
    /// Buffered grouped messages without a key (see [`Self::flush_grouped`]).
    grouped: Vec<Grouped>,
    /// Their body bytes.
    grouped_bytes: usize,
    /// Deliveries added per target and state.
    added: Vec<[i64; 6]>,
    /// New messages (not deduplicated).
    published: i64,
    /// Queues that lost an acked delivery past retention, one entry each.
    swept: Vec<i64>,
}

/// A buffered grouped message.
struct Grouped {
    id: i64,
    group: String,
    body: Vec<u8>,
    raw: bool,
    headers: Option<String>,
    priority: i64,
    visible_at: i64,
    state: State,
}

/// A buffered plain message; its body lives in the arena.
struct Pending {
    id: i64,
    body_end: usize,
    raw: bool,
    headers: Option<String>,
    priority: i64,
    visible_at: i64,
    state: State,
}

impl PostgresStore {
    /// Publishes to a queue (created if missing) or a topic (fanned out to its
    /// subscribers) in one transaction: `fill` adds messages to the batch, and
    /// they become visible together when it returns `Ok`. If `fill` fails,
    /// nothing is published.
    /// A transaction that PostgreSQL ends for a deadlock or serialization
    /// failure is run again, `fill` with it (see [`PostgresStore::retrying`]).
    pub fn publish_batch<T, E: From<Error>>(
        &mut self,
        name: &str,
        mut fill: impl FnMut(&mut PgPublishBatch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.retrying(|store| store.publish_once(name, &mut fill))
    }

    fn publish_once<T, E: From<Error>>(
        &mut self,
        name: &str,
        fill: &mut impl FnMut(&mut PgPublishBatch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        queues::lock_shared(&mut tx, &[name])?;
        let origin = queues::ensure(&mut tx, name)?;
        let targets = if origin.is_topic {
            let subs = queues::subscribers(&mut tx, origin.id)?;
            let names: Vec<&str> = subs.iter().map(|q| q.name.as_str()).collect();
            queues::lock_shared(&mut tx, &names)?;
            // A subscriber deleted while we waited for its lock is gone now
            // (this statement sees that commit); none can be added while we
            // hold the topic's lock.
            queues::subscribers(&mut tx, origin.id)?
        } else {
            vec![origin.clone()]
        };
        if targets.is_empty() {
            return Err(Error::NoSubscribers {
                topic: name.to_owned(),
            }
            .into());
        }
        // After the name locks: no schema can change before this commits.
        let checks = contracts::for_publish(&mut tx, &origin, &targets)?;
        let now = tx.now;
        let (value, added, published, swept) = {
            let mut batch =
                PgPublishBatch::new(&mut tx, origin.clone(), targets.clone(), checks, now);
            let value = fill(&mut batch)?;
            batch.flush_pending()?;
            (value, batch.added, batch.published, batch.swept)
        };
        for queue in swept {
            tx.counts.moved(queue, Some(State::Acked), None);
        }
        for (queue, counts) in targets.iter().zip(&added) {
            for (state, n) in State::ALL.iter().zip(counts) {
                tx.counts.moved_many(queue.id, None, Some(*state), *n);
            }
            tx.counts.published(queue.id, counts.iter().sum());
            if counts[State::Ready as usize] > 0 || counts[State::Delayed as usize] > 0 {
                tx.notify(&queue.name);
            }
        }
        if origin.is_topic {
            tx.counts.published(origin.id, published);
        }
        for queue in &targets {
            super::lease::housekeeping(&mut tx, queue)?;
        }
        tx.commit()?;
        Ok(value)
    }
}

impl<'t> PgPublishBatch<'t> {
    fn new(
        conn: &'t mut Conn,
        origin: QueueRow,
        targets: Vec<QueueRow>,
        checks: PublishChecks,
        now: i64,
    ) -> Self {
        // A topic holds nothing, so only its subscribers' limits count.
        let max_size = targets
            .iter()
            .map(|q| q.settings.max_size)
            .min()
            .unwrap_or(u64::MAX);
        PgPublishBatch {
            conn,
            target_ids: targets.iter().map(|q| q.id).collect(),
            target_names: targets.iter().map(|q| q.name.clone()).collect(),
            added: vec![[0; 6]; targets.len()],
            checks,
            origin,
            targets,
            max_size,
            now,
            ids: VecDeque::new(),
            next_block: 1,
            group_locked: false,
            pending: Vec::new(),
            arena: Vec::new(),
            grouped: Vec::new(),
            grouped_bytes: 0,
            published: 0,
            swept: Vec::new(),
        }
    }

    /// The largest body this batch accepts, in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Adds one message and returns its id, or the id of the message the
    /// queue already holds under the same key. A message that breaks a schema
    /// of the queue, or of the topic or any of its subscribers, is refused
    /// ([`Error::Invalid`]; a raw body [`Error::RawBody`]), also when its key
    /// was seen before.
    pub fn publish(&mut self, msg: &NewMessage<'_>) -> Result<i64> {
        if msg.body.len() as u64 > self.max_size {
            return Err(Error::TooLarge {
                size: msg.body.len(),
                limit: self.max_size,
            });
        }
        self.checks.message(&self.origin.name, msg.body, msg.raw)?;
        if let Some(key) = msg.key {
            self.flush_pending()?;
            if let Some(id) = self.held_key(key)? {
                return Ok(id);
            }
        }
        if msg.key.is_none() && msg.group.is_none() {
            let id = self.next_id()?;
            self.published += 1;
            return self.buffer(id, msg);
        }
        if let (None, Some(group)) = (msg.key, msg.group) {
            self.lock_groups()?;
            let id = self.next_id()?;
            return self.buffer_grouped(id, group, msg);
        }
        self.flush_pending()?;
        if msg.group.is_some() {
            self.lock_groups()?;
        }
        let id = self.next_id()?;
        self.insert_one(id, msg)
    }

    /// The message a queue still holds under `key`, if any. A message whose
    /// every delivery is acked past its queue's retention is removed here
    /// (the sweep may not have reached it yet), freeing the key. Only
    /// such deliveries are deleted, re-checked under their row locks: one
    /// that a replay made ready meanwhile keeps the message, which then
    /// deduplicates.
    fn held_key(&mut self, key: &str) -> Result<Option<i64>> {
        let (origin, now) = (self.origin.id, self.now);
        let Some(row) = self.conn.query_opt(
            "SELECT m.id, EXISTS (
                 SELECT 1 FROM deliveries d JOIN queues q ON q.id = d.queue_id
                 WHERE d.msg_id = m.id
                   AND (d.state = 3 AND d.done_at <= $3::bigint - q.retention_ms) IS NOT TRUE)
             FROM messages m WHERE m.origin_id = $1 AND m.key = $2",
            &[&origin, &key, &now],
        )?
        else {
            return Ok(None);
        };
        let (id, held): (i64, bool) = (row.at(0)?, row.at(1)?);
        if held {
            return Ok(Some(id));
        }
        let swept = self.conn.query(
            "DELETE FROM deliveries d USING queues q
             WHERE d.msg_id = $1 AND q.id = d.queue_id
               AND d.state = 3 AND d.done_at <= $2::bigint - q.retention_ms
             RETURNING d.queue_id",
            &[&id, &now],
        )?;
        for r in &swept {
            self.swept.push(r.at(0)?);
        }
        delete_orphans(self.conn, &[id])?;
        self.find_key(key)
    }

    fn find_key(&mut self, key: &str) -> Result<Option<i64>> {
        let origin = self.origin.id;
        self.conn
            .query_opt(
                "SELECT id FROM messages WHERE origin_id = $1 AND key = $2",
                &[&origin, &key],
            )?
            .map(|r| r.at(0))
            .transpose()
    }

    /// The next message id, from ids taken from the sequence in blocks that
    /// double with each trip (a rolled back or short batch leaves a gap).
    fn next_id(&mut self) -> Result<i64> {
        if self.ids.is_empty() {
            let n = self.next_block;
            self.next_block = (n * 2).min(MAX_ID_BLOCK);
            let rows = self.conn.query(
                "SELECT nextval('message_ids') FROM generate_series(1, $1::bigint)",
                &[&n],
            )?;
            let mut ids = rows.iter().map(|r| r.at(0)).collect::<Result<Vec<i64>>>()?;
            ids.sort_unstable();
            self.ids.extend(ids);
        }
        self.ids
            .pop_front()
            .ok_or_else(|| Error::Postgres("the id sequence gave no value".into()))
    }

    /// Grouped messages are delivered in id order, so ids must follow the
    /// order in which their publishes commit: the first grouped message of a
    /// batch takes an exclusive lock per target, held to the commit, and
    /// drops the ids taken before it.
    fn lock_groups(&mut self) -> Result<()> {
        if self.group_locked {
            return Ok(());
        }
        let prefix = format!("spool groups {} ", self.conn.target.schema);
        self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || name, 0))
             FROM unnest($2::text[]) AS t(name) ORDER BY name",
            &[&prefix, &self.target_names],
        )?;
        self.group_locked = true;
        self.ids.clear();
        Ok(())
    }

    fn first_state(&self, msg: &NewMessage<'_>) -> (State, i64) {
        let visible_at = msg.available_at.unwrap_or(self.now).max(self.now);
        let state = if visible_at > self.now {
            State::Delayed
        } else {
            State::Ready
        };
        (state, visible_at)
    }

    fn buffer(&mut self, id: i64, msg: &NewMessage<'_>) -> Result<i64> {
        let (state, visible_at) = self.first_state(msg);
        self.arena.extend_from_slice(msg.body);
        self.pending.push(Pending {
            id,
            body_end: self.arena.len(),
            raw: msg.raw,
            headers: msg.headers.map(str::to_owned),
            priority: msg.priority,
            visible_at,
            state,
        });
        if self.pending.len() >= CHUNK || self.arena.len() >= CHUNK_BYTES {
            self.flush_plain()?;
        }
        Ok(id)
    }

    fn buffer_grouped(&mut self, id: i64, group: &str, msg: &NewMessage<'_>) -> Result<i64> {
        let (state, visible_at) = self.first_state(msg);
        self.grouped_bytes += msg.body.len();
        self.grouped.push(Grouped {
            id,
            group: group.to_owned(),
            body: msg.body.to_vec(),
            raw: msg.raw,
            headers: msg.headers.map(str::to_owned),
            priority: msg.priority,
            visible_at,
            state,
        });
        if self.grouped.len() >= CHUNK || self.grouped_bytes >= CHUNK_BYTES {
            self.flush_grouped()?;
        }
        Ok(id)
    }

    /// Inserts the buffered messages, plain and grouped.
    fn flush_pending(&mut self) -> Result<()> {
        self.flush_plain()?;
        self.flush_grouped()
    }

    /// Inserts the buffered grouped messages: first makes the first message
    /// of each group (per target) its head where the group has none, in one
    /// upsert that locks the `group_heads` rows in key order (queue id, then
    /// group), the order every other writer locks them in, so publishes and
    /// acks never deadlock; the others are held. Then one statement inserts
    /// the messages and their deliveries.
    fn flush_grouped(&mut self) -> Result<()> {
        if self.grouped.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.grouped);
        self.grouped_bytes = 0;
        let mut first: std::collections::BTreeMap<(i64, &str), i64> = Default::default();
        for &queue in &self.target_ids {
            for row in &rows {
                first.entry((queue, row.group.as_str())).or_insert(row.id);
            }
        }
        let key_queues: Vec<i64> = first.keys().map(|k| k.0).collect();
        let key_groups: Vec<&str> = first.keys().map(|k| k.1).collect();
        let proposed: Vec<i64> = first.values().copied().collect();
        let heads = self.conn.query(
            "INSERT INTO group_heads (queue_id, grp, head_id)
             SELECT q, g, h FROM unnest($1::bigint[], $2::text[], $3::bigint[])
                 WITH ORDINALITY AS t(q, g, h, i)
             ORDER BY i
             ON CONFLICT (queue_id, grp) DO UPDATE SET head_id = group_heads.head_id
             RETURNING queue_id, grp, head_id",
            &[&key_queues, &key_groups, &proposed],
        )?;
        let mut head_of = std::collections::HashMap::new();
        for r in &heads {
            head_of.insert((r.at::<i64>(0)?, r.at::<String>(1)?), r.at::<i64>(2)?);
        }
        let (mut d_msg, mut d_queue, mut d_state) = (Vec::new(), Vec::new(), Vec::new());
        let (mut d_priority, mut d_visible, mut d_group, mut d_version) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            for (t, &queue) in self.target_ids.iter().enumerate() {
                let head = head_of.get(&(queue, row.group.clone())).copied();
                let state = if head == Some(row.id) {
                    row.state
                } else {
                    State::Held
                };
                self.added[t][state as usize] += 1;
                d_msg.push(row.id);
                d_queue.push(queue);
                d_state.push(state as i64);
                d_priority.push(row.priority);
                d_visible.push(row.visible_at);
                d_group.push(row.group.as_str());
                d_version.push(self.checks.versions.get(t).copied().flatten());
            }
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let raws: Vec<bool> = rows.iter().map(|r| r.raw).collect();
        let headers: Vec<Option<&str>> = rows.iter().map(|r| r.headers.as_deref()).collect();
        let bodies: Vec<&[u8]> = rows.iter().map(|r| r.body.as_slice()).collect();
        self.conn.execute(
            "WITH m AS (
                 INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
                 SELECT id, $1, NULL, $2, raw, headers, body
                 FROM unnest($3::bigint[], $4::bool[], $5::text[], $6::bytea[]) AS t(id, raw, headers, body)
             )
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version)
             SELECT * FROM unnest($7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
                                  $11::bigint[], $12::text[], $13::bigint[])",
            &[
                &self.origin.id,
                &self.now,
                &ids,
                &raws,
                &headers,
                &bodies,
                &d_msg,
                &d_queue,
                &d_state,
                &d_priority,
                &d_visible,
                &d_group,
                &d_version,
            ],
        )?;
        self.published += rows.len() as i64;
        Ok(())
    }

    /// Inserts the buffered plain messages and their deliveries in one statement.
    fn flush_plain(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let mut bodies: Vec<&[u8]> = Vec::with_capacity(rows.len());
        let mut start = 0;
        for row in &rows {
            bodies.push(&self.arena[start..row.body_end]);
            start = row.body_end;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let raws: Vec<bool> = rows.iter().map(|r| r.raw).collect();
        let headers: Vec<Option<&str>> = rows.iter().map(|r| r.headers.as_deref()).collect();
        let states: Vec<i64> = rows.iter().map(|r| r.state as i64).collect();
        let priorities: Vec<i64> = rows.iter().map(|r| r.priority).collect();
        let visible: Vec<i64> = rows.iter().map(|r| r.visible_at).collect();
        self.conn.execute(
            "WITH m AS (
                 INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
                 SELECT id, $1, NULL, $2, raw, headers, body
                 FROM unnest($3::bigint[], $4::bool[], $5::text[], $6::bytea[]) AS t(id, raw, headers, body)
             )
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, schema_version)
             SELECT t.id, q.id, t.state, t.priority, t.visible_at, q.version
             FROM unnest($3::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
                  AS t(id, state, priority, visible_at)
             CROSS JOIN unnest($10::bigint[], $11::bigint[]) AS q(id, version)",
            &[
                &self.origin.id,
                &self.now,
                &ids,
                &raws,
                &headers,
                &bodies,
                &states,
                &priorities,
                &visible,
                &self.target_ids,
                &self.checks.versions,
            ],
        )?;
        for counts in &mut self.added {
            for row in &rows {
                counts[row.state as usize] += 1;
            }
        }
        self.arena.clear();
        Ok(())
    }

    /// Inserts a keyed or grouped message with its deliveries. A key that a
    /// concurrent publish committed first answers with that message's id.
    fn insert_one(&mut self, id: i64, msg: &NewMessage<'_>) -> Result<i64> {
        let (first, visible_at) = self.first_state(msg);
        let mut states = Vec::with_capacity(self.targets.len());
        for queue in self.target_ids.clone() {
            let state = match msg.group {
                Some(group) if !self.claim_group(queue, group, id)? => State::Held,
                _ => first,
            };
            states.push(state as i64);
        }
        let inserted = self.conn.query(
            "WITH m AS (
                 INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (origin_id, key) WHERE key IS NOT NULL DO NOTHING
                 RETURNING id
             )
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version)
             SELECT m.id, t.queue, t.state, $8, $9, $10, t.version
             FROM m CROSS JOIN unnest($11::bigint[], $12::bigint[], $13::bigint[])
                  AS t(queue, state, version)
             RETURNING msg_id",
            &[
                &id,
                &self.origin.id,
                &msg.key,
                &self.now,
                &msg.raw,
                &msg.headers,
                &msg.body,
                &msg.priority,
                &visible_at,
                &msg.group,
                &self.target_ids,
                &states,
                &self.checks.versions,
            ],
        )?;
        if inserted.is_empty() {
            // Another publish committed this key since we looked: this
            // message never existed, so it heads no group.
            if msg.group.is_some() {
                self.conn.execute(
                    "DELETE FROM group_heads WHERE queue_id = ANY($1) AND head_id = $2",
                    &[&self.target_ids, &id],
                )?;
            }
            let key = msg.key.unwrap_or_default();
            return self
                .find_key(key)?
                .ok_or_else(|| Error::Postgres(format!("key `{key}` vanished while publishing")));
        }
        self.published += 1;
        for (counts, state) in self.added.iter_mut().zip(&states) {
            counts[*state as usize] += 1;
        }
        Ok(id)
    }

    /// Makes message `id` the head of `group` in `queue` if the group has
    /// none; false when another message heads it (this one is then held).
    /// The upsert locks the head row, so a consumer finishing the head waits
    /// for this publish and then sees the new message.
    fn claim_group(&mut self, queue: i64, group: &str, id: i64) -> Result<bool> {
        let head: i64 = self
            .conn
            .query_opt(
                "INSERT INTO group_heads (queue_id, grp, head_id) VALUES ($1, $2, $3)
                 ON CONFLICT (queue_id, grp) DO UPDATE SET head_id = group_heads.head_id
                 RETURNING head_id",
                &[&queue, &group, &id],
            )?
            .map(|r| r.at(0))
            .transpose()?
            .unwrap_or(id);
        Ok(head == id)
    }
}
