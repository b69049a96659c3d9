//! The SQL of leases (the operations are `ops::lease`): leasing, settling,
//! and the lazy transitions (due delayed messages, expired leases,
//! retention) that writers perform on the way.

use rusqlite::OptionalExtension;

use super::queues::QueueRow;
use super::tx::Tx;
use crate::store::backend::{DUE_WAKE_MS, LeaseTx, Tx as _};
use crate::store::flow::DeadReason;
use crate::store::receipt::Receipt;
use crate::store::rules::{self, LeaseRow};
use crate::store::{Delivery, Result, SqliteStore, State, ms};

/// How many acked messages past retention one write removes at most, so that
/// no single command pays for a large cleanup.
const SWEEP_BATCH: i64 = 512;

/// Leases the next `?2` ready deliveries of queue `?1` until `?3`: a walk
/// of `deliveries_ready` in claim order, no sort.
pub(crate) const LEASE_NEXT: &str =
    "UPDATE deliveries SET state = 2, attempts = attempts + 1, lease = random(), visible_at = ?3
     WHERE queue_id = ?1 AND msg_id IN (
         SELECT msg_id FROM deliveries WHERE queue_id = ?1 AND state = 0
         ORDER BY priority DESC, msg_id LIMIT ?2)
     RETURNING msg_id, attempts, lease, priority, grp, schema_version";

/// The head of group `?2` of queue `?1` (the `groups` primary key).
pub(crate) const GROUP_HEAD: &str = "SELECT head_id FROM groups WHERE queue_id = ?1 AND grp = ?2";

/// The next held message of group `?2` of queue `?1`: one seek into
/// `deliveries_held`.
pub(crate) const GROUP_NEXT: &str = "SELECT msg_id, visible_at FROM deliveries
    WHERE queue_id = ?1 AND grp = ?2 AND state = 5 ORDER BY msg_id LIMIT 1";

/// Whether a delayed message or lease of queue `?1` is due at `?2`
/// (`deliveries_waiting`), and whether a ready, delayed or held message has
/// expired (`deliveries_expiring`): two seeks, in one statement.
pub(crate) const ANY_DUE: &str = "SELECT EXISTS (SELECT 1 FROM deliveries
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2),
  EXISTS (SELECT 1 FROM deliveries
    WHERE queue_id = ?1 AND expires_at IS NOT NULL AND state IN (0, 1, 5) AND expires_at <= ?2)";

/// [`ANY_DUE`] for a queue none of whose deliveries has an expiry: the
/// first seek alone (so the statement a claim compiles is no larger than
/// before flow control).
pub(crate) const ANY_DUE_NO_TTL: &str = "SELECT EXISTS (SELECT 1 FROM deliveries
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2), 0";

/// Kills the expired leases of queue `?1` at `?2` whose message's TTL has
/// passed (reason `expired`) or that had their last attempt (`?3`); returns
/// them with their groups and whether they expired (a lease holds no
/// reason before: replay clears it). Like every finished delivery, they
/// keep no expiry.
pub(crate) const KILL_EXPIRED: &str = "UPDATE deliveries SET state = 4, done_at = visible_at,
      dead_reason = CASE WHEN expires_at <= ?2 THEN 'expired' ELSE dead_reason END,
      expires_at = NULL
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
      AND state = 2 AND (expires_at <= ?2 OR (?3 > 0 AND attempts >= ?3))
    RETURNING msg_id, grp, dead_reason IS 'expired'";

/// Kills the ready, delayed and held messages of queue `?1` whose TTL has
/// passed at `?2`, one statement per state (written out, see
/// `promote_due`), through `deliveries_expiring`; they keep no expiry.
pub(crate) const EXPIRE: [(State, &str); 3] = [
    (
        State::Held,
        "UPDATE deliveries SET state = 4, done_at = expires_at, dead_reason = 'expired',
           expires_at = NULL
         WHERE queue_id = ?1 AND expires_at IS NOT NULL AND state IN (0, 1, 5)
           AND expires_at <= ?2 AND state = 5
         RETURNING msg_id, grp",
    ),
    (
        State::Delayed,
        "UPDATE deliveries SET state = 4, done_at = expires_at, dead_reason = 'expired',
           expires_at = NULL
         WHERE queue_id = ?1 AND expires_at IS NOT NULL AND state IN (0, 1, 5)
           AND expires_at <= ?2 AND state = 1
         RETURNING msg_id, grp",
    ),
    (
        State::Ready,
        "UPDATE deliveries SET state = 4, done_at = expires_at, dead_reason = 'expired',
           expires_at = NULL
         WHERE queue_id = ?1 AND expires_at IS NOT NULL AND state IN (0, 1, 5)
           AND expires_at <= ?2 AND state = 0
         RETURNING msg_id, grp",
    ),
];

