//! Leases: claim, ack, nack, extend, the receipt judgement they share, and
//! the lazy transitions (due delayed messages, expired leases, retention)
//! that writers perform on the way.

use std::collections::HashMap;
use std::time::Duration;

use crate::store::backend::{self, Backend, LeaseTx};
use crate::store::error::{Error, Result};
use crate::store::flow::{self, DeadReason};
use crate::store::receipt::{Receipt, ReceiptError, Release};
use crate::store::rules::{self, AfterFailure, Held, Judgement, Repeat};
use crate::store::types::{Delivery, QueueRow, State, ms};

/// Leases up to `max` deliverable messages of `queue` for `visibility`
/// (default: the queue's), highest priority first, then oldest. With
/// `ack`, they are acked in the same transaction (at-most-once; on SQLite
/// one commit, so one fsync, for the whole `consume --ack`).
pub(crate) fn claim(
    store: &mut (impl Backend + ?Sized),
    queue: &str,
    max: usize,
    visibility: Option<Duration>,
    ack: bool,
) -> Result<Vec<Delivery>> {
    backend::write(store, |tx| {
        claim_in(tx, queue, max, visibility, ack)?.map(|l| l.deliveries)
    })
}

/// What a claim answers: the deliveries leased (maybe none) and for how
/// long, or the error for an unknown queue or a topic.
pub(crate) type Claimed = std::result::Result<Leased, Error>;

/// What a claim leased.
#[derive(Debug)]
pub(crate) struct Leased {
    /// The deliveries (maybe none).
    pub deliveries: Vec<Delivery>,
    /// How long their leases last.
    pub lease: Duration,
    /// Ready messages were left because the queue's in-flight cap or rate
    /// held them back (not a pause): `work --until-empty` waits for them.
    pub held_back: bool,
    /// A schedule that feeds the queue has a due occurrence: the queue's
    /// id, for the caller to fire it (`ops::schedules`) once this
    /// transaction has committed.
    pub schedule_due: Option<i64>,
}

/// The body of [`claim`], inside a transaction the caller commits. An
/// unknown queue or a topic is the inner error: it leaves the transaction
/// usable (`work` commits what it settled all the same).
pub(crate) fn claim_in(
    tx: &mut (impl LeaseTx + ?Sized),
    queue: &str,
    max: usize,
    visibility: Option<Duration>,
    ack: bool,
) -> Result<Claimed> {
    let mut q = match tx.queue(queue)? {
        None => return Ok(Err(backend::unknown_queue(tx, queue))),
        Some(q) if q.is_topic => return Ok(Err(backend::topic_error(tx, q)?)),
        Some(q) => q,
    };
    let flow = q.settings.flow;
    if flow.limits_claims()
        && let Some(locked) = tx.lock_queue(q.id)?
    {
        q = locked;
    }
    tx.promote_due(&q)?;
    tx.housekeeping(&q)?;
    let lease = visibility.unwrap_or(q.settings.visibility);
    let now = tx.now();
    let lease_end = now.saturating_add(ms(lease));
    let budget = if flow.limits_claims() {
        let leased_now = match flow.max_in_flight {
            0 => 0,
            cap => tx.count_leased(q.id, cap)?,
        };
        let allows = flow.rate.map(|r| r.allowance(q.rate_full_at, now));
        flow::claim_budget(max, flow.paused, flow.max_in_flight, leased_now, allows)
    } else {
        max
    };
    let leased = match budget {
        0 => Vec::new(),
        n => tx.lease_next(&q, n, lease_end)?,
    };
    if let Some(rate) = flow.rate
        && !leased.is_empty()
    {
        let taken = u32::try_from(leased.len()).unwrap_or(u32::MAX);
        tx.set_rate_state(q.id, rate.take(q.rate_full_at, now, taken))?;
    }
    let held_back = budget < max && !flow.paused && leased.len() == budget && tx.any_ready(q.id)?;
    tx.counts().moved_many(
        q.id,
        Some(State::Ready),
        Some(State::Leased),
        leased.len() as i64,
    );
    if ack {
        for d in &leased {
            finish(tx, &q, d.id, d.group.as_deref(), State::Acked)?;
        }
        tx.release_groups()?;
    }
    let schedule_due = q.schedule_at.filter(|&at| at <= now).map(|_| q.id);
    Ok(Ok(Leased {
        deliveries: leased,
        lease,
        held_back,
        schedule_due,
    }))
}

/// Acks each receipt: the message is done (kept for replay, or deleted when
/// the queue's retention is 0). Each receipt is judged on its own.
pub(crate) fn ack(
    store: &mut (impl Backend + ?Sized),
    receipts: &[Receipt],
) -> Result<Vec<Result<(), ReceiptError>>> {
    backend::write(store, |tx| ack_in(tx, receipts))
}

