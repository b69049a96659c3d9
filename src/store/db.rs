//! One spool database, on SQLite or on PostgreSQL. [`Db`] is what commands
//! hold: `--db` (or `SPOOL_DB`) picks the backend, a `postgres://` or
//! `postgresql://` URL for PostgreSQL and a file path for SQLite, and every
//! call goes to that backend's implementation of the same API
//! ([`SqliteStore`], [`PostgresStore`]). Where the two differ, the difference is here.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::contract::Contract;

use super::Location;
use super::postgres::{PgOptions, PostgresStore};
use super::{
    Created, DatabaseInfo, Delivery, Error, Health, Options, Outcome, PeekQuery,
    Peeked, PublishBatch, QueueInfo, QueueSet, RateHistory, Receipt, ReceiptError, Release,
    ReplayFilter, Replayed, Result, SchemaChange, SchemaVersion, Settings, SettingsPatch,
    SqliteStore, State, Subscribed, Sync, WorkStep,
};

/// An open spool database.
#[derive(Debug)]
pub enum Db {
    /// One SQLite file on this machine.
    Sqlite(SqliteStore),
    /// A schema in a PostgreSQL database, shared by several machines (boxed:
    /// the connection state is large).
    Postgres(Box<PostgresStore>),
}

/// An open publish transaction, as [`Db::publish_batch`] hands it out: the
/// same type on both backends.
pub type Batch<'t> = PublishBatch<'t>;

