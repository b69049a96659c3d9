//! The statements of the read-only views (`crate::store::ops::inspect`) and
//! of `doctor`'s counts, on SQLite. They run on the read-only connection of
//! [`SqliteStore::open_read_only`] in a deferred transaction: one snapshot,
//! never blocked by a writer (WAL).

use rusqlite::{OptionalExtension, Params, Row};

use super::tx::Tx;
use super::{admin, contracts};
use crate::store::Result;
use crate::store::backend::{
    DeadCols, Done, MessageCols, Ranked, ReadTx, ReplayCols, StoredCols, StoredRow, Timed,
};
use crate::store::checks::Check;
use crate::store::ops::doctor;
use crate::store::types::{QueueRow, SchemaVersion, State};

/// Queue `?1`'s row with the sums of its `rates` buckets after second
/// `?2` (a range of the `rates` primary key).
pub(crate) const STORED: &str = "SELECT q.created_at, q.published_total,
    q.n_ready, q.n_delayed, q.n_leased, q.n_acked, q.n_dead, q.n_held,
    coalesce(sum(r.published), 0), coalesce(sum(r.acked), 0), q.expired_total, q.dropped_total
    FROM queues q LEFT JOIN rates r ON r.queue_id = q.id AND r.second > ?2
    WHERE q.id = ?1";

/// The due rows of queue `?1` at `?2`, counted by state and by whether
/// they die (a lease past its message's TTL, or on its last attempt,
/// `?3`): the due range of `deliveries_waiting`. Delayed messages past
/// their TTL are left to [`EXPIRING`].
pub(crate) const DUE: &str = "SELECT state,
      (?3 > 0 AND attempts >= ?3) OR coalesce(expires_at <= ?2, 0), count(*), min(msg_id)
    FROM deliveries
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
      AND (state = 2 OR expires_at IS NULL OR expires_at > ?2)
    GROUP BY 1, 2";

/// The ready, delayed and held messages of queue `?1` past their TTL at
/// `?2`, counted by state (`deliveries_expiring`).
pub(crate) const EXPIRING: &str = "SELECT state, count(*) FROM deliveries
    WHERE queue_id = ?1 AND expires_at IS NOT NULL AND state IN (0, 1, 5) AND expires_at <= ?2
    GROUP BY 1";

/// The first `?3` ready, delayed and held messages of queue `?1` past
/// their TTL at `?2`, by expiry (`deliveries_expiring`).
pub(crate) const EXPIRED_ROWS: &str = "SELECT msg_id, expires_at FROM deliveries
    WHERE queue_id = ?1 AND expires_at IS NOT NULL AND state IN (0, 1, 5) AND expires_at <= ?2
    ORDER BY expires_at, msg_id LIMIT ?3";

/// The next held message (not past its TTL) of each group of queue `?1`
/// whose head dies at the next claim at `?2`: an expired lease on its last
/// attempt (`?3`) or past its TTL, or a ready or delayed head past its TTL.
pub(crate) const RELEASED_ROWS: &str = "SELECT n.priority, n.msg_id, n.visible_at FROM deliveries d
    JOIN groups g ON g.queue_id = d.queue_id AND g.grp = d.grp AND g.head_id = d.msg_id
    JOIN deliveries n ON n.queue_id = d.queue_id AND n.msg_id = (
        SELECT min(h.msg_id) FROM deliveries h
        WHERE h.queue_id = d.queue_id AND h.grp = d.grp AND h.state = 5
          AND (h.expires_at IS NULL OR h.expires_at > ?2))
    WHERE d.queue_id = ?1 AND d.state IN (1, 2) AND d.visible_at <= ?2
      AND d.state = 2 AND ((?3 > 0 AND d.attempts >= ?3) OR d.expires_at <= ?2)
    UNION ALL
    SELECT n.priority, n.msg_id, n.visible_at FROM deliveries d
    JOIN groups g ON g.queue_id = d.queue_id AND g.grp = d.grp AND g.head_id = d.msg_id
    JOIN deliveries n ON n.queue_id = d.queue_id AND n.msg_id = (
        SELECT min(h.msg_id) FROM deliveries h
        WHERE h.queue_id = d.queue_id AND h.grp = d.grp AND h.state = 5
          AND (h.expires_at IS NULL OR h.expires_at > ?2))
    WHERE d.queue_id = ?1 AND d.expires_at IS NOT NULL AND d.state IN (0, 1, 5)
      AND d.expires_at <= ?2 AND d.state IN (0, 1)";

