//! Recovery and housekeeping: `replay`, `queue purge`, `queue delete`, and
//! releasing a stuck lease (from `top`), written once for both backends.
//!
//! Each is one write transaction. Replay, purge and releasing a lease first
//! apply the lazy transitions ([`backend::LeaseTx::promote_due`]: due delayed
//! messages and expired leases, which may die), and replay the retention
//! sweep too, so they act on the states users see.

use crate::store::backend::{
    self, AdminTx, Backend, ReadTx, ReplayRow, existing_queue, topic_error, unknown_queue,
};
use crate::store::checks::Check;
use crate::store::error::{Error, Result};
use crate::store::flow::{self, DeadReason, Load};
use crate::store::ops::publish::{Added, make_room};
use crate::store::rules;
use crate::store::types::{QueueRow, ReplayFilter, Replayed, State};

/// Puts matching acked/dead messages of `queue` back: in place (ready,
/// attempts reset, same ids), or with `to` as new ready deliveries of the
/// same messages in that queue (created if needed), leaving the originals
/// as they were. A grouped message whose group has an unfinished head
/// waits behind it (held). When `to` has a JSON Schema, every message
/// must meet it: the first that does not refuses the whole replay
/// ([`Error::Invalid`], naming its id). In place, messages keep the
/// schema version they were published under. Calls `progress(n)` as
/// messages are replayed (for a progress bar); on PostgreSQL again from
/// the start when a deadlock makes the transaction run again.
pub(crate) fn replay(
    store: &mut (impl Backend + ?Sized),
    queue: &str,
    filter: &ReplayFilter,
    to: Option<&str>,
    progress: &mut dyn FnMut(u64),
) -> Result<Replayed> {
    backend::write(store, |wtx| {
        let tx: &mut dyn AdminTx = wtx;
        let q = existing_queue(tx, queue)?;
        tx.promote_due(&q)?;
        tx.housekeeping(&q)?;
        let found = candidates(tx, &q, filter, true)?;
        if let (true, Some(name)) = (found.is_empty(), to) {
            // Nothing to replay: a target that does not exist is not made
            // (one that is a topic is still refused).
            if let Some(t) = tx.queue(name)?.filter(|t| t.is_topic) {
                return Err(topic_error(tx, t)?);
            }
            return Ok(Replayed::default());
        }
        let target = match to {
            None => q,
            Some(name) => {
                let target = tx.replay_target(name)?;
                if target.is_topic {
                    return Err(topic_error(tx, target)?);
                }
                target
            }
        };
        if !target.settings.flow.limits.is_unlimited() {
            tx.lock_queue(target.id)?;
        }
        let check = match to {
            Some(_) => tx.schema_check(&target)?,
            None => None,
        };
        let done = put_back(tx, &target, to.is_some(), check.as_ref(), found, progress)?;
        // Into a full queue, all or nothing (a replay never drops messages
        // to make room).
        let added = Added {
            load: Load {
                count: done.ids.len() as u64,
                bytes: 0,
            },
            first: None,
        };
        make_room(wtx, &target, &added, false)?;
        Ok(done)
    })
}

/// What [`replay`] would do, without changing anything (for `--dry-run`;
/// a read transaction, so it works on a read-only SQLite connection).
pub(crate) fn replay_preview(
    store: &(impl Backend + ?Sized),
    queue: &str,
    filter: &ReplayFilter,
    to: Option<&str>,
) -> Result<Replayed> {
    backend::read(store, |tx| {
        let tx: &mut dyn ReadTx = tx;
        let q = existing_queue(tx, queue)?;
        let found = candidates(tx, &q, filter, false)?;
        let target = match to {
            Some(name) => tx.queue(name)?,
            None => None,
        };
        if let Some(t) = target.as_ref().filter(|t| t.is_topic) {
            return Err(topic_error(tx, t.clone())?);
        }
        let check = match &target {
            Some(t) => tx.schema_check(t)?,
            None => None,
        };
        let mut done = Replayed::default();
        let into = target.map(|t| t.id);
        let admitted = admitted(tx, into, check.as_ref(), found, &mut done)?;
        done.ids = admitted.iter().map(|c| c.id).collect();
        Ok(done)
    })
}

