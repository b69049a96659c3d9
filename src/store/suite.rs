//! The store's behaviour suite: every test written once, against [`Db`] (the
//! API the commands use), and run on both backends. The list at the end
//! makes two tests of each, `store::suite::sqlite::NAME` and
//! `store::suite::postgres::NAME`, so both backends count the same tests.
//!
//! A test is a function `fn name(f: &mut Fixture)`. The [`Fixture`] holds a
//! fresh database: an SQLite file in a temporary folder, or a PostgreSQL
//! schema of its own (dropped at the end) on the server of
//! [`crate::testing::pg_url`]. Without a reachable server the PostgreSQL
//! run fails when `SPOOL_TEST_PG` is set (CI sets it), and is otherwise
//! reported as skipped (see [`crate::testing::no_pg_server`]).
//!
//! Time is not slept away: [`Fixture::advance`] moves the store's clock
//! (see [`crate::store::clock`]). What a test asserts about the stored state
//! goes through the public API (`peek`, `peek_id`, `queue_infos`, health);
//! the few things no API shows (how many message rows there are, a row
//! set up in a state no operation reaches) go through the fixture's raw SQL,
//! written so that it reads the same on both backends.
//!
//! Tests about one backend's internals (query plans, migrations of old
//! files, URLs, TLS, deadlock retries, notifications) stay in
//! `sqlite/tests.rs` and `postgres/tests.rs`.

mod admin;
mod agreement;
mod concurrency;
mod inspect;
mod lease;
mod model;
mod publish;
mod schedules;
mod schemas;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::store::Store;
use crate::store::clock;
use crate::store::ops::publish::with_batch;
use crate::store::postgres::connect;
use crate::store::{
    BrokenSchema, Db, Delivery, Error, NewMessage, Options, PeekQuery, QueueHealth, QueueInfo,
    Receipt, Result, SettingsPatch, State, Sync,
};
pub(crate) use crate::testing::with_param;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An SQLite file.
    Sqlite,
    /// A schema on the PostgreSQL test server.
    Postgres,
}

/// A fresh database for one test, on one backend.
pub(crate) struct Fixture {
    /// The open database the test works on.
    pub db: Db,
    opts: Options,
    // Declared after `db`, so dropped after it: the folder or the schema
    // goes once the connection is closed.
    place: Place,
}

enum Place {
    File(tempfile::TempDir),
    Schema(PgSchema),
}

