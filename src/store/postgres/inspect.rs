//! The statements of the read-only views (`crate::store::ops::inspect`) and
//! of `doctor`'s counts, on PostgreSQL, each view in one REPEATABLE READ
//! READ ONLY transaction (one snapshot, never blocked by writers).
//!
//! Counts are the sums of the queue's `stats` deltas (a few thousand rows at
//! most, see [`super::lease::housekeeping`]), never a count of deliveries.

use postgres::Row;
use postgres::types::{FromSql, ToSql};

use super::queues::QueueRow;
use super::tx::Tx;
use super::{RowExt, contracts};
use crate::store::backend::{
    DeadCols, Done, MessageCols, Ranked, ReadTx, ReplayCols, StoredCols, StoredRow, Timed,
};
use crate::store::checks::Check;
use crate::store::error::Result;
use crate::store::ops::doctor;
use crate::store::types::{SchemaVersion, State};

/// What a row of a statement reads into: a tuple, column by column.
pub(super) trait Cols: Sized {
    fn from_row(r: &Row) -> Result<Self>;
}

macro_rules! tuple_cols {
    ($($t:ident $i:tt),+) => {
        impl<$($t: for<'a> FromSql<'a>),+> Cols for ($($t,)+) {
            fn from_row(r: &Row) -> Result<Self> {
                Ok(($(r.at::<$t>($i)?,)+))
            }
        }
    };
}

tuple_cols!(A 0);
tuple_cols!(A 0, B 1);
tuple_cols!(A 0, B 1, C 2);
tuple_cols!(A 0, B 1, C 2, D 3);
tuple_cols!(A 0, B 1, C 2, D 3, E 4);
tuple_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);

pub(super) type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl Tx<'_> {
    /// The rows of one statement.
    pub(super) fn rows<T: Cols>(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(T::from_row).collect()
    }

    /// The first column of the rows of one statement.
    pub(super) fn column<T>(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<T>>
    where
        (T,): Cols,
    {
        Ok(self.rows(sql, params)?.into_iter().map(|(v,)| v).collect())
    }

    /// The one row of a statement, if any.
    pub(super) fn one<T: Cols>(&mut self, sql: &str, params: Params<'_>) -> Result<Option<T>> {
        self.query_opt(sql, params)?
            .as_ref()
            .map(T::from_row)
            .transpose()
    }
}