/// The finished deliveries of `q` that match `filter`, by id, with the lazy
/// rules applied (an expired lease on its last attempt counts as dead since
/// its lease ended; acked messages past retention count as gone). `lock`:
/// lock the rows (for a replay that changes them).
fn candidates(
    tx: &mut (impl ReadTx + ?Sized),
    q: &QueueRow,
    filter: &ReplayFilter,
    lock: bool,
) -> Result<Vec<ReplayRow>> {
    let mut ids = if filter.ids.is_empty() {
        finished_ids(tx, q, filter)?
    } else {
        filter.ids.clone()
    };
    ids.sort_unstable();
    ids.dedup();
    let now = tx.now();
    let mut found = Vec::new();
    for (id, state, visible_at, attempts, done_at, priority, group, reason, ttl_ms, expires_at) in
        tx.replay_rows(q.id, &ids, lock)?
    {
        let row = (
            State::from_i64(state),
            visible_at,
            attempts,
            done_at,
            expires_at,
        );
        let reason = reason.as_deref().and_then(DeadReason::from_name);
        if let Some((state, _)) = rules::replay_candidate(filter, &q.settings, row, reason, now) {
            found.push(ReplayRow {
                id,
                state,
                priority,
                group,
                ttl_ms,
            });
        }
    }
    Ok(found)
}

/// Ids of the acked/dead deliveries of `q` in the filter's time range, and
/// for dead ones the expired leases on their last attempt.
fn finished_ids(
    tx: &mut (impl ReadTx + ?Sized),
    q: &QueueRow,
    filter: &ReplayFilter,
) -> Result<Vec<i64>> {
    let since = filter.since.unwrap_or(i64::MIN);
    let until = filter.until.unwrap_or(i64::MAX);
    let mut ids = Vec::new();
    for (wanted, state) in [(filter.acked, State::Acked), (filter.dead, State::Dead)] {
        if wanted {
            ids.extend(tx.done_ids(q.id, state, since, until)?);
        }
    }
    let max = i64::from(q.settings.max_attempts);
    if filter.dead {
        let now = tx.now();
        let mut dying = tx.expired_last(q.id, max, now, i64::MAX)?;
        dying.extend(tx.expired_rows(q.id, now, i64::MAX)?);
        ids.extend(dying.iter().map(|(id, _)| id));
    }
    Ok(ids)
}

/// The candidates that go into queue `into` (`None`: back in place): not
/// those it holds already (noted in `done` as skipped), and each checked
/// against `check` (the first that fails refuses the replay).
fn admitted(
    tx: &mut (impl ReadTx + ?Sized),
    into: Option<i64>,
    check: Option<&Check>,
    found: Vec<ReplayRow>,
    done: &mut Replayed,
) -> Result<Vec<ReplayRow>> {
    let mut admitted = Vec::with_capacity(found.len());
    for c in found {
        if let Some(into) = into
            && tx.row(into, c.id)?.is_some()
        {
            done.skipped.push(c.id);
            continue;
        }
        if let Some(check) = check {
            tx.check_stored(check, c.id)?;
        }
        admitted.push(c);
    }
    Ok(admitted)
}

/// Puts `found` back into `q`: in place (`copy` false), or as new
/// deliveries of the same messages (`copy`: a replay into another queue,
/// skipping the messages `q` holds already, each checked against `check`).
fn put_back(
    tx: &mut (impl AdminTx + ?Sized),
    q: &QueueRow,
    copy: bool,
    check: Option<&Check>,
    found: Vec<ReplayRow>,
    progress: &mut dyn FnMut(u64),
) -> Result<Replayed> {
    let mut done = Replayed::default();
    let found = admitted(tx, copy.then_some(q.id), check, found, &mut done)?;
    // Lock the existing group heads of the candidates' groups, in group
    // order, before the loop below upserts them in message order: every
    // writer locks group rows in key order, so none waits for another in a
    // cycle (PostgreSQL; SQLite's writers take turns).
    let mut groups: Vec<&str> = found.iter().filter_map(|c| c.group.as_deref()).collect();
    if !groups.is_empty() {
        groups.sort_unstable();
        groups.dedup();
        tx.lock_heads(q.id, &groups)?;
    }
    for mut c in found {
        // A message re-entering `q` starts ready, or held when its group
        // already has an unfinished head (otherwise it becomes the head).
        let state = match c.group.as_deref() {
            Some(group) if !tx.enter_group(q.id, group, c.id)? => State::Held,
            _ => State::Ready,
        };
        // Its TTL counts from the replay.
        let expires_at = flow::expires_at(tx.now(), c.ttl_ms, q.ttl_ms());
        if copy {
            // The message row stays: the source delivery, locked by
            // `candidates`, still holds it.
            c.state = state;
            tx.add_delivery(q.id, &c, check.map(|c| c.version), expires_at)?;
            tx.counts().moved(q.id, None, Some(state));
        } else {
            tx.reset_delivery(q.id, c.id, state, expires_at)?;
            tx.counts().moved(q.id, Some(c.state), Some(state));
        }
        done.ids.push(c.id);
        progress(1);
    }
    if copy {
        tx.counts().published(q.id, done.ids.len() as i64);
    }
    if !done.ids.is_empty() {
        tx.notify(&q.name);
    }
    Ok(done)
}

