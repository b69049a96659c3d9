//! Tests of the PostgreSQL backend against a running server: the URL comes
//! from `SPOOL_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Each test works in its own schema, dropped at the end, so tests run in
//! parallel. Without a reachable server each test says `skipped: …` on
//! stderr and returns.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::super::*;
use super::*;

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
