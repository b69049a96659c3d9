//! [`SqliteStore`] as a [`Store`]: what only this backend knows; every
//! operation is the trait's, written once.

use std::path::Path;
use std::time::Duration;

use super::tx::Tx;
use super::{SqliteStore, netfs, schema};
use crate::store::ops::doctor;
use crate::store::views::{DatabaseHealth, DatabaseInfo, FileHealth, Health};
use crate::store::{Result, Store, Sync};

impl Store for SqliteStore {
    fn file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    fn due_in(&self, queue: &str) -> Result<Option<Duration>> {
        Ok(self.next_due(queue)?.map(|at| {
            Duration::from_millis(at.saturating_sub(crate::store::now_ms()).max(0) as u64)
        }))
    }

    fn wait_step(
        &self,
        _queue: &str,
        version: i64,
        nap: Duration,
        pause: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<bool> {
        Ok(pause(nap) || self.data_version()? != version)
    }

    /// `PRAGMA synchronous`. A `FULL` commit puts every earlier commit on
    /// disk too, since the WAL is one file written in order.
    fn set_sync(&mut self, sync: Sync) -> Result<()> {
        let value = match sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        };
        self.conn.pragma_update(None, "synchronous", value)?;
        Ok(())
    }

    /// Fsyncs the WAL file, which holds every frame committed
    /// since the last checkpoint (a checkpoint syncs what it copies into the
    /// database file). Without a WAL file there is nothing to sync.
    fn flush(&self) -> Result<()> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let synced = std::fs::File::open(&wal).and_then(|f| f.sync_all());
        match synced {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(crate::store::Error::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
                    Some(format!("cannot sync the WAL file to disk: {e}")),
                )))
            }
            _ => Ok(()),
        }
    }

    fn database_info(&self) -> Result<DatabaseInfo> {
        let mut db = DatabaseInfo::of_path(self.path.clone());
        let free: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |row| row.get(0))?;
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |row| row.get(0))?;
        db.free_bytes = Some((free.max(0) * page.max(0)) as u64);
        Ok(db)
    }

    /// Includes a full integrity check.
    fn health(&self) -> Result<Health> {
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

    fn repair(&mut self) -> Result<usize> {
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
        // A queue that holds a delivery with an expiry must say so, or its
        // claims would not look for expired messages.
        changed += tx.tx.execute(
            "UPDATE queues SET may_expire = 1 WHERE may_expire = 0
               AND EXISTS (SELECT 1 FROM deliveries WHERE queue_id = queues.id AND expires_at IS NOT NULL)",
            [],
        )?;
        // Schedules that can never publish go first, then every queue's
        // next occurrence is recomputed from the schedules left.
        changed += tx.tx.execute(doctor::REMOVE_LOST_SCHEDULES, [])?;
        changed += tx.tx.execute(&doctor::repair_schedule_at("IS NOT"), [])?;
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

    /// `PRAGMA data_version`: cheap enough to poll every few milliseconds.
    fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "data_version", |row| row.get(0))?)
    }

    fn writers(&self) -> usize {
        1
    }
}
