//! Recovery and housekeeping: `replay`, `queue purge`, `queue delete`, and
//! releasing a stuck lease. Each is one transaction that first applies the
//! lazy transitions, so it acts on the states users see.

use super::contracts;
use super::lease::{delete_orphans, housekeeping, promote_due, release_group};
use super::queues::{self, Found, QueueRow};
use super::tx::Tx;
use super::{Conn, PostgresStore, RowExt};
use crate::store::checks::Check;
use crate::store::error::{Error, Result};
use crate::store::rules;
use crate::store::types::{ReplayFilter, Replayed, State};

/// A finished delivery that matches a replay filter.
#[derive(Debug, Clone)]
struct Candidate {
    id: i64,
    state: State,
    priority: i64,
    group: Option<String>,
}

impl PostgresStore {
    /// Puts matching acked/dead messages of `queue` back: in place (ready,
    /// attempts reset, same ids), or with `to` as new ready deliveries of the
    /// same messages in that queue (created if needed). When `to` has a JSON
    /// Schema, every message must meet it: the first that does not refuses
    /// the whole replay ([`Error::Invalid`], naming its id). In place,
    /// messages keep the schema version they were published under.
    pub fn replay(
        &mut self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
    ) -> Result<Replayed> {
        self.replay_with_progress(queue, filter, to, &mut |_| {})
    }

    /// [`PostgresStore::replay`], calling `progress(n)` as messages are replayed.
    pub fn replay_with_progress(
        &mut self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Replayed> {
        self.retrying(|store| store.replay_once(queue, filter, to, progress))
    }

    fn replay_once(
        &mut self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Replayed> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let q = match queues::queue(&mut tx, queue)? {
            Found::Queue(q) => q,
            Found::Topic(e) => return Err(e),
            Found::Missing => {
                drop(tx);
                return Err(self.unknown_queue(queue));
            }
        };
        promote_due(&mut tx, &q)?;
        housekeeping(&mut tx, &q)?;
        let now = tx.now;
        let found = candidates(&mut tx, &q, filter, now, true)?;
        let done = match to {
            None => replay_in_place(&mut tx, &q, &found, progress)?,
            Some(name) => {
                queues::lock_shared(&mut tx, &[name])?;
                let target = queues::ensure(&mut tx, name)?;
                if target.is_topic {
                    return Err(queues::topic_error(&mut tx, target)?);
                }
                let check = contracts::check_for(&mut tx, &target)?;
                replay_to(&mut tx, &target, check.as_ref(), &found, progress)?
            }
        };
        tx.commit()?;
        Ok(done)
    }

    /// What [`PostgresStore::replay`] would do, without changing anything.
    pub fn replay_preview(
        &self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
    ) -> Result<Replayed> {
        let q = match queues::queue(&mut self.conn.borrow_mut(), queue)? {
            Found::Queue(q) => q,
            Found::Topic(e) => return Err(e),
            Found::Missing => return Err(self.unknown_queue(queue)),
        };
        let mut conn = self.conn.borrow_mut();
        let mut tx = Tx::read(&mut conn)?;
        let now = tx.now;
        let found = candidates(&mut tx, &q, filter, now, false)?;
        let target = match to {
            Some(name) => queues::lookup(&mut tx, name)?,
            None => None,
        };
        if let Some(t) = target.as_ref().filter(|t| t.is_topic) {
            return Err(queues::topic_error(&mut tx, t.clone())?);
        }
        let check = match &target {
            Some(t) => contracts::check_for(&mut tx, t)?,
            None => None,
        };
        let mut done = Replayed::default();
        for c in found {
            let taken = match &target {
                Some(t) => holds(&mut tx, t.id, c.id)?,
                None => false,
            };
            if taken {
                done.skipped.push(c.id);
            } else {
                if let Some(check) = &check {
                    contracts::check_stored(&mut tx, check, c.id)?;
                }
                done.ids.push(c.id);
            }
        }
        tx.commit()?;
        Ok(done)
    }

    /// Deletes messages of `queue` in the given states (stored states: pass
    /// [`State::Held`] along with [`State::Delayed`]) and returns how many.
    pub fn purge(&mut self, queue: &str, states: &[State]) -> Result<i64> {
        self.purge_with_progress(queue, states, &mut |_| {})
    }

    /// [`PostgresStore::purge`], calling `progress(n)` as messages are removed.
    pub fn purge_with_progress(
        &mut self,
        queue: &str,
        states: &[State],
        progress: &mut dyn FnMut(u64),
    ) -> Result<i64> {
        self.retrying(|store| store.purge_once(queue, states, progress))
    }

    fn purge_once(
        &mut self,
        queue: &str,
        states: &[State],
        progress: &mut dyn FnMut(u64),
    ) -> Result<i64> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let q = match queues::queue(&mut tx, queue)? {
            Found::Queue(q) => q,
            Found::Topic(e) => return Err(e),
            Found::Missing => {
                drop(tx);
                return Err(self.unknown_queue(queue));
            }
        };
        promote_due(&mut tx, &q)?;
        let mut removed: Vec<(i64, Option<String>)> = Vec::new();
        for &state in states {
            let rows = tx.query(
                "DELETE FROM deliveries WHERE queue_id = $1 AND state = $2 RETURNING msg_id, grp",
                &[&q.id, &(state as i64)],
            )?;
            let rows = rows
                .iter()
                .map(|r| Ok((r.at(0)?, r.at(1)?)))
                .collect::<Result<Vec<(i64, Option<String>)>>>()?;
            tx.counts
                .moved_many(q.id, Some(state), None, rows.len() as i64);
            removed.extend(rows);
        }
        let ids: Vec<i64> = removed.iter().map(|(id, _)| *id).collect();
        delete_orphans(&mut tx, &ids)?;
        for (msg, group) in &removed {
            if let Some(group) = group {
                release_group(&mut tx, q.id, group, *msg)?;
            }
            progress(1);
        }
        tx.commit()?;
        Ok(removed.len() as i64)
    }

