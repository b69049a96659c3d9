//! What a backend offers the operations: a transaction that speaks its SQL
//! dialect. The queue operations (`ops`) are written once against these
//! traits; `sqlite/` and `postgres/` implement them and hold nothing but
//! SQL and connection handling.
//!
//! The layers, each file importing only those above it:
//! - `tx`: [`Tx`], the base every transaction offers: the time it acts at,
//!   the counter changes it owes, wake-ups, and queue rows.
//! - One file per area trait: `lease` [`LeaseTx`] (claim, settle, lazy
//!   transitions, groups), `read` [`ReadTx`] (the views of `peek`, `stats`,
//!   `queue list`, with their row shapes), `publish` [`PublishTx`]
//!   (publish, queues, topics, schemas) and `admin` [`AdminTx`] (replay,
//!   purge, delete), `schedule` [`ScheduleTx`] (schedules and firing).
//! - Here: [`WriteTx`], all of them at once, the transaction write
//!   operations get, and [`Backend`], which opens a transaction, runs an
//!   operation in it and commits (PostgreSQL runs it again after a
//!   deadlock, see `postgres::PostgresStore::retrying`).
//!
//! The traits are object safe: what an operation does inside its
//! transaction is compiled once (over `&mut dyn WriteTx`), and a backend's
//! fast path can still override a whole operation where one statement does
//! what the generic code does in several.

mod admin;
mod lease;
mod publish;
mod read;
mod schedule;
mod tx;

pub(crate) use admin::{AdminTx, ReplayRow};
pub(crate) use lease::LeaseTx;
pub(crate) use publish::{Fanout, Inserter, PublishTx, Tally};
pub(crate) use read::{
    DeadCols, Done, MessageCols, Ranked, ReadTx, ReplayCols, ScheduleAtCols, Stored, StoredCols,
    StoredRow, Timed,
};
pub(crate) use schedule::{
    DUE_SCHEDULES, DUE_WAKE_MS, REFRESH_SCHEDULE_AT, SCHEDULE_AT, SCHEDULE_COLUMNS, ScheduleRow,
    ScheduleState, ScheduleTx,
};
pub(crate) use tx::{Tx, existing_queue, topic_error, unknown_queue};

use super::checks::ContractCache;
use super::error::{Error, Result};

/// The transaction write operations run in: every area's statements.
pub trait WriteTx: Tx + LeaseTx + AdminTx + PublishTx + ReadTx + ScheduleTx {}

impl<T: Tx + LeaseTx + AdminTx + PublishTx + ReadTx + ScheduleTx + ?Sized> WriteTx for T {}

/// An open database, as the operations see it.
pub trait Backend {
    /// Runs `op` in a write transaction and commits it when `op` returns
    /// `Ok`; an error rolls everything back. PostgreSQL runs `op` again in a
    /// fresh transaction after a deadlock or serialization failure, so `op`
    /// must not keep effects outside the transaction between runs.
    fn write_dyn(&mut self, op: &mut dyn FnMut(&mut dyn WriteTx) -> Result<()>) -> Result<()>;

    /// Runs `op` in a read transaction that sees one snapshot throughout.
    fn read_dyn(&self, op: &mut dyn FnMut(&mut dyn ReadTx) -> Result<()>) -> Result<()>;

    /// The JSON Schemas this connection compiled, by queue and version.
    fn contracts(&mut self) -> &mut ContractCache;
}

/// Runs `op` in a write transaction of `store` (see [`Backend::write_dyn`])
/// and returns what it returned.
pub(crate) fn write<R>(
    store: &mut (impl Backend + ?Sized),
    mut op: impl FnMut(&mut dyn WriteTx) -> Result<R>,
) -> Result<R> {
    let mut out = None;
    store.write_dyn(&mut |tx| {
        out = Some(op(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| Error::Internal("a write transaction committed without running".into()))
}

/// Runs `op` in a read transaction of `store` (see [`Backend::read_dyn`])
/// and returns what it returned.
pub(crate) fn read<R>(
    store: &(impl Backend + ?Sized),
    mut op: impl FnMut(&mut dyn ReadTx) -> Result<R>,
) -> Result<R> {
    let mut out = None;
    store.read_dyn(&mut |tx| {
        out = Some(op(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| Error::Internal("a read transaction ended without running".into()))
}