impl Fixture {
    /// A fresh database on `kind`; `None` (the test is skipped) when the
    /// PostgreSQL server does not answer and `SPOOL_TEST_PG` is not set.
    /// The store's clock of this thread starts at the real time.
    pub fn new(kind: Kind) -> Option<Fixture> {
        clock::set_offset_ms(0);
        let (db, opts, place) = match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let opts = options(dir.path().join("spool.db"));
                let db = Db::open(&opts).expect("open the test database");
                (db, opts, Place::File(dir))
            }
            Kind::Postgres => {
                let (schema, db) = PgSchema::create()?;
                let opts = options(PathBuf::from(&schema.url));
                (db, opts, Place::Schema(schema))
            }
        };
        Some(Fixture { db, opts, place })
    }

    /// The backend.
    pub fn kind(&self) -> Kind {
        match self.place {
            Place::File(_) => Kind::Sqlite,
            Place::Schema(_) => Kind::Postgres,
        }
    }

    /// Another connection to the same database, as another process opens it.
    pub fn open(&self) -> Db {
        Db::open(&self.opts).expect("open")
    }

    /// What the test opens databases with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Moves the store's clock forward by `by` (on this thread).
    pub fn advance(&self, by: Duration) {
        clock::advance(by);
    }

    /// The store's time now, in ms since the epoch: this machine's clock for
    /// SQLite, the server's for PostgreSQL, moved as [`Fixture::advance`]
    /// moved it.
    pub fn now(&self) -> i64 {
        match &self.place {
            Place::File(_) => crate::store::now_ms(),
            Place::Schema(s) => clock::shift(
                s.count("SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint"),
            ),
        }
    }

    /// Publishes `n` messages (bodies `0`, `1`, …) to `queue`, in one batch.
    pub fn publish_n(&mut self, queue: &str, n: usize) -> Vec<i64> {
        publish_n(&mut *self.db, queue, n)
    }

    /// Publishes one message to `queue`.
    pub fn publish(&mut self, queue: &str, msg: NewMessage<'_>) -> Result<i64> {
        publish_one(&mut *self.db, queue, msg)
    }

    /// Message `id` of `queue` as `peek` shows it now: its state (with the
    /// lazy transitions applied) and its attempts.
    pub fn state(&self, queue: &str, id: i64) -> (State, i64) {
        let p = self
            .db
            .peek_id(queue, id)
            .expect("peek")
            .unwrap_or_else(|| panic!("message {id} is not in {queue}"));
        (p.state, p.delivery.attempt)
    }

    /// `queue` as `stats` shows it.
    pub fn info(&self, queue: &str) -> QueueInfo {
        self.db
            .queue_infos_named(&[queue.to_owned()])
            .expect("info")
            .remove(0)
    }

    /// Asserts that the stored per-state counters of `queue` equal a count
    /// of its rows, as `doctor` checks them.
    #[track_caller]
    pub fn assert_counts_match(&self, queue: &str) {
        let health = self.health();
        let q = health
            .queues
            .iter()
            .find(|q| q.name == queue)
            .unwrap_or_else(|| panic!("no queue {queue}"));
        assert_eq!(
            q.counters, q.counted,
            "{queue}: counters vs rows, by state 0..=5"
        );
    }

    /// What `doctor` finds, the same on both backends (see [`health_of`]).
    pub fn health(&self) -> Checked {
        health_of(&self.db)
    }

    /// Runs `doctor --repair`'s repair; returns what it fixed.
    pub fn repair(&mut self) -> usize {
        self.db.repair().expect("repair")
    }

    /// The one number `sql` selects, read by a connection of the test's
    /// own. For what no API shows; write SQL both backends read the same.
    pub fn count(&self, sql: &str) -> i64 {
        match &self.place {
            Place::File(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("spool.db")).expect("open");
                conn.query_row(sql, [], |r| r.get(0)).expect(sql)
            }
            Place::Schema(s) => s.count(sql),
        }
    }

    /// Runs `sql` on a connection of the test's own: to set up rows no
    /// operation makes. Write SQL both backends read the same.
    pub fn execute(&self, sql: &str) {
        match &self.place {
            Place::File(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("spool.db")).expect("open");
                conn.execute_batch(sql).expect(sql);
            }
            Place::Schema(s) => s.client().batch_execute(sql).expect(sql),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        clock::set_offset_ms(0);
    }
}

/// What `doctor` finds on `db` (one report on both backends).
pub(crate) fn health_of(db: &Db) -> Checked {
    let h = db.health().expect("health");
    Checked {
        healthy: h.healthy(),
        ids_safe: h.ids_safe(),
        queues: h.queues,
        orphan_messages: h.orphan_messages,
        missing_messages: h.missing_messages,
        broken_schemas: h.broken_schemas,
    }
}

/// What `doctor` reports, as the suite reads it from either backend.
#[derive(Debug)]
pub(crate) struct Checked {
    /// Every check passed.
    pub healthy: bool,
    /// The next message id is above every stored one.
    pub ids_safe: bool,
    /// Counters and counted rows, per queue.
    pub queues: Vec<QueueHealth>,
    /// Messages no delivery references.
    pub orphan_messages: i64,
    /// Deliveries whose message is missing.
    pub missing_messages: i64,
    /// Schemas in force that no longer compile.
    pub broken_schemas: Vec<BrokenSchema>,
}

fn options(path: PathBuf) -> Options {
    Options {
        location: crate::store::Location::of(&path),
        busy_timeout: Duration::from_secs(5),
        sync: Sync::Normal,
    }
}

/// Runs `test` on a fresh database of `kind`, or reports it skipped.
fn run(kind: Kind, test: fn(&mut Fixture)) {
    if let Some(mut f) = Fixture::new(kind) {
        test(&mut f);
    }
}

// ---------------------------------------------------------------------------
// A PostgreSQL schema of one test (also used by `postgres/tests.rs`).
// ---------------------------------------------------------------------------

/// A schema on the PostgreSQL test server for one test; dropped with
/// everything in it at the end, so tests run in parallel.
pub(crate) struct PgSchema {
    /// The URL naming it (`…?schema=NAME`).
    pub url: String,
    /// Its name.
    pub schema: String,
}