/// Makes the due delayed messages of queue `?1` ready at `?2`.
pub(crate) const PROMOTE_DELAYED: &str = "UPDATE deliveries SET state = 0
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2 AND state = 1";

/// Makes the expired leases of queue `?1` ready at `?2`.
pub(crate) const PROMOTE_LEASED: &str = "UPDATE deliveries SET state = 0
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2 AND state = 2";

/// Whether an acked message of queue `?1` is past retention (`?2`, the
/// cutoff), through `deliveries_done`.
pub(crate) const ANY_SWEEPABLE: &str = "SELECT EXISTS (SELECT 1 FROM deliveries
    WHERE queue_id = ?1 AND state IN (3, 4) AND state = 3 AND done_at <= ?2)";

/// Removes up to `?3` acked messages of queue `?1` past the cutoff `?2`.
pub(crate) const SWEEP: &str = "DELETE FROM deliveries WHERE queue_id = ?1 AND msg_id IN (
        SELECT msg_id FROM deliveries
        WHERE queue_id = ?1 AND state IN (3, 4) AND state = 3 AND done_at <= ?2
        LIMIT ?3)
    RETURNING msg_id";

impl SqliteStore {
    /// When the next delayed message or lease of `queue` comes due, or the
    /// next occurrence of a schedule that feeds it (ms since the epoch), so
    /// a waiting consumer knows when to look again.
    pub fn next_due(&self, queue: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT min(at) FROM (
                     SELECT min(visible_at) AS at FROM deliveries
                     WHERE queue_id = (SELECT id FROM queues WHERE name = ?1) AND state IN (1, 2)
                     UNION ALL
                     SELECT schedule_at FROM queues WHERE name = ?1 AND schedule_at > ?2)",
            )?
            .query_row((queue, crate::store::now_ms() - DUE_WAKE_MS), |row| {
                row.get(0)
            })?)
    }
}

