//! The store's public API: [`Store`], one trait that both backends
//! implement, so the compiler checks them against one signature per
//! operation. Commands hold a [`super::Db`], which is a `Box<dyn Store>`
//! opened from `--db`.
//!
//! Every operation is a provided method: it runs the operation written
//! once in `ops` inside a transaction of the backend
//! (`backend::Backend`). A backend overrides a method only where its
//! dialect does the same thing faster: PostgreSQL's one-statement claim
//! and set-based ack. What only a backend can know (its file, its clock,
//! how it waits for news, its health facts) is a required method.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::PublishBatch;
use super::backend::{self, Backend};
use super::error::{Error, Result};
use super::flow::DeadReason;
use super::ops::publish::PublishJob;
use super::ops::schedules::ClaimJob;
use super::ops::{self, admin, inspect, lease, schedules, work};
use super::receipt::{Receipt, ReceiptError, Release};
use super::types::{
    BodyLimit, Created, Delivery, Done, Emit, QueueSet, ReplayFilter, Replayed, Schedule,
    ScheduleSpec, SchemaChange, SchemaVersion, Settings, SettingsPatch, State, Subscribed, Sync,
    WorkStep,
};
use super::views::{
    DatabaseInfo, Health, LastDead, PeekQuery, Peeked, QueueInfo, RateHistory, ScheduleInfo,
};
use crate::contract::Contract;

/// An open spool database: the operations every command uses.
pub trait Store: Backend + std::fmt::Debug {
    // ---- what only the backend knows ----

    /// The SQLite file, or `None` on PostgreSQL.
    fn file(&self) -> Option<&Path>;

    /// The database as messages name it: the file's path, or the URL
    /// without its password.
    fn display(&self) -> String;

    /// A number that changes when other connections commit news.
    fn data_version(&self) -> Result<i64>;

    /// How many connections can usefully write at once: one on SQLite,
    /// whose writers take turns on one lock, more on PostgreSQL, which
    /// writes transactions side by side and commits them together.
    fn writers(&self) -> usize;

    /// How long until the next delayed message or lease of `queue` comes
    /// due, by the clock its times were written with: this machine's for
    /// SQLite, the server's for PostgreSQL (so a skewed client clock cannot
    /// make a waiter wake early, again and again).
    fn due_in(&self, queue: &str) -> Result<Option<Duration>>;

