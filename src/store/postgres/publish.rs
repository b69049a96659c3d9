//! Publishing: one transaction per batch. Messages without a key are
//! buffered and written a chunk at a time (one statement inserts the
//! messages and their deliveries to every target from arrays); keyed ones go
//! one statement each, after what is buffered, so deduplication sees every
//! earlier one.

use std::collections::VecDeque;

use super::lease::delete_orphans;
use super::queues::{COLUMNS, from_row};
use super::tx::Tx;
use super::{Conn, RowExt};
use crate::store::backend::PublishTx;
use crate::store::backend::{Fanout, Inserter, Tally};
use crate::store::error::{Error, Result};
use crate::store::flow::{self, Load};
use crate::store::ops::publish::{Buffer, Buffered};
use crate::store::types::{NewMessage, QueueRow, Settings, State, ms};

/// Rows per multi-row insert, at most.
const CHUNK: usize = 1000;

/// Body bytes per multi-row insert, at most (one chunk may pass it by one body).
const CHUNK_BYTES: usize = 4 << 20;

/// The most ids taken from the sequence in one round trip.
const MAX_ID_BLOCK: i64 = 1024;

/// The statements of one publish and the messages it buffers.
struct PgInserter<'t> {
    conn: &'t mut Conn,
    fanout: &'t Fanout<'t>,
    target_ids: Vec<i64>,
    /// The targets' TTLs (ms), in the order of `target_ids`.
    target_ttls: Vec<Option<i64>>,
    now: i64,
    /// Ids taken from the sequence and not used yet.
    ids: VecDeque<i64>,
    /// How many ids the next trip to the sequence takes.
    next_block: i64,
    /// True once the group locks of the targets are held.
    group_locked: bool,
    /// Plain messages waiting to be written a chunk at a time.
    pending: Buffer,
    /// Grouped messages without a key (see [`Self::flush_grouped`]).
    grouped: Buffer,
    tally: Tally,
}

