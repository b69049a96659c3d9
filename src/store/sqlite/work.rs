//! What `spool work` needs beyond claim/ack/nack: settling the handlers that
//! finished and leasing the next messages in one transaction, and releasing
//! deliveries whose handler never ran or was stopped.
//!
//! One transaction per round keeps the per-message cost near one commit per
//! batch of finished handlers, instead of one for the ack and one for the claim.

use std::time::Duration;

use super::lease::{self, Claim, Held};
use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::receipt::{Receipt, ReceiptError, Release};
use crate::store::types::{Outcome, Settled, WorkStep};
use crate::store::{Result, SqliteStore, State, Sync};

impl SqliteStore {
    /// Settles the deliveries of finished handlers, then leases up to `want`
    /// more messages of `queue`, in one transaction. Settling first lets a
    /// message released or retried without delay be claimed again at once.
    pub fn work_step(
        &mut self,
        queue: &str,
        done: &[(Receipt, Outcome)],
        want: usize,
        visibility: Option<Duration>,
    ) -> Result<WorkStep> {
        let mut tx = Tx::begin(&mut self.conn)?;
        let settled = lease::settle_in(
            &mut tx,
            done,
            |(r, _)| r,
            |tx, q, (r, outcome), held| settle_one(tx, q, r, *outcome, held),
        )?
        .into_iter()
        .map(|s| s.map(|s| s.unwrap_or(Settled::Acked)))
        .collect();
        let claim = if want > 0 {
            lease::claim_in(&mut tx, queue, want, visibility, false)?
        } else {
            Claim::Leased(Vec::new(), visibility.unwrap_or_default())
        };
        // The error for a missing queue names similar queues, which needs the
        // connection back: build it after the commit.
        let (claimed, lease) = match claim {
            Claim::Leased(leased, lease) => (Ok(leased), lease),
            Claim::Topic(q) => (Err(Some(queues::topic_error(&tx.tx, q)?)), Duration::ZERO),
            Claim::Missing => (Err(None), Duration::ZERO),
        };
        tx.commit()?;
        let claimed = claimed.map_err(|e| e.unwrap_or_else(|| self.unknown_queue(queue)));
        Ok(WorkStep {
            settled,
            claimed,
            lease,
        })
    }

    /// Puts leased deliveries back to ready without counting their attempt,
    /// for messages whose handler could not be started or was stopped by
    /// spool itself. Receipts whose lease has ended are refused.
    pub fn release(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        let mut tx = Tx::begin(&mut self.conn)?;
        let outcomes = lease::settle_in(
            &mut tx,
            receipts,
            |r| r,
            |tx, q, r, _| release_one(tx, q, r.msg_id),
        )?;
        tx.commit()?;
        Ok(outcomes.into_iter().map(|o| o.map(|_| ())).collect())
    }
}

fn settle_one(
    tx: &mut Tx<'_>,
    q: &QueueRow,
    r: &Receipt,
    outcome: Outcome,
    held: Held,
) -> Result<Settled> {
    match outcome {
        Outcome::Ack => {
            lease::finish(tx, q, r.msg_id, held.group.as_deref(), State::Acked)?;
            Ok(Settled::Acked)
        }
        Outcome::Retry => Ok(
            match lease::give_back(tx, q, r.msg_id, &held, Release::Backoff)? {
                State::Dead => Settled::Dead,
                _ => Settled::Retrying,
            },
        ),
        Outcome::Release => {
            release_one(tx, q, r.msg_id)?;
            Ok(Settled::Released)
        }
    }
}

/// Back to ready now, with the attempt the lease counted taken back. A
/// grouped message stays its group's head, so the group's order holds.
fn release_one(tx: &mut Tx<'_>, q: &QueueRow, msg: i64) -> Result<()> {
    tx.tx
        .prepare_cached(
            "UPDATE deliveries SET state = 0, visible_at = ?3, attempts = max(attempts - 1, 0)
             WHERE msg_id = ?1 AND queue_id = ?2",
        )?
        .execute((msg, q.id, tx.now))?;
    tx.counts
        .moved(q.id, Some(State::Leased), Some(State::Ready));
    Ok(())
}

impl SqliteStore {
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