impl LeaseTx for Tx<'_> {
    // Writers take turns on the whole database: the row as read holds.
    fn lock_queue(&mut self, id: i64) -> Result<Option<QueueRow>> {
        self.queue_by_id(id)
    }

    fn set_rate_state(&mut self, queue: i64, full_at: i64) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE queues SET rate_full_at = ?2 WHERE id = ?1")?
            .execute((queue, full_at))?;
        Ok(())
    }

    fn note_failure(
        &mut self,
        queue: i64,
        msg: i64,
        reason: Option<DeadReason>,
        error: Option<&str>,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE deliveries SET dead_reason = coalesce(?3, dead_reason),
                   last_error = coalesce(?4, last_error) WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .execute((msg, queue, reason.map(DeadReason::name), error))?;
        Ok(())
    }

    /// Cost is one index range scan over just the due rows.
    fn promote_due(&mut self, q: &QueueRow) -> Result<()> {
        // Nothing is due most of the time: one cheap probe saves preparing the
        // updates below, which a one-message command would pay for nothing.
        let probe = if q.may_expire {
            ANY_DUE
        } else {
            ANY_DUE_NO_TTL
        };
        let (due, expiring): (bool, bool) = self
            .tx
            .prepare_cached(probe)?
            .query_row((q.id, self.now), |row| Ok((row.get(0)?, row.get(1)?)))?;
        // The transitions of `rules::effective`, in SQL. Messages past their
        // TTL die first, held ones before the heads whose death releases
        // them, so that no group release makes an expired message ready.
        if expiring {
            for (from, sql) in EXPIRE {
                let died: Vec<(i64, Option<String>)> = self
                    .tx
                    .prepare_cached(sql)?
                    .query_map((q.id, self.now), |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let n = died.len() as i64;
                self.counts
                    .moved_many(q.id, Some(from), Some(State::Dead), n);
                self.counts.died(q.id, DeadReason::Expired, n);
                for (msg, group) in died {
                    if let Some(group) = group.filter(|_| from != State::Held) {
                        self.release_group(q.id, &group, msg)?;
                    }
                }
            }
        }
        if !due {
            return Ok(());
        }
        // An expired lease dies when its message's TTL has passed or
        // `rules::lease_dies` says so, the other due rows become ready.
        let max = q.settings.max_attempts as i64;
        let died: Vec<(i64, Option<String>, bool)> = self
            .tx
            .prepare_cached(KILL_EXPIRED)?
            .query_map((q.id, self.now, max), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let n = died.len() as i64;
        let expired = died.iter().filter(|d| d.2).count() as i64;
        self.counts
            .moved_many(q.id, Some(State::Leased), Some(State::Dead), n);
        self.counts.died(q.id, DeadReason::Expired, expired);
        for (msg, group, _) in died {
            if let Some(group) = group {
                self.release_group(q.id, &group, msg)?;
            }
        }
        // The state is written out, not bound: a bound value that decides whether
        // a partial index applies makes SQLite prepare the statement again
        // whenever the value changes.
        for (from, sql) in [
            (State::Delayed, PROMOTE_DELAYED),
            (State::Leased, PROMOTE_LEASED),
        ] {
            let n = self.tx.prepare_cached(sql)?.execute((q.id, self.now))?;
            self.counts
                .moved_many(q.id, Some(from), Some(State::Ready), n as i64);
        }
        Ok(())
    }

    /// Removes up to [`SWEEP_BATCH`] acked messages of `q` past retention.
    fn housekeeping(&mut self, q: &QueueRow) -> Result<()> {
        // Messages acked in this transaction are not past retention yet (a
        // retention of 0 deletes at the ack), so a queue that held no acked
        // message when its row was read has nothing to sweep.
        if q.acked == 0 {
            return Ok(());
        }
        let cutoff = self.now.saturating_sub(ms(q.settings.retention));
        let due: bool = self
            .tx
            .prepare_cached(ANY_SWEEPABLE)?
            .query_row((q.id, cutoff), |row| row.get(0))?;
        if !due {
            return Ok(());
        }
        let removed: Vec<i64> = self
            .tx
            .prepare_cached(SWEEP)?
            .query_map((q.id, cutoff, SWEEP_BATCH), |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        self.counts
            .moved_many(q.id, Some(State::Acked), None, removed.len() as i64);
        self.delete_orphans(&removed)
    }

    fn set_state(&mut self, queue: i64, msg: i64, state: State, visible_at: i64) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, visible_at = ?4 WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .execute((msg, queue, state as i64, visible_at))?;
        Ok(())
    }

    /// A finished delivery keeps no expiry (it leaves `deliveries_expiring`).
    /// Only where one may be set does the statement write the column: one
    /// that leaves it alone leaves the index alone.
    fn mark_done(&mut self, q: &QueueRow, msg: i64, to: State) -> Result<()> {
        let sql = if q.may_expire {
            "UPDATE deliveries SET state = ?3, done_at = ?4, expires_at = NULL
             WHERE msg_id = ?1 AND queue_id = ?2"
        } else {
            "UPDATE deliveries SET state = ?3, done_at = ?4 WHERE msg_id = ?1 AND queue_id = ?2"
        };
        self.tx
            .prepare_cached(sql)?
            .execute((msg, q.id, to as i64, self.now))?;
        Ok(())
    }

    /// One statement that judges and ends a delivery, run once per receipt:
    /// in SQLite a prepared statement costs little to run again, so this is
    /// the set-based form without building a table of the receipts (a
    /// `json_each` of them would add its parsing). The `WHERE` is
    /// `judge_receipt`'s `Held`, a primary key seek. Deliveries in a group
    /// are left to the caller: their group is needed, and `RETURNING` it
    /// made SQLite build a result table and a statement journal for every
    /// run, which cost more than the lookup it saves.
    fn ack_held(
        &mut self,
        q: &QueueRow,
        receipts: &[Receipt],
    ) -> Result<Vec<(Receipt, Option<String>)>> {
        const HELD: &str = "WHERE msg_id = ?1 AND queue_id = ?2 AND lease = ?3 AND state = 2
             AND visible_at > ?4 AND grp IS NULL";
        let sql = if q.settings.retention.is_zero() {
            format!("DELETE FROM deliveries {HELD}")
        } else if q.may_expire {
            format!("UPDATE deliveries SET state = 3, done_at = ?4, expires_at = NULL {HELD}")
        } else {
            // Leaves `expires_at`, and so `deliveries_expiring`, alone.
            format!("UPDATE deliveries SET state = 3, done_at = ?4 {HELD}")
        };
        let mut statement = self.tx.prepare_cached(&sql)?;
        let mut ended = Vec::with_capacity(receipts.len());
        for r in receipts {
            if statement.execute((r.msg_id, r.queue_id, r.lease, self.now))? > 0 {
                ended.push((*r, None));
            }
        }
        Ok(ended)
    }

    fn delete_delivery(&mut self, queue: i64, msg: i64) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM deliveries WHERE msg_id = ?1 AND queue_id = ?2")?
            .execute((msg, queue))?;
        Ok(())
    }

    fn delete_orphans(&mut self, msgs: &[i64]) -> Result<()> {
        for &msg in msgs {
            let deleted = self
                .tx
                .prepare_cached(
                    "DELETE FROM messages WHERE id = ?1
                       AND NOT EXISTS (SELECT 1 FROM deliveries WHERE msg_id = ?1)",
                )?
                .execute([msg])?;
            if deleted > 0 {
                self.freed_pages();
            }
        }
        Ok(())
    }

    fn release_group(&mut self, queue: i64, group: &str, finished: i64) -> Result<()> {
        let head: Option<i64> = self
            .tx
            .prepare_cached(GROUP_HEAD)?
            .query_row((queue, group), |row| row.get(0))
            .optional()?;
        if head != Some(finished) {
            return Ok(());
        }
        let next: Option<(i64, i64)> = self
            .tx
            .prepare_cached(GROUP_NEXT)?
            .query_row((queue, group), |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((next_id, visible_at)) = next else {
            self.tx
                .prepare_cached("DELETE FROM groups WHERE queue_id = ?1 AND grp = ?2")?
                .execute((queue, group))?;
            return Ok(());
        };
        let state = rules::released_state(visible_at, self.now);
        self.set_state(queue, next_id, state, visible_at)?;
        self.tx
            .prepare_cached("UPDATE groups SET head_id = ?3 WHERE queue_id = ?1 AND grp = ?2")?
            .execute((queue, group, next_id))?;
        self.counts.moved(queue, Some(State::Held), Some(state));
        Ok(())
    }

    /// Groups are released at once here: none is left waiting.
    fn release_groups(&mut self) -> Result<()> {
        Ok(())
    }

    /// The lease token is SQLite's `random()`: the bundled SQLite draws it from
    /// a ChaCha20 generator keyed from the operating system (`/dev/urandom`, by
    /// the unix VFS), so it is as unguessable as [`crate::store::receipt::new_leases`], whose tokens
    /// PostgreSQL binds. One statement leases the whole batch; a token bound per
    /// row from Rust cost a third more instructions for `consume -n 100`.
    fn lease_next(&mut self, q: &QueueRow, max: usize, lease_end: i64) -> Result<Vec<Delivery>> {
        let mut leased = self
            .tx
            .prepare_cached(LEASE_NEXT)?
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
        let mut message = self.tx.prepare_cached(
            "SELECT key, published_at, raw, headers, body FROM messages WHERE id = ?1",
        )?;
        for d in &mut leased {
            (d.key, d.published_at, d.raw, d.headers, d.body) =
                message.query_row([d.id], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })?;
        }
        Ok(leased)
    }

    fn lease_row(&mut self, r: &Receipt) -> Result<Option<LeaseRow>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT state, lease, visible_at, attempts, grp, expires_at FROM deliveries
                 WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .query_row((r.msg_id, r.queue_id), |row| {
                Ok(LeaseRow {
                    state: State::from_i64(row.get(0)?),
                    lease: row.get(1)?,
                    visible_at: row.get(2)?,
                    attempts: row.get(3)?,
                    group: row.get(4)?,
                    expires_at: row.get(5)?,
                })
            })
            .optional()?)
    }

    fn last_message_id(&mut self) -> Result<i64> {
        let next: i64 = self
            .tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'next_message_id'")?
            .query_row([], |row| row.get(0))?;
        Ok(next - 1)
    }

    fn unlease(&mut self, queue: i64, msg: i64) -> Result<bool> {
        let released = self
            .tx
            .prepare_cached(
                "UPDATE deliveries SET state = 0, visible_at = ?3, attempts = max(attempts - 1, 0)
                 WHERE msg_id = ?1 AND queue_id = ?2 AND state = 2 AND visible_at > ?3",
            )?
            .execute((msg, queue, self.now))?;
        Ok(released > 0)
    }
}
