//! Schedules: `schedule add`, `list`, `remove`, `pause` and `resume`, and
//! firing due occurrences. There is no daemon: a claim on a queue that a
//! due schedule feeds (its queue row says so, [`QueueRow::schedule_at`])
//! fires the schedule in a transaction of its own, then claims again
//! ([`claim`], [`after_claim`]). Each firing locks the schedule's row
//! (PostgreSQL; SQLite's writers take turns anyway), reads it again and
//! publishes only what is still due, so an occurrence is published once
//! however many processes race for it.
//!
//! When the target refuses an occurrence (full, a schema, no subscribers),
//! nothing is published and the schedule stays due, with the reason kept
//! in its row (`last_error`): the next claim that finds room publishes it.

use std::time::Duration;

use super::contracts::for_publish;
use super::lease;
use super::publish::{publish_in, target_refuses};
use super::queues::ensure;
use crate::store::backend::{self, Backend, ScheduleRow, ScheduleState, WriteTx};
use crate::store::error::{Error, Result};
use crate::store::schedule::{CatchUp, MAX_CATCH_UP, Rule};
use crate::store::types::{
    BodyLimit, Created, Delivery, NewMessage, QueueRow, Schedule, ScheduleSpec, ms,
};

/// The header naming the schedule a message comes from.
pub const SCHEDULE_HEADER: &str = "spool-schedule";
/// The header carrying the occurrence's time (RFC 3339).
pub const SCHEDULED_FOR_HEADER: &str = "spool-scheduled-for";

/// A claim ([`lease::claim`]) that first fires what is due: when the
/// claim's queue row shows a due occurrence, it is published in its own
/// transaction and, if the claim got fewer than `max`, claimed for.
pub(crate) fn claim(
    store: &mut (impl Backend + ?Sized),
    queue: &str,
    max: usize,
    visibility: Option<Duration>,
    ack: bool,
) -> Result<Vec<Delivery>> {
    let (mut got, due) = backend::write(store, |tx| {
        let leased = lease::claim_in(tx, queue, max, visibility, ack)??;
        Ok((leased.deliveries, leased.schedule_due))
    })?;
    if let Some(queue_id) = due
        && fire_due(store, queue_id)?
        && got.len() < max
    {
        got.extend(lease::claim(
            store,
            queue,
            max - got.len(),
            visibility,
            ack,
        )?);
    }
    Ok(got)
}

/// One claim of a group run by [`claim_group`]: up to `max` deliveries of
/// `queue`, leased for `visibility` (default: the queue's).
#[derive(Debug, Clone, Copy)]
pub struct ClaimJob<'a> {
    /// The queue to claim from.
    pub queue: &'a str,
    /// At most this many deliveries.
    pub max: usize,
    /// The lease, or the queue's visibility.
    pub visibility: Option<Duration>,
}