/// Calls the same method on whichever backend `$db` holds.
macro_rules! each {
    ($db:expr, $s:ident => $call:expr) => {
        match $db {
            Db::Sqlite($s) => $call,
            Db::Postgres($s) => $call,
        }
    };
}

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
    let Location::Postgres(url) = opts.location() else {
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
        match pg_options(opts) {
            Some(pg) => Ok(Db::Postgres(Box::new(PostgresStore::open(&pg)?))),
            None => Ok(Db::Sqlite(SqliteStore::open(opts)?)),
        }
    }

    /// Opens the database for writing if it exists (the file, or spool's
    /// tables in PostgreSQL); `None`, creating nothing, when it does not.
    pub fn open_existing(opts: &Options) -> Result<Option<Db>> {
        match pg_options(opts) {
            Some(pg) => Ok(PostgresStore::open_existing(&pg)?.map(|p| Db::Postgres(Box::new(p)))),
            None => Ok(SqliteStore::open_existing(opts)?.map(Db::Sqlite)),
        }
    }

    /// Opens the database for reading only; `None` when it does not exist yet.
    pub fn open_read_only(opts: &Options) -> Result<Option<Db>> {
        match pg_options(opts) {
            Some(pg) => Ok(PostgresStore::open_read_only(&pg)?.map(|p| Db::Postgres(Box::new(p)))),
            None => Ok(SqliteStore::open_read_only(opts)?.map(Db::Sqlite)),
        }
    }

    /// The SQLite file, or `None` on PostgreSQL.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Db::Sqlite(s) => Some(s.path()),
            Db::Postgres(_) => None,
        }
    }

    /// The database as messages name it: the file's path, or the URL
    /// without its password.
    pub fn display(&self) -> String {
        match self {
            Db::Sqlite(s) => s.path().display().to_string(),
            Db::Postgres(p) => p.display(),
        }
    }

    /// Names of every queue and topic, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        each!(self, s => s.names())
    }

    /// An [`Error::UnknownQueue`] for `name`, with the closest existing names.
    pub fn unknown_queue(&self, name: &str) -> Error {
        each!(self, s => s.unknown_queue(name))
    }

    /// A number that changes when other connections commit news.
    pub fn data_version(&self) -> Result<i64> {
        each!(self, s => s.data_version())
    }

    /// How long until the next delayed message or lease of `queue` comes
    /// due, by the clock its times were written with: this machine's for
    /// SQLite, the server's for PostgreSQL (so a skewed client clock cannot
    /// make a waiter wake early, again and again).
    pub fn due_in(&self, queue: &str) -> Result<Option<Duration>> {
        match self {
            Db::Sqlite(s) => Ok(s
                .next_due(queue)?
                .map(|at| Duration::from_millis(at.saturating_sub(super::now_ms()).max(0) as u64))),
            Db::Postgres(p) => p.due_in(queue),
        }
    }

    /// See [`SqliteStore::publish_batch`].
    pub fn publish_batch<T, E: From<Error>>(
        &mut self,
        name: &str,
        fill: impl FnMut(&mut Batch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        each!(self, s => s.publish_batch(name, fill))
    }

    /// See [`SqliteStore::max_size`].
    pub fn max_size(&self, name: &str) -> Result<u64> {
        each!(self, s => s.max_size(name))
    }

    /// See [`SqliteStore::claim`].
    pub fn claim(
        &mut self,
        queue: &str,
        max: usize,
        visibility: Option<Duration>,
        ack: bool,
    ) -> Result<Vec<Delivery>> {
        each!(self, s => s.claim(queue, max, visibility, ack))
    }

    /// See [`SqliteStore::ack`].
    pub fn ack(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        each!(self, s => s.ack(receipts))
    }

    /// See [`SqliteStore::nack`].
    pub fn nack(
        &mut self,
        receipts: &[Receipt],
        release: Release,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        each!(self, s => s.nack(receipts, release))
    }

    /// See [`SqliteStore::extend`].
    pub fn extend(
        &mut self,
        receipts: &[Receipt],
        by: Duration,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        each!(self, s => s.extend(receipts, by))
    }

    /// See [`SqliteStore::work_step`].
    pub fn work_step(
        &mut self,
        queue: &str,
        done: &[(Receipt, Outcome)],
        want: usize,
        visibility: Option<Duration>,
    ) -> Result<WorkStep> {
        each!(self, s => s.work_step(queue, done, want, visibility))
    }

    /// See [`SqliteStore::release`].
    pub fn release(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        each!(self, s => s.release(receipts))
    }

    /// See [`SqliteStore::set_sync`].
    pub fn set_sync(&mut self, sync: Sync) -> Result<()> {
        each!(self, s => s.set_sync(sync))
    }

    /// See [`SqliteStore::flush`].
    pub fn flush(&self) -> Result<()> {
        each!(self, s => s.flush())
    }

    /// See [`SqliteStore::create_queue`].
    pub fn create_queue(
        &mut self,
        name: &str,
        patch: &SettingsPatch,
        schema: Option<&Contract>,
    ) -> Result<Created> {
        each!(self, s => s.create_queue(name, patch, schema))
    }

    /// See [`SqliteStore::set_queue`].
    pub fn set_queue(
        &mut self,
        name: &str,
        patch: &SettingsPatch,
        schema: SchemaChange<'_>,
    ) -> Result<QueueSet> {
        each!(self, s => s.set_queue(name, patch, schema))
    }

    /// See [`SqliteStore::settings`].
    pub fn settings(&self, name: &str) -> Result<Option<Settings>> {
        each!(self, s => s.settings(name))
    }

    /// See [`SqliteStore::schema_history`].
    pub fn schema_history(&self, name: &str) -> Result<Vec<SchemaVersion>> {
        each!(self, s => s.schema_history(name))
    }

    /// See [`SqliteStore::schema_holder`].
    pub fn schema_holder(&self, name: &str) -> Result<Option<String>> {
        each!(self, s => s.schema_holder(name))
    }

    /// See [`SqliteStore::subscribe`].
    pub fn subscribe(&mut self, topic: &str, queue: &str) -> Result<Subscribed> {
        each!(self, s => s.subscribe(topic, queue))
    }

    /// See [`SqliteStore::unsubscribe`].
    pub fn unsubscribe(&mut self, topic: &str, queue: &str) -> Result<Vec<String>> {
        each!(self, s => s.unsubscribe(topic, queue))
    }

    /// See [`SqliteStore::subscribers`].
    pub fn subscribers(&self, topic: &str) -> Result<Option<Vec<String>>> {
        each!(self, s => s.subscribers(topic))
    }

    /// See [`SqliteStore::queue_infos`].
    pub fn queue_infos(&self) -> Result<Vec<QueueInfo>> {
        each!(self, s => s.queue_infos())
    }

    /// See [`SqliteStore::queue_infos_named`].
    pub fn queue_infos_named(&self, names: &[String]) -> Result<Vec<QueueInfo>> {
        each!(self, s => s.queue_infos_named(names))
    }

    /// See [`SqliteStore::database_info`].
    pub fn database_info(&self) -> Result<DatabaseInfo> {
        each!(self, s => s.database_info())
    }

    /// See [`SqliteStore::rate_histories`].
    pub fn rate_histories(&self, minutes: usize) -> Result<HashMap<String, RateHistory>> {
        each!(self, s => s.rate_histories(minutes))
    }

    /// See [`SqliteStore::peek`].
    pub fn peek(&self, queue: &str, query: &PeekQuery) -> Result<Vec<Peeked>> {
        each!(self, s => s.peek(queue, query))
    }

    /// See [`SqliteStore::peek_id`].
    pub fn peek_id(&self, queue: &str, id: i64) -> Result<Option<Peeked>> {
        each!(self, s => s.peek_id(queue, id))
    }

    /// What `spool doctor` finds (see [`SqliteStore::health`]). Only reads.
    pub fn health(&self) -> Result<Health> {
        each!(self, s => s.health())
    }

    /// Recomputes what can be recomputed (see [`SqliteStore::repair`]).
    pub fn repair(&mut self) -> Result<usize> {
        each!(self, s => s.repair())
    }

    /// See [`SqliteStore::replay`].
    pub fn replay(
        &mut self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
    ) -> Result<Replayed> {
        each!(self, s => s.replay(queue, filter, to))
    }

    /// See [`SqliteStore::purge`].
    pub fn purge(&mut self, queue: &str, states: &[State]) -> Result<i64> {
        each!(self, s => s.purge(queue, states))
    }

    /// See [`SqliteStore::replay_with_progress`].
    pub fn replay_with_progress(
        &mut self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Replayed> {
        each!(self, s => s.replay_with_progress(queue, filter, to, progress))
    }

    /// See [`SqliteStore::replay_preview`].
    pub fn replay_preview(
        &self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
    ) -> Result<Replayed> {
        each!(self, s => s.replay_preview(queue, filter, to))
    }

    /// See [`SqliteStore::purge_with_progress`].
    pub fn purge_with_progress(
        &mut self,
        queue: &str,
        states: &[State],
        progress: &mut dyn FnMut(u64),
    ) -> Result<i64> {
        each!(self, s => s.purge_with_progress(queue, states, progress))
    }

    /// See [`SqliteStore::release_lease`].
    pub fn release_lease(&mut self, queue: &str, id: i64) -> Result<bool> {
        each!(self, s => s.release_lease(queue, id))
    }

    /// See [`SqliteStore::delete_queue`].
    pub fn delete_queue(&mut self, name: &str, force: bool) -> Result<i64> {
        each!(self, s => s.delete_queue(name, force))
    }

    /// Waits up to `nap` for news of `queue`: on SQLite by calling `pause`
    /// (which sleeps) and then reading the data version; on PostgreSQL by
    /// sleeping on the connection until a notification wakes it (no query),
    /// then calling `pause` with no time to give signals their say. Returns
    /// true when the wait should end: news, or `pause` asked to stop.
    pub fn wait_step(
        &self,
        queue: &str,
        version: i64,
        nap: Duration,
        pause: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<bool> {
        match self {
            Db::Sqlite(s) => Ok(pause(nap) || s.data_version()? != version),
            Db::Postgres(p) => {
                let news =
                    p.data_version()? != version || p.wait_news(queue, Instant::now() + nap)?;
                Ok(news || pause(Duration::ZERO))
            }
        }
    }
}
