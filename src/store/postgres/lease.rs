//! Leases: claim, ack, nack, extend, and the lazy transitions (due delayed
//! messages, expired leases) that claims perform on the way, plus the
//! housekeeping (retention, folding `stats`) that writers do once a second.

use std::collections::HashMap;
use std::time::Duration;

use super::queues::{self, Found, QueueRow};
use super::tx::{NOW_MS, Tx};
use super::{Conn, PostgresStore, RowExt};
use crate::store::backend::LeaseTx;
use crate::store::error::{Error, Result};
use crate::store::receipt::{Receipt, ReceiptError, Release, new_leases};
pub(crate) use crate::store::rules::Held;
use crate::store::rules::{self, AfterFailure, Judgement, LeaseRow, Repeat};
use crate::store::types::{Delivery, State, ms};

/// The most deliveries one claim statement leases (one random token each).
const LEASE_BLOCK: usize = 1024;

/// How many acked messages past retention one housekeeping removes at most.
const SWEEP_BATCH: i64 = 512;

/// What [`claim_in`] found.
pub(crate) enum Claim {
    /// These deliveries, leased for this long (maybe none).
    Leased(Vec<Delivery>, Duration),
    /// No queue has this name.
    Missing,
    /// The name is a topic's: the error to return.
    Topic(Error),
}

impl PostgresStore {
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
        self.retrying(|store| store.claim_once(queue, max, visibility, ack))
    }

    fn claim_once(
        &mut self,
        queue: &str,
        max: usize,
        visibility: Option<Duration>,
        ack: bool,
    ) -> Result<Vec<Delivery>> {
        if !ack && let Some(leased) = fast_claim(self.conn.get_mut(), queue, max, visibility)? {
            return Ok(leased);
        }
        let mut tx = Tx::begin(self.conn.get_mut())?;
        match claim_in(&mut tx, queue, max, visibility, ack)? {
            Claim::Leased(leased, _) => {
                tx.commit()?;
                Ok(leased)
            }
            Claim::Topic(e) => Err(e),
            Claim::Missing => {
                drop(tx);
                Err(self.unknown_queue(queue))
            }
        }
    }

    /// Acks each receipt: the message is done (kept for replay, or deleted when
    /// the queue's retention is 0). Each receipt is judged on its own.
    pub fn ack(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        self.retrying(|store| store.ack_once(receipts))
    }

    fn ack_once(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        let acked = fast_ack(self.conn.get_mut(), receipts)?;
        let rest: Vec<Receipt> = receipts
            .iter()
            .filter(|r| !acked.contains(r))
            .copied()
            .collect();
        if rest.is_empty() {
            return Ok(vec![Ok(()); receipts.len()]);
        }
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let outcomes = ack_in(&mut tx, &rest)?;
        tx.commit()?;
        let judged: HashMap<Receipt, Result<(), ReceiptError>> =
            rest.into_iter().zip(outcomes).collect();
        Ok(receipts
            .iter()
            .map(|r| judged.get(r).copied().unwrap_or(Ok(())))
            .collect())
    }

    /// Gives each receipt's message back: deliverable again per `release`, or
    /// dead when this was its last allowed attempt.
    pub fn nack(
        &mut self,
        receipts: &[Receipt],
        release: Release,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        self.settle_refusing_repeats(receipts, |tx, q, r, held| {
            give_back(tx, q, r.msg_id, &held, release).map(|_| ())
        })
    }

    /// Pushes each receipt's lease end to now + `by` (a heartbeat).
    pub fn extend(
        &mut self,
        receipts: &[Receipt],
        by: Duration,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        self.settle_refusing_repeats(receipts, |tx, q, r, _| {
            let until = tx.now.saturating_add(ms(by));
            set_state(tx, q.id, r.msg_id, State::Leased, until)
        })
    }

    /// Runs `act` for every receipt whose lease holds, in one transaction. A
    /// receipt of a finished delivery is refused: nack and extend need a lease.
    fn settle_refusing_repeats(
        &mut self,
        receipts: &[Receipt],
        mut act: impl FnMut(&mut Tx<'_>, &QueueRow, &Receipt, Held) -> Result<()>,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        self.retrying(|store| store.settle_once(receipts, &mut act))
    }

    fn settle_once(
        &mut self,
        receipts: &[Receipt],
        act: &mut impl FnMut(&mut Tx<'_>, &QueueRow, &Receipt, Held) -> Result<()>,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        let outcomes = settle_in(
            &mut tx,
            receipts,
            |r| r,
            |tx, q, r, held| act(tx, q, r, held),
        )?
        .into_iter()
        .map(|outcome| rules::settle_answer(outcome, Repeat::Refused))
        .collect();
        tx.commit()?;
        Ok(outcomes)
    }

    /// When the next delayed message or lease of `queue` comes due (ms since
    /// the epoch, server clock), so a waiting consumer knows when to look again.
    pub fn next_due(&self, queue: &str) -> Result<Option<i64>> {
        let row = self.conn.borrow_mut().query_opt(
            "SELECT min(visible_at) FROM deliveries
             WHERE queue_id = (SELECT id FROM queues WHERE name = $1) AND state IN (1, 2)",
            &[&queue],
        )?;
        Ok(match row {
            Some(r) => r.at(0)?,
            None => None,
        })
    }
}

