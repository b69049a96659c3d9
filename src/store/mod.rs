//! All of spool's SQL, behind one trait: [`Store`] (open, publish, claim,
//! ack, nack, extend, queue settings, the read-only views of `peek`, `stats`
//! and `queue list`, and replay, purge and queue deletion). Commands hold a
//! [`Db`] and never see SQL or a backend.
//!
//! # Layout
//!
//! - The API: `api` ([`Store`], every operation with its doc) and `db`
//!   ([`Db`], a `Box<dyn Store>` opened from `--db`).
//! - Backend-neutral values and rules: `types` (messages, deliveries,
//!   settings, results of operations), `error`, `receipt`, `views` (what
//!   `peek`, `stats` and `doctor` report), `checks` (JSON Schema checks),
//!   [`records`] (a whole database as rows, for `spool migrate`),
//!   `counters` (the per-queue counter changes a transaction owes),
//!   `location` (a file or a URL) and `rules`: the queue rules as pure
//!   functions, tested once, as are [`flow`] (flow control) and
//!   [`schedule`] (when a schedule's occurrences fall and which are due).
//! - What a backend offers: `backend`, the transaction traits (`backend/tx`
//!   the base, then one file per area: leases, reading, publishing,
//!   recovery), composed and re-exported by `backend` itself.
//! - The operations, written once in `ops` over those traits, which they
//!   import from `backend` only. No file of the store imports another in a
//!   circle: neutral values and rules, then `backend`, `ops`, the backends
//!   and the API.
//! - The backends, which hold SQL and connection handling only: SQLite
//!   ([`SqliteStore`], in [`sqlite`]) and PostgreSQL ([`PostgresStore`], in
//!   [`postgres`]). Neither imports the other.
//!
//! The rest of this page describes both backends; `postgres` says where
//! PostgreSQL differs.
//!
//! # Data model
//!
//! A message's body is stored once in `messages`; each queue that holds it has
//! its own row in `deliveries` with state, priority, attempts and lease. A topic
//! is a row in `queues` with `is_topic = 1` and rows in `subscriptions`;
//! publishing to it writes one message and a delivery per subscribed queue.
//! Message ids come from `meta.next_message_id`, so they are never reused, also
//! after the newest message was deleted.
//!
//! A queue's or topic's JSON Schemas are rows of `schemas`, one per version
//! (see [`contracts`]); the newest is in force. Each delivery stores in
//! `schema_version` the version of its queue's schema its message was checked
//! against, so a consumer can tell which contract a message met.
//!
//! Claiming walks the partial index `deliveries_ready (queue_id, priority DESC,
//! msg_id) WHERE state = 0`, so finding the next message is one index seek
//! whatever the backlog. Delayed messages and leases wait in `deliveries_waiting
//! (queue_id, visible_at)`; every claim first moves the due ones back to ready
//! (or to dead when a lease ran out on the last allowed attempt). That is how an
//! expired lease becomes deliverable again with no daemon. Readers apply the same
//! rule on the fly, so `peek` and `stats` show an expired lease as ready at once.
//!
//! Per-state counts live in `queues.n_*` and are kept by the same transactions
//! that change states (see [`tx::Tx`]), because counting a million index entries
//! takes about half a second.
//!
//! # Locking
//!
//! The database runs in WAL mode: readers never block the writer and the writer
//! never blocks readers. Every transaction that writes starts with `BEGIN
//! IMMEDIATE`, so it takes the write lock up front and waits for it through the
//! busy timeout (`--busy-timeout`, default 10s); a deferred transaction that
//! upgraded later would fail with `SQLITE_BUSY` without waiting. A lock still
//! held when the timeout passes surfaces as [`Error::Busy`] (exit 75), never as
//! a raw "database is locked". Transactions are short: a claim or an ack is a
//! handful of index operations.
//!
//! Waiting uses spool's own busy handler ([`busy::wait`]): short, jittered
//! sleeps that grow to at most 4 ms. SQLite's default handler backs off to
//! 100 ms sleeps, so under many processes a waiter that just missed the lock
//! sleeps long after it was freed while newcomers take it. Measured with 16
//! consumer processes on a busy 2-core machine, per-call p99 fell from
//! 1.0–1.6 s with SQLite's handler to 0.35–0.55 s with this one, at the same
//! throughput.
//! # Safety checks on open
//!
//! Opening for writing first refuses a database on a network file system
//! ([`netfs`]: NFS, SMB/CIFS, FUSE, …, where WAL locking and shared memory are
//! unreliable; `SPOOL_ALLOW_NETWORK_FS=1` overrides) and a file or folder that
//! cannot be written, before SQLite touches anything. Read-only commands open
//! read-write without CREATE but with `PRAGMA query_only`: SQLite refuses every
//! write, and the last connection to close can still remove the `-wal` and
//! `-shm` files a read needs, which a read-only connection would leave behind.
//! Where the `-shm` file cannot be made (a read-only mount or folder) and there
//! is no WAL file, they read the file as `immutable`: nobody can be writing it.
//!
//! # Durability
//!
//! `--sync full` (the default) sets `PRAGMA synchronous = FULL`: the WAL is
//! fsynced at every commit, so a command that exits 0 has its work on disk even
//! if the machine loses power. `--sync normal` fsyncs only at checkpoints: a
//! crash of the process loses nothing, a power loss may lose the last commits.
//! Each command is one transaction (or, for `publish --stream`, a clear series
//! of them), so `kill -9` at any moment leaves the database consistent.
//! `work` is the exception to one fsync per commit under `--sync full`: it
//! switches `synchronous` per commit ([`SqliteStore::set_sync`]) to group its commits
//! within 100 ms and ends with [`SqliteStore::flush`] (see `commands::work`).
//!
//! # Performance
//!
//! - The SQLite that rusqlite bundles is compiled with the options of the
//!   checkout's `.cargo/config.toml`: it syncs with `fdatasync` (as
//!   Debian's `sqlite3` does; same durability, no timestamp writes),
//!   keeps no global memory statistics (a mutex around every allocation),
//!   leaves out the extensions spool never uses, and touches its page cache
//!   and lookaside memory only as it uses them (`sqlite::tests` checks the
//!   options took effect).
//! - The last connection to close checkpoints the WAL into the database file
//!   (and fsyncs it), then cuts the WAL to nothing and keeps it, with its
//!   `-shm` index, for the next process (`SQLITE_FCNTL_PERSIST_WAL` on
//!   writing connections, `sqlite::persist_wal`, the crate's one `unsafe`):
//!   a lone command no longer creates and deletes both files, about 40 µs of
//!   file system work each on ext4, with the same five fsyncs under `--sync
//!   full` (WAL header, folder, commit; WAL and database at the checkpoint).
//!   `SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE` was measured and rejected:
//!   the next process to open the file rebuilds the WAL index from scratch,
//!   forgets what was already checkpointed, and copies the whole WAL again at
//!   its next auto-checkpoint, so the WAL never restarts and grows without
//!   bound (one publish after a 300k-message batch took 87 ms instead of 3 ms).
//! - `auto_vacuum = INCREMENTAL`, set when the file is created: pages freed by
//!   acks and retention are handed back in small steps by writing commands.
//! - `journal_size_limit = 16 MiB`: once a checkpoint has copied the WAL back
//!   into the database, the WAL file is cut back to 16 MiB, so a burst (a
//!   million-message publish writes a WAL of about 150 MB) does not keep its
//!   disk space.
//! - Hot statements go through `prepare_cached`; a publish batch prepares its
//!   statements once.
//! - Bodies live in `messages`, away from the `deliveries` rows and indexes the
//!   claim query walks.
//! - A publish reads the schema versions in force once per batch and compiles
//!   each schema once per process and version; each body is parsed once
//!   however many schemas (a topic's and its subscribers') it must meet. With
//!   a 12-rule schema a million-line publish ran at 0.75x the speed without
//!   one (2.33 s against 1.74 s, `bench/schema.sh`).

