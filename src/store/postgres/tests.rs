//! Tests of the PostgreSQL backend's own internals against a running
//! server: URLs, pgpass, TLS, opening and migrating schemas, folding the
//! `stats` rows, notifications, deadlock retries (and two benchmarks, run by
//! hand). Queue behaviour, the same on both backends, is tested in
//! `store::suite`. The URL comes from `SPOOL_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test works in its own
//! schema, dropped at the end, so tests run in parallel. Without a reachable
//! server a test fails when `SPOOL_TEST_PG` is set (CI sets it), and
//! otherwise says `SKIPPED: …` on stderr and returns (see
//! [`crate::testing::no_pg_server`]).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::super::*;
use super::*;
use crate::store::suite::{PgSchema as TestDb, with_param};

/// Opens the store of a [`TestDb`].
trait OpenStore {
    fn open(&self) -> PostgresStore;
}

impl OpenStore for TestDb {
    fn open(&self) -> PostgresStore {
        PostgresStore::open(&options(&self.url)).expect("open")
    }
}

fn options(url: &str) -> PgOptions {
    PgOptions {
        url: url.to_owned(),
        busy_timeout: Duration::from_secs(5),
        sync: Sync::Normal,
    }
}

/// Binds a [`TestDb`] and an open store, or returns from the test.
macro_rules! test_db {
    ($db:ident, $store:ident) => {
        let Some($db) = TestDb::new() else { return };
        #[allow(unused_mut)]
        let mut $store = $db.open();
    };
}

fn publish_n(store: &mut PostgresStore, queue: &str, n: usize) -> Vec<i64> {
    store
        .publish_batch(queue, |batch| {
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

fn publish_one(store: &mut PostgresStore, queue: &str, msg: NewMessage<'_>) -> Result<i64> {
    store.publish_batch(queue, |batch| batch.publish(&msg))
}

fn ids(ds: &[Delivery]) -> Vec<i64> {
    ds.iter().map(|d| d.id).collect()
}

fn receipts(ds: &[Delivery]) -> Vec<Receipt> {
    ds.iter().map(|d| d.receipt).collect()
}

// ---- connection ----

#[test]
fn urls_keep_spools_parameters_and_never_show_the_password() {
    let t = connect::parse(
        "postgres://alice:s3cret@db.example:6543/prod?schema=jobs&sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
    )
    .expect("parse");
    assert_eq!(t.schema, "jobs");
    assert_eq!(t.tls, TlsMode::VerifyFull);
    assert_eq!(
        t.root_cert.as_deref(),
        Some(std::path::Path::new("/ca.pem"))
    );
    assert_eq!(t.config.get_password(), Some(&b"s3cret"[..]));
    assert_eq!(t.config.get_application_name(), Some("x"));
    assert_eq!(
        t.display,
        "postgres://alice@db.example:6543/prod?schema=jobs"
    );
    assert_eq!(
        connect::hide_password("postgres://alice:s3cret@h/db"),
        "postgres://alice:***@h/db"
    );
    for bad in [
        "postgres://h/db?schema=Bad",
        "postgres://h/db?schema=pg_x",
        "postgres://h/db?schema=a-b",
        "postgres://h/db?sslmode=sometimes",
        "mysql://h/db",
    ] {
        let err = connect::parse(bad).expect_err(bad);
        assert!(matches!(err, Error::Open { .. }), "{bad}: {err}");
    }
}

#[test]
fn pgpass_lines_match_with_wildcards_and_escapes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("pgpass");
    std::fs::write(
        &file,
        "# comment\nother:5432:*:bob:nope\n*:5432:test:bob:pa\\:ss\\\\word\n",
    )
    .expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let found = connect::pgpass_lookup(&file, ["h", "5432", "test", "bob"]);
    assert_eq!(found.as_deref(), Some("pa:ss\\word"));
    assert_eq!(
        connect::pgpass_lookup(&file, ["h", "5433", "test", "bob"]),
        None
    );
    // Like libpq, a file others can read is ignored.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(
        connect::pgpass_lookup(&file, ["h", "5432", "test", "bob"]),
        None
    );
}

#[test]
fn a_server_that_cannot_be_reached_is_an_open_error_naming_the_host_not_the_password() {
    let url = "postgres://someone:hunter2@127.0.0.1:1/test?connect_timeout=2";
    let err = PostgresStore::open(&options(url)).expect_err("port 1");
    let text = err.to_string();
    assert!(matches!(err, Error::Open { .. }), "{text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(
        crate::error::exit_code(&anyhow::Error::from(err)),
        crate::error::Exit::IoErr
    );
}

#[test]
fn processes_opening_a_fresh_schema_at_once_all_succeed_and_migrate_once() {
    let Some(db) = TestDb::new() else { return };
    // A second, untouched schema, opened by 8 threads at the same moment.
    let cleanup = TestDb::unopened();
    let url = cleanup.url.clone();
    let start = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    PostgresStore::open(&options(&url)).map(|_| ())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread").expect("open");
        }
    });
    assert_eq!(cleanup.count("SELECT count(*) FROM version"), 1);
    assert_eq!(
        cleanup.count("SELECT max(version) FROM version"),
        super::schema::CURRENT
    );
    drop(db);
}

