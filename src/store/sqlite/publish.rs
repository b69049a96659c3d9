//! Publishing on SQLite: one transaction per batch, one message row per
//! message and one delivery row per receiving queue (the rules are in
//! [`crate::store::ops::publish`]).

use rusqlite::{CachedStatement, Connection, OptionalExtension};

use super::queues;
use super::tx::Tx;
use crate::store::backend::PublishTx;
use crate::store::backend::{Fanout, Inserter, Tally};
use crate::store::flow::{self, Load};
use crate::store::ops::publish::Buffer;
pub use crate::store::ops::publish::PublishBatch;
use crate::store::types::{NewMessage, QueueRow};
use crate::store::{Result, Settings, State, ms};

/// The statements of one publish. Each statement is prepared once per
/// batch, when it is first needed: preparing the multi-row inserts costs
/// more than a one-message publish does otherwise.
struct SqliteInserter<'t> {
    conn: &'t Connection,
    insert_message: Option<CachedStatement<'t>>,
    insert_delivery: Option<CachedStatement<'t>>,
    insert_messages: Option<CachedStatement<'t>>,
    insert_deliveries: Option<CachedStatement<'t>>,
    /// Plain messages (no key, no group) waiting to be inserted CHUNK at a time.
    pending: Buffer,
    find_key: Option<CachedStatement<'t>>,
    claim_group: Option<CachedStatement<'t>>,
    fanout: &'t Fanout<'t>,
    /// A target queue has a TTL: deliveries are inserted with their expiry
    /// (`INSERT_DELIVERY_TTL`, and 9 columns a row in the multi-row insert).
    expiring: bool,
    now: i64,
    next_id: i64,
    tally: Tally,
}

/// Rows per multi-row INSERT. One statement per 64 rows instead of per row
/// roughly halves SQLite's per-message overhead in large batches.
const CHUNK: usize = 64;

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
/// The multi-row forms, with `VALUES` and a list of CHUNK rows appended.
const INSERT_DELIVERIES: &str =
    "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version)";
const INSERT_DELIVERIES_TTL: &str = "INSERT INTO deliveries
     (msg_id, queue_id, state, priority, visible_at, grp, schema_version, expires_at)";
/// [`INSERT_DELIVERY`] with an expiry: used only where a target queue or the
/// message has a TTL, so that publishes without one run the statements they
/// always ran.
const INSERT_DELIVERY_TTL: &str = "INSERT INTO deliveries
     (msg_id, queue_id, state, priority, visible_at, grp, schema_version, expires_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
/// [`INSERT_MESSAGE`] with the message's own TTL, for the messages that have one.
const INSERT_MESSAGE_TTL: &str =
    "INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body, ttl_ms)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const FIND_KEY: &str = "SELECT m.id, EXISTS (
         SELECT 1 FROM deliveries d JOIN queues q ON q.id = d.queue_id
         WHERE d.msg_id = m.id AND (d.state = 3 AND d.done_at <= ?3 - q.retention_ms) IS NOT TRUE)
     FROM messages m WHERE m.origin_id = ?1 AND m.key = ?2";
/// Makes a message the head of its group if the group has none (replay
/// enters groups the same way).
pub(super) const CLAIM_GROUP: &str =
    "INSERT INTO groups (queue_id, grp, head_id) VALUES (?1, ?2, ?3)
     ON CONFLICT (queue_id, grp) DO NOTHING";

/// The parameters of [`INSERT_DELIVERY_TTL`]: those of [`INSERT_DELIVERY`]
/// and the expiry.
type DeliveryRow<'m> = (i64, i64, i64, i64, i64, Option<&'m str>, Option<i64>);

