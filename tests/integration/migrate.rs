//! `spool migrate`: an SQLite database built through the CLI, copied into a
//! PostgreSQL schema, and checked there row by row and through the store.
//!
//! The server comes from `SPOOL_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test uses a schema of its
//! own, dropped at the end. Without a reachable server the tests that need
//! one fail when `SPOOL_TEST_PG` is set, and otherwise say `SKIPPED: …` on
//! stderr and return.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use spool::store::postgres::{PgOptions, PostgresStore, connect};
use spool::store::{self, Receipt, SqliteStore, Store, Sync};

use crate::common::*;
use crate::schedule_views::{add_schedule, pause_schedule, schedules};

/// Each test reads a SQLite file it builds and writes PostgreSQL schemas of
/// its own, so it runs in the SQLite pass of the suite.
const FROM_SQLITE: &str = "migrate copies a SQLite file to PostgreSQL; the SQLite pass runs it";

fn base_url() -> String {
    pg_url()
}

/// One test's PostgreSQL schema; dropped with everything in it at the end.
struct Pg {
    url: String,
    schema: String,
}

impl Pg {
    /// A fresh schema name on the test server, or `None` (after saying so)
    /// when no server is reachable.
    fn new() -> Option<Pg> {
        let base = base_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!("spool_mig{}_{}", std::process::id(), nanos);
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}schema={schema}");
        let pg = Pg { url, schema };
        match connect::parse(&base).and_then(|t| connect::connect(&t)) {
            Ok(_) => Some(pg),
            Err(e) => {
                no_pg_server(&base, e);
                None
            }
        }
    }

    fn client(&self) -> postgres::Client {
        let target = connect::parse(&self.url).unwrap();
        let mut client = connect::connect(&target).unwrap();
        client
            .batch_execute(&format!("SET search_path TO \"{}\"", self.schema))
            .unwrap();
        client
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::open(&PgOptions {
            url: self.url.clone(),
            busy_timeout: Duration::from_secs(10),
            sync: Sync::Normal,
        })
        .unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Ok(mut client) = connect::parse(&self.url).and_then(|t| connect::connect(&t)) {
            let _ = client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ));
        }
    }
}

const ORDER: &str =
    r#"{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}"#;

/// A database with every kind of row: queues with settings and schema
/// versions, a topic with subscribers, ready, delayed, leased, acked, dead
/// and held (grouped) messages, keys, headers, raw bodies, priorities.
/// Returns the receipt of a lease still running.
fn build(env: &Env) -> String {
    let loose = env.path("object.json");
    std::fs::write(&loose, "{\"type\": \"object\"}").unwrap();
    let schema = env.path("order.json");
    std::fs::write(&schema, ORDER).unwrap();
    let (loose, schema) = (loose.to_str().unwrap(), schema.to_str().unwrap());
    let ok = |args: &[&str]| {
        env.run(args).success();
    };
    ok(&[
        "queue",
        "create",
        "orders",
        "--max-attempts",
        "3",
        "--retention",
        "2h",
    ]);
    ok(&["queue", "set", "orders", "--schema", loose]);
    ok(&["queue", "set", "orders", "--schema", schema]);
    ok(&[
        "queue",
        "create",
        "flaky",
        "--max-attempts",
        "1",
        "--visibility",
        "90s",
    ]);
    ok(&["subscribe", "events", "orders"]);
    ok(&["subscribe", "events", "audit"]);
    for i in 1..=6 {
        env.publish("orders", &format!("{{\"id\":{i}}}"));
    }
    ok(&[
        "publish",
        "orders",
        "--priority",
        "7",
        "--key",
        "k-1",
        "--header",
        "trace=abc",
        "{\"id\":7}",
    ]);
    ok(&["publish", "orders", "--delay", "1h", "{\"id\":8}"]);
    ok(&[
        "publish",
        "events",
        "--key",
        "e-1",
        "{\"id\":9,\"note\":\"fan-out\"}",
    ]);
    ok(&[
        "publish",
        "audit",
        "--raw",
        "plain text\twith a tab and ünïcödé",
    ]);
    ok(&["publish", "audit", "--raw", "{not json"]);
    for step in 1..=3 {
        ok(&[
            "publish",
            "jobs",
            "--group",
            "cust-1",
            &format!("{{\"step\":{step}}}"),
        ]);
    }
    ok(&["publish", "jobs", "--group", "cust-2", "{\"step\":1}"]);
    for i in 0..2 {
        env.publish("flaky", &format!("{i}"));
    }
    // Orders: one acked, one leased (receipt kept), the rest as they were.
    let first = env.consume("orders", &["-n", "2"]);
    env.run(&["ack", receipt(&first[0])]).success();
    // Flaky: one dead (its only attempt failed).
    let dead = env.consume_one("flaky", &[]);
    env.run(&["nack", receipt(&dead)]).success();
    // Jobs: the head of cust-1 leased and acked, so step 2 is its head now.
    let head = env.consume_one("jobs", &[]);
    env.run(&["ack", receipt(&head)]).success();
    receipt(&first[1]).to_owned()
}

