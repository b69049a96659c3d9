//! Schedules: occurrences published lazily by claims on their target, once
//! each however many connections claim, with catch-up, pause, and the
//! target's refusals.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Fixture, receipts};
use crate::store::flow::FlowPatch;
use crate::store::schedule::{CatchUp, Rule};
use crate::store::{Created, Db, Delivery, Done, Error, Outcome, ScheduleSpec, SettingsPatch};

const MINUTE: Duration = Duration::from_secs(60);

fn spec(target: &str, rule: Rule, start: Option<i64>) -> ScheduleSpec {
    ScheduleSpec {
        target: target.to_owned(),
        rule,
        start,
        catch_up: CatchUp::Latest,
        body: br#"{"job":"report"}"#.to_vec(),
        raw: false,
        headers: Some(r#"{"team":"ops","spool-schedule":"forged"}"#.to_owned()),
        priority: 0,
        group: None,
        ttl: None,
    }
}

fn every(d: Duration) -> Rule {
    Rule::every(d).expect("rule")
}

fn header(d: &Delivery, name: &str) -> Option<String> {
    let headers: serde_json::Value =
        serde_json::from_str(d.headers.as_deref().unwrap_or("{}")).expect("headers");
    headers
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// The occurrence times of the deliveries, from their `spool-scheduled-for`.
fn occurrences(ds: &[Delivery]) -> Vec<i64> {
    ds.iter()
        .map(|d| {
            let at = header(d, "spool-scheduled-for").expect("spool-scheduled-for");
            at.parse::<jiff::Timestamp>()
                .expect("RFC 3339")
                .as_millisecond()
        })
        .collect()
}

fn claim_all(db: &mut Db, queue: &str) -> Vec<Delivery> {
    let got = db.claim(queue, 100, None, false).expect("claim");
    let acked = db.ack(&receipts(&got)).expect("ack");
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    got
}

fn listed(db: &Db, name: &str) -> crate::store::Schedule {
    db.schedules()
        .expect("list")
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no schedule {name}"))
}

pub(super) fn every_occurrence_is_published_once_by_the_next_claim(f: &mut Fixture) {
    let start = f.now();
    let made =
        f.db.add_schedule("nightly", &spec("jobs", every(MINUTE), Some(start)))
            .expect("add");
    assert_eq!(made, Created::New);
    assert_eq!(f.info("jobs").counts.ready, 0, "adding publishes nothing");
    assert_eq!(listed(&f.db, "nightly").next_at, Some(start));

    let got = claim_all(&mut f.db, "jobs");
    assert_eq!(got.len(), 1, "START is the first occurrence");
    assert_eq!(got[0].body, br#"{"job":"report"}"#);
    assert_eq!(occurrences(&got), vec![start]);
    assert_eq!(
        header(&got[0], "spool-schedule").as_deref(),
        Some("nightly")
    );
    assert_eq!(header(&got[0], "team").as_deref(), Some("ops"));
    assert!(claim_all(&mut f.db, "jobs").is_empty(), "published once");

    f.advance(MINUTE);
    let got = claim_all(&mut f.db, "jobs");
    assert_eq!(occurrences(&got), vec![start + 60_000]);
    let s = listed(&f.db, "nightly");
    assert_eq!(
        (s.last_at, s.next_at, s.last_error),
        (Some(start + 60_000), Some(start + 120_000), None)
    );
    // A claim through `work` fires too.
    f.advance(MINUTE);
    let step = f.db.work_step("jobs", &[], 10, None, None).expect("work");
    let claimed = step.claimed.expect("claimed");
    assert_eq!(occurrences(&claimed), vec![start + 120_000]);
    f.assert_counts_match("jobs");
}

pub(super) fn catch_up_latest_publishes_the_newest_and_all_each_one(f: &mut Fixture) {
    let start = f.now() - 5 * 60_000 - 30_000;
    f.db.add_schedule("latest", &spec("a", every(MINUTE), Some(start)))
        .expect("add");
    let mut all = spec("b", every(MINUTE), Some(start));
    all.catch_up = CatchUp::All;
    f.db.add_schedule("all", &all).expect("add");

    assert_eq!(
        occurrences(&claim_all(&mut f.db, "a")),
        vec![start + 5 * 60_000],
        "only the newest of the six due"
    );
    let each: Vec<i64> = (0..6).map(|k| start + k * 60_000).collect();
    assert_eq!(occurrences(&claim_all(&mut f.db, "b")), each);
    // Nothing more until the next one.
    assert!(claim_all(&mut f.db, "a").is_empty());
    assert!(claim_all(&mut f.db, "b").is_empty());
    assert_eq!(listed(&f.db, "all").next_at, Some(start + 6 * 60_000));
}

pub(super) fn a_paused_schedule_publishes_nothing_and_resume_catches_up(f: &mut Fixture) {
    let start = f.now();
    let mut s = spec("q", every(MINUTE), Some(start));
    s.catch_up = CatchUp::All;
    f.db.add_schedule("s", &s).expect("add");
    assert!(f.db.pause_schedule("s", true).expect("pause"));
    assert!(
        !f.db.pause_schedule("s", true).expect("again"),
        "already paused"
    );
    f.advance(3 * MINUTE);
    assert!(claim_all(&mut f.db, "q").is_empty(), "paused");
    assert_eq!(
        f.db.due_in("q").expect("due"),
        None,
        "a paused schedule wakes nobody"
    );
    assert!(f.db.pause_schedule("s", false).expect("resume"));
    let each: Vec<i64> = (0..4).map(|k| start + k * 60_000).collect();
    assert_eq!(
        occurrences(&claim_all(&mut f.db, "q")),
        each,
        "catch-up all"
    );
    assert!(matches!(
        f.db.pause_schedule("nope", true),
        Err(Error::UnknownSchedule { .. })
    ));
}

pub(super) fn remove_keeps_what_was_published_and_stops_the_rest(f: &mut Fixture) {
    let start = f.now();
    f.db.add_schedule("s", &spec("q", every(MINUTE), Some(start)))
        .expect("add");
    let first = f.db.claim("q", 10, None, false).expect("claim");
    assert_eq!(first.len(), 1);
    f.db.remove_schedule("s").expect("remove");
    assert!(f.db.schedules().expect("list").is_empty());
    let ack = f.db.ack(&receipts(&first)).expect("ack");
    assert_eq!(ack, vec![Ok(())], "the published message stays deliverable");
    f.advance(2 * MINUTE);
    assert!(
        claim_all(&mut f.db, "q").is_empty(),
        "nothing after removal"
    );
    assert_eq!(f.db.due_in("q").expect("due"), None);
    match f.db.remove_schedule("s") {
        Err(Error::UnknownSchedule { name, .. }) => assert_eq!(name, "s"),
        other => panic!("{other:?}"),
    }
    // The target may be deleted once no schedule feeds it.
    f.db.add_schedule("t", &spec("q", every(MINUTE), None))
        .expect("add");
    match f.db.delete_queue("q", true) {
        Err(Error::ScheduleTarget { schedules, .. }) => assert_eq!(schedules, vec!["t"]),
        other => panic!("{other:?}"),
    }
    f.db.remove_schedule("t").expect("remove");
    f.db.delete_queue("q", true).expect("delete");
}

pub(super) fn add_is_a_no_op_with_the_same_settings_and_a_conflict_with_others(f: &mut Fixture) {
    let s = spec("q", every(MINUTE), None);
    assert_eq!(f.db.add_schedule("s", &s).expect("add"), Created::New);
    let before = listed(&f.db, "s");
    f.advance(MINUTE / 2);
    assert_eq!(
        f.db.add_schedule("s", &s).expect("again"),
        Created::Existed,
        "an omitted start is not compared"
    );
    assert_eq!(listed(&f.db, "s"), before, "nothing changed");
    let mut other = s.clone();
    other.rule = Rule::cron("0 3 * * *", None).expect("cron");
    other.body = b"{}".to_vec();
    match f.db.add_schedule("s", &other) {
        Err(Error::ScheduleConflict { differs, .. }) => assert_eq!(differs, vec!["rule", "body"]),
        other => panic!("{other:?}"),
    }
    let mut later = s;
    later.start = Some(before.spec.start.expect("start") + 1);
    assert!(matches!(
        f.db.add_schedule("s", &later),
        Err(Error::ScheduleConflict { .. })
    ));
    assert!(matches!(
        f.db.add_schedule("bad name!", &spec("q", every(MINUTE), None)),
        Err(Error::BadName { .. })
    ));
    assert_eq!(f.db.schedules().expect("list").len(), 1);
}

pub(super) fn a_topic_schedule_feeds_every_subscriber(f: &mut Fixture) {
    f.db.subscribe("events", "one").expect("subscribe");
    let start = f.now();
    f.db.add_schedule("tick", &spec("events", every(MINUTE), Some(start)))
        .expect("add");
    // A queue that subscribes later is fed from then on.
    f.db.subscribe("events", "two").expect("subscribe");
    assert_eq!(f.db.due_in("two").expect("due"), Some(Duration::ZERO));
    assert_eq!(occurrences(&claim_all(&mut f.db, "two")), vec![start]);
    assert_eq!(
        occurrences(&claim_all(&mut f.db, "one")),
        vec![start],
        "the claim on `two` published to every subscriber"
    );
    f.db.unsubscribe("events", "two").expect("unsubscribe");
    f.advance(MINUTE);
    assert!(claim_all(&mut f.db, "two").is_empty(), "no longer fed");
    assert_eq!(
        occurrences(&claim_all(&mut f.db, "one")),
        vec![start + 60_000]
    );
}

pub(super) fn a_full_target_keeps_the_occurrence_due_and_says_why(f: &mut Fixture) {
    let limit = SettingsPatch {
        flow: FlowPatch {
            max_length: Some(Some(1)),
            ..FlowPatch::default()
        },
        ..SettingsPatch::default()
    };
    f.db.create_queue("q", &limit, None).expect("create");
    f.publish_n("q", 1);
    let start = f.now();
    f.db.add_schedule(
        "s",
        &spec("q", every(Duration::from_secs(3600)), Some(start)),
    )
    .expect("add");
    let held = f.db.claim("q", 1, None, false).expect("claim");
    assert_eq!(held.len(), 1);
    assert!(
        header(&held[0], "spool-schedule").is_none(),
        "the old message"
    );
    let s = listed(&f.db, "s");
    assert_eq!(s.next_at, Some(start), "still due");
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("full")),
        "{s:?}"
    );
    assert!(f.db.claim("q", 1, None, false).expect("claim").is_empty());
    f.db.ack(&receipts(&held)).expect("ack");
    let got = claim_all(&mut f.db, "q");
    assert_eq!(
        occurrences(&got),
        vec![start],
        "published once there is room"
    );
    let s = listed(&f.db, "s");
    assert_eq!((s.last_at, s.last_error), (Some(start), None));
}

pub(super) fn waiting_consumers_wake_at_the_next_occurrence(f: &mut Fixture) {
    let start = f.now() + 10 * 60_000;
    f.db.add_schedule("later", &spec("q", every(MINUTE), Some(start)))
        .expect("add");
    let due = f.db.due_in("q").expect("due").expect("an occurrence");
    assert!(
        due > Duration::from_secs(9 * 60) && due <= Duration::from_secs(10 * 60),
        "{due:?}"
    );
    // A delayed message due earlier wakes them first.
    f.publish(
        "q",
        crate::store::NewMessage {
            body: b"1",
            available_at: Some(f.now() + 60_000),
            ..Default::default()
        },
    )
    .expect("publish");
    let due = f.db.due_in("q").expect("due").expect("due");
    assert!(due <= Duration::from_secs(60), "{due:?}");
    assert_eq!(f.db.due_in("other").expect("due"), None);
}

/// Eight connections claim (and settle through `work_step`) while
/// occurrences come due every 100 ms: each is published exactly once, and
/// with `--catch-up all` none is skipped.
pub(super) fn racing_claims_publish_each_occurrence_once(f: &mut Fixture) {
    let start = f.now() + 200;
    let mut s = spec("q", every(Duration::from_millis(100)), Some(start));
    s.catch_up = CatchUp::All;
    f.db.add_schedule("tick", &s).expect("add");
    let until = Instant::now() + Duration::from_millis(1500);
    let seen = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let (opts, seen) = (f.options(), &seen);
            scope.spawn(move || {
                let mut db = Db::open(opts).expect("open");
                let mut done: Vec<Done> = Vec::new();
                let mut mine = Vec::new();
                while Instant::now() < until {
                    let step = db.work_step("q", &done, 4, None, None).expect("work");
                    assert!(step.settled.iter().all(Result::is_ok), "{step:?}");
                    let claimed = step.claimed.expect("claimed");
                    done = claimed
                        .iter()
                        .map(|d| Done::new(d.receipt, Outcome::Ack))
                        .collect();
                    mine.extend(occurrences(&claimed));
                    std::thread::sleep(Duration::from_millis(5));
                }
                db.work_step("q", &done, 0, None, None).expect("settle");
                seen.lock().expect("lock").extend(mine);
            });
        }
    });
    let mut seen = seen.into_inner().expect("seen");
    seen.sort_unstable();
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for at in &seen {
        *counts.entry(*at).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "an occurrence published twice: {counts:?}"
    );
    assert!(seen.len() >= 5, "occurrences came due: {seen:?}");
    let expected: Vec<i64> = (0..seen.len() as i64).map(|k| start + k * 100).collect();
    assert_eq!(seen, expected, "consecutive from START, none skipped");
    let info = f.info("q");
    assert_eq!(info.counts.acked as usize, seen.len());
    assert_eq!(info.counts.ready + info.counts.leased, 0);
}

