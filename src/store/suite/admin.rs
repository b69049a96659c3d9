//! Replay, purge, retention, queue deletion, and what `doctor` finds and
//! repairs.

use std::time::Duration;

use super::{Fixture, Kind, all_states, ids, receipts};
use crate::store::schedule::{CatchUp, Rule};
use crate::store::{
    Counts, Error, Health, ReceiptError, ReplayFilter, ScheduleSpec, SettingsPatch, State,
};

pub(super) fn replay_and_purge_keep_counts_exact(f: &mut Fixture) {
    f.publish_n("q", 20);
    let got = f.db.claim("q", 10, None, false).expect("claim");
    f.db.ack(&receipts(&got)[..6]).expect("ack");
    let filter = ReplayFilter {
        acked: true,
        ids: vec![got[0].id, got[1].id, got[2].id],
        ..ReplayFilter::default()
    };
    let preview = f.db.replay_preview("q", &filter, None).expect("preview");
    assert_eq!(preview.ids, ids(&got[..3]));
    let done = f.db.replay("q", &filter, None).expect("replay");
    assert_eq!(done.ids, ids(&got[..3]));
    assert_eq!(
        f.state("q", got[0].id),
        (State::Ready, 0),
        "attempts start again"
    );
    let all_acked = ReplayFilter {
        acked: true,
        ..ReplayFilter::default()
    };
    let copied =
        f.db.replay("q", &all_acked, Some("copy"))
            .expect("replay to");
    assert_eq!(copied.ids, ids(&got[3..6]));
    let again =
        f.db.replay_preview("q", &all_acked, Some("copy"))
            .expect("preview to");
    assert_eq!(again.skipped, ids(&got[3..6]));
    assert_eq!(f.db.purge("q", &[State::Ready]).expect("purge"), 13);
    let infos = f.db.queue_infos().expect("infos");
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
    let rows = |f: &Fixture, queue| f.db.peek(queue, &all_states(100)).expect("peek").len();
    assert_eq!((rows(f, "q"), rows(f, "copy")), (7, 3));
    // The same message in two queues: the copy has the same id and body.
    let copy = f.db.claim("copy", 3, None, false).expect("claim copy");
    assert_eq!(ids(&copy), ids(&got[3..6]));
    assert_eq!(copy[0].body, got[3].body);
    // Purging acked messages too, with progress.
    let mut seen = 0;
    let purged =
        f.db.purge_with_progress("q", &[State::Acked], &mut |n| seen = n)
            .expect("purge");
    assert_eq!(purged, 3);
    assert!(seen <= 3);
    f.assert_counts_match("q");
    f.assert_counts_match("copy");
    let health = f.health();
    assert_eq!(health.orphan_messages, 0, "purged bodies go too");
    assert!(health.healthy, "{health:?}");
}

pub(super) fn a_replay_that_finds_nothing_makes_no_target(f: &mut Fixture) {
    f.publish_n("q", 2);
    let dead = ReplayFilter {
        dead: true,
        ..ReplayFilter::default()
    };
    let done = f.db.replay("q", &dead, Some("new")).expect("replay");
    assert_eq!(done, crate::store::Replayed::default());
    let names: Vec<String> =
        f.db.queue_infos()
            .expect("infos")
            .into_iter()
            .map(|q| q.name)
            .collect();
    assert_eq!(names, ["q"], "a target was made for nothing");
    // A topic is still refused as a target, found or not.
    f.db.subscribe("t", "sub").expect("subscribe");
    assert!(matches!(
        f.db.replay("q", &dead, Some("t")),
        Err(Error::NameIsTopic { .. })
    ));
}

pub(super) fn delete_queue_refuses_pending_work_unless_forced(f: &mut Fixture) {
    f.publish_n("q", 3);
    f.db.subscribe("t", "q").expect("sub");
    assert!(matches!(
        f.db.delete_queue("q", false),
        Err(Error::QueueNotEmpty { pending: 3, .. })
    ));
    assert_eq!(f.db.delete_queue("q", true).expect("delete"), 3);
    assert_eq!(f.count("SELECT count(*) FROM messages"), 0);
    assert_eq!(f.db.names().expect("names"), ["t"]);
    assert_eq!(f.db.subscribers("t").expect("subs"), Some(Vec::new()));
    assert!(matches!(
        f.db.delete_queue("q", true),
        Err(Error::UnknownQueue { .. })
    ));
    assert!(f.health().healthy);
}

