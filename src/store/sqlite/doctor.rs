//! Health checks for `spool doctor`: SQLite's integrity check, the file's
//! shape (WAL, free pages, journal mode) and spool's own invariants (the
//! per-queue counters match the rows, every delivery has its message, ids
//! cannot be reused). Also the repair of what can be recomputed.

use rusqlite::OptionalExtension;

use super::contracts;
use super::queues::{self, QueueRow};
use super::tx::Tx;
use super::{netfs, schema};
use crate::store::views::{BrokenSchema, QueueHealth};
use crate::store::{Result, SqliteStore};

/// What `spool doctor` found. Gathering it only reads.
#[derive(Debug, Clone)]
pub struct Health {
    /// `PRAGMA integrity_check`: `["ok"]` when healthy, else the problems.
    pub integrity: Vec<String>,
    /// `PRAGMA user_version`.
    pub schema_version: i64,
    /// The newest schema version this spool knows.
    pub schema_supported: i64,
    /// `PRAGMA journal_mode` (`wal` expected).
    pub journal_mode: String,
    /// `PRAGMA auto_vacuum` (2, incremental, expected).
    pub auto_vacuum: i64,
    /// Bytes per page.
    pub page_size: i64,
    /// Pages in the file.
    pub page_count: i64,
    /// Pages on the free list.
    pub free_pages: i64,
    /// The database file's size in bytes.
    pub file_bytes: u64,
    /// The WAL file's size in bytes (0 when there is none).
    pub wal_bytes: u64,
    /// The network file system holding the database, if any.
    pub network_fs: Option<&'static str>,
    /// Every queue and topic with its counters and the counted rows.
    pub queues: Vec<QueueHealth>,
    /// Message rows that no delivery references (wasted space).
    pub orphan_messages: i64,
    /// Delivery rows whose message row is missing (cannot be delivered).
    pub missing_messages: i64,
    /// The id the next message gets.
    pub next_message_id: i64,
    /// The highest id stored.
    pub max_message_id: Option<i64>,
    /// JSON Schemas in force that no longer compile (publishing there fails).
    pub broken_schemas: Vec<BrokenSchema>,
}

impl Health {
    /// True when SQLite's integrity check found nothing.
    pub fn integrity_ok(&self) -> bool {
        self.integrity == ["ok"]
    }

    /// True when the next id is above every stored id, so none can be reused.
    pub fn ids_safe(&self) -> bool {
        self.max_message_id.is_none_or(|m| self.next_message_id > m)
    }
}

impl SqliteStore {
    /// Runs every check. Only reads; a full integrity check and a count of
    /// every row, so it takes a while on a large database.
    pub fn health(&self) -> Result<Health> {
        let mut integrity = self.integrity_check();
        let pragma_i64 = |name: &str| -> Result<i64> {
            Ok(self.conn.pragma_query_value(None, name, |r| r.get(0))?)
        };
        let wal = format!("{}-wal", self.path.display());
        let mut health = Health {
            integrity: Vec::new(),
            schema_version: pragma_i64("user_version")?,
            schema_supported: schema::CURRENT,
            journal_mode: self.journal_mode()?,
            auto_vacuum: pragma_i64("auto_vacuum")?,
            page_size: pragma_i64("page_size")?,
            page_count: pragma_i64("page_count")?,
            free_pages: pragma_i64("freelist_count")?,
            file_bytes: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
            wal_bytes: std::fs::metadata(wal).map_or(0, |m| m.len()),
            network_fs: netfs::network_kind_of(&self.path),
            queues: Vec::new(),
            orphan_messages: 0,
            missing_messages: 0,
            next_message_id: 0,
            max_message_id: None,
            broken_schemas: Vec::new(),
        };
        // A damaged file may fail these reads; that is a finding, not the end
        // of the report.
        if let Err(e) = self.row_checks(&mut health) {
            if integrity == ["ok"] {
                integrity.clear();
            }
            let reason = match e {
                crate::store::Error::Sqlite(inner) => inner.to_string(),
                other => other.to_string(),
            };
            integrity.push(format!("reading the rows failed: {reason}"));
        }
        health.integrity = integrity;
        Ok(health)
    }

