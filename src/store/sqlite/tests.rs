//! Store-level tests: query plans and invariants that the CLI cannot see.

use std::time::Duration;

use super::*;
use crate::store::*;

fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = Options {
        path: dir.path().join("spool.db"),
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
fn counters_follow_every_transition() {
    let (_dir, mut store) = temp_store();
    store
        .create_queue(
            "q",
            &SettingsPatch {
                max_attempts: Some(1),
                ..SettingsPatch::default()
            },
            None,
        )
        .expect("create");
    publish_n(&mut store, "q", 5);
    let got = store.claim("q", 3, None, false).expect("claim");
    let receipts: Vec<Receipt> = got.iter().map(|d| d.receipt).collect();
    store.ack(&receipts[..1]).expect("ack");
    store.nack(&receipts[1..2], Release::Now).expect("nack");
    let counts: (i64, i64, i64, i64, i64, i64) = store
        .conn
        .query_row(
            "SELECT n_ready, n_delayed, n_leased, n_acked, n_dead, published_total FROM queues",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("counts");
    assert_eq!(counts, (2, 0, 1, 1, 1, 5));
    let actual: i64 = store
        .conn
        .query_row("SELECT count(*) FROM deliveries WHERE state = 0", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(actual, 2);
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
    let ids = publish_group(&mut store, "q", "g", 2000);
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

    let got = store.claim("q", 100, None, false).expect("claim");
    assert_eq!(got.len(), 11, "the group's head and the 10 ungrouped");
    assert_eq!(got[0].id, ids[0]);
    store.ack(&[got[0].receipt]).expect("ack");
    let next = store.claim("q", 100, None, false).expect("claim");
    assert_eq!(next.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[1]]);
}

#[test]
fn a_topic_stores_the_body_once_and_delivers_it_to_each_subscriber() {
    let (_dir, mut store) = temp_store();
    for queue in ["a", "b", "c"] {
        assert_eq!(store.subscribe("t", queue).expect("sub"), Subscribed::New);
    }
    assert_eq!(store.subscribe("t", "a").expect("sub"), Subscribed::Existed);
    assert_eq!(
        store.subscribers("t").expect("subs"),
        Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
    assert_eq!(store.subscribers("a").expect("subs"), None);
    let ids = publish_n(&mut store, "t", 5);
    let count = |sql: &str| -> i64 { store.conn.query_row(sql, [], |r| r.get(0)).expect("count") };
    assert_eq!(count("SELECT count(*) FROM messages"), 5);
    assert_eq!(count("SELECT count(*) FROM deliveries"), 15);
    for queue in ["a", "b", "c"] {
        let got = store.claim(queue, 10, None, false).expect("claim");
        assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    }
    assert_eq!(
        store.unsubscribe("t", "b").expect("unsub"),
        vec!["a".to_owned(), "c".to_owned()]
    );
    assert!(matches!(
        store.unsubscribe("t", "b"),
        Err(Error::NotSubscribed { .. })
    ));
}

#[test]
fn batches_mixing_full_chunks_keys_and_fan_out_store_every_message() {
    let (_dir, mut store) = temp_store();
    // A topic with two subscribers, made directly: the subscribe command lives elsewhere.
    store
        .conn
        .execute_batch(
            "INSERT INTO queues (id, name, is_topic, visibility_ms, max_attempts, retention_ms, max_size, retry_delay_ms, created_at)
             VALUES (10, 't', 1, 30000, 5, 0, 1048576, 1000, 0),
                    (11, 'a', 0, 30000, 5, 0, 1048576, 1000, 0),
                    (12, 'b', 0, 30000, 5, 0, 1048576, 1000, 0);
             INSERT INTO subscriptions VALUES (10, 11, 0), (10, 12, 0);",
        )
        .expect("topic");
    let ids = store
        .publish_batch("t", |batch| {
            let mut ids = Vec::new();
            for i in 0..300 {
                let body = format!("{{\"n\":{i}}}");
                let key = (i % 50 == 7).then(|| format!("k{}", i % 100));
                ids.push(batch.publish(&NewMessage {
                    body: body.as_bytes(),
                    key: key.as_deref(),
                    ..NewMessage::default()
                })?);
            }
            Ok::<_, Error>(ids)
        })
        .expect("publish");
    // Keys k7 and k57 repeat every 100 messages: 6 keyed publishes, 2 distinct keys.
    let distinct: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 300 - 4);
    let expected: Vec<i64> = distinct.iter().copied().collect();
    let unkeyed: Vec<i64> = (0..300).filter(|i| i % 50 != 7).map(|i| ids[i]).collect();
    assert!(
        unkeyed.windows(2).all(|w| w[0] < w[1]),
        "ids come back in input order"
    );
    for queue in [11, 12] {
        let rows: Vec<(i64, Vec<u8>)> = store
            .conn
            .prepare(
                "SELECT d.msg_id, m.body FROM deliveries d JOIN messages m ON m.id = d.msg_id
                 WHERE d.queue_id = ?1 ORDER BY d.msg_id",
            )
            .expect("select")
            .query_map([queue], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("collect");
        assert_eq!(rows.len(), distinct.len());
        let row_ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(row_ids, expected);
        let n_ready: i64 = store
            .conn
            .query_row("SELECT n_ready FROM queues WHERE id = ?1", [queue], |r| {
                r.get(0)
            })
            .expect("counter");
        assert_eq!(n_ready, distinct.len() as i64);
    }
    let first: Vec<u8> = store
        .conn
        .query_row("SELECT body FROM messages WHERE id = ?1", [ids[0]], |r| {
            r.get(0)
        })
        .expect("first body");
    assert_eq!(first, b"{\"n\":0}");
    let last: Vec<u8> = store
        .conn
        .query_row("SELECT body FROM messages WHERE id = ?1", [ids[299]], |r| {
            r.get(0)
        })
        .expect("last body");
    assert_eq!(last, b"{\"n\":299}");
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

#[test]
fn stats_counts_match_the_rows_after_replay_and_purge() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 20);
    let got = store.claim("q", 10, None, false).expect("claim");
    let receipts: Vec<Receipt> = got.iter().map(|d| d.receipt).collect();
    store.ack(&receipts[..6]).expect("ack");
    let filter = ReplayFilter {
        acked: true,
        ids: vec![1, 2, 3],
        ..ReplayFilter::default()
    };
    let done = store.replay("q", &filter, None).expect("replay");
    assert_eq!(done.ids, vec![1, 2, 3]);
    let copied = store
        .replay(
            "q",
            &ReplayFilter {
                acked: true,
                ..ReplayFilter::default()
            },
            Some("copy"),
        )
        .expect("replay to");
    assert_eq!(copied.ids, vec![4, 5, 6]);
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
    assert_eq!(c.counts.ready, 3);
    assert_eq!(c.published_total, 3);
    let rows: i64 = store
        .conn
        .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 10);
}

/// The per-state counters in `queues` equal a count of the rows.
fn assert_counters_match(store: &SqliteStore, queue: &str) {
    let stored: Vec<i64> = store
        .conn
        .query_row(
            "SELECT n_ready, n_delayed, n_leased, n_acked, n_dead, n_held FROM queues WHERE name = ?1",
            [queue],
            |r| (0..6).map(|i| r.get(i)).collect(),
        )
        .expect("counters");
    let counted: Vec<i64> = (0..6)
        .map(|state| {
            store
                .conn
                .query_row(
                    "SELECT count(*) FROM deliveries WHERE state = ?1
                     AND queue_id = (SELECT id FROM queues WHERE name = ?2)",
                    (state, queue),
                    |r| r.get(0),
                )
                .expect("count")
        })
        .collect();
    assert_eq!(stored, counted, "counters vs rows, by state 0..=5");
}

fn attempts_of(store: &SqliteStore, msg: i64) -> (i64, i64) {
    store
        .conn
        .query_row(
            "SELECT state, attempts FROM deliveries WHERE msg_id = ?1",
            [msg],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row")
}

#[test]
fn work_step_settles_then_claims_in_one_go_and_keeps_counters() {
    let (_dir, mut store) = temp_store();
    let patch = SettingsPatch {
        max_attempts: Some(2),
        ..SettingsPatch::default()
    };
    store.create_queue("q", &patch, None).expect("create");
    publish_n(&mut store, "q", 5);
    let first = store.work_step("q", &[], 4, None).expect("step");
    let got = first.claimed.expect("claimed");
    assert_eq!(got.len(), 4);
    assert_eq!(
        first.lease,
        Duration::from_secs(30),
        "the queue's visibility"
    );
    let done = [
        (got[0].receipt, Outcome::Ack),
        (got[1].receipt, Outcome::Retry),
        (got[2].receipt, Outcome::Release),
    ];
    // The released message is ready again at once, so the claim in the same
    // transaction can take it (after the never-delivered fifth, by id order).
    let second = store.work_step("q", &done, 2, None).expect("step");
    assert_eq!(
        second.settled,
        [
            Ok(Settled::Acked),
            Ok(Settled::Retrying),
            Ok(Settled::Released)
        ]
    );
    let ids: Vec<i64> = second
        .claimed
        .expect("claimed")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, [got[2].id, got[3].id + 1]);
    assert_eq!(attempts_of(&store, got[1].id), (State::Delayed as i64, 1));
    assert_eq!(
        attempts_of(&store, got[2].id),
        (State::Leased as i64, 1),
        "released without counting, then claimed as attempt 1 again"
    );
    assert_counters_match(&store, "q");
}

#[test]
fn retry_on_the_last_attempt_is_dead_and_release_refuses_the_old_receipt() {
    let (_dir, mut store) = temp_store();
    let patch = SettingsPatch {
        max_attempts: Some(1),
        ..SettingsPatch::default()
    };
    store.create_queue("q", &patch, None).expect("create");
    publish_n(&mut store, "q", 2);
    let got = store.claim("q", 2, None, false).expect("claim");
    let step = store
        .work_step("q", &[(got[0].receipt, Outcome::Retry)], 0, None)
        .expect("step");
    assert_eq!(step.settled, [Ok(Settled::Dead)]);
    assert_eq!(attempts_of(&store, got[0].id), (State::Dead as i64, 1));
    let released = store.release(&[got[1].receipt]).expect("release");
    assert_eq!(released, [Ok(())]);
    assert_eq!(attempts_of(&store, got[1].id), (State::Ready as i64, 0));
    let again = store.ack(&[got[1].receipt]).expect("ack");
    assert_eq!(
        again,
        [Err(ReceiptError::LeaseEnded)],
        "the receipt died with its lease"
    );
    assert_counters_match(&store, "q");
}

#[test]
fn work_step_on_a_missing_queue_still_settles() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 1);
    let got = store.claim("q", 1, None, false).expect("claim");
    let step = store
        .work_step("nope", &[(got[0].receipt, Outcome::Ack)], 1, None)
        .expect("step");
    assert_eq!(step.settled, [Ok(Settled::Acked)]);
    assert!(matches!(step.claimed, Err(Error::UnknownQueue { .. })));
    assert_eq!(attempts_of(&store, got[0].id).0, State::Acked as i64);
}

