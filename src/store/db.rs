//! One spool database, on SQLite or on PostgreSQL. [`Db`] is what commands
//! hold: `--db` (or `SPOOL_DB`) picks the backend, a `postgres://` or
//! `postgresql://` URL for PostgreSQL and a file path for SQLite, and every
//! call goes to that backend's [`Store`].

use std::ops::{Deref, DerefMut};
use std::path::Path;

use super::Location;
use super::postgres::{PgOptions, PostgresStore};
use super::{Error, Options, PublishBatch, Receipt, Result, SqliteStore, Store};

/// An open spool database, on whichever backend `--db` names: everything
/// a command does with it is a method of [`Store`] (reached through
/// `Deref`), written once for both backends. `Send`, so that `spool serve`
/// can keep open connections in a pool its blocking threads share.
#[derive(Debug)]
pub struct Db(Box<dyn Store + Send>);

impl Deref for Db {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.0
    }
}

impl DerefMut for Db {
    fn deref_mut(&mut self) -> &mut (dyn Store + 'static) {
        &mut *self.0
    }
}

/// An open publish transaction, as [`Db::publish_batch`] hands it out: the
/// same type on both backends.
pub type Batch<'t> = PublishBatch<'t>;

/// How output names the database at `db` before it is opened (or when it
/// does not exist yet): the file's path, or the URL without its password,
/// as an open PostgreSQL database names itself.
pub fn shown(db: &Path) -> std::path::PathBuf {
    match Location::of(db) {
        Location::Postgres(url) => super::postgres::connect::display_url(&url).into(),
        Location::File(path) => path,
    }
}

/// What [`copy_sqlite_to_postgres`] copied, and where to.
#[derive(Debug)]
pub struct Copied {
    /// The counts (and any queues whose counters had to be recounted).
    pub migrated: super::postgres::Migrated,
    /// The target as output names it (no password).
    pub target: String,
}

/// Copies the whole SQLite database at `from` (opened read-only; `None`
/// when it holds no spool database) into the empty PostgreSQL database
/// `to_url`, in one transaction on the target, keeping queue ids, message
/// ids and lease tokens so that receipts in flight stay good. `progress(n)`
/// is called as deliveries are written. What `spool migrate` does.
pub fn copy_sqlite_to_postgres(
    from: &Options,
    to_url: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<Copied>> {
    let Some(source) = SqliteStore::open_read_only(from)? else {
        return Ok(None);
    };
    let mut target = PostgresStore::open(&PgOptions {
        url: to_url.to_owned(),
        busy_timeout: from.busy_timeout,
        sync: from.sync,
    })?;
    let migrated = target.import(|sink| source.export(sink), progress)?;
    Ok(Some(Copied {
        migrated,
        target: target.display(),
    }))
}

fn pg_options(opts: &Options) -> Option<PgOptions> {
    let Location::Postgres(url) = opts.location.clone() else {
        return None;
    };
    Some(PgOptions {
        url,
        busy_timeout: opts.busy_timeout,
        sync: opts.sync,
    })
}

impl Db {
    /// Opens the database for writing, creating it (the file, or spool's
    /// schema in PostgreSQL) on first use and bringing it up to date.
    pub fn open(opts: &Options) -> Result<Db> {
        Ok(Db(match pg_options(opts) {
            Some(pg) => Box::new(PostgresStore::open(&pg)?),
            None => Box::new(SqliteStore::open(opts)?),
        }))
    }

    /// Opens the database for writing if it exists (the file, or spool's
    /// tables in PostgreSQL); `None`, creating nothing, when it does not.
    pub fn open_existing(opts: &Options) -> Result<Option<Db>> {
        Ok(match pg_options(opts) {
            Some(pg) => PostgresStore::open_existing(&pg)?.map(|p| Db(Box::new(p))),
            None => SqliteStore::open_existing(opts)?.map(|s| Db(Box::new(s))),
        })
    }

    /// Opens the database for reading only; `None` when it does not exist yet.
    /// A schema written by an older spool is brought up to date first (the
    /// one write a reader makes).
    pub fn open_read_only(opts: &Options) -> Result<Option<Db>> {
        Ok(match pg_options(opts) {
            Some(pg) => PostgresStore::open_read_only(&pg)?.map(|p| Db(Box::new(p))),
            None => SqliteStore::open_for_readers(opts)?.map(|s| Db(Box::new(s))),
        })
    }

    /// See [`Store::publish_batch`].
    pub fn publish_batch<T, E: From<Error>>(
        &mut self,
        name: &str,
        fill: impl FnMut(&mut Batch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        super::ops::publish::with_batch(&mut *self.0, name, None, fill)
    }

    /// See [`Store::publish_acking`].
    pub fn publish_acking<T, E: From<Error>>(
        &mut self,
        name: &str,
        ack: &Receipt,
        fill: impl FnMut(&mut Batch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        super::ops::publish::with_batch(&mut *self.0, name, Some(ack), fill)
    }
}