fn params_ttl(r: DeliveryRow<'_>, expires_at: Option<i64>) -> impl rusqlite::Params + '_ {
    (r.0, r.1, r.2, r.3, r.4, r.5, r.6, expires_at)
}

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

impl SqliteInserter<'_> {
    /// Inserts the buffered messages: a full chunk with the multi-row
    /// statements (one per table and target queue), a partial one row by
    /// row.
    fn flush_pending(&mut self) -> Result<()> {
        if self.pending.len() == 0 {
            return Ok(());
        }
        let per = if self.pending.len() == CHUNK {
            CHUNK
        } else {
            1
        };
        let (m, d) = if per == CHUNK {
            (&mut self.insert_messages, &mut self.insert_deliveries)
        } else {
            (&mut self.insert_message, &mut self.insert_delivery)
        };
        let m = prepared(m, self.conn, || match per {
            1 => INSERT_MESSAGE.into(),
            _ => format!(
                "INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body) VALUES {}",
                values_list(7, CHUNK)
            ),
        })?;
        for (i, (row, body)) in self.pending.rows().enumerate() {
            let p = i % per * 7;
            m.raw_bind_parameter(p + 1, row.id)?;
            m.raw_bind_parameter(p + 2, self.fanout.origin.id)?;
            m.raw_bind_parameter(p + 3, None::<&str>)?;
            m.raw_bind_parameter(p + 4, self.now)?;
            m.raw_bind_parameter(p + 5, row.raw)?;
            m.raw_bind_parameter(p + 6, row.headers.as_deref())?;
            m.raw_bind_parameter(p + 7, body)?;
            if (i + 1) % per == 0 {
                m.raw_execute()?;
            }
        }
        let cols = if self.expiring { 8 } else { 7 };
        let expiring = self.expiring;
        let d = prepared(d, self.conn, || match (per, expiring) {
            (1, false) => INSERT_DELIVERY.into(),
            (1, true) => INSERT_DELIVERY_TTL.into(),
            (_, false) => format!("{INSERT_DELIVERIES} VALUES {}", values_list(7, CHUNK)),
            (_, true) => format!("{INSERT_DELIVERIES_TTL} VALUES {}", values_list(8, CHUNK)),
        })?;
        for (queue, version) in self.fanout.targets.iter().zip(self.fanout.versions) {
            // Buffered messages carry no TTL of their own (see `insert`).
            let expires_at = flow::expires_at(self.now, None, queue.ttl_ms());
            for (i, (row, _)) in self.pending.rows().enumerate() {
                let p = i % per * cols;
                d.raw_bind_parameter(p + 1, row.id)?;
                d.raw_bind_parameter(p + 2, queue.id)?;
                d.raw_bind_parameter(p + 3, row.state as i64)?;
                d.raw_bind_parameter(p + 4, row.priority)?;
                d.raw_bind_parameter(p + 5, row.visible_at)?;
                d.raw_bind_parameter(p + 6, None::<&str>)?;
                d.raw_bind_parameter(p + 7, *version)?;
                if self.expiring {
                    d.raw_bind_parameter(p + 8, expires_at)?;
                }
                if (i + 1) % per == 0 {
                    d.raw_execute()?;
                }
            }
        }
        self.pending.written(&mut self.tally.added);
        Ok(())
    }
}