#[test]
fn release_lease_makes_a_leased_message_ready_without_counting_an_attempt() {
    let (_dir, mut store) = temp_store();
    store
        .create_queue(
            "q",
            &SettingsPatch {
                max_attempts: Some(1),
                ..SettingsPatch::default()
            },
            None,
        )
        .expect("create");
    publish_n(&mut store, "q", 2);
    let got = store.claim("q", 1, None, false).expect("claim");
    let (id, old) = (got[0].id, got[0].receipt);
    // On its last allowed attempt: a nack would kill it, a release must not.
    assert!(store.release_lease("q", id).expect("release"));
    let (state, attempts): (i64, i64) = store
        .conn
        .query_row(
            "SELECT state, attempts FROM deliveries WHERE msg_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!((state, attempts), (State::Ready as i64, 0));
    // The consumer that held it can no longer ack it.
    let outcome = store.ack(&[old]).expect("ack");
    assert_eq!(outcome, vec![Err(ReceiptError::LeaseEnded)]);
    // Not leased any more: a second release changes nothing.
    assert!(!store.release_lease("q", id).expect("again"));
    let q = store.queue_infos().expect("infos").remove(0);
    assert_eq!((q.counts.ready, q.counts.leased, q.counts.dead), (2, 0, 0));
    // It is delivered again first, as attempt 1.
    let again = store.claim("q", 1, None, false).expect("claim again");
    assert_eq!((again[0].id, again[0].attempt), (id, 1));
}

#[test]
fn release_lease_leaves_expired_leases_to_the_lazy_rules() {
    let (_dir, mut store) = temp_store();
    store
        .create_queue(
            "q",
            &SettingsPatch {
                max_attempts: Some(1),
                ..SettingsPatch::default()
            },
            None,
        )
        .expect("create");
    publish_n(&mut store, "q", 1);
    let got = store
        .claim("q", 1, Some(Duration::from_millis(1)), false)
        .expect("claim");
    std::thread::sleep(Duration::from_millis(5));
    // The lease ran out on the last attempt: the message is dead, not released.
    assert!(!store.release_lease("q", got[0].id).expect("release"));
    let q = store.queue_infos().expect("infos").remove(0);
    assert_eq!((q.counts.ready, q.counts.dead), (0, 1));
    assert!(matches!(
        store.release_lease("nope", 1),
        Err(Error::UnknownQueue { .. })
    ));
}

#[test]
fn rate_histories_bucket_by_minute_ending_now() {
    let (_dir, mut store) = temp_store();
    publish_n(&mut store, "q", 3);
    publish_n(&mut store, "idle", 1);
    let now = now_ms() / 1000;
    // Two minutes ago: 7 published, 2 acked; 61 minutes ago: outside the hour.
    store
        .conn
        .execute_batch(&format!(
            "INSERT INTO rates (queue_id, second, published, acked) VALUES
               (1, {}, 7, 2), (1, {}, 100, 100);
             DELETE FROM rates WHERE queue_id = 2;",
            now - 150,
            now - 61 * 60
        ))
        .expect("rates");
    let got = store.rate_histories(5).expect("rates");
    let q = &got["q"];
    assert_eq!(q.published, vec![0, 0, 7, 0, 3]);
    assert_eq!(q.acked, vec![0, 0, 2, 0, 0]);
    assert!(!got.contains_key("idle"), "{got:?}");
    // The last bucket is the window stats calls the last minute.
    let info = store.queue_infos().expect("infos");
    let q_info = info.iter().find(|i| i.name == "q").expect("q");
    assert_eq!(q_info.published_last_minute, 3);
    // Wider than the hour of kept rates: clamped to 60 buckets.
    assert_eq!(
        store.rate_histories(500).expect("rates")["q"]
            .published
            .len(),
        60
    );
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
        path: path.clone(),
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

/// The lazy transitions run as SQL in a claim (`lease::promote_due`) and in
/// `stats` (the due summary), and as Rust in `peek`: for every combination
/// of stored state, due time and attempts all three agree with
/// `rules::effective`.
#[test]
fn the_sql_of_the_lazy_transitions_agrees_with_the_rule() {
    use crate::store::rules::agreement::{DELAYED, LEASED, MAX_ATTEMPTS, expected, tally};
    let (_dir, mut store) = temp_store();
    let patch = SettingsPatch {
        max_attempts: Some(MAX_ATTEMPTS),
        ..SettingsPatch::default()
    };
    store.create_queue("q", &patch, None).expect("create");
    publish_n(&mut store, "q", LEASED.len());
    let leased = store
        .claim("q", LEASED.len(), Some(Duration::from_secs(600)), false)
        .expect("claim");
    let later = now_ms() + 3_600_000;
    let delayed: Vec<i64> = DELAYED
        .iter()
        .map(|_| {
            store
                .publish_batch("q", |b| {
                    b.publish(&NewMessage {
                        body: b"{}",
                        available_at: Some(later),
                        ..NewMessage::default()
                    })
                })
                .expect("publish")
        })
        .collect();
    let now = now_ms();
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
    for (id, _, visible_at, attempts) in &rows {
        store
            .conn
            .execute(
                "UPDATE deliveries SET visible_at = ?2, attempts = ?3 WHERE msg_id = ?1",
                (id, visible_at, attempts),
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
    let infos = store.queue_infos().expect("stats");
    assert_eq!(infos[0].counts, tally(&want), "stats");
    store.claim("q", 0, None, false).expect("claim nothing");
    for ((id, ..), state) in rows.iter().zip(&want) {
        let stored: i64 = store
            .conn
            .query_row(
                "SELECT state FROM deliveries WHERE msg_id = ?1",
                [id],
                |r| r.get(0),
            )
            .expect("row");
        assert_eq!(
            State::from_i64(stored),
            *state,
            "claim's transition of {id}"
        );
    }
}