/// One step of the oldest-ready skip-scan: the first ready entry of queue
/// `?1` below priority `?2` (one seek into `deliveries_ready`).
pub(crate) const OLDEST_READY: &str = "SELECT priority, msg_id FROM deliveries
    WHERE queue_id = ?1 AND state = 0 AND priority < ?2
    ORDER BY priority DESC, msg_id LIMIT 1";

/// Per queue and minute before second `?1`, the last `?2` minutes of
/// rates (a range of the `rates` primary key per queue).
pub(crate) const RATES: &str = "SELECT q.name, (?1 - r.second) / 60, sum(r.published), sum(r.acked)
    FROM queues q JOIN rates r ON r.queue_id = q.id AND r.second > ?1 - ?2 * 60
    GROUP BY 1, 2";

/// The first `?2` ready rows of queue `?1` in claim order, not past their
/// TTL at `?3`.
pub(crate) const READY_ROWS: &str = "SELECT priority, msg_id, visible_at FROM deliveries
    WHERE queue_id = ?1 AND state = 0 AND (expires_at IS NULL OR expires_at > ?3)
    ORDER BY priority DESC, msg_id LIMIT ?2";

/// The due rows of queue `?1` at `?2` that become ready (not the leases
/// that die on their last attempt, `?3`, nor anything past its TTL).
pub(crate) const READY_DUE_ROWS: &str = "SELECT priority, msg_id, visible_at FROM deliveries
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
      AND NOT (state = 2 AND ?3 > 0 AND attempts >= ?3)
      AND (expires_at IS NULL OR expires_at > ?2)";

/// The first `?4` rows of queue `?1` in state `?3` not yet due at `?2`,
/// by due time (not delayed ones past their TTL: a lease holds to its end).
pub(crate) const WAITING_ROWS: &str = "SELECT msg_id, visible_at FROM deliveries
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at > ?2 AND state = ?3
      AND (state = 2 OR expires_at IS NULL OR expires_at > ?2)
    ORDER BY visible_at, msg_id LIMIT ?4";

/// The first `?2` held rows of queue `?1`, by group, not past their TTL at
/// `?3`.
pub(crate) const HELD_ROWS: &str = "SELECT msg_id, visible_at FROM deliveries
    WHERE queue_id = ?1 AND state = 5 AND (expires_at IS NULL OR expires_at > ?3)
    ORDER BY grp, msg_id LIMIT ?2";

/// The first `?4` rows of queue `?1` in state `?2` done after `?3`, by
/// time. (`state = ?2` must come before `state IN (3, 4)`: the other way
/// round, SQLite sorts the whole range instead of walking
/// `deliveries_done` in order.)
pub(crate) const DONE_ROWS: &str = "SELECT msg_id, visible_at, done_at FROM deliveries
    WHERE queue_id = ?1 AND state = ?2 AND state IN (3, 4) AND done_at > ?3
    ORDER BY done_at, msg_id LIMIT ?4";

/// The first `?4` expired leases of queue `?1` at `?2` that die: on their
/// last attempt (`?3`) or past their message's TTL, by due time.
pub(crate) const EXPIRED_LAST: &str = "SELECT msg_id, visible_at FROM deliveries
    WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
      AND state = 2 AND ((?3 > 0 AND attempts >= ?3) OR expires_at <= ?2)
    ORDER BY visible_at, msg_id LIMIT ?4";

/// What a row of a statement reads into: a tuple, column by column.
pub(super) trait Cols: for<'r> TryFrom<&'r Row<'r>, Error = rusqlite::Error> {}

impl<T: for<'r> TryFrom<&'r Row<'r>, Error = rusqlite::Error>> Cols for T {}