/// The body of [`PostgresStore::claim`], inside a transaction the caller commits.
pub(crate) fn claim_in(
    tx: &mut Tx<'_>,
    queue: &str,
    max: usize,
    visibility: Option<Duration>,
    ack: bool,
) -> Result<Claim> {
    let q = match queues::queue(tx, queue)? {
        Found::Queue(q) => q,
        Found::Missing => return Ok(Claim::Missing),
        Found::Topic(e) => return Ok(Claim::Topic(e)),
    };
    promote_due(tx, &q)?;
    housekeeping(tx, &q)?;
    tx.claimed.insert(q.name.clone(), std::time::Instant::now());
    let lease = visibility.unwrap_or(q.settings.visibility);
    let lease_end = tx.now.saturating_add(ms(lease));
    let leased = lease_next(tx, &q, max, lease_end)?;
    tx.counts.moved_many(
        q.id,
        Some(State::Ready),
        Some(State::Leased),
        leased.len() as i64,
    );
    if ack {
        for d in &leased {
            finish(tx, &q, d.id, d.group.as_deref(), State::Acked)?;
        }
        release_groups(tx)?;
    }
    Ok(Claim::Leased(leased, lease))
}

/// A claim in one statement and one round trip, without an explicit
/// transaction: leases and counts in one go, when this connection ran a full
/// claim of the queue (lazy transitions, housekeeping) within the last
/// second and no delayed message or lease of the queue is due. `None`: take
/// the full path (nothing was changed). Measured with 16 consumers at batch
/// 1: about twice the throughput of the five round trips of the full path.
fn fast_claim(
    conn: &mut Conn,
    queue: &str,
    max: usize,
    visibility: Option<Duration>,
) -> Result<Option<Vec<Delivery>>> {
    let recent = conn
        .claimed
        .get(queue)
        .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
    #[cfg(test)]
    let recent = recent && conn.before_commit.is_none();
    if !recent || max == 0 || max > LEASE_BLOCK {
        return Ok(None);
    }
    let leases = new_leases(max)?;
    let visibility = visibility.map(ms);
    let rows = conn.query(
        &format!(
            "WITH q AS (
                 SELECT id, visibility_ms FROM queues WHERE name = $1 AND NOT is_topic
             ), t AS (
                 SELECT {NOW_MS} AS now
             ), due AS (
                 SELECT 1 FROM deliveries
                 WHERE queue_id = (SELECT id FROM q) AND state IN (1, 2)
                   AND visible_at <= (SELECT now FROM t)
                 LIMIT 1
             ), picked AS (
                 SELECT msg_id FROM deliveries
                 WHERE queue_id = (SELECT id FROM q) AND state = 0
                   AND NOT EXISTS (SELECT 1 FROM due)
                 ORDER BY priority DESC, msg_id LIMIT $2 FOR UPDATE SKIP LOCKED
             ), numbered AS (
                 SELECT msg_id, row_number() OVER () AS n FROM picked
             ), leased AS (
                 UPDATE deliveries d SET state = 2, attempts = d.attempts + 1,
                     visible_at = (SELECT now FROM t)
                         + coalesce($3::bigint, (SELECT visibility_ms FROM q)),
                     lease = ($4::bigint[])[numbered.n]
                 FROM numbered WHERE d.queue_id = (SELECT id FROM q) AND d.msg_id = numbered.msg_id
                 RETURNING d.msg_id, d.attempts, d.lease, d.priority, d.grp, d.visible_at,
                           d.schema_version
             ), counted AS (
                 INSERT INTO stats (queue_id, second, n_ready, n_leased)
                 SELECT (SELECT id FROM q), (SELECT now FROM t) / 1000, -count(*), count(*)
                 FROM leased HAVING count(*) > 0
             )
             SELECT l.msg_id, l.attempts, l.lease, l.priority, l.grp, l.visible_at,
                    m.key, m.published_at, m.raw, m.headers, m.body,
                    (SELECT id FROM q), EXISTS (SELECT 1 FROM due), l.schema_version
             FROM (SELECT 1) AS one
             LEFT JOIN leased l ON true
             LEFT JOIN messages m ON m.id = l.msg_id
             ORDER BY l.priority DESC, l.msg_id"
        ),
        &[&queue, &(max as i64), &visibility, &leases],
    )?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let (queue_id, due): (Option<i64>, bool) = (first.at(11)?, first.at(12)?);
    let Some(queue_id) = queue_id.filter(|_| !due) else {
        return Ok(None);
    };
    let mut leased = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(msg_id) = r.at::<Option<i64>>(0)? else {
            continue;
        };
        leased.push(Delivery {
            schema_version: r.at(13)?,
            id: msg_id,
            queue: queue.to_owned(),
            receipt: Receipt {
                queue_id,
                msg_id,
                lease: r.at(2)?,
            },
            attempt: r.at(1)?,
            published_at: r.at(7)?,
            lease_expires_at: r.at(5)?,
            key: r.at(6)?,
            group: r.at(4)?,
            priority: r.at(3)?,
            headers: r.at(9)?,
            body: r.at(10)?,
            raw: r.at(8)?,
        });
    }
    Ok(Some(leased))
}

