//! Read-only views for `peek`, `stats`, `queue list` and `top`.
//!
//! Nothing here writes: these run on the read-only connection of
//! [`SqliteStore::open_read_only`], inside one deferred read transaction each, so they
//! see one consistent snapshot and are never blocked by a writer (WAL).
//!
//! The lazy transitions that writers perform inside every claim (a due delayed
//! message or an expired lease is really ready; an expired lease on the last
//! allowed attempt is really dead) are applied on the fly here, from a range
//! scan of only the due rows of `deliveries_waiting`.
//!
//! # Performance
//!
//! Counts come from the counters in `queues.n_*`, never from counting rows, so
//! `stats` costs the same at a backlog of ten or of a million. The oldest ready
//! message is found by a skip-scan of `deliveries_ready`: one index seek per
//! distinct priority (at most 201). Only the due rows are visited one by one;
//! they are few, because every claim moves them back to ready.

use rusqlite::{Connection, OptionalExtension};

use super::queues::{self, QueueRow};
use crate::store::rules;
use crate::store::views::{
    self, DatabaseInfo, DueSummary, PeekQuery, Peeked, QueueInfo, RateHistory, Released, RowState,
    Section,
};
use crate::store::{Delivery, Receipt, Result, SqliteStore, State, ms, now_ms};

