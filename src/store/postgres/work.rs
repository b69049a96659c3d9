//! What `spool work` needs beyond claim/ack/nack: settling the handlers that
//! finished and leasing the next messages in one transaction, releasing
//! deliveries whose handler never ran, and commit durability.

use std::time::Duration;

use super::PostgresStore;
use super::lease::{self, Claim, Held};
use super::queues::QueueRow;
use super::tx::Tx;
use crate::store::error::Result;
use crate::store::receipt::{Receipt, ReceiptError, Release};
use crate::store::types::{Outcome, Settled, State, Sync, WorkStep};

impl PostgresStore {
    /// Settles the deliveries of finished handlers, then leases up to `want`
    /// more messages of `queue`, in one transaction.
    pub fn work_step(
        &mut self,
        queue: &str,
        done: &[(Receipt, Outcome)],
        want: usize,
        visibility: Option<Duration>,
    ) -> Result<WorkStep> {
        self.retrying(|store| store.work_step_once(queue, done, want, visibility))
    }

    fn work_step_once(
        &mut self,
        queue: &str,
        done: &[(Receipt, Outcome)],
        want: usize,
        visibility: Option<Duration>,
    ) -> Result<WorkStep> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
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
        let (claimed, lease) = match claim {
            Claim::Leased(leased, lease) => (Ok(leased), lease),
            Claim::Topic(e) => (Err(Some(e)), Duration::ZERO),
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

    /// Puts leased deliveries back to ready without counting their attempt.
    /// Receipts whose lease has ended are refused.
    pub fn release(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        self.retrying(|store| store.release_once(receipts))
    }

    fn release_once(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let outcomes = lease::settle_in(
            &mut tx,
            receipts,
            |r| r,
            |tx, q, r, _| release_one(tx, q, r.msg_id),
        )?;
        tx.commit()?;
        Ok(outcomes.into_iter().map(|o| o.map(|_| ())).collect())
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

/// Back to ready now, with the attempt the lease counted taken back.
fn release_one(tx: &mut Tx<'_>, q: &QueueRow, msg: i64) -> Result<()> {
    let now = tx.now;
    tx.execute(
        "UPDATE deliveries SET state = 0, visible_at = $3, attempts = greatest(attempts - 1, 0)
         WHERE msg_id = $1 AND queue_id = $2",
        &[&msg, &q.id, &now],
    )?;
    tx.counts
        .moved(q.id, Some(State::Leased), Some(State::Ready));
    tx.notify(&q.name);
    Ok(())
}
