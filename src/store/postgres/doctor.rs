//! Health checks for `spool doctor` on PostgreSQL: spool's own invariants
//! (the summed `stats` match the rows, every delivery has its message, ids
//! cannot be reused), the schema version and the server. PostgreSQL checks
//! its own storage; there is no file, WAL or page count of spool's to show.

use super::schema;
use super::tx::Tx;
use super::{Conn, PostgresStore, RowExt};
use super::{contracts, queues};
use crate::store::error::Result;
use crate::store::types::State;
use crate::store::views::{BrokenSchema, QueueHealth};

/// What `spool doctor` found on PostgreSQL: the counterpart of
/// [`crate::store::Health`]. Gathering it only reads.
#[derive(Debug, Clone)]
pub struct PgHealth {
    /// The database, as messages show it (no password).
    pub display: String,
    /// The server's `server_version`.
    pub server_version: String,
    /// The schema version stored in `version`.
    pub schema_version: i64,
    /// The newest schema version this spool knows.
    pub schema_supported: i64,
    /// Bytes of spool's tables and indexes.
    pub size_bytes: u64,
    /// Rows in `stats` (folded once a second by writers; thousands are fine).
    pub stats_rows: i64,
    /// Every queue and topic with its summed counts and the counted rows.
    pub queues: Vec<QueueHealth>,
    /// Message rows that no delivery references (wasted space).
    pub orphan_messages: i64,
    /// Delivery rows whose message row is missing (cannot be delivered).
    pub missing_messages: i64,
    /// The id the next message gets (at least; the sequence may skip).
    pub next_message_id: i64,
    /// The highest id stored.
    pub max_message_id: Option<i64>,
    /// JSON Schemas in force that no longer compile (publishing there fails).
    pub broken_schemas: Vec<BrokenSchema>,
}

impl PgHealth {
    /// True when the next id is above every stored id, so none can be reused.
    pub fn ids_safe(&self) -> bool {
        self.max_message_id.is_none_or(|m| self.next_message_id > m)
    }

    /// True when every check passed.
    pub fn healthy(&self) -> bool {
        self.ids_safe()
            && self.orphan_messages == 0
            && self.missing_messages == 0
            && self.queues.iter().all(QueueHealth::consistent)
            && self.schema_version == self.schema_supported
            && self.broken_schemas.is_empty()
    }
}