    /// Releases the lease on message `id` of `queue`: deliverable again at
    /// once, without counting the attempt. Returns false, changing nothing,
    /// when the message is not leased (any more).
    pub fn release_lease(&mut self, queue: &str, id: i64) -> Result<bool> {
        self.retrying(|store| store.release_lease_once(queue, id))
    }

    fn release_lease_once(&mut self, queue: &str, id: i64) -> Result<bool> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let q = match queues::queue(&mut tx, queue)? {
            Found::Queue(q) => q,
            Found::Topic(e) => return Err(e),
            Found::Missing => {
                drop(tx);
                return Err(self.unknown_queue(queue));
            }
        };
        promote_due(&mut tx, &q)?;
        let now = tx.now;
        let released = tx.execute(
            "UPDATE deliveries SET state = 0, visible_at = $3, attempts = greatest(attempts - 1, 0)
             WHERE msg_id = $1 AND queue_id = $2 AND state = 2 AND visible_at > $3",
            &[&id, &q.id, &now],
        )?;
        if released > 0 {
            tx.counts
                .moved(q.id, Some(State::Leased), Some(State::Ready));
            tx.notify(&q.name);
        }
        tx.commit()?;
        Ok(released > 0)
    }

    /// Deletes a queue or topic with its deliveries, groups, stats and
    /// subscriptions, and the messages no other queue holds. Refuses
    /// ([`Error::QueueNotEmpty`]) a queue holding ready, delayed, leased or
    /// dead messages unless `force`. Returns how many messages it held.
    pub fn delete_queue(&mut self, name: &str, force: bool) -> Result<i64> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        queues::lock_exclusive(&mut tx, name)?;
        let Some(q) = queues::lookup(&mut tx, name)? else {
            drop(tx);
            return Err(self.unknown_queue(name));
        };
        let pending: i64 = tx
            .query_opt(
                "SELECT count(*) FROM deliveries WHERE queue_id = $1 AND state <> 3",
                &[&q.id],
            )?
            .map(|r| r.at(0))
            .transpose()?
            .unwrap_or(0);
        if pending > 0 && !force {
            return Err(Error::QueueNotEmpty {
                name: q.name,
                pending,
            });
        }
        let msgs: Vec<i64> = tx
            .query(
                "DELETE FROM deliveries WHERE queue_id = $1 RETURNING msg_id",
                &[&q.id],
            )?
            .iter()
            .map(|r| r.at(0))
            .collect::<Result<_>>()?;
        delete_orphans(&mut tx, &msgs)?;
        for sql in [
            // In key order, as every writer locks group rows.
            "DELETE FROM group_heads WHERE queue_id = $1 AND grp IN (
                 SELECT grp FROM group_heads WHERE queue_id = $1
                 ORDER BY grp COLLATE \"C\" FOR UPDATE)",
            "DELETE FROM stats WHERE queue_id = $1",
            "DELETE FROM subscriptions WHERE queue_id = $1 OR topic_id = $1",
            "DELETE FROM schemas WHERE queue_id = $1",
            "DELETE FROM queues WHERE id = $1",
        ] {
            tx.execute(sql, &[&q.id])?;
        }
        tx.commit()?;
        Ok(msgs.len() as i64)
    }
}

