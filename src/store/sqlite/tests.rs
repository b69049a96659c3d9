//! Tests of the SQLite backend's own internals: the query plans of its
//! statements and the migration of old files. Queue behaviour, the same on
//! both backends, is tested in `store::suite`.

use std::time::Duration;

use super::*;
use super::{admin, inspect, lease};
use crate::store::suite::publish_n;
use crate::store::*;

fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = Options {
        location: Location::File(dir.path().join("spool.db")),
        busy_timeout: Duration::from_secs(5),
        sync: Sync::Normal,
    };
    let store = SqliteStore::open(&opts).expect("open");
    (dir, store)
}

/// The query plan of `sql` with `params` bound, one line a step.
fn plan(store: &SqliteStore, sql: &str, params: impl rusqlite::Params) -> String {
    let mut stmt = store
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let rows = stmt
        .query_map(params, |row| row.get::<_, String>(3))
        .expect("plan rows");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
}

/// Asserts that the plan of `sql` uses `index` and reads no table or
/// index whole (no `SCAN` step but of a constant row: every read is a
/// `SEARCH`); returns the plan.
fn assert_searches(
    store: &SqliteStore,
    sql: &str,
    params: impl rusqlite::Params,
    index: &str,
) -> String {
    let p = plan(store, sql, params);
    assert!(p.contains(index), "{sql}\n{p}");
    let scans = |l: &str| l.starts_with("SCAN ") && l != "SCAN CONSTANT ROW";
    assert!(!p.lines().map(str::trim).any(scans), "{sql}\n{p}");
    p
}

/// [`assert_searches`], and sorts nothing either (no `USE TEMP B-TREE`).
fn assert_uses(store: &SqliteStore, sql: &str, params: impl rusqlite::Params, index: &str) {
    let p = assert_searches(store, sql, params, index);
    assert!(!p.contains("TEMP B-TREE"), "{sql}\n{p}");
}

#[test]
fn claim_is_an_index_walk_without_a_sort() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 100);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    assert_uses(&store, lease::LEASE_NEXT, (1, 10, 5), "deliveries_ready");
    // The lazy transitions on the way: due rows, expired leases, retention.
    assert_uses(&store, lease::ANY_DUE, (1, 5), "deliveries_waiting");
    assert_uses(&store, lease::KILL_EXPIRED, (1, 5, 3), "deliveries_waiting");
    for (_, sql) in lease::EXPIRE {
        assert_uses(&store, sql, (1, 5), "deliveries_expiring");
    }
    assert_uses(&store, lease::PROMOTE_DELAYED, (1, 5), "deliveries_waiting");
    assert_uses(&store, lease::PROMOTE_LEASED, (1, 5), "deliveries_waiting");
    assert_uses(&store, lease::ANY_SWEEPABLE, (1, 5), "deliveries_done");
    assert_uses(&store, lease::SWEEP, (1, 5, 512), "deliveries_done");
}

#[test]
fn receipts_round_trip_and_refuse_garbage() {
    let r = Receipt {
        queue_id: 3,
        msg_id: 42,
        lease: -7,
    };
    assert_eq!(r.to_string().parse::<Receipt>(), Ok(r));
    for bad in [
        "",
        "x",
        "1_2",
        "1_2_3_4",
        "0_1_1",
        "1_0_1",
        "zz_1_1",
        "1_1_12345678901234567",
    ] {
        assert!(bad.parse::<Receipt>().is_err(), "{bad}");
    }
}

/// Publishes `n` messages to `queue` in `group`.
fn publish_group(store: &mut SqliteStore, queue: &str, group: &str, n: usize) -> Vec<i64> {
    store
        .publish_batch(queue, |batch| {
            (0..n)
                .map(|_| {
                    batch.publish(&NewMessage {
                        body: b"{}",
                        group: Some(group),
                        ..NewMessage::default()
                    })
                })
                .collect::<Result<Vec<i64>>>()
        })
        .expect("publish")
}

#[test]
fn a_long_group_costs_the_claim_nothing() {
    let (_dir, mut store) = temp_store();
    publish_group(&mut store, "q", "g", 2000);
    publish_n(&mut store, "q", 10);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    // Held messages are outside the partial index the claim walks.
    assert_uses(&store, lease::LEASE_NEXT, (1, 10, 5), "deliveries_ready");
    // Releasing the next of a group is one seek into the held index.
    assert_uses(&store, lease::GROUP_NEXT, (1, "g"), "deliveries_held");
    assert_uses(&store, lease::GROUP_HEAD, (1, "g"), "PRIMARY KEY");
    // What `stats` and `peek` count of the held rows: the groups whose
    // head died, each one seek into the held index.
    assert_uses(&store, inspect::RELEASED_ROWS, (1, 5, 3), "deliveries_held");
    // (What a claim then delivers: `suite::publish::a_long_group_holds_back_only_itself`.)
}