/// [`Store::claim_group`](crate::store::Store::claim_group): the claims of
/// `jobs` in one write transaction (one commit), each answered on its own
/// as [`claim`] would answer it (an unknown queue or a topic is that
/// claim's error; claims of one queue lease different messages, in turn).
/// A due schedule is fired after the commit, as [`claim`] fires it. An
/// error of the transaction itself fails the whole group.
pub(crate) fn claim_group(
    store: &mut (impl Backend + ?Sized),
    jobs: &[ClaimJob<'_>],
) -> Result<Vec<Result<Vec<Delivery>>>> {
    let claimed = backend::write(store, |tx| {
        jobs.iter()
            .map(|job| lease::claim_in(tx, job.queue, job.max, job.visibility, false))
            .collect::<Result<Vec<_>>>()
    })?;
    let mut answers = Vec::with_capacity(jobs.len());
    for (job, claimed) in jobs.iter().zip(claimed) {
        answers.push(match claimed {
            Err(e) => Err(e),
            Ok(leased) => {
                let mut got = leased.deliveries;
                if let Some(queue_id) = leased.schedule_due
                    && fire_due(store, queue_id)?
                    && got.len() < job.max
                {
                    got.extend(lease::claim(
                        store,
                        job.queue,
                        job.max - got.len(),
                        job.visibility,
                        false,
                    )?);
                }
                Ok(got)
            }
        });
    }
    Ok(answers)
}

/// What `work_step` (`ops::work`) does after its transaction
/// when its claim found an occurrence due: fires it, and claims up to
/// `want` more when something was published.
pub(crate) fn after_claim(
    store: &mut (impl Backend + ?Sized),
    queue: &str,
    queue_id: i64,
    want: usize,
    visibility: Option<Duration>,
) -> Result<Vec<Delivery>> {
    if !fire_due(store, queue_id)? || want == 0 {
        return Ok(Vec::new());
    }
    lease::claim(store, queue, want, visibility, false)
}

/// Publishes the due occurrences of every active schedule that feeds the
/// queue `queue_id`, each schedule in its own transaction. Returns true
/// when anything was published.
pub(crate) fn fire_due(store: &mut (impl Backend + ?Sized), queue_id: i64) -> Result<bool> {
    let due = backend::read(store, |tx| {
        let now = tx.now();
        tx.due_schedules(queue_id, now)
    })?;
    let mut fired = false;
    for name in due {
        fired |= fire(store, &name)?;
    }
    Ok(fired)
}

/// Publishes what is due of the schedule `name`, if anything still is once
/// its row is locked. A refusal of the target is kept in the schedule's
/// row, not returned: the occurrence stays due.
fn fire(store: &mut (impl Backend + ?Sized), name: &str) -> Result<bool> {
    let mut cache = std::mem::take(store.contracts());
    let fired = backend::write(store, |tx| {
        let Some(row) = tx.schedules(Some(name), true)?.pop() else {
            return Ok(false);
        };
        let now = tx.now();
        if row.paused || row.next_at.is_none_or(|at| at > now) {
            return Ok(false);
        }
        let rule = rule_of(&row)?;
        let due = rule.due(
            row.start_ms,
            row.last_at,
            now,
            catch_up_of(&row)?,
            MAX_CATCH_UP,
        );
        if !due.is_empty() {
            let ttl = row.ttl_ms.map(|t| Duration::from_millis(t.max(0) as u64));
            let headers: Vec<String> = due
                .iter()
                .map(|&at| headers_for(&row, at))
                .collect::<Result<_>>()?;
            publish_in(tx, &mut cache, &row.target, &mut |batch| {
                for headers in &headers {
                    batch.publish(&NewMessage {
                        body: &row.body,
                        raw: row.raw,
                        key: None,
                        group: row.grp.as_deref(),
                        headers: Some(headers),
                        priority: row.priority,
                        available_at: None,
                        ttl,
                    })?;
                }
                Ok(())
            })?;
        }
        let state = ScheduleState {
            paused: false,
            last_at: due.last().copied().or(row.last_at),
            next_at: rule.next_at_or_after(row.start_ms, now.saturating_add(1)),
            last_error: None,
        };
        tx.set_schedule(row.id, &state)?;
        tx.refresh_schedule_at(row.target_id)?;
        Ok(!due.is_empty())
    });
    *store.contracts() = cache;
    match fired {
        // A schedule that cannot fire must not stop the claims on its
        // target: it waits, saying why.
        Err(e)
            if target_refuses(&e)
                || matches!(e, Error::BrokenSchema { .. } | Error::BrokenSchedule { .. }) =>
        {
            note_refusal(store, name, &e.to_string())?;
            Ok(false)
        }
        other => other,
    }
}

/// Keeps why the target refused a schedule's occurrence in its row (once:
/// a claim that is refused the same way again writes nothing).
fn note_refusal(store: &mut (impl Backend + ?Sized), name: &str, why: &str) -> Result<()> {
    backend::write(store, |tx| {
        if let Some(row) = tx.schedules(Some(name), true)?.pop()
            && row.last_error.as_deref() != Some(why)
        {
            tx.set_schedule(
                row.id,
                &ScheduleState {
                    paused: row.paused,
                    last_at: row.last_at,
                    next_at: row.next_at,
                    last_error: Some(why),
                },
            )?;
        }
        Ok(())
    })
}

/// The headers of an occurrence's message: the schedule's own, with
/// [`SCHEDULE_HEADER`] and [`SCHEDULED_FOR_HEADER`] put in (replacing
/// user headers of those names).
fn headers_for(row: &ScheduleRow, at: i64) -> Result<String> {
    let mut map = match &row.headers {
        None => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::Internal(format!("schedule `{}`: headers: {e}", row.name)))?,
    };
    map.insert(SCHEDULE_HEADER.to_owned(), row.name.clone().into());
    map.insert(SCHEDULED_FOR_HEADER.to_owned(), rfc3339(at).into());
    Ok(serde_json::Value::Object(map).to_string())
}