    /// How long until `queue` may deliver more without anyone writing to
    /// it: a delayed message or lease comes due ([`Store::due_in`]), or its
    /// rate allows the next delivery. `None`: only a write can change that.
    fn wake_in(&self, queue: &str) -> Result<Option<Duration>> {
        let due = self.due_in(queue)?;
        let rate = ops::queues::rate_wait(self, queue)?;
        Ok(match (due, rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Waits up to `nap` for news of `queue`: on SQLite by calling `pause`
    /// (which sleeps) and then reading the data version; on PostgreSQL by
    /// sleeping on the connection until a notification wakes it (no query),
    /// then calling `pause` with no time to give signals their say. Returns
    /// true when the wait should end: news, or `pause` asked to stop.
    fn wait_step(
        &self,
        queue: &str,
        version: i64,
        nap: Duration,
        pause: &mut dyn FnMut(Duration) -> bool,
    ) -> Result<bool>;

    /// Sets whether this connection's commits wait for the disk. For a
    /// caller that groups commits (`work`): many quick commits with
    /// [`Sync::Normal`], then one with [`Sync::Full`] (or [`Store::flush`]),
    /// which makes every earlier commit durable too.
    fn set_sync(&mut self, sync: Sync) -> Result<()>;

    /// Makes every commit so far durable, as a commit with `--sync full`
    /// would.
    fn flush(&self) -> Result<()>;

    /// The database's sizes: the file and its WAL and free pages, or the
    /// server-side size of spool's schema.
    fn database_info(&self) -> Result<DatabaseInfo>;

    /// Runs every check of `spool doctor`. Only reads; it counts every row,
    /// so it takes a while on a large database.
    fn health(&self) -> Result<Health>;

    /// Recomputes what can be recomputed (counters from the rows, message
    /// rows no delivery needs, the next message id, each queue's next
    /// scheduled occurrence) and removes schedules whose target is gone;
    /// returns how many things it changed. One write transaction.
    fn repair(&mut self) -> Result<usize>;

    // ---- publishing ----

    /// Publishes to a queue (created if missing) or a topic (fanned out to
    /// its subscribers) in one transaction: `fill` adds messages to the
    /// batch, and they become visible together when it returns `Ok`. If
    /// `fill` fails, nothing is published and its error is returned.
    fn publish_batch<T, E: From<Error>>(
        &mut self,
        name: &str,
        fill: impl FnMut(&mut PublishBatch<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        Self: Sized,
    {
        ops::publish::with_batch(self, name, None, fill)
    }

    /// [`Store::publish_batch`] that also acks the delivery of `ack` in the
    /// same transaction (`publish --ack`): both happen or neither. The
    /// messages come from that delivery: they carry the headers
    /// `spool-cause-queue` and `spool-cause-id`, and its group unless they
    /// name one. A receipt that holds no lease (unknown, run out, or
    /// already acked) publishes nothing: [`Error::Receipt`].
    fn publish_acking<T, E: From<Error>>(
        &mut self,
        name: &str,
        ack: &Receipt,
        fill: impl FnMut(&mut PublishBatch<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        Self: Sized,
    {
        ops::publish::with_batch(self, name, Some(ack), fill)
    }

    /// [`Store::publish_batch`] (or, with `ack`, [`Store::publish_acking`])
    /// for a `fill` that returns the store's own errors; what a `dyn Store`
    /// offers (see `ops::publish::publish_batch`).
    fn publish_dyn(
        &mut self,
        name: &str,
        ack: Option<&Receipt>,
        fill: &mut dyn FnMut(&mut PublishBatch<'_>) -> Result<()>,
    ) -> Result<()> {
        ops::publish::publish_batch(self, name, ack, fill)
    }

    /// Several publishes in one write transaction (one commit): each job
    /// is all or nothing on its own. A job that fails is left out and the
    /// others committed without it; its answer is its own error. An error of
    /// the transaction itself (it could not start or commit) is the outer
    /// error, and then nothing was published. `spool serve` groups its
    /// publish requests with it (see `ops::publish::publish_group`).
    fn publish_group(&mut self, jobs: &mut [PublishJob<'_>]) -> Result<Vec<Result<()>>> {
        ops::publish::publish_group(self, jobs)
    }

    /// The largest body a publish to `name` accepts, and the queue that
    /// sets it: the queue's `max_size`, or for a topic the smallest of its
    /// subscribers'. A name that does not exist yet, or a topic without
    /// subscribers, gets the default. Never over [`MAX_BODY_BYTES`].
    ///
    /// [`MAX_BODY_BYTES`]: crate::store::MAX_BODY_BYTES
    fn body_limit(&self, name: &str) -> Result<BodyLimit> {
        ops::queues::body_limit(self, name)
    }

    // ---- leases ----

    /// Leases up to `max` deliverable messages of `queue` for `visibility`
    /// (default: the queue's), highest priority first, then oldest. With
    /// `ack`, they are acked in the same transaction (at-most-once). A due
    /// occurrence of a schedule that feeds the queue is published first
    /// (see `ops::schedules`).
    fn claim(
        &mut self,
        queue: &str,
        max: usize,
        visibility: Option<Duration>,
        ack: bool,
    ) -> Result<Vec<Delivery>> {
        schedules::claim(self, queue, max, visibility, ack)
    }

    /// Several claims in one transaction (one commit), each answered on its
    /// own as [`Store::claim`] answers it: `spool serve` leases for the
    /// consume requests that arrive together this way.
    fn claim_group(&mut self, jobs: &[ClaimJob<'_>]) -> Result<Vec<Result<Vec<Delivery>>>> {
        schedules::claim_group(self, jobs)
    }

    /// Acks each receipt: the message is done (kept for replay, or deleted
    /// when the queue's retention is 0). Each receipt is judged on its own;
    /// acking again with the receipt that acked is harmless.
    fn ack(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        lease::ack(self, receipts)
    }

    /// Gives each receipt's message back: deliverable again per `release`,
    /// or dead when this was its last allowed attempt.
    /// `reason`, when given, is kept as each message's `last_error`.
    fn nack(
        &mut self,
        receipts: &[Receipt],
        release: Release,
        reason: Option<&str>,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        lease::nack(self, receipts, release, reason)
    }

    /// Pushes each receipt's lease end to now + `by` (a heartbeat).
    fn extend(
        &mut self,
        receipts: &[Receipt],
        by: Duration,
    ) -> Result<Vec<Result<(), ReceiptError>>> {
        lease::extend(self, receipts, by)
    }

    /// One round of `work` (see `ops::work::work_step`): settles what
    /// finished (a failure with the text kept as its `last_error`; a
    /// success with what it emitted published to `emit`), then leases up
    /// to `want` more, in one transaction.
    fn work_step(
        &mut self,
        queue: &str,
        done: &[Done],
        want: usize,
        visibility: Option<Duration>,
        emit: Option<Emit<'_>>,
    ) -> Result<WorkStep> {
        work::work_step(self, queue, done, want, visibility, emit)
    }

    /// Gives leased messages back that no one saw, without counting an
    /// attempt (see `ops::work::release`).
    fn release(&mut self, receipts: &[Receipt]) -> Result<Vec<Result<(), ReceiptError>>> {
        work::release(self, receipts)
    }

    // ---- schedules ----

    /// Adds the schedule `name` (`schedule add`): a missing target queue is
    /// created, the body checked as a publish would check it. An existing
    /// schedule with the same settings is left alone ([`Created::Existed`];
    /// a `start` of `None` is not compared), one with other settings is
    /// [`Error::ScheduleConflict`].
    fn add_schedule(&mut self, name: &str, spec: &ScheduleSpec) -> Result<Created> {
        schedules::add(self, name, spec)
    }

    /// Every schedule, sorted by name. Only reads: a due occurrence shows
    /// as a `next_at` in the past until a claim on the target publishes it.
    fn schedules(&self) -> Result<Vec<Schedule>> {
        schedules::list(self)
    }

    /// Removes the schedule `name` (what it published stays), or
    /// [`Error::UnknownSchedule`].
    fn remove_schedule(&mut self, name: &str) -> Result<()> {
        schedules::remove(self, name)
    }

    /// Pauses or resumes the schedule `name`; false when it already was so.
    /// [`Error::UnknownSchedule`] for an unknown name.
    fn pause_schedule(&mut self, name: &str, paused: bool) -> Result<bool> {
        schedules::set_paused(self, name, paused)
    }

    // ---- queues, topics, schemas ----

    /// Names of every queue and topic, sorted.
    fn names(&self) -> Result<Vec<String>> {
        backend::read(self, |tx| tx.names())
    }

    /// An [`Error::UnknownQueue`] for `name`, with the closest existing names.
    fn unknown_queue(&self, name: &str) -> Error {
        match backend::read(self, |tx| Ok(backend::unknown_queue(tx, name))) {
            Ok(e) | Err(e) => e,
        }
    }

    /// See `ops::queues::create_queue`.
    fn create_queue(
        &mut self,
        name: &str,
        patch: &SettingsPatch,
        schema: Option<&Contract>,
    ) -> Result<Created> {
        ops::queues::create_queue(self, name, patch, schema)
    }

    /// See `ops::queues::set_queue`.
    fn set_queue(
        &mut self,
        name: &str,
        patch: &SettingsPatch,
        schema: SchemaChange<'_>,
    ) -> Result<QueueSet> {
        ops::queues::set_queue(self, name, patch, schema)
    }

    /// A queue's settings; `None` for an unknown name or a topic.
    fn settings(&self, name: &str) -> Result<Option<Settings>> {
        ops::queues::settings(self, name)
    }

    /// The message of queue `name` that died last (as written; a lease
    /// that ran out on its last attempt is written dead by the next claim),
    /// with why and its last failure; `None` when none has died.
    fn last_dead(&self, name: &str) -> Result<Option<LastDead>> {
        backend::read(self, |tx| {
            let q = backend::existing_queue(tx, name)?;
            Ok(tx
                .last_dead(q.id)?
                .map(|(id, died_at, reason, error)| LastDead {
                    id,
                    died_at,
                    dead_reason: reason
                        .as_deref()
                        .and_then(DeadReason::from_name)
                        .unwrap_or(DeadReason::MaxAttempts),
                    last_error: error,
                }))
        })
    }

    /// Every version of the schema of queue or topic `name`, oldest first.
    fn schema_history(&self, name: &str) -> Result<Vec<SchemaVersion>> {
        backend::read(self, |tx| ops::contracts::schema_history(tx, name))
    }

    /// The queue whose schema would refuse a raw body published to `name`.
    fn schema_holder(&self, name: &str) -> Result<Option<String>> {
        backend::read(self, |tx| ops::contracts::schema_holder(tx, name))
    }

    /// See `ops::topics::subscribe`.
    fn subscribe(&mut self, topic: &str, queue: &str) -> Result<Subscribed> {
        ops::topics::subscribe(self, topic, queue)
    }

    /// See `ops::topics::unsubscribe`.
    fn unsubscribe(&mut self, topic: &str, queue: &str) -> Result<Vec<String>> {
        ops::topics::unsubscribe(self, topic, queue)
    }

    /// A topic's subscribers, sorted; `None` when `topic` is not a topic.
    fn subscribers(&self, topic: &str) -> Result<Option<Vec<String>>> {
        ops::topics::subscribers(self, topic)
    }

    // ---- views ----

    /// Every queue and topic, sorted by name, as `stats` and `queue list`
    /// show them.
    fn queue_infos(&self) -> Result<Vec<QueueInfo>> {
        inspect::queue_infos(self)
    }

    /// The id of queue or topic `name`, which its receipts carry; `None`
    /// when there is none.
    fn queue_id(&self, name: &str) -> Result<Option<i64>> {
        inspect::queue_id(self, name)
    }

    /// The named queues or topics, in the order given; an unknown name is
    /// [`Error::UnknownQueue`].
    fn queue_infos_named(&self, names: &[String]) -> Result<Vec<QueueInfo>> {
        inspect::queue_infos_named(self, names)
    }

    /// Every schedule's state (target, next and last occurrence, paused),
    /// sorted by name, as `stats`, `top` and `queue show` show it. Only
    /// reads; unlike [`Store::schedules`], a schedule whose rule no longer
    /// reads is listed too.
    fn schedule_infos(&self) -> Result<Vec<ScheduleInfo>> {
        inspect::schedule_infos(self)
    }

    /// See `ops::inspect::rate_histories`.
    fn rate_histories(&self, minutes: usize) -> Result<HashMap<String, RateHistory>> {
        inspect::rate_histories(self, minutes)
    }

    /// See `ops::inspect::peek`.
    fn peek(&self, queue: &str, query: &PeekQuery) -> Result<Vec<Peeked>> {
        inspect::peek(self, queue, query)
    }

    /// See `ops::inspect::peek_id`.
    fn peek_id(&self, queue: &str, id: i64) -> Result<Option<Peeked>> {
        inspect::peek_id(self, queue, id)
    }

    // ---- recovery ----

    /// See `ops::admin::replay`.
    fn replay(&mut self, queue: &str, filter: &ReplayFilter, to: Option<&str>) -> Result<Replayed> {
        admin::replay(self, queue, filter, to, &mut |_| {})
    }

    /// [`Store::replay`], calling `progress(n)` as messages are replayed.
    fn replay_with_progress(
        &mut self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Replayed> {
        admin::replay(self, queue, filter, to, progress)
    }

    /// See `ops::admin::replay_preview`.
    fn replay_preview(
        &self,
        queue: &str,
        filter: &ReplayFilter,
        to: Option<&str>,
    ) -> Result<Replayed> {
        admin::replay_preview(self, queue, filter, to)
    }

    /// See `ops::admin::purge`.
    fn purge(&mut self, queue: &str, states: &[State]) -> Result<i64> {
        admin::purge(self, queue, states, &mut |_| {})
    }

    /// [`Store::purge`], calling `progress(n)` as messages are removed.
    fn purge_with_progress(
        &mut self,
        queue: &str,
        states: &[State],
        progress: &mut dyn FnMut(u64),
    ) -> Result<i64> {
        admin::purge(self, queue, states, progress)
    }

    /// See `ops::admin::release_lease`.
    fn release_lease(&mut self, queue: &str, id: i64) -> Result<bool> {
        admin::release_lease(self, queue, id)
    }

    /// See `ops::admin::delete_queue`.
    fn delete_queue(&mut self, name: &str, force: bool) -> Result<i64> {
        admin::delete_queue(self, name, force)
    }
}