/// The finished deliveries of `q` that match `filter`, by id, with the lazy
/// rules applied. `lock`: lock the rows (for a replay that changes them).
fn candidates(
    tx: &mut Tx<'_>,
    q: &QueueRow,
    filter: &ReplayFilter,
    now: i64,
    lock: bool,
) -> Result<Vec<Candidate>> {
    let ids: Vec<i64> = if filter.ids.is_empty() {
        finished_ids(tx, q, filter, now)?
    } else {
        filter.ids.clone()
    };
    let sql = if lock {
        "SELECT msg_id, state, visible_at, attempts, done_at, priority, grp FROM deliveries
         WHERE queue_id = $1 AND msg_id = ANY($2) ORDER BY msg_id FOR UPDATE"
    } else {
        "SELECT msg_id, state, visible_at, attempts, done_at, priority, grp FROM deliveries
         WHERE queue_id = $1 AND msg_id = ANY($2) ORDER BY msg_id"
    };
    let rows = tx.query(sql, &[&q.id, &ids])?;
    let mut found = Vec::new();
    for r in &rows {
        let row = (State::from_i64(r.at(1)?), r.at(2)?, r.at(3)?, r.at(4)?);
        if let Some((state, _)) = rules::replay_candidate(filter, &q.settings, row, now) {
            found.push(Candidate {
                id: r.at(0)?,
                state,
                priority: r.at(5)?,
                group: r.at(6)?,
            });
        }
    }
    Ok(found)
}

/// Ids of the acked/dead deliveries of `q` in the filter's time range.
fn finished_ids(
    conn: &mut Conn,
    q: &QueueRow,
    filter: &ReplayFilter,
    now: i64,
) -> Result<Vec<i64>> {
    let since = filter.since.unwrap_or(i64::MIN);
    let until = filter.until.unwrap_or(i64::MAX);
    let mut ids = Vec::new();
    for (wanted, state) in [(filter.acked, State::Acked), (filter.dead, State::Dead)] {
        if wanted {
            let rows = conn.query(
                "SELECT msg_id FROM deliveries
                 WHERE queue_id = $1 AND state IN (3, 4) AND state = $2
                   AND done_at >= $3 AND done_at < $4",
                &[&q.id, &(state as i64), &since, &until],
            )?;
            for r in &rows {
                ids.push(r.at(0)?);
            }
        }
    }
    let max = i64::from(q.settings.max_attempts);
    if filter.dead && max > 0 {
        let rows = conn.query(
            "SELECT msg_id FROM deliveries
             WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $2
               AND state = 2 AND attempts >= $3",
            &[&q.id, &now, &max],
        )?;
        for r in &rows {
            ids.push(r.at(0)?);
        }
    }
    Ok(ids)
}