/// The body of [`ack`], inside a transaction the caller commits: per queue,
/// one statement ends the deliveries whose receipt's lease holds
/// ([`LeaseTx::ack_held`], which judges in SQL what
/// [`rules::judge_receipt`] calls `Held`), with no lookup before it; only
/// the receipts it did not end are looked up, to tell a repeated ack
/// (harmless) from a refused one, or to end one it left (in a group, on
/// SQLite) as [`settle_in`] would. The answers are those of [`settle_in`],
/// which spends a lookup and an update per receipt.
pub(crate) fn ack_in(
    tx: &mut (impl LeaseTx + ?Sized),
    receipts: &[Receipt],
) -> Result<Vec<Result<(), ReceiptError>>> {
    let queues = queue_map(tx, receipts.iter())?;
    let mut ids: Vec<i64> = queues.keys().copied().collect();
    ids.sort_unstable();
    let mut acked = std::collections::HashSet::new();
    for id in ids {
        let q = &queues[&id];
        let set: Vec<Receipt> = receipts
            .iter()
            .filter(|r| r.queue_id == id)
            .copied()
            .collect();
        let ended = tx.ack_held(q, &set)?;
        if ended.is_empty() {
            continue;
        }
        let deleting = q.settings.retention.is_zero();
        let n = ended.len() as i64;
        if deleting {
            tx.counts().acked_and_deleted(id, n);
        } else {
            tx.counts()
                .moved_many(id, Some(State::Leased), Some(State::Acked), n);
        }
        for (r, group) in &ended {
            if let Some(group) = group {
                tx.release_group(id, group, r.msg_id)?;
            }
        }
        if deleting {
            let msgs: Vec<i64> = ended.iter().map(|(r, _)| r.msg_id).collect();
            tx.delete_orphans(&msgs)?;
        }
        // Leases ended: consumers waiting on the in-flight cap may go on.
        if q.settings.flow.max_in_flight > 0 {
            tx.notify(&q.name);
        }
        acked.extend(ended.into_iter().map(|(r, _)| r));
    }
    let mut last_id = None;
    let mut outcomes = Vec::with_capacity(receipts.len());
    for r in receipts {
        let Some(q) = queues.get(&r.queue_id) else {
            outcomes.push(Err(ReceiptError::Unknown));
            continue;
        };
        outcomes.push(if acked.contains(r) {
            Ok(())
        } else {
            match judge(tx, r, &mut last_id)? {
                Judgement::Held(held) => {
                    finish(tx, q, r.msg_id, held.group.as_deref(), State::Acked)?;
                    acked.insert(*r);
                    Ok(())
                }
                Judgement::Done => Ok(()),
                Judgement::Refused(e) => Err(e),
            }
        });
    }
    tx.release_groups()?;
    // Retention cleanup in small steps, paid by the writers of each queue.
    for q in queues.values() {
        tx.housekeeping(q)?;
    }
    Ok(outcomes)
}

/// Gives each receipt's message back: deliverable again per `release`, or
/// dead when this was its last allowed attempt.
pub(crate) fn nack(
    store: &mut (impl Backend + ?Sized),
    receipts: &[Receipt],
    release: Release,
    reason: Option<&str>,
) -> Result<Vec<Result<(), ReceiptError>>> {
    settle(store, receipts, Repeat::Refused, &move |tx, q, r, held| {
        give_back(tx, q, r.msg_id, &held, release, reason).map(|_| ())
    })
}

/// Pushes each receipt's lease end to now + `by` (a heartbeat).
pub(crate) fn extend(
    store: &mut (impl Backend + ?Sized),
    receipts: &[Receipt],
    by: Duration,
) -> Result<Vec<Result<(), ReceiptError>>> {
    settle(store, receipts, Repeat::Refused, &move |tx, q, r, _| {
        let until = tx.now().saturating_add(ms(by));
        tx.set_state(q.id, r.msg_id, State::Leased, until)
    })
}

/// What [`settle`] does to a receipt whose lease holds.
type Act<'a> = dyn Fn(&mut dyn backend::WriteTx, &QueueRow, &Receipt, Held) -> Result<()> + 'a;

/// Runs `act` for every receipt whose lease holds, in one transaction.
/// A receipt whose delivery is already finished (acked, or deleted on
/// ack) is fine for a repeated ack, but refused for nack and extend: they
/// need a lease, and answering yes would tell the caller the message is
/// back in the queue, or still theirs, when it is not.
fn settle(
    store: &mut (impl Backend + ?Sized),
    receipts: &[Receipt],
    repeat: Repeat,
    act: &Act<'_>,
) -> Result<Vec<Result<(), ReceiptError>>> {
    backend::write(store, |tx| {
        Ok(
            settle_in(tx, receipts, |r| r, |tx, q, r, held| act(tx, q, r, held))?
                .into_iter()
                .map(|outcome| rules::settle_answer(outcome, repeat))
                .collect(),
        )
    })
}