/// The held messages of `q` that its next claim releases (see [`Released`]).
/// One row per expired lease on its last attempt that heads a group: few,
/// as every claim moves them on.
fn released(conn: &Connection, q: &QueueRow, now: i64) -> Result<Vec<Released>> {
    let max = q.settings.max_attempts as i64;
    if max == 0 {
        return Ok(Vec::new());
    }
    let rows = conn
        .prepare_cached(
            "SELECT n.msg_id, n.priority, n.visible_at
             FROM deliveries d
             JOIN groups g ON g.queue_id = d.queue_id AND g.grp = d.grp AND g.head_id = d.msg_id
             JOIN deliveries n ON n.queue_id = d.queue_id AND n.msg_id = (
                 SELECT min(h.msg_id) FROM deliveries h
                 WHERE h.queue_id = d.queue_id AND h.grp = d.grp AND h.state = 5)
             WHERE d.queue_id = ?1 AND d.state IN (1, 2) AND d.visible_at <= ?2
               AND d.state = 2 AND d.attempts >= ?3",
        )?
        .query_map((q.id, now, max), |r| {
            Ok(Released {
                id: r.get(0)?,
                priority: r.get(1)?,
                visible_at: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

impl SqliteStore {
    /// Every queue and topic, sorted by name, as `stats` and `queue list` show them.
    pub fn queue_infos(&self) -> Result<Vec<QueueInfo>> {
        let tx = self.conn.unchecked_transaction()?;
        let now = now_ms();
        let ids: Vec<i64> = tx
            .prepare_cached("SELECT id FROM queues ORDER BY name")?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut infos = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = queues::by_id(&tx, id)? {
                infos.push(info(&tx, row, now)?);
            }
        }
        Ok(infos)
    }

    /// The named queues or topics, in the order given; an unknown name is
    /// [`crate::store::Error::UnknownQueue`].
    pub fn queue_infos_named(&self, names: &[String]) -> Result<Vec<QueueInfo>> {
        let tx = self.conn.unchecked_transaction()?;
        let now = now_ms();
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            let Some(row) = queues::lookup(&tx, name)? else {
                return Err(queues::unknown(&tx, name));
            };
            infos.push(info(&tx, row, now)?);
        }
        Ok(infos)
    }

    /// The database file's sizes, including its free pages.
    pub fn database_info(&self) -> Result<DatabaseInfo> {
        let mut db = DatabaseInfo::of_path(self.path.clone());
        let free: i64 = self
            .conn
            .pragma_query_value(None, "freelist_count", |row| row.get(0))?;
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |row| row.get(0))?;
        db.free_bytes = (free.max(0) * page.max(0)) as u64;
        Ok(db)
    }

    /// Publishes and acks per minute over the last `minutes` minutes (at most
    /// 60: rates are kept for an hour), for every queue and topic that had
    /// any, by name. Names missing from the map had none.
    ///
    /// One statement: for each queue, a range scan of the `rates` primary key
    /// over just the window, so it costs at most 60 rows per queue and minute
    /// shown, whatever the size of the database.
    pub fn rate_histories(
        &self,
        minutes: usize,
    ) -> Result<std::collections::HashMap<String, RateHistory>> {
        let minutes = minutes.clamp(1, 60);
        let now = now_ms() / 1000;
        let mut stmt = self.conn.prepare_cached(
            "SELECT q.name, (?1 - r.second) / 60, sum(r.published), sum(r.acked)
             FROM queues q JOIN rates r ON r.queue_id = q.id AND r.second > ?1 - ?2 * 60
             GROUP BY 1, 2",
        )?;
        let mut rows = stmt.query((now, minutes as i64))?;
        let mut out = std::collections::HashMap::<String, RateHistory>::new();
        while let Some(r) = rows.next()? {
            let (name, ago): (String, i64) = (r.get(0)?, r.get(1)?);
            let Some(slot) = usize::try_from(ago).ok().filter(|a| *a < minutes) else {
                continue;
            };
            let h = out.entry(name).or_insert_with(|| RateHistory {
                published: vec![0; minutes],
                acked: vec![0; minutes],
            });
            h.published[minutes - 1 - slot] += r.get::<_, i64>(2)?;
            h.acked[minutes - 1 - slot] += r.get::<_, i64>(3)?;
        }
        Ok(out)
    }

    /// Up to `query.limit` messages of `queue` in the states asked for, in
    /// delivery order: ready ones as `consume` would deliver them (priority,
    /// then id), then delayed ones (soonest due first, then those held behind
    /// their group, by group and id), then leased ones (soonest lease end
    /// first), then acked and dead ones (earliest done first).
    pub fn peek(&self, queue: &str, query: &PeekQuery) -> Result<Vec<Peeked>> {
        let tx = self.conn.unchecked_transaction()?;
        let q = self.queue_for_peek(&tx, queue)?;
        let now = now_ms();
        let released = released(&tx, &q, now)?;
        let picked = views::pick(query, |section, n| match section {
            Section::Ready => ready_rows(&tx, &q, now, n, &released),
            Section::Delayed => waiting_rows(&tx, &q, State::Delayed, now, n),
            Section::Held => held_rows(&tx, &q, now, n, &released),
            Section::Leased => waiting_rows(&tx, &q, State::Leased, now, n),
            Section::Acked => done_rows(&tx, &q, State::Acked, now, n),
            Section::Dead => done_rows(&tx, &q, State::Dead, now, n),
        })?;
        picked
            .into_iter()
            .map(|(id, st)| load(&tx, &q, id, st))
            .collect()
    }

    /// Message `id` of `queue` in whatever state it is, or `None` if the queue
    /// does not hold it (or retention has removed it).
    pub fn peek_id(&self, queue: &str, id: i64) -> Result<Option<Peeked>> {
        let tx = self.conn.unchecked_transaction()?;
        let q = self.queue_for_peek(&tx, queue)?;
        let now = now_ms();
        let row: Option<(i64, i64, i64, Option<i64>)> = tx
            .prepare_cached(
                "SELECT state, visible_at, attempts, done_at FROM deliveries
                 WHERE msg_id = ?1 AND queue_id = ?2",
            )?
            .query_row((id, q.id), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((state, visible_at, attempts, done_at)) = row else {
            return Ok(None);
        };
        let row = (State::from_i64(state), visible_at, attempts, done_at);
        let st = views::peek_row(&q.settings, row, now, || {
            Ok(released(&tx, &q, now)?.into_iter().find(|r| r.id == id))
        })?;
        st.map(|st| load(&tx, &q, id, st)).transpose()
    }

    /// The queue `peek` looks at: unknown names and topics are errors.
    fn queue_for_peek(&self, conn: &Connection, name: &str) -> Result<QueueRow> {
        match queues::lookup(conn, name)? {
            None => Err(self.unknown_queue(name)),
            Some(row) if row.is_topic => Err(queues::topic_error(conn, row)?),
            Some(row) => Ok(row),
        }
    }
}

/// Counters, rates and the oldest ready message of one queue or topic.
fn info(conn: &Connection, q: QueueRow, now: i64) -> Result<QueueInfo> {
    let (created_at, published_total, stored) = stored_counts(conn, q.id)?;
    let max = q.settings.max_attempts as i64;
    let due = due_summary(conn, q.id, max, now)?;
    let (released_ready, released_oldest) = views::released_summary(&released(conn, &q, now)?, now);
    let counts = views::counts(&stored, &due, released_ready);
    let oldest = [oldest_ready_id(conn, q.id)?, due.oldest_id, released_oldest]
        .into_iter()
        .flatten()
        .min();
    let oldest_ready_age_ms = match oldest {
        Some(id) => published_at(conn, id)?.map(|t| now.saturating_sub(t).max(0)),
        None => None,
    };
    let (published_last_minute, acked_last_minute) = last_minute(conn, q.id, now)?;
    Ok(QueueInfo {
        schema_version: super::contracts::current_version(conn, q.id)?,
        subscribers: names(queues::subscribers(conn, q.id)?),
        topics: topics_of(conn, q.id)?,
        name: q.name,
        is_topic: q.is_topic,
        settings: q.settings,
        created_at,
        counts,
        published_total,
        oldest_ready_age_ms,
        published_last_minute,
        acked_last_minute,
    })
}

fn names(rows: Vec<QueueRow>) -> Vec<String> {
    rows.into_iter().map(|q| q.name).collect()
}

/// `created_at`, `published_total` and the six stored state counters.
fn stored_counts(conn: &Connection, queue: i64) -> Result<(i64, i64, [i64; 6])> {
    Ok(conn
        .prepare_cached(
            "SELECT created_at, published_total, n_ready, n_delayed, n_leased, n_acked, n_dead, n_held
             FROM queues WHERE id = ?1",
        )?
        .query_row([queue], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
            ))
        })?)
}

