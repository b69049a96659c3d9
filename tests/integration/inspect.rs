//! Looking inside: `peek`, `stats`, `queue list`, and the promise that they
//! never create or change the database.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// Runs spool as if stdout were an 80-column terminal.
fn on_terminal(env: &Env, args: &[&str]) -> Run {
    Run::from(
        env.cmd()
            .env("SPOOL_TEST_TERMINAL", "stdout")
            .env("COLUMNS", "80")
            .args(args)
            .output()
            .unwrap(),
    )
}

/// The `stats --json` object of one queue.
fn stats_of(env: &Env, queue: &str) -> Value {
    let run = env.run(&["stats", queue]);
    run.success();
    let all: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(all["queues"].as_array().unwrap().len(), 1, "{all}");
    all["queues"][0].clone()
}

fn counts(q: &Value) -> [i64; 5] {
    ["ready", "delayed", "leased", "acked", "dead"].map(|k| q[k].as_i64().unwrap())
}

/// `peek --state all` as (id, state) pairs.
fn peek_states(env: &Env, queue: &str) -> Vec<(i64, String)> {
    let run = env.run(&["peek", queue, "--state", "all", "-n", "1000"]);
    run.success();
    run.json_lines()
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Publishes one body with extra flags and returns its id.
pub fn publish_with(env: &Env, queue: &str, flags: &[&str], body: &str) -> i64 {
    let mut args = vec!["publish", queue];
    args.extend_from_slice(flags);
    args.push(body);
    let run = env.run(&args);
    run.success();
    run.stdout.trim().parse().expect("an id")
}

/// What a reader must leave as it was: the file's bytes, or every row.
fn file_bytes(env: &Env) -> Contents {
    env.contents()
}

// ---------------------------------------------------------------- peek

#[test]
fn peek_twice_then_consume_still_gets_attempt_1() {
    let env = Env::new();
    let id = env.publish("q", "{\"n\":1}");
    let before = file_bytes(&env);
    for _ in 0..2 {
        let lines = env.run(&["peek", "q"]).success().json_lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["id"], id);
        assert_eq!(lines[0]["attempt"], 0);
        assert_eq!(lines[0]["state"], "ready");
    }
    assert_eq!(file_bytes(&env), before, "peek changed the database file");
    let msg = env.consume_one("q", &[]);
    assert_eq!(msg["id"], id);
    assert_eq!(msg["attempt"], 1);
}

#[test]
fn peek_lines_have_consume_fields_with_state_instead_of_receipt() {
    let env = Env::new();
    env.run(&[
        "publish",
        "q",
        "--key",
        "k",
        "--header",
        "a=b",
        "--group",
        "g",
        "{\"x\":1}",
    ])
    .success();
    let line = &env.run(&["peek", "q"]).success().json_lines()[0];
    let keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "queue",
            "state",
            "attempt",
            "published_at",
            "lease_expires_at",
            "key",
            "group",
            "priority",
            "headers",
            "schema_version",
            "dead_reason",
            "last_error",
            "body"
        ]
    );
    assert_eq!(line["dead_reason"], Value::Null);
    assert_eq!(line["last_error"], Value::Null);
    assert_eq!(line["key"], "k");
    assert_eq!(line["group"], "g");
    assert_eq!(line["headers"]["a"], "b");
    assert_eq!(line["body"]["x"], 1);
    assert_eq!(line["lease_expires_at"], Value::Null);
}

#[test]
fn peek_lists_in_delivery_order_and_leaves_out_acked_and_dead_by_default() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    let acked = env.publish("q", "\"acked\"");
    let dead = env.publish("q", "\"dead\"");
    let m = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&m)]).success();
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m)]).success();
    let leased_late = env.publish("q", "\"leased for 1h\"");
    let leased_soon = env.publish("q", "\"leased for 30m\"");
    env.consume_one("q", &["--visibility", "1h"]);
    env.consume_one("q", &["--visibility", "30m"]);
    let late = publish_with(&env, "q", &["--delay", "2h"], "\"in 2h\"");
    let soon = publish_with(&env, "q", &["--delay", "1h"], "\"in 1h\"");
    let head = publish_with(&env, "q", &["--group", "g"], "\"head\"");
    let held = publish_with(&env, "q", &["--group", "g"], "\"held\"");
    let low = publish_with(&env, "q", &["--priority", "-1"], "\"low\"");
    let plain = env.publish("q", "\"plain\"");
    let high = publish_with(&env, "q", &["--priority", "7"], "\"high\"");

    let ids: Vec<i64> = env
        .run(&["peek", "q", "-n", "100"])
        .success()
        .json_lines()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            high,
            head,
            plain,
            low,
            soon,
            late,
            held,
            leased_soon,
            leased_late
        ]
    );

    let all = peek_states(&env, "q");
    assert_eq!(all.len(), 11);
    assert_eq!(all[9], (acked, "acked".to_owned()));
    assert_eq!(all[10], (dead, "dead".to_owned()));

    let first3: Vec<i64> = env
        .run(&["peek", "q", "-n", "3"])
        .success()
        .json_lines()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(first3, [high, head, plain]);
}

