//! Several connections at once, as several processes use one database:
//! nothing delivered twice, one message per key, groups kept in order.

use std::collections::{HashMap, HashSet};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use super::{Fixture, ids, publish_one, receipts};
use crate::store::{Db, Error, NewMessage, SettingsPatch};

pub(super) fn concurrent_consumers_get_every_message_exactly_once(f: &mut Fixture) {
    const N: usize = 2000;
    f.db.publish_batch("q", |batch| {
        for i in 0..N {
            batch.publish(&NewMessage {
                body: i.to_string().as_bytes(),
                ..NewMessage::default()
            })?;
        }
        Ok::<_, Error>(())
    })
    .expect("publish");
    let seen = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..8 {
            let (opts, seen) = (f.options(), &seen);
            s.spawn(move || {
                let mut db = Db::open(opts).expect("open");
                let mut mine = Vec::new();
                loop {
                    let got = db.claim("q", 1 + t % 3, None, false).expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    let outcome = db.ack(&receipts(&got)).expect("ack");
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
    let info = f.info("q");
    assert_eq!((info.counts.acked, info.counts.ready), (N as i64, 0));
    f.assert_counts_match("q");
}

pub(super) fn concurrent_publishers_of_one_key_store_one_message(f: &mut Fixture) {
    f.db.create_queue("q", &SettingsPatch::default(), None)
        .expect("create");
    let start = Barrier::new(6);
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (opts, start) = (f.options(), &start);
                s.spawn(move || {
                    let mut db = Db::open(opts).expect("open");
                    start.wait();
                    publish_one(
                        &mut *db,
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
    assert_eq!(f.count("SELECT count(*) FROM messages"), 1);
    let info = f.info("q");
    assert_eq!((info.counts.ready, info.published_total), (1, 1));
    f.assert_counts_match("q");
}

pub(super) fn concurrent_consumers_keep_each_group_in_order_one_at_a_time(f: &mut Fixture) {
    let groups = ["a", "b", "c", "d"];
    let mut sent: HashMap<&str, Vec<i64>> = HashMap::new();
    for i in 0..120 {
        let g = groups[i % 4];
        let id = f
            .publish(
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
    let in_flight = Mutex::new(HashSet::<String>::new());
    let done = Mutex::new(HashMap::<String, Vec<i64>>::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (opts, in_flight, done) = (f.options(), &in_flight, &done);
            s.spawn(move || {
                let mut db = Db::open(opts).expect("open");
                let mut idle = 0;
                while idle < 20 {
                    let got = db.claim("q", 1, None, false).expect("claim");
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
                    assert_eq!(db.ack(&[d.receipt]).expect("ack"), [Ok(())]);
                }
            });
        }
    });
    let done = done.into_inner().expect("done");
    for g in groups {
        assert_eq!(done[g], sent[g], "group {g} in id order");
    }
    assert_eq!(f.info("q").counts.acked, 120);
    f.assert_counts_match("q");
}