/// What the due rows of a queue become at its next claim; the second column
/// is `rules::lease_dies`.
fn due_summary(conn: &Connection, queue: i64, max: i64, now: i64) -> Result<DueSummary> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, ?3 > 0 AND attempts >= ?3, count(*), min(msg_id) FROM deliveries
         WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
         GROUP BY 1, 2",
    )?;
    let mut rows = stmt.query((queue, now, max))?;
    let mut due = DueSummary::default();
    while let Some(r) = rows.next()? {
        let state: i64 = r.get(0)?;
        due.add(State::from_i64(state), r.get(1)?, r.get(2)?, r.get(3)?);
    }
    Ok(due)
}

/// The lowest id among the ready rows: the first entry of `deliveries_ready`
/// for each distinct priority, one index seek each (a skip-scan).
fn oldest_ready_id(conn: &Connection, queue: i64) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT priority, msg_id FROM deliveries
         WHERE queue_id = ?1 AND state = 0 AND priority < ?2
         ORDER BY priority DESC, msg_id LIMIT 1",
    )?;
    let mut below = i64::MAX;
    let mut oldest: Option<i64> = None;
    while let Some((priority, id)) = stmt
        .query_row((queue, below), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()?
    {
        oldest = Some(oldest.map_or(id, |o| o.min(id)));
        below = priority;
    }
    Ok(oldest)
}

fn published_at(conn: &Connection, id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT published_at FROM messages WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Publishes and acks counted in the per-second buckets of the last 60 seconds.
fn last_minute(conn: &Connection, queue: i64, now: i64) -> Result<(i64, i64)> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(published), 0), coalesce(sum(acked), 0) FROM rates
             WHERE queue_id = ?1 AND second > ?2",
        )?
        .query_row((queue, now / 1000 - 60), |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// The topics a queue subscribes to, by name.
fn topics_of(conn: &Connection, queue: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM queues WHERE id IN (SELECT topic_id FROM subscriptions WHERE queue_id = ?1)
         ORDER BY name",
    )?;
    let names = stmt
        .query_map([queue], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(names)
}

/// The first `n` ready rows in claim order, including due delayed messages,
/// expired leases and held messages that the next claim will make ready.
fn ready_rows(
    conn: &Connection,
    q: &QueueRow,
    now: i64,
    n: usize,
    released: &[Released],
) -> Result<Vec<(i64, RowState)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut rows: Vec<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT priority, msg_id, visible_at FROM deliveries
             WHERE queue_id = ?1 AND state = 0 ORDER BY priority DESC, msg_id LIMIT ?2",
        )?
        .query_map((q.id, n as i64), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let max = q.settings.max_attempts as i64;
    let mut stmt = conn.prepare_cached(
        "SELECT priority, msg_id, visible_at, state, attempts FROM deliveries
         WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2",
    )?;
    let mut due = stmt.query((q.id, now))?;
    while let Some(r) = due.next()? {
        let state = State::from_i64(r.get(3)?);
        if rules::effective(state, r.get(2)?, r.get(4)?, max, now).0 == State::Ready {
            rows.push((r.get(0)?, r.get(1)?, r.get(2)?));
        }
    }
    Ok(views::ready_rows(rows, released, now, n))
}

