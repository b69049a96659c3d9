//! What only SQLite adds to `spool doctor`'s checks
//! (`crate::store::ops::doctor`): its integrity check and the journal mode.

use crate::store::{Result, SqliteStore};

impl SqliteStore {
    /// `PRAGMA journal_mode`, except that a connection opened `immutable`
    /// (a read-only mount) always says `delete`: then the file header tells
    /// (bytes 18 and 19 are 2 in WAL mode).
    pub(super) fn journal_mode(&self) -> Result<String> {
        let mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if mode == "wal" {
            return Ok(mode);
        }
        let mut header = [0u8; 20];
        let wal_header = std::fs::File::open(&self.path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
            .is_ok_and(|()| header[18] == 2 && header[19] == 2);
        Ok(if wal_header { "wal".into() } else { mode })
    }

    /// `PRAGMA integrity_check`; an error while checking is itself a finding.
    pub(super) fn integrity_check(&self) -> Vec<String> {
        let rows = self
            .conn
            .prepare("PRAGMA integrity_check")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            });
        match rows {
            Ok(rows) if rows.is_empty() => vec!["integrity_check returned nothing".into()],
            Ok(rows) => rows,
            Err(e) => vec![format!("the check itself failed: {e}")],
        }
    }
}