/// True when `queue` holds a delivery of message `msg`.
fn holds(conn: &mut Conn, queue: i64, msg: i64) -> Result<bool> {
    Ok(conn
        .query_opt(
            "SELECT 1 FROM deliveries WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &queue],
        )?
        .is_some())
}

/// Locks the existing `group_heads` rows of the candidates' groups in
/// `queue`, in group order, before [`entry_state`] upserts them in message
/// order: every writer locks group rows in key order, so none waits for
/// another in a cycle.
fn lock_heads(tx: &mut Tx<'_>, queue: i64, found: &[Candidate]) -> Result<()> {
    let mut groups: Vec<&str> = found.iter().filter_map(|c| c.group.as_deref()).collect();
    if groups.is_empty() {
        return Ok(());
    }
    groups.sort_unstable();
    groups.dedup();
    tx.execute(
        "SELECT 1 FROM group_heads WHERE queue_id = $1 AND grp = ANY($2)
         ORDER BY grp COLLATE \"C\" FOR UPDATE",
        &[&queue, &groups],
    )?;
    Ok(())
}

/// The state a message re-entering `queue` starts in: ready, or held when its
/// group already has an unfinished head (otherwise it becomes the head).
fn entry_state(tx: &mut Tx<'_>, queue: i64, group: Option<&str>, msg: i64) -> Result<State> {
    let Some(group) = group else {
        return Ok(State::Ready);
    };
    let head: i64 = tx
        .query_opt(
            "INSERT INTO group_heads (queue_id, grp, head_id) VALUES ($1, $2, $3)
             ON CONFLICT (queue_id, grp) DO UPDATE SET head_id = group_heads.head_id
             RETURNING head_id",
            &[&queue, &group, &msg],
        )?
        .map(|r| r.at(0))
        .transpose()?
        .unwrap_or(msg);
    Ok(if head == msg {
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
    lock_heads(tx, q.id, found)?;
    let mut done = Replayed::default();
    for c in found {
        let state = entry_state(tx, q.id, c.group.as_deref(), c.id)?;
        let now = tx.now;
        tx.execute(
            "UPDATE deliveries SET state = $3, attempts = 0, lease = NULL, done_at = NULL,
               visible_at = $4
             WHERE msg_id = $1 AND queue_id = $2",
            &[&c.id, &q.id, &(state as i64), &now],
        )?;
        tx.counts.moved(q.id, Some(c.state), Some(state));
        done.ids.push(c.id);
        progress(1);
    }
    if !done.ids.is_empty() {
        tx.notify(&q.name);
    }
    Ok(done)
}

fn replay_to(
    tx: &mut Tx<'_>,
    target: &QueueRow,
    check: Option<&Check>,
    found: &[Candidate],
    progress: &mut dyn FnMut(u64),
) -> Result<Replayed> {
    lock_heads(tx, target.id, found)?;
    let mut done = Replayed::default();
    for c in found {
        if holds(tx, target.id, c.id)? {
            done.skipped.push(c.id);
            continue;
        }
        if let Some(check) = check {
            contracts::check_stored(tx, check, c.id)?;
        }
        // The message row stays: the source delivery, locked by
        // `candidates`, still holds it.
        let state = entry_state(tx, target.id, c.group.as_deref(), c.id)?;
        let now = tx.now;
        tx.execute(
            "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, grp, schema_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &c.id,
                &target.id,
                &(state as i64),
                &c.priority,
                &now,
                &c.group.as_deref(),
                &check.map(|c| c.version),
            ],
        )?;
        tx.counts.moved(target.id, None, Some(state));
        done.ids.push(c.id);
        progress(1);
    }
    tx.counts.published(target.id, done.ids.len() as i64);
    if !done.ids.is_empty() {
        tx.notify(&target.name);
    }
    Ok(done)
}