impl<'t> PgInserter<'t> {
    fn new(conn: &'t mut Conn, fanout: &'t Fanout<'t>, now: i64) -> Self {
        PgInserter {
            conn,
            target_ids: fanout.targets.iter().map(|q| q.id).collect(),
            target_ttls: fanout.targets.iter().map(QueueRow::ttl_ms).collect(),
            tally: Tally::new(fanout.targets.len()),
            fanout,
            now,
            ids: VecDeque::new(),
            next_block: 1,
            group_locked: false,
            pending: Buffer::default(),
            grouped: Buffer::default(),
        }
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
        let names: Vec<&str> = self
            .fanout
            .targets
            .iter()
            .map(|q| q.name.as_str())
            .collect();
        self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || name, 0))
             FROM unnest($2::text[]) AS t(name) ORDER BY name",
            &[&prefix, &names],
        )?;
        self.group_locked = true;
        self.ids.clear();
        Ok(())
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
        if self.grouped.len() == 0 {
            return Ok(());
        }
        let rows = &self.grouped;
        fn group(row: &Buffered) -> &str {
            row.group.as_deref().unwrap_or_default()
        }
        let mut first: std::collections::BTreeMap<(i64, &str), i64> = Default::default();
        for &queue in &self.target_ids {
            for (row, _) in rows.rows() {
                first.entry((queue, group(row))).or_insert(row.id);
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
        let mut d_expires = Vec::new();
        for (row, _) in rows.rows() {
            for (t, &queue) in self.target_ids.iter().enumerate() {
                let head = head_of.get(&(queue, group(row).to_owned())).copied();
                let state = if head == Some(row.id) {
                    row.state
                } else {
                    State::Held
                };
                self.tally.added[t][state as usize] += 1;
                d_msg.push(row.id);
                d_queue.push(queue);
                d_state.push(state as i64);
                d_priority.push(row.priority);
                d_visible.push(row.visible_at);
                d_group.push(group(row));
                d_version.push(self.fanout.versions.get(t).copied().flatten());
                d_expires.push(flow::expires_at(self.now, None, self.target_ttls[t]));
            }
        }
        let (ids, raws, headers, bodies) = columns(rows);
        self.conn.execute(
            "WITH m AS (
                 INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
                 SELECT id, $1, NULL, $2, raw, headers, body
                 FROM unnest($3::bigint[], $4::bool[], $5::text[], $6::bytea[]) AS t(id, raw, headers, body)
             )
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version,
                                     expires_at)
             SELECT * FROM unnest($7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
                                  $11::bigint[], $12::text[], $13::bigint[], $14::bigint[])",
            &[
                &self.fanout.origin.id,
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
                &d_expires,
            ],
        )?;
        self.grouped.clear();
        Ok(())
    }

    /// Inserts the buffered plain messages and their deliveries in one statement.
    fn flush_plain(&mut self) -> Result<()> {
        if self.pending.len() == 0 {
            return Ok(());
        }
        let rows = &self.pending;
        let (ids, raws, headers, bodies) = columns(rows);
        let states: Vec<i64> = rows.rows().map(|(r, _)| r.state as i64).collect();
        let priorities: Vec<i64> = rows.rows().map(|(r, _)| r.priority).collect();
        let visible: Vec<i64> = rows.rows().map(|(r, _)| r.visible_at).collect();
        self.conn.execute(
            "WITH m AS (
                 INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
                 SELECT id, $1, NULL, $2, raw, headers, body
                 FROM unnest($3::bigint[], $4::bool[], $5::text[], $6::bytea[]) AS t(id, raw, headers, body)
             )
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, schema_version,
                                     expires_at)
             SELECT t.id, q.id, t.state, t.priority, t.visible_at, q.version, $2 + q.ttl
             FROM unnest($3::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
                  AS t(id, state, priority, visible_at)
             CROSS JOIN unnest($10::bigint[], $11::bigint[], $12::bigint[]) AS q(id, version, ttl)",
            &[
                &self.fanout.origin.id,
                &self.now,
                &ids,
                &raws,
                &headers,
                &bodies,
                &states,
                &priorities,
                &visible,
                &self.target_ids,
                &self.fanout.versions,
                &self.target_ttls,
            ],
        )?;
        self.pending.written(&mut self.tally.added);
        Ok(())
    }

    /// Inserts a keyed or grouped message with its deliveries. A key that a
    /// concurrent publish committed first answers with that message's id.
    fn insert_one(
        &mut self,
        id: i64,
        msg: &NewMessage<'_>,
        first: State,
        visible_at: i64,
    ) -> Result<i64> {
        let mut states = Vec::with_capacity(self.target_ids.len());
        for queue in self.target_ids.clone() {
            let state = match msg.group {
                Some(group) if !claim_group(self.conn, queue, group, id)? => State::Held,
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
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version,
                                     expires_at, ttl_ms)
             SELECT m.id, t.queue, t.state, $8, $9, $10, t.version, $4 + coalesce($14::bigint, t.ttl), $14
             FROM m CROSS JOIN unnest($11::bigint[], $12::bigint[], $13::bigint[], $15::bigint[])
                  AS t(queue, state, version, ttl)
             RETURNING msg_id",
            &[
                &id,
                &self.fanout.origin.id,
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
                &self.fanout.versions,
                &msg.ttl.map(ms),
                &self.target_ttls,
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
                .map(|(id, _)| id)
                .ok_or_else(|| Error::Postgres(format!("key `{key}` vanished while publishing")));
        }
        self.tally.published += 1;
        for (counts, state) in self.tally.added.iter_mut().zip(&states) {
            counts[*state as usize] += 1;
        }
        Ok(id)
    }
}