#[test]
fn read_only_open_of_a_missing_schema_is_none_and_creates_nothing() {
    let Some(db) = TestDb::new() else { return };
    let missing = TestDb::unopened();
    let (schema, url) = (&missing.schema, &missing.url);
    assert!(
        PostgresStore::open_read_only(&options(url))
            .expect("open")
            .is_none()
    );
    let exists = db.count(&format!(
        "SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"
    ));
    assert_eq!(exists, 0);
    assert!(
        PostgresStore::open_read_only(&options(&db.url))
            .expect("open")
            .is_some()
    );
}

#[test]
fn a_schema_holding_other_tables_is_refused() {
    let Some(db) = TestDb::new() else { return };
    let other = TestDb::unopened();
    let (schema, url) = (other.schema.clone(), other.url.clone());
    db.client()
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (x int)"
        ))
        .expect("foreign schema");
    let err = PostgresStore::open(&options(&url)).expect_err("not spool's");
    assert!(err.to_string().contains("not spool's"), "{err}");
    drop(other);
}

#[test]
fn a_newer_schema_version_is_refused() {
    let Some(db) = TestDb::new() else { return };
    db.client()
        .batch_execute("UPDATE version SET version = 99")
        .expect("bump");
    let err = PostgresStore::open(&options(&db.url)).expect_err("newer");
    assert!(matches!(err, Error::NewerSchema { found: 99, .. }), "{err}");
}

/// The Debian test server's certificate: self-signed, for `localhost`.
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

#[test]
fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let Some(db) = TestDb::new() else { return };
    let ssl_on = db.count("SELECT count(*) FROM pg_settings WHERE name = 'ssl' AND setting = 'on'");
    if ssl_on == 0 || !std::path::Path::new(SNAKEOIL).exists() {
        crate::testing::skipped(&format!("the test server has no TLS with {SNAKEOIL}"));
        return;
    }
    let encrypted = |url: &str| -> Result<bool> {
        let store = PostgresStore::open(&options(url))?;
        let row = store.conn.borrow_mut().query_opt(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )?;
        Ok(row.is_some_and(|r| r.get::<_, bool>(0)))
    };
    assert!(encrypted(&with_param(&db.url, "sslmode=require")).expect("require"));
    assert!(!encrypted(&with_param(&db.url, "sslmode=disable")).expect("disable"));
    // Self-signed: not trusted by the built-in roots.
    let err = encrypted(&with_param(&db.url, "sslmode=verify-full")).expect_err("untrusted");
    assert!(matches!(err, Error::Open { .. }), "{err}");
    // Trusted, but issued for `localhost`, not 127.0.0.1.
    let trusted = with_param(&db.url, &format!("sslrootcert={SNAKEOIL}"));
    assert!(encrypted(&with_param(&trusted, "sslmode=verify-ca")).expect("verify-ca"));
    let err = encrypted(&with_param(&trusted, "sslmode=verify-full")).expect_err("wrong name");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    if db.url.contains("@127.0.0.1:") {
        let by_name = trusted.replace("@127.0.0.1:", "@localhost:");
        assert!(encrypted(&with_param(&by_name, "sslmode=verify-full")).expect("verify-full"));
    }
}

#[test]
fn housekeeping_folds_stats_rows_and_keeps_the_sums() {
    test_db!(db, store);
    // Twenty publishes, a second apart by the store's clock: one `stats`
    // row each, kept per second (the folding of each writer's housekeeping
    // leaves one row per second for the last hour).
    for _ in 0..20 {
        publish_n(&mut store, "q", 2);
        crate::store::clock::advance(Duration::from_secs(1));
    }
    let qid = db.count("SELECT id FROM queues WHERE name = 'q'");
    let per_second = format!("SELECT count(*) FROM stats WHERE queue_id = {qid}");
    let before = db.count(&per_second);
    assert!(before >= 20, "{before}");
    // Two hours later, a new connection does its housekeeping on its first
    // write: every row older than an hour becomes one.
    crate::store::clock::advance(Duration::from_secs(7200));
    let mut other = db.open();
    publish_n(&mut other, "q", 1);
    let rows = db
        .client()
        .query(
            "SELECT second, published FROM stats WHERE queue_id = $1 ORDER BY second",
            &[&qid],
        )
        .expect("rows")
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 2, "one old row plus the new one: {rows:?}");
    assert_eq!((rows[0].0, rows[0].1, rows[1].1), (0, 40, 1), "{rows:?}");
    let info = store.queue_infos().expect("infos").remove(0);
    assert_eq!((info.counts.ready, info.published_total), (41, 41));
    let health = store.health().expect("health");
    assert!(health.healthy(), "{health:?}");
}