impl PgSchema {
    /// A new spool schema on the test server (made by opening it), or
    /// `None` (after saying so on stderr) when no server answers and
    /// `SPOOL_TEST_PG` is not set; with it set, a missing server fails the
    /// test.
    pub fn new() -> Option<PgSchema> {
        PgSchema::create().map(|(schema, _)| schema)
    }

    /// [`PgSchema::new`], with the database open on it.
    fn create() -> Option<(PgSchema, Db)> {
        let schema = PgSchema::unopened();
        match Db::open(&options(PathBuf::from(&schema.url))) {
            Ok(db) => Some((schema, db)),
            Err(Error::Open { reason, .. }) => {
                crate::testing::no_pg_server(&crate::testing::pg_url(), reason);
                None
            }
            Err(e) => panic!("cannot open the test schema: {e}"),
        }
    }

    /// A fresh schema name on the test server that nothing created yet (and
    /// that is dropped, if something created it, at the end).
    pub fn unopened() -> PgSchema {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!(
            "spool_t{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos % 100_000
        );
        PgSchema {
            url: with_param(&crate::testing::pg_url(), &format!("schema={schema}")),
            schema,
        }
    }

    /// A plain client on the schema, for looking at rows.
    pub fn client(&self) -> ::postgres::Client {
        let target = connect::parse(&self.url).expect("url");
        let mut client = connect::connect(&target).expect("connect");
        client
            .batch_execute(&format!("SET search_path TO \"{}\"", self.schema))
            .expect("search_path");
        client
    }

    /// The one number `sql` selects.
    pub fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).expect(sql).get(0)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(target) = connect::parse(&self.url)
            && let Ok(mut client) = connect::connect(&target)
        {
            let _ = client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers of the tests.
// ---------------------------------------------------------------------------

/// Publishes `n` messages (bodies `0`, `1`, …) to `queue`, in one batch
/// (also for the backends' own tests).
pub(crate) fn publish_n(store: &mut (impl Store + ?Sized), queue: &str, n: usize) -> Vec<i64> {
    with_batch(store, queue, None, |batch| {
        (0..n)
            .map(|i| {
                let body = i.to_string();
                batch.publish(&NewMessage {
                    body: body.as_bytes(),
                    ..NewMessage::default()
                })
            })
            .collect::<Result<Vec<i64>>>()
    })
    .expect("publish")
}

/// Publishes one message to `queue`.
pub(crate) fn publish_one(
    store: &mut (impl Store + ?Sized),
    queue: &str,
    msg: NewMessage<'_>,
) -> Result<i64> {
    with_batch(store, queue, None, |batch| batch.publish(&msg))
}

fn ids(ds: &[Delivery]) -> Vec<i64> {
    ds.iter().map(|d| d.id).collect()
}

fn receipts(ds: &[Delivery]) -> Vec<Receipt> {
    ds.iter().map(|d| d.receipt).collect()
}

fn max_attempts(n: u32) -> SettingsPatch {
    SettingsPatch {
        max_attempts: Some(n),
        ..SettingsPatch::default()
    }
}

/// A peek at every state.
fn all_states(limit: usize) -> PeekQuery {
    PeekQuery {
        ready: true,
        delayed: true,
        leased: true,
        acked: true,
        dead: true,
        limit,
    }
}

/// A peek at one state as users see it (held counts as delayed).
fn only(state: State, limit: usize) -> PeekQuery {
    PeekQuery {
        ready: state == State::Ready,
        delayed: matches!(state, State::Delayed | State::Held),
        leased: state == State::Leased,
        acked: state == State::Acked,
        dead: state == State::Dead,
        limit,
    }
}

// ---------------------------------------------------------------------------
// The list: one test per backend of each.
// ---------------------------------------------------------------------------

/// Makes, for each `module::name`, the tests `sqlite::name` and
/// `postgres::name`, which run `module::name` on a fresh database of that
/// backend.
macro_rules! on_both_backends {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::run(super::Kind::Sqlite, super::$module::$name);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::run(super::Kind::Postgres, super::$module::$name);
                }
            )*
        }
    };
}

