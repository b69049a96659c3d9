//! Recovery and housekeeping: `replay`, `queue purge`, `queue delete`, and
//! releasing a stuck lease (from `top`).
//!
//! Each is one write transaction that first applies the lazy transitions
//! ([`lease::promote_due`]: due delayed messages and expired leases, which may
//! die) and the retention sweep, so it acts on the states users see.

use rusqlite::{Connection, OptionalExtension};

use super::contracts;
use super::lease::{self, delete_orphan, release_group};
use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::checks::Check;
use crate::store::rules;
use crate::store::types::{ReplayFilter, Replayed};
use crate::store::{Error, Result, SqliteStore, State, now_ms};

/// A finished delivery that matches a replay filter.
#[derive(Debug, Clone)]
struct Candidate {
    id: i64,
    state: State,
    priority: i64,
    group: Option<String>,
}

impl SqliteStore {
    /// Puts matching acked/dead messages of `queue` back: in place (ready,
    /// attempts reset, same ids), or with `to` as new ready deliveries of the
    /// same messages in that queue (created if needed), leaving the originals
    /// as they were. A grouped message whose group has an unfinished head
    /// waits behind it (held). When `to` has a JSON Schema, every message
    /// must meet it: the first that does not refuses the whole replay
    /// ([`Error::Invalid`], naming its id). In place, messages keep the
    /// schema version they were published under.
    pub fn replay(
        &mut self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
    ) -> Result<Replayed> {
        self.replay_with_progress(queue, filter, to, &mut |_| {})
    }