/// Runs `act` for every item whose receipt's lease holds, inside a
/// transaction the caller commits. `Ok(None)`: the delivery was already
/// finished with this receipt (acking again is harmless), so `act` did not run.
pub(crate) fn settle_in<X: LeaseTx + ?Sized, T, S>(
    tx: &mut X,
    items: &[T],
    receipt: impl Fn(&T) -> &Receipt,
    mut act: impl FnMut(&mut X, &QueueRow, &T, Held) -> Result<S>,
) -> Result<Vec<Result<Option<S>, ReceiptError>>> {
    let queues = queue_map(tx, items.iter().map(&receipt))?;
    let mut last_id = None;
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let r = receipt(item);
        let Some(q) = queues.get(&r.queue_id) else {
            outcomes.push(Err(ReceiptError::Unknown));
            continue;
        };
        let outcome = match judge(tx, r, &mut last_id)? {
            Judgement::Held(held) => Ok(Some(act(tx, q, item, held)?)),
            Judgement::Done => Ok(None),
            Judgement::Refused(e) => Err(e),
        };
        outcomes.push(outcome);
    }
    tx.release_groups()?;
    // Retention cleanup in small steps, paid by the writers of each queue.
    for q in queues.values() {
        tx.housekeeping(q)?;
    }
    Ok(outcomes)
}

/// The queue rows the receipts name, by id (unknown ids are missing).
pub(crate) fn queue_map<'r>(
    tx: &mut (impl LeaseTx + ?Sized),
    receipts: impl Iterator<Item = &'r Receipt>,
) -> Result<HashMap<i64, QueueRow>> {
    let mut ids: Vec<i64> = receipts.map(|r| r.queue_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(tx
        .queues_by_ids(&ids)?
        .into_iter()
        .map(|q| (q.id, q))
        .collect())
}

/// Judges a receipt against the delivery row it names. `last_id` caches
/// the highest message id handed out, read at the first receipt whose row
/// is gone.
pub(crate) fn judge(
    tx: &mut (impl LeaseTx + ?Sized),
    r: &Receipt,
    last_id: &mut Option<i64>,
) -> Result<Judgement> {
    let Some(row) = tx.lease_row(r)? else {
        let last = match *last_id {
            Some(id) => id,
            None => *last_id.insert(tx.last_message_id()?),
        };
        return Ok(rules::judge_missing(r, last));
    };
    Ok(rules::judge_receipt(r, row, tx.now()))
}

/// Ends a leased delivery as acked (kept, or deleted when the queue's
/// retention is 0) or dead, and lets the next message of its group go.
pub(crate) fn finish(
    tx: &mut (impl LeaseTx + ?Sized),
    q: &QueueRow,
    msg: i64,
    group: Option<&str>,
    to: State,
) -> Result<()> {
    // A lease ends: consumers waiting on the in-flight cap may go on.
    if q.settings.flow.max_in_flight > 0 {
        tx.notify(&q.name);
    }
    if to == State::Acked && q.settings.retention.is_zero() {
        tx.delete_delivery(q.id, msg)?;
        tx.delete_orphans(&[msg])?;
        tx.counts().acked_and_deleted(q.id, 1);
    } else {
        tx.mark_done(q, msg, to)?;
        tx.counts().moved(q.id, Some(State::Leased), Some(to));
    }
    if let Some(group) = group {
        tx.release_group(q.id, group, msg)?;
    }
    Ok(())
}

/// Gives a held delivery back after a failed attempt: deliverable again per
/// `release`, or dead when this was its last allowed attempt. Returns the
/// new state.
pub(crate) fn give_back(
    tx: &mut (impl LeaseTx + ?Sized),
    q: &QueueRow,
    msg: i64,
    held: &Held,
    release: Release,
    error: Option<&str>,
) -> Result<State> {
    let after = rules::after_failure(
        &q.settings,
        held.attempts,
        release,
        held.expires_at,
        tx.now(),
    );
    let reason = match after {
        AfterFailure::Dead(DeadReason::MaxAttempts) | AfterFailure::Back { .. } => None,
        AfterFailure::Dead(reason) => Some(reason),
    };
    if reason.is_some() || error.is_some() {
        let error = error.map(rules::storable_text);
        tx.note_failure(q.id, msg, reason, error.as_deref())?;
    }
    match after {
        AfterFailure::Dead(reason) => {
            tx.counts().died(q.id, reason, 1);
            finish(tx, q, msg, held.group.as_deref(), State::Dead)?;
            Ok(State::Dead)
        }
        AfterFailure::Back { state, visible_at } => {
            tx.set_state(q.id, msg, state, visible_at)?;
            tx.counts().moved(q.id, Some(State::Leased), Some(state));
            tx.notify(&q.name);
            Ok(state)
        }
    }
}
