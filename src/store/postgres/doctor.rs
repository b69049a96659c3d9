//! What only PostgreSQL adds to `spool doctor`'s checks
//! (`crate::store::ops::doctor`): facts about the server. PostgreSQL checks
//! its own storage; there is no file, WAL or page count of spool's to show.

use postgres::types::FromSql;

use super::{Conn, RowExt};
use crate::store::error::Result;

/// The first column of the one row of `sql`, if any (and not null).
pub(super) fn value<T: for<'a> FromSql<'a>>(conn: &mut Conn, sql: &str) -> Result<Option<T>> {
    let row = conn.query_opt(sql, &[])?;
    Ok(row.map(|r| r.at::<Option<T>>(0)).transpose()?.flatten())
}