#[test]
fn peek_shows_10_by_default_and_n_on_request() {
    let env = Env::new();
    let input: String = (1..=12).map(|i| format!("{i}\n")).collect();
    env.run_with_input(&["publish", "q"], input).success();
    let ten = env.run(&["peek", "q"]).success().json_lines();
    assert_eq!(ten.len(), 10);
    assert_eq!(ten[0]["body"], 1);
    assert_eq!(ten[9]["body"], 10);
    assert_eq!(
        env.run(&["peek", "q", "-n", "12"])
            .success()
            .json_lines()
            .len(),
        12
    );
    assert_eq!(
        env.run(&["peek", "q", "-n", "2"])
            .success()
            .json_lines()
            .len(),
        2
    );
    env.run(&["peek", "q", "-n", "0"]).code(2);
}

#[test]
fn peek_state_filters_take_lists() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    let dead = env.publish("q", "1");
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m)]).success();
    let acked = env.publish("q", "2");
    let m = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&m)]).success();
    let ready = env.publish("q", "3");
    let only = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["peek", "q"];
        all.extend_from_slice(args);
        env.run(&all)
            .success()
            .json_lines()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(only(&["--state", "dead"]), [dead]);
    assert_eq!(only(&["--state", "acked"]), [acked]);
    assert_eq!(only(&["--state", "ready,dead"]), [ready, dead]);
    assert_eq!(
        only(&["--state", "ready", "--state", "acked"]),
        [ready, acked]
    );
    assert_eq!(only(&[]), [ready]);
    env.run(&["peek", "q", "--state", "gone"]).code(2);
}

#[test]
fn peek_id_shows_one_message_in_any_state() {
    let env = Env::new();
    let id = env.publish("q", "\"x\"");
    let m = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&m)]).success();
    let lines = env
        .run(&["peek", "q", "--id", &id.to_string()])
        .success()
        .json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["state"], "acked");
    assert_eq!(lines[0]["attempt"], 1);
    env.run(&["peek", "q", "--id", "999"])
        .code(3)
        .stderr_has("`999`");
}

#[test]
fn peek_applies_lease_expiry_at_once() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "2"])
        .success();
    let id = env.publish("q", "1");
    env.consume_one("q", &["--visibility", "1s"]);
    let leased = env.run(&["peek", "q"]).success().json_lines();
    assert_eq!(leased[0]["state"], "leased");
    assert!(leased[0]["lease_expires_at"].is_string());
    std::thread::sleep(Duration::from_millis(1300));
    let again = env.run(&["peek", "q"]).success().json_lines();
    assert_eq!(again[0]["state"], "ready", "{again:?}");
    assert_eq!(again[0]["attempt"], 1);
    // The second delivery is the last allowed one: when its lease runs out
    // the message is dead, and peek says so before any claim.
    env.consume_one("q", &["--visibility", "1s"]);
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(peek_states(&env, "q"), [(id, "dead".to_owned())]);
    assert!(env.run(&["peek", "q"]).success().stdout.is_empty());
}

#[test]
fn peek_unknown_queue_exits_3_naming_similar_queues() {
    let env = Env::new();
    env.publish("orders", "1");
    let run = env.run(&["peek", "ordres"]);
    run.code(3).stderr_has("`orders`");
}

