//! The PostgreSQL backend: [`PostgresStore`] offers the API of [`super::SqliteStore`]
//! (same method names, arguments and results) on a PostgreSQL database, for
//! producers and consumers on several machines.
//!
//! # Connection
//!
//! `postgres://user[:password]@host[:port]/db[?param=value&…]`, through the
//! synchronous `postgres` crate. spool reads three parameters itself and
//! hands the rest to the client: `schema=NAME` (else `SPOOL_PG_SCHEMA`, else
//! `spool`), `sslmode` (`disable`, `prefer` (default), `require`,
//! `verify-ca`, `verify-full`; TLS by rustls) and `sslrootcert=FILE`.
//! Passwords come from the URL, `PGPASSWORD` or `~/.pgpass` (`PGPASSFILE`).
//! See [`connect`] and `docs/postgres.md`.
//!
//! # Schema and migrations
//!
//! Everything lives in one PostgreSQL schema, created by spool. Its version
//! is the one row of `version`; opening for writing migrates under
//! `pg_advisory_xact_lock`, so processes that start at once on a fresh
//! database wait for one another and exactly one of them migrates. The
//! connection's `search_path` is that schema alone, so the SQL names no
//! schema.
//!
//! # Locking
//!
//! Every transaction runs at READ COMMITTED. Claims pick rows with `FOR
//! UPDATE SKIP LOCKED`: a consumer never waits for another and never gets a
//! row another holds. The lazy transitions of a claim (due delayed messages
//! and expired leases back to ready, or dead) skip locked rows too. Acks,
//! nacks and extends lock just the rows of their receipts. `--busy-timeout`
//! becomes `lock_timeout`: a lock held past it is [`Error::PgBusy`] (exit 75).
//!
//! Ordered groups: every transaction that locks several `group_heads` rows
//! locks them in key order (queue id, then group, bytewise): publish upserts
//! the heads of a chunk of grouped messages in one sorted statement, settles
//! (ack, nack, `work`, purge, expired leases) note the groups whose head
//! finished and let them go sorted (`lease::release_groups`), and replay
//! locks the existing heads sorted first. So a publish and an ack never
//! wait for each other in a cycle. Should PostgreSQL still end a
//! transaction for a deadlock (40P01) or a serialization failure (40001),
//! the whole transaction runs again after a short random pause, up to ten
//! times within the busy timeout ([`PostgresStore::retrying`]); the last one is
//! [`Error::PgBusy`], whose message says what happened.
//!
//! Names: writers that add deliveries to a queue (publish, replay) hold an
//! advisory lock on its name, shared, to their commit; deleting a queue,
//! making it a topic, changing a topic's subscriptions and changing a JSON
//! Schema take it exclusively (see `queues::lock_shared`). So the schema
//! versions a publish reads stay in force until it commits.
//!
//! Hot rows: SQLite keeps per-state counters in the `queues` row and
//! per-second rates in `rates`, updated by every transaction. On PostgreSQL
//! that would make every ack wait for the row lock of the one before it.
//! Here each write transaction instead *inserts* one row of deltas per queue
//! it touched into `stats` (in the same round trip as its `COMMIT`); readers
//! sum them, and housekeeping folds rows older than a few seconds into one
//! row per second (older than an hour: into one row per queue), so the sum
//! stays short. Inserts never wait for one another.
//!
//! # Performance
//!
//! Round trips are the cost of a command. A claim on a queue this connection
//! claimed from within the last second, with nothing due, is one statement
//! without an explicit transaction (lease, bodies and count deltas at once);
//! so is an ack of ungrouped deliveries in queues that keep acked messages.
//! Everything else is a transaction of a few statements. Statements are
//! prepared once per connection. Figures in `docs/postgres.md`.
//!
//! # Time
//!
//! Every transaction reads the server's `clock_timestamp()` once at its
//! start and acts at that time, so clients with skewed clocks agree.
//!
//! # Waiting
//!
//! Writers that make messages deliverable (publish, nack, release, replay)
//! send `pg_notify('spool_<schema>', queue)`, which PostgreSQL delivers on
//! commit. [`PostgresStore::data_version`] counts the notifications this
//! connection has received (it starts listening on its first call, so call
//! it before the claim, as the SQLite loop does), and
//! [`PostgresStore::wait_for_news`] blocks on the socket until one arrives for a
//! queue, a delayed message or lease comes due, or a deadline passes.
//!
//! # Moving from SQLite
//!
//! [`PostgresStore::import`] writes what [`super::SqliteStore::export`] reads: a whole
//! SQLite database, with the same ids and lease tokens, into an empty schema
//! in one transaction (`spool migrate`; see `import`).
//!
//! # Durability
//!
//! `--sync full` is `synchronous_commit = on`, `--sync normal` is `off` (a
//! crash of the server may lose the last commits, never consistency).