#[test]
fn readers_walk_indexes_without_sorting() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 100);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    // The oldest-ready skip-scan: one seek per distinct priority.
    assert_uses(&store, inspect::OLDEST_READY, (1, 5), "deliveries_ready");
    // peek: ready rows in claim order and the due ones, delayed and leased
    // rows by due time, held by group, done by time.
    assert_uses(&store, inspect::READY_ROWS, (1, 10, 5), "deliveries_ready");
    assert_uses(
        &store,
        inspect::READY_DUE_ROWS,
        (1, 5, 3),
        "deliveries_waiting",
    );
    for state in [State::Delayed, State::Leased] {
        let params = (1, 5, state as i64, 10);
        assert_uses(&store, inspect::WAITING_ROWS, params, "deliveries_waiting");
    }
    assert_uses(&store, inspect::HELD_ROWS, (1, 10, 5), "deliveries_held");
    for state in [State::Acked, State::Dead] {
        let params = (1, state as i64, 5, 10);
        assert_uses(&store, inspect::DONE_ROWS, params, "deliveries_done");
    }
    assert_uses(
        &store,
        inspect::EXPIRED_LAST,
        (1, 5, 3, 10),
        "deliveries_waiting",
    );
    // Messages past their TTL: their own index, in expiry order.
    assert_uses(
        &store,
        inspect::EXPIRED_ROWS,
        (1, 5, 10),
        "deliveries_expiring",
    );
    assert_searches(&store, inspect::EXPIRING, (1, 5), "deliveries_expiring");
    // stats: only the due rows, and the last minute of rates.
    // (Grouping sorts the due rows, and only those.)
    assert_searches(&store, inspect::DUE, (1, 5, 3), "deliveries_waiting");
    // (`queues` holding one row is read whole; holding more, by its key.)
    let stored = plan(&store, inspect::STORED, (1, 5));
    let rates = "SEARCH r USING PRIMARY KEY (queue_id=? AND second>?)";
    assert!(stored.contains(rates), "{stored}");
    assert!(!stored.contains("TEMP B-TREE"), "{stored}");
    for i in 0..20 {
        publish_n(&mut store, &format!("q{i}"), 1);
    }
    store.conn.execute_batch("ANALYZE").expect("analyze");
    let stored = plan(&store, inspect::STORED, (1, 5));
    assert!(
        stored.contains("SEARCH q USING INTEGER PRIMARY KEY"),
        "{stored}"
    );
}

#[test]
fn purge_and_replay_select_through_partial_indexes() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 100);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    for (state, index) in [
        (State::Ready, "deliveries_ready"),
        (State::Delayed, "deliveries_waiting"),
        (State::Leased, "deliveries_waiting"),
        (State::Acked, "deliveries_done"),
        (State::Dead, "deliveries_done"),
        (State::Held, "deliveries_held"),
    ] {
        let sql = admin::delete_in_state_sql(state);
        assert_uses(&store, &sql, (1, state as i64), index);
    }
    for state in [State::Acked, State::Dead] {
        let params = (1, state as i64, 1, 9);
        assert_uses(&store, admin::DONE_IDS, params, "deliveries_done");
    }
    // Its expired last leases: `inspect::EXPIRED_LAST`, above.
}

/// The rate histories of `top` (their buckets: `suite::inspect`) read a
/// range of the `rates` primary key per queue.
#[test]
fn rate_histories_walk_the_primary_key() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 3);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    let p = plan(&store, inspect::RATES, (9, 5));
    assert!(p.contains("PRIMARY KEY (queue_id=? AND second>?)"), "{p}");
}

#[test]
fn a_version_1_database_is_migrated_and_keeps_its_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).expect("create v1");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch(schema::MIGRATIONS[0])
            .expect("v1 schema");
        conn.execute_batch(
            "INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size,
               retry_delay_ms, created_at, published_total, n_ready)
             VALUES ('old', 30000, 5, 86400000, 1048576, 1000, 0, 1, 1);
             INSERT INTO messages (id, origin_id, published_at, raw, body) VALUES (1, 1, 0, 0, CAST('{\"a\":1}' AS BLOB));
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at) VALUES (1, 1, 0, 0, 0);
             UPDATE meta SET value = 2 WHERE key = 'next_message_id';
             PRAGMA user_version = 1;",
        )
        .expect("v1 rows");
    }
    let opts = Options {
        location: Location::File(path.clone()),
        busy_timeout: Duration::from_secs(5),
        sync: Sync::Normal,
    };
    let mut store = SqliteStore::open(&opts).expect("open migrates");
    assert_eq!(store.schema_version().expect("version"), schema::CURRENT);
    let got = store.claim("old", 10, None, false).expect("claim");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"{\"a\":1}");
    assert_eq!(got[0].schema_version, None);
    assert!(store.schema_history("old").expect("history").is_empty());
    let contract = crate::contract::Contract::compile(r#"{"required": ["a"]}"#).expect("schema");
    let set = store
        .set_queue(
            "old",
            &SettingsPatch::default(),
            SchemaChange::Set(&contract),
        )
        .expect("set schema");
    assert_eq!(set.schema_version, Some(1));
    let refused = store.publish_batch("old", |batch| {
        batch.publish(&NewMessage {
            body: b"{\"b\":1}",
            ..NewMessage::default()
        })
    });
    assert!(
        matches!(refused, Err(Error::Invalid { version: 1, .. })),
        "{refused:?}"
    );
    store
        .publish_batch("old", |batch| {
            batch.publish(&NewMessage {
                body: b"{\"a\":2}",
                ..NewMessage::default()
            })
        })
        .expect("publish");
    let got = store.claim("old", 10, None, false).expect("claim");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].schema_version, Some(1));
}