pub(super) fn a_schedule_whose_rule_no_longer_reads_does_not_stop_claims(f: &mut Fixture) {
    let start = f.now();
    let rule = Rule::cron("* * * * *", Some("Europe/Paris")).expect("cron");
    f.db.add_schedule("paris", &spec("q", rule, Some(start - 60_000)))
        .expect("add");
    f.publish_n("q", 1);
    // As if the system's time zone database had lost the zone.
    f.execute("UPDATE schedules SET tz = 'Nowhere/Atlantis'");
    let got = claim_all(&mut f.db, "q");
    assert_eq!(got.len(), 1, "the claim still delivers");
    assert!(header(&got[0], "spool-schedule").is_none());
    match f.db.schedules() {
        Err(Error::BrokenSchedule { name, reason }) => {
            assert_eq!(name, "paris");
            assert!(reason.contains("Nowhere/Atlantis"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.count("SELECT count(*) FROM schedules WHERE last_error LIKE '%Nowhere/Atlantis%'"),
        1,
        "the reason is kept"
    );
    f.db.remove_schedule("paris").expect("remove");
    assert!(f.db.schedules().expect("list").is_empty());
}

fn at(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .expect("time")
        .as_millisecond()
}

/// Cron rules through claims, with the store's clock set to a known day:
/// lists, ranges, steps and days of the week, and a zone whose clocks go
/// forward (Europe/Paris on 2026-03-29: 02:00 CET becomes 03:00 CEST).
pub(super) fn cron_occurrences_follow_fields_and_daylight_saving(f: &mut Fixture) {
    let real = crate::store::now_ms();
    crate::store::clock::set_offset_ms(at("2026-03-30T12:00:00Z") - real);
    let mut fields = spec(
        "weekdays",
        Rule::cron("0 9-17/4 * * 1,3,FRI", None).expect("cron"),
        Some(at("2026-03-02T00:00:00Z")),
    );
    fields.catch_up = CatchUp::All;
    f.db.add_schedule("fields", &fields).expect("add");
    let mut paris = spec(
        "paris",
        Rule::cron("30 2 * * *", Some("Europe/Paris")).expect("cron"),
        Some(at("2026-03-27T00:00:00Z")),
    );
    paris.catch_up = CatchUp::All;
    f.db.add_schedule("paris", &paris).expect("add");

    let mut expected = Vec::new();
    // Mondays, Wednesdays and Fridays of March from the 2nd, up to Monday
    // the 30th at 12:00: 9:00, 13:00 and 17:00 UTC.
    for day in [2, 4, 6, 9, 11, 13, 16, 18, 20, 23, 25, 27, 30] {
        for hour in [9, 13, 17] {
            if day == 30 && hour > 12 {
                continue;
            }
            expected.push(at(&format!("2026-03-{day:02}T{hour:02}:00:00Z")));
        }
    }
    let got = f.db.claim("weekdays", 100, None, true).expect("claim");
    assert_eq!(occurrences(&got), expected);

    let got = f.db.claim("paris", 100, None, true).expect("claim");
    assert_eq!(
        occurrences(&got),
        vec![
            at("2026-03-27T01:30:00Z"), // 02:30 CET
            at("2026-03-28T01:30:00Z"),
            at("2026-03-29T01:00:00Z"), // 02:30 does not exist: 03:00 CEST, the jump
            at("2026-03-30T00:30:00Z"), // 02:30 CEST
        ]
    );
    assert_eq!(
        listed(&f.db, "paris").next_at,
        Some(at("2026-03-31T00:30:00Z"))
    );
}