    fn row_checks(&self, h: &mut Health) -> Result<()> {
        h.queues = self.queue_health()?;
        h.orphan_messages = self.count(
            "SELECT count(*) FROM messages m
             WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id)",
        )?;
        h.missing_messages = self.count(
            "SELECT count(*) FROM deliveries d
             WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.msg_id)",
        )?;
        h.next_message_id = self.count("SELECT value FROM meta WHERE key = 'next_message_id'")?;
        h.max_message_id = self
            .conn
            .query_row("SELECT max(id) FROM messages", [], |r| r.get(0))?;
        h.broken_schemas = self.broken_schemas()?;
        Ok(())
    }

    /// The schemas in force that do not compile with this spool.
    fn broken_schemas(&self) -> Result<Vec<BrokenSchema>> {
        let mut broken = Vec::new();
        for name in self.names()? {
            let Some(q) = queues::lookup(&self.conn, &name)? else {
                continue;
            };
            if let Some((version, Some(text))) = contracts::latest(&self.conn, q.id)?
                && let Err(reason) = crate::contract::Contract::compile(&text)
            {
                broken.push(BrokenSchema {
                    queue: name,
                    version,
                    reason,
                });
            }
        }
        Ok(broken)
    }

    /// `PRAGMA journal_mode`, except that a connection opened `immutable`
    /// (a read-only mount) always says `delete`: then the file header tells
    /// (bytes 18 and 19 are 2 in WAL mode).
    fn journal_mode(&self) -> Result<String> {
        let mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if mode == "wal" {
            return Ok(mode);
        }
        let mut header = [0u8; 20];
        let wal_header = std::fs::File::open(&self.path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
            .is_ok_and(|()| header[18] == 2 && header[19] == 2);
        Ok(if wal_header { "wal".into() } else { mode })
    }

    /// `PRAGMA integrity_check`; an error while checking is itself a finding.
    fn integrity_check(&self) -> Vec<String> {
        let rows = self
            .conn
            .prepare("PRAGMA integrity_check")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            });
        match rows {
            Ok(rows) if rows.is_empty() => vec!["integrity_check returned nothing".into()],
            Ok(rows) => rows,
            Err(e) => vec![format!("the check itself failed: {e}")],
        }
    }

    fn count(&self, sql: &str) -> Result<i64> {
        Ok(self
            .conn
            .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten()
            .unwrap_or(0))
    }

    fn queue_health(&self) -> Result<Vec<QueueHealth>> {
        let mut counted: std::collections::HashMap<i64, [i64; 6]> = Default::default();
        let mut stmt = self
            .conn
            .prepare("SELECT queue_id, state, count(*) FROM deliveries GROUP BY queue_id, state")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (queue, state, n) = row?;
            if let Some(slot) = usize::try_from(state).ok().filter(|s| *s < 6) {
                counted.entry(queue).or_default()[slot] = n;
            }
        }
        let mut out = Vec::new();
        for name in self.names()? {
            let Some(q) = queues::lookup(&self.conn, &name)? else {
                continue;
            };
            out.push(QueueHealth {
                counters: counters(&self.conn, &q)?,
                counted: counted.get(&q.id).copied().unwrap_or_default(),
                name: q.name,
                is_topic: q.is_topic,
                settings: q.settings,
            });
        }
        Ok(out)
    }

    /// Recomputes what can be recomputed: the per-queue counters from the
    /// rows, message rows no delivery needs, and the next message id. Returns
    /// how many things it changed. One write transaction.
    pub fn repair(&mut self) -> Result<usize> {
        let mut tx = Tx::begin(&mut self.conn)?;
        let mut changed = tx.tx.execute(
            "UPDATE queues SET
               n_ready   = (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 0),
               n_delayed = (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 1),
               n_leased  = (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 2),
               n_acked   = (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 3),
               n_dead    = (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 4),
               n_held    = (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 5)
             WHERE n_ready   IS NOT (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 0)
                OR n_delayed IS NOT (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 1)
                OR n_leased  IS NOT (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 2)
                OR n_acked   IS NOT (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 3)
                OR n_dead    IS NOT (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 4)
                OR n_held    IS NOT (SELECT count(*) FROM deliveries WHERE queue_id = queues.id AND state = 5)",
            [],
        )?;
        let orphans = tx.tx.execute(
            "DELETE FROM messages WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = messages.id)",
            [],
        )?;
        if orphans > 0 {
            tx.freed_pages();
        }
        changed += orphans;
        changed += tx.tx.execute(
            "UPDATE meta SET value = (SELECT max(id) + 1 FROM messages)
             WHERE key = 'next_message_id' AND value <= (SELECT max(id) FROM messages)",
            [],
        )?;
        tx.commit()?;
        Ok(changed)
    }
}

fn counters(conn: &rusqlite::Connection, q: &QueueRow) -> Result<[i64; 6]> {
    Ok(conn.query_row(
        "SELECT n_ready, n_delayed, n_leased, n_acked, n_dead, n_held FROM queues WHERE id = ?1",
        [q.id],
        |r| {
            let mut n = [0; 6];
            for (i, slot) in n.iter_mut().enumerate() {
                *slot = r.get(i)?;
            }
            Ok(n)
        },
    )?)
}