fn count(conn: &mut Conn, sql: &str) -> Result<i64> {
    Ok(conn
        .query_opt(sql, &[])?
        .map(|r| r.at::<Option<i64>>(0))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// The next value `message_ids` hands out.
fn next_id(conn: &mut Conn) -> Result<i64> {
    let row = conn.query_opt("SELECT last_value, is_called FROM message_ids", &[])?;
    Ok(match row {
        Some(r) if r.at::<bool>(1)? => r.at::<i64>(0)? + 1,
        Some(r) => r.at(0)?,
        None => 1,
    })
}

impl PostgresStore {
    /// Runs every check in one read-only snapshot. Counts every row, so it
    /// takes a while on a large database.
    pub fn health(&self) -> Result<PgHealth> {
        let size_bytes = self.database_info()?.size_bytes;
        let names = self.names()?;
        let mut conn = self.conn.borrow_mut();
        let display = conn.target.display.clone();
        let mut tx = Tx::read(&mut conn)?;
        let server_version = tx
            .query_opt("SHOW server_version", &[])?
            .map(|r| r.at(0))
            .transpose()?
            .unwrap_or_default();
        let mut queues_health = Vec::new();
        let mut broken_schemas = Vec::new();
        for name in names {
            let Some(q) = queues::lookup(&mut tx, &name)? else {
                continue;
            };
            if let Some((version, Some(text))) = contracts::latest(&mut tx, q.id)?
                && let Err(reason) = crate::contract::Contract::compile(&text)
            {
                broken_schemas.push(BrokenSchema {
                    queue: name.clone(),
                    version,
                    reason,
                });
            }
            queues_health.push(QueueHealth {
                counters: summed(&mut tx, q.id)?,
                counted: counted(&mut tx, q.id)?,
                name: q.name,
                is_topic: q.is_topic,
                settings: q.settings,
            });
        }
        let health = PgHealth {
            display,
            server_version,
            schema_version: count(&mut tx, "SELECT max(version) FROM version")?,
            schema_supported: schema::CURRENT,
            size_bytes,
            stats_rows: count(&mut tx, "SELECT count(*) FROM stats")?,
            queues: queues_health,
            orphan_messages: count(
                &mut tx,
                "SELECT count(*) FROM messages m
                 WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id)",
            )?,
            missing_messages: count(
                &mut tx,
                "SELECT count(*) FROM deliveries d
                 WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.msg_id)",
            )?,
            next_message_id: next_id(&mut tx)?,
            max_message_id: tx
                .query_opt("SELECT max(id) FROM messages", &[])?
                .map(|r| r.at::<Option<i64>>(0))
                .transpose()?
                .flatten(),
            broken_schemas,
        };
        tx.commit()?;
        Ok(health)
    }

    /// Recomputes what can be recomputed: inserts a correcting `stats` row
    /// for each queue whose sums differ from its rows, removes message rows
    /// no delivery needs, and moves the id sequence past the highest id.
    /// Returns how many things it changed. One transaction.
    pub fn repair(&mut self) -> Result<usize> {
        let names = self.names()?;
        let mut tx = Tx::begin(self.conn.get_mut())?;
        // No claim or ack may change rows between the count and the fix.
        tx.batch("LOCK TABLE deliveries, stats IN SHARE ROW EXCLUSIVE MODE")?;
        let mut changed = 0;
        for name in names {
            let Some(q) = queues::lookup(&mut tx, &name)? else {
                continue;
            };
            let (summed, counted) = (summed(&mut tx, q.id)?, counted(&mut tx, q.id)?);
            if summed != counted {
                for state in State::ALL {
                    let diff = counted[state as usize] - summed[state as usize];
                    tx.counts.correct(q.id, state, diff);
                }
                changed += 1;
            }
        }
        changed += tx.execute(
            "DELETE FROM messages m
             WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id)",
            &[],
        )? as usize;
        let max: Option<i64> = tx
            .query_opt("SELECT max(id) FROM messages", &[])?
            .map(|r| r.at::<Option<i64>>(0))
            .transpose()?
            .flatten();
        if let Some(max) = max
            && next_id(&mut tx)? <= max
        {
            tx.execute("SELECT setval('message_ids', $1)", &[&max])?;
            changed += 1;
        }
        tx.commit()?;
        Ok(changed)
    }
}

/// The summed `stats` deltas of a queue, by stored state.
fn summed(conn: &mut Conn, queue: i64) -> Result<[i64; 6]> {
    let row = conn.query_opt(
        "SELECT coalesce(sum(n_ready), 0)::bigint, coalesce(sum(n_delayed), 0)::bigint,
                coalesce(sum(n_leased), 0)::bigint, coalesce(sum(n_acked), 0)::bigint,
                coalesce(sum(n_dead), 0)::bigint, coalesce(sum(n_held), 0)::bigint
         FROM stats WHERE queue_id = $1",
        &[&queue],
    )?;
    let mut n = [0; 6];
    if let Some(r) = row {
        for (i, slot) in n.iter_mut().enumerate() {
            *slot = r.at(i)?;
        }
    }
    Ok(n)
}

/// `count(*)` of a queue's deliveries, by stored state.
fn counted(conn: &mut Conn, queue: i64) -> Result<[i64; 6]> {
    let rows = conn.query(
        "SELECT state, count(*) FROM deliveries WHERE queue_id = $1 GROUP BY state",
        &[&queue],
    )?;
    let mut n = [0; 6];
    for r in &rows {
        let state: i64 = r.at(0)?;
        if let Some(slot) = usize::try_from(state).ok().and_then(|s| n.get_mut(s)) {
            *slot = r.at(1)?;
        }
    }
    Ok(n)
}
