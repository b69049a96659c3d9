//! Schedules as the readers show them (`stats`, `queue show`) and as
//! `doctor` checks them. Schedules are added through the store's API, the
//! same call `spool schedule add` makes.

use std::time::Duration;

use serde_json::Value;
use spool::store::schedule::{CatchUp, Rule};
use spool::store::{self, Db, ScheduleSpec, Sync};

use crate::common::*;

/// The test's database, open for writing through the store's API.
pub fn open(env: &Env) -> Db {
    Db::open(&store::Options {
        location: store::Location::of(&env.db),
        busy_timeout: Duration::from_secs(10),
        sync: Sync::Normal,
    })
    .unwrap()
}

/// Adds schedule `name`: `{"tick":true}` to `target` every `every`, from
/// now (so its first occurrence is due at once).
pub fn add_schedule(env: &Env, name: &str, target: &str, every: Duration) {
    let spec = ScheduleSpec {
        target: target.to_owned(),
        rule: Rule::every(every).unwrap(),
        start: None,
        catch_up: CatchUp::default(),
        body: br#"{"tick":true}"#.to_vec(),
        raw: false,
        headers: None,
        priority: 0,
        group: None,
        ttl: None,
    };
    open(env).add_schedule(name, &spec).unwrap();
}

/// Pauses schedule `name`.
pub fn pause_schedule(env: &Env, name: &str) {
    assert!(open(env).pause_schedule(name, true).unwrap());
}

/// Every schedule, as the store keeps it.
pub fn schedules(env: &Env) -> Vec<store::Schedule> {
    open(env).schedules().unwrap()
}

/// `tick` (every hour, to queue `ticks`), `idle` (the same, paused) and
/// `fan` (every hour, to topic `events`, which `audit` subscribes to); none
/// has published yet, and each one's first occurrence is due.
fn build(env: &Env) {
    env.run(&["subscribe", "events", "audit"]).success();
    env.run(&["queue", "create", "plain"]).success();
    let hour = Duration::from_secs(3600);
    add_schedule(env, "tick", "ticks", hour);
    add_schedule(env, "idle", "ticks", hour);
    add_schedule(env, "fan", "events", hour);
    pause_schedule(env, "idle");
}

/// An instant as `stats` prints it, in ms.
fn ms_of(v: &Value) -> i64 {
    let ts: jiff::Timestamp = v.as_str().unwrap().parse().unwrap();
    ts.as_millisecond()
}

