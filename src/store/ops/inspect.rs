//! The read-only views of `peek`, `stats`, `queue list` and `top`, written
//! once over [`ReadTx`].
//!
//! Nothing here writes: each view runs in one read transaction of
//! [`backend::read`] (SQLite: a deferred transaction on the read-only
//! connection; PostgreSQL: REPEATABLE READ READ ONLY), so it sees one
//! consistent snapshot and is never blocked by a writer.
//!
//! The lazy transitions that writers perform inside every claim (a due
//! delayed message or an expired lease is really ready; an expired lease on
//! the last allowed attempt is really dead; a held message behind such a
//! lease is released) are applied on the fly here, from a range scan of only
//! the due rows of `deliveries_waiting`.
//!
//! # Performance
//!
//! Counts come from the stored counters ([`ReadTx::stored`]: `queues.n_*` on
//! SQLite, the sums of a few thousand `stats` rows at most on PostgreSQL),
//! never from counting deliveries, so `stats` costs the same at a backlog of
//! ten or of a million. The oldest ready message is found by a skip-scan of
//! `deliveries_ready`: one index seek per distinct priority (at most 201).
//! Only the due rows are visited one by one; they are few, because every
//! claim moves them back to ready. Every statement of a `peek` section is an
//! index walk with a limit.

use std::collections::HashMap;

use crate::store::backend::{self, Backend, ReadTx, Stored};
use crate::store::error::Result;
use crate::store::flow::DeadReason;
use crate::store::receipt::Receipt;
use crate::store::types::{Delivery, QueueRow, State, ms};
use crate::store::views::{
    self, DueSummary, PeekQuery, Peeked, QueueInfo, RateHistory, Released, RowState, ScheduleInfo,
};

/// Every queue and topic, sorted by name, as `stats` and `queue list` show them.
pub(crate) fn queue_infos(store: &(impl Backend + ?Sized)) -> Result<Vec<QueueInfo>> {
    backend::read(store, |tx| {
        let names = tx.names()?;
        infos(tx, &names)
    })
}

/// Every schedule's state, sorted by name, for the readers. Reads the rows
/// only: a rule that no longer reads does not hide the rest.
pub(crate) fn schedule_infos(store: &(impl Backend + ?Sized)) -> Result<Vec<ScheduleInfo>> {
    let rows = backend::read(store, |tx| tx.schedules(None, false))?;
    Ok(rows
        .into_iter()
        .map(|r| ScheduleInfo {
            name: r.name,
            target: r.target,
            next_at: r.next_at,
            last_at: r.last_at,
            paused: r.paused,
            last_error: r.last_error,
        })
        .collect())
}

/// The named queues or topics, in the order given; an unknown name is
/// [`crate::store::Error::UnknownQueue`].
pub(crate) fn queue_infos_named(
    store: &(impl Backend + ?Sized),
    names: &[String],
) -> Result<Vec<QueueInfo>> {
    backend::read(store, |tx| infos(tx, names))
}

/// [`Store::queue_id`](crate::store::Store::queue_id).
pub(crate) fn queue_id(store: &(impl Backend + ?Sized), name: &str) -> Result<Option<i64>> {
    backend::read(store, |tx| Ok(tx.queue(name)?.map(|q| q.id)))
}

fn infos(tx: &mut (impl ReadTx + ?Sized), names: &[String]) -> Result<Vec<QueueInfo>> {
    let mut infos = Vec::with_capacity(names.len());
    for name in names {
        let Some(q) = tx.queue(name)? else {
            return Err(backend::unknown_queue(tx, name));
        };
        infos.push(info(tx, q)?);
    }
    Ok(infos)
}

/// Publishes and acks per minute over the last `minutes` minutes (at most
/// 60: rates are kept for an hour), for every queue and topic that had any,
/// by name. Names missing from the map had none.
///
/// One statement: for each queue, a range scan of the rates (`rates` on
/// SQLite, `stats` on PostgreSQL) over just the window, whatever the size
/// of the database.
pub(crate) fn rate_histories(
    store: &(impl Backend + ?Sized),
    minutes: usize,
) -> Result<HashMap<String, RateHistory>> {
    let minutes = minutes.clamp(1, 60);
    let rows = backend::read(store, |tx| {
        let second = tx.now().div_euclid(1000);
        tx.rates(second, minutes as i64)
    })?;
    let mut out = HashMap::<String, RateHistory>::new();
    for (name, ago, published, acked) in rows {
        let Some(slot) = usize::try_from(ago).ok().filter(|a| *a < minutes) else {
            continue;
        };
        let h = out.entry(name).or_insert_with(|| RateHistory {
            published: vec![0; minutes],
            acked: vec![0; minutes],
        });
        h.published[minutes - 1 - slot] += published;
        h.acked[minutes - 1 - slot] += acked;
    }
    Ok(out)
}