impl ReadTx for Tx<'_> {
    /// The sums of the queue's `stats` rows, with its `created_at`.
    fn stored(&mut self, queue: i64, since: i64) -> Result<StoredCols> {
        let sums = self.one(
            "SELECT coalesce((SELECT created_at FROM queues WHERE id = $1), 0)::bigint,
                    coalesce(sum(published), 0)::bigint,
                    coalesce(sum(n_ready), 0)::bigint, coalesce(sum(n_delayed), 0)::bigint,
                    coalesce(sum(n_leased), 0)::bigint, coalesce(sum(n_acked), 0)::bigint,
                    coalesce(sum(n_dead), 0)::bigint, coalesce(sum(n_held), 0)::bigint,
                    coalesce(sum(published) FILTER (WHERE second > $2), 0)::bigint,
                    coalesce(sum(acked) FILTER (WHERE second > $2), 0)::bigint,
                    coalesce(sum(expired), 0)::bigint, coalesce(sum(dropped), 0)::bigint
             FROM stats WHERE queue_id = $1",
            &[&queue, &since],
        )?;
        Ok(sums.unwrap_or_default())
    }

    fn due(&mut self, queue: i64, max: i64, now: i64) -> Result<Vec<(i64, bool, i64, i64)>> {
        self.rows(
            "SELECT state,
                    ($3::bigint > 0 AND attempts >= $3::bigint) OR coalesce(expires_at <= $2, false),
                    count(*), min(msg_id)
             FROM deliveries
             WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $2
               AND (state = 2 OR expires_at IS NULL OR expires_at > $2)
             GROUP BY 1, 2",
            &[&queue, &now, &max],
        )
    }

    fn expiring(&mut self, queue: i64, now: i64) -> Result<Vec<(i64, i64)>> {
        self.rows(
            "SELECT state, count(*) FROM deliveries
             WHERE queue_id = $1 AND expires_at IS NOT NULL AND state IN (0, 1, 5)
               AND expires_at <= $2
             GROUP BY 1",
            &[&queue, &now],
        )
    }

    fn expired_rows(&mut self, queue: i64, now: i64, n: i64) -> Result<Timed> {
        self.rows(
            "SELECT msg_id, expires_at FROM deliveries
             WHERE queue_id = $1 AND expires_at IS NOT NULL AND state IN (0, 1, 5)
               AND expires_at <= $2
             ORDER BY expires_at, msg_id LIMIT $3",
            &[&queue, &now, &n],
        )
    }

    fn released_rows(&mut self, queue: i64, max: i64, now: i64) -> Result<Ranked> {
        self.rows(
            "SELECT n.priority, n.msg_id, n.visible_at
             FROM deliveries d
             JOIN group_heads g ON g.queue_id = d.queue_id AND g.grp = d.grp AND g.head_id = d.msg_id
             JOIN deliveries n ON n.queue_id = d.queue_id AND n.msg_id = (
                 SELECT min(h.msg_id) FROM deliveries h
                 WHERE h.queue_id = d.queue_id AND h.grp = d.grp AND h.state = 5
                   AND (h.expires_at IS NULL OR h.expires_at > $2))
             WHERE d.queue_id = $1 AND d.state IN (1, 2) AND d.visible_at <= $2
               AND d.state = 2 AND (($3::bigint > 0 AND d.attempts >= $3::bigint)
                                    OR d.expires_at <= $2)
             UNION ALL
             SELECT n.priority, n.msg_id, n.visible_at
             FROM deliveries d
             JOIN group_heads g ON g.queue_id = d.queue_id AND g.grp = d.grp AND g.head_id = d.msg_id
             JOIN deliveries n ON n.queue_id = d.queue_id AND n.msg_id = (
                 SELECT min(h.msg_id) FROM deliveries h
                 WHERE h.queue_id = d.queue_id AND h.grp = d.grp AND h.state = 5
                   AND (h.expires_at IS NULL OR h.expires_at > $2))
             WHERE d.queue_id = $1 AND d.expires_at IS NOT NULL AND d.state IN (0, 1, 5)
               AND d.expires_at <= $2 AND d.state IN (0, 1)",
            &[&queue, &now, &max],
        )
    }

    /// The skip-scan in one recursive statement.
    fn oldest_ready_id(&mut self, queue: i64) -> Result<Option<i64>> {
        let oldest = self.one::<(Option<i64>,)>(
            "WITH RECURSIVE p AS (
                 (SELECT priority, msg_id FROM deliveries WHERE queue_id = $1 AND state = 0
                  ORDER BY priority DESC, msg_id LIMIT 1)
                 UNION ALL
                 SELECT n.priority, n.msg_id FROM p, LATERAL (
                     SELECT priority, msg_id FROM deliveries
                     WHERE queue_id = $1 AND state = 0 AND priority < p.priority
                     ORDER BY priority DESC, msg_id LIMIT 1) n
             )
             SELECT min(msg_id) FROM p",
            &[&queue],
        )?;
        Ok(oldest.and_then(|(id,)| id))
    }

    fn published_at(&mut self, id: i64) -> Result<Option<i64>> {
        let sql = "SELECT published_at FROM messages WHERE id = $1";
        Ok(self.one(sql, &[&id])?.map(|(t,)| t))
    }

    fn topics_of(&mut self, queue: i64) -> Result<Vec<String>> {
        let sql = "SELECT name FROM queues
            WHERE id IN (SELECT topic_id FROM subscriptions WHERE queue_id = $1) ORDER BY name";
        self.column(sql, &[&queue])
    }

    fn schema_in_force(&mut self, queue: i64) -> Result<Option<i64>> {
        contracts::current_version(self, queue)
    }

    fn latest_schema(&mut self, queue: i64) -> Result<Option<(i64, Option<String>)>> {
        contracts::latest(self, queue)
    }

    fn schema_versions(&mut self, queue: i64) -> Result<Vec<SchemaVersion>> {
        let sql =
            "SELECT version, created_at, schema FROM schemas WHERE queue_id = $1 ORDER BY version";
        let rows: Vec<(i64, i64, Option<String>)> = self.rows(sql, &[&queue])?;
        Ok(rows.into_iter().map(SchemaVersion::from).collect())
    }

    fn last_dead(&mut self, queue: i64) -> Result<Option<DeadCols>> {
        let sql = "SELECT msg_id, done_at, dead_reason, last_error FROM deliveries
            WHERE queue_id = $1 AND state IN (3, 4) AND state = 4
            ORDER BY done_at DESC LIMIT 1";
        self.one(sql, &[&queue])
    }

    fn rates(&mut self, second: i64, minutes: i64) -> Result<Vec<(String, i64, i64, i64)>> {
        self.rows(
            "SELECT q.name, ($1::bigint - s.second) / 60, sum(s.published)::bigint, sum(s.acked)::bigint
             FROM queues q JOIN stats s ON s.queue_id = q.id AND s.second > $1::bigint - $2::bigint * 60
             GROUP BY 1, 2",
            &[&second, &minutes],
        )
    }

    /// One statement: the ready rows up to `n`, and the due rows that
    /// `rules::effective` reads as ready (the `NOT (…)` leaves out the
    /// leases that `rules::lease_dies` kills), up to `n` of both together.
    fn ready_rows(&mut self, queue: i64, max: i64, now: i64, n: i64) -> Result<Ranked> {
        self.rows(
            "(SELECT priority, msg_id, visible_at FROM deliveries
              WHERE queue_id = $1 AND state = 0 AND (expires_at IS NULL OR expires_at > $3)
              ORDER BY priority DESC, msg_id LIMIT $2)
             UNION ALL
             (SELECT priority, msg_id, visible_at FROM deliveries
              WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $3
                AND NOT (state = 2 AND $4::bigint > 0 AND attempts >= $4::bigint)
                AND (expires_at IS NULL OR expires_at > $3))
             ORDER BY priority DESC, msg_id LIMIT $2",
            &[&queue, &n, &now, &max],
        )
    }

    fn waiting_rows(&mut self, queue: i64, state: State, now: i64, n: i64) -> Result<Timed> {
        self.rows(
            "SELECT msg_id, visible_at FROM deliveries
             WHERE queue_id = $1 AND state IN (1, 2) AND visible_at > $2 AND state = $3
               AND (state = 2 OR expires_at IS NULL OR expires_at > $2)
             ORDER BY visible_at, msg_id LIMIT $4",
            &[&queue, &now, &(state as i64), &n],
        )
    }

    fn held_rows(&mut self, queue: i64, now: i64, n: i64) -> Result<Timed> {
        self.rows(
            "SELECT msg_id, visible_at FROM deliveries
             WHERE queue_id = $1 AND state = 5 AND (expires_at IS NULL OR expires_at > $3)
             ORDER BY grp, msg_id LIMIT $2",
            &[&queue, &n, &now],
        )
    }

    fn done_rows(&mut self, queue: i64, state: State, after: i64, n: i64) -> Result<Done> {
        self.rows(
            "SELECT msg_id, visible_at, done_at FROM deliveries
             WHERE queue_id = $1 AND state IN (3, 4) AND state = $2 AND done_at > $3
             ORDER BY done_at, msg_id LIMIT $4",
            &[&queue, &(state as i64), &after, &n],
        )
    }

    fn expired_last(&mut self, queue: i64, max: i64, now: i64, n: i64) -> Result<Timed> {
        self.rows(
            "SELECT msg_id, visible_at FROM deliveries
             WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $2
               AND state = 2 AND (($3::bigint > 0 AND attempts >= $3::bigint) OR expires_at <= $2)
             ORDER BY visible_at, msg_id LIMIT $4",
            &[&queue, &now, &max, &n],
        )
    }

    fn row(&mut self, queue: i64, id: i64) -> Result<Option<StoredRow>> {
        let sql = "SELECT state, visible_at, attempts, done_at, expires_at FROM deliveries
            WHERE msg_id = $1 AND queue_id = $2";
        self.one(sql, &[&id, &queue])
    }

    fn message(&mut self, queue: i64, id: i64) -> Result<Option<MessageCols>> {
        let now = self.now;
        self.one(
            "SELECT d.attempts, d.priority, d.grp, m.key, m.published_at, m.raw, m.headers, m.body,
                    d.schema_version,
                    coalesce(d.dead_reason,
                      CASE WHEN d.state IN (0, 1, 2, 5) AND d.expires_at <= $3 THEN 'expired' END),
                    d.last_error
             FROM deliveries d JOIN messages m ON m.id = d.msg_id
             WHERE d.msg_id = $1 AND d.queue_id = $2",
            &[&id, &queue, &now],
        )
    }

    fn counted(&mut self) -> Result<Vec<(i64, i64, i64)>> {
        self.rows(doctor::COUNTED, &[])
    }

    fn message_checks(&mut self) -> Result<(i64, i64, Option<i64>)> {
        Ok(self.one(doctor::MESSAGE_CHECKS, &[])?.unwrap_or_default())
    }

    fn schedule_at_checks(&mut self) -> Result<Vec<crate::store::backend::ScheduleAtCols>> {
        self.rows(&doctor::schedule_at_checks(), &[])
    }

    fn lost_schedules(&mut self) -> Result<Vec<(String, i64)>> {
        self.rows(doctor::LOST_SCHEDULES, &[])
    }

    /// The next value `message_ids` hands out.
    fn next_message_id(&mut self) -> Result<i64> {
        let sql = "SELECT last_value, is_called FROM message_ids";
        let next = self.one::<(i64, bool)>(sql, &[])?;
        Ok(next.map_or(1, |(last, called)| last + i64::from(called)))
    }

    fn done_ids(&mut self, queue: i64, state: State, since: i64, until: i64) -> Result<Vec<i64>> {
        let sql = "SELECT msg_id FROM deliveries
            WHERE queue_id = $1 AND state IN (3, 4) AND state = $2 AND done_at >= $3 AND done_at < $4";
        self.column(sql, &[&queue, &(state as i64), &since, &until])
    }

    fn replay_rows(&mut self, queue: i64, ids: &[i64], lock: bool) -> Result<Vec<ReplayCols>> {
        let sql = if lock {
            "SELECT msg_id, state, visible_at, attempts, done_at, priority, grp, dead_reason, ttl_ms,
                    expires_at
             FROM deliveries
             WHERE queue_id = $1 AND msg_id = ANY($2) ORDER BY msg_id FOR UPDATE"
        } else {
            "SELECT msg_id, state, visible_at, attempts, done_at, priority, grp, dead_reason, ttl_ms,
                    expires_at
             FROM deliveries
             WHERE queue_id = $1 AND msg_id = ANY($2) ORDER BY msg_id"
        };
        self.rows(sql, &[&queue, &ids])
    }

    fn schema_check(&mut self, queue: &QueueRow) -> Result<Option<Check>> {
        let mut cache = std::mem::take(&mut self.contracts);
        let check = crate::store::ops::contracts::check_for(self, &mut cache, queue);
        self.contracts = cache;
        check
    }

    fn check_stored(&mut self, check: &Check, id: i64) -> Result<()> {
        contracts::check_stored(self, check, id)
    }
}