type Row = Vec<String>;

/// Every row of a table in SQLite, each column as text (blobs in hex).
fn sqlite_rows(env: &Env, sql: &str) -> BTreeSet<Row> {
    let conn = env.sql();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    rusqlite::types::ValueRef::Real(v) => v.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(b) => hex(b),
                })
            })
            .collect()
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// The same rows in PostgreSQL (`sql` casts every column to text; bytea in hex).
fn pg_rows(pg: &Pg, sql: &str) -> BTreeSet<Row> {
    pg.client()
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.get::<_, Option<String>>(i)
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect()
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Each table, as SQLite and PostgreSQL spell the same columns.
const TABLES: [(&str, &str, &str); 6] = [
    (
        "queues",
        "SELECT id, name, is_topic, visibility_ms, max_attempts, retention_ms, max_size,
                retry_delay_ms, created_at FROM queues",
        "SELECT id::text, name, (is_topic::int)::text, visibility_ms::text, max_attempts::text,
                retention_ms::text, max_size::text, retry_delay_ms::text, created_at::text
         FROM queues",
    ),
    (
        "messages",
        "SELECT id, origin_id, key, published_at, raw, headers, body FROM messages",
        "SELECT id::text, origin_id::text, key, published_at::text, (raw::int)::text, headers,
                encode(body, 'hex') FROM messages",
    ),
    (
        "deliveries",
        "SELECT msg_id, queue_id, state, priority, visible_at, attempts, lease, grp, done_at,
                schema_version FROM deliveries",
        "SELECT msg_id::text, queue_id::text, state::text, priority::text, visible_at::text,
                attempts::text, lease::text, grp, done_at::text, schema_version::text
         FROM deliveries",
    ),
    (
        "subscriptions",
        "SELECT topic_id, queue_id, created_at FROM subscriptions",
        "SELECT topic_id::text, queue_id::text, created_at::text FROM subscriptions",
    ),
    (
        "schemas",
        "SELECT queue_id, version, created_at, schema FROM schemas",
        "SELECT queue_id::text, version::text, created_at::text, schema FROM schemas",
    ),
    (
        "groups",
        "SELECT queue_id, grp, head_id FROM groups",
        "SELECT queue_id::text, grp, head_id::text FROM group_heads",
    ),
];

fn sqlite_store(env: &Env) -> SqliteStore {
    SqliteStore::open_read_only(&store::Options {
        location: store::Location::File(env.db.clone()),
        busy_timeout: Duration::from_secs(10),
        sync: Sync::Normal,
    })
    .unwrap()
    .unwrap()
}

#[test]
fn migrate_copies_every_row_and_receipts_and_order_carry_on() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let Some(pg) = Pg::new() else { return };
    let env = Env::new();
    let outstanding = build(&env);
    let before = std::fs::read(&env.db).unwrap();

    let run = env.run(&[
        "migrate",
        "--from",
        env.db.to_str().unwrap(),
        "--to",
        &pg.url,
        "--json",
    ]);
    run.success()
        .stderr_has("migrated 4 queue(s), 1 topic(s), 17 message(s)");
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["queues"], 4);
    assert_eq!(report["topics"], 1);
    assert_eq!(report["subscriptions"], 2);
    assert_eq!(report["messages"], 17);
    assert_eq!(report["deliveries"], 18);
    assert_eq!(report["schema_versions"], 2);
    assert_eq!(report["groups"], 2);
    assert_eq!(report["recounted"], serde_json::json!([]));
    assert!(report["to"].as_str().unwrap().contains(&pg.schema));
    assert_eq!(
        std::fs::read(&env.db).unwrap(),
        before,
        "the SQLite file changed"
    );

    for (table, sqlite, postgres) in TABLES {
        let (a, b) = (sqlite_rows(&env, sqlite), pg_rows(&pg, postgres));
        assert!(!a.is_empty(), "{table}: the test built no rows");
        assert_eq!(a, b, "{table} differs");
    }

    // Counts per state, totals and schema versions, as each store shows them.
    let lite = sqlite_store(&env).queue_infos().unwrap();
    let mut post = pg.store();
    let moved = post.queue_infos().unwrap();
    let summary = |infos: &[store::QueueInfo]| -> Vec<String> {
        infos
            .iter()
            .map(|i| {
                format!(
                    "{} {:?} published={} schema={:?} subs={:?} topics={:?} settings={:?}",
                    i.name,
                    i.counts,
                    i.published_total,
                    i.schema_version,
                    i.subscribers,
                    i.topics,
                    i.settings
                )
            })
            .collect()
    };
    assert_eq!(summary(&lite), summary(&moved));
    let health = post.health().unwrap();
    assert!(health.healthy(), "{health:?}");

    // The lease taken on SQLite acks on PostgreSQL.
    let receipt: Receipt = outstanding.parse().unwrap();
    assert_eq!(post.ack(&[receipt]).unwrap(), [Ok(())]);

    // Consuming goes on in the same order on both; nothing comes twice.
    let mut seen = BTreeSet::new();
    for queue in ["orders", "audit", "jobs", "flaky"] {
        let on_pg = post.claim(queue, 100, None, false).unwrap();
        let on_sqlite = env.consume(queue, &["-n", "100"]);
        let pg_ids: Vec<i64> = on_pg.iter().map(|d| d.id).collect();
        let lite_ids: Vec<i64> = on_sqlite
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        assert_eq!(pg_ids, lite_ids, "{queue}");
        for (d, m) in on_pg.iter().zip(&on_sqlite) {
            assert_eq!(d.schema_version, m["schema_version"].as_i64(), "{queue}");
            assert!(seen.insert((queue, d.id)), "{queue}: {} twice", d.id);
        }
        assert!(post.claim(queue, 100, None, false).unwrap().is_empty());
        let acks: Vec<Receipt> = on_pg.iter().map(|d| d.receipt).collect();
        assert!(post.ack(&acks).unwrap().iter().all(Result::is_ok));
    }
    // The next group message follows its acked head.
    let next = post.claim("jobs", 10, None, false).unwrap();
    let steps: Vec<String> = next
        .iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect();
    assert_eq!(steps, ["{\"step\":3}"]);

    // New ids, of messages and queues, come after every migrated one.
    let id = post
        .publish_batch("orders", |b| {
            b.publish(&store::NewMessage {
                body: b"{\"id\":10}",
                ..Default::default()
            })
        })
        .unwrap();
    assert_eq!(id, 18);
    post.publish_batch("fresh", |b| {
        b.publish(&store::NewMessage {
            body: b"1",
            ..Default::default()
        })
    })
    .unwrap();
    assert_eq!(pg.count("SELECT id FROM queues WHERE name = 'fresh'"), 6);
    assert!(post.health().unwrap().healthy());
}