/// Acks, in one statement and one round trip without an explicit
/// transaction, the receipts whose lease holds, of ungrouped deliveries in
/// queues that keep acked messages, and counts them. Returns those; the
/// others (refused, repeated, grouped, retention 0) go the full way.
fn fast_ack(conn: &mut Conn, receipts: &[Receipt]) -> Result<Vec<Receipt>> {
    #[cfg(test)]
    if conn.before_commit.is_some() {
        return Ok(Vec::new());
    }
    let queue_ids: Vec<i64> = receipts.iter().map(|r| r.queue_id).collect();
    let msg_ids: Vec<i64> = receipts.iter().map(|r| r.msg_id).collect();
    let leases: Vec<i64> = receipts.iter().map(|r| r.lease).collect();
    let rows = conn.query(
        &format!(
            "WITH t AS (
                 SELECT {NOW_MS} AS now
             ), acked AS (
                 UPDATE deliveries d SET state = 3, done_at = (SELECT now FROM t)
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r(queue_id, msg_id, lease)
                 WHERE d.queue_id = r.queue_id AND d.msg_id = r.msg_id AND d.lease = r.lease
                   AND d.state + 0 = 2 AND d.visible_at > (SELECT now FROM t) AND d.grp IS NULL
                   AND (SELECT retention_ms FROM queues WHERE id = d.queue_id) > 0
                 RETURNING d.queue_id, d.msg_id, d.lease
             ), counted AS (
                 INSERT INTO stats (queue_id, second, n_leased, n_acked, acked)
                 SELECT queue_id, (SELECT now FROM t) / 1000, -count(*), count(*), count(*)
                 FROM acked GROUP BY queue_id
             )
             SELECT queue_id, msg_id, lease FROM acked"
        ),
        &[&queue_ids, &msg_ids, &leases],
    )?;
    rows.iter()
        .map(|r| {
            Ok(Receipt {
                queue_id: r.at(0)?,
                msg_id: r.at(1)?,
                lease: r.at(2)?,
            })
        })
        .collect()
}