/// Makes message `id` the head of `group` in `queue` if the group has
/// none; false when another message heads it (this one is then held). The
/// upsert locks the head row, so a consumer finishing the head waits for
/// this transaction and then sees the new message. Publish and replay enter
/// groups this way.
pub(super) fn claim_group(conn: &mut Conn, queue: i64, group: &str, id: i64) -> Result<bool> {
    let head: i64 = conn
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

impl Inserter for PgInserter<'_> {
    /// Writes what is buffered first. Only such deliveries are deleted by
    /// [`Inserter::remove_expired`], re-checked under their row locks: one
    /// that a replay made ready meanwhile keeps the message, which then
    /// deduplicates.
    fn find_key(&mut self, key: &str) -> Result<Option<(i64, bool)>> {
        self.flush_pending()?;
        let (origin, now) = (self.fanout.origin.id, self.now);
        self.conn
            .query_opt(
                "SELECT m.id, EXISTS (
                     SELECT 1 FROM deliveries d JOIN queues q ON q.id = d.queue_id
                     WHERE d.msg_id = m.id
                       AND (d.state = 3 AND d.done_at <= $3::bigint - q.retention_ms) IS NOT TRUE)
                 FROM messages m WHERE m.origin_id = $1 AND m.key = $2",
                &[&origin, &key, &now],
            )?
            .map(|row| Ok((row.at(0)?, row.at(1)?)))
            .transpose()
    }

    fn remove_expired(&mut self, id: i64) -> Result<()> {
        let now = self.now;
        let swept = self.conn.query(
            "DELETE FROM deliveries d USING queues q
             WHERE d.msg_id = $1 AND q.id = d.queue_id
               AND d.state = 3 AND d.done_at <= $2::bigint - q.retention_ms
             RETURNING d.queue_id",
            &[&id, &now],
        )?;
        for r in &swept {
            self.tally.swept.push(r.at(0)?);
        }
        delete_orphans(self.conn, &[id])
    }

    fn insert(&mut self, msg: &NewMessage<'_>, state: State, visible_at: i64) -> Result<i64> {
        // A message with a key or its own TTL goes alone (the buffers carry
        // neither).
        let alone = msg.key.is_some() || msg.ttl.is_some();
        if alone {
            self.flush_pending()?;
        }
        if msg.group.is_some() {
            self.lock_groups()?;
        }
        let id = self.next_id()?;
        if alone {
            return self.insert_one(id, msg, state, visible_at);
        }
        self.tally.published += 1;
        let grouped = msg.group.is_some();
        let buffer = if grouped {
            &mut self.grouped
        } else {
            &mut self.pending
        };
        buffer.push(id, msg, state, visible_at);
        if buffer.len() >= CHUNK || buffer.bytes() >= CHUNK_BYTES {
            if grouped {
                self.flush_grouped()?;
            } else {
                self.flush_plain()?;
            }
        }
        Ok(id)
    }
}

/// The message columns of buffered rows (id, raw, headers, body), as the
/// arrays the inserts unnest.
type Columns<'a> = (Vec<i64>, Vec<bool>, Vec<Option<&'a str>>, Vec<&'a [u8]>);

fn columns(rows: &Buffer) -> Columns<'_> {
    let mut c = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, body) in rows.rows() {
        c.0.push(row.id);
        c.1.push(row.raw);
        c.2.push(row.headers.as_deref());
        c.3.push(body);
    }
    c
}

