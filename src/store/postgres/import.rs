//! Writing a whole exported spool database (see [`crate::store::export`])
//! into an empty PostgreSQL schema, for `spool migrate`: the same queue ids,
//! message ids, bodies, states, lease tokens, group heads and schema
//! versions, so receipts handed out before the move keep working after it.
//!
//! One transaction: a failure at any point leaves the schema as empty as it
//! was. It starts by locking spool's tables against writers (`EXCLUSIVE`:
//! readers still read, and see nothing until the commit), then refuses a
//! schema that holds any queue or message ([`Error::TargetNotEmpty`]).
//!
//! Counts by state are counted from the rows as they arrive, and written as
//! one `stats` row per queue (at second 0, where housekeeping folds old rows
//! anyway), with the publishes the source counted that its per-second rates
//! no longer show; the rates of the last hour follow as rows of their own
//! second, so `stats` and `top` show the same last minute and history. The
//! sequences (queue ids and message ids) are moved past every id the source
//! ever gave, so none is reused.

use crate::store::Store;
use std::collections::HashMap;

use super::doctor::value;
use super::tx::Tx;
use super::{Param, PostgresStore, RowExt};
use crate::store::error::{Error, Result};
use crate::store::records::{DeliveryRecord, ExportSink, MessageRecord, Tables};

/// What `spool migrate` copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Migrated {
    /// Queues (not topics).
    pub queues: u64,
    /// Topics.
    pub topics: u64,
    /// Subscriptions of queues to topics.
    pub subscriptions: u64,
    /// Versions of JSON Schemas, over all queues and topics.
    pub schema_versions: u64,
    /// Messages (each stored once, however many queues hold it).
    pub messages: u64,
    /// Deliveries: messages in queues, in every state.
    pub deliveries: u64,
    /// Ordered groups with a message at their head.
    pub groups: u64,
    /// Bytes of message bodies.
    pub body_bytes: u64,
    /// Queues whose stored counters in the source differed from their rows:
    /// the copy counts the rows (`spool doctor --repair` fixes the source).
    pub recounted: Vec<String>,
}

/// An open import, handed to the closure of [`PostgresStore::import`] as the
/// [`ExportSink`] of the source's export.
pub struct PgImport<'t> {
    tx: Tx<'t>,
    tables: Tables,
    /// Deliveries counted per queue id and stored state.
    counted: HashMap<i64, [i64; 6]>,
    done: Migrated,
    progress: &'t mut dyn FnMut(u64),
}

impl PostgresStore {
    /// Copies a whole database into this one, which must hold no queue and
    /// no message: `fill` runs the export with the [`PgImport`] it is given
    /// as its sink. One transaction; `progress(n)` is called as deliveries
    /// are written (for a progress bar).
    pub fn import(
        &mut self,
        fill: impl FnOnce(&mut PgImport<'_>) -> Result<()>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Migrated> {
        let target = self.display();
        let mut tx = Tx::begin(self.conn.get_mut())?;
        tx.batch(
            "LOCK TABLE queues, messages, deliveries, subscriptions, schemas, group_heads, stats
             IN EXCLUSIVE MODE",
        )?;
        let row = tx.query_opt(
            "SELECT (SELECT count(*) FROM queues), EXISTS (SELECT 1 FROM messages)",
            &[],
        )?;
        let (queues, messages): (i64, bool) = match row {
            Some(r) => (r.at(0)?, r.at(1)?),
            None => (0, false),
        };
        if queues > 0 || messages {
            return Err(Error::TargetNotEmpty { target, queues });
        }
        let mut import = PgImport {
            tx,
            tables: Tables::default(),
            counted: HashMap::new(),
            done: Migrated::default(),
            progress,
        };
        fill(&mut import)?;
        import.finish()
    }
}

impl ExportSink for PgImport<'_> {
    fn tables(&mut self, t: &Tables) -> Result<()> {
        self.tables = t.clone();
        let q = &t.queues;
        let topics = col(q, |q| q.is_topic);
        self.tx.execute(
            "INSERT INTO queues (id, name, is_topic, visibility_ms, max_attempts, retention_ms,
                                 max_size, retry_delay_ms, created_at)
             OVERRIDING SYSTEM VALUE
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                                  $9::bigint[])",
            &[
                &col(q, |q| q.id),
                &col(q, |q| q.name.as_str()),
                &topics,
                &col(q, |q| q.visibility_ms),
                &col(q, |q| q.max_attempts),
                &col(q, |q| q.retention_ms),
                &col(q, |q| q.max_size),
                &col(q, |q| q.retry_delay_ms),
                &col(q, |q| q.created_at),
            ],
        )?;
        self.done.topics = topics.iter().filter(|t| **t).count() as u64;
        self.done.queues = q.len() as u64 - self.done.topics;
        let subs = &t.subscriptions;
        self.done.subscriptions = self.tx.execute(
            "INSERT INTO subscriptions (topic_id, queue_id, created_at)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])",
            &[
                &col(subs, |s| s.topic_id),
                &col(subs, |s| s.queue_id),
                &col(subs, |s| s.created_at),
            ],
        )?;
        let schemas = &t.schemas;
        self.done.schema_versions = self.tx.execute(
            "INSERT INTO schemas (queue_id, version, created_at, schema)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[])",
            &[
                &col(schemas, |s| s.queue_id),
                &col(schemas, |s| s.version),
                &col(schemas, |s| s.created_at),
                &col(schemas, |s| s.schema.as_deref()),
            ],
        )?;
        let groups = &t.groups;
        self.done.groups = self.tx.execute(
            "INSERT INTO group_heads (queue_id, grp, head_id)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])",
            &[
                &col(groups, |g| g.queue_id),
                &col(groups, |g| g.group.as_str()),
                &col(groups, |g| g.head_id),
            ],
        )?;
        Ok(())
    }

    fn messages(&mut self, chunk: &[MessageRecord]) -> Result<()> {
        let bodies = col(chunk, |m| m.body.as_slice());
        self.tx.execute(
            "INSERT INTO messages (id, origin_id, key, published_at, raw, headers, body)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[],
                                  $5::bool[], $6::text[], $7::bytea[])",
            &[
                &col(chunk, |m| m.id),
                &col(chunk, |m| m.origin_id),
                &col(chunk, |m| m.key.as_deref()),
                &col(chunk, |m| m.published_at),
                &col(chunk, |m| m.raw),
                &col(chunk, |m| m.headers.as_deref()),
                &bodies,
            ],
        )?;
        self.done.messages += chunk.len() as u64;
        self.done.body_bytes += bodies.iter().map(|b| b.len() as u64).sum::<u64>();
        Ok(())
    }

    fn deliveries(&mut self, chunk: &[DeliveryRecord]) -> Result<()> {
        self.tx.execute(
            "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, attempts,
                                     lease, grp, done_at, schema_version)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::bigint[], $8::text[],
                                  $9::bigint[], $10::bigint[])",
            &[
                &col(chunk, |d| d.msg_id),
                &col(chunk, |d| d.queue_id),
                &col(chunk, |d| d.state),
                &col(chunk, |d| d.priority),
                &col(chunk, |d| d.visible_at),
                &col(chunk, |d| d.attempts),
                &col(chunk, |d| d.lease),
                &col(chunk, |d| d.group.as_deref()),
                &col(chunk, |d| d.done_at),
                &col(chunk, |d| d.schema_version),
            ],
        )?;
        for d in chunk {
            let counts = self.counted.entry(d.queue_id).or_default();
            if let Some(slot) = usize::try_from(d.state)
                .ok()
                .and_then(|s| counts.get_mut(s))
            {
                *slot += 1;
            }
        }
        self.done.deliveries += chunk.len() as u64;
        (self.progress)(chunk.len() as u64);
        Ok(())
    }
}