#[test]
fn a_second_migrate_into_the_same_schema_is_refused_and_changes_nothing() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let Some(pg) = Pg::new() else { return };
    let env = Env::new();
    env.publish("orders", "{\"id\":1}");
    let from = env.db.to_str().unwrap();
    env.run(&["migrate", "--from", from, "--to", &pg.url])
        .success();
    env.publish("orders", "{\"id\":2}");
    env.run(&["migrate", "--from", from, "--to", &pg.url])
        .code(2)
        .stderr_has("already holds 1 queue(s)")
        .stderr_has(&pg.schema)
        .stderr_has("?schema=NAME");
    assert_eq!(pg.count("SELECT count(*) FROM messages"), 1);
}

#[test]
fn a_failure_half_way_leaves_the_target_empty() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let Some(pg) = Pg::new() else { return };
    let env = Env::new();
    for i in 1..=5 {
        env.publish("orders", &format!("{i}"));
    }
    env.run(&["subscribe", "events", "orders"]).success();
    // The target refuses the third message, after queues and the first
    // messages went in.
    drop(pg.store());
    pg.client()
        .batch_execute("ALTER TABLE messages ADD CONSTRAINT two_only CHECK (id < 3)")
        .unwrap();
    let run = env.run(&[
        "migrate",
        "--from",
        env.db.to_str().unwrap(),
        "--to",
        &pg.url,
    ]);
    run.code(74).stderr_has("two_only");
    for table in ["queues", "messages", "deliveries", "subscriptions", "stats"] {
        assert_eq!(
            pg.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
    pg.client()
        .batch_execute("ALTER TABLE messages DROP CONSTRAINT two_only")
        .unwrap();
    env.run(&[
        "migrate",
        "--from",
        env.db.to_str().unwrap(),
        "--to",
        &pg.url,
    ])
    .success();
    assert_eq!(pg.count("SELECT count(*) FROM messages"), 5);
}

#[test]
fn a_bad_source_exits_74_naming_it() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let env = Env::new();
    // Refused before any connection: no server needed.
    let to = "postgres://postgres@127.0.0.1:1/test";
    let missing = env.path("missing.db");
    env.run(&["migrate", "--from", missing.to_str().unwrap(), "--to", to])
        .code(74)
        .stderr_has("missing.db")
        .stderr_has("does not exist");
    assert!(!missing.exists());
    let not_db = env.path("notes.txt");
    std::fs::write(&not_db, "hello, this is not a database at all, just text").unwrap();
    env.run(&["migrate", "--from", not_db.to_str().unwrap(), "--to", to])
        .code(74)
        .stderr_has("notes.txt");
    let folder = env.path("folder");
    std::fs::create_dir(&folder).unwrap();
    env.run(&["migrate", "--from", folder.to_str().unwrap(), "--to", to])
        .code(74)
        .stderr_has("folder");
    env.run(&[
        "migrate",
        "--from",
        env.db.to_str().unwrap(),
        "--to",
        "other.db",
    ])
    .code(2)
    .stderr_has("not a PostgreSQL URL");
}

