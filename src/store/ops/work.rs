//! What `spool work` needs beyond claim/ack/nack: settling the handlers that
//! finished and leasing the next messages in one transaction, and releasing
//! deliveries whose handler never ran or was stopped.
//!
//! One transaction per round keeps the per-message cost near one commit per
//! batch of finished handlers, instead of one for the ack and one for the claim.

use std::time::Duration;

use super::lease;
use crate::store::backend::{self, Backend, LeaseTx};
use crate::store::error::Result;
use crate::store::receipt::{Receipt, ReceiptError, Release};
use crate::store::rules::Held;
use crate::store::types::{Outcome, QueueRow, Settled, State, WorkStep};

/// Settles the deliveries of finished handlers, then leases up to `want`
/// more messages of `queue`, in one transaction. Settling first lets a
/// message released or retried without delay be claimed again at once.
/// An unknown queue or a topic is the answer of the claim
/// ([`WorkStep::claimed`]); what was settled is committed all the same.
pub(crate) fn work_step(
    store: &mut (impl Backend + ?Sized),
    queue: &str,
    done: &[(Receipt, Outcome, Option<String>)],
    want: usize,
    visibility: Option<Duration>,
) -> Result<WorkStep> {
    backend::write(store, |tx| {
        let settled = lease::settle_in(
            tx,
            done,
            |(r, _, _)| r,
            |tx, q, (r, outcome, error), held| {
                settle_one(tx, q, r, *outcome, error.as_deref(), held)
            },
        )?
        .into_iter()
        .map(|s| s.map(|s| s.unwrap_or(Settled::Acked)))
        .collect();
        let (claimed, lease, held_back) = if want > 0 {
            match lease::claim_in(tx, queue, want, visibility, false)? {
                Ok(l) => (Ok(l.deliveries), l.lease, l.held_back),
                Err(e) => (Err(e), Duration::ZERO, false),
            }
        } else {
            (Ok(Vec::new()), visibility.unwrap_or_default(), false)
        };
        Ok(WorkStep {
            settled,
            claimed,
            lease,
            held_back,
        })
    })
}

/// Puts leased deliveries back to ready without counting their attempt,
/// for messages whose handler could not be started or was stopped by
/// spool itself. Receipts whose lease has ended are refused.
pub(crate) fn release(
    store: &mut (impl Backend + ?Sized),
    receipts: &[Receipt],
) -> Result<Vec<Result<(), ReceiptError>>> {
    backend::write(store, |tx| {
        let outcomes = lease::settle_in(
            tx,
            receipts,
            |r| r,
            |tx, q, r, _| release_one(tx, q, r.msg_id),
        )?;
        Ok(outcomes.into_iter().map(|o| o.map(|_| ())).collect())
    })
}

fn settle_one(
    tx: &mut (impl LeaseTx + ?Sized),
    q: &QueueRow,
    r: &Receipt,
    outcome: Outcome,
    error: Option<&str>,
    held: Held,
) -> Result<Settled> {
    match outcome {
        Outcome::Ack => {
            lease::finish(tx, q, r.msg_id, held.group.as_deref(), State::Acked)?;
            Ok(Settled::Acked)
        }
        Outcome::Retry => Ok(
            match lease::give_back(tx, q, r.msg_id, &held, Release::Backoff, error)? {
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
fn release_one(tx: &mut (impl LeaseTx + ?Sized), q: &QueueRow, msg: i64) -> Result<()> {
    if tx.unlease(q.id, msg)? {
        tx.counts()
            .moved(q.id, Some(State::Leased), Some(State::Ready));
        tx.notify(&q.name);
    }
    Ok(())
}