#[test]
fn peek_table_cuts_bodies_to_the_terminal_width() {
    let env = Env::new();
    let long = format!("\"{}\"", "x".repeat(300));
    publish_with(&env, "q", &["--key", "k1"], &long);
    let run = on_terminal(&env, &["peek", "q"]);
    run.success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    for header in ["ID", "STATE", "ATTEMPT", "AGE", "KEY", "BODY"] {
        assert!(lines[0].contains(header), "{}", lines[0]);
    }
    assert!(lines[1].contains("ready") && lines[1].contains("k1"));
    assert!(lines[1].contains('…'), "{}", lines[1]);
    for line in &lines {
        assert!(line.chars().count() <= 80, "too wide: {line:?}");
    }
    assert!(
        !run.stdout.contains('\x1b'),
        "no colour in an uncoloured table"
    );
}

#[test]
fn peek_table_colours_dead_red_and_leased_yellow() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    env.publish("q", "1");
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m)]).success();
    env.publish("q", "2");
    env.consume_one("q", &[]);
    let run = on_terminal(&env, &["peek", "q", "--state", "all"]);
    run.success();
    assert!(run.stdout.contains("\x1b[38;5;9mdead"), "{:?}", run.stdout);
    assert!(
        run.stdout.contains("\x1b[38;5;11mleased"),
        "{:?}",
        run.stdout
    );
    let plain = Run::from(
        env.cmd()
            .env("SPOOL_TEST_TERMINAL", "stdout")
            .env("NO_COLOR", "1")
            .args(["peek", "q", "--state", "all"])
            .output()
            .unwrap(),
    );
    assert!(plain.stdout.contains("dead") && !plain.stdout.contains('\x1b'));
}

// ---------------------------------------------------------------- read-only

#[test]
fn read_only_commands_on_a_missing_db_do_not_create_it() {
    let env = Env::new();
    // A file in a folder that is not there either; on PostgreSQL the test's
    // schema, not created yet.
    let db = if on_postgres() {
        env.db.clone()
    } else {
        env.path("not/there/spool.db")
    };
    let db_arg = db.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--db", db_arg];
        all.extend_from_slice(args);
        env.run(&all)
    };
    run(&["peek", "q"]).code(3).stderr_has("`q`");
    let stats = run(&["stats"]);
    stats.success();
    let v: Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(v["queues"], serde_json::json!([]));
    assert_eq!(v["database"]["size_bytes"], 0);
    run(&["stats", "q"]).code(3);
    run(&["stats", "--format", "prometheus"]).success();
    let list = run(&["queue", "list"]);
    list.success();
    assert!(list.stdout.is_empty());
    run(&["replay", "q", "--dead", "--dry-run"]).code(3);
    // Commands that act on an existing queue do not create the file either.
    run(&["replay", "q", "--dead"]).code(3);
    run(&["queue", "delete", "q"]).code(3);
    run(&["queue", "purge", "q"]).code(3);
    assert!(!db.exists(), "a read-only command created the database");
    assert!(
        !env.path("not").exists(),
        "a read-only command created the folder"
    );
    assert!(
        !env.database_exists(),
        "a read-only command created the database"
    );
}

#[test]
fn read_only_commands_never_change_the_file() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    env.publish("q", "1");
    env.publish("q", "2");
    env.consume_one("q", &["--visibility", "50ms"]);
    std::thread::sleep(Duration::from_millis(100));
    let before = file_bytes(&env);
    // The expired lease is dead to readers, but only a writer may store that.
    env.run(&["peek", "q", "--state", "all"]).success();
    env.run(&["stats"]).success();
    env.run(&["stats", "--format", "prometheus"]).success();
    env.run(&["queue", "list"]).success();
    env.run(&["replay", "q", "--dead", "--dry-run"]).success();
    on_terminal(&env, &["peek", "q"]).success();
    assert_eq!(file_bytes(&env), before);
    assert_eq!(
        env.state_of("q", 1),
        Some(2),
        "readers must not store lazy transitions"
    );
    assert_eq!(
        env.counters()["q"][2],
        1,
        "readers must not store lazy transitions"
    );
}

#[test]
fn read_only_commands_work_while_a_writer_holds_the_lock() {
    let env = Env::new();
    env.publish("q", "1");
    // A writer in the middle of its transaction, holding the lock writers
    // wait for.
    let lock = Locker::with(
        &env,
        "UPDATE meta SET value = value",
        "UPDATE deliveries SET priority = priority",
    );
    let start = Instant::now();
    for args in [
        &["peek", "q"][..],
        &["stats"][..],
        &["queue", "list"][..],
        &["replay", "q", "--acked", "--dry-run"][..],
    ] {
        let mut all = vec!["--busy-timeout", "5s"];
        all.extend_from_slice(args);
        env.run(&all).success();
    }
    // Generous: blocked readers would each wait the full 5s busy timeout.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "readers waited for the writer"
    );
    env.run(&["--busy-timeout", "100ms", "publish", "q", "2"])
        .code(75);
    lock.release();
}

