//! What `spool work` needs beyond claim/ack/nack (the operations are
//! `ops::work`), and commit durability.

use std::time::Duration;

use crate::store::ops::work;
use crate::store::receipt::{Receipt, ReceiptError};
use crate::store::types::{Outcome, WorkStep};
use crate::store::{Result, SqliteStore, Sync};

impl SqliteStore {
    /// See [`work::work_step`].
    pub fn work_step(
        &mut self,
        queue: &str,
        done: &[(Receipt, Outcome)],
        want: usize,
        visibility: Option<Duration>,
    ) -> Result<WorkStep> {
        work::work_step(self, queue, done, want, visibility)
    }

    /// See [`work::release`].
    pub fn release(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        work::release(self, receipts)
    }

    /// Sets whether this connection's commits wait for the disk (`PRAGMA
    /// synchronous`). For a caller that groups commits: many quick commits
    /// with [`Sync::Normal`], then one with [`Sync::Full`] (or
    /// [`SqliteStore::flush`]), which puts every earlier commit on disk too, since
    /// the WAL is one file written in order.
    pub fn set_sync(&mut self, sync: Sync) -> Result<()> {
        let value = match sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        };
        self.conn.pragma_update(None, "synchronous", value)?;
        Ok(())
    }

    /// Makes every commit so far durable, as a commit with `synchronous =
    /// FULL` would: fsyncs the WAL file, which holds every frame committed
    /// since the last checkpoint (a checkpoint syncs what it copies into the
    /// database file). Without a WAL file there is nothing to sync.
    pub fn flush(&self) -> Result<()> {
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
}