mod admin;
pub mod connect;
mod contracts;
mod doctor;
mod import;
mod inspect;
mod lease;
mod notify;
mod publish;
mod queues;
mod schedules;
mod schema;
mod store;
mod tx;
mod work;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{FromSql, ToSql};
use postgres::{Client, Row, Statement};

pub use connect::{Target, TlsMode};
pub use import::{Migrated, PgImport};

use crate::store::error::{Error, Result};
use crate::store::types::Sync;

/// Where the PostgreSQL database is and how to talk to it.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://…` (see the module doc for the parameters spool reads).
    pub url: String,
    /// How long to wait for a row lock another transaction holds.
    pub busy_timeout: Duration,
    /// Commit durability.
    pub sync: Sync,
}

/// An open spool database on PostgreSQL.
pub struct PostgresStore {
    conn: RefCell<Conn>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let display = self
            .conn
            .try_borrow()
            .map(|c| c.target.display.clone())
            .unwrap_or_default();
        f.debug_struct("PostgresStore")
            .field("db", &display)
            .finish()
    }
}

/// A statement parameter.
type Param<'a> = dyn ToSql + std::marker::Sync + 'a;

/// One connection with its prepared statements and per-connection state.
pub(crate) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    pub target: Target,
    /// Per queue id: the second of the last housekeeping (sweep, stats folding).
    pub housekeeping: HashMap<i64, i64>,
    /// Per queue name: when a full claim last ran (lazy transitions and
    /// housekeeping); within a second of it, claims may take the fast path.
    pub claimed: HashMap<String, std::time::Instant>,
    /// True once `LISTEN` was sent.
    pub listening: bool,
    /// `--busy-timeout`: the `lock_timeout`, and the bound of retries.
    pub busy_timeout: Duration,
    /// Set when a statement failed for a deadlock or serialization failure
    /// (see [`PostgresStore::retrying`]).
    pub conflict: bool,
    /// Notifications received so far (see [`PostgresStore::data_version`]).
    pub seen: i64,
    /// Queues named by notifications received but not yet waited for.
    pub news: Vec<String>,
    /// Compiled JSON Schemas, by queue and version.
    pub contracts: crate::store::checks::ContractCache,
    /// Benchmarks only: SQL run just before each commit that writes (to
    /// measure what a shared counter row would cost); also turns the
    /// one-statement claim and ack off. Set with
    /// [`PostgresStore::set_before_commit`].
    #[cfg(any(test, feature = "test-hooks"))]
    pub before_commit: Option<String>,
}

#[cfg(any(test, feature = "test-hooks"))]
impl PostgresStore {
    /// Benchmarks only (`benches/store_drain.rs`; not in a release build):
    /// `Some(sql)` runs `sql` just before each commit that writes, and
    /// turns the one-statement claim and ack off, so every claim and ack
    /// takes the full transaction. `Some(String::new())` measures the full
    /// paths alone; an `UPDATE` of one shared row measures what a counter
    /// kept in that row would cost. `None` (the default) is as shipped.
    pub fn set_before_commit(&mut self, sql: Option<String>) {
        self.conn.get_mut().before_commit = sql;
    }
}

impl PostgresStore {
    /// Connects, creates spool's schema on first use and brings it up to date.
    pub fn open(opts: &PgOptions) -> Result<PostgresStore> {
        let store = PostgresStore::connect(opts)?;
        store.conn.borrow_mut().migrate()?;
        Ok(store)
    }

    /// Connects for writing, as [`PostgresStore::open`] does, if spool's tables
    /// exist: `None` when they do not, and nothing is created (see
    /// `SqliteStore::open_existing`).
    pub fn open_existing(opts: &PgOptions) -> Result<Option<PostgresStore>> {
        let store = PostgresStore::connect(opts)?;
        let Some(version) = store.conn.borrow_mut().schema_version()? else {
            return Ok(None);
        };
        if version != schema::CURRENT {
            store.conn.borrow_mut().migrate()?;
        }
        Ok(Some(store))
    }

    /// Connects for reading only. Returns `None` when spool's schema does not
    /// exist yet (callers treat that as an empty database); never creates
    /// anything, and changes only a schema written by an older spool, which
    /// it brings up to date.
    pub fn open_read_only(opts: &PgOptions) -> Result<Option<PostgresStore>> {
        let store = PostgresStore::connect(opts)?;
        let version = store.conn.borrow_mut().schema_version()?;
        match version {
            None => Ok(None),
            Some(v) if v > schema::CURRENT => Err(newer(&store.conn.borrow().target.display, v)),
            // Written by an older spool: brought up to date first, as the
            // readers' statements name what the newer schema has.
            Some(v) if v < schema::CURRENT => {
                store.conn.borrow_mut().migrate()?;
                Ok(Some(store))
            }
            Some(_) => Ok(Some(store)),
        }
    }

