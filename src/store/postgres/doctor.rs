//! Health checks for `spool doctor` on PostgreSQL: the server, the schema
//! version and spool's own invariants (`crate::store::ops::doctor`: the
//! summed `stats` match the rows, every delivery has its message, ids
//! cannot be reused). PostgreSQL checks its own storage; there is no file,
//! WAL or page count of spool's to show. Also the repair of what can be
//! recomputed.

use postgres::types::FromSql;

use super::schema;
use super::tx::Tx;
use super::{Conn, PostgresStore, RowExt};
use crate::store::backend::{ReadTx, Tx as _};
use crate::store::error::Result;
use crate::store::ops::doctor;
use crate::store::ops::inspect::Stored;
use crate::store::types::State;
use crate::store::views::{DatabaseHealth, Health, ServerHealth};

/// The first column of the one row of `sql`, if any (and not null).
fn value<T: for<'a> FromSql<'a>>(conn: &mut Conn, sql: &str) -> Result<Option<T>> {
    let row = conn.query_opt(sql, &[])?;
    Ok(row.map(|r| r.at::<Option<T>>(0)).transpose()?.flatten())
}

impl PostgresStore {
    /// Runs every check. Only reads; counts every row, so it takes a while
    /// on a large database.
    pub fn health(&self) -> Result<Health> {
        let size_bytes = self.database_info()?.size_bytes;
        let database = {
            let mut conn = self.conn.borrow_mut();
            let mut tx = Tx::read(&mut conn)?;
            DatabaseHealth {
                path: tx.target.display.clone(),
                server: Some(ServerHealth {
                    backend: "postgres",
                    server_version: value(&mut tx, "SHOW server_version")?.unwrap_or_default(),
                    stats_rows: value(&mut tx, "SELECT count(*) FROM stats")?.unwrap_or(0),
                }),
                size_bytes,
                file: None,
                schema_version: value(&mut tx, "SELECT max(version) FROM version")?.unwrap_or(0),
                schema_supported: schema::CURRENT,
            }
        };
        let mut health = doctor::report(database);
        doctor::check(self, &mut health)?;
        Ok(health)
    }

    /// Recomputes what can be recomputed: inserts a correcting `stats` row
    /// for each queue whose sums differ from its rows, removes message rows
    /// no delivery needs, and moves the id sequence past the highest id.
    /// Returns how many things it changed. One transaction.
    pub fn repair(&mut self) -> Result<usize> {
        let mut tx = Tx::begin(self.conn.get_mut())?;
        // No claim or ack may change rows between the count and the fix.
        tx.batch("LOCK TABLE deliveries, stats IN SHARE ROW EXCLUSIVE MODE")?;
        let counted = doctor::counted(&mut tx)?;
        let mut changed = 0;
        for name in tx.names()? {
            let Some(q) = tx.queue(&name)? else {
                continue;
            };
            let summed = Stored::from(tx.stored(q.id, 0)?).states;
            let counted = counted.get(&q.id).copied().unwrap_or_default();
            if summed != counted {
                for state in State::ALL {
                    let diff = counted[state as usize] - summed[state as usize];
                    tx.counts.correct(q.id, state, diff);
                }
                changed += 1;
            }
        }
        changed += tx.execute(
            "DELETE FROM messages m
             WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.msg_id = m.id)",
            &[],
        )? as usize;
        if let Some(max) = value::<i64>(&mut tx, "SELECT max(id) FROM messages")?
            && tx.next_message_id()? <= max
        {
            tx.execute("SELECT setval('message_ids', $1)", &[&max])?;
            changed += 1;
        }
        tx.commit()?;
        Ok(changed)
    }
}
