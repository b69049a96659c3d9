//! Tests of the PostgreSQL backend against a running server: the URL comes
//! from `SPOOL_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test works in its own schema, dropped at the end, so tests run in
//! parallel. Without a reachable server a test fails when `SPOOL_TEST_PG`
//! is set (CI sets it), and otherwise says `SKIPPED: …` on stderr and
//! returns (see [`crate::testing::no_pg_server`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::super::*;
use super::*;

fn base_url() -> String {
    crate::testing::pg_url()
}

/// A fresh schema name, unique across the tests of every process.
fn fresh_schema() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "spool_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// A schema for one test; dropped with everything in it at the end.
struct TestDb {
    url: String,
    schema: String,
}

impl TestDb {
    /// A new schema on the test server, or `None` (after saying so on
    /// stderr) when no server is reachable and `SPOOL_TEST_PG` is not set;
    /// with it set, a missing server fails the test.
    fn new() -> Option<TestDb> {
        let base = base_url();
        let schema = fresh_schema();
        let url = with_param(&base, &format!("schema={schema}"));
        match PostgresStore::open(&options(&url)) {
            Ok(_) => Some(TestDb { url, schema }),
            Err(Error::Open { reason, .. }) => {
                crate::testing::no_pg_server(&base, reason);
                None
            }
            Err(e) => panic!("cannot open the test schema: {e}"),
        }
    }

    fn open(&self) -> PostgresStore {
        PostgresStore::open(&options(&self.url)).expect("open")
    }

    /// A plain client on the test schema, for looking at rows.
    fn client(&self) -> postgres::Client {
        let target = connect::parse(&self.url).expect("url");
        let mut client = connect::connect(&target).expect("connect");
        client
            .batch_execute(&format!("SET search_path TO \"{}\"", self.schema))
            .expect("search_path");
        client
    }

    fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).expect(sql).get(0)
    }
}