    fn connect(opts: &PgOptions) -> Result<PostgresStore> {
        let target = connect::parse(&opts.url)?;
        let client = connect::connect(&target)?;
        let mut conn = Conn {
            client,
            statements: HashMap::new(),
            target,
            housekeeping: HashMap::new(),
            claimed: HashMap::new(),
            listening: false,
            busy_timeout: opts.busy_timeout,
            conflict: false,
            seen: 0,
            news: Vec::new(),
            contracts: Default::default(),
            #[cfg(any(test, feature = "test-hooks"))]
            before_commit: None,
        };
        let lock_ms = opts.busy_timeout.as_millis().clamp(1, i32::MAX as u128);
        let sync = match opts.sync {
            Sync::Full => "on",
            Sync::Normal => "off",
        };
        let setup = format!(
            "SET search_path TO \"{schema}\"; SET lock_timeout = {lock_ms};
             SET synchronous_commit = {sync};
             SET default_transaction_isolation = 'read committed';
             SET default_transaction_read_only = off",
            schema = conn.target.schema
        );
        conn.client
            .batch_execute(&setup)
            .map_err(|e| connect::open_error(&conn.target.display, e.to_string()))?;
        Ok(PostgresStore {
            conn: RefCell::new(conn),
        })
    }
}

impl Conn {
    /// Turns a client result into spool's, noting a deadlock or
    /// serialization failure (the transaction may be tried again) and
    /// naming a lock wait past the busy timeout.
    fn check<T>(&mut self, result: Result<T, postgres::Error>) -> Result<T> {
        result.map_err(|e| {
            let code = e.code();
            if code == Some(&SqlState::T_R_DEADLOCK_DETECTED)
                || code == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            {
                self.conflict = true;
            }
            if code == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return lock_timeout(self.busy_timeout);
            }
            Error::from(e)
        })
    }

    /// The prepared statement for `sql`, prepared once per connection.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql);
        let s = self.check(s)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Runs the prepared statement for `sql` through `run`.
    fn run<T>(
        &mut self,
        sql: &str,
        run: impl FnOnce(&mut Client, &Statement) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        let stmt = self.statement(sql)?;
        let done = run(&mut self.client, &stmt);
        self.check(done)
    }

    /// Runs `sql` and returns its rows.
    pub fn query(&mut self, sql: &str, params: &[&Param<'_>]) -> Result<Vec<Row>> {
        self.run(sql, |c, s| c.query(s, params))
    }

    /// Runs `sql` and returns its one row, if any.
    pub fn query_opt(&mut self, sql: &str, params: &[&Param<'_>]) -> Result<Option<Row>> {
        self.run(sql, |c, s| c.query_opt(s, params))
    }

    /// Runs `sql` and returns how many rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[&Param<'_>]) -> Result<u64> {
        self.run(sql, |c, s| c.execute(s, params))
    }

    /// Runs statements without parameters, in one round trip.
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        let done = self.client.batch_execute(sql);
        self.check(done)
    }

    /// Runs statements in one round trip and returns the first column of the
    /// first row any of them returned.
    pub fn simple_value(&mut self, sql: &str) -> Result<Option<String>> {
        let messages = self.client.simple_query(sql);
        let messages = self.check(messages)?;
        Ok(messages.iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        }))
    }

    /// The schema version, or `None` when spool's tables do not exist.
    fn schema_version(&mut self) -> Result<Option<i64>> {
        match self
            .client
            .query_opt("SELECT max(version) FROM version", &[])
        {
            Ok(row) => Ok(row.and_then(|r| r.get::<_, Option<i64>>(0))),
            Err(e)
                if matches!(
                    e.code(),
                    Some(&SqlState::UNDEFINED_TABLE | &SqlState::INVALID_SCHEMA_NAME)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or upgrades the schema. Under a transaction-scoped advisory
    /// lock keyed on the schema name, so concurrent processes take turns and
    /// all but the first find the work done.
    fn migrate(&mut self) -> Result<()> {
        match self.schema_version()? {
            Some(v) if v == schema::CURRENT => return Ok(()),
            Some(v) if v > schema::CURRENT => return Err(newer(&self.target.display, v)),
            _ => {}
        }
        let schema = self.target.schema.clone();
        let display = self.target.display.clone();
        let mut tx = self.client.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('spool migrate ' || $1, 0))",
            &[&schema],
        )?;
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))?;
        let tables: Vec<String> = tx
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = $1",
                &[&schema],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !tables.is_empty() && !tables.iter().any(|t| t == "version") {
            return Err(connect::open_error(
                &display,
                format!(
                    "the PostgreSQL schema `{schema}` holds tables that are not spool's. Name another schema with `?schema=NAME` in the URL or {}",
                    connect::SCHEMA_VAR
                ),
            ));
        }
        tx.batch_execute("CREATE TABLE IF NOT EXISTS version (version bigint NOT NULL)")?;
        let version: i64 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM version", &[])?
            .get(0);
        if version > schema::CURRENT {
            return Err(newer(&display, version));
        }
        for step in schema::MIGRATIONS.iter().skip(version as usize) {
            tx.batch_execute(step)?;
        }
        tx.execute("DELETE FROM version", &[])?;
        tx.execute(
            "INSERT INTO version (version) VALUES ($1)",
            &[&schema::CURRENT],
        )?;
        tx.commit()?;
        Ok(())
    }
}