/// The first `n` delayed (or leased) rows not yet due, soonest first.
fn waiting_rows(
    conn: &Connection,
    q: &QueueRow,
    state: State,
    now: i64,
    n: usize,
) -> Result<Vec<(i64, RowState)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows = conn
        .prepare_cached(
            "SELECT msg_id, visible_at FROM deliveries
             WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at > ?2 AND state = ?3
             ORDER BY visible_at, msg_id LIMIT ?4",
        )?
        .query_map((q.id, now, state as i64, n as i64), |r| {
            let st = RowState {
                state,
                visible_at: r.get(1)?,
                done_at: None,
            };
            Ok((r.get(0)?, st))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// The first `n` messages held behind an earlier message of their group, by
/// group and id (the order in which each group will release them). Those
/// the next claim releases show as it leaves them: ready ones are left out
/// (they are among the ready rows), delayed ones show as delayed.
fn held_rows(
    conn: &Connection,
    q: &QueueRow,
    now: i64,
    n: usize,
    released: &[Released],
) -> Result<Vec<(i64, RowState)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(n);
    let mut stmt = conn.prepare_cached(
        "SELECT msg_id, visible_at FROM deliveries
         WHERE queue_id = ?1 AND state = 5 ORDER BY grp, msg_id LIMIT ?2",
    )?;
    let mut held = stmt.query((q.id, (n + released.len()) as i64))?;
    while let Some(r) = held.next()?
        && rows.len() < n
    {
        let id: i64 = r.get(0)?;
        if let Some(st) = views::held_row(id, r.get(1)?, released, now) {
            rows.push((id, st));
        }
    }
    Ok(rows)
}

/// The first `n` acked (within retention) or dead rows, earliest done first.
/// Dead ones include expired leases on their last attempt. (`state = ?2` must
/// come before `state IN (3, 4)`: the other way round, SQLite sorts the whole
/// range instead of walking `deliveries_done` in order.)
fn done_rows(
    conn: &Connection,
    q: &QueueRow,
    state: State,
    now: i64,
    n: usize,
) -> Result<Vec<(i64, RowState)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let after = match state {
        State::Acked => now.saturating_sub(ms(q.settings.retention)),
        _ => i64::MIN,
    };
    let rows: Vec<(i64, RowState)> = conn
        .prepare_cached(
            "SELECT msg_id, visible_at, done_at FROM deliveries
             WHERE queue_id = ?1 AND state = ?2 AND state IN (3, 4) AND done_at > ?3
             ORDER BY done_at, msg_id LIMIT ?4",
        )?
        .query_map((q.id, state as i64, after, n as i64), |r| {
            let st = RowState {
                state,
                visible_at: r.get(1)?,
                done_at: r.get(2)?,
            };
            Ok((r.get(0)?, st))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let max = q.settings.max_attempts as i64;
    if state == State::Dead && max > 0 {
        let expired = conn
            .prepare_cached(
                "SELECT msg_id, visible_at FROM deliveries
                 WHERE queue_id = ?1 AND state IN (1, 2) AND visible_at <= ?2
                   AND state = 2 AND attempts >= ?3
                 ORDER BY visible_at, msg_id LIMIT ?4",
            )?
            .query_map((q.id, now, max, n as i64), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        return Ok(views::merge_dead(rows, expired, n));
    }
    Ok(rows)
}

/// The full message for one picked row.
fn load(conn: &Connection, q: &QueueRow, id: i64, st: RowState) -> Result<Peeked> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.attempts, d.priority, d.grp, m.key, m.published_at, m.raw, m.headers, m.body,
           d.schema_version
         FROM deliveries d JOIN messages m ON m.id = d.msg_id
         WHERE d.msg_id = ?1 AND d.queue_id = ?2",
    )?;
    let delivery = stmt.query_row((id, q.id), |r| {
        Ok(Delivery {
            id,
            queue: q.name.clone(),
            receipt: Receipt {
                queue_id: q.id,
                msg_id: id,
                lease: 0,
            },
            attempt: r.get(0)?,
            published_at: r.get(4)?,
            lease_expires_at: 0,
            key: r.get(3)?,
            group: r.get(2)?,
            priority: r.get(1)?,
            headers: r.get(6)?,
            body: r.get(7)?,
            raw: r.get(5)?,
            schema_version: r.get(8)?,
        })
    })?;
    Ok(st.peeked(delivery))
}