/// Leases the next `max` ready deliveries, skipping rows other transactions
/// hold, and returns them with their messages.
fn lease_next(tx: &mut Tx<'_>, q: &QueueRow, max: usize, lease_end: i64) -> Result<Vec<Delivery>> {
    let mut leased = Vec::new();
    while leased.len() < max {
        let n = (max - leased.len()).min(LEASE_BLOCK);
        let block = lease_block(tx, q, n, lease_end)?;
        let short = block.len() < n;
        leased.extend(block);
        if short {
            break;
        }
    }
    Ok(leased)
}

/// Leases up to `n` (at most [`LEASE_BLOCK`]) ready deliveries in one
/// statement, each with its own random token.
fn lease_block(tx: &mut Tx<'_>, q: &QueueRow, n: usize, lease_end: i64) -> Result<Vec<Delivery>> {
    let leases = new_leases(n)?;
    let rows = tx.query(
        "WITH picked AS (
             SELECT msg_id FROM deliveries WHERE queue_id = $1 AND state = 0
             ORDER BY priority DESC, msg_id LIMIT $2 FOR UPDATE SKIP LOCKED
         ), numbered AS (
             SELECT msg_id, row_number() OVER () AS n FROM picked
         ), leased AS (
             UPDATE deliveries d SET state = 2, attempts = d.attempts + 1, visible_at = $3,
                 lease = ($4::bigint[])[numbered.n]
             FROM numbered WHERE d.queue_id = $1 AND d.msg_id = numbered.msg_id
             RETURNING d.msg_id, d.attempts, d.lease, d.priority, d.grp, d.schema_version
         )
         SELECT l.msg_id, l.attempts, l.lease, l.priority, l.grp,
                m.key, m.published_at, m.raw, m.headers, m.body, l.schema_version
         FROM leased l JOIN messages m ON m.id = l.msg_id
         ORDER BY l.priority DESC, l.msg_id",
        &[&q.id, &(n as i64), &lease_end, &leases],
    )?;
    rows.iter()
        .map(|r| {
            let msg_id: i64 = r.at(0)?;
            Ok(Delivery {
                schema_version: r.at(10)?,
                id: msg_id,
                queue: q.name.clone(),
                receipt: Receipt {
                    queue_id: q.id,
                    msg_id,
                    lease: r.at(2)?,
                },
                attempt: r.at(1)?,
                published_at: r.at(6)?,
                lease_expires_at: lease_end,
                key: r.at(5)?,
                group: r.at(4)?,
                priority: r.at(3)?,
                headers: r.at(8)?,
                body: r.at(9)?,
                raw: r.at(7)?,
            })
        })
        .collect()
}