// ---- waiting ----

#[test]
fn a_waiting_consumer_is_woken_by_a_publish_in_another_connection() {
    test_db!(db, store);
    store
        .create_queue("q", &SettingsPatch::default(), None)
        .expect("create");
    let version = store.data_version().expect("version");
    assert!(store.claim("q", 1, None, false).expect("claim").is_empty());
    let publisher = std::thread::spawn({
        let url = db.url.clone();
        move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut other = PostgresStore::open(&options(&url)).expect("open");
            publish_n(&mut other, "other", 1);
            publish_n(&mut other, "q", 1);
        }
    });
    let until = Instant::now() + Duration::from_secs(30);
    assert!(
        store.wait_for_news("q", until).expect("wait"),
        "woken before the deadline"
    );
    assert!(Instant::now() < until);
    publisher.join().expect("publisher");
    assert_ne!(store.data_version().expect("version"), version);
    assert_eq!(store.claim("q", 1, None, false).expect("claim").len(), 1);
}

#[test]
fn a_wait_ends_at_its_deadline_or_when_a_delayed_message_comes_due() {
    test_db!(db, store);
    store.listen().expect("listen");
    publish_n(&mut store, "other", 1);
    let until = Instant::now() + Duration::from_millis(200);
    assert!(
        !store.wait_for_news("q", until).expect("wait"),
        "news of another queue"
    );
    assert!(Instant::now() >= until);
    let now = store.conn.borrow_mut().server_now().expect("now");
    publish_one(
        &mut store,
        "q",
        NewMessage {
            body: b"1",
            available_at: Some(now + 300),
            ..NewMessage::default()
        },
    )
    .expect("publish");
    store.listen().expect("forget the publish's own news");
    let until = Instant::now() + Duration::from_secs(30);
    assert!(
        store.wait_for_news("q", until).expect("wait"),
        "due before the deadline"
    );
    assert_eq!(store.claim("q", 1, None, false).expect("claim").len(), 1);
}

// ---- benchmarks (run with `--ignored --nocapture`, release build) ----

/// Publishes `n` messages in batches of 1000.
/// Which code paths a benchmark consumer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As shipped: one-statement claims and acks where possible.
    Fast,
    /// Full transactions only.
    Slow,
    /// Full transactions, each also updating one shared row.
    Hot,
}

fn fill(store: &mut PostgresStore, queue: &str, n: usize) {
    let body = b"{\"order\":12345,\"items\":[1,2,3]}";
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        store
            .publish_batch(queue, |batch| {
                for _ in chunk {
                    batch.publish(&NewMessage {
                        body,
                        ..NewMessage::default()
                    })?;
                }
                Ok::<_, Error>(())
            })
            .expect("fill");
    }
}