impl PublishTx for Tx<'_> {
    fn insert_queue(&mut self, name: &str, settings: &Settings) -> Result<Option<QueueRow>> {
        let [v, a, r, m, d] = settings_columns(settings);
        let now = self.now;
        let sql = format!(
            "INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, created_at, flow)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (name) DO NOTHING
             RETURNING {COLUMNS}"
        );
        let flow = settings.flow.to_stored();
        self.query_opt(&sql, &[&name, &v, &a, &r, &m, &d, &now, &flow])?
            .map(|row| from_row(&row))
            .transpose()
    }

    fn write_settings(&mut self, id: i64, s: &Settings) -> Result<()> {
        let [v, a, r, m, d] = settings_columns(s);
        self.execute(
            "UPDATE queues SET visibility_ms = $2, max_attempts = $3, retention_ms = $4,
               max_size = $5, retry_delay_ms = $6, flow = $7 WHERE id = $1",
            &[&id, &v, &a, &r, &m, &d, &s.flow.to_stored()],
        )?;
        Ok(())
    }

    fn load(&mut self, queue: i64, bytes: bool) -> Result<Load> {
        let sql = if bytes {
            "SELECT count(*), coalesce(sum(length(m.body)), 0)::bigint
             FROM deliveries d JOIN messages m ON m.id = d.msg_id
             WHERE d.queue_id = $1 AND d.state IN (0, 1, 2, 5)"
        } else {
            "SELECT count(*), 0::bigint FROM deliveries WHERE queue_id = $1 AND state IN (0, 1, 2, 5)"
        };
        let row = self.query_opt(sql, &[&queue])?;
        let (count, bytes): (i64, i64) = match row {
            Some(r) => (r.at(0)?, r.at(1)?),
            None => (0, 0),
        };
        Ok(Load {
            count: count.max(0) as u64,
            bytes: bytes.max(0) as u64,
        })
    }

    fn oldest_ready(
        &mut self,
        queue: i64,
        below: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64, Option<String>)>> {
        self.query(
            "SELECT d.msg_id, length(m.body)::bigint, d.grp
             FROM deliveries d JOIN messages m ON m.id = d.msg_id
             WHERE d.queue_id = $1 AND d.state = 0 AND d.msg_id < $2
             ORDER BY d.msg_id LIMIT $3 FOR UPDATE OF d",
            &[&queue, &below, &limit],
        )?
        .iter()
        .map(|r| Ok((r.at(0)?, r.at(1)?, r.at(2)?)))
        .collect()
    }

    fn retime_ttl(&mut self, queue: i64, ttl_ms: Option<i64>) -> Result<()> {
        self.execute(
            "UPDATE deliveries d SET expires_at = m.published_at + $2::bigint
             FROM messages m
             WHERE m.id = d.msg_id AND d.queue_id = $1 AND d.state IN (0, 1, 2, 5)
               AND d.ttl_ms IS NULL",
            &[&queue, &ttl_ms],
        )?;
        Ok(())
    }

    fn lock_row(&mut self, id: i64) -> Result<()> {
        self.execute("SELECT 1 FROM queues WHERE id = $1 FOR UPDATE", &[&id])?;
        Ok(())
    }

    /// Advisory locks live in the server's memory: taking one writes no
    /// row, so concurrent publishers do not contend.
    fn lock_shared(&mut self, names: &[&str]) -> Result<bool> {
        let prefix = lock_prefix(self);
        self.execute(
            "SELECT pg_advisory_xact_lock_shared(hashtextextended($1 || name, 0))
             FROM unnest($2::text[]) AS t(name) ORDER BY name",
            &[&prefix, &names],
        )?;
        Ok(true)
    }

    fn lock_exclusive(&mut self, name: &str) -> Result<()> {
        let prefix = lock_prefix(self);
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || $2::text, 0))",
            &[&prefix, &name],
        )?;
        Ok(())
    }

    fn make_topic(&mut self, id: i64) -> Result<()> {
        self.execute("UPDATE queues SET is_topic = true WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn holds_messages(&mut self, id: i64) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM deliveries WHERE queue_id = $1 LIMIT 1",
                &[&id],
            )?
            .is_some())
    }

    fn add_subscription(&mut self, topic: i64, queue: i64) -> Result<bool> {
        let now = self.now;
        let added = self.execute(
            "INSERT INTO subscriptions (topic_id, queue_id, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (topic_id, queue_id) DO NOTHING",
            &[&topic, &queue, &now],
        )?;
        Ok(added > 0)
    }

    fn remove_subscription(&mut self, topic: i64, queue: i64) -> Result<bool> {
        let removed = self.execute(
            "DELETE FROM subscriptions WHERE topic_id = $1 AND queue_id = $2",
            &[&topic, &queue],
        )?;
        Ok(removed > 0)
    }

    fn record_schema(&mut self, queue_id: i64, version: i64, schema: Option<&str>) -> Result<()> {
        let now = self.now;
        self.execute(
            "INSERT INTO schemas (queue_id, version, created_at, schema) VALUES ($1, $2, $3, $4)",
            &[&queue_id, &version, &now, &schema],
        )?;
        Ok(())
    }

    fn inserting(
        &mut self,
        fanout: &Fanout<'_>,
        fill: &mut dyn FnMut(&mut dyn Inserter) -> Result<()>,
    ) -> Result<Tally> {
        let now = self.now;
        let mut ins = PgInserter::new(self, fanout, now);
        fill(&mut ins)?;
        ins.flush_pending()?;
        Ok(ins.tally)
    }
}

fn lock_prefix(conn: &Conn) -> String {
    format!("spool queue {} ", conn.target.schema)
}

/// The columns of `settings` in `queues`, in table order.
fn settings_columns(s: &Settings) -> [i64; 5] {
    let max_size = s.max_size.min(i64::MAX as u64) as i64;
    [
        ms(s.visibility),
        i64::from(s.max_attempts),
        ms(s.retention),
        max_size,
        ms(s.retry_delay),
    ]
}
