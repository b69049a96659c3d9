//! Read-only views for `peek`, `stats`, `queue list` and `top`, each in one
//! REPEATABLE READ READ ONLY transaction (one snapshot, never blocked by
//! writers), with the lazy transitions of a claim applied on the fly as in
//! `crate::store` (a due delayed message or an expired lease is ready; an
//! expired lease on its last attempt is dead).
//!
//! Counts are the sums of the queue's `stats` deltas (a few thousand rows at
//! most, see [`super::lease::housekeeping`]), never a count of deliveries.

use std::collections::HashMap;

use postgres::Row;

use super::queues::{self, Found, QueueRow};
use super::tx::Tx;
use super::{Conn, PostgresStore, RowExt};
use crate::store::error::Result;
use crate::store::receipt::Receipt;
use crate::store::types::{Delivery, State, ms};
use crate::store::views::{
    self, DatabaseInfo, DueSummary, PeekQuery, Peeked, QueueInfo, RateHistory, Released, RowState,
    Section,
};

/// The held messages of `q` that its next claim releases (see [`Released`]).
fn released(conn: &mut Conn, q: &QueueRow, now: i64) -> Result<Vec<Released>> {
    let max = i64::from(q.settings.max_attempts);
    if max == 0 {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        "SELECT n.msg_id, n.priority, n.visible_at
         FROM deliveries d
         JOIN group_heads g ON g.queue_id = d.queue_id AND g.grp = d.grp AND g.head_id = d.msg_id
         JOIN deliveries n ON n.queue_id = d.queue_id AND n.msg_id = (
             SELECT min(h.msg_id) FROM deliveries h
             WHERE h.queue_id = d.queue_id AND h.grp = d.grp AND h.state = 5)
         WHERE d.queue_id = $1 AND d.state IN (1, 2) AND d.visible_at <= $2
           AND d.state = 2 AND d.attempts >= $3",
        &[&q.id, &now, &max],
    )?;
    rows.iter()
        .map(|r| {
            Ok(Released {
                id: r.at(0)?,
                priority: r.at(1)?,
                visible_at: r.at(2)?,
            })
        })
        .collect()
}