impl Tx<'_> {
    /// The rows of one statement.
    pub(super) fn rows<T: Cols>(&self, sql: &str, params: impl Params) -> Result<Vec<T>> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let rows = stmt.query_map(params, |r| T::try_from(r))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The first column of the rows of one statement.
    pub(super) fn column<T>(&self, sql: &str, params: impl Params) -> Result<Vec<T>>
    where
        (T,): Cols,
    {
        Ok(self.rows(sql, params)?.into_iter().map(|(v,)| v).collect())
    }

    /// The one row of a statement, if any.
    pub(super) fn one<T: Cols>(&self, sql: &str, params: impl Params) -> Result<Option<T>> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        Ok(stmt.query_row(params, |r| T::try_from(r)).optional()?)
    }
}

impl ReadTx for Tx<'_> {
    fn stored(&mut self, queue: i64, since: i64) -> Result<StoredCols> {
        Ok(self.one(STORED, (queue, since))?.unwrap_or_default())
    }

    fn due(&mut self, queue: i64, max: i64, now: i64) -> Result<Vec<(i64, bool, i64, i64)>> {
        self.rows(DUE, (queue, now, max))
    }

    fn expiring(&mut self, queue: i64, now: i64) -> Result<Vec<(i64, i64)>> {
        self.rows(EXPIRING, (queue, now))
    }

    fn expired_rows(&mut self, queue: i64, now: i64, n: i64) -> Result<Timed> {
        self.rows(EXPIRED_ROWS, (queue, now, n))
    }

    fn released_rows(&mut self, queue: i64, max: i64, now: i64) -> Result<Ranked> {
        self.rows(RELEASED_ROWS, (queue, now, max))
    }

    /// The skip-scan as a loop: the first entry below the last priority seen.
    fn oldest_ready_id(&mut self, queue: i64) -> Result<Option<i64>> {
        let mut below = i64::MAX;
        let mut oldest: Option<i64> = None;
        while let Some((priority, id)) = self.one::<(i64, i64)>(OLDEST_READY, (queue, below))? {
            oldest = Some(oldest.map_or(id, |o| o.min(id)));
            below = priority;
        }
        Ok(oldest)
    }

    fn published_at(&mut self, id: i64) -> Result<Option<i64>> {
        let sql = "SELECT published_at FROM messages WHERE id = ?1";
        Ok(self.one(sql, [id])?.map(|(t,)| t))
    }

    fn topics_of(&mut self, queue: i64) -> Result<Vec<String>> {
        let sql = "SELECT name FROM queues
            WHERE id IN (SELECT topic_id FROM subscriptions WHERE queue_id = ?1) ORDER BY name";
        self.column(sql, [queue])
    }

    fn schema_in_force(&mut self, queue: i64) -> Result<Option<i64>> {
        contracts::current_version(&self.tx, queue)
    }

    fn latest_schema(&mut self, queue: i64) -> Result<Option<(i64, Option<String>)>> {
        contracts::latest(&self.tx, queue)
    }

    fn schema_versions(&mut self, queue: i64) -> Result<Vec<SchemaVersion>> {
        let sql =
            "SELECT version, created_at, schema FROM schemas WHERE queue_id = ?1 ORDER BY version";
        let rows: Vec<(i64, i64, Option<String>)> = self.rows(sql, [queue])?;
        Ok(rows.into_iter().map(SchemaVersion::from).collect())
    }

    fn last_dead(&mut self, queue: i64) -> Result<Option<DeadCols>> {
        let sql = "SELECT msg_id, done_at, dead_reason, last_error FROM deliveries
            WHERE queue_id = ?1 AND state IN (3, 4) AND state = 4
            ORDER BY done_at DESC LIMIT 1";
        self.one(sql, [queue])
    }

    fn rates(&mut self, second: i64, minutes: i64) -> Result<Vec<(String, i64, i64, i64)>> {
        self.rows(RATES, (second, minutes))
    }

    /// Two statements, each an index walk: `deliveries_ready` up to `n`, then
    /// the due range of `deliveries_waiting`.
    fn ready_rows(&mut self, queue: i64, max: i64, now: i64, n: i64) -> Result<Ranked> {
        let mut rows: Ranked = self.rows(READY_ROWS, (queue, n, now))?;
        rows.extend(self.rows::<(i64, i64, i64)>(READY_DUE_ROWS, (queue, now, max))?);
        Ok(rows)
    }

    fn waiting_rows(&mut self, queue: i64, state: State, now: i64, n: i64) -> Result<Timed> {
        self.rows(WAITING_ROWS, (queue, now, state as i64, n))
    }

    fn held_rows(&mut self, queue: i64, now: i64, n: i64) -> Result<Timed> {
        self.rows(HELD_ROWS, (queue, n, now))
    }

    fn done_rows(&mut self, queue: i64, state: State, after: i64, n: i64) -> Result<Done> {
        self.rows(DONE_ROWS, (queue, state as i64, after, n))
    }

    fn expired_last(&mut self, queue: i64, max: i64, now: i64, n: i64) -> Result<Timed> {
        self.rows(EXPIRED_LAST, (queue, now, max, n))
    }

    fn row(&mut self, queue: i64, id: i64) -> Result<Option<StoredRow>> {
        let sql = "SELECT state, visible_at, attempts, done_at, expires_at FROM deliveries
            WHERE msg_id = ?1 AND queue_id = ?2";
        self.one(sql, (id, queue))
    }

    fn message(&mut self, queue: i64, id: i64) -> Result<Option<MessageCols>> {
        self.one(
            "SELECT d.attempts, d.priority, d.grp, m.key, m.published_at, m.raw, m.headers, m.body,
               d.schema_version,
               coalesce(d.dead_reason,
                 CASE WHEN d.state IN (0, 1, 2, 5) AND d.expires_at <= ?3 THEN 'expired' END),
               d.last_error
             FROM deliveries d JOIN messages m ON m.id = d.msg_id
             WHERE d.msg_id = ?1 AND d.queue_id = ?2",
            (id, queue, self.now),
        )
    }

    fn counted(&mut self) -> Result<Vec<(i64, i64, i64)>> {
        self.rows(doctor::COUNTED, [])
    }

    fn message_checks(&mut self) -> Result<(i64, i64, Option<i64>)> {
        Ok(self.one(doctor::MESSAGE_CHECKS, [])?.unwrap_or_default())
    }

    fn schedule_at_checks(&mut self) -> Result<Vec<crate::store::backend::ScheduleAtCols>> {
        self.rows(&doctor::schedule_at_checks(), [])
    }

    fn lost_schedules(&mut self) -> Result<Vec<(String, i64)>> {
        self.rows(doctor::LOST_SCHEDULES, [])
    }

    fn next_message_id(&mut self) -> Result<i64> {
        let sql = "SELECT value FROM meta WHERE key = 'next_message_id'";
        Ok(self.one(sql, [])?.and_then(|(v,)| v).unwrap_or(0))
    }

    fn done_ids(&mut self, queue: i64, state: State, since: i64, until: i64) -> Result<Vec<i64>> {
        self.column(admin::DONE_IDS, (queue, state as i64, since, until))
    }

    fn replay_rows(&mut self, queue: i64, ids: &[i64], _lock: bool) -> Result<Vec<ReplayCols>> {
        let sql = "SELECT msg_id, state, visible_at, attempts, done_at, priority, grp, dead_reason,
              (SELECT ttl_ms FROM messages WHERE id = ?1), expires_at
            FROM deliveries WHERE msg_id = ?1 AND queue_id = ?2";
        let mut rows = Vec::new();
        for &id in ids {
            rows.extend(self.one(sql, (id, queue))?);
        }
        Ok(rows)
    }

    fn schema_check(&mut self, queue: &QueueRow) -> Result<Option<Check>> {
        crate::store::ops::contracts::check_for(self, &mut Default::default(), queue)
    }

    fn check_stored(&mut self, check: &Check, id: i64) -> Result<()> {
        let sql = "SELECT body, raw FROM messages WHERE id = ?1";
        let (body, raw): (Vec<u8>, bool) = self
            .tx
            .prepare_cached(sql)?
            .query_row([id], |r| r.try_into())?;
        check.stored(id, &body, raw)
    }
}