impl PgImport<'_> {
    /// Writes the counts, moves the sequences past the source's ids, and commits.
    fn finish(mut self) -> Result<Migrated> {
        self.write_stats()?;
        let next_message = self.tables.next_message_id;
        let max_message: Option<i64> = value(&mut self.tx, "SELECT max(id) FROM messages")?;
        let last_message = (next_message - 1).max(max_message.unwrap_or(0));
        advance(&mut self.tx, "'message_ids'", last_message)?;
        let seq = "SELECT pg_get_serial_sequence('queues', 'id')";
        let Some(queue_seq) = value::<String>(&mut self.tx, seq)? else {
            return Err(Error::Postgres("the queue id sequence is missing".into()));
        };
        let quoted = format!("'{}'", queue_seq.replace('\'', "''"));
        advance(&mut self.tx, &quoted, self.tables.last_queue_id)?;
        for q in self.tables.queues.iter().filter(|q| !q.is_topic) {
            self.tx.notify(&q.name);
        }
        self.tx.commit()?;
        Ok(self.done)
    }

    /// One base row per queue (counted states, publishes older than the
    /// rates kept) and one row per second of the rates kept.
    fn write_stats(&mut self) -> Result<()> {
        let mut rows: Vec<[i64; 10]> = Vec::new();
        let mut rated: HashMap<i64, i64> = HashMap::new();
        for r in &self.tables.rates {
            *rated.entry(r.queue_id).or_default() += r.published;
            rows.push([r.queue_id, r.second, 0, 0, 0, 0, 0, 0, r.published, r.acked]);
        }
        for q in &self.tables.queues {
            let n = self.counted.get(&q.id).copied().unwrap_or_default();
            if n != q.counters {
                self.done.recounted.push(q.name.clone());
            }
            let older = (q.published_total - rated.get(&q.id).copied().unwrap_or(0)).max(0);
            if n != [0; 6] || older != 0 {
                rows.push([q.id, 0, n[0], n[1], n[2], n[3], n[4], n[5], older, 0]);
            }
        }
        let columns: Vec<Vec<i64>> = (0..10)
            .map(|i| rows.iter().map(|r| r[i]).collect())
            .collect();
        let params: Vec<&Param<'_>> = columns.iter().map(|c| c as &Param<'_>).collect();
        self.tx.execute(
            "INSERT INTO stats (queue_id, second, n_ready, n_delayed, n_leased, n_acked, n_dead,
                                n_held, published, acked)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                                  $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                                  $9::bigint[], $10::bigint[])",
            &params,
        )?;
        Ok(())
    }
}

/// One field of every row, as an array parameter.
fn col<'a, T, V>(rows: &'a [T], field: impl Fn(&'a T) -> V) -> Vec<V> {
    rows.iter().map(field).collect()
}

/// Moves sequence `seq` (an SQL string literal naming it) so that its next
/// value is above `last`, unless it is there already.
fn advance(tx: &mut Tx<'_>, seq: &str, last: i64) -> Result<()> {
    if last < 1 {
        return Ok(());
    }
    tx.execute(
        &format!(
            "SELECT setval({seq}::regclass,
                    greatest($1::bigint, coalesce(pg_sequence_last_value({seq}::regclass), 0)))"
        ),
        &[&last],
    )?;
    Ok(())
}