#[test]
fn a_version_3_database_is_migrated_and_keeps_its_ttls_and_failure_traces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v3.db");
    {
        let conn = Connection::open(&path).expect("create v3");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        for step in &schema::MIGRATIONS[..3] {
            conn.execute_batch(step).expect("v3 schema");
        }
        // Message 1 has its own TTL in both queues it was published to;
        // message 2 died with a reason and an error; message 3 has neither.
        conn.execute_batch(
            "INSERT INTO queues (name, visibility_ms, max_attempts, retention_ms, max_size,
               retry_delay_ms, created_at, published_total, n_ready, n_dead)
             VALUES ('a', 30000, 5, 86400000, 1048576, 1000, 0, 3, 2, 1),
                    ('b', 30000, 5, 86400000, 1048576, 1000, 0, 1, 1, 0),
                    ('c', 30000, 5, 86400000, 1048576, 1000, 0, 0, 0, 0);
             INSERT INTO messages (id, origin_id, published_at, raw, body) VALUES
               (1, 1, 0, 0, CAST('{}' AS BLOB)), (2, 1, 0, 0, CAST('{}' AS BLOB)),
               (3, 1, 0, 0, CAST('{}' AS BLOB));
             INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at, expires_at,
               ttl_ms, dead_reason, last_error, done_at, attempts) VALUES
               (1, 1, 0, 0, 0, 4102444800000, 4102444800000, NULL, NULL, NULL, 0),
               (1, 2, 0, 0, 0, 4102444800000, 4102444800000, NULL, NULL, NULL, 0),
               (2, 1, 4, 0, 0, NULL, NULL, 'rejected', 'HTTP 503', 5, 1),
               (3, 1, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0);
             UPDATE meta SET value = 4 WHERE key = 'next_message_id';
             PRAGMA user_version = 3;",
        )
        .expect("v3 rows");
    }
    let opts = Options {
        location: Location::File(path.clone()),
        busy_timeout: Duration::from_secs(5),
        sync: Sync::Normal,
    };
    let store = SqliteStore::open(&opts).expect("open migrates");
    assert_eq!(store.schema_version().expect("version"), schema::CURRENT);
    let ttls: Vec<(i64, Option<i64>)> = store
        .conn
        .prepare("SELECT id, ttl_ms FROM messages ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("ttls")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(ttls, [(1, Some(4102444800000)), (2, None), (3, None)]);
    let traces: (Option<String>, Option<String>, Option<i64>) = store
        .conn
        .query_row(
            "SELECT dead_reason, last_error, (SELECT expires_at FROM deliveries WHERE msg_id = 1 AND queue_id = 2)
             FROM deliveries WHERE msg_id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("traces");
    assert_eq!(
        traces,
        (
            Some("rejected".into()),
            Some("HTTP 503".into()),
            Some(4102444800000)
        )
    );
    let flags: Vec<(String, bool)> = store
        .conn
        .prepare("SELECT name, may_expire FROM queues ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("flags")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    let want = [("a", true), ("b", true), ("c", false)].map(|(n, f)| (n.to_owned(), f));
    assert_eq!(flags, want);
    // Thirteen columns at most: SQLite's fast key comparison (see V4).
    let columns: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('deliveries')",
            [],
            |r| r.get(0),
        )
        .expect("columns");
    assert!(columns <= 13, "{columns}");
}

/// The bundled SQLite is built with the options of `.cargo/config.toml`
/// (a build started outside the checkout would miss them, and sync with
/// fsync and register modules spool never uses).
#[test]
fn sqlite_is_built_with_the_checkouts_options() {
    let (_dir, store) = temp_store();
    let options: Vec<String> = store
        .conn
        .prepare("PRAGMA compile_options")
        .expect("compile_options")
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("options");
    for wanted in ["DEFAULT_MEMSTATUS=0", "DEFAULT_PCACHE_INITSZ=0"] {
        assert!(
            options.iter().any(|o| o == wanted),
            "{wanted} missing from {options:?}"
        );
    }
    for unwanted in [
        "ENABLE_FTS3",
        "ENABLE_FTS5",
        "ENABLE_RTREE",
        "ENABLE_DBSTAT_VTAB",
    ] {
        assert!(
            !options.iter().any(|o| o == unwanted),
            "{unwanted} in {options:?}"
        );
    }
}
