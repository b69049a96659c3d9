//! Store-level tests: query plans and invariants that the CLI cannot see.

use std::time::Duration;

use super::*;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = Options {
        path: dir.path().join("spool.db"),
        busy_timeout: Duration::from_secs(5),
        sync: Sync::Normal,
    };
    let store = Store::open(&opts).expect("open");
    (dir, store)
}

fn plan(store: &Store, sql: &str) -> String {
    let mut stmt = store
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let rows = stmt
        .query_map([], |row| row.get::<_, String>(3))
        .expect("plan rows");
    rows.map(|r| r.expect("row")).collect::<Vec<_>>().join("\n")
}

fn publish_n(store: &mut Store, queue: &str, n: usize) -> Vec<i64> {
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

#[test]
fn backoff_doubles_with_jitter_and_caps_at_an_hour() {
    let base = Duration::from_secs(1);
    for attempt in 1..=5 {
        let d = lease::backoff(base, attempt);
        let expected = base.as_secs_f64() * 2f64.powi(attempt as i32 - 1);
        assert!(d.as_secs_f64() >= expected * 0.8 - 1e-9, "{attempt}: {d:?}");
        assert!(d.as_secs_f64() <= expected * 1.2 + 1e-9, "{attempt}: {d:?}");
    }
    assert!(lease::backoff(base, 100) <= Duration::from_secs(3600));
}

/// The per-state counters in `queues` equal a count of the rows.
fn assert_counters_match(store: &Store, queue: &str) {
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

fn attempts_of(store: &Store, msg: i64) -> (i64, i64) {
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
    store.create_queue("q", &patch).expect("create");
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
    store.create_queue("q", &patch).expect("create");
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
