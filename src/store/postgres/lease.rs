//! The SQL of leases (the operations are `ops::lease`): leasing, settling,
//! the lazy transitions (due delayed messages, expired leases) that claims
//! perform on the way, plus the housekeeping (retention, folding `stats`)
//! that writers do once a second. Claim and ack have one-statement fast
//! paths here, tried before the generic operation.

use std::collections::HashMap;
use std::time::Duration;

use super::queues::{self, QueueRow};
use super::tx::{NOW_MS, Tx};
use super::{Conn, PostgresStore, RowExt};
use crate::store::backend::{DUE_WAKE_MS, LeaseTx};
use crate::store::error::Result;
use crate::store::flow::DeadReason;
use crate::store::ops::lease;
use crate::store::receipt::{Receipt, ReceiptError, new_leases};
use crate::store::rules::{self, LeaseRow};
use crate::store::types::{Delivery, State, ms};
use postgres::Row;

/// The most deliveries one claim statement leases (one random token each).
const LEASE_BLOCK: usize = 1024;

/// How many acked messages past retention one housekeeping removes at most.
const SWEEP_BATCH: i64 = 512;

impl PostgresStore {
    pub(super) fn ack_once(
        &mut self,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), ReceiptError>>> {
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
        let outcomes = lease::ack_in(&mut tx, &rest)?;
        tx.commit()?;
        let judged: HashMap<Receipt, Result<(), ReceiptError>> =
            rest.into_iter().zip(outcomes).collect();
        Ok(receipts
            .iter()
            .map(|r| judged.get(r).copied().unwrap_or(Ok(())))
            .collect())
    }

    /// When the next delayed message or lease of `queue` comes due, or the
    /// next occurrence of a schedule that feeds it (ms since the epoch,
    /// server clock), so a waiting consumer knows when to look again.
    pub fn next_due(&self, queue: &str) -> Result<Option<i64>> {
        let row = self.conn.borrow_mut().query_opt(
            &format!(
                "SELECT min(at) FROM (
                     SELECT min(visible_at) AS at FROM deliveries
                     WHERE queue_id = (SELECT id FROM queues WHERE name = $1) AND state IN (1, 2)
                     UNION ALL
                     SELECT schedule_at FROM queues
                     WHERE name = $1 AND schedule_at > {NOW_MS} - $2) AS due"
            ),
            &[&queue, &DUE_WAKE_MS],
        )?;
        row.map_or(Ok(None), |r| r.at(0))
    }
}