/// An instant (ms since the epoch) in RFC 3339, UTC, with milliseconds, as
/// spool writes every time.
fn rfc3339(at: i64) -> String {
    jiff::Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |t| format!("{t:.3}"))
}

/// Adds the schedule `name`. An existing schedule of that name with the
/// same settings is left alone ([`Created::Existed`]; an omitted start is
/// not compared); with other settings it is [`Error::ScheduleConflict`].
/// A missing target queue is created. The body is checked against the
/// target's schemas and size limit, as a publish would check it.
pub(crate) fn add(
    store: &mut (impl Backend + ?Sized),
    name: &str,
    spec: &ScheduleSpec,
) -> Result<Created> {
    if crate::parse::queue_name(name).is_err() {
        return Err(Error::BadName {
            name: name.to_owned(),
        });
    }
    let mut cache = std::mem::take(store.contracts());
    let outcome = backend::write(store, |tx| {
        if let Some(row) = tx.schedules(Some(name), true)?.pop() {
            let have = spec_of(&row)?;
            let mut want = spec.clone();
            want.start = want.start.or(have.start);
            let differs = differences(&have, &want);
            return if differs.is_empty() {
                Ok(Created::Existed)
            } else {
                Err(Error::ScheduleConflict {
                    name: name.to_owned(),
                    differs,
                })
            };
        }
        tx.lock_shared(&[&spec.target])?;
        let target = ensure(tx, &spec.target)?;
        check_body(tx, &mut cache, &target, spec)?;
        let now = tx.now();
        let start = spec.start.unwrap_or(now);
        let (every_ms, cron, tz) = match &spec.rule {
            Rule::Every(d) => (Some(ms(*d)), None, None),
            Rule::Cron(c) => (None, Some(c.expr().to_owned()), Some(c.zone().to_owned())),
        };
        tx.insert_schedule(&ScheduleRow {
            id: 0,
            name: name.to_owned(),
            target_id: target.id,
            target: target.name.clone(),
            every_ms,
            cron,
            tz,
            start_ms: start,
            catch_up: spec.catch_up.to_string(),
            body: spec.body.clone(),
            raw: spec.raw,
            headers: spec.headers.clone(),
            priority: spec.priority,
            grp: spec.group.clone(),
            ttl_ms: spec.ttl.map(ms),
            paused: false,
            last_at: None,
            next_at: spec.rule.next_at_or_after(start, start),
            last_error: None,
            created_at: now,
        })?;
        tx.refresh_schedule_at(target.id)?;
        Ok(Created::New)
    });
    *store.contracts() = cache;
    outcome
}

/// Refuses a body the target would refuse at every occurrence: one that
/// breaks its schemas (a topic's and its subscribers') or is too large,
/// or a group no backend can keep.
fn check_body(
    tx: &mut dyn WriteTx,
    cache: &mut crate::store::checks::ContractCache,
    target: &QueueRow,
    spec: &ScheduleSpec,
) -> Result<()> {
    let targets = if target.is_topic {
        tx.subscribers(target.id)?
    } else {
        vec![target.clone()]
    };
    let checks = for_publish(tx, cache, target, &targets)?;
    BodyLimit::smallest(&targets)
        .unwrap_or_else(|| BodyLimit::new(u64::MAX, &target.name))
        .admit(spec.body.len())?;
    super::publish::check_labels(None, spec.group.as_deref())?;
    checks.message(&target.name, &spec.body, spec.raw)
}