/// 16 connections claim and ack `n` messages, `batch` at a time; returns
/// messages per second. `hot`: the full paths only (no one-statement claim
/// or ack), and every transaction also updates one shared row. `slow`: the
/// full paths only.
fn drain(db: &TestDb, queue: &str, n: usize, batch: usize, mode: Mode, sync: Sync) -> f64 {
    let start = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let mut store = db.open();
                store.set_sync(sync).expect("sync");
                store.conn.get_mut().before_commit = match mode {
                    Mode::Fast => None,
                    Mode::Slow => Some(String::new()),
                    Mode::Hot => {
                        Some("UPDATE queues SET created_at = created_at + 1 WHERE id = 1;".into())
                    }
                };
                loop {
                    let got = store.claim(queue, batch, None, false).expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    store.ack(&receipts(&got)).expect("ack");
                    done.fetch_add(got.len(), Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(done.into_inner(), n);
    n as f64 / start.elapsed().as_secs_f64()
}

/// The same drain on the SQLite store, for comparison: 16 connections to
/// one file.
fn drain_sqlite(n: usize, batch: usize, sync: Sync) -> f64 {
    let dir = tempfile::tempdir().expect("dir");
    let opts = Options {
        location: Location::File(dir.path().join("spool.db")),
        busy_timeout: Duration::from_secs(30),
        sync,
    };
    let mut store = SqliteStore::open(&opts).expect("open");
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        store
            .publish_batch("q", |b| {
                for _ in chunk {
                    b.publish(&NewMessage {
                        body: b"{\"order\":12345,\"items\":[1,2,3]}",
                        ..NewMessage::default()
                    })?;
                }
                Ok::<_, Error>(())
            })
            .expect("fill");
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let mut store = SqliteStore::open(&opts).expect("open");
                loop {
                    let got = store.claim("q", batch, None, false).expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    store.ack(&receipts(&got)).expect("ack");
                }
            });
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "benchmark: prints numbers"]
fn bench_probe() {
    test_db!(db, store);
    for batch in [100, 1] {
        let queue = format!("q{batch}");
        fill(&mut store, &queue, 5000);
        let (mut tc, mut ta, mut n) = (Duration::ZERO, Duration::ZERO, 0);
        let start = Instant::now();
        loop {
            let t = Instant::now();
            let got = store.claim(&queue, batch, None, false).expect("claim");
            tc += t.elapsed();
            if got.is_empty() {
                break;
            }
            let t = Instant::now();
            store.ack(&receipts(&got)).expect("ack");
            ta += t.elapsed();
            n += got.len();
        }
        eprintln!(
            "one consumer, batch {batch}: {:.0} msg/s, claim {tc:?} ack {ta:?}",
            n as f64 / start.elapsed().as_secs_f64()
        );
    }
}

#[test]
#[ignore = "benchmark: prints numbers"]
fn bench_drain_and_publish_latency() {
    test_db!(db, store);
    let cases = [
        (1, 10_000, Mode::Fast, Sync::Full),
        (1, 10_000, Mode::Slow, Sync::Full),
        (1, 10_000, Mode::Hot, Sync::Full),
        (1, 20_000, Mode::Fast, Sync::Normal),
        (1, 20_000, Mode::Slow, Sync::Normal),
        (1, 20_000, Mode::Hot, Sync::Normal),
        (100, 100_000, Mode::Fast, Sync::Full),
        (100, 100_000, Mode::Fast, Sync::Normal),
    ];
    for (i, (batch, n, mode, sync)) in cases.into_iter().enumerate() {
        let queue = format!("drain{i}");
        fill(&mut store, &queue, n);
        let rate = drain(&db, &queue, n, batch, mode, sync);
        eprintln!(
            "drain, 16 consumers, batch {batch}, sync {sync:?}, {mode:?}: {rate:.0} msg/s ({n} messages)"
        );
    }
    for (batch, n) in [(1, 20_000), (100, 100_000)] {
        for sync in [Sync::Full, Sync::Normal] {
            let rate = drain_sqlite(n, batch, sync);
            eprintln!(
                "SQLite drain, 16 connections, batch {batch}, sync {sync:?}: {rate:.0} msg/s"
            );
        }
    }
    let mut times = Vec::new();
    for i in 0..500 {
        let body = format!("{{\"n\":{i}}}");
        let start = Instant::now();
        publish_one(
            &mut store,
            "latency",
            NewMessage {
                body: body.as_bytes(),
                ..NewMessage::default()
            },
        )
        .expect("publish");
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "publish of one message, open connection: p50 {:?}, p99 {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    let mut times = Vec::new();
    for i in 0..200 {
        let url = if i % 2 == 0 {
            db.url.clone()
        } else {
            with_param(&db.url, "sslmode=disable")
        };
        let start = Instant::now();
        let mut fresh = PostgresStore::open(&options(&url)).expect("open");
        publish_one(
            &mut fresh,
            "latency",
            NewMessage {
                body: b"1",
                ..NewMessage::default()
            },
        )
        .expect("publish");
        drop(fresh);
        times.push((i % 2, start.elapsed()));
    }
    for (mode, label) in [(0, "TLS (sslmode=prefer)"), (1, "sslmode=disable")] {
        let mut t: Vec<Duration> = times
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, d)| *d)
            .collect();
        t.sort();
        eprintln!(
            "connect + publish of one message, {label}: p50 {:?}, p99 {:?}",
            percentile(&t, 0.5),
            percentile(&t, 0.99)
        );
    }
}

// ---- JSON Schemas ----

fn contract(text: &str) -> crate::contract::Contract {
    crate::contract::Contract::compile(text).expect("schema")
}