impl Drop for TestDb {
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

fn max_attempts(n: u32) -> SettingsPatch {
    SettingsPatch {
        max_attempts: Some(n),
        ..SettingsPatch::default()
    }
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
    let schema = fresh_schema();
    let url = with_param(&base_url(), &format!("schema={schema}"));
    let cleanup = TestDb {
        url: url.clone(),
        schema: schema.clone(),
    };
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
    let schema = fresh_schema();
    let url = with_param(&base_url(), &format!("schema={schema}"));
    assert!(
        PostgresStore::open_read_only(&options(&url))
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
    let schema = fresh_schema();
    let url = with_param(&base_url(), &format!("schema={schema}"));
    let other = TestDb {
        url: url.clone(),
        schema: schema.clone(),
    };
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

// ---- queues, publish, claim, settle ----

/// The stored per-state counts (summed `stats` deltas) equal a count of the
/// rows, by state 0..=5.
fn assert_counts_match(db: &TestDb, queue: &str) {
    let mut client = db.client();
    let stored: Vec<i64> = (0..6)
        .map(|i| {
            let col = [
                "n_ready",
                "n_delayed",
                "n_leased",
                "n_acked",
                "n_dead",
                "n_held",
            ][i];
            client
                .query_one(
                    &format!(
                        "SELECT coalesce(sum({col}), 0)::bigint FROM stats
                         WHERE queue_id = (SELECT id FROM queues WHERE name = $1)"
                    ),
                    &[&queue],
                )
                .expect("stored")
                .get(0)
        })
        .collect();
    let counted: Vec<i64> = (0..6i64)
        .map(|state| {
            client
                .query_one(
                    "SELECT count(*) FROM deliveries WHERE state = $1
                     AND queue_id = (SELECT id FROM queues WHERE name = $2)",
                    &[&state, &queue],
                )
                .expect("count")
                .get(0)
        })
        .collect();
    assert_eq!(stored, counted, "stats vs rows, by state 0..=5");
}

fn state_of(db: &TestDb, msg: i64) -> (i64, i64) {
    let row = db
        .client()
        .query_one(
            "SELECT state, attempts FROM deliveries WHERE msg_id = $1",
            &[&msg],
        )
        .expect("row");
    (row.get(0), row.get(1))
}

#[test]
fn claims_go_by_priority_then_id_and_acks_finish_them() {
    test_db!(db, store);
    let low = publish_n(&mut store, "q", 3);
    let high = publish_one(
        &mut store,
        "q",
        NewMessage {
            body: b"{\"urgent\":true}",
            priority: 5,
            headers: Some("{\"h\":\"v\"}"),
            ..NewMessage::default()
        },
    )
    .expect("publish");
    assert!(low.windows(2).all(|w| w[0] < w[1]) && low[2] < high);
    let got = store.claim("q", 2, None, false).expect("claim");
    assert_eq!(ids(&got), [high, low[0]]);
    assert_eq!(got[0].body, b"{\"urgent\":true}");
    assert_eq!(got[0].headers.as_deref(), Some("{\"h\":\"v\"}"));
    assert_eq!((got[0].attempt, got[0].priority), (1, 5));
    assert!(got[0].lease_expires_at > got[0].published_at);
    assert_eq!(got[1].body, b"0");
    let outcome = store.ack(&receipts(&got)).expect("ack");
    assert_eq!(outcome, [Ok(()), Ok(())]);
    // Acking again is harmless.
    assert_eq!(store.ack(&receipts(&got)).expect("again"), [Ok(()), Ok(())]);
    // Nack and extend of a finished delivery are refused.
    assert_eq!(
        store
            .nack(&receipts(&got)[..1], Release::Now)
            .expect("nack"),
        [Err(ReceiptError::Finished)]
    );
    let rest = store.claim("q", 10, None, false).expect("claim");
    assert_eq!(ids(&rest), [low[1], low[2]]);
    assert!(store.claim("q", 10, None, false).expect("empty").is_empty());
    assert_eq!(state_of(&db, high), (State::Acked as i64, 1));
    assert_counts_match(&db, "q");
}

#[test]
fn receipts_are_judged_one_by_one() {
    test_db!(db, store);
    publish_n(&mut store, "q", 2);
    let got = store
        .claim("q", 2, Some(Duration::from_millis(1500)), false)
        .expect("claim");
    let unknown_queue = Receipt {
        queue_id: 999_999,
        ..got[0].receipt
    };
    let unknown_msg = Receipt {
        msg_id: 999_999_999,
        ..got[0].receipt
    };
    let wrong_lease = Receipt {
        lease: got[0].receipt.lease ^ 1,
        ..got[0].receipt
    };
    let outcome = store
        .ack(&[unknown_queue, unknown_msg, wrong_lease, got[0].receipt])
        .expect("ack");
    assert_eq!(
        outcome,
        [
            Err(ReceiptError::Unknown),
            Err(ReceiptError::Unknown),
            Err(ReceiptError::LeaseEnded),
            Ok(())
        ]
    );
    // The second lease runs out: its receipt is refused, the message is ready.
    std::thread::sleep(Duration::from_millis(1700));
    assert_eq!(
        store
            .extend(&[got[1].receipt], Duration::from_secs(5))
            .expect("extend"),
        [Err(ReceiptError::LeaseEnded)]
    );
    assert_eq!(
        store.ack(&[got[1].receipt]).expect("ack"),
        [Err(ReceiptError::LeaseEnded)]
    );
    let again = store.claim("q", 1, None, false).expect("claim");
    assert_eq!((again[0].id, again[0].attempt), (got[1].id, 2));
    assert_ne!(again[0].receipt, got[1].receipt);
    assert_counts_match(&db, "q");
}

#[test]
fn extend_keeps_a_lease_and_nack_gives_the_message_back() {
    test_db!(db, store);
    publish_n(&mut store, "q", 2);
    let got = store
        .claim("q", 2, Some(Duration::from_millis(1500)), false)
        .expect("claim");
    assert_eq!(
        store
            .extend(&[got[0].receipt], Duration::from_secs(30))
            .expect("extend"),
        [Ok(())]
    );
    assert_eq!(
        store
            .nack(&[got[1].receipt], Release::After(Duration::from_secs(60)))
            .expect("nack"),
        [Ok(())]
    );
    std::thread::sleep(Duration::from_millis(1700));
    // The extended lease still holds; the nacked message waits out its delay.
    assert!(store.claim("q", 2, None, false).expect("claim").is_empty());
    assert_eq!(state_of(&db, got[1].id), (State::Delayed as i64, 1));
    let due = store.next_due("q").expect("due").expect("some");
    assert!(
        due > got[0].lease_expires_at,
        "the delay ends after the lease"
    );
    assert_eq!(store.ack(&[got[0].receipt]).expect("ack"), [Ok(())]);
    assert_counts_match(&db, "q");
}

#[test]
fn the_last_failed_attempt_makes_a_message_dead() {
    test_db!(db, store);
    store
        .create_queue("q", &max_attempts(2), None)
        .expect("create");
    let [a, b] = publish_n(&mut store, "q", 2)[..] else {
        panic!("two ids")
    };
    // a: nacked twice; b: its lease runs out twice.
    for attempt in 1..=2 {
        let got = store
            .claim("q", 2, Some(Duration::from_millis(1500)), false)
            .expect("claim");
        assert_eq!(ids(&got), [a, b], "attempt {attempt}");
        assert_eq!(
            store.nack(&[got[0].receipt], Release::Now).expect("nack"),
            [Ok(())]
        );
        std::thread::sleep(Duration::from_millis(1700));
    }
    assert!(store.claim("q", 2, None, false).expect("claim").is_empty());
    assert_eq!(state_of(&db, a), (State::Dead as i64, 2));
    assert_eq!(state_of(&db, b), (State::Dead as i64, 2));
    assert_counts_match(&db, "q");
}

#[test]
fn delayed_messages_wait_for_their_time() {
    test_db!(db, store);
    let now = store.conn.borrow_mut().server_now().expect("now");
    let id = publish_one(
        &mut store,
        "q",
        NewMessage {
            body: b"1",
            available_at: Some(now + 1500),
            ..NewMessage::default()
        },
    )
    .expect("publish");
    assert!(store.claim("q", 1, None, false).expect("claim").is_empty());
    assert_eq!(store.next_due("q").expect("due"), Some(now + 1500));
    std::thread::sleep(Duration::from_millis(1700));
    assert_eq!(ids(&store.claim("q", 1, None, false).expect("claim")), [id]);
    assert_counts_match(&db, "q");
}

#[test]
fn retention_zero_deletes_on_ack_and_ids_are_never_reused() {
    test_db!(db, store);
    let patch = SettingsPatch {
        retention: Some(Duration::ZERO),
        ..SettingsPatch::default()
    };
    store.create_queue("q", &patch, None).expect("create");
    let first = publish_n(&mut store, "q", 3);
    let got = store.claim("q", 3, None, true).expect("claim and ack");
    assert_eq!(ids(&got), first);
    assert_eq!(db.count("SELECT count(*) FROM deliveries"), 0);
    assert_eq!(db.count("SELECT count(*) FROM messages"), 0);
    // A repeated ack of a deleted delivery is still harmless.
    assert_eq!(store.ack(&receipts(&got)[..1]).expect("ack"), [Ok(())]);
    let next = publish_n(&mut store, "q", 1);
    assert!(next[0] > first[2]);
    assert_counts_match(&db, "q");
}

#[test]
fn a_failed_batch_publishes_nothing_and_large_bodies_are_refused() {
    test_db!(db, store);
    let patch = SettingsPatch {
        max_size: Some(4),
        ..SettingsPatch::default()
    };
    store.create_queue("q", &patch, None).expect("create");
    let result = store.publish_batch("q", |batch| {
        batch.publish(&NewMessage {
            body: b"1",
            ..NewMessage::default()
        })?;
        batch.publish(&NewMessage {
            body: b"12345",
            ..NewMessage::default()
        })
    });
    assert!(matches!(result, Err(Error::TooLarge { size: 5, limit: 4 })));
    assert_eq!(db.count("SELECT count(*) FROM messages"), 0);
    assert_eq!(store.max_size("q").expect("max"), 4);
    assert!(matches!(
        publish_one(&mut store, "bad name", NewMessage::default()),
        Err(Error::BadName { .. })
    ));
}

#[test]
fn keys_deduplicate_per_name_published_to() {
    test_db!(db, store);
    let keyed = |key| NewMessage {
        body: b"{}",
        key: Some(key),
        ..NewMessage::default()
    };
    let ids = store
        .publish_batch("q", |batch| {
            let a = batch.publish(&keyed("k"))?;
            let plain = batch.publish(&NewMessage {
                body: b"2",
                ..NewMessage::default()
            })?;
            let again = batch.publish(&keyed("k"))?;
            Ok::<_, Error>([a, plain, again])
        })
        .expect("publish");
    assert_eq!(ids[0], ids[2]);
    assert_ne!(ids[0], ids[1]);
    // In a later batch too, and from another thread's connection.
    assert_eq!(
        publish_one(&mut store, "q", keyed("k")).expect("again"),
        ids[0]
    );
    let mut other = db.open();
    assert_eq!(
        publish_one(&mut other, "q", keyed("k")).expect("other"),
        ids[0]
    );
    // Another queue has its own keys.
    assert_ne!(publish_one(&mut store, "r", keyed("k")).expect("r"), ids[0]);
    assert_eq!(db.count("SELECT count(*) FROM deliveries"), 3);
    assert_counts_match(&db, "q");
}

#[test]
fn groups_deliver_one_at_a_time_in_order() {
    test_db!(db, store);
    let grouped = |g| NewMessage {
        body: b"{}",
        group: Some(g),
        ..NewMessage::default()
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..3 {
        a.push(publish_one(&mut store, "q", grouped("a")).expect("a"));
        b.push(publish_one(&mut store, "q", grouped("b")).expect("b"));
    }
    let first = store.claim("q", 10, None, false).expect("claim");
    assert_eq!(ids(&first), [a[0], b[0]], "one per group");
    assert!(store.claim("q", 10, None, false).expect("claim").is_empty());
    // A nack with a delay keeps the group waiting.
    store
        .nack(&[first[0].receipt], Release::After(Duration::from_secs(60)))
        .expect("nack");
    store.ack(&[first[1].receipt]).expect("ack");
    let second = store.claim("q", 10, None, false).expect("claim");
    assert_eq!(ids(&second), [b[1]]);
    store.ack(&receipts(&second)).expect("ack");
    let third = store.claim("q", 10, None, false).expect("claim");
    assert_eq!(ids(&third), [b[2]]);
    store.ack(&receipts(&third)).expect("ack");
    assert!(store.claim("q", 10, None, false).expect("claim").is_empty());
    assert_eq!(db.count("SELECT count(*) FROM group_heads"), 1, "only a");
    assert_counts_match(&db, "q");
}

#[test]
fn topics_fan_out_one_message_to_every_subscriber() {
    test_db!(db, store);
    for queue in ["a", "b", "c"] {
        assert_eq!(store.subscribe("t", queue).expect("sub"), Subscribed::New);
    }
    assert_eq!(store.subscribe("t", "a").expect("sub"), Subscribed::Existed);
    assert_eq!(
        store.subscribers("t").expect("subs"),
        Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
    assert_eq!(store.subscribers("a").expect("subs"), None);
    let sent = publish_n(&mut store, "t", 5);
    assert_eq!(db.count("SELECT count(*) FROM messages"), 5);
    assert_eq!(db.count("SELECT count(*) FROM deliveries"), 15);
    for queue in ["a", "b", "c"] {
        let got = store.claim(queue, 10, None, false).expect("claim");
        assert_eq!(ids(&got), sent);
        assert_counts_match(&db, queue);
    }
    assert!(matches!(
        store.claim("t", 1, None, false),
        Err(Error::NameIsTopic { .. })
    ));
    assert_eq!(
        store.unsubscribe("t", "b").expect("unsub"),
        vec!["a".to_owned(), "c".to_owned()]
    );
    assert!(matches!(
        store.unsubscribe("t", "b"),
        Err(Error::NotSubscribed { .. })
    ));
    // A queue holding messages cannot become a topic; a topic cannot subscribe.
    assert!(matches!(
        store.subscribe("a", "x"),
        Err(Error::NameHoldsMessages { .. })
    ));
    assert!(matches!(
        store.subscribe("u", "t"),
        Err(Error::TopicSubscribes { .. })
    ));
    assert!(matches!(
        store.subscribe("t", "t"),
        Err(Error::SelfSubscription { .. })
    ));
    store.unsubscribe("t", "a").expect("unsub");
    store.unsubscribe("t", "c").expect("unsub");
    assert!(matches!(
        publish_one(&mut store, "t", NewMessage::default()),
        Err(Error::NoSubscribers { .. })
    ));
}

#[test]
fn queue_settings_are_created_once_and_changed_by_set() {
    test_db!(db, store);
    let patch = max_attempts(3);
    assert_eq!(
        store.create_queue("q", &patch, None).expect("create"),
        Created::New
    );
    assert_eq!(
        store.create_queue("q", &patch, None).expect("again"),
        Created::Existed
    );
    assert_eq!(
        store
            .create_queue("q", &SettingsPatch::default(), None)
            .expect("no settings"),
        Created::Existed
    );
    assert!(matches!(
        store.create_queue("q", &max_attempts(4), None),
        Err(Error::SettingsConflict { .. })
    ));
    let set = store
        .set_queue("q", &max_attempts(7), SchemaChange::Keep)
        .expect("set");
    assert_eq!(set.settings.max_attempts, 7);
    assert_eq!(set.schema_version, None);
    assert_eq!(store.settings("q").expect("settings"), Some(set.settings));
    assert_eq!(store.settings("nope").expect("settings"), None);
    match store.set_queue("qq", &patch, SchemaChange::Keep) {
        Err(Error::UnknownQueue { similar, .. }) => assert_eq!(similar, ["q"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.names().expect("names"), ["q"]);
    drop(db);
}

#[test]
fn concurrent_consumers_get_every_message_exactly_once() {
    test_db!(db, store);
    const N: usize = 2000;
    store
        .publish_batch("q", |batch| {
            for i in 0..N {
                batch.publish(&NewMessage {
                    body: i.to_string().as_bytes(),
                    ..NewMessage::default()
                })?;
            }
            Ok::<_, Error>(())
        })
        .expect("publish");
    let seen = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..8 {
            let (db, seen) = (&db, &seen);
            s.spawn(move || {
                let mut store = db.open();
                let mut mine = Vec::new();
                loop {
                    let got = store.claim("q", 1 + t % 3, None, false).expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    let outcome = store.ack(&receipts(&got)).expect("ack");
                    assert!(outcome.iter().all(|o| o.is_ok()), "{outcome:?}");
                    mine.extend(ids(&got));
                }
                seen.lock().expect("lock").extend(mine);
            });
        }
    });
    let mut seen = seen.into_inner().expect("seen");
    assert_eq!(seen.len(), N, "no message delivered twice");
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), N, "every message delivered");
    assert_eq!(
        db.count("SELECT count(*) FROM deliveries WHERE state = 3"),
        N as i64
    );
    assert_counts_match(&db, "q");
}

// ---- inspect ----

#[test]
fn stats_count_by_state_and_apply_the_lazy_rules() {
    test_db!(db, store);
    store
        .create_queue("q", &max_attempts(1), None)
        .expect("create");
    publish_n(&mut store, "q", 6);
    let got = store.claim("q", 4, None, false).expect("claim");
    store.ack(&receipts(&got)[..1]).expect("ack");
    store
        .nack(&receipts(&got)[1..2], Release::Now)
        .expect("nack: dead, last attempt");
    // One lease runs out on its last attempt: dead at once for readers.
    let short = store
        .claim("q", 1, Some(Duration::from_millis(1)), false)
        .expect("claim");
    std::thread::sleep(Duration::from_millis(20));
    let infos = store.queue_infos().expect("infos");
    assert_eq!(infos.len(), 1);
    let q = &infos[0];
    assert_eq!(
        q.counts,
        Counts {
            ready: 1,
            delayed: 0,
            leased: 2,
            acked: 1,
            dead: 2
        }
    );
    assert_eq!(q.published_total, 6);
    assert_eq!((q.published_last_minute, q.acked_last_minute), (6, 1));
    assert!(q.oldest_ready_age_ms.is_some());
    assert_eq!(q.settings.max_attempts, 1);
    let dead = store
        .peek(
            "q",
            &PeekQuery {
                ready: false,
                delayed: false,
                leased: false,
                acked: false,
                dead: true,
                limit: 10,
            },
        )
        .expect("peek");
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().any(|p| p.delivery.id == short[0].id));
    assert!(
        dead.iter()
            .all(|p| p.state == State::Dead && p.done_at.is_some())
    );
    let named = store.queue_infos_named(&["q".to_owned()]).expect("named");
    assert_eq!(named[0].counts, q.counts);
    assert!(matches!(
        store.queue_infos_named(&["nope".to_owned()]),
        Err(Error::UnknownQueue { .. })
    ));
    let db_info = store.database_info().expect("db");
    assert!(db_info.size_bytes > 0);
    assert!(!db_info.path.to_string_lossy().contains("password"));
}

#[test]
fn peek_shows_messages_in_delivery_order_without_changing_them() {
    test_db!(db, store);
    let now = store.conn.borrow_mut().server_now().expect("now");
    let later = publish_one(
        &mut store,
        "q",
        NewMessage {
            body: b"\"later\"",
            available_at: Some(now + 60_000),
            key: Some("k"),
            ..NewMessage::default()
        },
    )
    .expect("delayed");
    let plain = publish_n(&mut store, "q", 2);
    let urgent = publish_one(
        &mut store,
        "q",
        NewMessage {
            body: b"1",
            priority: 9,
            raw: true,
            ..NewMessage::default()
        },
    )
    .expect("urgent");
    let leased = store.claim("q", 1, None, false).expect("claim");
    assert_eq!(ids(&leased), [urgent]);
    let all = PeekQuery {
        ready: true,
        delayed: true,
        leased: true,
        acked: true,
        dead: true,
        limit: 10,
    };
    let peeked = store.peek("q", &all).expect("peek");
    let order: Vec<(i64, State)> = peeked.iter().map(|p| (p.delivery.id, p.state)).collect();
    assert_eq!(
        order,
        [
            (plain[0], State::Ready),
            (plain[1], State::Ready),
            (later, State::Delayed),
            (urgent, State::Leased)
        ]
    );
    assert_eq!(peeked[2].due_at, Some(now + 60_000));
    assert_eq!(peeked[2].delivery.key.as_deref(), Some("k"));
    assert!(peeked[3].lease_end.is_some() && peeked[3].delivery.raw);
    let limited = store
        .peek("q", &PeekQuery { limit: 1, ..all })
        .expect("peek");
    assert_eq!(limited.len(), 1);
    let one = store.peek_id("q", urgent).expect("peek id").expect("some");
    assert_eq!((one.state, one.delivery.attempt), (State::Leased, 1));
    assert!(store.peek_id("q", 999_999).expect("none").is_none());
    assert!(matches!(
        store.peek("nope", &all),
        Err(Error::UnknownQueue { .. })
    ));
    // Nothing changed: the next claim still gets the first plain message.
    assert_eq!(
        ids(&store.claim("q", 1, None, false).expect("claim")),
        [plain[0]]
    );
}

#[test]
fn rate_histories_bucket_by_minute_ending_now() {
    test_db!(db, store);
    publish_n(&mut store, "q", 3);
    publish_n(&mut store, "idle", 1);
    let now = store.conn.borrow_mut().server_now().expect("now") / 1000;
    db.client()
        .batch_execute(&format!(
            "INSERT INTO stats (queue_id, second, published, acked) VALUES
               ((SELECT id FROM queues WHERE name = 'q'), {}, 7, 2),
               ((SELECT id FROM queues WHERE name = 'q'), {}, 100, 100);
             DELETE FROM stats WHERE queue_id = (SELECT id FROM queues WHERE name = 'idle');",
            now - 150,
            now - 61 * 60
        ))
        .expect("rates");
    let got = store.rate_histories(5).expect("rates");
    let q = &got["q"];
    assert_eq!(q.published, vec![0, 0, 7, 0, 3]);
    assert_eq!(q.acked, vec![0, 0, 2, 0, 0]);
    assert!(!got.contains_key("idle"), "{got:?}");
    assert_eq!(
        store.rate_histories(500).expect("rates")["q"]
            .published
            .len(),
        60
    );
}

#[test]
fn housekeeping_folds_stats_rows_and_keeps_the_sums() {
    test_db!(db, store);
    for _ in 0..20 {
        publish_n(&mut store, "q", 2);
    }
    let qid = db.count("SELECT id FROM queues WHERE name = 'q'");
    // Move every row into the past, as if written over many seconds.
    db.client()
        .batch_execute(&format!(
            "UPDATE stats SET second = second - 7200 + (random() * 3) :: bigint WHERE queue_id = {qid}"
        ))
        .expect("age");
    // The publishes' own housekeeping folds the rows of every second but
    // the current one, so how many rows they leave depends on how many
    // second boundaries they crossed. Rows that add nothing make sure there
    // are many to fold, whatever the timing.
    db.client()
        .batch_execute(&format!(
            "INSERT INTO stats (queue_id, second)
             SELECT {qid}, extract(epoch FROM clock_timestamp())::bigint - 7200 - g
             FROM generate_series(1, 20) AS g"
        ))
        .expect("more old rows");
    let before = db.count("SELECT count(*) FROM stats");
    assert!(before >= 20, "{before}");
    // A new connection does its housekeeping on its first write.
    let mut other = db.open();
    publish_n(&mut other, "q", 1);
    let after = db.count(&format!(
        "SELECT count(*) FROM stats WHERE queue_id = {qid}"
    ));
    let rows = db
        .client()
        .query("SELECT second, published FROM stats ORDER BY second", &[])
        .expect("rows")
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        .collect::<Vec<_>>();
    assert!(
        after <= 2,
        "folded to one old row plus the new one: {after} {rows:?}"
    );
    let info = store.queue_infos().expect("infos").remove(0);
    assert_eq!((info.counts.ready, info.published_total), (41, 41));
    assert_counts_match(&db, "q");
}

// ---- admin ----

#[test]
fn replay_and_purge_keep_counts_exact() {
    test_db!(db, store);
    publish_n(&mut store, "q", 20);
    let got = store.claim("q", 10, None, false).expect("claim");
    store.ack(&receipts(&got)[..6]).expect("ack");
    let filter = ReplayFilter {
        acked: true,
        ids: vec![got[0].id, got[1].id, got[2].id],
        ..ReplayFilter::default()
    };
    let preview = store.replay_preview("q", &filter, None).expect("preview");
    assert_eq!(preview.ids, ids(&got[..3]));
    let done = store.replay("q", &filter, None).expect("replay");
    assert_eq!(done.ids, ids(&got[..3]));
    let all_acked = ReplayFilter {
        acked: true,
        ..ReplayFilter::default()
    };
    let copied = store
        .replay("q", &all_acked, Some("copy"))
        .expect("replay to");
    assert_eq!(copied.ids, ids(&got[3..6]));
    let again = store
        .replay_preview("q", &all_acked, Some("copy"))
        .expect("preview to");
    assert_eq!(again.skipped, ids(&got[3..6]));
    assert_eq!(store.purge("q", &[State::Ready]).expect("purge"), 13);
    let infos = store.queue_infos().expect("infos");
    let q = infos.iter().find(|i| i.name == "q").expect("q");
    let c = infos.iter().find(|i| i.name == "copy").expect("copy");
    assert_eq!(
        q.counts,
        Counts {
            ready: 0,
            delayed: 0,
            leased: 4,
            acked: 3,
            dead: 0
        }
    );
    assert_eq!((c.counts.ready, c.published_total), (3, 3));
    assert_eq!(db.count("SELECT count(*) FROM deliveries"), 10);
    // The same message in two queues: the copy has the same id and body.
    let copy = store.claim("copy", 3, None, false).expect("claim copy");
    assert_eq!(ids(&copy), ids(&got[3..6]));
    assert_eq!(copy[0].body, got[3].body);
    assert_counts_match(&db, "q");
    assert_counts_match(&db, "copy");
}

#[test]
fn delete_queue_refuses_pending_work_unless_forced() {
    test_db!(db, store);
    publish_n(&mut store, "q", 3);
    store.subscribe("t", "q").expect("sub");
    assert!(matches!(
        store.delete_queue("q", false),
        Err(Error::QueueNotEmpty { pending: 3, .. })
    ));
    assert_eq!(store.delete_queue("q", true).expect("delete"), 3);
    assert_eq!(db.count("SELECT count(*) FROM messages"), 0);
    assert_eq!(db.count("SELECT count(*) FROM subscriptions"), 0);
    assert_eq!(store.names().expect("names"), ["t"]);
    assert!(matches!(
        store.delete_queue("q", true),
        Err(Error::UnknownQueue { .. })
    ));
}

#[test]
fn release_lease_makes_a_leased_message_ready_without_counting_an_attempt() {
    test_db!(db, store);
    store
        .create_queue("q", &max_attempts(1), None)
        .expect("create");
    publish_n(&mut store, "q", 2);
    let got = store.claim("q", 1, None, false).expect("claim");
    let (id, old) = (got[0].id, got[0].receipt);
    assert!(store.release_lease("q", id).expect("release"));
    assert_eq!(state_of(&db, id), (State::Ready as i64, 0));
    assert_eq!(
        store.ack(&[old]).expect("ack"),
        [Err(ReceiptError::LeaseEnded)]
    );
    assert!(!store.release_lease("q", id).expect("again"));
    let again = store.claim("q", 1, None, false).expect("claim again");
    assert_eq!((again[0].id, again[0].attempt), (id, 1));
    assert!(matches!(
        store.release_lease("nope", 1),
        Err(Error::UnknownQueue { .. })
    ));
    assert_counts_match(&db, "q");
}

#[test]
fn retention_sweeps_acked_messages_once_it_passed() {
    test_db!(db, store);
    let patch = SettingsPatch {
        retention: Some(Duration::from_millis(1)),
        ..SettingsPatch::default()
    };
    store.create_queue("q", &patch, None).expect("create");
    publish_n(&mut store, "q", 5);
    let got = store.claim("q", 5, None, false).expect("claim");
    store.ack(&receipts(&got)).expect("ack");
    // Housekeeping runs once a second per connection: a new one sweeps.
    std::thread::sleep(Duration::from_millis(10));
    let mut other = db.open();
    assert!(other.claim("q", 1, None, false).expect("claim").is_empty());
    assert_eq!(db.count("SELECT count(*) FROM deliveries"), 0);
    assert_eq!(db.count("SELECT count(*) FROM messages"), 0);
    assert_eq!(store.queue_infos().expect("infos")[0].counts.acked, 0);
    assert_counts_match(&db, "q");
}

// ---- work ----

#[test]
fn work_step_settles_then_claims_in_one_go() {
    test_db!(db, store);
    store
        .create_queue("q", &max_attempts(2), None)
        .expect("create");
    publish_n(&mut store, "q", 5);
    let first = store.work_step("q", &[], 4, None).expect("step");
    let got = first.claimed.expect("claimed");
    assert_eq!((got.len(), first.lease), (4, Duration::from_secs(30)));
    let done = [
        (got[0].receipt, Outcome::Ack),
        (got[1].receipt, Outcome::Retry),
        (got[2].receipt, Outcome::Release),
    ];
    let second = store.work_step("q", &done, 2, None).expect("step");
    assert_eq!(
        second.settled,
        [
            Ok(Settled::Acked),
            Ok(Settled::Retrying),
            Ok(Settled::Released)
        ]
    );
    assert_eq!(
        ids(&second.claimed.expect("claimed")),
        [got[2].id, got[3].id + 1]
    );
    assert_eq!(state_of(&db, got[1].id), (State::Delayed as i64, 1));
    assert_eq!(state_of(&db, got[2].id), (State::Leased as i64, 1));
    let missing = store
        .work_step("nope", &[(got[3].receipt, Outcome::Ack)], 1, None)
        .expect("step");
    assert_eq!(missing.settled, [Ok(Settled::Acked)]);
    assert!(matches!(missing.claimed, Err(Error::UnknownQueue { .. })));
    // The released message was leased again: its old receipt is refused.
    assert_eq!(
        store.release(&[got[2].receipt]).expect("release"),
        [Err(ReceiptError::LeaseEnded)]
    );
    store.set_sync(Sync::Full).expect("sync");
    store.flush().expect("flush");
    assert_counts_match(&db, "q");
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
        path: dir.path().join("spool.db"),
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

#[test]
fn quick_repeated_claims_still_see_expired_leases_and_keep_counts() {
    test_db!(db, store);
    publish_n(&mut store, "q", 3);
    let first = store
        .claim("q", 1, Some(Duration::from_millis(1)), false)
        .expect("claim");
    std::thread::sleep(Duration::from_millis(20));
    // Within a second of the full claim: the one-statement claim, which must
    // notice the expired lease and leave it to the full path.
    let again = store.claim("q", 1, None, false).expect("claim");
    assert_eq!((again[0].id, again[0].attempt), (first[0].id, 2));
    let next = store.claim("q", 5, None, false).expect("claim");
    assert_eq!(next.len(), 2);
    let mut all = receipts(&next);
    all.push(again[0].receipt);
    all.push(first[0].receipt);
    assert_eq!(
        store.ack(&all).expect("ack"),
        [Ok(()), Ok(()), Ok(()), Err(ReceiptError::LeaseEnded)]
    );
    assert_counts_match(&db, "q");
}

// ---- doctor ----

#[test]
fn health_finds_wrong_counts_and_orphans_and_repair_fixes_them() {
    test_db!(db, store);
    publish_n(&mut store, "q", 3);
    let health = store.health().expect("health");
    assert!(health.healthy(), "{health:?}");
    assert_eq!(health.queues[0].counted[State::Ready as usize], 3);
    assert!(health.ids_safe() && health.size_bytes > 0);
    db.client()
        .batch_execute(
            "INSERT INTO stats (queue_id, second, n_ready, n_dead) VALUES (1, 0, 5, -1);
             INSERT INTO messages (id, origin_id, published_at, raw, body)
               VALUES (999999, 1, 0, false, '\\x31'), (1000000, 1, 0, false, '\\x31');
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at)
               VALUES (1000000, 1, 0, 0, 0);",
        )
        .expect("damage");
    let health = store.health().expect("health");
    assert!(!health.healthy());
    assert!(!health.queues[0].consistent());
    assert_eq!(health.orphan_messages, 1);
    assert!(!health.ids_safe());
    assert_eq!(store.repair().expect("repair"), 3);
    let health = store.health().expect("health");
    assert!(health.healthy(), "{health:?}");
    assert_eq!(store.queue_infos().expect("infos")[0].counts.ready, 4);
    assert_eq!(publish_n(&mut store, "q", 1)[0], 1_000_001);
}

#[test]
fn concurrent_publishers_of_one_key_store_one_message() {
    test_db!(db, store);
    store
        .create_queue("q", &SettingsPatch::default(), None)
        .expect("create");
    let start = std::sync::Barrier::new(6);
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let mut store = db.open();
                    start.wait();
                    publish_one(
                        &mut store,
                        "q",
                        NewMessage {
                            body: b"{}",
                            key: Some("once"),
                            ..NewMessage::default()
                        },
                    )
                    .expect("publish")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(db.count("SELECT count(*) FROM messages"), 1);
    assert_eq!(db.count("SELECT count(*) FROM deliveries"), 1);
    assert_counts_match(&db, "q");
}

#[test]
fn concurrent_consumers_keep_each_group_in_order_one_at_a_time() {
    test_db!(db, store);
    let groups = ["a", "b", "c", "d"];
    let mut sent: std::collections::HashMap<&str, Vec<i64>> = Default::default();
    for i in 0..120 {
        let g = groups[i % 4];
        let id = publish_one(
            &mut store,
            "q",
            NewMessage {
                body: b"{}",
                group: Some(g),
                ..NewMessage::default()
            },
        )
        .expect("publish");
        sent.entry(g).or_default().push(id);
    }
    let in_flight = std::sync::Mutex::new(std::collections::HashSet::<String>::new());
    let done = std::sync::Mutex::new(std::collections::HashMap::<String, Vec<i64>>::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let mut store = db.open();
                let mut idle = 0;
                while idle < 20 {
                    let got = store.claim("q", 1, None, false).expect("claim");
                    let Some(d) = got.first() else {
                        idle += 1;
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    idle = 0;
                    let g = d.group.clone().expect("grouped");
                    assert!(
                        in_flight.lock().expect("lock").insert(g.clone()),
                        "two messages of group {g} leased at once"
                    );
                    done.lock()
                        .expect("lock")
                        .entry(g.clone())
                        .or_default()
                        .push(d.id);
                    // Hold the lease a moment: another consumer getting the
                    // next of this group now would find the group in flight.
                    // (Removed before the ack, so never a false alarm.)
                    std::thread::sleep(Duration::from_millis(1));
                    in_flight.lock().expect("lock").remove(&g);
                    assert_eq!(store.ack(&[d.receipt]).expect("ack"), [Ok(())]);
                }
            });
        }
    });
    let done = done.into_inner().expect("done");
    for g in groups {
        assert_eq!(done[g], sent[g], "group {g} in id order");
    }
    assert_counts_match(&db, "q");
}