// ---------------------------------------------------------------- stats

#[test]
fn stats_counts_a_constructed_mix_exactly() {
    let env = Env::new();
    env.run(&["queue", "create", "mix", "--max-attempts", "2"])
        .success();
    for body in ["\"a\"", "\"b\"", "\"c\"", "\"d\"", "\"e\"", "\"f\""] {
        env.publish("mix", body);
    }
    // a, b: leased for an hour.
    assert_eq!(
        env.consume("mix", &["-n", "2", "--visibility", "1h"]).len(),
        2
    );
    // c: acked.
    let c = env.consume_one("mix", &[]);
    env.run(&["ack", receipt(&c)]).success();
    // d: nacked on both allowed attempts, so dead.
    for _ in 0..2 {
        let d = env.consume_one("mix", &[]);
        assert_eq!(d["body"], "d");
        env.run(&["nack", receipt(&d)]).success();
    }
    // e: its second (last) lease runs out: dead, though no claim stored it yet.
    let e = env.consume_one("mix", &[]);
    env.run(&["nack", receipt(&e)]).success();
    assert_eq!(
        env.consume_one("mix", &["--visibility", "100ms"])["body"],
        "e"
    );
    // f: its first lease runs out: ready again.
    assert_eq!(
        env.consume_one("mix", &["--visibility", "100ms"])["body"],
        "f"
    );
    // g: its delay passes: ready. h: delayed for an hour.
    publish_with(&env, "mix", &["--delay", "100ms"], "\"g\"");
    publish_with(&env, "mix", &["--delay", "1h"], "\"h\"");
    // i: head of group G (ready); j waits behind it (delayed).
    publish_with(&env, "mix", &["--group", "G"], "\"i\"");
    publish_with(&env, "mix", &["--group", "G"], "\"j\"");
    env.publish("mix", "\"k\"");
    std::thread::sleep(Duration::from_millis(250));

    let q = stats_of(&env, "mix");
    // ready f g i k, delayed h j, leased a b, acked c, dead d e
    assert_eq!(counts(&q), [4, 2, 2, 1, 2], "{q}");
    assert_eq!(q["published_total"], 11);
    assert_eq!(q["published_last_minute"], 11);
    assert_eq!(q["acked_last_minute"], 1);
    assert_eq!(q["kind"], "queue");

    // peek agrees, message by message.
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for (_, state) in peek_states(&env, "mix") {
        *by_state.entry(state).or_default() += 1;
    }
    let expect: BTreeMap<String, usize> = [
        ("ready", 4),
        ("delayed", 2),
        ("leased", 2),
        ("acked", 1),
        ("dead", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_state, expect);

    // A claim stores the lazy transitions (and leases f).
    let got = env.consume_one("mix", &[]);
    assert_eq!(got["body"], "f");
    let q = stats_of(&env, "mix");
    assert_eq!(counts(&q), [3, 2, 3, 1, 2], "{q}");
}

#[test]
fn stats_last_minute_counts_only_the_last_60_seconds() {
    let env = Env::new();
    env.publish("q", "1");
    let m = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&m)]).success();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Traffic two minutes ago: a row of SQLite's `rates`; on PostgreSQL a
    // row of `stats`, whose publishes count in the total too.
    let table = if on_postgres() { "stats" } else { "rates" };
    env.exec(&format!(
        "INSERT INTO {table} (queue_id, second, published, acked) VALUES (1, {}, 50, 40)",
        now_s - 120
    ));
    let q = stats_of(&env, "q");
    assert_eq!(q["published_last_minute"], 1);
    assert_eq!(q["acked_last_minute"], 1);
    let total = if on_postgres() { 51 } else { 1 };
    assert_eq!(q["published_total"], total);
}

