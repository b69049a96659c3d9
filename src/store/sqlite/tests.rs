//! Tests of the SQLite backend's own internals: the query plans of its
//! statements and the migration of old files. Queue behaviour, the same on
//! both backends, is tested in `store::suite`.

use std::time::Duration;

use super::*;
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

fn plan(store: &SqliteStore, sql: &str) -> String {
    let mut stmt = store
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let rows = stmt
        .query_map([], |row| row.get::<_, String>(3))
        .expect("plan rows");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
}

fn publish_n(store: &mut SqliteStore, queue: &str, n: usize) -> Vec<i64> {
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

#[test]
fn claim_is_an_index_walk_without_a_sort() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 100);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    let claim = plan(
        &store,
        "SELECT msg_id FROM deliveries WHERE queue_id = 1 AND state = 0
         ORDER BY priority DESC, msg_id LIMIT 10",
    );
    assert!(claim.contains("deliveries_ready"), "{claim}");
    assert!(!claim.contains("TEMP B-TREE"), "{claim}");
    let due = plan(
        &store,
        "UPDATE deliveries SET state = 0
         WHERE queue_id = 1 AND state IN (1, 2) AND visible_at <= 5 AND state = 1",
    );
    assert!(due.contains("deliveries_waiting"), "{due}");
    let sweep = plan(
        &store,
        "SELECT msg_id FROM deliveries
         WHERE queue_id = 1 AND state IN (3, 4) AND state = 3 AND done_at <= 5 LIMIT 5",
    );
    assert!(sweep.contains("deliveries_done"), "{sweep}");
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
    let claim = plan(
        &store,
        "SELECT msg_id FROM deliveries WHERE queue_id = 1 AND state = 0
         ORDER BY priority DESC, msg_id LIMIT 10",
    );
    assert!(claim.contains("deliveries_ready"), "{claim}");
    // Releasing the next of a group is one seek into the held index.
    let next = plan(
        &store,
        "SELECT msg_id, visible_at FROM deliveries
         WHERE queue_id = 1 AND grp = 'g' AND state = 5 ORDER BY msg_id LIMIT 1",
    );
    assert!(next.contains("deliveries_held"), "{next}");
    assert!(!next.contains("TEMP B-TREE"), "{next}");
    let head = plan(
        &store,
        "SELECT head_id FROM groups WHERE queue_id = 1 AND grp = 'g'",
    );
    assert!(head.contains("PRIMARY KEY"), "{head}");
    // (What a claim then delivers: `suite::publish::a_long_group_holds_back_only_itself`.)
}

/// Asserts that `sql` walks `index` and needs no sort.
fn assert_walks(store: &SqliteStore, sql: &str, index: &str) {
    let p = plan(store, sql);
    assert!(p.contains(index), "{sql}\n{p}");
    assert!(!p.contains("TEMP B-TREE"), "{sql}\n{p}");
}

#[test]
fn readers_walk_indexes_without_sorting() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 100);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    // The oldest-ready skip-scan: one seek per distinct priority.
    assert_walks(
        &store,
        "SELECT priority, msg_id FROM deliveries WHERE queue_id = 1 AND state = 0 AND priority < 5
         ORDER BY priority DESC, msg_id LIMIT 1",
        "deliveries_ready",
    );
    // peek: delayed and leased rows by due time, held by group, done by time.
    assert_walks(
        &store,
        "SELECT msg_id, visible_at FROM deliveries
         WHERE queue_id = 1 AND state IN (1, 2) AND visible_at > 5 AND state = 1
         ORDER BY visible_at, msg_id LIMIT 10",
        "deliveries_waiting",
    );
    assert_walks(
        &store,
        "SELECT msg_id, visible_at FROM deliveries
         WHERE queue_id = 1 AND state = 5 ORDER BY grp, msg_id LIMIT 10",
        "deliveries_held",
    );
    assert_walks(
        &store,
        "SELECT msg_id, visible_at, done_at FROM deliveries
         WHERE queue_id = 1 AND state = 3 AND state IN (3, 4) AND done_at > 5
         ORDER BY done_at, msg_id LIMIT 10",
        "deliveries_done",
    );
    // stats: only the due rows, and the last minute of rates.
    let due = plan(
        &store,
        "SELECT state, count(*) FROM deliveries
         WHERE queue_id = 1 AND state IN (1, 2) AND visible_at <= 5 GROUP BY 1",
    );
    assert!(due.contains("deliveries_waiting"), "{due}");
    let rates = plan(
        &store,
        "SELECT sum(published) FROM rates WHERE queue_id = 1 AND second > 5",
    );
    assert!(rates.contains("PRIMARY KEY"), "{rates}");
}

#[test]
fn purge_and_replay_select_through_partial_indexes() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 100);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    for (filter, state, index) in [
        ("state = 0", 0, "deliveries_ready"),
        ("state IN (1, 2)", 1, "deliveries_waiting"),
        ("state IN (3, 4)", 4, "deliveries_done"),
        ("state = 5", 5, "deliveries_held"),
    ] {
        let p = plan(
            &store,
            &format!(
                "SELECT msg_id FROM deliveries WHERE queue_id = 1 AND {filter} AND state = {state}"
            ),
        );
        assert!(p.contains(index), "{filter}\n{p}");
    }
    let replay = plan(
        &store,
        "SELECT msg_id FROM deliveries
         WHERE queue_id = 1 AND state IN (3, 4) AND state = 3 AND done_at >= 1 AND done_at < 9",
    );
    assert!(replay.contains("deliveries_done"), "{replay}");
}

/// The rate histories of `top` (their buckets: `suite::inspect`) read a
/// range of the `rates` primary key per queue.
#[test]
fn rate_histories_walk_the_primary_key() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 3);
    store.conn.execute_batch("ANALYZE").expect("analyze");
    let p = plan(
        &store,
        "SELECT q.name, (9 - r.second) / 60, sum(r.published), sum(r.acked)
         FROM queues q JOIN rates r ON r.queue_id = q.id AND r.second > 9 - 5 * 60
         GROUP BY 1, 2",
    );
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
    assert_eq!(store.schema_version().expect("version"), 2);
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
