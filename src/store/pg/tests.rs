//! Tests of the PostgreSQL backend against a running server: the URL comes
//! from `SPOOL_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test works in its own schema, dropped at the end, so tests run in
//! parallel. Without a reachable server each test says `skipped: …` on
//! stderr and returns.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::super::*;
use super::*;
use crate::store::queues::Created;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn base_url() -> String {
    std::env::var("SPOOL_TEST_PG").unwrap_or_else(|_| DEFAULT_URL.to_owned())
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
    /// stderr) when no server is reachable.
    fn new() -> Option<TestDb> {
        let base = base_url();
        let schema = fresh_schema();
        let url = with_param(&base, &format!("schema={schema}"));
        match PgStore::open(&options(&url)) {
            Ok(_) => Some(TestDb { url, schema }),
            Err(Error::Open { reason, .. }) => {
                eprintln!("skipped: PostgreSQL not reachable at {base}: {reason}");
                None
            }
            Err(e) => panic!("cannot open the test schema: {e}"),
        }
    }

    fn open(&self) -> PgStore {
        PgStore::open(&options(&self.url)).expect("open")
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

fn publish_n(store: &mut PgStore, queue: &str, n: usize) -> Vec<i64> {
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

fn publish_one(store: &mut PgStore, queue: &str, msg: NewMessage<'_>) -> Result<i64> {
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
    let err = PgStore::open(&options(url)).expect_err("port 1");
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
                    PgStore::open(&options(&url)).map(|_| ())
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
        PgStore::open_read_only(&options(&url))
            .expect("open")
            .is_none()
    );
    let exists = db.count(&format!(
        "SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"
    ));
    assert_eq!(exists, 0);
    assert!(
        PgStore::open_read_only(&options(&db.url))
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
    let err = PgStore::open(&options(&url)).expect_err("not spool's");
    assert!(err.to_string().contains("not spool's"), "{err}");
    drop(other);
}

#[test]
fn a_newer_schema_version_is_refused() {
    let Some(db) = TestDb::new() else { return };
    db.client()
        .batch_execute("UPDATE version SET version = 99")
        .expect("bump");
    let err = PgStore::open(&options(&db.url)).expect_err("newer");
    assert!(matches!(err, Error::NewerSchema { found: 99, .. }), "{err}");
}

/// The Debian test server's certificate: self-signed, for `localhost`.
const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

#[test]
fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let Some(db) = TestDb::new() else { return };
    let ssl_on = db.count("SELECT count(*) FROM pg_settings WHERE name = 'ssl' AND setting = 'on'");
    if ssl_on == 0 || !std::path::Path::new(SNAKEOIL).exists() {
        eprintln!("skipped: the test server has no TLS with {SNAKEOIL}");
        return;
    }
    let encrypted = |url: &str| -> Result<bool> {
        let store = PgStore::open(&options(url))?;
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
    store.create_queue("q", &max_attempts(2)).expect("create");
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
    store.create_queue("q", &patch).expect("create");
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
    store.create_queue("q", &patch).expect("create");
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
        store.create_queue("q", &patch).expect("create"),
        Created::New
    );
    assert_eq!(
        store.create_queue("q", &patch).expect("again"),
        Created::Existed
    );
    assert_eq!(
        store
            .create_queue("q", &SettingsPatch::default())
            .expect("no settings"),
        Created::Existed
    );
    assert!(matches!(
        store.create_queue("q", &max_attempts(4)),
        Err(Error::SettingsConflict { .. })
    ));
    let set = store.set_queue("q", &max_attempts(7)).expect("set");
    assert_eq!(set.max_attempts, 7);
    assert_eq!(store.settings("q").expect("settings"), Some(set));
    assert_eq!(store.settings("nope").expect("settings"), None);
    match store.set_queue("qq", &patch) {
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
