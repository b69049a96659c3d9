//! `spool schedule`: recurring messages, published by the claims on their
//! target. Occurrences are placed with `--start` in the past (whole hours
//! apart, so none falls due while a test runs) wherever the test is not
//! about waiting; the tests about waiting use short intervals.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Env, receipt};

const HOUR: i64 = 3_600_000;

/// Now, in ms since the epoch, on whole seconds (RFC 3339 round-trips it).
fn now_s() -> i64 {
    let now = jiff::Timestamp::now().as_millisecond();
    now - now.rem_euclid(1000)
}

/// `ms` since the epoch as RFC 3339.
fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

/// An RFC 3339 time as ms since the epoch.
fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("not RFC 3339: {text:?}: {e}"))
        .as_millisecond()
}

/// The occurrence a delivered message was published for.
fn scheduled_for(msg: &Value) -> i64 {
    ms(msg["headers"]["spool-scheduled-for"]
        .as_str()
        .unwrap_or_else(|| panic!("no spool-scheduled-for header: {msg}")))
}

/// `schedule list --json`, by name.
fn listed(env: &Env) -> BTreeMap<String, Value> {
    let run = env.run(&["schedule", "list", "--json"]);
    run.success();
    run.json_lines()
        .into_iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s))
        .collect()
}

/// Adds a schedule `name` feeding `to` every hour from `start`, with `extra`
/// arguments (body included).
fn add_hourly(env: &Env, name: &str, to: &str, start: i64, extra: &[&str]) {
    let start = rfc3339(start);
    let mut args = vec![
        "schedule", "add", name, "--every", "1h", "--start", &start, "--to", to,
    ];
    args.extend_from_slice(extra);
    env.run(&args).success();
}

#[test]
fn a_claim_publishes_the_due_occurrence_with_its_headers() {
    let env = Env::new();
    let start = now_s() - 10 * 60_000;
    let start_text = rfc3339(start);
    let run = env.run(&[
        "schedule",
        "add",
        "tick",
        "--every",
        "1h",
        "--start",
        &start_text,
        "--to",
        "jobs",
        "--header",
        "source=cron",
        "--priority",
        "7",
        r#"{"task": "sweep"}"#,
    ]);
    run.success();
    assert_eq!(run.stdout, "", "add prints nothing: {run:?}");
    let msg = env.consume_one("jobs", &["--ack"]);
    assert_eq!(msg["body"], serde_json::json!({"task": "sweep"}));
    assert_eq!(msg["headers"]["spool-schedule"], "tick");
    assert_eq!(scheduled_for(&msg), start, "{msg}");
    assert_eq!(msg["headers"]["source"], "cron");
    assert_eq!(msg["priority"], 7);
    assert!(
        ms(msg["published_at"].as_str().unwrap()) >= start,
        "published before its occurrence: {msg}"
    );
    // The next occurrence is 50 minutes away: nothing more yet.
    assert!(env.consume("jobs", &[]).is_empty());
    let tick = &listed(&env)["tick"];
    assert_eq!(ms(tick["last_at"].as_str().unwrap()), start);
    assert_eq!(ms(tick["next_at"].as_str().unwrap()), start + HOUR);
    assert_eq!(tick["due"], false);
}

#[test]
fn the_body_comes_from_stdin_or_is_raw_text() {
    let env = Env::new();
    let start = rfc3339(now_s() - 60_000);
    env.run_with_input(
        &[
            "schedule", "add", "json", "--every", "1h", "--start", &start, "--to", "a",
        ],
        "{\n  \"report\": \"daily\",\n  \"n\": [1, 2]\n}\n",
    )
    .success();
    let msg = env.consume_one("a", &[]);
    assert_eq!(
        msg["body"],
        serde_json::json!({"report": "daily", "n": [1, 2]})
    );
    env.run(&[
        "schedule",
        "add",
        "text",
        "--every",
        "1h",
        "--start",
        &start,
        "--to",
        "b",
        "--raw",
        "hello there",
    ])
    .success();
    let msg = env.consume_one("b", &[]);
    assert_eq!(msg["body"], "hello there");
    assert_eq!(msg["headers"]["spool-schedule"], "text");
}

