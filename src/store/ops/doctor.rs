//! `spool doctor`'s checks of spool's own invariants, alike on both
//! backends: the stored counters match the rows, every delivery has its
//! message, ids cannot be reused, every schema in force compiles, every
//! queue's `schedule_at` is what its schedules make it and every schedule's
//! target exists. What only
//! one backend has (SQLite's file, pages and integrity check; PostgreSQL's
//! server) each backend adds to the same [`Health`].

use std::collections::HashMap;

use crate::store::backend::{self, Backend, ReadTx, SCHEDULE_AT, Stored};
use crate::store::error::Result;
use crate::store::views::{BrokenSchema, DatabaseHealth, Health, LostSchedule, QueueHealth};

/// `count(*)` of the deliveries per queue and stored state:
/// `(queue, state, count)`, on both backends ([`ReadTx::counted`]).
pub(crate) const COUNTED: &str =
    "SELECT queue_id, state, count(*) FROM deliveries GROUP BY queue_id, state";

/// Message rows that no delivery references, delivery rows whose message
/// is missing, and the highest message id, in one round trip, on both
/// backends ([`ReadTx::message_checks`]).
pub(crate) const MESSAGE_CHECKS: &str = "SELECT
    (SELECT count(*) FROM messages m
     WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id)),
    (SELECT count(*) FROM deliveries d
     WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.msg_id)),
    (SELECT max(id) FROM messages)";

/// Every queue's stored `schedule_at` and [`SCHEDULE_AT`]
/// ([`ReadTx::schedule_at_checks`]).
pub(crate) fn schedule_at_checks() -> String {
    format!("SELECT id, schedule_at, {SCHEDULE_AT} FROM queues ORDER BY id")
}

/// The statement of `doctor --repair` that sets every `schedule_at` that
/// differs from [`SCHEDULE_AT`]; `distinct` is the dialect's null-safe
/// "differs" (`IS NOT` in SQLite, `IS DISTINCT FROM` in PostgreSQL).
pub(crate) fn repair_schedule_at(distinct: &str) -> String {
    format!(
        "UPDATE queues SET schedule_at = {SCHEDULE_AT} WHERE schedule_at {distinct} {SCHEDULE_AT}"
    )
}

/// Schedules whose target is gone ([`ReadTx::lost_schedules`]).
pub(crate) const LOST_SCHEDULES: &str = "SELECT name, target_id FROM schedules
    WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.id = schedules.target_id) ORDER BY name";

/// The statement of `doctor --repair` that removes the schedules of
/// [`LOST_SCHEDULES`]: they can never publish, and `schedule list` and
/// `schedule remove` cannot see them.
pub(crate) const REMOVE_LOST_SCHEDULES: &str = "DELETE FROM schedules
    WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.id = schedules.target_id)";

/// Runs every check of spool's invariants in one read snapshot of `store`
/// into `h`. Counts every row, so it takes a while on a large database.
/// `Err` leaves what was read so far in `h`.
pub(crate) fn check(store: &(impl Backend + ?Sized), h: &mut Health) -> Result<()> {
    backend::read(store, |tx| {
        let counted = counted(tx)?;
        let schedule_at: HashMap<i64, (Option<i64>, Option<i64>)> = tx
            .schedule_at_checks()?
            .into_iter()
            .map(|(id, stored, computed)| (id, (stored, computed)))
            .collect();
        h.queues.clear();
        h.broken_schemas.clear();
        for name in tx.names()? {
            let Some(q) = tx.queue(&name)? else {
                continue;
            };
            if let Some((version, Some(text))) = tx.latest_schema(q.id)?
                && let Err(reason) = crate::contract::Contract::compile(&text)
            {
                h.broken_schemas.push(BrokenSchema {
                    queue: name,
                    version,
                    reason,
                });
            }
            let (stored, computed) = schedule_at.get(&q.id).copied().unwrap_or_default();
            h.queues.push(QueueHealth {
                schedule_at: stored,
                schedule_at_computed: computed,
                counters: Stored::from(tx.stored(q.id, 0)?).states,
                counted: counted.get(&q.id).copied().unwrap_or_default(),
                name: q.name,
                is_topic: q.is_topic,
                settings: q.settings,
            });
        }
        h.lost_schedules = tx
            .lost_schedules()?
            .into_iter()
            .map(|(name, target_id)| LostSchedule { name, target_id })
            .collect();
        (h.orphan_messages, h.missing_messages, h.max_message_id) = tx.message_checks()?;
        h.next_message_id = tx.next_message_id()?;
        Ok(())
    })
}

/// A report on `database` with nothing checked yet.
pub(crate) fn report(database: DatabaseHealth) -> Health {
    Health {
        database,
        ..Health::default()
    }
}

/// `count(*)` of the deliveries of each queue per stored state, indexed by
/// [`crate::store::State`]. Reads every row.
pub(crate) fn counted(tx: &mut (impl ReadTx + ?Sized)) -> Result<HashMap<i64, [i64; 6]>> {
    let mut counted: HashMap<i64, [i64; 6]> = HashMap::new();
    for (queue, state, n) in tx.counted()? {
        if let Some(slot) = usize::try_from(state).ok().filter(|s| *s < 6) {
            counted.entry(queue).or_default()[slot] = n;
        }
    }
    Ok(counted)
}
