//! Publishing: batches, keys, groups, topics, and queue settings.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Fixture, all_states, ids, max_attempts, publish_one, receipts};
use crate::store::{
    Created, Error, NewMessage, PublishJob, Receipt, SchemaChange, SettingsPatch, State, Subscribed,
};

pub(super) fn a_failed_batch_publishes_nothing_and_large_bodies_are_refused(f: &mut Fixture) {
    let patch = SettingsPatch {
        max_size: Some(4),
        ..SettingsPatch::default()
    };
    f.db.create_queue("q", &patch, None).expect("create");
    let result = f.db.publish_batch("q", |batch| {
        batch.publish(&NewMessage {
            body: b"1",
            ..NewMessage::default()
        })?;
        batch.publish(&NewMessage {
            body: b"12345",
            ..NewMessage::default()
        })
    });
    assert!(matches!(
        result,
        Err(Error::TooLarge { size: 5, limit: 4, ref queue }) if queue == "q"
    ));
    assert!(f.db.peek("q", &all_states(10)).expect("peek").is_empty());
    assert_eq!(f.info("q").published_total, 0);
    assert_eq!(f.count("SELECT count(*) FROM messages"), 0);
    let limit = f.db.body_limit("q").expect("limit");
    assert_eq!((limit.bytes, limit.queue.as_str()), (4, "q"));
    assert!(matches!(
        f.publish("bad name", NewMessage::default()),
        Err(Error::BadName { .. })
    ));
    f.assert_counts_match("q");
}