impl Inserter for SqliteInserter<'_> {
    fn find_key(&mut self, key: &str) -> Result<Option<(i64, bool)>> {
        Ok(prepared(&mut self.find_key, self.conn, || FIND_KEY.into())?
            .query_row((self.fanout.origin.id, key, self.now), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?)
    }

    /// Writers take turns, so every delivery of `id` is still acked past
    /// retention: all go, and the message with them.
    fn remove_expired(&mut self, id: i64) -> Result<()> {
        let queues: Vec<i64> = self
            .conn
            .prepare_cached("DELETE FROM deliveries WHERE msg_id = ?1 RETURNING queue_id")?
            .query_map([id], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        self.conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?
            .execute([id])?;
        self.tally.swept.extend(queues);
        Ok(())
    }

    fn insert(&mut self, msg: &NewMessage<'_>, state: State, visible_at: i64) -> Result<i64> {
        let id = self.next_id;
        self.next_id += 1;
        self.tally.published += 1;
        if msg.key.is_none() && msg.group.is_none() && msg.ttl.is_none() {
            self.pending.push(id, msg, state, visible_at);
            if self.pending.len() == CHUNK {
                self.flush_pending()?;
            }
            return Ok(id);
        }
        // Keyed and grouped messages go one by one, after what is buffered,
        // so dedup lookups and group heads see every earlier message.
        self.flush_pending()?;
        let own_ttl = msg.ttl.map(ms);
        let row = (
            id,
            self.fanout.origin.id,
            msg.key,
            self.now,
            msg.raw,
            msg.headers,
            msg.body,
        );
        match own_ttl {
            None => prepared(&mut self.insert_message, self.conn, || {
                INSERT_MESSAGE.into()
            })?
            .execute(row)?,
            Some(ttl) => {
                for queue in self.fanout.targets.iter().filter(|q| !q.may_expire) {
                    queues::mark_expiring(self.conn, queue.id)?;
                }
                self.conn
                    .prepare_cached(INSERT_MESSAGE_TTL)?
                    .execute((row.0, row.1, row.2, row.3, row.4, row.5, row.6, ttl))?
            }
        };
        for (target, queue) in self.fanout.targets.iter().enumerate() {
            let mut state = state;
            // The first unfinished message of a group is its head; later ones
            // wait (held) until the head is done.
            if let Some(group) = msg.group {
                let claim = prepared(&mut self.claim_group, self.conn, || CLAIM_GROUP.into())?;
                if claim.execute((queue.id, group, id))? == 0 {
                    state = State::Held;
                }
            }
            let row = (
                id,
                queue.id,
                state as i64,
                msg.priority,
                visible_at,
                msg.group,
                self.fanout.versions[target],
            );
            if self.expiring {
                let d = prepared(&mut self.insert_delivery, self.conn, || {
                    INSERT_DELIVERY_TTL.into()
                })?;
                let expires_at = flow::expires_at(self.now, own_ttl, queue.ttl_ms());
                d.execute(params_ttl(row, expires_at))?;
            } else if own_ttl.is_some() {
                let expires_at = flow::expires_at(self.now, own_ttl, None);
                self.conn
                    .prepare_cached(INSERT_DELIVERY_TTL)?
                    .execute(params_ttl(row, expires_at))?;
            } else {
                prepared(&mut self.insert_delivery, self.conn, || {
                    INSERT_DELIVERY.into()
                })?
                .execute(row)?;
            }
            self.tally.added[target][state as usize] += 1;
        }
        Ok(id)
    }
}

impl PublishTx for Tx<'_> {
    fn insert_queue(&mut self, name: &str, settings: &Settings) -> Result<Option<QueueRow>> {
        let (v, a, r, m, d) = columns(settings);
        self.tx
            .prepare_cached(
                "INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, created_at, flow)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute((name, v, a, r, m, d, self.now, settings.flow.to_stored()))?;
        Ok(Some(QueueRow {
            id: self.tx.last_insert_rowid(),
            name: name.to_owned(),
            is_topic: false,
            settings: *settings,
            acked: 0,
            rate_full_at: 0,
            may_expire: false,
            schedule_at: None,
        }))
    }

    fn write_settings(&mut self, id: i64, s: &Settings) -> Result<()> {
        let (v, a, r, m, d) = columns(s);
        self.tx
            .prepare_cached(
                "UPDATE queues SET visibility_ms = ?2, max_attempts = ?3, retention_ms = ?4,
                   max_size = ?5, retry_delay_ms = ?6, flow = ?7 WHERE id = ?1",
            )?
            .execute((id, v, a, r, m, d, s.flow.to_stored()))?;
        Ok(())
    }

    fn load(&mut self, queue: i64, bytes: bool) -> Result<Load> {
        let sql = if bytes {
            "SELECT count(*), coalesce(sum(length(m.body)), 0)
             FROM deliveries d JOIN messages m ON m.id = d.msg_id
             WHERE d.queue_id = ?1 AND d.state IN (0, 1, 2, 5)"
        } else {
            "SELECT count(*), 0 FROM deliveries WHERE queue_id = ?1 AND state IN (0, 1, 2, 5)"
        };
        let (count, bytes): (i64, i64) = self
            .tx
            .prepare_cached(sql)?
            .query_row([queue], |r| Ok((r.get(0)?, r.get(1)?)))?;
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
        let mut stmt = self.tx.prepare_cached(
            "SELECT d.msg_id, length(m.body), d.grp
             FROM deliveries d JOIN messages m ON m.id = d.msg_id
             WHERE d.queue_id = ?1 AND d.state = 0 AND d.msg_id < ?2
             ORDER BY d.msg_id LIMIT ?3",
        )?;
        let rows = stmt
            .query_map((queue, below, limit), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn retime_ttl(&mut self, queue: i64, ttl_ms: Option<i64>) -> Result<()> {
        if ttl_ms.is_some() {
            queues::mark_expiring(&self.tx, queue)?;
        }
        self.tx
            .prepare_cached(
                "UPDATE deliveries
                 SET expires_at = (SELECT published_at FROM messages WHERE id = msg_id) + ?2
                 WHERE queue_id = ?1 AND state IN (0, 1, 2, 5)
                   AND (SELECT ttl_ms FROM messages WHERE id = msg_id) IS NULL",
            )?
            .execute((queue, ttl_ms))?;
        Ok(())
    }

    fn make_topic(&mut self, id: i64) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE queues SET is_topic = 1 WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    // The per-state counters are exact, so this reads one row.
    fn holds_messages(&mut self, id: i64) -> Result<bool> {
        let held: i64 = self
            .tx
            .prepare_cached(
                "SELECT n_ready + n_delayed + n_leased + n_acked + n_dead + n_held
                 FROM queues WHERE id = ?1",
            )?
            .query_row([id], |r| r.get(0))?;
        Ok(held > 0)
    }

    fn add_subscription(&mut self, topic: i64, queue: i64) -> Result<bool> {
        let added = self
            .tx
            .prepare_cached(
                "INSERT INTO subscriptions (topic_id, queue_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic_id, queue_id) DO NOTHING",
            )?
            .execute((topic, queue, self.now))?;
        Ok(added > 0)
    }

    fn remove_subscription(&mut self, topic: i64, queue: i64) -> Result<bool> {
        let removed = self
            .tx
            .prepare_cached("DELETE FROM subscriptions WHERE topic_id = ?1 AND queue_id = ?2")?
            .execute((topic, queue))?;
        Ok(removed > 0)
    }

    fn record_schema(&mut self, queue_id: i64, version: i64, schema: Option<&str>) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO schemas (queue_id, version, created_at, schema) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute((queue_id, version, self.now, schema))?;
        Ok(())
    }

    /// Message ids come from `meta`, written back once at the end.
    fn inserting(
        &mut self,
        fanout: &Fanout<'_>,
        fill: &mut dyn FnMut(&mut dyn Inserter) -> Result<()>,
    ) -> Result<Tally> {
        let first_id: i64 = self
            .tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'next_message_id'")?
            .query_row([], |row| row.get(0))?;
        for queue in fanout.targets.iter() {
            if queue.ttl_ms().is_some() && !queue.may_expire {
                queues::mark_expiring(&self.tx, queue.id)?;
            }
        }
        let (tally, next_id) = {
            let mut ins = SqliteInserter {
                conn: &self.tx,
                insert_message: None,
                insert_delivery: None,
                insert_messages: None,
                insert_deliveries: None,
                pending: Buffer::default(),
                find_key: None,
                claim_group: None,
                fanout,
                expiring: fanout.targets.iter().any(|q| q.ttl_ms().is_some()),
                now: self.now,
                next_id: first_id,
                tally: Tally::new(fanout.targets.len()),
            };
            fill(&mut ins)?;
            ins.flush_pending()?;
            (ins.tally, ins.next_id)
        };
        if !tally.swept.is_empty() {
            self.freed_pages();
        }
        if next_id != first_id {
            self.tx
                .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'next_message_id'")?
                .execute([next_id])?;
        }
        Ok(tally)
    }
}

/// The columns of `settings` in `queues`, in table order.
fn columns(s: &Settings) -> (i64, u32, i64, i64, i64) {
    (
        ms(s.visibility),
        s.max_attempts,
        ms(s.retention),
        s.max_size as i64,
        ms(s.retry_delay),
    )
}