/// Up to `query.limit` messages of `queue` in the states asked for, in
/// delivery order: ready ones as `consume` would deliver them (priority,
/// then id), then delayed ones (soonest due first, then those held behind
/// their group, by group and id), then leased ones (soonest lease end
/// first), then acked and dead ones (earliest done first).
pub(crate) fn peek(
    store: &(impl Backend + ?Sized),
    queue: &str,
    query: &PeekQuery,
) -> Result<Vec<Peeked>> {
    backend::read(store, |tx| {
        let q = backend::existing_queue(tx, queue)?;
        let now = tx.now();
        let max = max_attempts(&q);
        let released = released(tx, &q, now)?;
        let picked = views::pick(query, |state, n| {
            let limit = i64::try_from(n).unwrap_or(i64::MAX);
            Ok(match state {
                _ if n == 0 => Vec::new(),
                // Ready rows in claim order, including due delayed messages,
                // expired leases and held messages that the next claim makes
                // ready; delayed and leased rows not yet due, soonest first.
                State::Ready => {
                    views::ready_rows(tx.ready_rows(q.id, max, now, limit)?, &released, n)
                }
                State::Delayed | State::Leased => {
                    let rows = tx.waiting_rows(q.id, state, now, limit)?;
                    views::shown(rows.into_iter().map(|(id, at)| (id, at, None)), state)
                }
                State::Held => {
                    let limit = limit.saturating_add(released.len() as i64);
                    views::held_rows(tx.held_rows(q.id, now, limit)?, &released, n)
                }
                State::Acked => {
                    let after = now.saturating_sub(ms(q.settings.retention));
                    views::shown(tx.done_rows(q.id, state, after, limit)?, state)
                }
                // Dead ones include expired leases on their last attempt or
                // past their TTL, and messages past their TTL.
                State::Dead => {
                    let dead = tx.done_rows(q.id, state, i64::MIN, limit)?;
                    let mut expired = tx.expired_last(q.id, max, now, limit)?;
                    expired.extend(tx.expired_rows(q.id, now, limit)?);
                    views::merge_dead(dead, expired, n)
                }
            })
        })?;
        let mut peeked = Vec::with_capacity(picked.len());
        for (id, st) in picked {
            peeked.extend(load(tx, &q, id, st)?);
        }
        Ok(peeked)
    })
}

/// Message `id` of `queue` in whatever state it is, or `None` if the queue
/// does not hold it (or retention has removed it).
pub(crate) fn peek_id(
    store: &(impl Backend + ?Sized),
    queue: &str,
    id: i64,
) -> Result<Option<Peeked>> {
    backend::read(store, |tx| {
        let q = backend::existing_queue(tx, queue)?;
        let now = tx.now();
        let Some((state, visible_at, attempts, done_at, expires_at)) = tx.row(q.id, id)? else {
            return Ok(None);
        };
        let row = (
            State::from_i64(state),
            visible_at,
            attempts,
            done_at,
            expires_at,
        );
        let st = views::peek_row(&q.settings, row, now, || {
            Ok(released(tx, &q, now)?.into_iter().find(|r| r.id == id))
        })?;
        st.map_or(Ok(None), |st| load(tx, &q, id, st))
    })
}

fn max_attempts(q: &QueueRow) -> i64 {
    i64::from(q.settings.max_attempts)
}

/// The held messages of `q` that its next claim releases (see [`Released`]).
fn released(tx: &mut (impl ReadTx + ?Sized), q: &QueueRow, now: i64) -> Result<Vec<Released>> {
    let rows = tx.released_rows(q.id, max_attempts(q), now)?;
    Ok(rows.into_iter().map(|r| Released::at(r, now)).collect())
}

/// Counters, rates and the oldest ready message of one queue or topic.
fn info(tx: &mut (impl ReadTx + ?Sized), q: QueueRow) -> Result<QueueInfo> {
    let now = tx.now();
    let stored = Stored::from(tx.stored(q.id, now.div_euclid(1000) - 60)?);
    let mut due = DueSummary::default();
    for (state, dies, n, min_id) in tx.due(q.id, max_attempts(&q), now)? {
        due.add(State::from_i64(state), dies, n, min_id);
    }
    for (state, n) in tx.expiring(q.id, now)? {
        due.expired[State::from_i64(state) as usize] += n;
    }
    let (released_ready, released_oldest) = views::released_summary(&released(tx, &q, now)?);
    let counts = views::counts(&stored.states, &due, released_ready);
    let oldest = [tx.oldest_ready_id(q.id)?, due.oldest_id, released_oldest]
        .into_iter()
        .flatten()
        .min();
    let oldest_ready_age_ms = match oldest {
        Some(id) => tx.published_at(id)?.map(|t| now.saturating_sub(t).max(0)),
        None => None,
    };
    Ok(QueueInfo {
        schema_version: tx.schema_in_force(q.id)?,
        subscribers: tx.subscribers(q.id)?.into_iter().map(|s| s.name).collect(),
        topics: tx.topics_of(q.id)?,
        name: q.name,
        is_topic: q.is_topic,
        settings: q.settings,
        created_at: stored.created_at,
        counts,
        published_total: stored.published_total,
        oldest_ready_age_ms,
        published_last_minute: stored.published_since,
        acked_last_minute: stored.acked_since,
        expired_total: stored.expired_total,
        dropped_total: stored.dropped_total,
    })
}

/// The full message for one picked row (`None` if it vanished, which a
/// single snapshot rules out).
fn load(
    tx: &mut (impl ReadTx + ?Sized),
    q: &QueueRow,
    id: i64,
    st: RowState,
) -> Result<Option<Peeked>> {
    let Some(m) = tx.message(q.id, id)? else {
        return Ok(None);
    };
    let (
        attempt,
        priority,
        group,
        key,
        published_at,
        raw,
        headers,
        body,
        schema_version,
        reason,
        error,
    ) = m;
    let delivery = Delivery {
        id,
        queue: q.name.clone(),
        receipt: Receipt {
            queue_id: q.id,
            msg_id: id,
            lease: 0,
        },
        attempt,
        published_at,
        lease_expires_at: 0,
        key,
        group,
        priority,
        headers,
        body,
        raw,
        schema_version,
    };
    let mut peeked = st.peeked(delivery);
    // A dead row without a stored reason died of its attempts (the only way
    // before reasons were stored), as does an expired lease on its last one.
    if peeked.state == State::Dead {
        peeked.dead_reason = Some(
            reason
                .as_deref()
                .and_then(DeadReason::from_name)
                .unwrap_or(DeadReason::MaxAttempts),
        );
    }
    peeked.last_error = error;
    Ok(Some(peeked))
}
