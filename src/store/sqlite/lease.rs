//! Leases: claim, ack, nack, extend, and the lazy transitions (due delayed
//! messages, expired leases, retention) that claims perform on the way.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::OptionalExtension;

use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::backend::LeaseTx;
use crate::store::receipt::{Receipt, ReceiptError, Release};
pub(crate) use crate::store::rules::Held;
use crate::store::rules::{self, AfterFailure, Judgement, LeaseRow, Repeat};
use crate::store::{Delivery, Result, SqliteStore, State, ms};

/// How many acked messages past retention one write removes at most, so that
/// no single command pays for a large cleanup.
const SWEEP_BATCH: i64 = 512;

/// Free pages above which a write hands pages back to the file system.
const VACUUM_THRESHOLD: i64 = 256;

impl SqliteStore {
    /// Leases up to `max` deliverable messages of `queue` for `visibility`
    /// (default: the queue's), highest priority first, then oldest. With
    /// `ack`, they are acked in the same transaction (at-most-once).
    pub fn claim(
        &mut self,
        queue: &str,
        max: usize,
        visibility: Option<Duration>,
        ack: bool,
    ) -> Result<Vec<Delivery>> {
        let mut tx = Tx::begin(&mut self.conn)?;
        match claim_in(&mut tx, queue, max, visibility, ack)? {
            Claim::Leased(leased, _) => {
                tx.commit()?;
                Ok(leased)
            }
            Claim::Topic(q) => Err(queues::topic_error(&tx.tx, q)?),
            Claim::Missing => Err(queues::unknown(&tx.tx, queue)),
        }
    }

    /// Acks each receipt: the message is done (kept for replay, or deleted when
    /// the queue's retention is 0). Each receipt is judged on its own.
    pub fn ack(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        self.settle(receipts, Repeat::Harmless, |tx, q, r, held| {
            finish(tx, q, r.msg_id, held.group.as_deref(), State::Acked)
        })
    }

    /// Gives each receipt's message back: deliverable again per `release`, or
    /// dead when this was its last allowed attempt.
    pub fn nack(
        &mut self,
        receipts: &[Receipt],
        release: Release,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        self.settle(receipts, Repeat::Refused, |tx, q, r, held| {
            give_back(tx, q, r.msg_id, &held, release).map(|_| ())
        })
    }

    /// Pushes each receipt's lease end to now + `by` (a heartbeat).
    pub fn extend(
        &mut self,
        receipts: &[Receipt],
        by: Duration,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        self.settle(receipts, Repeat::Refused, |tx, q, r, _| {
            set_state(
                tx,
                q.id,
                r.msg_id,
                State::Leased,
                tx.now.saturating_add(ms(by)),
            )
        })
    }