/// A claim in one statement and one round trip, without an explicit
/// transaction: leases and counts in one go, when this connection ran a full
/// claim of the queue (lazy transitions, housekeeping) within the last
/// second, no delayed message or lease of the queue is due, no message of
/// it has expired (a probe of `deliveries_expiring`, empty unless messages
/// have a TTL), no schedule that feeds it is due, and the queue
/// has no flow-control setting (a pause, cap or rate needs the full path's
/// row lock and count). `None`: take the full path (nothing was changed).
/// Measured with 16 consumers at batch
/// 1: about twice the throughput of the five round trips of the full path.
pub(super) fn fast_claim(
    conn: &mut Conn,
    queue: &str,
    max: usize,
    visibility: Option<Duration>,
) -> Result<Option<Vec<Delivery>>> {
    let recent = conn
        .claimed
        .get(queue)
        .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
    #[cfg(any(test, feature = "test-hooks"))]
    let recent = recent && conn.before_commit.is_none();
    if !recent || max == 0 || max > LEASE_BLOCK {
        return Ok(None);
    }
    let leases = new_leases(max)?;
    let visibility = visibility.map(ms);
    let rows = conn.query(
        &format!(
            "WITH q AS (
                 SELECT id, visibility_ms, schedule_at FROM queues
                 WHERE name = $1 AND NOT is_topic AND flow IS NULL
             ), t AS (
                 SELECT {NOW_MS} AS now
             ), due AS (
                 SELECT 1 FROM deliveries
                 WHERE queue_id = (SELECT id FROM q) AND state IN (1, 2)
                   AND visible_at <= (SELECT now FROM t)
                 UNION ALL
                 SELECT 1 FROM deliveries
                 WHERE queue_id = (SELECT id FROM q) AND expires_at IS NOT NULL
                   AND state IN (0, 1, 5) AND expires_at <= (SELECT now FROM t)
                 UNION ALL
                 SELECT 1 FROM q WHERE schedule_at <= (SELECT now FROM t)
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
                    m.key, m.published_at, m.raw, m.headers, m.body, l.schema_version,
                    (SELECT id FROM q), EXISTS (SELECT 1 FROM due)
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
    let (queue_id, due): (Option<i64>, bool) = (first.at(12)?, first.at(13)?);
    let Some(queue_id) = queue_id.filter(|_| !due) else {
        return Ok(None);
    };
    let mut leased = Vec::with_capacity(rows.len());
    for r in &rows {
        // No delivery leased: one row of nulls (the left join).
        if r.at::<Option<i64>>(0)?.is_some() {
            leased.push(delivery(r, queue, queue_id)?);
        }
    }
    Ok(Some(leased))
}

/// A leased delivery from a row of `msg_id, attempts, lease, priority, grp,
/// visible_at, key, published_at, raw, headers, body, schema_version`.
fn delivery(r: &Row, queue: &str, queue_id: i64) -> Result<Delivery> {
    let msg_id = r.at(0)?;
    Ok(Delivery {
        id: msg_id,
        queue: queue.to_owned(),
        receipt: Receipt {
            queue_id,
            msg_id,
            lease: r.at(2)?,
        },
        attempt: r.at(1)?,
        priority: r.at(3)?,
        group: r.at(4)?,
        lease_expires_at: r.at(5)?,
        key: r.at(6)?,
        published_at: r.at(7)?,
        raw: r.at(8)?,
        headers: r.at(9)?,
        body: r.at(10)?,
        schema_version: r.at(11)?,
    })
}

/// The receipts as the three arrays the ack statements `unnest`.
fn unnest_args(receipts: &[Receipt]) -> [Vec<i64>; 3] {
    let column = |f: fn(&Receipt) -> i64| receipts.iter().map(f).collect();
    [
        column(|r| r.queue_id),
        column(|r| r.msg_id),
        column(|r| r.lease),
    ]
}

/// The receipt of a row starting with `queue_id, msg_id, lease`.
fn receipt(r: &Row) -> Result<Receipt> {
    Ok(Receipt {
        queue_id: r.at(0)?,
        msg_id: r.at(1)?,
        lease: r.at(2)?,
    })
}

/// Acks, in one statement and one round trip without an explicit
/// transaction, the receipts whose lease holds, of ungrouped deliveries in
/// queues that keep acked messages and have no flow-control setting (an ack
/// under an in-flight cap must wake waiting consumers), and counts them.
/// Returns those; the others go the full way.
fn fast_ack(conn: &mut Conn, receipts: &[Receipt]) -> Result<Vec<Receipt>> {
    #[cfg(any(test, feature = "test-hooks"))]
    if conn.before_commit.is_some() {
        return Ok(Vec::new());
    }
    let [queue_ids, msg_ids, leases] = unnest_args(receipts);
    let rows = conn.query(
        &format!(
            "WITH t AS (
                 SELECT {NOW_MS} AS now
             ), acked AS (
                 UPDATE deliveries d SET state = 3, done_at = (SELECT now FROM t)
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r(queue_id, msg_id, lease)
                 WHERE d.queue_id = r.queue_id AND d.msg_id = r.msg_id AND d.lease = r.lease
                   AND d.state + 0 = 2 AND d.visible_at > (SELECT now FROM t) AND d.grp IS NULL
                   AND (SELECT retention_ms > 0 AND flow IS NULL FROM queues WHERE id = d.queue_id)
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
    rows.iter().map(receipt).collect()
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
    let [queue_ids, msg_ids, leases] = unnest_args(set);
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
    rows.iter().map(|r| Ok((receipt(r)?, r.at(3)?))).collect()
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

impl LeaseTx for Tx<'_> {
    fn lock_queue(&mut self, id: i64) -> Result<Option<QueueRow>> {
        let sql = format!(
            "SELECT {} FROM queues WHERE id = $1 FOR UPDATE",
            queues::COLUMNS
        );
        self.query_opt(&sql, &[&id])?
            .map(|row| queues::from_row(&row))
            .transpose()
    }

    fn set_rate_state(&mut self, queue: i64, full_at: i64) -> Result<()> {
        self.execute(
            "UPDATE queues SET rate_full_at = $2 WHERE id = $1",
            &[&queue, &full_at],
        )?;
        Ok(())
    }

    fn note_failure(
        &mut self,
        queue: i64,
        msg: i64,
        reason: Option<DeadReason>,
        error: Option<&str>,
    ) -> Result<()> {
        self.execute(
            "UPDATE deliveries SET dead_reason = coalesce($3, dead_reason),
               last_error = coalesce($4, last_error) WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &queue, &reason.map(DeadReason::name), &error],
        )?;
        Ok(())
    }

    /// Skips rows other transactions hold, so concurrent claims never wait on
    /// each other. (The transitions of `rules::effective` in SQL: a message
    /// past its TTL dies, `rules::expired_at`; the lease `CASE` is
    /// `rules::lease_dies`.)
    fn promote_due(&mut self, q: &QueueRow) -> Result<()> {
        let max = i64::from(q.settings.max_attempts);
        let now = self.now;
        let rows = self.query(
            "WITH due AS (
                 SELECT msg_id, state FROM deliveries
                 WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $2
                 FOR UPDATE SKIP LOCKED
             ), expiring AS (
                 SELECT msg_id, state FROM deliveries
                 WHERE queue_id = $1 AND expires_at IS NOT NULL AND state IN (0, 1, 5)
                   AND expires_at <= $2
                 FOR UPDATE SKIP LOCKED
             ), moving AS (
                 SELECT * FROM due UNION SELECT * FROM expiring
             )
             UPDATE deliveries d SET
                 state = CASE WHEN d.expires_at <= $2 THEN 4
                              WHEN m.state = 2 AND $3::bigint > 0 AND d.attempts >= $3::bigint THEN 4
                              ELSE 0 END,
                 done_at = CASE WHEN m.state = 2 AND (d.expires_at <= $2
                                     OR ($3::bigint > 0 AND d.attempts >= $3::bigint))
                                THEN d.visible_at
                                WHEN d.expires_at <= $2 THEN d.expires_at
                                ELSE d.done_at END,
                 dead_reason = CASE WHEN d.expires_at <= $2 THEN 'expired' ELSE d.dead_reason END
             FROM moving m WHERE d.queue_id = $1 AND d.msg_id = m.msg_id
             RETURNING d.msg_id, m.state, d.state, d.grp, coalesce(d.expires_at <= $2, false)",
            &[&q.id, &now, &max],
        )?;
        let mut died = Vec::new();
        for row in &rows {
            let from = State::from_i64(row.at(1)?);
            let to = State::from_i64(row.at(2)?);
            self.counts.moved(q.id, Some(from), Some(to));
            if to == State::Dead && row.at::<bool>(4)? {
                self.counts.died(q.id, DeadReason::Expired, 1);
            }
            // A held message is no group's head: its death releases nothing.
            if to == State::Dead
                && from != State::Held
                && let Some(group) = row.at::<Option<String>>(3)?
            {
                died.push((row.at::<i64>(0)?, group));
            }
        }
        for (msg, group) in died {
            self.release_group(q.id, &group, msg)?;
        }
        self.release_groups()
    }

    /// Once a second per connection and queue: removes up to [`SWEEP_BATCH`]
    /// acked messages of `q` whose retention has passed, and folds the queue's
    /// `stats` rows of earlier seconds into one row per second (one row for all
    /// seconds older than an hour). One statement; the fold is skipped when
    /// another transaction is folding the same queue.
    fn housekeeping(&mut self, q: &QueueRow) -> Result<()> {
        let second = self.now.div_euclid(1000);
        if self.housekeeping.get(&q.id) == Some(&second) {
            return Ok(());
        }
        let cutoff = self.now.saturating_sub(ms(q.settings.retention));
        let key = format!("spool stats {}", self.target.schema);
        let hour_ago = second - 3600;
        let rows = self.query(
            "WITH lk AS (
                 SELECT pg_try_advisory_xact_lock(hashtextextended($1, $2)) AS ok
             ), old AS (
                 DELETE FROM stats WHERE queue_id = $2 AND second < $3 AND (SELECT ok FROM lk)
                 RETURNING *
             ), folded AS (
                 INSERT INTO stats (queue_id, second, n_ready, n_delayed, n_leased, n_acked,
                                    n_dead, n_held, published, acked, expired, dropped)
                 SELECT $2, CASE WHEN second < $4 THEN 0 ELSE second END,
                        sum(n_ready), sum(n_delayed), sum(n_leased), sum(n_acked),
                        sum(n_dead), sum(n_held), sum(published), sum(acked),
                        sum(expired), sum(dropped)
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
        self.housekeeping.insert(q.id, second);
        let removed = rows.iter().map(|r| r.at(0)).collect::<Result<Vec<i64>>>()?;
        self.counts
            .moved_many(q.id, Some(State::Acked), None, removed.len() as i64);
        delete_orphans(self, &removed)
    }

    fn set_state(&mut self, queue: i64, msg: i64, state: State, visible_at: i64) -> Result<()> {
        self.execute(
            "UPDATE deliveries SET state = $3, visible_at = $4 WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &queue, &(state as i64), &visible_at],
        )?;
        Ok(())
    }

    fn mark_done(&mut self, q: &QueueRow, msg: i64, to: State) -> Result<()> {
        let now = self.now;
        self.execute(
            "UPDATE deliveries SET state = $3, done_at = $4 WHERE msg_id = $1 AND queue_id = $2",
            &[&msg, &q.id, &(to as i64), &now],
        )?;
        Ok(())
    }

    fn ack_held(
        &mut self,
        q: &QueueRow,
        receipts: &[Receipt],
    ) -> Result<Vec<(Receipt, Option<String>)>> {
        ack_set(self, receipts, q.settings.retention.is_zero())
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

    /// Only notes the group: [`LeaseTx::release_groups`] lets it go on.
    fn release_group(&mut self, queue: i64, group: &str, finished: i64) -> Result<()> {
        self.releases.push((queue, group.to_owned(), finished));
        Ok(())
    }

    /// In the order of their keys (queue id, group), the order in which
    /// every writer locks `group_heads` rows (publish upserts them sorted
    /// too): two transactions that lock several group rows then never wait
    /// for each other in a cycle. Locking the head row makes a publish adding
    /// to the group (which locks it too) seen.
    fn release_groups(&mut self) -> Result<()> {
        let mut releases = std::mem::take(&mut self.releases);
        releases.sort();
        releases.dedup();
        for (queue, group, finished) in releases {
            let head: Option<i64> = self
                .query_opt(
                    "SELECT head_id FROM group_heads WHERE queue_id = $1 AND grp = $2 FOR UPDATE",
                    &[&queue, &group],
                )?
                .map(|r| r.at(0))
                .transpose()?;
            if head != Some(finished) {
                continue;
            }
            let next = self.query_opt(
                "SELECT msg_id, visible_at FROM deliveries
                 WHERE queue_id = $1 AND grp = $2 AND state = 5 ORDER BY msg_id LIMIT 1",
                &[&queue, &group],
            )?;
            let Some(next) = next else {
                self.execute(
                    "DELETE FROM group_heads WHERE queue_id = $1 AND grp = $2",
                    &[&queue, &group],
                )?;
                continue;
            };
            let (next_id, visible_at): (i64, i64) = (next.at(0)?, next.at(1)?);
            let state = rules::released_state(visible_at, self.now);
            self.set_state(queue, next_id, state, visible_at)?;
            self.execute(
                "UPDATE group_heads SET head_id = $3 WHERE queue_id = $1 AND grp = $2",
                &[&queue, &group, &next_id],
            )?;
            self.counts.moved(queue, Some(State::Held), Some(state));
            let name = self.query_opt("SELECT name FROM queues WHERE id = $1", &[&queue])?;
            if let Some(name) = name {
                self.notify(name.at(0)?);
            }
        }
        Ok(())
    }

    /// Skips rows other transactions hold. Also notes the claim, so that the
    /// next claim of the queue within a second may take [`fast_claim`].
    fn lease_next(&mut self, q: &QueueRow, max: usize, lease_end: i64) -> Result<Vec<Delivery>> {
        self.claimed
            .insert(q.name.clone(), std::time::Instant::now());
        let mut leased = Vec::new();
        while leased.len() < max {
            // One statement per block of at most LEASE_BLOCK deliveries, each
            // with its own random token.
            let n = (max - leased.len()).min(LEASE_BLOCK);
            let leases = new_leases(n)?;
            let rows = self.query(
                "WITH picked AS (
                 SELECT msg_id FROM deliveries WHERE queue_id = $1 AND state = 0
                 ORDER BY priority DESC, msg_id LIMIT $2 FOR UPDATE SKIP LOCKED
             ), numbered AS (
                 SELECT msg_id, row_number() OVER () AS n FROM picked
             ), leased AS (
                 UPDATE deliveries d SET state = 2, attempts = d.attempts + 1, visible_at = $3,
                     lease = ($4::bigint[])[numbered.n]
                 FROM numbered WHERE d.queue_id = $1 AND d.msg_id = numbered.msg_id
                 RETURNING d.msg_id, d.attempts, d.lease, d.priority, d.grp, d.visible_at,
                           d.schema_version
             )
             SELECT l.msg_id, l.attempts, l.lease, l.priority, l.grp, l.visible_at,
                    m.key, m.published_at, m.raw, m.headers, m.body, l.schema_version
             FROM leased l JOIN messages m ON m.id = l.msg_id
             ORDER BY l.priority DESC, l.msg_id",
                &[&q.id, &(n as i64), &lease_end, &leases],
            )?;
            for r in &rows {
                leased.push(delivery(r, &q.name, q.id)?);
            }
            if rows.len() < n {
                break;
            }
        }
        Ok(leased)
    }

    /// Locks the row, so the judgement holds until the transaction ends.
    fn lease_row(&mut self, r: &Receipt) -> Result<Option<LeaseRow>> {
        let row = self.query_opt(
            "SELECT state, lease, visible_at, attempts, grp, expires_at FROM deliveries
             WHERE msg_id = $1 AND queue_id = $2 FOR UPDATE",
            &[&r.msg_id, &r.queue_id],
        )?;
        row.map(|row| {
            Ok(LeaseRow {
                state: State::from_i64(row.at(0)?),
                lease: row.at(1)?,
                visible_at: row.at(2)?,
                attempts: row.at(3)?,
                group: row.at(4)?,
                expires_at: row.at(5)?,
            })
        })
        .transpose()
    }

    fn last_message_id(&mut self) -> Result<i64> {
        let row = self.query_opt("SELECT last_value, is_called FROM message_ids", &[])?;
        Ok(match row {
            Some(r) if r.at::<bool>(1)? => r.at(0)?,
            Some(r) => r.at::<i64>(0)? - 1,
            None => 0,
        })
    }

    fn unlease(&mut self, queue: i64, msg: i64) -> Result<bool> {
        let now = self.now;
        let released = self.execute(
            "UPDATE deliveries SET state = 0, visible_at = $3, attempts = greatest(attempts - 1, 0)
             WHERE msg_id = $1 AND queue_id = $2 AND state = 2 AND visible_at > $3",
            &[&msg, &queue, &now],
        )?;
        Ok(released > 0)
    }

    /// One statement for all of them.
    fn queues_by_ids(&mut self, ids: &[i64]) -> Result<Vec<QueueRow>> {
        queues::by_ids(self, ids)
    }
}
