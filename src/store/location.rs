//! Where a spool database is (`--db`, `SPOOL_DB`): an SQLite file on this
//! machine, or a PostgreSQL database named by a URL. The one place that
//! tells the two apart.

use std::path::{Path, PathBuf};

/// A spool database's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    File(PathBuf),
    /// A `postgres://` or `postgresql://` URL (see `postgres::connect`).
    Postgres(String),
}

impl Location {
    /// The location `db` names: a PostgreSQL URL ([`is_postgres_url`]),
    /// else a file path.
    pub fn of(db: &Path) -> Location {
        match db.to_str() {
            Some(url) if is_postgres_url(url) => Location::Postgres(url.to_owned()),
            _ => Location::File(db.to_owned()),
        }
    }
}

/// True when `db` names a PostgreSQL database rather than an SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_postgresql_and_anything_else_a_file() {
        for url in ["postgres://u@h/db", "postgresql://h/db?schema=s"] {
            assert_eq!(Location::of(Path::new(url)), Location::Postgres(url.into()));
        }
        for file in [
            "spool.db",
            "/tmp/postgres://x",
            "postgres:/x",
            "mysql://h/db",
        ] {
            assert_eq!(Location::of(Path::new(file)), Location::File(file.into()));
        }
    }
}
