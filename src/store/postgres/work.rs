//! What `spool work` needs beyond claim/ack/nack (the operations are
//! `ops::work`), and commit durability.

use std::time::Duration;

use super::PostgresStore;
use crate::store::error::Result;
use crate::store::ops::work;
use crate::store::receipt::{Receipt, ReceiptError};
use crate::store::types::{Outcome, Sync, WorkStep};

impl PostgresStore {
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

    /// Sets whether this connection's commits wait for the server's disk:
    /// `synchronous_commit` on ([`Sync::Full`]) or off ([`Sync::Normal`]).
    /// As with SQLite, a later durable commit makes every earlier one durable
    /// too (the WAL is flushed in order).
    pub fn set_sync(&mut self, sync: Sync) -> Result<()> {
        let value = match sync {
            Sync::Full => "on",
            Sync::Normal => "off",
        };
        self.conn
            .get_mut()
            .batch(&format!("SET synchronous_commit = {value}"))
    }

    /// Makes every commit so far durable: commits a transaction that writes
    /// WAL (it takes a transaction id) with `synchronous_commit = on`, which
    /// waits until the WAL up to it, and so every earlier commit of any
    /// connection, is on the server's disk.
    pub fn flush(&self) -> Result<()> {
        let mut conn = self.conn.borrow_mut();
        conn.batch("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT")
    }
}