    /// [`SqliteStore::replay`], calling `progress(n)` as messages are replayed
    /// (for a progress bar).
    pub fn replay_with_progress(
        &mut self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Replayed> {
        let mut tx = Tx::begin(&mut self.conn)?;
        let q = queues::writable(&mut tx, queue)?;
        lease::sweep(&mut tx, &q)?;
        let found = candidates(&tx.tx, &q, filter, tx.now)?;
        let done = match to {
            None => replay_in_place(&mut tx, &q, &found, progress)?,
            Some(name) => {
                let target = queues::ensure(&tx, name)?;
                if target.is_topic {
                    return Err(queues::topic_error(&tx.tx, target)?);
                }
                let check = contracts::check_for(&tx.tx, &mut self.contracts, &target)?;
                replay_to(&mut tx, &target, check.as_ref(), &found, progress)?
            }
        };
        tx.commit()?;
        Ok(done)
    }

    /// What [`SqliteStore::replay`] would do, without changing anything (for
    /// `--dry-run`; works on a read-only connection).
    pub fn replay_preview(
        &self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
    ) -> Result<Replayed> {
        let tx = self.conn.unchecked_transaction()?;
        let q = match queues::lookup(&tx, queue)? {
            None => return Err(queues::unknown(&tx, queue)),
            Some(q) if q.is_topic => return Err(queues::topic_error(&tx, q)?),
            Some(q) => q,
        };
        let found = candidates(&tx, &q, filter, now_ms())?;
        let target = match to {
            Some(name) => queues::lookup(&tx, name)?,
            None => None,
        };
        if let Some(t) = target.as_ref().filter(|t| t.is_topic) {
            return Err(queues::topic_error(&tx, t.clone())?);
        }
        let check = match &target {
            Some(t) => contracts::check_for(&tx, &mut Default::default(), t)?,
            None => None,
        };
        let mut done = Replayed::default();
        for c in found {
            let taken = match &target {
                Some(t) => holds(&tx, t.id, c.id)?,
                None => false,
            };
            if taken {
                done.skipped.push(c.id);
            } else {
                if let Some(check) = &check {
                    check_stored(&tx, check, c.id)?;
                }
                done.ids.push(c.id);
            }
        }
        Ok(done)
    }

    /// Deletes messages of `queue` in the given states (stored states: pass
    /// [`State::Held`] along with [`State::Delayed`]) and returns how many.
    /// Groups whose head was removed release their next message.
    pub fn purge(&mut self, queue: &str, states: &[State]) -> Result<i64> {
        self.purge_with_progress(queue, states, &mut |_| {})
    }

    /// [`SqliteStore::purge`], calling `progress(n)` as messages are removed.
    pub fn purge_with_progress(
        &mut self,
        queue: &str,
        states: &[State],
        progress: &mut dyn FnMut(u64),
    ) -> Result<i64> {
        let mut tx = Tx::begin(&mut self.conn)?;
        let q = queues::writable(&mut tx, queue)?;
        let mut removed: Vec<(i64, Option<String>)> = Vec::new();
        for &state in states {
            let rows = delete_in_state(&tx.tx, q.id, state)?;
            tx.counts
                .moved_many(q.id, Some(state), None, rows.len() as i64);
            removed.extend(rows);
        }
        for (msg, group) in &removed {
            delete_orphan(&mut tx, *msg)?;
            if let Some(group) = group {
                release_group(&mut tx, q.id, group, *msg)?;
            }
            progress(1);
        }
        tx.freed_pages();
        tx.commit()?;
        Ok(removed.len() as i64)
    }

    /// Releases the lease on message `id` of `queue`: the message is
    /// deliverable again at once, as after `nack`, except that the delivery
    /// does not count as a failed attempt (its attempt count goes back down by
    /// one, so it cannot die from this). For a consumer that is stuck or gone
    /// while its lease still runs. The old receipt is refused from then on.
    /// Returns false, changing nothing, when the message is not leased (any
    /// more): an expired lease has already made it ready, or dead.
    pub fn release_lease(&mut self, queue: &str, id: i64) -> Result<bool> {
        let mut tx = Tx::begin(&mut self.conn)?;
        // Expired leases first become ready or dead (`writable` promotes
        // them), so only a lease that still holds is released.
        let q = queues::writable(&mut tx, queue)?;
        let released = tx
            .tx
            .prepare_cached(
                "UPDATE deliveries SET state = 0, visible_at = ?3, attempts = max(attempts - 1, 0)
                 WHERE msg_id = ?1 AND queue_id = ?2 AND state = 2",
            )?
            .execute((id, q.id, tx.now))?;
        if released > 0 {
            tx.counts
                .moved(q.id, Some(State::Leased), Some(State::Ready));
        }
        tx.commit()?;
        Ok(released > 0)
    }

    /// Deletes a queue or topic with its deliveries, groups, rates and
    /// subscriptions, and the messages no other queue holds. Refuses
    /// ([`Error::QueueNotEmpty`]) a queue holding ready, delayed, leased or
    /// dead messages unless `force`. Returns how many messages it held.
    pub fn delete_queue(&mut self, name: &str, force: bool) -> Result<i64> {
        let mut tx = Tx::begin(&mut self.conn)?;
        let Some(q) = queues::lookup(&tx.tx, name)? else {
            return Err(queues::unknown(&tx.tx, name));
        };
        let pending = pending_count(&tx.tx, q.id)?;
        if pending > 0 && !force {
            return Err(Error::QueueNotEmpty {
                name: q.name,
                pending,
            });
        }
        let msgs: Vec<i64> = tx
            .tx
            .prepare_cached("DELETE FROM deliveries WHERE queue_id = ?1 RETURNING msg_id")?
            .query_map([q.id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for msg in &msgs {
            delete_orphan(&mut tx, *msg)?;
        }
        for sql in [
            "DELETE FROM groups WHERE queue_id = ?1",
            "DELETE FROM rates WHERE queue_id = ?1",
            "DELETE FROM subscriptions WHERE queue_id = ?1 OR topic_id = ?1",
            "DELETE FROM schemas WHERE queue_id = ?1",
            "DELETE FROM queues WHERE id = ?1",
        ] {
            tx.tx.prepare_cached(sql)?.execute([q.id])?;
        }
        tx.freed_pages();
        tx.commit()?;
        Ok(msgs.len() as i64)
    }
}

/// Messages of a queue that are not acked, from its counters (exact: the lazy
/// transitions only move messages between these states).
fn pending_count(conn: &Connection, queue: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT n_ready + n_delayed + n_leased + n_dead + n_held FROM queues WHERE id = ?1",
        )?
        .query_row([queue], |r| r.get(0))?)
}

/// Deletes the deliveries of `queue` in `state`, through that state's index.
fn delete_in_state(
    conn: &Connection,
    queue: i64,
    state: State,
) -> Result<Vec<(i64, Option<String>)>> {
    // Each state names its partial index's condition, so the delete walks
    // that index rather than the whole table.
    let index_filter = match state {
        State::Ready => "state = 0",
        State::Delayed | State::Leased => "state IN (1, 2)",
        State::Acked | State::Dead => "state IN (3, 4)",
        State::Held => "state = 5",
    };
    let sql = format!(
        "DELETE FROM deliveries WHERE queue_id = ?1 AND msg_id IN (
             SELECT msg_id FROM deliveries WHERE queue_id = ?1 AND {index_filter} AND state = ?2)
         RETURNING msg_id, grp"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map((queue, state as i64), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// The finished deliveries of `q` that match `filter`, by id, with the lazy
/// rules applied (an expired lease on its last attempt counts as dead since
/// its lease ended; acked messages past retention count as gone).
fn candidates(
    conn: &Connection,
    q: &QueueRow,
    filter: &ReplayFilter,
    now: i64,
) -> Result<Vec<Candidate>> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, visible_at, attempts, done_at, priority, grp FROM deliveries
         WHERE msg_id = ?1 AND queue_id = ?2",
    )?;
    let rows: Vec<i64> = if filter.ids.is_empty() {
        finished_ids(conn, q, filter, now)?
    } else {
        filter.ids.clone()
    };
    let mut found = Vec::new();
    for id in rows {
        let row = stmt
            .query_row((id, q.id), |r| {
                Ok((
                    State::from_i64(r.get(0)?),
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .optional()?;
        let Some((state, visible_at, attempts, done_at, priority, group)) = row else {
            continue;
        };
        let row = (state, visible_at, attempts, done_at);
        if let Some((state, _)) = rules::replay_candidate(filter, &q.settings, row, now) {
            found.push(Candidate {
                id,
                state,
                priority,
                group,
            });
        }
    }
    found.sort_by_key(|c| c.id);
    found.dedup_by_key(|c| c.id);
    Ok(found)
}

/// Ids of the acked/dead deliveries of `q` in the filter's time range, read
/// through `deliveries_done` (and `deliveries_waiting` for expired leases on
/// their last attempt).
fn finished_ids(
    conn: &Connection,
    q: &QueueRow,
    filter: &ReplayFilter,
    now: i64,
) -> Result<Vec<i64>> {
    let since = filter.since.unwrap_or(i64::MIN);
    let until = filter.until.unwrap_or(i64::MAX);
    let mut ids = Vec::new();
    let mut done = conn.prepare_cached(
        "SELECT msg_id FROM deliveries
         WHERE queue_id = ?1 AND state IN (3, 4) AND state = ?2 AND done_at >= ?3 AND done_at < ?4",
    )?;
    for (wanted, state) in [(filter.acked, State::Acked), (filter.dead, State::Dead)] {
        if wanted {
            let rows = done.query_map((q.id, state as i64, since, until), |r| r.get(0))?;
            for id in rows {
                ids.push(id?);
            }
        }
    }
    let max = q.settings.max_attempts as i64;
    if filter.dead && max > 0 {
        let mut expired = conn.prepare_cached(
            "SELECT msg_id FROM deliveries
             WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
               AND state = 2 AND attempts >= ?3",
        )?;
        for id in expired.query_map((q.id, now, max), |r| r.get(0))? {
            ids.push(id?);
        }
    }
    Ok(ids)
}

/// True when `queue` holds a delivery of message `msg`.
fn holds(conn: &Connection, queue: i64, msg: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM deliveries WHERE msg_id = ?1 AND queue_id = ?2")?
        .query_row((msg, queue), |_| Ok(()))
        .optional()?
        .is_some())
}

/// The state a message re-entering `queue` starts in: ready, or held when its
/// group already has an unfinished head (otherwise it becomes the head).
fn entry_state(tx: &Tx<'_>, queue: i64, group: Option<&str>, msg: i64) -> Result<State> {
    let Some(group) = group else {
        return Ok(State::Ready);
    };
    let claimed = tx
        .tx
        .prepare_cached(
            "INSERT INTO groups (queue_id, grp, head_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (queue_id, grp) DO NOTHING",
        )?
        .execute((queue, group, msg))?;
    Ok(if claimed > 0 {
        State::Ready
    } else {
        State::Held
    })
}

fn replay_in_place(
    tx: &mut Tx<'_>,
    q: &QueueRow,
    found: &[Candidate],
    progress: &mut dyn FnMut(u64),
) -> Result<Replayed> {
    let mut done = Replayed::default();
    for c in found {
        let state = entry_state(tx, q.id, c.group.as_deref(), c.id)?;
        tx.tx
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = 0, lease = NULL, done_at = NULL,
                   visible_at = ?4
                 WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .execute((c.id, q.id, state as i64, tx.now))?;
        tx.counts.moved(q.id, Some(c.state), Some(state));
        done.ids.push(c.id);
        progress(1);
    }
    Ok(done)
}

/// Checks a stored message against `check`, for a replay into its queue.
fn check_stored(conn: &Connection, check: &Check, id: i64) -> Result<()> {
    let (body, raw): (Vec<u8>, bool) = conn
        .prepare_cached("SELECT body, raw FROM messages WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    check.stored(id, &body, raw)
}

fn replay_to(
    tx: &mut Tx<'_>,
    target: &QueueRow,
    check: Option<&Check>,
    found: &[Candidate],
    progress: &mut dyn FnMut(u64),
) -> Result<Replayed> {
    let mut done = Replayed::default();
    for c in found {
        if holds(&tx.tx, target.id, c.id)? {
            done.skipped.push(c.id);
            continue;
        }
        if let Some(check) = check {
            check_stored(&tx.tx, check, c.id)?;
        }
        let state = entry_state(tx, target.id, c.group.as_deref(), c.id)?;
        tx.tx
            .prepare_cached(
                "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute((
                c.id,
                target.id,
                state as i64,
                c.priority,
                tx.now,
                c.group.as_deref(),
                check.map(|c| c.version),
            ))?;
        tx.counts.moved(target.id, None, Some(state));
        done.ids.push(c.id);
        progress(1);
    }
    tx.counts.published(target.id, done.ids.len() as i64);
    Ok(done)
}