/// Acks receipts: one statement for all whose lease holds (per retention:
/// marked acked, or deleted), then a look at the others to tell a repeated
/// ack (harmless) from a refused one.
pub(crate) fn ack_in(
    tx: &mut Tx<'_>,
    receipts: &[Receipt],
) -> Result<Vec<Result<(), ReceiptError>>> {
    let queues = queue_map(tx, receipts.iter())?;
    let (mut keep, mut delete) = (Vec::new(), Vec::new());
    for r in receipts {
        match queues.get(&r.queue_id) {
            Some(q) if q.settings.retention.is_zero() => delete.push(*r),
            Some(_) => keep.push(*r),
            None => {}
        }
    }
    let mut acked: HashMap<Receipt, Option<String>> = HashMap::new();
    for (set, deleting) in [(keep, false), (delete, true)] {
        if set.is_empty() {
            continue;
        }
        for (r, group) in ack_set(tx, &set, deleting)? {
            if deleting {
                tx.counts.acked_and_deleted(r.queue_id, 1);
            } else {
                tx.counts
                    .moved(r.queue_id, Some(State::Leased), Some(State::Acked));
            }
            acked.insert(r, group);
        }
        if deleting {
            let ids: Vec<i64> = set.iter().map(|r| r.msg_id).collect();
            delete_orphans(tx, &ids)?;
        }
    }
    for (r, group) in &acked {
        if let Some(group) = group {
            release_group(tx, r.queue_id, group, r.msg_id)?;
        }
    }
    release_groups(tx)?;
    let mut outcomes = Vec::with_capacity(receipts.len());
    let mut last_id = None;
    for r in receipts {
        let outcome = if !queues.contains_key(&r.queue_id) {
            Err(ReceiptError::Unknown)
        } else if acked.contains_key(r) {
            Ok(())
        } else {
            match check(tx, r, &mut last_id)? {
                Judgement::Done => Ok(()),
                Judgement::Refused(e) => Err(e),
                // Its lease started holding after the ack looked: a receipt
                // given twice in one call, or a race lost; refuse it.
                Judgement::Held(_) => Err(ReceiptError::LeaseEnded),
            }
        };
        outcomes.push(outcome);
    }
    for q in queues.values() {
        housekeeping(tx, q)?;
    }
    Ok(outcomes)
}

/// Marks acked (or deletes) the deliveries whose receipt's lease holds, and
/// returns them with their groups. (`state + 0`: the generic plan of this
/// prepared statement otherwise walks `deliveries_waiting`, every leased row
/// of the queue once per receipt, instead of one primary key seek each; the
/// expression keeps the partial index out of reach. Measured: 8 ms instead of
/// 0.7 ms per ack of 100.)
fn ack_set(
    tx: &mut Tx<'_>,
    set: &[Receipt],
    deleting: bool,
) -> Result<Vec<(Receipt, Option<String>)>> {
    let queue_ids: Vec<i64> = set.iter().map(|r| r.queue_id).collect();
    let msg_ids: Vec<i64> = set.iter().map(|r| r.msg_id).collect();
    let leases: Vec<i64> = set.iter().map(|r| r.lease).collect();
    let sql = if deleting {
        "DELETE FROM deliveries d
         USING unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS r(queue_id, msg_id, lease)
         WHERE d.queue_id = r.queue_id AND d.msg_id = r.msg_id AND d.lease = r.lease
           AND d.state + 0 = 2 AND d.visible_at > $1
         RETURNING d.queue_id, d.msg_id, d.lease, d.grp"
    } else {
        "UPDATE deliveries d SET state = 3, done_at = $1
         FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS r(queue_id, msg_id, lease)
         WHERE d.queue_id = r.queue_id AND d.msg_id = r.msg_id AND d.lease = r.lease
           AND d.state + 0 = 2 AND d.visible_at > $1
         RETURNING d.queue_id, d.msg_id, d.lease, d.grp"
    };
    let now = tx.now;
    let rows = tx.query(sql, &[&now, &queue_ids, &msg_ids, &leases])?;
    rows.iter()
        .map(|r| {
            let receipt = Receipt {
                queue_id: r.at(0)?,
                msg_id: r.at(1)?,
                lease: r.at(2)?,
            };
            Ok((receipt, r.at(3)?))
        })
        .collect()
}