#[test]
fn stats_json_has_the_documented_shape() {
    let env = Env::new();
    // Before anything exists as well: null on PostgreSQL, 0 for a file.
    let empty: Value = serde_json::from_str(&env.run(&["stats"]).stdout).unwrap();
    let wal = &empty["database"]["wal_bytes"];
    assert_eq!(wal.is_null(), on_postgres(), "{empty}");
    env.publish("q", "1");
    let run = env.run(&["stats"]);
    run.success();
    assert_eq!(run.stdout.lines().count(), 1, "one JSON object");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["database"]["path"], env.display());
    assert_eq!(v["database"]["size_bytes"], env.size_bytes());
    // PostgreSQL has no WAL file or free pages of spool's own: null, not 0.
    for key in ["wal_bytes", "free_bytes"] {
        let value = &v["database"][key];
        if on_postgres() {
            assert!(value.is_null(), "{key}: {value}");
        } else {
            assert!(value.is_u64(), "{key}: {value}");
        }
    }
    let prometheus = env.run(&["stats", "--format", "prometheus"]);
    assert_eq!(
        prometheus.stdout.contains("spool_database_wal_bytes"),
        !on_postgres(),
        "{}",
        prometheus.stdout
    );
    let q = &v["queues"][0];
    for key in [
        "name",
        "ready",
        "delayed",
        "leased",
        "acked",
        "dead",
        "published_total",
        "oldest_ready_age_ms",
        "published_last_minute",
        "acked_last_minute",
    ] {
        assert!(q.get(key).is_some(), "missing {key}: {q}");
    }
    assert_eq!(q["name"], "q");
    // --json forces JSON on a terminal too.
    let forced = on_terminal(&env, &["stats", "--json"]);
    serde_json::from_str::<Value>(&forced.stdout).unwrap();
}

#[test]
fn stats_oldest_ready_age_follows_the_oldest_ready_message() {
    let env = Env::new();
    env.run(&["queue", "create", "q"]).success();
    assert_eq!(stats_of(&env, "q")["oldest_ready_age_ms"], Value::Null);
    publish_with(&env, "q", &["--priority", "-5"], "\"old, low priority\"");
    std::thread::sleep(Duration::from_millis(300));
    publish_with(&env, "q", &["--priority", "5"], "\"new, high priority\"");
    let age = stats_of(&env, "q")["oldest_ready_age_ms"].as_i64().unwrap();
    assert!(age >= 300, "{age}");
    // Once the old one is leased, the oldest ready one is the new one.
    env.consume_one("q", &[]);
    env.consume_one("q", &[]);
    assert_eq!(stats_of(&env, "q")["oldest_ready_age_ms"], Value::Null);
}

#[test]
fn stats_names_queues_in_order_and_refuses_unknown_ones() {
    let env = Env::new();
    env.publish("orders", "1");
    env.publish("payments", "1");
    let run = env.run(&["stats", "payments", "orders"]);
    run.success();
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payments", "orders"]);
    env.run(&["stats", "orders", "ordrs"])
        .code(3)
        .stderr_has("`orders`");
}

/// Makes `topic` a topic with these subscribers, as `spool subscribe` does.
fn make_topic(env: &Env, topic: &str, queues: &[&str]) {
    for q in queues {
        env.run(&["queue", "create", q]).success();
    }
    for q in queues {
        env.run(&["subscribe", topic, q]).success();
    }
}

#[test]
fn stats_and_queue_list_mark_topics_with_their_subscribers() {
    let env = Env::new();
    make_topic(&env, "events", &["billing", "shipping"]);
    env.publish("events", "{\"order\":1}");
    let topic = stats_of(&env, "events");
    assert_eq!(topic["kind"], "topic");
    assert_eq!(
        topic["subscribers"],
        serde_json::json!(["billing", "shipping"])
    );
    assert_eq!(counts(&topic), [0; 5]);
    assert_eq!(topic["published_total"], 1);
    assert_eq!(counts(&stats_of(&env, "billing")), [1, 0, 0, 0, 0]);

    let listed = env.run(&["queue", "list"]).success().json_lines();
    let names: Vec<&str> = listed.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["billing", "events", "shipping"]);
    assert_eq!(listed[1]["kind"], "topic");
    assert_eq!(
        listed[1]["subscribers"],
        serde_json::json!(["billing", "shipping"])
    );
    assert_eq!(listed[0]["kind"], "queue");
    assert_eq!(listed[0]["topics"], serde_json::json!(["events"]));

    let table = on_terminal(&env, &["stats"]);
    table.success();
    assert!(
        table.stdout.contains("topic events → billing, shipping"),
        "{}",
        table.stdout
    );
    for line in table.stdout.lines() {
        // On PostgreSQL the last line names the database by its URL, with
        // the test's long schema name: no terminal width holds it.
        if on_postgres() && line.starts_with("database postgres://") {
            continue;
        }
        assert!(line.chars().count() <= 80, "too wide: {line:?}");
    }
    let list = on_terminal(&env, &["queue", "list"]);
    assert!(
        list.success().stdout.contains("→ billing, shipping"),
        "{}",
        list.stdout
    );
    env.run(&["peek", "events"]).code(2).stderr_has("topic");
}