    /// Runs `act` for every receipt whose lease holds, in one transaction.
    /// A receipt whose delivery is already finished (acked, or deleted on
    /// ack) is fine for a repeated ack, but refused for nack and extend: they
    /// need a lease, and answering yes would tell the caller the message is
    /// back in the queue, or still theirs, when it is not.
    fn settle(
        &mut self,
        receipts: &[Receipt],
        repeat: Repeat,
        mut act: impl FnMut(&mut Tx<'_>, &QueueRow, &Receipt, Held) -> Result<()>,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        let mut tx = Tx::begin(&mut self.conn)?;
        let outcomes = settle_in(
            &mut tx,
            receipts,
            |r| r,
            |tx, q, r, held| act(tx, q, r, held),
        )?
        .into_iter()
        .map(|outcome| rules::settle_answer(outcome, repeat))
        .collect::<Vec<_>>();
        tx.commit()?;
        Ok(outcomes)
    }
}

/// What [`claim_in`] found.
pub(crate) enum Claim {
    /// These deliveries, leased for this long (maybe none).
    Leased(Vec<Delivery>, Duration),
    /// No queue has this name.
    Missing,
    /// The name is a topic's.
    Topic(QueueRow),
}

/// The body of [`SqliteStore::claim`], inside a transaction the caller commits.
pub(crate) fn claim_in(
    tx: &mut Tx<'_>,
    queue: &str,
    max: usize,
    visibility: Option<Duration>,
    ack: bool,
) -> Result<Claim> {
    let Some(q) = queues::lookup(&tx.tx, queue)? else {
        return Ok(Claim::Missing);
    };
    if q.is_topic {
        return Ok(Claim::Topic(q));
    }
    promote_due(tx, &q)?;
    sweep(tx, &q)?;
    let lease = visibility.unwrap_or(q.settings.visibility);
    let lease_end = tx.now.saturating_add(ms(lease));
    let mut leased = lease_next(tx, &q, max, lease_end)?;
    tx.counts.moved_many(
        q.id,
        Some(State::Ready),
        Some(State::Leased),
        leased.len() as i64,
    );
    for d in &mut leased {
        fill_message(tx, d)?;
    }
    if ack {
        for d in &leased {
            finish(tx, &q, d.id, d.group.as_deref(), State::Acked)?;
        }
    }
    Ok(Claim::Leased(leased, lease))
}

/// Runs `act` for every item whose receipt's lease holds, inside a
/// transaction the caller commits. `Ok(None)`: the delivery was already
/// finished with this receipt (acking again is harmless), so `act` did not run.
pub(crate) fn settle_in<T, S>(
    tx: &mut Tx<'_>,
    items: &[T],
    receipt: impl Fn(&T) -> &Receipt,
    mut act: impl FnMut(&mut Tx<'_>, &QueueRow, &T, Held) -> Result<S>,
) -> Result<Vec<Result<Option<S>, ReceiptError>>> {
    let mut queues: HashMap<i64, Option<QueueRow>> = HashMap::new();
    let next_id: i64 = tx
        .tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'next_message_id'")?
        .query_row([], |row| row.get(0))?;
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let r = receipt(item);
        if let std::collections::hash_map::Entry::Vacant(slot) = queues.entry(r.queue_id) {
            slot.insert(queues::by_id(&tx.tx, r.queue_id)?);
        }
        let Some(q) = queues[&r.queue_id].as_ref() else {
            outcomes.push(Err(ReceiptError::Unknown));
            continue;
        };
        let outcome = match check(tx, r, next_id)? {
            Judgement::Held(held) => Ok(Some(act(tx, q, item, held)?)),
            Judgement::Done => Ok(None),
            Judgement::Refused(e) => Err(e),
        };
        outcomes.push(outcome);
    }
    // Retention cleanup in small steps, paid by the writers of each queue.
    for q in queues.values().flatten() {
        sweep(tx, q)?;
    }
    Ok(outcomes)
}

/// Gives a held delivery back after a failed attempt: deliverable again per
/// `release`, or dead when this was its last allowed attempt. Returns the new state.
pub(crate) fn give_back(
    tx: &mut Tx<'_>,
    q: &QueueRow,
    msg: i64,
    held: &Held,
    release: Release,
) -> Result<State> {
    match rules::after_failure(&q.settings, held.attempts, release, tx.now) {
        AfterFailure::Dead => {
            finish(tx, q, msg, held.group.as_deref(), State::Dead)?;
            Ok(State::Dead)
        }
        AfterFailure::Back { state, visible_at } => {
            set_state(tx, q.id, msg, state, visible_at)?;
            tx.counts.moved(q.id, Some(State::Leased), Some(state));
            Ok(state)
        }
    }
}

/// Judges a receipt against the delivery row it names.
fn check(tx: &Tx<'_>, r: &Receipt, next_id: i64) -> Result<Judgement> {
    let row = tx
        .tx
        .prepare_cached(
            "SELECT state, lease, visible_at, attempts, grp FROM deliveries
             WHERE msg_id = ?1 AND queue_id = ?2",
        )?
        .query_row((r.msg_id, r.queue_id), |row| {
            Ok(LeaseRow {
                state: State::from_i64(row.get(0)?),
                lease: row.get(1)?,
                visible_at: row.get(2)?,
                attempts: row.get(3)?,
                group: row.get(4)?,
            })
        })
        .optional()?;
    Ok(match row {
        Some(row) => rules::judge_receipt(r, row, tx.now),
        None => rules::judge_missing(r, next_id - 1),
    })
}

pub(crate) fn set_state(
    tx: &Tx<'_>,
    queue: i64,
    msg: i64,
    state: State,
    visible_at: i64,
) -> Result<()> {
    tx.tx
        .prepare_cached(
            "UPDATE deliveries SET state = ?3, visible_at = ?4 WHERE msg_id = ?1 AND queue_id = ?2",
        )?
        .execute((msg, queue, state as i64, visible_at))?;
    Ok(())
}

/// Leases the next `max` ready deliveries and returns them without bodies.
///
/// The lease token is SQLite's `random()`: the bundled SQLite draws it from
/// a ChaCha20 generator keyed from the operating system (`/dev/urandom`, by
/// the unix VFS), so it is as unguessable as [`crate::store::receipt::new_leases`], whose tokens
/// PostgreSQL binds. One statement leases the whole batch; a token bound per
/// row from Rust cost a third more instructions for `consume -n 100`.
fn lease_next(tx: &Tx<'_>, q: &QueueRow, max: usize, lease_end: i64) -> Result<Vec<Delivery>> {
    let mut stmt = tx.tx.prepare_cached(
        "UPDATE deliveries SET state = 2, attempts = attempts + 1, lease = random(), visible_at = ?3
         WHERE queue_id = ?1 AND msg_id IN (
             SELECT msg_id FROM deliveries WHERE queue_id = ?1 AND state = 0
             ORDER BY priority DESC, msg_id LIMIT ?2)
         RETURNING msg_id, attempts, lease, priority, grp, schema_version",
    )?;
    let mut leased = stmt
        .query_map((q.id, max as i64, lease_end), |row| {
            let msg_id = row.get(0)?;
            Ok(Delivery {
                id: msg_id,
                queue: q.name.clone(),
                receipt: Receipt {
                    queue_id: q.id,
                    msg_id,
                    lease: row.get(2)?,
                },
                attempt: row.get(1)?,
                published_at: 0,
                lease_expires_at: lease_end,
                key: None,
                group: row.get(4)?,
                priority: row.get(3)?,
                headers: None,
                body: Vec::new(),
                raw: false,
                schema_version: row.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    leased.sort_by_key(|d| (-d.priority, d.id));
    Ok(leased)
}

fn fill_message(tx: &Tx<'_>, d: &mut Delivery) -> Result<()> {
    let (key, published_at, raw, headers, body) = tx
        .tx
        .prepare_cached("SELECT key, published_at, raw, headers, body FROM messages WHERE id = ?1")?
        .query_row([d.id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?;
    d.key = key;
    d.published_at = published_at;
    d.raw = raw;
    d.headers = headers;
    d.body = body;
    Ok(())
}

/// Ends a leased delivery as acked (kept or deleted per retention) or dead,
/// and lets the next message of its group go.
pub(crate) fn finish(
    tx: &mut Tx<'_>,
    q: &QueueRow,
    msg: i64,
    group: Option<&str>,
    to: State,
) -> Result<()> {
    if to == State::Acked && q.settings.retention.is_zero() {
        tx.tx
            .prepare_cached("DELETE FROM deliveries WHERE msg_id = ?1 AND queue_id = ?2")?
            .execute((msg, q.id))?;
        delete_orphan(tx, msg)?;
        tx.counts.acked_and_deleted(q.id, 1);
    } else {
        tx.tx
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, done_at = ?4 WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .execute((msg, q.id, to as i64, tx.now))?;
        tx.counts.moved(q.id, Some(State::Leased), Some(to));
    }
    if let Some(group) = group {
        release_group(tx, q.id, group, msg)?;
    }
    Ok(())
}

/// Deletes a message whose last delivery is gone.
pub(crate) fn delete_orphan(tx: &mut Tx<'_>, msg: i64) -> Result<()> {
    let deleted = tx
        .tx
        .prepare_cached(
            "DELETE FROM messages WHERE id = ?1
               AND NOT EXISTS (SELECT 1 FROM deliveries WHERE msg_id = ?1)",
        )?
        .execute([msg])?;
    if deleted > 0 {
        tx.freed_pages();
    }
    Ok(())
}

/// After `finished`, the head of `group`, reached a final state: the next
/// held message of the group (lowest id) becomes the head.
pub(crate) fn release_group(tx: &mut Tx<'_>, queue: i64, group: &str, finished: i64) -> Result<()> {
    let head: Option<i64> = tx
        .tx
        .prepare_cached("SELECT head_id FROM groups WHERE queue_id = ?1 AND grp = ?2")?
        .query_row((queue, group), |row| row.get(0))
        .optional()?;
    if head != Some(finished) {
        return Ok(());
    }
    let next: Option<(i64, i64)> = tx
        .tx
        .prepare_cached(
            "SELECT msg_id, visible_at FROM deliveries
             WHERE queue_id = ?1 AND grp = ?2 AND state = 5 ORDER BY msg_id LIMIT 1",
        )?
        .query_row((queue, group), |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((next_id, visible_at)) = next else {
        tx.tx
            .prepare_cached("DELETE FROM groups WHERE queue_id = ?1 AND grp = ?2")?
            .execute((queue, group))?;
        return Ok(());
    };
    let state = rules::released_state(visible_at, tx.now);
    set_state(tx, queue, next_id, state, visible_at)?;
    tx.tx
        .prepare_cached("UPDATE groups SET head_id = ?3 WHERE queue_id = ?1 AND grp = ?2")?
        .execute((queue, group, next_id))?;
    tx.counts.moved(queue, Some(State::Held), Some(state));
    Ok(())
}

/// Moves due delayed messages and expired leases of `q` back to ready, or to
/// dead for a lease that ran out on the last allowed attempt. Cost is one
/// index range scan over just the due rows.
pub(crate) fn promote_due(tx: &mut Tx<'_>, q: &QueueRow) -> Result<()> {
    // Nothing is due most of the time: one cheap probe saves preparing the
    // updates below, which a one-message command would pay for nothing.
    let due: bool = tx
        .tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM deliveries
                 WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2)",
        )?
        .query_row((q.id, tx.now), |row| row.get(0))?;
    if !due {
        return Ok(());
    }
    // The transitions of `rules::effective`, in SQL: an expired lease dies
    // when `rules::lease_dies` says so, the other due rows become ready.
    let max = q.settings.max_attempts as i64;
    if max > 0 {
        let died: Vec<(i64, Option<String>)> = tx
            .tx
            .prepare_cached(
                "UPDATE deliveries SET state = 4, done_at = visible_at
                 WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
                   AND state = 2 AND attempts >= ?3
                 RETURNING msg_id, grp",
            )?
            .query_map((q.id, tx.now, max), |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        tx.counts.moved_many(
            q.id,
            Some(State::Leased),
            Some(State::Dead),
            died.len() as i64,
        );
        for (msg, group) in died {
            if let Some(group) = group {
                release_group(tx, q.id, &group, msg)?;
            }
        }
    }
    // The state is written out, not bound: a bound value that decides whether
    // a partial index applies makes SQLite prepare the statement again
    // whenever the value changes.
    for (from, sql) in [
        (
            State::Delayed,
            "UPDATE deliveries SET state = 0
             WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2 AND state = 1",
        ),
        (
            State::Leased,
            "UPDATE deliveries SET state = 0
             WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2 AND state = 2",
        ),
    ] {
        let n = tx.tx.prepare_cached(sql)?.execute((q.id, tx.now))?;
        tx.counts
            .moved_many(q.id, Some(from), Some(State::Ready), n as i64);
    }
    Ok(())
}

/// Removes up to [`SWEEP_BATCH`] acked messages of `q` whose retention has
/// passed, and their bodies when no other queue holds them.
pub(crate) fn sweep(tx: &mut Tx<'_>, q: &QueueRow) -> Result<()> {
    // Messages acked in this transaction are not past retention yet (a
    // retention of 0 deletes at the ack), so a queue that held no acked
    // message when its row was read has nothing to sweep.
    if q.acked == 0 {
        return Ok(());
    }
    let cutoff = tx.now.saturating_sub(ms(q.settings.retention));
    let due: bool = tx
        .tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM deliveries
                 WHERE queue_id = ?1 AND state IN (3, 4) AND state = 3 AND done_at <= ?2)",
        )?
        .query_row((q.id, cutoff), |row| row.get(0))?;
    if !due {
        return Ok(());
    }
    let removed: Vec<i64> = tx
        .tx
        .prepare_cached(
            "DELETE FROM deliveries WHERE queue_id = ?1 AND msg_id IN (
                 SELECT msg_id FROM deliveries
                 WHERE queue_id = ?1 AND state IN (3, 4) AND state = 3 AND done_at <= ?2
                 LIMIT ?3)
             RETURNING msg_id",
        )?
        .query_map((q.id, cutoff, SWEEP_BATCH), |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tx.counts
        .moved_many(q.id, Some(State::Acked), None, removed.len() as i64);
    for msg in removed {
        delete_orphan(tx, msg)?;
    }
    Ok(())
}

/// Hands free pages back to the file system, a bounded step at a time.
pub(crate) fn vacuum_step(tx: &Tx<'_>) -> Result<()> {
    let free: i64 = tx
        .tx
        .pragma_query_value(None, "freelist_count", |row| row.get(0))?;
    if free > VACUUM_THRESHOLD {
        // The pragma frees one page per step (each step yields an empty row),
        // so it must be stepped to the end: `execute_batch` steps once and
        // would free a single page.
        let sql = format!(
            "PRAGMA incremental_vacuum({})",
            free.min(4 * VACUUM_THRESHOLD)
        );
        let mut stmt = tx.tx.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(())
}

impl SqliteStore {
    /// When the next delayed message or lease of `queue` comes due (ms since
    /// the epoch), so a waiting consumer knows when to look again.
    pub fn next_due(&self, queue: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min(visible_at) FROM deliveries
                 WHERE queue_id = (SELECT id FROM queues WHERE name = ?1) AND state IN (1, 2)",
            )?
            .query_row([queue], |row| row.get(0))?)
    }
}

impl LeaseTx for Tx<'_> {
    fn promote_due(&mut self, q: &QueueRow) -> Result<()> {
        promote_due(self, q)
    }

    fn housekeeping(&mut self, q: &QueueRow) -> Result<()> {
        sweep(self, q)
    }

    fn set_state(&mut self, queue: i64, msg: i64, state: State, visible_at: i64) -> Result<()> {
        set_state(self, queue, msg, state, visible_at)
    }

    fn mark_done(&mut self, queue: i64, msg: i64, to: State) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, done_at = ?4 WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .execute((msg, queue, to as i64, self.now))?;
        Ok(())
    }

    fn delete_delivery(&mut self, queue: i64, msg: i64) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM deliveries WHERE msg_id = ?1 AND queue_id = ?2")?
            .execute((msg, queue))?;
        Ok(())
    }

    fn delete_orphans(&mut self, msgs: &[i64]) -> Result<()> {
        for &msg in msgs {
            delete_orphan(self, msg)?;
        }
        Ok(())
    }

    fn release_group(&mut self, queue: i64, group: &str, finished: i64) -> Result<()> {
        release_group(self, queue, group, finished)
    }
}