pub(super) fn retention_zero_deletes_on_ack_and_ids_are_never_reused(f: &mut Fixture) {
    let patch = SettingsPatch {
        retention: Some(Duration::ZERO),
        ..SettingsPatch::default()
    };
    f.db.create_queue("q", &patch, None).expect("create");
    let first = f.publish_n("q", 3);
    let got = f.db.claim("q", 3, None, true).expect("claim and ack");
    assert_eq!(ids(&got), first);
    assert!(f.db.peek("q", &all_states(10)).expect("peek").is_empty());
    assert_eq!(f.count("SELECT count(*) FROM messages"), 0);
    // A repeated ack of a deleted delivery is still harmless.
    assert_eq!(f.db.ack(&receipts(&got)[..1]).expect("ack"), [Ok(())]);
    let next = f.publish_n("q", 1);
    assert!(next[0] > first[2]);
    let info = f.info("q");
    assert_eq!((info.counts.acked, info.published_total), (0, 4));
    f.assert_counts_match("q");
}

pub(super) fn retention_sweeps_acked_messages_once_it_passed(f: &mut Fixture) {
    let patch = SettingsPatch {
        retention: Some(Duration::from_secs(60)),
        ..SettingsPatch::default()
    };
    f.db.create_queue("q", &patch, None).expect("create");
    f.publish_n("q", 5);
    let got = f.db.claim("q", 5, None, false).expect("claim");
    f.db.ack(&receipts(&got)).expect("ack");
    assert_eq!(f.info("q").counts.acked, 5);
    f.advance(Duration::from_secs(61));
    // Readers stop showing them at once.
    assert!(f.db.peek("q", &all_states(10)).expect("peek").is_empty());
    // A writer sweeps them (on PostgreSQL, in housekeeping, which a
    // connection does once a second: a new one does it now).
    let mut other = f.open();
    assert!(other.claim("q", 1, None, false).expect("claim").is_empty());
    assert_eq!(f.count("SELECT count(*) FROM deliveries"), 0);
    assert_eq!(f.count("SELECT count(*) FROM messages"), 0);
    assert_eq!(f.info("q").counts.acked, 0);
    // Their receipts are past acking: harmless.
    assert_eq!(f.db.ack(&receipts(&got)[..1]).expect("ack"), [Ok(())]);
    assert_ne!(
        f.db.nack(&receipts(&got)[..1], crate::store::Release::Now, None)
            .expect("nack"),
        [Ok(())]
    );
    f.assert_counts_match("q");
}

/// Damage no operation makes: counters off by some, a message no delivery
/// needs, and a delivery with an id above the next one handed out. Written
/// with each backend's own SQL (its counters and column types differ).
fn damage(f: &Fixture) {
    match f.kind() {
        Kind::Sqlite => f.execute(
            "UPDATE queues SET n_ready = n_ready + 5, n_dead = n_dead - 1 WHERE name = 'q';
             INSERT INTO messages (id, origin_id, published_at, raw, body)
               VALUES (999999, 1, 0, 0, X'31'), (1000000, 1, 0, 0, X'31');",
        ),
        Kind::Postgres => f.execute(
            "INSERT INTO stats (queue_id, second, n_ready, n_dead)
               VALUES ((SELECT id FROM queues WHERE name = 'q'), 0, 5, -1);
             INSERT INTO messages (id, origin_id, published_at, raw, body)
               VALUES (999999, 1, 0, false, '\\x31'), (1000000, 1, 0, false, '\\x31');",
        ),
    }
    f.execute(
        "INSERT INTO deliveries (msg_id, queue_id, state, priority, visible_at)
         VALUES (1000000, (SELECT id FROM queues WHERE name = 'q'), 0, 0, 0)",
    );
}