impl PostgresStore {
    /// Every queue and topic, sorted by name, as `stats` and `queue list` show them.
    pub fn queue_infos(&self) -> Result<Vec<QueueInfo>> {
        let mut conn = self.conn.borrow_mut();
        let mut tx = Tx::read(&mut conn)?;
        let names: Vec<String> = tx
            .query("SELECT name FROM queues ORDER BY name", &[])?
            .iter()
            .map(|r| r.at(0))
            .collect::<Result<_>>()?;
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            if let Some(row) = queues::lookup(&mut tx, &name)? {
                infos.push(info(&mut tx, row)?);
            }
        }
        tx.commit()?;
        Ok(infos)
    }

    /// The named queues or topics, in the order given; an unknown name is
    /// [`crate::store::Error::UnknownQueue`].
    pub fn queue_infos_named(&self, names: &[String]) -> Result<Vec<QueueInfo>> {
        let mut missing = None;
        let mut infos = Vec::with_capacity(names.len());
        {
            let mut conn = self.conn.borrow_mut();
            let mut tx = Tx::read(&mut conn)?;
            for name in names {
                let Some(row) = queues::lookup(&mut tx, name)? else {
                    missing = Some(name);
                    break;
                };
                infos.push(info(&mut tx, row)?);
            }
        }
        match missing {
            Some(name) => Err(self.unknown_queue(name)),
            None => Ok(infos),
        }
    }

    /// The database as `stats` shows it: `path` is the URL (without the
    /// password) and `size_bytes` the size of spool's tables and indexes in
    /// its schema; PostgreSQL has no WAL file or free pages of spool's own,
    /// so those are 0.
    pub fn database_info(&self) -> Result<DatabaseInfo> {
        let mut conn = self.conn.borrow_mut();
        let schema = conn.target.schema.clone();
        let size: i64 = conn
            .query_opt(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'S')",
                &[&schema],
            )?
            .map(|r| r.at(0))
            .transpose()?
            .unwrap_or(0);
        Ok(DatabaseInfo {
            path: conn.target.display.clone().into(),
            size_bytes: size.max(0) as u64,
            wal_bytes: 0,
            free_bytes: 0,
        })
    }

    /// Publishes and acks per minute over the last `minutes` minutes (at most
    /// 60), for every queue and topic that had any, by name.
    pub fn rate_histories(&self, minutes: usize) -> Result<HashMap<String, RateHistory>> {
        let minutes = minutes.clamp(1, 60);
        let mut conn = self.conn.borrow_mut();
        let mut tx = Tx::read(&mut conn)?;
        let now = tx.now.div_euclid(1000);
        let rows = tx.query(
            "SELECT q.name, ($1::bigint - s.second) / 60, sum(s.published)::bigint, sum(s.acked)::bigint
             FROM queues q JOIN stats s ON s.queue_id = q.id AND s.second > $1::bigint - $2::bigint * 60
             GROUP BY 1, 2",
            &[&now, &(minutes as i64)],
        )?;
        tx.commit()?;
        let mut out = HashMap::<String, RateHistory>::new();
        for r in &rows {
            let (name, ago): (String, i64) = (r.at(0)?, r.at(1)?);
            let Some(slot) = usize::try_from(ago).ok().filter(|a| *a < minutes) else {
                continue;
            };
            let h = out.entry(name).or_insert_with(|| RateHistory {
                published: vec![0; minutes],
                acked: vec![0; minutes],
            });
            h.published[minutes - 1 - slot] += r.at::<i64>(2)?;
            h.acked[minutes - 1 - slot] += r.at::<i64>(3)?;
        }
        Ok(out)
    }

    /// Up to `query.limit` messages of `queue` in the states asked for, in
    /// delivery order (see `SqliteStore::peek`).
    pub fn peek(&self, queue: &str, query: &PeekQuery) -> Result<Vec<Peeked>> {
        let q = self.queue_for_peek(queue)?;
        let mut conn = self.conn.borrow_mut();
        let mut tx = Tx::read(&mut conn)?;
        let now = tx.now;
        let released = released(&mut tx, &q, now)?;
        let picked = views::pick(query, |section, n| match section {
            Section::Ready => ready_rows(&mut tx, &q, now, n, &released),
            Section::Delayed => waiting_rows(&mut tx, &q, State::Delayed, now, n),
            Section::Held => held_rows(&mut tx, &q, now, n, &released),
            Section::Leased => waiting_rows(&mut tx, &q, State::Leased, now, n),
            Section::Acked => done_rows(&mut tx, &q, State::Acked, now, n),
            Section::Dead => done_rows(&mut tx, &q, State::Dead, now, n),
        })?;
        let peeked = picked
            .into_iter()
            .map(|(id, st)| load(&mut tx, &q, id, st))
            .collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(peeked.into_iter().flatten().collect())
    }

    /// Message `id` of `queue` in whatever state it is, or `None` if the queue
    /// does not hold it (or retention has removed it).
    pub fn peek_id(&self, queue: &str, id: i64) -> Result<Option<Peeked>> {
        let q = self.queue_for_peek(queue)?;
        let mut conn = self.conn.borrow_mut();
        let mut tx = Tx::read(&mut conn)?;
        let now = tx.now;
        let row = tx.query_opt(
            "SELECT state, visible_at, attempts, done_at FROM deliveries
             WHERE msg_id = $1 AND queue_id = $2",
            &[&id, &q.id],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let row = (
            State::from_i64(row.at(0)?),
            row.at(1)?,
            row.at(2)?,
            row.at(3)?,
        );
        let st = views::peek_row(&q.settings, row, now, || {
            Ok(released(&mut tx, &q, now)?.into_iter().find(|r| r.id == id))
        })?;
        let Some(st) = st else {
            return Ok(None);
        };
        let peeked = load(&mut tx, &q, id, st)?;
        tx.commit()?;
        Ok(peeked)
    }

    /// The queue `peek` looks at: unknown names and topics are errors.
    fn queue_for_peek(&self, name: &str) -> Result<QueueRow> {
        let found = queues::queue(&mut self.conn.borrow_mut(), name)?;
        match found {
            Found::Queue(q) => Ok(q),
            Found::Topic(e) => Err(e),
            Found::Missing => Err(self.unknown_queue(name)),
        }
    }
}

/// Counts, rates and the oldest ready message of one queue or topic.
fn info(tx: &mut Tx<'_>, q: QueueRow) -> Result<QueueInfo> {
    let now = tx.now;
    let stored = stored_counts(tx, q.id, now)?;
    let max = i64::from(q.settings.max_attempts);
    let due = due_summary(tx, q.id, max, now)?;
    let (released_ready, released_oldest) = views::released_summary(&released(tx, &q, now)?, now);
    let counts = views::counts(&stored.states, &due, released_ready);
    let oldest = [oldest_ready_id(tx, q.id)?, due.oldest_id, released_oldest]
        .into_iter()
        .flatten()
        .min();
    let oldest_ready_age_ms = match oldest {
        Some(id) => published_at(tx, id)?.map(|t| now.saturating_sub(t).max(0)),
        None => None,
    };
    let created_at: i64 = tx
        .query_opt("SELECT created_at FROM queues WHERE id = $1", &[&q.id])?
        .map(|r| r.at(0))
        .transpose()?
        .unwrap_or(0);
    Ok(QueueInfo {
        schema_version: super::contracts::current_version(tx, q.id)?,
        subscribers: queues::subscribers(tx, q.id)?
            .into_iter()
            .map(|s| s.name)
            .collect(),
        topics: topics_of(tx, q.id)?,
        name: q.name,
        is_topic: q.is_topic,
        settings: q.settings,
        created_at,
        counts,
        published_total: stored.published_total,
        oldest_ready_age_ms,
        published_last_minute: stored.published_last_minute,
        acked_last_minute: stored.acked_last_minute,
    })
}