// ---- JSON Schemas ----

const ORDER: &str = r#"{
  "type": "object",
  "properties": {"id": {"type": "integer"}, "amount": {"type": "number", "minimum": 0}},
  "required": ["id", "amount"]
}"#;

fn contract(text: &str) -> crate::contract::Contract {
    crate::contract::Contract::compile(text).expect("schema")
}

fn json(body: &str) -> NewMessage<'_> {
    NewMessage {
        body: body.as_bytes(),
        ..NewMessage::default()
    }
}

fn publish_all(store: &mut PostgresStore, queue: &str, bodies: &[&str]) -> Result<Vec<i64>> {
    store.publish_batch(queue, |batch| {
        bodies.iter().map(|b| batch.publish(&json(b))).collect()
    })
}

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

fn info(store: &PostgresStore, name: &str) -> QueueInfo {
    store
        .queue_infos_named(&[name.to_owned()])
        .expect("info")
        .remove(0)
}

fn versions(ds: &[Delivery]) -> Vec<Option<i64>> {
    ds.iter().map(|d| d.schema_version).collect()
}

#[test]
fn schema_checks_refuse_whole_batches_and_deliveries_record_the_version() {
    test_db!(db, store);
    let order = contract(ORDER);
    let none = SettingsPatch::default();
    assert_eq!(
        store
            .create_queue("orders", &none, Some(&order))
            .expect("create"),
        Created::New
    );
    let mut bodies: Vec<String> = (1..=20)
        .map(|i| format!("{{\"id\":{i},\"amount\":{}}}", if i == 17 { -5 } else { i }))
        .collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    match publish_all(&mut store, "orders", &refs) {
        Err(Error::Invalid {
            id: None,
            queue,
            version: 1,
            violation,
        }) => {
            assert_eq!(queue, "orders");
            assert_eq!(violation.pointer, "/amount");
            assert_eq!(
                violation.to_string(),
                "/amount: -5 is less than the minimum of 0"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(db.count("SELECT count(*) FROM messages"), 0);
    match publish_all(&mut store, "orders", &["not json"]) {
        Err(Error::Invalid { violation, .. }) => {
            assert!(violation.reason.contains("not JSON"), "{violation}")
        }
        other => panic!("{other:?}"),
    }
    bodies[16] = "{\"id\":17,\"amount\":17}".into();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let published = publish_all(&mut store, "orders", &refs).expect("valid batch");
    assert_eq!(published.len(), 20);
    // Keyed and grouped messages go their own way into the table.
    let grouped = publish_one(
        &mut store,
        "orders",
        NewMessage {
            key: Some("k"),
            group: Some("g"),
            ..json("{\"id\":21,\"amount\":0}")
        },
    )
    .expect("keyed");
    let peeked = store.peek("orders", &all_states(100)).expect("peek");
    assert_eq!(peeked.len(), 21);
    assert!(peeked.iter().all(|p| p.delivery.schema_version == Some(1)));
    // The full claim, then the one-statement claim of a recent queue.
    let first = store.claim("orders", 1, None, false).expect("claim");
    let rest = store.claim("orders", 100, None, false).expect("claim");
    assert_eq!(first.len() + rest.len(), 21);
    assert!(ids(&rest).contains(&grouped));
    assert_eq!(versions(&first), [Some(1)]);
    assert!(versions(&rest).iter().all(|v| *v == Some(1)));
    assert_eq!(info(&store, "orders").schema_version, Some(1));
    let plain = publish_n(&mut store, "plain", 1);
    let got = store.claim("plain", 1, None, false).expect("claim");
    assert_eq!((ids(&got), versions(&got)), (plain, vec![None]));
    assert_eq!(info(&store, "plain").schema_version, None);
    assert_counts_match(&db, "orders");
}

#[test]
fn an_invalid_message_is_refused_even_when_its_key_was_seen() {
    test_db!(db, store);
    store
        .create_queue("orders", &SettingsPatch::default(), Some(&contract(ORDER)))
        .expect("create");
    let keyed = |body| NewMessage {
        key: Some("k"),
        ..json(body)
    };
    let id = publish_one(&mut store, "orders", keyed("{\"id\":1,\"amount\":1}")).expect("first");
    assert!(matches!(
        publish_one(&mut store, "orders", keyed("{\"id\":1,\"amount\":-1}")),
        Err(Error::Invalid { .. })
    ));
    let again = publish_one(&mut store, "orders", keyed("{\"id\":1,\"amount\":1}")).expect("again");
    assert_eq!(again, id);
    assert_eq!(db.count("SELECT count(*) FROM messages"), 1);
}

#[test]
fn raw_bodies_are_refused_where_a_schema_is_in_force() {
    test_db!(db, store);
    let none = SettingsPatch::default();
    store
        .create_queue("orders", &none, Some(&contract(ORDER)))
        .expect("create");
    let raw = NewMessage {
        body: b"hello",
        raw: true,
        ..NewMessage::default()
    };
    match publish_one(&mut store, "orders", raw) {
        Err(Error::RawBody { name, holder }) => {
            assert_eq!((name, holder), ("orders".into(), "orders".into()))
        }
        other => panic!("{other:?}"),
    }
    store.subscribe("events", "audit").expect("subscribe");
    store.subscribe("events", "orders").expect("subscribe");
    match publish_one(&mut store, "events", raw) {
        Err(e @ Error::RawBody { .. }) => assert!(
            e.to_string().contains(
                "`orders` has a JSON Schema, so messages published to `events` must be JSON"
            ),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.schema_holder("events").expect("holder").as_deref(),
        Some("orders")
    );
    assert_eq!(
        store.schema_holder("orders").expect("holder").as_deref(),
        Some("orders")
    );
    assert_eq!(store.schema_holder("audit").expect("holder"), None);
    assert_eq!(store.schema_holder("missing").expect("holder"), None);
    assert_eq!(db.count("SELECT count(*) FROM messages"), 0);
    publish_one(&mut store, "audit", raw).expect("no schema there");
}

#[test]
fn topic_fan_out_meets_the_topic_and_every_subscriber_schema() {
    test_db!(db, store);
    for q in ["payment", "inventory", "shipping"] {
        store.subscribe("orders", q).expect("subscribe");
    }
    let payment = contract(r#"{"required": ["amount"], "properties": {"amount": {"minimum": 0}}}"#);
    let inventory = contract(r#"{"required": ["sku"], "properties": {"sku": {"type": "string"}}}"#);
    let topic = contract(r#"{"type": "object"}"#);
    let none = SettingsPatch::default();
    let set = |store: &mut PostgresStore, q: &str, c| {
        store
            .set_queue(q, &none, SchemaChange::Set(c))
            .expect("set")
            .schema_version
    };
    assert_eq!(set(&mut store, "payment", &inventory), Some(1));
    assert_eq!(set(&mut store, "payment", &payment), Some(2));
    assert_eq!(set(&mut store, "inventory", &inventory), Some(1));
    assert_eq!(set(&mut store, "orders", &topic), Some(1));
    let refused =
        |store: &mut PostgresStore, body: &str| match publish_one(store, "orders", json(body)) {
            Err(Error::Invalid { queue, version, .. }) => (queue, version),
            other => panic!("{other:?}"),
        };
    assert_eq!(
        refused(&mut store, "{\"amount\":5}"),
        ("inventory".into(), 1)
    );
    assert_eq!(
        refused(&mut store, "{\"amount\":-1,\"sku\":\"a\"}"),
        ("payment".into(), 2)
    );
    assert_eq!(refused(&mut store, "[1]"), ("orders".into(), 1));
    assert_eq!(db.count("SELECT count(*) FROM messages"), 0);
    let id = publish_one(&mut store, "orders", json("{\"amount\":5,\"sku\":\"a\"}")).expect("ok");
    let got: Vec<(i64, Option<i64>)> = ["payment", "inventory", "shipping"]
        .iter()
        .map(|q| {
            let d = store.claim(q, 1, None, false).expect("claim").remove(0);
            (d.id, d.schema_version)
        })
        .collect();
    assert_eq!(got, [(id, Some(2)), (id, Some(1)), (id, None)]);
    assert_eq!(info(&store, "orders").schema_version, Some(1));
    // A topic takes a schema but no settings.
    assert!(matches!(
        store.set_queue("orders", &max_attempts(3), SchemaChange::Keep),
        Err(Error::NameIsTopic { .. })
    ));
    assert!(matches!(
        store.set_queue("orders", &max_attempts(3), SchemaChange::Remove),
        Err(Error::NameIsTopic { .. })
    ));
    assert!(matches!(
        store.set_queue("orders", &none, SchemaChange::Keep),
        Err(Error::NameIsTopic { .. })
    ));
    assert_eq!(
        store
            .set_queue("orders", &none, SchemaChange::Remove)
            .expect("remove")
            .schema_version,
        Some(2)
    );
}

#[test]
fn schema_versions_advance_and_history_keeps_removals() {
    test_db!(db, store);
    let v1 = contract(r#"{"required": ["a"]}"#);
    let v2 = contract(r#"{"required": ["a", "b"]}"#);
    let v2_again = contract("{\n  \"required\": [\"a\", \"b\"]\n}\n");
    let none = SettingsPatch::default();
    store.create_queue("q", &none, Some(&v1)).expect("create");
    let set = |store: &mut PostgresStore, change| {
        store
            .set_queue("q", &none, change)
            .expect("set")
            .schema_version
    };
    publish_one(&mut store, "q", json("{\"a\":1}")).expect("v1");
    assert_eq!(set(&mut store, SchemaChange::Set(&v2)), Some(2));
    assert_eq!(set(&mut store, SchemaChange::Set(&v2_again)), None);
    assert!(matches!(
        publish_one(&mut store, "q", json("{\"a\":1}")),
        Err(Error::Invalid { version: 2, .. })
    ));
    publish_one(&mut store, "q", json("{\"a\":1,\"b\":2}")).expect("v2");
    assert_eq!(set(&mut store, SchemaChange::Remove), Some(3));
    assert_eq!(set(&mut store, SchemaChange::Remove), None);
    publish_one(&mut store, "q", json("\"anything\"")).expect("none");
    assert_eq!(set(&mut store, SchemaChange::Set(&v1)), Some(4));
    publish_one(&mut store, "q", json("{\"a\":2}")).expect("v4");
    let peeked: Vec<Option<i64>> = store
        .peek("q", &all_states(10))
        .expect("peek")
        .iter()
        .map(|p| p.delivery.schema_version)
        .collect();
    assert_eq!(peeked, [Some(1), Some(2), None, Some(4)]);
    let claimed = store.claim("q", 10, None, false).expect("claim");
    assert_eq!(versions(&claimed), peeked);
    let history = store.schema_history("q").expect("history");
    let numbers: Vec<i64> = history.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(history[2].schema, None);
    assert_eq!(history[1].schema.as_deref(), Some(v2.text()));
    assert!(
        history
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );
    assert!(matches!(
        store.schema_history("nope"),
        Err(Error::UnknownQueue { .. })
    ));
    drop(db);
}

#[test]
fn queue_create_is_a_no_op_with_the_same_schema_and_a_conflict_with_another() {
    test_db!(db, store);
    let none = SettingsPatch::default();
    let order = contract(ORDER);
    let same = contract(&ORDER.replace('\n', " "));
    let other = contract(r#"{"type": "object"}"#);
    store
        .create_queue("orders", &none, Some(&order))
        .expect("create");
    for schema in [Some(&same), None] {
        assert_eq!(
            store.create_queue("orders", &none, schema).expect("again"),
            Created::Existed
        );
    }
    assert!(matches!(
        store.create_queue("orders", &none, Some(&other)),
        Err(Error::SettingsConflict { .. })
    ));
    store.create_queue("plain", &none, None).expect("plain");
    assert!(matches!(
        store.create_queue("plain", &none, Some(&other)),
        Err(Error::SettingsConflict { .. })
    ));
    assert_eq!(store.schema_history("orders").expect("history").len(), 1);
    assert!(store.schema_history("plain").expect("history").is_empty());
    drop(db);
}

#[test]
fn queue_delete_removes_the_schemas() {
    test_db!(db, store);
    store
        .create_queue("orders", &SettingsPatch::default(), Some(&contract(ORDER)))
        .expect("create");
    store.delete_queue("orders", false).expect("delete");
    assert_eq!(db.count("SELECT count(*) FROM schemas"), 0);
    publish_one(&mut store, "orders", json("\"no schema now\"")).expect("publish");
    assert!(store.schema_history("orders").expect("history").is_empty());
}

#[test]
fn replay_to_a_queue_with_a_schema_checks_every_message() {
    test_db!(db, store);
    let msgs = publish_all(
        &mut store,
        "history",
        &[
            "{\"id\":1,\"amount\":1}",
            "{\"id\":2,\"amount\":-2}",
            "{\"id\":3,\"amount\":3}",
        ],
    )
    .expect("publish");
    let raw = publish_one(
        &mut store,
        "history",
        NewMessage {
            body: b"text",
            raw: true,
            ..NewMessage::default()
        },
    )
    .expect("raw");
    let got = store.claim("history", 10, None, false).expect("claim");
    store.ack(&receipts(&got)).expect("ack");
    store
        .create_queue("audit", &SettingsPatch::default(), Some(&contract(ORDER)))
        .expect("audit");
    let acked = |ids: &[i64]| ReplayFilter {
        acked: true,
        ids: ids.to_vec(),
        ..ReplayFilter::default()
    };
    for result in [
        store.replay_preview("history", &acked(&[]), Some("audit")),
        store.replay("history", &acked(&[]), Some("audit")),
    ] {
        match result {
            Err(e @ Error::Invalid { id: Some(_), .. }) => {
                assert!(
                    e.to_string()
                        .starts_with(&format!("message {}: /amount", msgs[1])),
                    "{e}"
                );
                assert!(e.to_string().contains("`audit`"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
    match store.replay("history", &acked(&[raw]), Some("audit")) {
        Err(Error::Invalid { id, violation, .. }) => {
            assert_eq!(id, Some(raw));
            assert!(violation.reason.contains("raw text"), "{violation}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.count("SELECT count(*) FROM deliveries WHERE queue_id = (SELECT id FROM queues WHERE name = 'audit')"),
        0
    );
    let done = store
        .replay("history", &acked(&[msgs[0], msgs[2]]), Some("audit"))
        .expect("valid ones");
    assert_eq!(done.ids, [msgs[0], msgs[2]]);
    let replayed = store.claim("audit", 10, None, false).expect("claim");
    assert_eq!(versions(&replayed), [Some(1), Some(1)]);
    // In place, a message keeps the version it was published under.
    store
        .set_queue(
            "history",
            &SettingsPatch::default(),
            SchemaChange::Set(&contract("true")),
        )
        .expect("schema");
    store
        .replay("history", &acked(&[msgs[1]]), None)
        .expect("in place");
    let again = store.claim("history", 1, None, false).expect("claim");
    assert_eq!((ids(&again), versions(&again)), (vec![msgs[1]], vec![None]));
    assert_counts_match(&db, "audit");
}

#[test]
fn a_stored_schema_that_no_longer_compiles_is_reported_not_skipped() {
    test_db!(db, store);
    store
        .create_queue("orders", &SettingsPatch::default(), Some(&contract(ORDER)))
        .expect("create");
    publish_one(&mut store, "orders", json("{\"id\":1,\"amount\":1}")).expect("publish");
    db.client()
        .batch_execute("UPDATE schemas SET schema = '{\"type\": 5}'")
        .expect("break it");
    // A fresh connection: the compiled contract is cached per connection.
    let mut fresh = db.open();
    match publish_one(&mut fresh, "orders", json("{\"id\":2,\"amount\":1}")) {
        Err(e @ Error::BrokenSchema { .. }) => {
            assert!(
                e.to_string().contains("schema version 1 of `orders`"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    let health = fresh.health().expect("health");
    assert!(!health.healthy());
    assert_eq!(health.broken_schemas.len(), 1);
    assert_eq!(
        (
            health.broken_schemas[0].queue.as_str(),
            health.broken_schemas[0].version
        ),
        ("orders", 1)
    );
    fresh
        .set_queue("orders", &SettingsPatch::default(), SchemaChange::Remove)
        .expect("remove");
    publish_one(&mut fresh, "orders", json("{\"id\":2}")).expect("publish");
    assert!(fresh.health().expect("health").healthy());
    assert_eq!(db.count("SELECT count(*) FROM messages"), 2);
}

#[test]
fn a_schema_change_waits_for_open_publishes_and_applies_to_the_next() {
    test_db!(db, store);
    let none = SettingsPatch::default();
    store
        .create_queue("q", &none, Some(&contract("true")))
        .expect("create");
    let url = db.url.clone();
    let mut setter = None;
    store
        .publish_batch("q", |batch| -> Result<()> {
            batch.publish(&json("1"))?;
            let url = url.clone();
            let handle = std::thread::spawn(move || {
                let mut other = PostgresStore::open(&options(&url)).expect("open");
                let c = crate::contract::Contract::compile(r#"{"type": "string"}"#).expect("c");
                other
                    .set_queue("q", &SettingsPatch::default(), SchemaChange::Set(&c))
                    .expect("set")
                    .schema_version
            });
            std::thread::sleep(Duration::from_millis(300));
            // Still waiting for this batch's lock on the queue's name.
            assert!(!handle.is_finished());
            setter = Some(handle);
            Ok(())
        })
        .expect("publish");
    let version = setter.expect("spawned").join().expect("setter");
    assert_eq!(version, Some(2));
    assert!(matches!(
        publish_one(&mut store, "q", json("2")),
        Err(Error::Invalid { version: 2, .. })
    ));
    publish_one(&mut store, "q", json("\"two\"")).expect("meets v2");
    let got = store.claim("q", 10, None, false).expect("claim");
    assert_eq!(versions(&got), [Some(1), Some(2)]);
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

/// The lazy transitions run as SQL in a claim (`lease::promote_due`), in
/// `stats` (the due summary) and in `peek`'s ready rows, and as Rust in
/// `peek_id`: for every combination of stored state, due time and attempts
/// all agree with `rules::effective`.
#[test]
fn the_sql_of_the_lazy_transitions_agrees_with_the_rule() {
    use crate::store::rules::agreement::{DELAYED, LEASED, MAX_ATTEMPTS, expected, tally};
    test_db!(db, store);
    store
        .create_queue("q", &max_attempts(MAX_ATTEMPTS), None)
        .expect("create");
    publish_n(&mut store, "q", LEASED.len());
    let leased = store
        .claim("q", LEASED.len(), Some(Duration::from_secs(600)), false)
        .expect("claim");
    let later = store.conn.borrow_mut().server_now().expect("now") + 3_600_000;
    let delayed: Vec<i64> = DELAYED
        .iter()
        .map(|_| {
            let msg = NewMessage {
                body: b"{}",
                available_at: Some(later),
                ..NewMessage::default()
            };
            publish_one(&mut store, "q", msg).expect("publish")
        })
        .collect();
    let now = store.conn.borrow_mut().server_now().expect("now");
    let mut rows: Vec<(i64, State, i64, i64)> = leased
        .iter()
        .zip(LEASED)
        .map(|(d, (due, attempts))| (d.id, State::Leased, now + due, attempts))
        .collect();
    rows.extend(
        delayed
            .iter()
            .zip(DELAYED)
            .map(|(id, due)| (*id, State::Delayed, now + due, 0)),
    );
    let mut client = db.client();
    for (id, _, visible_at, attempts) in &rows {
        client
            .execute(
                "UPDATE deliveries SET visible_at = $2, attempts = $3 WHERE msg_id = $1",
                &[id, visible_at, attempts],
            )
            .expect("set up");
    }
    let want: Vec<State> = rows
        .iter()
        .map(|(_, state, visible_at, attempts)| expected(*state, *visible_at, *attempts, now))
        .collect();
    assert!(want.contains(&State::Dead) && want.contains(&State::Ready));
    for ((id, ..), state) in rows.iter().zip(&want) {
        let peeked = store.peek_id("q", *id).expect("peek").expect("held");
        assert_eq!(peeked.state, *state, "peek of {id}");
    }
    let ready = PeekQuery {
        ready: true,
        delayed: false,
        leased: false,
        acked: false,
        dead: false,
        limit: 100,
    };
    let mut shown: Vec<i64> = store
        .peek("q", &ready)
        .expect("peek")
        .iter()
        .map(|p| p.delivery.id)
        .collect();
    shown.sort_unstable();
    let mut ready_ids: Vec<i64> = rows
        .iter()
        .zip(&want)
        .filter(|(_, s)| **s == State::Ready)
        .map(|((id, ..), _)| *id)
        .collect();
    ready_ids.sort_unstable();
    assert_eq!(shown, ready_ids, "peek's ready rows");
    let infos = store.queue_infos().expect("stats");
    assert_eq!(infos[0].counts, tally(&want), "stats");
    // A new connection: its first claim takes the full path, with the
    // lazy transitions.
    let mut other = db.open();
    other.claim("q", 0, None, false).expect("claim nothing");
    for ((id, ..), state) in rows.iter().zip(&want) {
        let stored = db.count(&format!("SELECT state FROM deliveries WHERE msg_id = {id}"));
        assert_eq!(
            State::from_i64(stored),
            *state,
            "claim's transition of {id}"
        );
    }
}
