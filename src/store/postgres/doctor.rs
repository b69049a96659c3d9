//! Health checks for `spool doctor` on PostgreSQL: the server, the schema
//! version and spool's own invariants (`crate::store::ops::doctor`: the
//! summed `stats` match the rows, every delivery has its message, ids
//! cannot be reused). PostgreSQL checks its own storage; there is no file,
//! WAL or page count of spool's to show. Also the repair of what can be
//! recomputed.

use postgres::types::FromSql;

use super::{Conn, RowExt};
use crate::store::error::Result;

/// The first column of the one row of `sql`, if any (and not null).
pub(super) fn value<T: for<'a> FromSql<'a>>(conn: &mut Conn, sql: &str) -> Result<Option<T>> {
    let row = conn.query_opt(sql, &[])?;
    Ok(row.map(|r| r.at::<Option<T>>(0)).transpose()?.flatten())
}