#[test]
fn adding_again_is_a_no_op_with_the_same_settings_and_refused_with_others() {
    let env = Env::new();
    let add = |every: &str, body: &str| {
        env.run(&[
            "schedule", "add", "tick", "--every", every, "--to", "jobs", body,
        ])
    };
    add("1h", "1").success();
    let before = listed(&env);
    // The same settings (an omitted --start is not compared): nothing changes.
    add("1h", "1").success();
    assert_eq!(listed(&env), before);
    add("1h", "2")
        .code(2)
        .stderr_has("schedule `tick` already exists with another body");
    add("2h", "1").code(2).stderr_has("another rule");
    let other_target = env.run(&[
        "schedule", "add", "tick", "--every", "1h", "--to", "other", "1",
    ]);
    other_target.code(2).stderr_has("another target");
    assert_eq!(listed(&env), before, "a refused add changes nothing");
}

#[test]
fn bad_rules_exit_2_naming_the_problem_and_create_no_database() {
    let env = Env::new();
    let cases: [(&[&str], &str); 7] = [
        (&["--every", "0s"], "`--every` must be above zero"),
        (&["--every", "soon"], "invalid duration `soon`"),
        (&["--cron", "0 0 30 2 *"], "matches no date"),
        (
            &["--cron", "61 * * * *"],
            "the minute field `61` is not valid",
        ),
        (&["--cron", "0 3 * *"], "has 4 fields"),
        (
            &["--cron", "@daily", "--tz", "Mars/Olympus"],
            "unknown time zone `Mars/Olympus`",
        ),
        (&["--every", "5m", "--tz", "UTC"], "--tz"),
    ];
    for (rule, problem) in cases {
        let mut args = vec!["schedule", "add", "tick", "--to", "jobs"];
        args.extend_from_slice(rule);
        args.push("1");
        env.run(&args).code(2).stderr_has(problem);
    }
    let both = env.run(&[
        "schedule", "add", "tick", "--every", "1m", "--cron", "@daily", "--to", "jobs", "1",
    ]);
    both.code(2).stderr_has("cannot be used with");
    let neither = env.run(&["schedule", "add", "tick", "--to", "jobs", "1"]);
    neither.code(2).stderr_has("--cron <EXPR>|--every <DUR>");
    let key = env.run(&[
        "schedule", "add", "tick", "--every", "1m", "--key", "k", "--to", "jobs", "1",
    ]);
    key.code(2).stderr_has("--key");
    assert!(!env.database_exists(), "a refused add created the database");
}

#[test]
fn a_bad_body_exits_65_and_creates_no_database() {
    let env = Env::new();
    env.run(&[
        "schedule", "add", "tick", "--every", "1m", "--to", "jobs", "{nope",
    ])
    .code(65)
    .stderr_has("the BODY argument: invalid JSON");
    env.run_with_input(
        &["schedule", "add", "tick", "--every", "1m", "--to", "jobs"],
        "[1, 2",
    )
    .code(65)
    .stderr_has("stdin: invalid JSON");
    env.run_with_input(
        &["schedule", "add", "tick", "--every", "1m", "--to", "jobs"],
        "\n",
    )
    .code(65)
    .stderr_has("empty body");
    assert!(!env.database_exists(), "a refused add created the database");
}

#[test]
fn unknown_schedules_exit_3() {
    let env = Env::new();
    // No database: exit 3, and none is created.
    for verb in ["remove", "pause", "resume"] {
        env.run(&["schedule", verb, "tick"])
            .code(3)
            .stderr_has("no schedule named `tick`");
    }
    let list = env.run(&["schedule", "list"]);
    list.success();
    assert_eq!(list.stdout, "");
    assert!(!env.database_exists(), "created the database");
    env.run(&[
        "schedule", "add", "tick", "--every", "1m", "--to", "jobs", "1",
    ])
    .success();
    for verb in ["remove", "pause", "resume"] {
        env.run(&["schedule", verb, "tock"])
            .code(3)
            .stderr_has("no schedule named `tock`. Did you mean `tick`?");
    }
    env.run(&["schedule", "remove", "tick"]).success();
    env.run(&["schedule", "remove", "tick"])
        .code(3)
        .stderr_has("`spool schedule list` shows them");
}

