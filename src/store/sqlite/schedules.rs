//! The SQLite statements of `spool schedule` and of firing due occurrences;
//! the operations are [`crate::store::ops::schedules`]'s. Writers take
//! turns on the whole database, so a schedule read in a write transaction
//! stays as read: no row lock is needed.

use rusqlite::Row;

use super::tx::Tx;
use crate::store::Result;
use crate::store::backend::{
    DUE_SCHEDULES, REFRESH_SCHEDULE_AT, SCHEDULE_COLUMNS, ScheduleRow, ScheduleState, ScheduleTx,
};

fn from_row(row: &Row<'_>) -> rusqlite::Result<ScheduleRow> {
    Ok(ScheduleRow {
        id: row.get(0)?,
        name: row.get(1)?,
        target_id: row.get(2)?,
        target: row.get(3)?,
        every_ms: row.get(4)?,
        cron: row.get(5)?,
        tz: row.get(6)?,
        start_ms: row.get(7)?,
        catch_up: row.get(8)?,
        body: row.get(9)?,
        raw: row.get(10)?,
        headers: row.get(11)?,
        priority: row.get(12)?,
        grp: row.get(13)?,
        ttl_ms: row.get(14)?,
        paused: row.get(15)?,
        last_at: row.get(16)?,
        next_at: row.get(17)?,
        last_error: row.get(18)?,
        created_at: row.get(19)?,
    })
}

impl ScheduleTx for Tx<'_> {
    fn schedules(&mut self, name: Option<&str>, _lock: bool) -> Result<Vec<ScheduleRow>> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules s JOIN queues q ON q.id = s.target_id
             WHERE ?1 IS NULL OR s.name = ?1 ORDER BY s.name"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([name], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn due_schedules(&mut self, queue: i64, now: i64) -> Result<Vec<String>> {
        let mut stmt = self.tx.prepare_cached(DUE_SCHEDULES)?;
        let rows = stmt
            .query_map((queue, now), |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn schedules_of(&mut self, target: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT name FROM schedules WHERE target_id = ?1 ORDER BY name")?;
        let rows = stmt
            .query_map([target], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn insert_schedule(&mut self, r: &ScheduleRow) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO schedules (name, target_id, every_ms, cron, tz, start_ms, catch_up,
                   body, raw, headers, priority, grp, ttl_ms, paused, last_at, next_at,
                   last_error, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                   ?17, ?18)",
            )?
            .execute(rusqlite::params![
                r.name,
                r.target_id,
                r.every_ms,
                r.cron,
                r.tz,
                r.start_ms,
                r.catch_up,
                r.body,
                r.raw,
                r.headers,
                r.priority,
                r.grp,
                r.ttl_ms,
                r.paused,
                r.last_at,
                r.next_at,
                r.last_error,
                r.created_at,
            ])?;
        Ok(())
    }

    fn delete_schedule(&mut self, id: i64) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM schedules WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    fn set_schedule(&mut self, id: i64, s: &ScheduleState<'_>) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE schedules SET paused = ?2, last_at = ?3, next_at = ?4, last_error = ?5
                 WHERE id = ?1",
            )?
            .execute((id, s.paused, s.last_at, s.next_at, s.last_error))?;
        Ok(())
    }

    fn refresh_schedule_at(&mut self, id: i64) -> Result<()> {
        self.tx.prepare_cached(REFRESH_SCHEDULE_AT)?.execute([id])?;
        Ok(())
    }
}