fn versions(ds: &[Delivery]) -> Vec<Option<i64>> {
    ds.iter().map(|d| d.schema_version).collect()
}

#[test]
fn a_version_1_schema_is_migrated_and_old_deliveries_have_no_version() {
    let Some(db) = TestDb::new() else { return };
    let mut client = db.client();
    client
        .batch_execute(
            "DROP TABLE schemas; ALTER TABLE deliveries DROP COLUMN schema_version;
             UPDATE version SET version = 1;
             INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size,
                                 retry_delay_ms, created_at)
               VALUES ('old', 30000, 5, 86400000, 1048576, 1000, 0);
             INSERT INTO messages (id, origin_id, published_at, raw, body)
               VALUES (1, 1, 0, false, '\\x31');
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at)
               VALUES (1, 1, 0, 0, 0);
             INSERT INTO stats (queue_id, second, n_ready, published) VALUES (1, 0, 1, 1);
             SELECT setval('message_ids', 1);",
        )
        .expect("a version 1 schema");
    let mut store = db.open();
    assert_eq!(db.count("SELECT max(version) FROM version"), 2);
    let got = store.claim("old", 1, None, false).expect("claim");
    assert_eq!((ids(&got), versions(&got)), (vec![1], vec![None]));
    assert!(store.schema_history("old").expect("history").is_empty());
    store
        .set_queue(
            "old",
            &SettingsPatch::default(),
            SchemaChange::Set(&contract("true")),
        )
        .expect("set");
    publish_n(&mut store, "old", 1);
    let got = store.claim("old", 1, None, false).expect("claim");
    assert_eq!(versions(&got), [Some(1)]);
}

#[test]
fn conflicts_are_retried_and_other_errors_are_not() {
    test_db!(db, store);
    let _ = &db;
    let mut calls = 0;
    let got: Result<i32> = store.retrying(|s| {
        calls += 1;
        if calls < 3 {
            // As a statement ended by `deadlock detected` leaves it.
            s.conn.get_mut().conflict = true;
            return Err(Error::PgBusy {
                reason: "deadlock".into(),
            });
        }
        Ok(7)
    });
    assert_eq!(got.unwrap(), 7);
    assert_eq!(calls, 3);
    let mut calls = 0;
    let got: Result<i32> = store.retrying(|_| {
        calls += 1;
        Err(Error::Postgres("broken".into()))
    });
    assert!(got.is_err());
    assert_eq!(calls, 1, "only conflicts are retried");
    let mut calls = 0;
    let got: Result<i32> = store.retrying(|s| {
        calls += 1;
        s.conn.get_mut().conflict = true;
        Err(Error::PgBusy {
            reason: "deadlock".into(),
        })
    });
    assert!(matches!(got, Err(Error::PgBusy { .. })));
    assert_eq!(calls, 10, "bounded");
}

#[test]
fn a_real_deadlock_is_reported_as_busy_and_marked_for_retry() {
    test_db!(db, store);
    let _ = &store;
    let mut setup = db.client();
    setup
        .batch_execute("CREATE TABLE dl (id int PRIMARY KEY); INSERT INTO dl VALUES (1), (2)")
        .unwrap();
    let mut a = db.open();
    let mut b = db.open();
    let (ca, cb) = (a.conn.get_mut(), b.conn.get_mut());
    ca.batch("BEGIN; UPDATE dl SET id = id WHERE id = 1")
        .unwrap();
    cb.batch("BEGIN; UPDATE dl SET id = id WHERE id = 2")
        .unwrap();
    let other = std::thread::scope(|scope| {
        let t = scope.spawn(|| cb.batch("UPDATE dl SET id = id WHERE id = 1"));
        std::thread::sleep(Duration::from_millis(200));
        let mine = ca.batch("UPDATE dl SET id = id WHERE id = 2");
        let theirs = t.join().unwrap();
        (mine, theirs)
    });
    let (mine, theirs) = other;
    // One of the two is chosen as the victim; the other then gets its lock.
    let (victim, conn) = match (&mine, &theirs) {
        (Err(_), Ok(())) => (mine, &a),
        (Ok(()), Err(_)) => (theirs, &b),
        _ => panic!("expected exactly one deadlock victim: {mine:?} {theirs:?}"),
    };
    let err = victim.unwrap_err();
    assert!(matches!(err, Error::PgBusy { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("deadlock"), "{text}");
    assert!(text.contains("does not help"), "{text}");
    assert!(conn.conn.borrow().conflict, "not marked for a retry");
    let _ = a.conn.get_mut().batch("ROLLBACK");
    let _ = b.conn.get_mut().batch("ROLLBACK");
}