#[test]
fn stats_table_on_a_terminal() {
    let env = Env::new();
    env.publish("orders", "1");
    let run = on_terminal(&env, &["stats"]);
    run.success();
    let first = run.stdout.lines().next().unwrap();
    for header in [
        "QUEUE", "READY", "DELAYED", "LEASED", "ACKED", "DEAD", "TOTAL", "OLDEST",
    ] {
        assert!(first.contains(header), "{first}");
    }
    assert!(run.stdout.contains("orders"));
    assert!(run.stdout.contains("database"), "{}", run.stdout);
}

#[test]
fn stats_prometheus_output_parses() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    env.publish("q", "1");
    env.publish("q", "2");
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m)]).success();
    env.publish("other", "1");
    let run = env.run(&["stats", "--format", "prometheus"]);
    run.success();
    let text = &run.stdout;

    // Every line is a HELP, a TYPE or a sample, and every metric has both.
    let mut families = Vec::new();
    for line in text.lines() {
        match prometheus_parse::LineInfo::parse(line) {
            prometheus_parse::LineInfo::Doc { metric_name, .. } => {
                families.push(metric_name.to_owned())
            }
            prometheus_parse::LineInfo::Type { .. } | prometheus_parse::LineInfo::Sample { .. } => {
            }
            other => panic!("not exposition format: {line:?} ({other:?})"),
        }
    }
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(!scrape.samples.is_empty());
    for sample in &scrape.samples {
        assert!(sample.metric.starts_with("spool_"), "{}", sample.metric);
        assert!(
            scrape.docs.contains_key(&sample.metric),
            "no HELP: {}",
            sample.metric
        );
        assert!(
            !matches!(sample.value, prometheus_parse::Value::Untyped(_)),
            "no TYPE: {}",
            sample.metric
        );
    }
    let value = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let found: Vec<f64> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => panic!("unexpected kind"),
            })
            .collect();
        assert_eq!(found.len(), 1, "{metric} {labels:?}");
        found[0]
    };
    assert_eq!(
        value("spool_messages", &[("queue", "q"), ("state", "ready")]),
        1.0
    );
    assert_eq!(
        value("spool_messages", &[("queue", "q"), ("state", "dead")]),
        1.0
    );
    assert_eq!(value("spool_published_total", &[("queue", "q")]), 2.0);
    assert_eq!(value("spool_published_total", &[("queue", "other")]), 1.0);
    assert!(matches!(
        scrape
            .samples
            .iter()
            .find(|s| s.metric == "spool_published_total")
            .unwrap()
            .value,
        prometheus_parse::Value::Counter(_)
    ));
    let size = env.size_bytes() as f64;
    assert_eq!(value("spool_database_size_bytes", &[]), size);
    assert!(
        families
            .iter()
            .any(|f| f == "spool_oldest_ready_age_seconds")
    );
}

/// Starts `spool stats --watch` and returns what it printed after SIGINT.
fn watch_until_interrupted(env: &Env, extra_env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    cmd.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    Run::from(child.wait_with_output().unwrap())
}

#[test]
fn stats_watch_prints_one_json_object_per_refresh_and_stops_on_sigint() {
    let env = Env::new();
    env.publish("q", "1");
    let run = watch_until_interrupted(&env, &[], &["stats", "--watch", "100ms"]);
    run.success();
    let objects = run.json_lines();
    assert!(objects.len() >= 2, "{run:?}");
    assert!(objects.iter().all(|o| o["queues"][0]["ready"] == 1));
}

#[test]
fn stats_watch_redraws_in_place_on_a_terminal() {
    let env = Env::new();
    env.publish("q", "1");
    let run = watch_until_interrupted(
        &env,
        &[("SPOOL_TEST_TERMINAL", "stdout")],
        &["stats", "q", "--watch", "100ms"],
    );
    run.success();
    let frames = run.stdout.matches("\x1b[H").count();
    assert!(frames >= 2, "{run:?}");
    assert_eq!(run.stdout.matches("READY").count(), frames);
    env.run(&["stats", "--watch", "--format", "prometheus"])
        .code(2);
    env.run(&["stats", "--watch", "0s"]).code(2);
}

