//! What `spool work` needs beyond claim/ack/nack: settling the handlers that
//! finished and leasing the next messages in one transaction, and releasing
//! deliveries whose handler never ran or was stopped.
//!
//! One transaction per round keeps the per-message cost near one commit per
//! batch of finished handlers, instead of one for the ack and one for the claim.

use std::time::Duration;

use super::lease;
use super::publish::{Cause, publish_in, target_refuses};
use super::schedules;
use crate::store::backend::{self, Backend, LeaseTx, WriteTx};
use crate::store::checks::ContractCache;
use crate::store::error::Result;
use crate::store::receipt::{Receipt, ReceiptError, Release};
use crate::store::rules::Held;
use crate::store::types::{Done, Emit, NewMessage, Outcome, QueueRow, Settled, State, WorkStep};

/// Settles the deliveries of finished handlers, then leases up to `want`
/// more messages of `queue`, in one transaction. Settling first lets a
/// message released or retried without delay be claimed again at once.
/// An unknown queue or a topic is the answer of the claim
/// ([`WorkStep::claimed`]); what was settled is committed all the same.
///
/// With `emit`, what each acked delivery's handler printed is published to
/// the emit target in the same transaction, coming from that delivery
/// ([`Cause`]); a delivery whose lease is gone emits nothing. When the
/// target refuses a delivery's messages, the transaction is run again with
/// that delivery failed instead ([`WorkStep::refused`]): one delivery's
/// refusal does not hold back the others, and nothing it emitted lands.
pub(crate) fn work_step(
    store: &mut (impl Backend + ?Sized),
    queue: &str,
    done: &[Done],
    want: usize,
    visibility: Option<Duration>,
    emit: Option<Emit<'_>>,
) -> Result<WorkStep> {
    let mut cache = std::mem::take(store.contracts());
    let mut refused: Vec<(usize, String)> = Vec::new();
    let mut schedule_due = None;
    let outcome = loop {
        let mut refusal = None;
        let step = backend::write(store, |tx| {
            refusal = None;
            schedule_due = None;
            let settled = settle_all(tx, &mut cache, done, &refused, emit, &mut refusal)?;
            let (claimed, lease, held_back) = if want > 0 {
                match lease::claim_in(tx, queue, want, visibility, false)? {
                    Ok(l) => {
                        schedule_due = l.schedule_due;
                        (Ok(l.deliveries), l.lease, l.held_back)
                    }
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
                refused: Vec::new(),
            })
        });
        match (step, refusal) {
            (Err(_), Some((items, why))) => {
                refused.extend(items.into_iter().map(|i| (i, why.clone())));
            }
            (step, _) => {
                break step.map(|mut s| {
                    s.refused = std::mem::take(&mut refused);
                    s
                });
            }
        }
    };
    *store.contracts() = cache;
    let mut step = outcome?;
    // A due occurrence is published in a transaction of its own (what was
    // settled above is committed already), then claimed for.
    if let (Some(queue_id), Ok(claimed)) = (schedule_due, &mut step.claimed) {
        let room = want.saturating_sub(claimed.len());
        claimed.extend(schedules::after_claim(
            store, queue, queue_id, room, visibility,
        )?);
    }
    Ok(step)
}

/// Settles `done` (those in `refused` as failures), publishing what the
/// acked ones emitted. When the emit target refuses, `refusal` names the
/// deliveries to blame and the transaction must be rolled back (the error
/// returned does that).
fn settle_all(
    tx: &mut dyn WriteTx,
    cache: &mut ContractCache,
    done: &[Done],
    refused: &[(usize, String)],
    emit: Option<Emit<'_>>,
    refusal: &mut Option<(Vec<usize>, String)>,
) -> Result<Vec<std::result::Result<Settled, ReceiptError>>> {
    let items: Vec<(usize, &Done)> = done.iter().enumerate().collect();
    let mut causes: Vec<(usize, Cause)> = Vec::new();
    let settled = lease::settle_in(
        tx,
        &items,
        |(_, d)| &d.receipt,
        |tx, q, (i, d), held| {
            let failed = refused.iter().find(|(r, _)| r == i);
            let (outcome, error) = match failed {
                Some((_, why)) => (Outcome::Retry, Some(why.as_str())),
                None => (d.outcome, d.error.as_deref()),
            };
            if outcome == Outcome::Ack && emit.is_some() && !d.emitted.is_empty() {
                causes.push((
                    *i,
                    Cause {
                        queue: q.name.clone(),
                        id: d.receipt.msg_id,
                        group: held.group.clone(),
                    },
                ));
            }
            settle_one(tx, q, &d.receipt, outcome, error, held)
        },
    )?
    .into_iter()
    .map(|s| s.map(|s| s.unwrap_or(Settled::Acked)))
    .collect();
    if let (Some(emit), false) = (emit, causes.is_empty()) {
        let mut current = None;
        let published = publish_in(tx, cache, emit.target, &mut |batch| {
            for (i, cause) in &causes {
                current = Some(*i);
                batch.set_cause(Some(cause.clone()));
                for body in &done[*i].emitted {
                    batch.publish(&NewMessage {
                        body,
                        raw: emit.raw,
                        key: None,
                        group: None,
                        headers: None,
                        priority: 0,
                        available_at: None,
                        ttl: None,
                    })?;
                }
            }
            current = None;
            Ok(())
        });
        if let Err(e) = published {
            if !target_refuses(&e) {
                return Err(e);
            }
            // One delivery's message, or (a full queue, no subscribers)
            // all of this round's.
            let blamed = match current {
                Some(i) => vec![i],
                None => causes.iter().map(|(i, _)| *i).collect(),
            };
            *refusal = Some((
                blamed,
                format!("its output was not published to `{}`: {e}", emit.target),
            ));
            return Err(e);
        }
    }
    Ok(settled)
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