/// Deletes messages of `queue` in the given states (stored states: pass
/// [`State::Held`] along with [`State::Delayed`]) and returns how many,
/// calling `progress(n)` as messages are removed (again from the start when
/// PostgreSQL runs the transaction again after a deadlock). Groups whose
/// head was removed release their next message.
pub(crate) fn purge(
    store: &mut (impl Backend + ?Sized),
    queue: &str,
    states: &[State],
    progress: &mut dyn FnMut(u64),
) -> Result<i64> {
    backend::write(store, |tx| {
        let tx: &mut dyn AdminTx = tx;
        let q = existing_queue(tx, queue)?;
        tx.promote_due(&q)?;
        let mut removed: Vec<(i64, Option<String>)> = Vec::new();
        for &state in states {
            let rows = tx.delete_in_state(q.id, state)?;
            tx.counts()
                .moved_many(q.id, Some(state), None, rows.len() as i64);
            removed.extend(rows);
        }
        let ids: Vec<i64> = removed.iter().map(|(id, _)| *id).collect();
        tx.delete_orphans(&ids)?;
        for (msg, group) in &removed {
            if let Some(group) = group {
                tx.release_group(q.id, group, *msg)?;
            }
            progress(1);
        }
        tx.freed_pages();
        Ok(removed.len() as i64)
    })
}

/// Releases the lease on message `id` of `queue`: the message is
/// deliverable again at once, as after `nack`, except that the delivery
/// does not count as a failed attempt (its attempt count goes back down by
/// one, so it cannot die from this). For a consumer that is stuck or gone
/// while its lease still runs. The old receipt is refused from then on.
/// Returns false, changing nothing, when the message is not leased (any
/// more): an expired lease has already made it ready, or dead.
pub(crate) fn release_lease(
    store: &mut (impl Backend + ?Sized),
    queue: &str,
    id: i64,
) -> Result<bool> {
    backend::write(store, |tx| {
        let tx: &mut dyn AdminTx = tx;
        // Expired leases first become ready or dead (`promote_due`), so only a
        // lease that still holds is released.
        let q = existing_queue(tx, queue)?;
        tx.promote_due(&q)?;
        let released = tx.unlease(q.id, id)?;
        if released {
            tx.counts()
                .moved(q.id, Some(State::Leased), Some(State::Ready));
            tx.notify(&q.name);
        }
        Ok(released)
    })
}

/// Deletes a queue or topic with its deliveries, groups, rates (stats on
/// PostgreSQL), subscriptions and schemas, and the messages no other queue
/// holds. Refuses ([`Error::QueueNotEmpty`]) a queue holding ready,
/// delayed, leased or dead messages unless `force`. Returns how many
/// messages it held.
pub(crate) fn delete_queue(
    store: &mut (impl Backend + ?Sized),
    name: &str,
    force: bool,
) -> Result<i64> {
    backend::write(store, |tx| {
        tx.lock_name_exclusive(name)?;
        let Some(q) = tx.queue(name)? else {
            return Err(unknown_queue(tx, name));
        };
        let schedules = tx.schedules_of(q.id)?;
        if !schedules.is_empty() {
            return Err(Error::ScheduleTarget {
                name: q.name,
                schedules,
            });
        }
        let tx: &mut dyn AdminTx = tx;
        let pending = tx.pending(q.id)?;
        if pending > 0 && !force {
            return Err(Error::QueueNotEmpty {
                name: q.name,
                pending,
            });
        }
        let msgs = tx.delete_deliveries(q.id)?;
        tx.delete_orphans(&msgs)?;
        tx.drop_queue(q.id)?;
        tx.freed_pages();
        Ok(msgs.len() as i64)
    })
}