#[test]
fn list_shows_each_schedule_as_json() {
    let env = Env::new();
    let before = now_s();
    env.run(&[
        "schedule",
        "add",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Paris",
        "--to",
        "reports",
        "{}",
    ])
    .success();
    let start = now_s() - 3 * HOUR - 1_000;
    add_hourly(&env, "tick", "jobs", start, &["--catch-up", "all", "1"]);
    env.run(&["schedule", "pause", "tick"]).success();
    let all = listed(&env);
    assert_eq!(all.keys().collect::<Vec<_>>(), ["nightly", "tick"]);
    let nightly = &all["nightly"];
    assert_eq!(nightly["target"], "reports");
    assert_eq!(nightly["rule"], r#"cron "0 3 * * *" in Europe/Paris"#);
    assert_eq!(nightly["cron"], "0 3 * * *");
    assert_eq!(nightly["tz"], "Europe/Paris");
    assert_eq!(nightly["every_ms"], Value::Null);
    assert_eq!(nightly["catch_up"], "latest");
    assert_eq!(nightly["paused"], false);
    assert_eq!(nightly["due"], false);
    assert_eq!(nightly["last_at"], Value::Null);
    assert_eq!(nightly["last_error"], Value::Null);
    assert!(ms(nightly["start"].as_str().unwrap()) >= before);
    let next = ms(nightly["next_at"].as_str().unwrap());
    assert!(next > before && next <= before + 25 * HOUR, "{nightly}");
    let paris = jiff::Timestamp::from_millisecond(next)
        .unwrap()
        .in_tz("Europe/Paris")
        .unwrap();
    assert_eq!((paris.hour(), paris.minute()), (3, 0), "{nightly}");

    let tick = &all["tick"];
    assert_eq!(tick["target"], "jobs");
    assert_eq!(tick["rule"], "every 1h");
    assert_eq!(tick["every_ms"], HOUR);
    assert_eq!(tick["cron"], Value::Null);
    assert_eq!(ms(tick["start"].as_str().unwrap()), start);
    assert_eq!(tick["catch_up"], "all");
    assert_eq!(tick["paused"], true);
    // Paused: its first occurrence has passed, but nothing is due.
    assert_eq!(ms(tick["next_at"].as_str().unwrap()), start);
    assert_eq!(tick["due"], false);
    env.run(&["schedule", "resume", "tick"]).success();
    assert_eq!(listed(&env)["tick"]["due"], true);
    // Piped output is JSON without --json too.
    let piped = env.run(&["schedule", "list"]);
    assert_eq!(piped.success().json_lines().len(), 2);
}

#[test]
fn list_on_a_terminal_is_a_table_that_shows_what_is_due() {
    let env = Env::new();
    add_hourly(&env, "tick", "jobs", now_s() - HOUR / 2, &["1"]);
    add_hourly(&env, "later", "jobs", now_s() + HOUR / 2, &["1"]);
    let run = crate::common::Run::from(
        env.cmd()
            .args(["schedule", "list"])
            .env("SPOOL_TEST_TERMINAL", "stdout")
            .env("COLUMNS", "200")
            .output()
            .unwrap(),
    );
    run.success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    for column in ["NAME", "TARGET", "RULE", "NEXT", "LAST", "PAUSED"] {
        assert!(lines[0].contains(column), "{run:?}");
    }
    let later = lines.iter().find(|l| l.contains("later")).unwrap();
    assert!(
        later.contains("(in 29m)") || later.contains("(in 30m)"),
        "{run:?}"
    );
    let tick = lines.iter().find(|l| l.contains("tick")).unwrap();
    assert!(tick.contains("(due, "), "{run:?}");
    assert!(
        tick.contains("every 1h") && tick.contains("never"),
        "{run:?}"
    );
}

#[test]
fn a_paused_schedule_publishes_nothing_and_resuming_catches_up_the_latest() {
    let env = Env::new();
    let start = now_s() - 2 * HOUR - 30 * 60_000;
    add_hourly(&env, "tick", "jobs", start, &["1"]);
    // Three occurrences have passed (START, +1h, +2h); none is published
    // while paused, however often the target is claimed.
    env.run(&["schedule", "pause", "tick"]).success();
    env.run(&["schedule", "pause", "tick"]).success();
    for _ in 0..3 {
        assert!(env.consume("jobs", &[]).is_empty());
    }
    assert_eq!(env.count("SELECT count(*) FROM messages"), 0);
    env.run(&["schedule", "resume", "tick"]).success();
    let msgs = env.consume("jobs", &["-n", "10"]);
    assert_eq!(msgs.len(), 1, "catch-up latest publishes one: {msgs:?}");
    assert_eq!(scheduled_for(&msgs[0]), start + 2 * HOUR);
    assert!(env.consume("jobs", &["-n", "10"]).is_empty());
    assert_eq!(
        ms(listed(&env)["tick"]["last_at"].as_str().unwrap()),
        start + 2 * HOUR
    );
}

#[test]
fn catch_up_all_publishes_each_passed_occurrence_once() {
    let env = Env::new();
    let start = now_s() - 4 * HOUR - 30 * 60_000;
    add_hourly(&env, "tick", "jobs", start, &["--catch-up", "all", "1"]);
    let msgs = env.consume("jobs", &["-n", "100", "--ack"]);
    let times: Vec<i64> = msgs.iter().map(scheduled_for).collect();
    let expected: Vec<i64> = (0..5).map(|k| start + k * HOUR).collect();
    assert_eq!(times, expected, "{msgs:?}");
    assert!(env.consume("jobs", &["-n", "100"]).is_empty());
}

#[test]
fn removing_a_schedule_keeps_what_it_published() {
    let env = Env::new();
    let start = now_s() - 90 * 60_000;
    add_hourly(&env, "tick", "jobs", start, &["--catch-up", "all", "1"]);
    let first = env.consume("jobs", &["-n", "10"]);
    assert_eq!(first.len(), 2, "{first:?}");
    env.run(&["schedule", "remove", "tick"]).success();
    assert!(listed(&env).is_empty());
    for msg in &first {
        env.run(&["nack", receipt(msg)]).success();
    }
    let again = env.consume("jobs", &["-n", "10"]);
    let ids =
        |msgs: &[Value]| -> Vec<i64> { msgs.iter().map(|m| m["id"].as_i64().unwrap()).collect() };
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(again[0]["headers"]["spool-schedule"], "tick");
    // The queue outlives the schedule, and can now be deleted.
    env.run(&["queue", "delete", "jobs", "--force"]).success();
}

#[test]
fn a_topic_target_fans_out_to_its_subscribers() {
    let env = Env::new();
    env.run(&["subscribe", "events", "audit"]).success();
    env.run(&["subscribe", "events", "billing"]).success();
    let start = now_s() - 30 * 60_000;
    add_hourly(&env, "tick", "events", start, &[r#"{"kind":"tick"}"#]);
    // A claim on either subscriber publishes the occurrence, once, to both.
    let billing = env.consume_one("billing", &["--ack"]);
    let audit = env.consume_one("audit", &["--ack"]);
    assert_eq!(billing["id"], audit["id"]);
    for msg in [&billing, &audit] {
        assert_eq!(scheduled_for(msg), start);
        assert_eq!(msg["body"], serde_json::json!({"kind": "tick"}));
    }
    assert!(env.consume("audit", &[]).is_empty());
    assert!(env.consume("billing", &[]).is_empty());
}

#[test]
fn deleting_a_target_is_refused_while_a_schedule_feeds_it() {
    let env = Env::new();
    env.run(&[
        "schedule", "add", "tick", "--every", "1h", "--to", "jobs", "1",
    ])
    .success();
    env.run(&["queue", "delete", "jobs"])
        .code(2)
        .stderr_has("`jobs` receives the messages of schedule(s) `tick`");
    env.run(&["queue", "delete", "jobs", "--force"]).code(2);
    assert_eq!(listed(&env)["tick"]["target"], "jobs");
    env.run(&["schedule", "remove", "tick"]).success();
    env.run(&["queue", "delete", "jobs", "--force"]).success();
}

#[test]
fn a_waiting_consumer_receives_an_occurrence_when_it_falls_due() {
    let env = Env::new();
    let start = now_s() + 2_000;
    add_hourly(&env, "tick", "jobs", start, &["1"]);
    let began = Instant::now();
    let msg = env.consume_one("jobs", &["--wait", "60s", "--ack"]);
    let waited = began.elapsed();
    assert_eq!(scheduled_for(&msg), start);
    let published = ms(msg["published_at"].as_str().unwrap());
    assert!(published >= start, "published before its time: {msg}");
    // The waiter woke for the occurrence, not at the end of its wait.
    assert!(waited < Duration::from_secs(30), "waited {waited:?}");
}

#[test]
fn racing_consumers_publish_each_occurrence_exactly_once() {
    let env = Env::new();
    env.run(&["queue", "create", "jobs"]).success();
    let every = 300;
    let start = jiff::Timestamp::now().as_millisecond() + 500;
    let start_text = rfc3339(start);
    env.run(&[
        "schedule",
        "add",
        "tick",
        "--every",
        "300ms",
        "--start",
        &start_text,
        "--catch-up",
        "all",
        "--to",
        "jobs",
        "1",
    ])
    .success();
    let until = Instant::now() + Duration::from_millis(3_500);
    let consumers: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = env.cmd();
            cmd.args(["consume", "jobs", "--wait", "1s", "--ack", "-n", "100"]);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while Instant::now() < until {
                    let run = crate::common::Run::from(cmd.output().unwrap());
                    assert!(run.code == 0 || run.code == 1, "{run:?}");
                    got.extend(run.json_lines());
                }
                got
            })
        })
        .collect();
    let mut msgs: Vec<Value> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    // What was published but not yet taken.
    env.run(&["schedule", "pause", "tick"]).success();
    msgs.extend(env.consume("jobs", &["-n", "1000", "--ack"]));
    let mut times: Vec<i64> = msgs.iter().map(scheduled_for).collect();
    times.sort_unstable();
    assert!(times.len() >= 3, "too few occurrences published: {times:?}");
    let expected: Vec<i64> = (0..times.len() as i64).map(|k| start + k * every).collect();
    assert_eq!(
        times, expected,
        "each occurrence once, consecutive from START"
    );
    let last = ms(listed(&env)["tick"]["last_at"].as_str().unwrap());
    assert_eq!(last, *times.last().unwrap());
}