/// The sums of a queue's `stats` rows.
struct Stored {
    states: [i64; 6],
    published_total: i64,
    published_last_minute: i64,
    acked_last_minute: i64,
}

fn stored_counts(conn: &mut Conn, queue: i64, now: i64) -> Result<Stored> {
    let minute_ago = now.div_euclid(1000) - 60;
    let row = conn.query_opt(
        "SELECT coalesce(sum(n_ready), 0)::bigint, coalesce(sum(n_delayed), 0)::bigint,
                coalesce(sum(n_leased), 0)::bigint, coalesce(sum(n_acked), 0)::bigint,
                coalesce(sum(n_dead), 0)::bigint, coalesce(sum(n_held), 0)::bigint,
                coalesce(sum(published), 0)::bigint,
                coalesce(sum(published) FILTER (WHERE second > $2), 0)::bigint,
                coalesce(sum(acked) FILTER (WHERE second > $2), 0)::bigint
         FROM stats WHERE queue_id = $1",
        &[&queue, &minute_ago],
    )?;
    let Some(r) = row else {
        return Ok(Stored {
            states: [0; 6],
            published_total: 0,
            published_last_minute: 0,
            acked_last_minute: 0,
        });
    };
    let mut states = [0; 6];
    for (i, slot) in states.iter_mut().enumerate() {
        *slot = r.at(i)?;
    }
    Ok(Stored {
        states,
        published_total: r.at(6)?,
        published_last_minute: r.at(7)?,
        acked_last_minute: r.at(8)?,
    })
}

/// What the due rows of a queue become at its next claim; the second column
/// is `rules::lease_dies`.
fn due_summary(conn: &mut Conn, queue: i64, max: i64, now: i64) -> Result<DueSummary> {
    let rows = conn.query(
        "SELECT state, $3::bigint > 0 AND attempts >= $3::bigint, count(*), min(msg_id)
         FROM deliveries
         WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $2
         GROUP BY 1, 2",
        &[&queue, &now, &max],
    )?;
    let mut due = DueSummary::default();
    for r in &rows {
        due.add(State::from_i64(r.at(0)?), r.at(1)?, r.at(2)?, r.at(3)?);
    }
    Ok(due)
}

/// The lowest id among the ready rows: a skip-scan of `deliveries_ready`,
/// one index seek per distinct priority, in one recursive statement.
fn oldest_ready_id(conn: &mut Conn, queue: i64) -> Result<Option<i64>> {
    let row = conn.query_opt(
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
    Ok(match row {
        Some(r) => r.at(0)?,
        None => None,
    })
}

fn published_at(conn: &mut Conn, id: i64) -> Result<Option<i64>> {
    conn.query_opt("SELECT published_at FROM messages WHERE id = $1", &[&id])?
        .map(|r| r.at(0))
        .transpose()
}

fn topics_of(conn: &mut Conn, queue: i64) -> Result<Vec<String>> {
    conn.query(
        "SELECT name FROM queues
         WHERE id IN (SELECT topic_id FROM subscriptions WHERE queue_id = $1) ORDER BY name",
        &[&queue],
    )?
    .iter()
    .map(|r| r.at(0))
    .collect()
}

fn limit(n: usize) -> i64 {
    n.min(i64::MAX as usize) as i64
}

fn picked(rows: &[Row], state: State, done: bool) -> Result<Vec<(i64, RowState)>> {
    rows.iter()
        .map(|r| {
            let st = RowState {
                state,
                visible_at: r.at(1)?,
                done_at: if done { r.at(2)? } else { None },
            };
            Ok((r.at(0)?, st))
        })
        .collect()
}

/// The first `n` ready rows in claim order, including due delayed messages,
/// expired leases and held messages that the next claim will make ready.
fn ready_rows(
    conn: &mut Conn,
    q: &QueueRow,
    now: i64,
    n: usize,
    released: &[Released],
) -> Result<Vec<(i64, RowState)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    // The due rows that `rules::effective` reads as ready: the `NOT (…)`
    // leaves out the leases that `rules::lease_dies` kills.
    let max = i64::from(q.settings.max_attempts);
    let rows = conn.query(
        "(SELECT priority, msg_id, visible_at FROM deliveries
          WHERE queue_id = $1 AND state = 0 ORDER BY priority DESC, msg_id LIMIT $2)
         UNION ALL
         (SELECT priority, msg_id, visible_at FROM deliveries
          WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $3
            AND NOT (state = 2 AND $4::bigint > 0 AND attempts >= $4::bigint))
         ORDER BY priority DESC, msg_id LIMIT $2",
        &[&q.id, &limit(n), &now, &max],
    )?;
    let rows = rows
        .iter()
        .map(|r| Ok((r.at::<i64>(0)?, r.at::<i64>(1)?, r.at::<i64>(2)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(views::ready_rows(rows, released, now, n))
}

/// The first `n` delayed (or leased) rows not yet due, soonest first.
fn waiting_rows(
    conn: &mut Conn,
    q: &QueueRow,
    state: State,
    now: i64,
    n: usize,
) -> Result<Vec<(i64, RowState)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        "SELECT msg_id, visible_at FROM deliveries
         WHERE queue_id = $1 AND state IN (1, 2) AND visible_at > $2 AND state = $3
         ORDER BY visible_at, msg_id LIMIT $4",
        &[&q.id, &now, &(state as i64), &limit(n)],
    )?;
    picked(&rows, state, false)
}