pub(super) fn health_finds_orphans_and_repair_removes_them(f: &mut Fixture) {
    f.publish_n("q", 3);
    let health = f.health();
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.queues[0].counted[State::Ready as usize], 3);
    assert!(health.ids_safe);
    damage(f);
    let health = f.health();
    assert!(!health.healthy);
    assert!(!health.queues[0].consistent());
    assert_eq!(health.queues[0].counted[State::Ready as usize], 4);
    assert_eq!(health.orphan_messages, 1);
    assert_eq!(health.missing_messages, 0);
    assert!(!health.ids_safe);
    // The counters, the orphan and the next id.
    assert_eq!(f.repair(), 3);
    let health = f.health();
    assert!(health.healthy, "{health:?}");
    assert_eq!(f.info("q").counts.ready, 4);
    assert_eq!(f.publish_n("q", 1)[0], 1_000_001);
    assert_eq!(f.repair(), 0, "nothing left to repair");
    // The delivery repair kept is delivered like any other.
    let got = f.db.claim("q", 10, None, false).expect("claim");
    assert!(ids(&got).contains(&1_000_000));
    assert_eq!(
        f.db.ack(&receipts(&got)).expect("ack"),
        vec![Ok::<(), ReceiptError>(()); 5]
    );
    f.assert_counts_match("q");
}

/// A schedule publishing `{}` to `target` every minute from now.
pub(super) fn every_minute(target: &str) -> ScheduleSpec {
    ScheduleSpec {
        target: target.to_owned(),
        rule: Rule::every(Duration::from_secs(60)).expect("rule"),
        start: None,
        catch_up: CatchUp::default(),
        body: b"{}".to_vec(),
        raw: false,
        headers: None,
        priority: 0,
        group: None,
        ttl: None,
    }
}

/// The stored and the computed next occurrence of `queue`, as doctor
/// reports them.
fn schedule_at(h: &Health, queue: &str) -> (Option<i64>, Option<i64>) {
    let q = h.queues.iter().find(|q| q.name == queue).expect(queue);
    (q.schedule_at, q.schedule_at_computed)
}

pub(super) fn health_checks_schedule_at_and_repair_recomputes_it(f: &mut Fixture) {
    f.db.add_schedule("direct", &every_minute("q"))
        .expect("add");
    f.db.subscribe("t", "sub").expect("subscribe");
    f.db.add_schedule("fanned", &every_minute("t"))
        .expect("add");
    f.db.add_schedule("doomed", &every_minute("gone"))
        .expect("add");
    let next = |f: &Fixture, name: &str| {
        let all = f.db.schedules().expect("schedules");
        all.iter().find(|s| s.name == name).expect(name).next_at
    };
    // What the operations keep agrees with what doctor computes.
    let h = f.db.health().expect("health");
    assert!(h.healthy(), "{h:?}");
    assert_eq!(schedule_at(&h, "q"), (next(f, "direct"), next(f, "direct")));
    assert_eq!(schedule_at(&h, "sub").1, next(f, "fanned"));
    assert!(schedule_at(&h, "sub").1.is_some());
    assert_eq!(schedule_at(&h, "t"), (None, None), "a topic keeps none");
    // Damage: one next occurrence lost, one made up, a target deleted
    // under its schedule.
    f.execute(
        "UPDATE queues SET schedule_at = NULL WHERE name = 'q';
         UPDATE queues SET schedule_at = 5 WHERE name = 'sub';
         DELETE FROM queues WHERE name = 'gone';",
    );
    let h = f.db.health().expect("health");
    assert!(!h.healthy());
    let wrong: Vec<&str> = h
        .queues
        .iter()
        .filter(|q| !q.schedule_at_ok())
        .map(|q| q.name.as_str())
        .collect();
    assert_eq!(wrong, ["q", "sub"]);
    assert_eq!(schedule_at(&h, "sub"), (Some(5), next(f, "fanned")));
    assert_eq!(h.lost_schedules.len(), 1);
    assert_eq!(h.lost_schedules[0].name, "doomed");
    // Two queues recomputed, one schedule removed.
    assert_eq!(f.repair(), 3);
    let h = f.db.health().expect("health");
    assert!(h.healthy(), "{h:?}");
    assert_eq!(schedule_at(&h, "q").0, next(f, "direct"));
    assert_eq!(schedule_at(&h, "sub").0, next(f, "fanned"));
    assert_eq!(f.count("SELECT count(*) FROM schedules"), 2);
    assert_eq!(f.repair(), 0, "nothing left to repair");
    // The repaired row works: the due occurrence is published by a claim.
    f.advance(Duration::from_secs(61));
    let got = f.db.claim("q", 10, None, false).expect("claim");
    assert!(!got.is_empty(), "the due occurrence is published");
}
