//! [`AdminTx`]: the statements of replay, purge and queue deletion
//! (`ops::admin`), and the replay candidate they take.

use super::lease::LeaseTx;
use super::read::ReadTx;
use crate::store::error::Result;
use crate::store::types::{QueueRow, State};

/// The statements of replay, purge and queue deletion.
pub trait AdminTx: LeaseTx + ReadTx {
    /// The queue or topic named `name` for a replay into it, a queue with
    /// default settings created if it does not exist. On PostgreSQL its name
    /// is held shared until commit (see `postgres::queues::lock_shared`), as
    /// by every writer that adds deliveries; SQLite's writers take turns.
    fn replay_target(&mut self, name: &str) -> Result<QueueRow>;

    /// Holds the name `name` exclusively until commit, for deleting it
    /// (PostgreSQL: see `postgres::queues::lock_exclusive`). Nothing by
    /// default: SQLite's writers take turns.
    fn lock_name_exclusive(&mut self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Locks the existing group heads of `groups` (sorted, distinct) in
    /// `queue` in key order (PostgreSQL). Nothing by default.
    fn lock_heads(&mut self, _queue: i64, _groups: &[&str]) -> Result<()> {
        Ok(())
    }

    /// Makes `msg` the head of `group` in `queue` unless the group already
    /// has an unfinished head. True when `msg` is the head.
    fn enter_group(&mut self, queue: i64, group: &str, msg: i64) -> Result<bool>;

    /// Puts a finished delivery back in `state`: attempts reset, no lease,
    /// not done, visible from [`super::tx::Tx::now`], expiring at
    /// `expires_at`. Counting it is the caller's.
    fn reset_delivery(
        &mut self,
        queue: i64,
        msg: i64,
        state: State,
        expires_at: Option<i64>,
    ) -> Result<()>;

    /// Adds a delivery of message `row.id` to `queue` in `row.state`, with
    /// its priority and group, visible from [`super::tx::Tx::now`], checked
    /// against schema `version`, with its own TTL, expiring at `expires_at`.
    /// Counting it is the caller's.
    fn add_delivery(
        &mut self,
        queue: i64,
        row: &ReplayRow,
        version: Option<i64>,
        expires_at: Option<i64>,
    ) -> Result<()>;

    /// Deletes the deliveries of `queue` in `state` and returns their
    /// messages and groups. Counting them is the caller's.
    fn delete_in_state(&mut self, queue: i64, state: State) -> Result<Vec<(i64, Option<String>)>>;

    /// How many messages of `queue` are not acked.
    fn pending(&mut self, queue: i64) -> Result<i64>;

    /// Deletes every delivery of `queue` and returns their messages.
    fn delete_deliveries(&mut self, queue: i64) -> Result<Vec<i64>>;

    /// Deletes the row of queue or topic `queue` and everything that hangs
    /// on it but deliveries and messages: groups, rates or stats,
    /// subscriptions (to it and of it), schemas.
    fn drop_queue(&mut self, queue: i64) -> Result<()>;

    /// Notes that rows were deleted, so the commit may hand free pages back
    /// (SQLite). Nothing by default.
    fn freed_pages(&mut self) {}
}

/// A candidate of a replay: `state` is its state by the lazy rules (not as
/// stored) until it is put back, then the state it is put back in.
#[derive(Debug, Clone)]
pub struct ReplayRow {
    pub id: i64,
    pub state: State,
    pub priority: i64,
    pub group: Option<String>,
    /// The message's own TTL (ms), if it has one.
    pub ttl_ms: Option<i64>,
}
