//! Health checks for `spool doctor`: SQLite's integrity check, the file's
//! shape (WAL, free pages, journal mode) and spool's own invariants (the
//! per-queue counters match the rows, every delivery has its message, ids
//! cannot be reused). Also the repair of what can be recomputed.

use super::tx::Tx;
use super::{netfs, schema};
use crate::store::ops::doctor;
use crate::store::views::{DatabaseHealth, FileHealth, Health};
use crate::store::{Result, SqliteStore};

impl SqliteStore {
    /// Runs every check. Only reads; a full integrity check and a count of
    /// every row, so it takes a while on a large database.
    pub fn health(&self) -> Result<Health> {
        let mut integrity = self.integrity_check();
        let pragma_i64 = |name: &str| -> Result<i64> {
            Ok(self.conn.pragma_query_value(None, name, |r| r.get(0))?)
        };
        let wal = format!("{}-wal", self.path.display());
        let mut health = doctor::report(DatabaseHealth {
            path: self.path.display().to_string(),
            server: None,
            size_bytes: std::fs::metadata(&self.path).map_or(0, |m| m.len()),
            file: Some(FileHealth {
                wal_bytes: std::fs::metadata(wal).map_or(0, |m| m.len()),
                page_size: pragma_i64("page_size")?,
                page_count: pragma_i64("page_count")?,
                free_pages: pragma_i64("freelist_count")?,
                journal_mode: self.journal_mode()?,
                auto_vacuum: pragma_i64("auto_vacuum")?,
                network_fs: netfs::network_kind_of(&self.path),
            }),
            schema_version: pragma_i64("user_version")?,
            schema_supported: schema::CURRENT,
        });
        // A damaged file may fail these reads; that is a finding, not the end
        // of the report.
        if let Err(e) = doctor::check(self, &mut health) {
            if integrity == ["ok"] {
                integrity.clear();
            }
            let reason = match e {
                crate::store::Error::Sqlite(inner) => inner.to_string(),
                other => other.to_string(),
            };
            integrity.push(format!("reading the rows failed: {reason}"));
        }
        health.integrity = Some(integrity);
        Ok(health)
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