/// What differs between two specs, by the names `schedule add` reports.
fn differences(have: &ScheduleSpec, want: &ScheduleSpec) -> Vec<&'static str> {
    let mut differs = Vec::new();
    let mut check = |same: bool, what| {
        if !same {
            differs.push(what);
        }
    };
    check(have.target == want.target, "target");
    check(have.rule == want.rule, "rule");
    check(have.start == want.start, "start");
    check(have.catch_up == want.catch_up, "catch-up");
    check(have.body == want.body && have.raw == want.raw, "body");
    check(have.headers == want.headers, "headers");
    check(have.priority == want.priority, "priority");
    check(have.group == want.group, "group");
    check(have.ttl == want.ttl, "ttl");
    differs
}

/// Every schedule, sorted by name. Only reads.
pub(crate) fn list(store: &(impl Backend + ?Sized)) -> Result<Vec<Schedule>> {
    let rows = backend::read(store, |tx| tx.schedules(None, false))?;
    rows.iter().map(schedule_of).collect()
}

/// Removes the schedule `name`; what it published stays.
pub(crate) fn remove(store: &mut (impl Backend + ?Sized), name: &str) -> Result<()> {
    backend::write(store, |tx| {
        let row = existing(tx, name)?;
        tx.delete_schedule(row.id)?;
        tx.refresh_schedule_at(row.target_id)
    })
}

/// Pauses or resumes the schedule `name`; returns false when it already
/// was so. Resuming publishes nothing by itself: the next claim on the
/// target publishes what came due meanwhile, as `--catch-up` says.
pub(crate) fn set_paused(
    store: &mut (impl Backend + ?Sized),
    name: &str,
    paused: bool,
) -> Result<bool> {
    backend::write(store, |tx| {
        let row = existing(tx, name)?;
        if row.paused == paused {
            return Ok(false);
        }
        tx.set_schedule(
            row.id,
            &ScheduleState {
                paused,
                last_at: row.last_at,
                next_at: row.next_at,
                last_error: row.last_error.as_deref(),
            },
        )?;
        tx.refresh_schedule_at(row.target_id)?;
        Ok(true)
    })
}

/// The schedule `name`, locked, or [`Error::UnknownSchedule`].
fn existing(tx: &mut dyn WriteTx, name: &str) -> Result<ScheduleRow> {
    if let Some(row) = tx.schedules(Some(name), true)?.pop() {
        return Ok(row);
    }
    let names: Vec<String> = tx
        .schedules(None, false)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    Err(Error::UnknownSchedule {
        name: name.to_owned(),
        similar: crate::suggest::similar(name, &names),
    })
}

/// A stored rule, parsed again.
fn rule_of(row: &ScheduleRow) -> Result<Rule> {
    let rule = match (&row.cron, row.every_ms) {
        (Some(expr), _) => Rule::cron(expr, row.tz.as_deref()),
        (None, Some(every)) => Rule::every(Duration::from_millis(every.max(0) as u64)),
        (None, None) => {
            return Err(Error::Internal(format!(
                "schedule `{}` has no rule",
                row.name
            )));
        }
    };
    rule.map_err(|e| Error::BrokenSchedule {
        name: row.name.clone(),
        reason: e.to_string(),
    })
}

fn catch_up_of(row: &ScheduleRow) -> Result<CatchUp> {
    row.catch_up
        .parse()
        .map_err(|e| Error::Internal(format!("schedule `{}`: {e}", row.name)))
}

fn spec_of(row: &ScheduleRow) -> Result<ScheduleSpec> {
    Ok(ScheduleSpec {
        target: row.target.clone(),
        rule: rule_of(row)?,
        start: Some(row.start_ms),
        catch_up: catch_up_of(row)?,
        body: row.body.clone(),
        raw: row.raw,
        headers: row.headers.clone(),
        priority: row.priority,
        group: row.grp.clone(),
        ttl: row.ttl_ms.map(|t| Duration::from_millis(t.max(0) as u64)),
    })
}

fn schedule_of(row: &ScheduleRow) -> Result<Schedule> {
    Ok(Schedule {
        name: row.name.clone(),
        spec: spec_of(row)?,
        paused: row.paused,
        last_at: row.last_at,
        next_at: row.next_at,
        last_error: row.last_error.clone(),
        created_at: row.created_at,
    })
}