/// The queue rows the receipts name, by id (unknown ids are missing).
fn queue_map<'r>(
    conn: &mut Conn,
    receipts: impl Iterator<Item = &'r Receipt>,
) -> Result<HashMap<i64, QueueRow>> {
    let mut ids: Vec<i64> = receipts.map(|r| r.queue_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(queues::by_ids(conn, &ids)?
        .into_iter()
        .map(|q| (q.id, q))
        .collect())
}

/// Runs `act` for every item whose receipt's lease holds, inside a
/// transaction the caller commits. `Ok(None)`: the delivery was already
/// finished with this receipt, so `act` did not run.
pub(crate) fn settle_in<T, S>(
    tx: &mut Tx<'_>,
    items: &[T],
    receipt: impl Fn(&T) -> &Receipt,
    mut act: impl FnMut(&mut Tx<'_>, &QueueRow, &T, Held) -> Result<S>,
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
        let outcome = match check(tx, r, &mut last_id)? {
            Judgement::Held(held) => Ok(Some(act(tx, q, item, held)?)),
            Judgement::Done => Ok(None),
            Judgement::Refused(e) => Err(e),
        };
        outcomes.push(outcome);
    }
    release_groups(tx)?;
    for q in queues.values() {
        housekeeping(tx, q)?;
    }
    Ok(outcomes)
}

/// The highest message id ever handed out.
fn last_message_id(conn: &mut Conn) -> Result<i64> {
    let row = conn.query_opt("SELECT last_value, is_called FROM message_ids", &[])?;
    Ok(match row {
        Some(r) if r.at::<bool>(1)? => r.at(0)?,
        Some(r) => r.at::<i64>(0)? - 1,
        None => 0,
    })
}

/// Judges a receipt against the delivery row it names, locking the row so
/// the judgement holds until the transaction ends.
fn check(tx: &mut Tx<'_>, r: &Receipt, last_id: &mut Option<i64>) -> Result<Judgement> {
    let row = tx.query_opt(
        "SELECT state, lease, visible_at, attempts, grp FROM deliveries
         WHERE msg_id = $1 AND queue_id = $2 FOR UPDATE",
        &[&r.msg_id, &r.queue_id],
    )?;
    let Some(row) = row else {
        let last = match *last_id {
            Some(id) => id,
            None => *last_id.insert(last_message_id(tx)?),
        };
        return Ok(rules::judge_missing(r, last));
    };
    let row = LeaseRow {
        state: State::from_i64(row.at(0)?),
        lease: row.at(1)?,
        visible_at: row.at(2)?,
        attempts: row.at(3)?,
        group: row.at(4)?,
    };
    Ok(rules::judge_receipt(r, row, tx.now))
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
            tx.notify(&q.name);
            Ok(state)
        }
    }
}

pub(crate) fn set_state(
    tx: &mut Tx<'_>,
    queue: i64,
    msg: i64,
    state: State,
    visible_at: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE deliveries SET state = $3, visible_at = $4 WHERE msg_id = $1 AND queue_id = $2",
        &[&msg, &queue, &(state as i64), &visible_at],
    )?;
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
        tx.execute(
            "DELETE FROM deliveries WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &q.id],
        )?;
        delete_orphans(tx, &[msg])?;
        tx.counts.acked_and_deleted(q.id, 1);
    } else {
        let now = tx.now;
        tx.execute(
            "UPDATE deliveries SET state = $3, done_at = $4 WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &q.id, &(to as i64), &now],
        )?;
        tx.counts.moved(q.id, Some(State::Leased), Some(to));
    }
    if let Some(group) = group {
        release_group(tx, q.id, group, msg)?;
    }
    Ok(())
}

/// Deletes the messages among `ids` whose last delivery is gone. Locks the
/// message rows first: two transactions deleting the last two deliveries of
/// one message then take turns, and the second sees the first's delete (a
/// new statement sees what committed before it), so one of them removes
/// the message.
pub(crate) fn delete_orphans(tx: &mut Conn, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "SELECT 1 FROM messages WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )?;
    tx.execute(
        "DELETE FROM messages m WHERE m.id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id)",
        &[&ids],
    )?;
    Ok(())
}