/// The first `n` messages held behind an earlier message of their group;
/// those the next claim releases show as it leaves them (ready ones are
/// among the ready rows, delayed ones show as delayed).
fn held_rows(
    conn: &mut Conn,
    q: &QueueRow,
    now: i64,
    n: usize,
    released: &[Released],
) -> Result<Vec<(i64, RowState)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let rows = conn.query(
        "SELECT msg_id, visible_at FROM deliveries
         WHERE queue_id = $1 AND state = 5 ORDER BY grp, msg_id LIMIT $2",
        &[&q.id, &limit(n.saturating_add(released.len()))],
    )?;
    let mut out = Vec::with_capacity(n);
    for (id, st) in picked(&rows, State::Held, false)? {
        out.extend(views::held_row(id, st.visible_at, released, now).map(|st| (id, st)));
    }
    out.truncate(n);
    Ok(out)
}

/// The first `n` acked (within retention) or dead rows, earliest done
/// first; dead ones include expired leases on their last attempt.
fn done_rows(
    conn: &mut Conn,
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
    let rows = conn.query(
        "SELECT msg_id, visible_at, done_at FROM deliveries
         WHERE queue_id = $1 AND state IN (3, 4) AND state = $2 AND done_at > $3
         ORDER BY done_at, msg_id LIMIT $4",
        &[&q.id, &(state as i64), &after, &limit(n)],
    )?;
    let out = picked(&rows, state, true)?;
    let max = i64::from(q.settings.max_attempts);
    if state == State::Dead && max > 0 {
        let expired = conn.query(
            "SELECT msg_id, visible_at FROM deliveries
             WHERE queue_id = $1 AND state IN (1, 2) AND visible_at <= $2
               AND state = 2 AND attempts >= $3
             ORDER BY visible_at, msg_id LIMIT $4",
            &[&q.id, &now, &max, &limit(n)],
        )?;
        let expired = expired
            .iter()
            .map(|r| Ok((r.at(0)?, r.at(1)?)))
            .collect::<Result<Vec<(i64, i64)>>>()?;
        return Ok(views::merge_dead(out, expired, n));
    }
    Ok(out)
}

/// The full message for one picked row (`None` if it vanished, which a
/// single snapshot rules out).
fn load(conn: &mut Conn, q: &QueueRow, id: i64, st: RowState) -> Result<Option<Peeked>> {
    let row = conn.query_opt(
        "SELECT d.attempts, d.priority, d.grp, m.key, m.published_at, m.raw, m.headers, m.body,
                d.schema_version
         FROM deliveries d JOIN messages m ON m.id = d.msg_id
         WHERE d.msg_id = $1 AND d.queue_id = $2",
        &[&id, &q.id],
    )?;
    let Some(r) = row else {
        return Ok(None);
    };
    let delivery = Delivery {
        schema_version: r.at(8)?,
        id,
        queue: q.name.clone(),
        receipt: Receipt {
            queue_id: q.id,
            msg_id: id,
            lease: 0,
        },
        attempt: r.at(0)?,
        published_at: r.at(4)?,
        lease_expires_at: 0,
        key: r.at(3)?,
        group: r.at(2)?,
        priority: r.at(1)?,
        headers: r.at(6)?,
        body: r.at(7)?,
        raw: r.at(5)?,
    };
    Ok(Some(st.peeked(delivery)))
}