/// A database written before schedules existed is brought up to date by
/// whatever opens it first, readers too: they read columns and tables the
/// older schema lacks.
#[test]
fn readers_upgrade_a_database_from_before_schedules() {
    let env = Env::new();
    env.run(&["publish", "q", r#"{"n":1}"#]).success();
    env.exec(if crate::common::on_postgres() {
        "DROP TABLE schedules; ALTER TABLE queues DROP COLUMN schedule_at;
         UPDATE version SET version = 3"
    } else {
        "DROP TABLE schedules; ALTER TABLE queues DROP COLUMN schedule_at;
         PRAGMA user_version = 4"
    });
    for args in [
        &["stats", "--json"][..],
        &["queue", "list", "--json"],
        &["peek", "q", "--json"],
        &["schedule", "list", "--json"],
    ] {
        let run = env.run(args);
        run.success();
    }
    let doctor = env.run(&["doctor", "--json"]);
    doctor.success();
    let report: Value = serde_json::from_str(&doctor.stdout).unwrap();
    assert_eq!(
        report["database"]["schema_version"], report["database"]["schema_supported"],
        "{report}"
    );
    add_hourly(&env, "tick", "q", now_s() - HOUR / 2, &[r#"{"t":1}"#]);
    assert_eq!(listed(&env).len(), 1);
}