#[test]
fn an_unreachable_server_exits_74_and_leaves_the_file_alone() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let env = Env::new();
    env.publish("orders", "1");
    let before = std::fs::read(&env.db).unwrap();
    env.run(&[
        "migrate",
        "--from",
        env.db.to_str().unwrap(),
        "--to",
        "postgres://postgres@127.0.0.1:1/test?connect_timeout=2",
    ])
    .code(74)
    .stderr_has("127.0.0.1:1");
    assert_eq!(std::fs::read(&env.db).unwrap(), before);
}

#[test]
fn counters_that_disagree_with_the_rows_are_recounted_with_a_warning() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let Some(pg) = Pg::new() else { return };
    let env = Env::new();
    for i in 1..=3 {
        env.publish("orders", &format!("{i}"));
    }
    env.sql()
        .execute("UPDATE queues SET n_ready = 40, n_dead = 2", [])
        .unwrap();
    let run = env.run(&[
        "migrate",
        "--from",
        env.db.to_str().unwrap(),
        "--to",
        &pg.url,
        "--json",
    ]);
    run.success()
        .stderr_has("spool: warning: the counters of `orders`")
        .stderr_has("spool doctor");
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["recounted"], serde_json::json!(["orders"]));
    let store = pg.store();
    let info = store.queue_infos().unwrap().remove(0);
    assert_eq!((info.counts.ready, info.counts.dead), (3, 0));
    assert_eq!(info.published_total, 3);
    assert!(store.health().unwrap().healthy());
}

