//! Tests of the PostgreSQL backend's own internals against a running
//! server: URLs, pgpass, TLS, opening and migrating schemas, folding the
//! `stats` rows, notifications, deadlock retries. Queue behaviour, the same on both backends, is tested in
//! `store::suite`. The URL comes from `SPOOL_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test works in its own
//! schema, dropped at the end, so tests run in parallel. Without a reachable
//! server a test fails when `SPOOL_TEST_PG` is set (CI sets it), and
//! otherwise says `SKIPPED: …` on stderr and returns (see
//! [`crate::testing::no_pg_server`]).

use std::time::{Duration, Instant};

use super::super::*;
use super::*;
use crate::store::suite::{PgSchema as TestDb, publish_n, publish_one, with_param};

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

fn ids(ds: &[Delivery]) -> Vec<i64> {
    ds.iter().map(|d| d.id).collect()
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
            "DROP TABLE schedules; ALTER TABLE queues DROP COLUMN schedule_at;
             DROP TABLE schemas; ALTER TABLE deliveries DROP COLUMN schema_version;
             DROP INDEX deliveries_expiring;
             ALTER TABLE deliveries DROP COLUMN expires_at, DROP COLUMN ttl_ms,
               DROP COLUMN dead_reason, DROP COLUMN last_error;
             ALTER TABLE queues DROP COLUMN flow, DROP COLUMN rate_full_at;
             ALTER TABLE stats DROP COLUMN expired, DROP COLUMN dropped;
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
    assert_eq!(db.count("SELECT max(version) FROM version"), 4);
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