/// Notes that `finished`, maybe the head of `group`, reached a final state;
/// [`release_groups`] lets the group go on.
pub(crate) fn release_group(tx: &mut Tx<'_>, queue: i64, group: &str, finished: i64) -> Result<()> {
    tx.releases.push((queue, group.to_owned(), finished));
    Ok(())
}

/// Lets go the groups noted by [`release_group`], in the order of their
/// keys (queue id, group), the order in which every writer locks
/// `group_heads` rows (publish upserts them sorted too): two transactions
/// that lock several group rows then never wait for each other in a cycle.
pub(crate) fn release_groups(tx: &mut Tx<'_>) -> Result<()> {
    let mut releases = std::mem::take(&mut tx.releases);
    releases.sort();
    releases.dedup();
    for (queue, group, finished) in releases {
        release_now(tx, queue, &group, finished)?;
    }
    Ok(())
}

/// After `finished`, the head of `group`, reached a final state: the next
/// held message of the group (lowest id) becomes the head. Locks the head
/// row, so a publish adding to the group (which locks it too) is seen.
fn release_now(tx: &mut Tx<'_>, queue: i64, group: &str, finished: i64) -> Result<()> {
    let head: Option<i64> = tx
        .query_opt(
            "SELECT head_id FROM group_heads WHERE queue_id = $1 AND grp = $2 FOR UPDATE",
            &[&queue, &group],
        )?
        .map(|r| r.at(0))
        .transpose()?;
    if head != Some(finished) {
        return Ok(());
    }
    let next = tx.query_opt(
        "SELECT msg_id, visible_at FROM deliveries
         WHERE queue_id = $1 AND grp = $2 AND state = 5 ORDER BY msg_id LIMIT 1",
        &[&queue, &group],
    )?;
    let Some(next) = next else {
        tx.execute(
            "DELETE FROM group_heads WHERE queue_id = $1 AND grp = $2",
            &[&queue, &group],
        )?;
        return Ok(());
    };
    let (next_id, visible_at): (i64, i64) = (next.at(0)?, next.at(1)?);
    let state = rules::released_state(visible_at, tx.now);
    set_state(tx, queue, next_id, state, visible_at)?;
    tx.execute(
        "UPDATE group_heads SET head_id = $3 WHERE queue_id = $1 AND grp = $2",
        &[&queue, &group, &next_id],
    )?;
    tx.counts.moved(queue, Some(State::Held), Some(state));
    if let Some(name) = name_of(tx, queue)? {
        tx.notify(&name);
    }
    Ok(())
}

fn name_of(conn: &mut Conn, queue: i64) -> Result<Option<String>> {
    conn.query_opt("SELECT name FROM queues WHERE id = $1", &[&queue])?
        .map(|r| r.at(0))
        .transpose()
}

/// Moves due delayed messages and expired leases of `q` back to ready, or to
/// dead for a lease that ran out on the last allowed attempt. Skips rows
/// other transactions hold, so concurrent claims never wait on each other.
/// (The transitions of `rules::effective` in SQL: the `CASE` is
/// `rules::lease_dies`.)
pub(crate) fn promote_due(tx: &mut Tx<'_>, q: &QueueRow) -> Result<()> {
    let max = i64::from(q.settings.max_attempts);
    let now = tx.now;
    let rows = tx.query(
        "WITH due AS (
             SELECT msg_id, state FROM deliveries
             WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $2
             FOR UPDATE SKIP LOCKED
         )
         UPDATE deliveries d SET
             state = CASE WHEN due.state = 2 AND $3::bigint > 0 AND d.attempts >= $3::bigint THEN 4 ELSE 0 END,
             done_at = CASE WHEN due.state = 2 AND $3::bigint > 0 AND d.attempts >= $3::bigint
                            THEN d.visible_at ELSE d.done_at END
         FROM due WHERE d.queue_id = $1 AND d.msg_id = due.msg_id
         RETURNING d.msg_id, due.state, d.state, d.grp",
        &[&q.id, &now, &max],
    )?;
    let mut died = Vec::new();
    for row in &rows {
        let from = State::from_i64(row.at(1)?);
        let to = State::from_i64(row.at(2)?);
        tx.counts.moved(q.id, Some(from), Some(to));
        if to == State::Dead
            && let Some(group) = row.at::<Option<String>>(3)?
        {
            died.push((row.at::<i64>(0)?, group));
        }
    }
    for (msg, group) in died {
        release_group(tx, q.id, &group, msg)?;
    }
    release_groups(tx)
}