fn newer(display: &str, found: i64) -> Error {
    Error::NewerSchema {
        path: display.into(),
        found,
        supported: schema::CURRENT,
    }
}

/// Typed column access that reports a type mismatch as an error, never a panic.
pub(crate) trait RowExt {
    /// Column `i` as `T`.
    fn at<'a, T: FromSql<'a>>(&'a self, i: usize) -> Result<T>;
}

impl RowExt for Row {
    fn at<'a, T: FromSql<'a>>(&'a self, i: usize) -> Result<T> {
        self.try_get(i).map_err(Error::from)
    }
}

impl From<postgres::Error> for Error {
    fn from(err: postgres::Error) -> Self {
        let reason = match err.code() {
            Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                return lock_timeout(Duration::from_millis(0));
            }
            Some(&SqlState::T_R_DEADLOCK_DETECTED) => format!(
                "PostgreSQL ended this command's transaction to break a deadlock with another one ({}), and retrying did not get past it. A longer `--busy-timeout` does not help",
                describe(&err)
            ),
            Some(&SqlState::T_R_SERIALIZATION_FAILURE) => format!(
                "this command's transaction conflicted with a concurrent one ({}), and retrying did not get past it. A longer `--busy-timeout` does not help",
                describe(&err)
            ),
            Some(&SqlState::TOO_MANY_CONNECTIONS) => format!(
                "the PostgreSQL server has no connection slot free ({}). Wait for other clients to finish, or raise the server's `max_connections`",
                describe(&err)
            ),
            _ => return Error::Postgres(describe(&err)),
        };
        Error::PgBusy { reason }
    }
}

/// A lock wait that passed `lock_timeout` (the busy timeout; 0: unknown here).
fn lock_timeout(timeout: Duration) -> Error {
    let after = if timeout.is_zero() {
        String::new()
    } else {
        format!(" ({})", crate::store::error::duration_text(timeout))
    };
    Error::PgBusy {
        reason: format!(
            "another transaction held a lock this command needed (a row or a queue's lock) for longer than the busy timeout{after}. Try again, or raise `--busy-timeout` if such waits are expected"
        ),
    }
}

/// How many times [`PostgresStore::retrying`] runs a transaction at most.
const MAX_TRIES: u32 = 10;

impl PostgresStore {
    /// Runs `attempt`, one whole transaction, again when PostgreSQL ended it
    /// for a deadlock or a serialization failure (nothing of it was
    /// committed): at most [`MAX_TRIES`] times and no longer than the busy
    /// timeout, after a short random pause that grows with each try. Other
    /// errors, and the last conflict, are returned as they are.
    pub(crate) fn retrying<T, E>(
        &mut self,
        mut attempt: impl FnMut(&mut PostgresStore) -> Result<T, E>,
    ) -> Result<T, E> {
        let start = std::time::Instant::now();
        let mut tries = 0;
        loop {
            self.conn.get_mut().conflict = false;
            let outcome = attempt(self);
            let conn = self.conn.get_mut();
            if outcome.is_ok() || !conn.conflict {
                return outcome;
            }
            tries += 1;
            if tries >= MAX_TRIES || start.elapsed() >= conn.busy_timeout {
                return outcome;
            }
            let cap_us = (1_000u64 << tries.min(6)).min(50_000);
            std::thread::sleep(Duration::from_micros(
                cap_us / 4 + crate::store::receipt::random_below(cap_us * 3 / 4),
            ));
        }
    }
}

/// The server's message and SQLSTATE, or the client's reason.
fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None if err.is_closed() => {
            "the connection to the PostgreSQL server was lost. Try again".to_owned()
        }
        None => causes(err),
    }
}

/// `err` and its sources, each said once.
fn causes(err: &postgres::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}