#[test]
fn schedules_survive_with_their_state_and_fire_after_the_move() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let Some(pg) = Pg::new() else { return };
    let env = Env::new();
    env.run(&["subscribe", "events", "audit"]).success();
    // A dropped queue first, so ids in the copy only match if kept.
    env.run(&["queue", "create", "scratch"]).success();
    env.run(&["queue", "delete", "scratch"]).success();
    add_schedule(&env, "tick", "ticks", Duration::from_secs(1));
    add_schedule(&env, "fan", "events", Duration::from_secs(3600));
    add_schedule(&env, "idle", "ticks", Duration::from_secs(60));
    pause_schedule(&env, "idle");
    // `tick` and `fan` fire once on SQLite: their state moves on.
    assert_eq!(env.consume("ticks", &["--ack"]).len(), 1);
    assert_eq!(env.consume("audit", &["--ack"]).len(), 1);
    let before = schedules(&env);
    assert!(
        before
            .iter()
            .all(|s| s.name == "idle" || s.last_at.is_some())
    );
    let queue_rows = "SELECT id, name, schedule_at FROM queues";
    let lite_queues = sqlite_rows(&env, queue_rows);

    let run = env.run(&[
        "migrate",
        "--from",
        env.db.to_str().unwrap(),
        "--to",
        &pg.url,
    ]);
    run.success().stderr_has("3 schedule(s)");
    let mut post = pg.store();
    assert_eq!(
        post.schedules().unwrap(),
        before,
        "schedules and their state"
    );
    assert_eq!(
        lite_queues,
        pg_rows(&pg, "SELECT id::text, name, schedule_at::text FROM queues"),
        "queue ids and their next occurrence"
    );
    let lite_ids = sqlite_rows(&env, "SELECT id, name FROM schedules");
    let pg_ids = pg_rows(&pg, "SELECT id::text, name FROM schedules");
    assert_eq!(lite_ids, pg_ids, "schedule ids");
    let health = post.health().unwrap();
    assert!(health.healthy(), "{health:?}");

    // The next occurrence of `tick` is published by a claim on PostgreSQL,
    // once, with its schedule's headers; the paused one publishes nothing.
    let next = before.iter().find(|s| s.name == "tick").unwrap().next_at;
    while store::now_ms() <= next.unwrap() + 50 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = post.claim("ticks", 10, None, true).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let headers: Value = serde_json::from_str(got[0].headers.as_deref().unwrap()).unwrap();
    assert_eq!(headers["spool-schedule"], "tick");
    let after = post.schedules().unwrap();
    let tick = after.iter().find(|s| s.name == "tick").unwrap();
    assert!(tick.last_at > before.iter().find(|s| s.name == "tick").unwrap().last_at);
    assert!(after.iter().find(|s| s.name == "idle").unwrap().paused);
    // A schedule added after the move gets a new id.
    post.add_schedule(
        "late",
        &before.iter().find(|s| s.name == "tick").unwrap().spec,
    )
    .unwrap();
    assert!(pg.count("SELECT id FROM schedules WHERE name = 'late'") > 3);
}

#[test]
fn a_key_postgres_cannot_keep_is_named_and_nothing_is_copied() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let Some(pg) = Pg::new() else { return };
    let env = Env::new();
    env.run(&["publish", "orders", "--key", "k", "{\"id\":1}"])
        .success();
    env.publish("orders", "{\"id\":2}");
    let got = env.consume("orders", &["-n", "2"]);
    let second = got[1]["receipt"].as_str().unwrap().to_owned();
    env.run(&["nack", &second, "--reason", "boom"]).success();
    // What an older spool accepted: a key longer than spool now allows,
    // and a handler's stderr with a NUL in it as the failure reason.
    let long = "k".repeat(store::MAX_LABEL_BYTES + 1);
    let sql = env.sql();
    sql.execute("UPDATE messages SET key = ?1 WHERE key = 'k'", [&long])
        .unwrap();
    sql.execute(
        "UPDATE deliveries SET last_error = 'x' || char(0) || 'y' WHERE last_error = 'boom'",
        [],
    )
    .unwrap();
    drop(sql);
    let from = env.db.to_str().unwrap();
    env.run(&["migrate", "--from", from, "--to", &pg.url])
        .code(65)
        .stderr_has("row 1 of table `messages`")
        .stderr_has("`key` is 1025 bytes long")
        .stderr_has("Nothing was copied");
    assert_eq!(pg.count("SELECT count(*) FROM queues"), 0);

    env.sql()
        .execute("UPDATE messages SET key = 'k' WHERE id = 1", [])
        .unwrap();
    env.run(&["migrate", "--from", from, "--to", &pg.url])
        .success();
    let reason: String = pg
        .client()
        .query_one("SELECT last_error FROM deliveries WHERE msg_id = 2", &[])
        .unwrap()
        .get(0);
    assert_eq!(reason, "x\u{FFFD}y");
}

#[test]
fn a_source_given_as_a_url_or_not_a_database_is_named_with_from() {
    if sqlite_only(FROM_SQLITE) {
        return;
    }
    let env = Env::new();
    let to = "postgres://postgres@127.0.0.1:1/test";
    env.run(&["migrate", "--from", "postgres://u:secret@h/db", "--to", to])
        .code(2)
        .stderr_has("is a PostgreSQL URL: migrate copies an SQLite file into PostgreSQL");
    let not_db = env.path("notes.txt");
    std::fs::write(&not_db, "hello, this is not a database at all, just text").unwrap();
    let run = env.run(&["migrate", "--from", not_db.to_str().unwrap(), "--to", to]);
    run.code(74).stderr_has("Point `--from` at");
    assert!(!run.stderr.contains("--db"), "{}", run.stderr);
    assert!(!run.stderr.contains("secret"), "{}", run.stderr);
}