fn stats(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["stats", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(env.run(&all).success().stdout.trim()).unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

#[test]
fn stats_json_shows_each_schedule_and_only_reads() {
    let env = Env::new();
    build(&env);
    let before = schedules(&env);
    let all = stats(&env, &[]);
    // Reading a due schedule publishes nothing and changes nothing.
    assert_eq!(schedules(&env), before);
    assert_eq!(all["queues"].as_array().unwrap().len(), 4, "{all}");
    let list = &all["schedules"];
    assert_eq!(names(list), ["fan", "idle", "tick"]);
    for (shown, kept) in list.as_array().unwrap().iter().zip(&before) {
        assert_eq!(ms_of(&shown["next_at"]), kept.next_at.unwrap(), "{shown}");
        assert_eq!(shown["last_at"], Value::Null, "{shown}");
        assert_eq!(shown["paused"], kept.paused, "{shown}");
        assert_eq!(shown["target"], kept.spec.target.as_str());
    }
    assert_eq!(list[1]["paused"], true);
    // A claim on the target publishes `tick`'s occurrence: last is that
    // occurrence, next an hour on.
    assert_eq!(env.consume("ticks", &["--ack"]).len(), 1);
    let tick = &stats(&env, &[])["schedules"][2];
    let was = before[2].next_at.unwrap();
    assert_eq!(ms_of(&tick["last_at"]), was, "{tick}");
    assert_eq!(ms_of(&tick["next_at"]), was + 3_600_000, "{tick}");
    // Named queues: only the schedules that feed them, directly or through
    // a topic they subscribe to.
    assert_eq!(
        names(&stats(&env, &["ticks"])["schedules"]),
        ["idle", "tick"]
    );
    assert_eq!(names(&stats(&env, &["audit"])["schedules"]), ["fan"]);
    assert_eq!(names(&stats(&env, &["events"])["schedules"]), ["fan"]);
    assert!(names(&stats(&env, &["plain"])["schedules"]).is_empty());
}

#[test]
fn stats_table_has_a_schedules_section_only_when_there_are_some() {
    let env = Env::new();
    env.publish("plain", "1");
    let on_terminal = |env: &Env| {
        let out = env
            .cmd()
            .env("SPOOL_TEST_TERMINAL", "stdout")
            .env("COLUMNS", "100")
            .arg("stats")
            .output()
            .unwrap();
        Run::from(out).success().stdout.clone()
    };
    assert!(!on_terminal(&env).contains("SCHEDULE"));
    build(&env);
    env.consume("ticks", &["--ack"]);
    let text = on_terminal(&env);
    let line = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name}:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let header = line("SCHEDULE");
    assert_eq!(header, ["SCHEDULE", "TARGET", "NEXT", "LAST", "PAUSED"]);
    // name, target, next, last, paused
    assert_eq!(line("fan"), ["fan", "events", "due", "never", "no"]);
    assert_eq!(line("idle"), ["idle", "ticks", "due", "never", "yes"]);
    let tick = line("tick");
    assert_eq!(tick[..3], ["tick", "ticks", "in"], "{tick:?}");
    assert!(tick[3].ends_with('m') && tick[5] == "ago", "{tick:?}");
    assert_eq!(tick[6], "no");
}

#[test]
fn stats_prometheus_has_the_last_and_next_time_of_each_schedule() {
    let env = Env::new();
    build(&env);
    env.consume("ticks", &["--ack"]);
    let kept = schedules(&env);
    let text = env
        .run(&["stats", "--format", "prometheus"])
        .success()
        .stdout
        .clone();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let samples = |metric: &str| -> Vec<(String, String, f64)> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .map(|s| {
                let prometheus_parse::Value::Gauge(v) = s.value else {
                    panic!("{metric} is not a gauge: {:?}", s.value);
                };
                (
                    s.labels["schedule"].to_owned(),
                    s.labels["target"].to_owned(),
                    v,
                )
            })
            .collect()
    };
    for family in [
        "spool_schedule_next_timestamp_seconds",
        "spool_schedule_last_fired_timestamp_seconds",
        "spool_schedule_paused",
    ] {
        assert!(scrape.docs.contains_key(family), "no HELP for {family}");
    }
    let secs = |ms: Option<i64>| ms.unwrap() as f64 / 1000.0;
    let next: Vec<_> = kept
        .iter()
        .map(|s| (s.name.clone(), s.spec.target.clone(), secs(s.next_at)))
        .collect();
    assert_eq!(samples("spool_schedule_next_timestamp_seconds"), next);
    // Only `tick` has published: the others have no sample, not a 0 or NaN.
    let tick = kept.iter().find(|s| s.name == "tick").unwrap();
    assert_eq!(
        samples("spool_schedule_last_fired_timestamp_seconds"),
        [("tick".to_owned(), "ticks".to_owned(), secs(tick.last_at))]
    );
    let paused: Vec<f64> = samples("spool_schedule_paused")
        .into_iter()
        .map(|s| s.2)
        .collect();
    assert_eq!(paused, [0.0, 1.0, 0.0], "fan, idle, tick");
}

#[test]
fn stats_prometheus_without_schedules_has_no_schedule_families() {
    let env = Env::new();
    env.publish("plain", "1");
    let run = env.run(&["stats", "--format", "prometheus"]);
    assert!(!run.success().stdout.contains("spool_schedule_"));
}

fn show(env: &Env, queue: &str) -> Value {
    let run = env.run(&["queue", "show", queue, "--json"]);
    serde_json::from_str(run.success().stdout.trim()).unwrap()
}