/// Once a second per connection and queue: removes up to [`SWEEP_BATCH`]
/// acked messages of `q` whose retention has passed, and folds the queue's
/// `stats` rows of earlier seconds into one row per second (one row for all
/// seconds older than an hour). One statement; the fold is skipped when
/// another transaction is folding the same queue.
pub(crate) fn housekeeping(tx: &mut Tx<'_>, q: &QueueRow) -> Result<()> {
    let second = tx.now.div_euclid(1000);
    if tx.housekeeping.get(&q.id) == Some(&second) {
        return Ok(());
    }
    let cutoff = tx.now.saturating_sub(ms(q.settings.retention));
    let key = format!("spool stats {}", tx.target.schema);
    let hour_ago = second - 3600;
    let rows = tx.query(
        "WITH lk AS (
             SELECT pg_try_advisory_xact_lock(hashtextextended($1, $2)) AS ok
         ), old AS (
             DELETE FROM stats WHERE queue_id = $2 AND second < $3 AND (SELECT ok FROM lk)
             RETURNING *
         ), folded AS (
             INSERT INTO stats (queue_id, second, n_ready, n_delayed, n_leased, n_acked,
                                n_dead, n_held, published, acked)
             SELECT $2, CASE WHEN second < $4 THEN 0 ELSE second END,
                    sum(n_ready), sum(n_delayed), sum(n_leased), sum(n_acked),
                    sum(n_dead), sum(n_held), sum(published), sum(acked)
             FROM old GROUP BY 2
         ), swept AS (
             DELETE FROM deliveries WHERE queue_id = $2 AND msg_id IN (
                 SELECT msg_id FROM deliveries
                 WHERE queue_id = $2 AND state IN (3, 4) AND state = 3 AND done_at <= $5
                 LIMIT $6 FOR UPDATE SKIP LOCKED)
             RETURNING msg_id
         )
         SELECT msg_id FROM swept",
        &[&key, &q.id, &second, &hour_ago, &cutoff, &SWEEP_BATCH],
    )?;
    tx.housekeeping.insert(q.id, second);
    let removed = rows.iter().map(|r| r.at(0)).collect::<Result<Vec<i64>>>()?;
    tx.counts
        .moved_many(q.id, Some(State::Acked), None, removed.len() as i64);
    delete_orphans(tx, &removed)
}

impl LeaseTx for Tx<'_> {
    fn promote_due(&mut self, q: &QueueRow) -> Result<()> {
        promote_due(self, q)
    }

    fn housekeeping(&mut self, q: &QueueRow) -> Result<()> {
        housekeeping(self, q)
    }

    fn set_state(&mut self, queue: i64, msg: i64, state: State, visible_at: i64) -> Result<()> {
        set_state(self, queue, msg, state, visible_at)
    }

    fn mark_done(&mut self, queue: i64, msg: i64, to: State) -> Result<()> {
        let now = self.now;
        self.execute(
            "UPDATE deliveries SET state = $3, done_at = $4 WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &queue, &(to as i64), &now],
        )?;
        Ok(())
    }

    fn delete_delivery(&mut self, queue: i64, msg: i64) -> Result<()> {
        self.execute(
            "DELETE FROM deliveries WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &queue],
        )?;
        Ok(())
    }

    fn delete_orphans(&mut self, msgs: &[i64]) -> Result<()> {
        delete_orphans(self, msgs)
    }

    fn release_group(&mut self, queue: i64, group: &str, finished: i64) -> Result<()> {
        release_group(self, queue, group, finished)
    }
}
