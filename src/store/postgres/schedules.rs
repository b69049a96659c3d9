//! The PostgreSQL statements of `spool schedule` and of firing due
//! occurrences; the operations are [`crate::store::ops::schedules`]'s. A
//! process that fires an occurrence holds its schedule's row lock until it
//! commits, so another one that wants to fire it waits, then reads the row
//! as advanced and leaves it.

use postgres::Row;

use super::RowExt;
use super::tx::Tx;
use crate::store::backend::{
    DUE_SCHEDULES, REFRESH_SCHEDULE_AT, SCHEDULE_COLUMNS, ScheduleRow, ScheduleState, ScheduleTx,
};
use crate::store::error::Result;

fn from_row(row: &Row) -> Result<ScheduleRow> {
    Ok(ScheduleRow {
        id: row.at(0)?,
        name: row.at(1)?,
        target_id: row.at(2)?,
        target: row.at(3)?,
        every_ms: row.at(4)?,
        cron: row.at(5)?,
        tz: row.at(6)?,
        start_ms: row.at(7)?,
        catch_up: row.at(8)?,
        body: row.at(9)?,
        raw: row.at(10)?,
        headers: row.at(11)?,
        priority: row.at(12)?,
        grp: row.at(13)?,
        ttl_ms: row.at(14)?,
        paused: row.at(15)?,
        last_at: row.at(16)?,
        next_at: row.at(17)?,
        last_error: row.at(18)?,
        created_at: row.at(19)?,
    })
}

fn names(rows: &[Row]) -> Result<Vec<String>> {
    rows.iter().map(|r| r.at(0)).collect()
}

impl ScheduleTx for Tx<'_> {
    fn schedules(&mut self, name: Option<&str>, lock: bool) -> Result<Vec<ScheduleRow>> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules s JOIN queues q ON q.id = s.target_id
             WHERE $1::text IS NULL OR s.name = $1 ORDER BY s.name COLLATE \"C\"{}",
            if lock { " FOR UPDATE OF s" } else { "" }
        );
        self.query(&sql, &[&name])?.iter().map(from_row).collect()
    }

    fn due_schedules(&mut self, queue: i64, now: i64) -> Result<Vec<String>> {
        names(&self.query(DUE_SCHEDULES, &[&queue, &now])?)
    }

    fn schedules_of(&mut self, target: i64) -> Result<Vec<String>> {
        names(&self.query(
            "SELECT name FROM schedules WHERE target_id = $1 ORDER BY name COLLATE \"C\"",
            &[&target],
        )?)
    }

    fn insert_schedule(&mut self, r: &ScheduleRow) -> Result<()> {
        self.execute(
            "INSERT INTO schedules (name, target_id, every_ms, cron, tz, start_ms, catch_up,
               body, raw, headers, priority, grp, ttl_ms, paused, last_at, next_at,
               last_error, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
               $17, $18)",
            &[
                &r.name,
                &r.target_id,
                &r.every_ms,
                &r.cron,
                &r.tz,
                &r.start_ms,
                &r.catch_up,
                &r.body,
                &r.raw,
                &r.headers,
                &r.priority,
                &r.grp,
                &r.ttl_ms,
                &r.paused,
                &r.last_at,
                &r.next_at,
                &r.last_error,
                &r.created_at,
            ],
        )?;
        Ok(())
    }

    fn delete_schedule(&mut self, id: i64) -> Result<()> {
        self.execute("DELETE FROM schedules WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn set_schedule(&mut self, id: i64, s: &ScheduleState<'_>) -> Result<()> {
        self.execute(
            "UPDATE schedules SET paused = $2, last_at = $3, next_at = $4, last_error = $5
             WHERE id = $1",
            &[&id, &s.paused, &s.last_at, &s.next_at, &s.last_error],
        )?;
        Ok(())
    }

    fn refresh_schedule_at(&mut self, id: i64) -> Result<()> {
        self.execute(REFRESH_SCHEDULE_AT, &[&id])?;
        Ok(())
    }
}