#[test]
fn queue_show_names_the_schedules_that_feed_it() {
    let env = Env::new();
    build(&env);
    let fed = |queue: &str| -> Vec<(String, String)> {
        show(&env, queue)["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().into(),
                    s["target"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(fed("ticks"), [pair("idle", "ticks"), pair("tick", "ticks")]);
    assert_eq!(fed("audit"), [pair("fan", "events")]);
    assert_eq!(fed("events"), [pair("fan", "events")]);
    assert!(fed("plain").is_empty());
    let text = |queue: &str| {
        let out = env
            .cmd()
            .env("SPOOL_TEST_TERMINAL", "stdout")
            .env("COLUMNS", "100")
            .args(["queue", "show", queue])
            .output()
            .unwrap();
        let run = Run::from(out);
        let line = run
            .success()
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("schedules "))
            .unwrap_or_else(|| panic!("no schedules row:\n{}", run.stdout))
            .to_owned();
        line.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(text("ticks"), "idle, tick");
    assert_eq!(text("audit"), "fan (via events)");
    assert_eq!(text("plain"), "none");
}

fn doctor(env: &Env, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let run = env.run(&all);
    (run.code, serde_json::from_str(run.stdout.trim()).unwrap())
}

#[test]
fn doctor_finds_a_wrong_next_occurrence_and_repair_recomputes_it() {
    let env = Env::new();
    build(&env);
    let (code, report) = doctor(&env, &[]);
    assert_eq!(
        (code, &report["healthy"]),
        (0, &Value::Bool(true)),
        "{report}"
    );
    env.exec("UPDATE queues SET schedule_at = NULL WHERE name = 'ticks'");
    env.exec("UPDATE queues SET schedule_at = 42 WHERE name = 'plain'");
    let (code, report) = doctor(&env, &[]);
    assert_eq!(code, 74, "{report}");
    let problems: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] == "problem")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    let about = |queue: &str| {
        problems
            .iter()
            .find(|p| p.contains(&format!("kept for `{queue}`")))
            .unwrap_or_else(|| panic!("nothing about {queue}: {problems:?}"))
            .to_owned()
    };
    assert!(about("ticks").contains("is none, but its schedules say 20"));
    assert!(about("plain").ends_with("is 1970-01-01T00:00:00.042Z, but its schedules say none"));
    let plain = report["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "plain")
        .unwrap();
    assert_eq!(plain["schedule_at_ok"], false);
    let (code, report) = doctor(&env, &["--repair"]);
    assert_eq!(
        (code, &report["healthy"]),
        (0, &Value::Bool(true)),
        "{report}"
    );
    // The repaired queue fires its due occurrence at the next claim.
    assert_eq!(env.consume("ticks", &["--ack"]).len(), 1);
}

#[test]
fn a_schedule_whose_rule_no_longer_reads_is_still_shown() {
    let env = Env::new();
    let spec = ScheduleSpec {
        target: "reports".to_owned(),
        rule: Rule::cron("0 3 * * *", Some("Europe/Paris")).unwrap(),
        start: None,
        catch_up: CatchUp::default(),
        body: b"{}".to_vec(),
        raw: false,
        headers: None,
        priority: 0,
        group: None,
        ttl: None,
    };
    open(&env).add_schedule("nightly", &spec).unwrap();
    add_schedule(&env, "tick", "ticks", Duration::from_secs(60));
    // The zone left the time zone database.
    env.exec("UPDATE schedules SET tz = 'Nowhere/Lost' WHERE name = 'nightly'");
    assert!(open(&env).schedules().is_err(), "the rule does not read");
    let all = stats(&env, &[]);
    assert_eq!(names(&all["schedules"]), ["nightly", "tick"]);
    assert_eq!(all["schedules"][0]["target"], "reports");
    assert!(all["schedules"][0]["next_at"].is_string(), "{all}");
    let fed = &show(&env, "reports")["schedules"];
    assert_eq!(names(fed), ["nightly"]);
    let run = env.run(&["stats", "--format", "prometheus"]);
    assert!(run.success().stdout.contains("schedule=\"nightly\""));
}