pub(super) fn batches_mixing_full_chunks_keys_and_fan_out_store_every_message(f: &mut Fixture) {
    for queue in ["a", "b"] {
        f.db.subscribe("t", queue).expect("subscribe");
    }
    let ids =
        f.db.publish_batch("t", |batch| {
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
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 300 - 4);
    let expected: Vec<i64> = distinct.iter().copied().collect();
    let unkeyed: Vec<i64> = (0..300).filter(|i| i % 50 != 7).map(|i| ids[i]).collect();
    assert!(
        unkeyed.windows(2).all(|w| w[0] < w[1]),
        "ids come back in input order"
    );
    for queue in ["a", "b"] {
        let rows = f.db.peek(queue, &all_states(1000)).expect("peek");
        let mut row_ids: Vec<i64> = rows.iter().map(|p| p.delivery.id).collect();
        row_ids.sort_unstable();
        assert_eq!(row_ids, expected, "{queue}");
        assert_eq!(f.info(queue).counts.ready, distinct.len() as i64);
        let body = |id| f.db.peek_id(queue, id).expect("peek").expect("some");
        assert_eq!(body(ids[0]).delivery.body, b"{\"n\":0}");
        assert_eq!(body(ids[299]).delivery.body, b"{\"n\":299}");
        assert_eq!(body(ids[107]).delivery.key.as_deref(), Some("k7"));
        f.assert_counts_match(queue);
    }
    // Each body is stored once for both subscribers.
    assert_eq!(
        f.count("SELECT count(*) FROM messages"),
        distinct.len() as i64
    );
}

pub(super) fn keys_deduplicate_per_name_published_to(f: &mut Fixture) {
    let keyed = |key| NewMessage {
        body: b"{}",
        key: Some(key),
        ..NewMessage::default()
    };
    let ids =
        f.db.publish_batch("q", |batch| {
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
    // In a later batch too, and from another connection.
    assert_eq!(f.publish("q", keyed("k")).expect("again"), ids[0]);
    let mut other = f.open();
    assert_eq!(
        publish_one(&mut *other, "q", keyed("k")).expect("other"),
        ids[0]
    );
    // Another queue has its own keys.
    assert_ne!(f.publish("r", keyed("k")).expect("r"), ids[0]);
    assert_eq!(f.db.peek("q", &all_states(10)).expect("peek").len(), 2);
    assert_eq!(f.db.peek("r", &all_states(10)).expect("peek").len(), 1);
    assert_eq!(f.info("q").published_total, 2);
    f.assert_counts_match("q");
    f.assert_counts_match("r");
}

pub(super) fn groups_deliver_one_at_a_time_in_order(f: &mut Fixture) {
    let grouped = |g| NewMessage {
        body: b"{}",
        group: Some(g),
        ..NewMessage::default()
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..3 {
        a.push(f.publish("q", grouped("a")).expect("a"));
        b.push(f.publish("q", grouped("b")).expect("b"));
    }
    let first = f.db.claim("q", 10, None, false).expect("claim");
    assert_eq!(ids(&first), [a[0], b[0]], "one per group");
    assert!(f.db.claim("q", 10, None, false).expect("claim").is_empty());
    // The rest wait, held (shown as delayed).
    assert_eq!(f.info("q").counts.delayed, 4);
    // A nack with a delay keeps the group waiting.
    f.db.nack(
        &[first[0].receipt],
        crate::store::Release::After(Duration::from_secs(60)),
        None,
    )
    .expect("nack");
    f.db.ack(&[first[1].receipt]).expect("ack");
    let second = f.db.claim("q", 10, None, false).expect("claim");
    assert_eq!(ids(&second), [b[1]]);
    f.db.ack(&receipts(&second)).expect("ack");
    let third = f.db.claim("q", 10, None, false).expect("claim");
    assert_eq!(ids(&third), [b[2]]);
    f.db.ack(&receipts(&third)).expect("ack");
    assert!(f.db.claim("q", 10, None, false).expect("claim").is_empty());
    assert_eq!(f.state("q", a[0]), (State::Delayed, 1));
    f.assert_counts_match("q");
    // Once the delay passed, group a goes on, in order.
    f.advance(Duration::from_secs(61));
    for (i, id) in a.iter().enumerate() {
        let got = f.db.claim("q", 10, None, false).expect("claim");
        assert_eq!(ids(&got), [*id]);
        assert_eq!(got[0].attempt, if i == 0 { 2 } else { 1 });
        f.db.ack(&receipts(&got)).expect("ack");
    }
    assert!(f.db.claim("q", 10, None, false).expect("claim").is_empty());
    f.assert_counts_match("q");
}

pub(super) fn a_long_group_holds_back_only_itself(f: &mut Fixture) {
    let ids_g =
        f.db.publish_batch("q", |batch| {
            (0..2000)
                .map(|_| {
                    batch.publish(&NewMessage {
                        body: b"{}",
                        group: Some("g"),
                        ..NewMessage::default()
                    })
                })
                .collect::<crate::store::Result<Vec<i64>>>()
        })
        .expect("publish");
    let plain = f.publish_n("q", 10);
    let got = f.db.claim("q", 100, None, false).expect("claim");
    assert_eq!(got.len(), 11, "the group's head and the 10 ungrouped");
    assert_eq!(got[0].id, ids_g[0]);
    assert_eq!(ids(&got[1..]), plain);
    f.db.ack(&[got[0].receipt]).expect("ack");
    let next = f.db.claim("q", 100, None, false).expect("claim");
    assert_eq!(ids(&next), [ids_g[1]]);
    f.assert_counts_match("q");
}

pub(super) fn topics_fan_out_one_message_to_every_subscriber(f: &mut Fixture) {
    for queue in ["a", "b", "c"] {
        assert_eq!(f.db.subscribe("t", queue).expect("sub"), Subscribed::New);
    }
    assert_eq!(f.db.subscribe("t", "a").expect("sub"), Subscribed::Existed);
    assert_eq!(
        f.db.subscribers("t").expect("subs"),
        Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
    assert_eq!(f.db.subscribers("a").expect("subs"), None);
    let sent = f.publish_n("t", 5);
    // One body, three deliveries.
    assert_eq!(f.count("SELECT count(*) FROM messages"), 5);
    let t = f.info("t");
    assert!(t.is_topic);
    assert_eq!(t.published_total, 5);
    for queue in ["a", "b", "c"] {
        assert_eq!(f.info(queue).counts.ready, 5);
        let got = f.db.claim(queue, 10, None, false).expect("claim");
        assert_eq!(ids(&got), sent);
        f.assert_counts_match(queue);
    }
    assert!(matches!(
        f.db.claim("t", 1, None, false),
        Err(Error::NameIsTopic { .. })
    ));
    assert_eq!(
        f.db.unsubscribe("t", "b").expect("unsub"),
        vec!["a".to_owned(), "c".to_owned()]
    );
    assert!(matches!(
        f.db.unsubscribe("t", "b"),
        Err(Error::NotSubscribed { .. })
    ));
    // A queue holding messages cannot become a topic; a topic cannot subscribe.
    assert!(matches!(
        f.db.subscribe("a", "x"),
        Err(Error::NameHoldsMessages { .. })
    ));
    assert!(matches!(
        f.db.subscribe("u", "t"),
        Err(Error::TopicSubscribes { .. })
    ));
    assert!(matches!(
        f.db.subscribe("t", "t"),
        Err(Error::SelfSubscription { .. })
    ));
    f.db.unsubscribe("t", "a").expect("unsub");
    f.db.unsubscribe("t", "c").expect("unsub");
    assert!(matches!(
        f.publish("t", NewMessage::default()),
        Err(Error::NoSubscribers { .. })
    ));
}

pub(super) fn queue_settings_are_created_once_and_changed_by_set(f: &mut Fixture) {
    let patch = max_attempts(3);
    assert_eq!(
        f.db.create_queue("q", &patch, None).expect("create"),
        Created::New
    );
    assert_eq!(
        f.db.create_queue("q", &patch, None).expect("again"),
        Created::Existed
    );
    assert_eq!(
        f.db.create_queue("q", &SettingsPatch::default(), None)
            .expect("no settings"),
        Created::Existed
    );
    assert!(matches!(
        f.db.create_queue("q", &max_attempts(4), None),
        Err(Error::SettingsConflict { .. })
    ));
    let set =
        f.db.set_queue("q", &max_attempts(7), SchemaChange::Keep)
            .expect("set");
    assert_eq!(set.settings.max_attempts, 7);
    assert_eq!(set.schema_version, None);
    assert_eq!(f.db.settings("q").expect("settings"), Some(set.settings));
    assert_eq!(f.db.settings("nope").expect("settings"), None);
    match f.db.set_queue("qq", &patch, SchemaChange::Keep) {
        Err(Error::UnknownQueue { similar, .. }) => assert_eq!(similar, ["q"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.db.names().expect("names"), ["q"]);
}

/// A queue with a TTL of `secs` seconds (`None`: the patch removes it).
fn ttl(secs: Option<u64>) -> SettingsPatch {
    SettingsPatch {
        flow: crate::store::flow::FlowPatch {
            ttl: Some(secs.map(Duration::from_secs)),
            ..Default::default()
        },
        ..SettingsPatch::default()
    }
}

/// A topic's message expires in each subscriber by that queue's own TTL
/// (the message's own TTL wins everywhere); `queue set --ttl` retimes the
/// messages already in the queue, from their publish, and removing the
/// TTL makes them never expire. Readers, claims and the counters agree.
pub(super) fn ttls_apply_per_subscriber_and_queue_set_retimes_held_messages(f: &mut Fixture) {
    f.db.create_queue("a", &ttl(Some(10)), None).expect("a");
    f.db.create_queue("b", &ttl(Some(60)), None).expect("b");
    f.db.create_queue("c", &SettingsPatch::default(), None)
        .expect("c");
    for queue in ["a", "b", "c"] {
        f.db.subscribe("t", queue).expect("sub");
    }
    let plain = f.publish_n("t", 3);
    let own = NewMessage {
        body: b"{}",
        ttl: Some(Duration::from_secs(30)),
        ..NewMessage::default()
    };
    let own = f.publish("t", own).expect("publish");
    let dead_ids = |f: &Fixture, queue: &str| -> Vec<i64> {
        let dead =
            f.db.peek(queue, &super::only(State::Dead, 10))
                .expect("peek");
        assert!(
            dead.iter()
                .all(|p| p.dead_reason == Some(crate::store::flow::DeadReason::Expired)),
            "{queue}: {dead:?}"
        );
        dead.iter().map(|p| p.delivery.id).collect()
    };
    f.advance(Duration::from_secs(15));
    // `a`'s TTL (10 s) has passed, the message's own (30 s) has not.
    assert_eq!(dead_ids(f, "a"), plain);
    assert_eq!((f.info("a").counts.ready, f.info("a").counts.dead), (1, 3));
    let expired = crate::store::ReplayFilter {
        dead: true,
        dead_reason: Some(crate::store::flow::DeadReason::Expired),
        ..Default::default()
    };
    let preview = f.db.replay_preview("a", &expired, None).expect("preview");
    assert_eq!(
        preview.ids, plain,
        "replay --dry-run sees them before a claim"
    );
    let got = f.db.claim("a", 10, None, false).expect("claim");
    assert_eq!(ids(&got), [own]);
    f.db.ack(&receipts(&got)).expect("ack");
    f.assert_counts_match("a");
    for queue in ["b", "c"] {
        assert_eq!(f.info(queue).counts.ready, 4, "{queue}");
    }
    f.advance(Duration::from_secs(20));
    // 35 s: the message's own TTL has passed everywhere, `b`'s has not.
    for queue in ["b", "c"] {
        assert_eq!(dead_ids(f, queue), [own], "{queue}");
        let counts = f.info(queue).counts;
        assert_eq!((counts.ready, counts.dead), (3, 1), "{queue}");
    }
    // A TTL set now counts from each message's publish: 20 s passed.
    f.db.set_queue("c", &ttl(Some(20)), SchemaChange::Keep)
        .expect("set");
    assert_eq!(f.info("c").counts.dead, 4);
    let mut dead = dead_ids(f, "c");
    dead.sort_unstable();
    assert_eq!(dead, [plain.clone(), vec![own]].concat());
    assert!(f.db.claim("c", 10, None, false).expect("claim").is_empty());
    f.assert_counts_match("c");
    // Without a TTL, `b`'s messages never expire; the message's own did.
    f.db.set_queue("b", &ttl(None), SchemaChange::Keep)
        .expect("set");
    f.advance(Duration::from_secs(3600));
    let got = f.db.claim("b", 10, None, false).expect("claim");
    assert_eq!(ids(&got), plain);
    f.assert_counts_match("b");
    assert_eq!(f.info("b").counts.dead, 1);
    // A queue without flow settings, whose claims may take PostgreSQL's
    // one-statement path right after a full one: a message whose own TTL
    // passed is never leased.
    let first = f.publish_n("d", 1);
    let short = NewMessage {
        body: b"{}",
        ttl: Some(Duration::from_secs(5)),
        ..NewMessage::default()
    };
    let short = f.publish("d", short).expect("publish");
    let last = f.publish_n("d", 1);
    let got = f.db.claim("d", 1, None, false).expect("claim");
    assert_eq!(ids(&got), first);
    f.advance(Duration::from_secs(10));
    let got = f.db.claim("d", 10, None, false).expect("claim");
    assert_eq!(ids(&got), last);
    assert_eq!(f.state("d", short).0, State::Dead);
    f.assert_counts_match("d");
    // The head of a group dies of its TTL: the next one goes on, for readers
    // at once and for the next claim.
    let grouped = |ttl| NewMessage {
        body: b"{}",
        group: Some("g"),
        ttl,
        ..NewMessage::default()
    };
    let head = f
        .publish("e", grouped(Some(Duration::from_secs(5))))
        .expect("publish");
    let next = f.publish("e", grouped(None)).expect("publish");
    assert_eq!(f.state("e", next).0, State::Held);
    f.advance(Duration::from_secs(10));
    assert_eq!(f.state("e", head).0, State::Dead);
    assert_eq!(f.state("e", next).0, State::Ready);
    let counts = f.info("e").counts;
    assert_eq!((counts.ready, counts.delayed, counts.dead), (1, 0, 1));
    let got = f.db.claim("e", 10, None, false).expect("claim");
    assert_eq!(ids(&got), [next]);
    f.assert_counts_match("e");
    // Large batches (the multi-row inserts) expire like single messages.
    f.db.create_queue("f", &ttl(Some(10)), None).expect("f");
    f.publish_n("f", 130);
    f.advance(Duration::from_secs(10));
    assert_eq!(f.info("f").counts.dead, 130);
    assert!(f.db.claim("f", 200, None, false).expect("claim").is_empty());
    f.assert_counts_match("f");
}

pub(super) fn a_group_commits_every_job_but_the_ones_that_fail(f: &mut Fixture) {
    let one = SettingsPatch {
        flow: crate::store::flow::FlowPatch {
            max_length: Some(Some(1)),
            ..crate::store::flow::FlowPatch::default()
        },
        ..SettingsPatch::default()
    };
    f.db.create_queue("full", &one, None).expect("create");
    f.publish("full", NewMessage::default()).expect("fill it");
    f.publish("src", NewMessage::default()).expect("publish");
    let got = f.db.claim("src", 1, None, false).expect("claim");
    let receipt = got[0].receipt;
    let gone = Receipt {
        msg_id: 999_999_999,
        ..receipt
    };
    let body = |n: usize| format!("{{\"n\":{n}}}");
    let mut ids: Vec<Vec<i64>> = vec![Vec::new(); 5];
    let outcomes = {
        let [a, full, acked, bad, unknown] = &mut ids[..] else {
            unreachable!()
        };
        // Each fill keeps its own ids, from the run that committed.
        let mut fill_a = |batch: &mut crate::store::PublishBatch<'_>| {
            a.clear();
            for n in 0..3 {
                a.push(batch.publish(&NewMessage {
                    body: body(n).as_bytes(),
                    ..NewMessage::default()
                })?);
            }
            Ok(())
        };
        let mut fill_full = |batch: &mut crate::store::PublishBatch<'_>| {
            full.clear();
            full.push(batch.publish(&NewMessage::default())?);
            Ok(())
        };
        let mut fill_acked = |batch: &mut crate::store::PublishBatch<'_>| {
            acked.clear();
            acked.push(batch.publish(&NewMessage {
                body: b"\"next\"",
                ..NewMessage::default()
            })?);
            Ok(())
        };
        let mut fill_bad = |batch: &mut crate::store::PublishBatch<'_>| {
            bad.clear();
            bad.push(batch.publish(&NewMessage::default())?);
            Err(Error::Internal("line 2 is not JSON".into()))
        };
        let mut fill_unknown = |batch: &mut crate::store::PublishBatch<'_>| {
            unknown.clear();
            unknown.push(batch.publish(&NewMessage::default())?);
            Ok(())
        };
        let mut jobs = [
            PublishJob {
                name: "a",
                ack: None,
                fill: &mut fill_a,
            },
            PublishJob {
                name: "full",
                ack: None,
                fill: &mut fill_full,
            },
            PublishJob {
                name: "b",
                ack: Some(&receipt),
                fill: &mut fill_acked,
            },
            PublishJob {
                name: "b",
                ack: None,
                fill: &mut fill_bad,
            },
            PublishJob {
                name: "b",
                ack: Some(&gone),
                fill: &mut fill_unknown,
            },
        ];
        f.db.publish_group(&mut jobs).expect("the group commits")
    };
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(
        matches!(outcomes[1], Err(Error::QueueFull { .. })),
        "{:?}",
        outcomes[1]
    );
    assert!(outcomes[2].is_ok(), "{:?}", outcomes[2]);
    assert!(
        matches!(&outcomes[3], Err(Error::Internal(e)) if e.contains("line 2")),
        "{:?}",
        outcomes[3]
    );
    assert!(
        matches!(outcomes[4], Err(Error::Receipt { .. })),
        "{:?}",
        outcomes[4]
    );
    // The jobs that committed got their own ids, which are the messages now
    // in their queues; nothing of the failed jobs landed.
    let held = |f: &Fixture, q: &str| -> Vec<i64> {
        let mut ids: Vec<i64> =
            f.db.peek(q, &all_states(10))
                .expect("peek")
                .iter()
                .map(|p| p.delivery.id)
                .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids[0].len(), 3);
    assert_eq!(held(f, "a"), ids[0]);
    assert_eq!(ids[2].len(), 1);
    assert_eq!(held(f, "b"), ids[2]);
    assert_eq!(held(f, "full").len(), 1);
    assert_eq!(f.info("full").published_total, 1);
    assert_eq!(f.info("b").published_total, 1);
    // The acking job acked its delivery; the others acked nothing.
    assert_eq!(f.info("src").counts.acked, 1);
    for q in ["a", "b", "full", "src"] {
        f.assert_counts_match(q);
    }
}

pub(super) fn keys_and_groups_are_refused_alike_where_a_backend_could_not_keep_them(
    f: &mut Fixture,
) {
    use crate::store::MAX_LABEL_BYTES;
    let longest = "k".repeat(MAX_LABEL_BYTES);
    let too_long = "k".repeat(MAX_LABEL_BYTES + 1);
    // The longest allowed fits both backends' indexes, as key and as group.
    let kept = f
        .publish(
            "q",
            NewMessage {
                body: b"1",
                key: Some(&longest),
                group: Some(&longest),
                ..NewMessage::default()
            },
        )
        .expect("the longest key and group");
    for (what, msg) in [
        (
            "key",
            NewMessage {
                key: Some(&too_long),
                ..NewMessage::default()
            },
        ),
        (
            "group",
            NewMessage {
                group: Some(&too_long),
                ..NewMessage::default()
            },
        ),
        (
            "key",
            NewMessage {
                key: Some("a\0b"),
                ..NewMessage::default()
            },
        ),
        (
            "group",
            NewMessage {
                group: Some("a\0b"),
                ..NewMessage::default()
            },
        ),
    ] {
        let msg = NewMessage { body: b"2", ..msg };
        match f.publish("q", msg) {
            Err(Error::BadLabel { what: got, problem }) => {
                assert_eq!(got, what, "{problem}");
                assert!(
                    problem.contains("bytes long") || problem.contains("NUL"),
                    "{problem}"
                );
            }
            other => panic!("{what} {msg:?}: {other:?}"),
        }
    }
    let all = f.db.peek("q", &all_states(10)).expect("peek");
    let stored: Vec<i64> = all.iter().map(|p| p.delivery.id).collect();
    assert_eq!(stored, vec![kept], "a refused message was stored");
    assert_eq!(f.info("q").published_total, 1);

    // A schedule whose group no backend could keep is refused when added,
    // not at every claim of its target.
    let mut spec = super::admin::every_minute("q");
    spec.group = Some(too_long.clone());
    assert!(matches!(
        f.db.add_schedule("s", &spec),
        Err(Error::BadLabel { what: "group", .. })
    ));
    assert!(f.db.schedules().expect("schedules").is_empty());

    // A failure reason with a NUL (a handler's stderr) is kept on both
    // backends, the NUL as U+FFFD.
    let got = f.db.claim("q", 1, None, false).expect("claim");
    f.db.nack(
        &receipts(&got),
        crate::store::Release::Now,
        Some("exit 1\nx\0y"),
    )
    .expect("nack")
    .into_iter()
    .for_each(|r| r.expect("nacked"));
    let peeked = f.db.peek("q", &all_states(10)).expect("peek");
    assert_eq!(peeked[0].last_error.as_deref(), Some("exit 1\nx\u{FFFD}y"));
    f.assert_counts_match("q");
}