on_both_backends! {
    // Claims, receipts and leases.
    lease::claims_go_by_priority_then_id_and_acks_finish_them,
    lease::a_claim_group_answers_each_claim_on_its_own,
    lease::receipts_are_judged_one_by_one,
    lease::extend_keeps_a_lease_and_nack_gives_the_message_back,
    lease::the_last_failed_attempt_makes_a_message_dead,
    lease::counters_follow_every_transition,
    lease::delayed_messages_wait_for_their_time,
    lease::quick_repeated_claims_still_see_expired_leases_and_keep_counts,
    lease::work_step_settles_then_claims_in_one_go,
    lease::work_step_on_a_missing_queue_still_settles,
    lease::retry_on_the_last_attempt_is_dead_and_release_refuses_the_old_receipt,
    lease::release_lease_makes_a_leased_message_ready_without_counting_an_attempt,
    lease::release_lease_leaves_expired_leases_to_the_lazy_rules,
    // Publishing: batches, keys, groups, topics, settings.
    publish::a_failed_batch_publishes_nothing_and_large_bodies_are_refused,
    publish::batches_mixing_full_chunks_keys_and_fan_out_store_every_message,
    publish::a_group_commits_every_job_but_the_ones_that_fail,
    publish::keys_deduplicate_per_name_published_to,
    publish::groups_deliver_one_at_a_time_in_order,
    publish::a_long_group_holds_back_only_itself,
    publish::topics_fan_out_one_message_to_every_subscriber,
    publish::queue_settings_are_created_once_and_changed_by_set,
    publish::ttls_apply_per_subscriber_and_queue_set_retimes_held_messages,
    publish::keys_and_groups_are_refused_alike_where_a_backend_could_not_keep_them,
    // What readers show.
    inspect::stats_count_by_state_and_apply_the_lazy_rules,
    inspect::peek_shows_messages_in_delivery_order_without_changing_them,
    inspect::rate_histories_bucket_by_minute_ending_now,
    inspect::the_sql_of_the_lazy_transitions_agrees_with_the_rule,
    // Replay, purge, retention, deletion, doctor.
    admin::replay_and_purge_keep_counts_exact,
    admin::a_replay_that_finds_nothing_makes_no_target,
    admin::delete_queue_refuses_pending_work_unless_forced,
    admin::retention_zero_deletes_on_ack_and_ids_are_never_reused,
    admin::retention_sweeps_acked_messages_once_it_passed,
    admin::health_finds_orphans_and_repair_removes_them,
    admin::health_checks_schedule_at_and_repair_recomputes_it,
    // JSON Schemas.
    schemas::schema_checks_refuse_whole_batches_and_deliveries_record_the_version,
    schemas::an_invalid_message_is_refused_even_when_its_key_was_seen,
    schemas::raw_bodies_are_refused_where_a_schema_is_in_force,
    schemas::topic_fan_out_meets_the_topic_and_every_subscriber_schema,
    schemas::schema_versions_advance_and_history_keeps_removals,
    schemas::queue_create_is_a_no_op_with_the_same_schema_and_a_conflict_with_another,
    schemas::queue_delete_removes_the_schemas,
    schemas::replay_to_a_queue_with_a_schema_checks_every_message,
    schemas::a_stored_schema_that_no_longer_compiles_is_reported_not_skipped,
    schemas::a_schema_change_waits_for_open_publishes_and_applies_to_the_next,
    // Schedules.
    schedules::every_occurrence_is_published_once_by_the_next_claim,
    schedules::catch_up_latest_publishes_the_newest_and_all_each_one,
    schedules::a_paused_schedule_publishes_nothing_and_resume_catches_up,
    schedules::remove_keeps_what_was_published_and_stops_the_rest,
    schedules::add_is_a_no_op_with_the_same_settings_and_a_conflict_with_others,
    schedules::a_topic_schedule_feeds_every_subscriber,
    schedules::a_full_target_keeps_the_occurrence_due_and_says_why,
    schedules::waiting_consumers_wake_at_the_next_occurrence,
    schedules::racing_claims_publish_each_occurrence_once,
    schedules::a_schedule_whose_rule_no_longer_reads_does_not_stop_claims,
    schedules::cron_occurrences_follow_fields_and_daylight_saving,
    // Several connections at once.
    concurrency::concurrent_consumers_get_every_message_exactly_once,
    concurrency::concurrent_publishers_of_one_key_store_one_message,
    concurrency::concurrent_consumers_keep_each_group_in_order_one_at_a_time,
    // The property test.
    model::random_operations_keep_the_store_invariants,
}