// Backend-neutral: the API's types, the errors and the queue rules.
mod checks;
mod counters;
mod error;
pub mod flow;
mod location;
mod receipt;
pub mod records;
mod rules;
pub mod schedule;
mod types;
mod views;

// What a backend offers, and the operations written once against it.
mod backend;
mod ops;

// The public API: one trait over both backends.
mod api;

// Dispatch between the backends.
mod db;

// Tests only: the clock they move, and the behaviour suite run on both
// backends.
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub mod clock;
#[cfg(test)]
mod suite;

// The backends.
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

pub use api::Store;
pub use db::{Batch, Copied, Db, copy_sqlite_to_postgres, shown};
pub use error::{Error, Result};
pub use location::Location;
pub use location::is_postgres_url;
pub use ops::publish::PublishJob;
pub use ops::schedules::ClaimJob;
pub use postgres::{Migrated, PostgresStore};
pub use receipt::{Receipt, ReceiptError, Release};
pub use rules::{MAX_LABEL_BYTES, backoff, label_problem};
pub use sqlite::{PublishBatch, SqliteStore};
pub(crate) use types::ms;
pub use types::{
    BodyLimit, Created, Delivery, Done, Emit, MAX_BODY_BYTES, NewMessage, Outcome, QueueSet,
    ReplayFilter, Replayed, Schedule, ScheduleSpec, SchemaChange, SchemaVersion, Settings,
    SettingsPatch, Settled, State, Subscribed, Sync, WorkStep, now_ms,
};
pub use views::{
    BrokenSchema, Counts, DatabaseHealth, DatabaseInfo, FileHealth, Health, LastDead, LostSchedule,
    PeekQuery, Peeked, QueueHealth, QueueInfo, RateHistory, STATE_COLUMNS, ScheduleInfo,
    ServerHealth,
};

/// Where the database is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--db`: an SQLite file, or a PostgreSQL URL.
    pub location: Location,
    /// How long to wait for another process's write lock.
    pub busy_timeout: Duration,
    /// Commit durability.
    pub sync: Sync,
}