// ---------------------------------------------------------------- queue list

#[test]
fn queue_list_prints_one_json_line_per_queue_with_settings() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "b",
        "--visibility",
        "5m",
        "--retention",
        "0",
    ])
    .success();
    env.publish("a", "1");
    let lines = env.run(&["queue", "list"]).success().json_lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["name"], "a");
    assert_eq!(lines[0]["ready"], 1);
    assert_eq!(lines[1]["name"], "b");
    assert_eq!(lines[1]["visibility_ms"], 300_000);
    assert_eq!(lines[1]["retention_ms"], 0);
    assert_eq!(lines[1]["max_attempts"], 5);
    let table = on_terminal(&env, &["queue", "list"]);
    table.success();
    assert!(table.stdout.contains("visibility 5m"), "{}", table.stdout);
    assert!(table.stdout.lines().next().unwrap().contains("NAME"));
}

#[test]
fn colour_follows_color_flag_term_and_json() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    env.publish("q", "1");
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m)]).success();
    let peek = |extra_env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.env("SPOOL_TEST_TERMINAL", "stdout");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut all = vec!["peek", "q", "--state", "all"];
        all.extend_from_slice(args);
        Run::from(cmd.args(&all).output().unwrap())
    };
    assert!(
        peek(&[], &[]).stdout.contains('\x1b'),
        "colour by default on a terminal"
    );
    assert!(
        !peek(&[("TERM", "dumb")], &[]).stdout.contains('\x1b'),
        "TERM=dumb"
    );
    assert!(
        !peek(&[], &["--color", "never"]).stdout.contains('\x1b'),
        "--color never"
    );
    let json = peek(&[], &["--json"]);
    assert!(
        json.stdout.starts_with('{') && !json.stdout.contains('\x1b'),
        "--json: {:?}",
        json.stdout
    );
    let forced = peek(&[("NO_COLOR", "1")], &["--color", "always"]);
    assert!(
        forced.stdout.contains('\x1b'),
        "--color always wins over NO_COLOR"
    );
}

/// Regression: with the database not created yet, `stats` and `doctor`
/// named a PostgreSQL database by the URL as given, password and all (and
/// `top` did in its header). A password never shows: before the database
/// exists or after, in JSON, on a terminal, or in an error.
#[test]
fn a_password_in_the_url_is_never_shown() {
    if !on_postgres() {
        eprintln!("PostgreSQL only: a file path has no password");
        return;
    }
    let env = Env::new();
    let given = env.db.to_str().unwrap().to_owned();
    let (scheme, rest) = given.split_once("://").unwrap();
    let Some((user, host)) = rest.split_once('@').filter(|(u, _)| !u.contains(':')) else {
        eprintln!("SKIPPED: SPOOL_TEST_PG has a password or no user already");
        return;
    };
    // The test server trusts its clients: the password is not checked.
    let url = format!("{scheme}://{user}:s3cret-pw@{host}");
    let run = |args: &[&str], terminal: bool| {
        let mut cmd = env.cmd();
        cmd.env("SPOOL_DB", &url).args(args);
        if terminal {
            cmd.env("SPOOL_TEST_TERMINAL", "stdout");
        }
        Run::from(cmd.output().unwrap())
    };
    for stage in ["before the database exists", "after"] {
        let stats = run(&["stats", "--json"], false);
        let v: Value = serde_json::from_str(stats.success().stdout.trim()).unwrap();
        assert_eq!(v["database"]["path"], env.display(), "{stage}");
        let doctor = run(&["doctor", "--json"], false);
        let v: Value = serde_json::from_str(doctor.success().stdout.trim()).unwrap();
        assert_eq!(v["database"]["path"], env.display(), "{stage}");
        for (args, terminal) in [
            (&["stats"][..], true),
            (&["doctor"], true),
            (&["queue", "list"], true),
            (&["peek", "nope"], false),
            (&["replay", "nope", "--dead"], false),
            (&["queue", "delete", "nope"], false),
        ] {
            let out = run(args, terminal);
            assert!(
                !out.stdout.contains("s3cret") && !out.stderr.contains("s3cret"),
                "{stage}: {args:?} shows the password: {out:?}"
            );
        }
        env.publish("q", "1");
    }
    assert!(env.database_exists());
}
