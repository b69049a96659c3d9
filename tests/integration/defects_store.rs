//! Regressions of issue 15 in the store: keys past retention, `max_size` of
//! trimmed bodies, the next message of a group whose head died, and refused
//! commands that created the database.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Publishes `body` to `queue` with `flags` and returns the id printed.
fn publish_with(env: &Env, queue: &str, flags: &[&str], body: &str) -> i64 {
    let mut args = vec!["publish", queue];
    args.extend_from_slice(flags);
    args.push(body);
    let run = env.run(&args);
    run.success();
    run.stdout.trim().parse().expect("an id")
}

/// Consumes and acks everything deliverable in `queue`.
fn drain(env: &Env, queue: &str) -> usize {
    let got = env.consume(queue, &["-n", "10000", "--ack"]);
    got.len()
}

/// Waits past a retention of 1s (done_at is set at the ack, before this).
fn past_retention() {
    std::thread::sleep(Duration::from_millis(1200));
}

fn bodies(msgs: &[Value]) -> Vec<Value> {
    msgs.iter().map(|m| m["body"].clone()).collect()
}

// ------------------------------------------------ 1. keys past retention

#[test]
fn a_key_whose_message_is_past_retention_publishes_anew() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retention", "1s"])
        .success();
    let first = publish_with(&env, "q", &["--key", "K"], "\"first\"");
    let msg = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&msg)]).success();
    past_retention();

    let second = publish_with(&env, "q", &["--key", "K"], "\"second\"");
    assert_ne!(second, first, "an expired message must not deduplicate");
    env.run(&["peek", "q", "--id", &second.to_string()])
        .success();
    let got = env.consume_one("q", &[]);
    assert_eq!(got["id"], second);
    assert_eq!(got["body"], "second");
    assert_eq!(got["key"], "K");
    // While the new message is held, the key deduplicates again.
    assert_eq!(
        publish_with(&env, "q", &["--key", "K"], "\"third\""),
        second
    );
    assert_consistent(&env, "after republishing an expired key");
}

#[test]
fn many_expired_keys_each_publish_anew_one_after_another() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retention", "1s"])
        .success();
    // More expired messages than one write sweeps, so some stay as rows.
    let lines: String = (0..600).map(|i| format!("{{\"k\":{i}}}\n")).collect();
    env.run_with_input(&["publish", "q", "--key-from", "/k"], &lines)
        .success();
    assert_eq!(drain(&env, "q"), 600);
    past_retention();

    let mut ids = Vec::new();
    for k in [599, 598, 0, 1, 300] {
        let run = env.run(&[
            "publish",
            "q",
            "--key",
            &k.to_string(),
            &format!("{{\"again\":{k}}}"),
        ]);
        run.success();
        ids.push(run.ids()[0]);
    }
    // And a batch of several expired keys at once.
    let batch = env.run_with_input(
        &["publish", "q", "--key-from", "/k"],
        "{\"k\":2}\n{\"k\":3}\n{\"k\":2}\n",
    );
    batch.success();
    let batch_ids = batch.ids();
    assert_eq!(
        batch_ids[0], batch_ids[2],
        "a key repeated in one batch dedups"
    );
    ids.extend(&batch_ids[..2]);

    let got = env.consume("q", &["-n", "100"]);
    let mut got_ids: Vec<i64> = got.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    got_ids.sort_unstable();
    let mut want = ids.clone();
    want.sort_unstable();
    assert_eq!(
        got_ids, want,
        "every publish of an expired key stored a message"
    );
    assert_consistent(&env, "after republishing many expired keys");
}

#[test]
fn a_topic_key_past_retention_in_every_subscriber_publishes_anew() {
    let env = Env::new();
    for q in ["a", "b", "c"] {
        env.run(&["queue", "create", q, "--retention", "1s"])
            .success();
    }
    env.run(&["queue", "create", "keep"]).success();
    env.run(&["subscribe", "t", "a"]).success();
    env.run(&["subscribe", "t", "b"]).success();
    env.run(&["subscribe", "u", "c"]).success();
    env.run(&["subscribe", "u", "keep"]).success();
    let first = publish_with(&env, "t", &["--key", "K"], "1");
    let held = publish_with(&env, "u", &["--key", "K"], "1");
    for q in ["a", "b", "c", "keep"] {
        assert_eq!(drain(&env, q), 1);
    }
    past_retention();

    let second = publish_with(&env, "t", &["--key", "K"], "2");
    assert_ne!(second, first, "no subscriber holds the message any more");
    for q in ["a", "b"] {
        let got = env.consume_one(q, &[]);
        assert_eq!(
            (got["id"].as_i64(), got["body"].clone()),
            (Some(second), Value::from(2))
        );
    }
    // `keep` still holds the message (retention 1d): the key still dedups.
    assert_eq!(publish_with(&env, "u", &["--key", "K"], "2"), held);
    assert!(env.consume("c", &[]).is_empty());
    assert_consistent(&env, "after republishing an expired topic key");
}

#[test]
fn a_key_acked_before_retention_was_set_to_0_publishes_anew() {
    let env = Env::new();
    let first = publish_with(&env, "q", &["--key", "K"], "\"first\"");
    assert_eq!(drain(&env, "q"), 1);
    // Kept for replay (retention 1d), then retention is switched off.
    env.run(&["queue", "set", "q", "--retention", "0"])
        .success();
    let second = publish_with(&env, "q", &["--key", "K"], "\"second\"");
    assert_ne!(second, first);
    assert_eq!(bodies(&env.consume("q", &[])), [Value::from("second")]);
    assert_consistent(&env, "after retention 0");
}

// ------------------------------------------- 6. max_size of trimmed bodies

/// A JSON string body of exactly `n` bytes.
fn body_of(n: usize) -> String {
    format!("\"{}\"", "a".repeat(n - 2))
}

#[test]
fn max_size_counts_the_body_without_the_whitespace_around_it() {
    let env = Env::new();
    env.run(&["queue", "create", "s", "--max-size", "1KiB"])
        .success();
    let body = body_of(1024);
    let runs = [
        env.run_with_input(&["publish", "s", "--single"], format!("{body}\n")),
        env.run_with_input(&["publish", "s", "--single"], format!("\n  {body}\n\n")),
        env.run_with_input(&["publish", "s"], format!(" {body} \n")),
        env.run_with_input(
            &["publish", "s"],
            format!("\t{body}{}\r\n", " ".repeat(3000)),
        ),
        env.run(&["publish", "s", &format!(" {body}\n")]),
    ];
    for run in &runs {
        run.success();
    }
    let got = env.run(&["consume", "s", "-n", "10", "--body"]);
    got.success();
    let stored: Vec<&str> = got.stdout.lines().collect();
    assert_eq!(stored, vec![body.as_str(); runs.len()]);

    // One byte more is still refused, however it is surrounded.
    let over = body_of(1025);
    env.run_with_input(&["publish", "s", "--single"], format!("{over}\n"))
        .code(65);
    env.run_with_input(&["publish", "s"], format!(" {over} \n"))
        .code(65)
        .stderr_has("line 1");
    env.run(&["publish", "s", &over]).code(65);
}

#[test]
fn max_size_of_a_raw_line_is_the_line_without_its_terminator() {
    let env = Env::new();
    env.run(&["queue", "create", "s", "--max-size", "1KiB"])
        .success();
    let line = "x".repeat(1024);
    env.run_with_input(&["publish", "s", "--raw"], format!("{line}\r\n"))
        .success();
    let padded = format!(" {} ", "x".repeat(1022));
    env.run_with_input(&["publish", "s", "--raw"], format!("{padded}\n"))
        .success();
    // Raw text keeps its spaces, so they count.
    env.run_with_input(&["publish", "s", "--raw"], format!(" {line}\n"))
        .code(65);
    let got = env.run(&["consume", "s", "-n", "10", "--body"]);
    let stored: Vec<&str> = got.stdout.lines().collect();
    assert_eq!(stored, [line.as_str(), padded.as_str()]);
}

// ------------------------------- 7. the next message of a group whose head died

#[test]
fn a_groups_next_message_reads_ready_once_its_head_died_by_lease_expiry() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    let head = publish_with(&env, "q", &["--group", "G"], "1");
    let next = publish_with(&env, "q", &["--group", "G"], "2");
    let last = publish_with(&env, "q", &["--group", "G"], "3");
    assert_eq!(env.consume_one("q", &["--visibility", "200ms"])["id"], head);
    std::thread::sleep(Duration::from_millis(500));

    let stats = env.run(&["stats", "q"]);
    stats.success();
    let all: Value = serde_json::from_str(&stats.stdout).unwrap();
    let q = &all["queues"][0];
    let counts = ["ready", "delayed", "leased", "dead"].map(|k| q[k].as_i64().unwrap());
    assert_eq!(counts, [1, 1, 0, 1], "ready, delayed, leased, dead: {q}");
    assert!(q["oldest_ready_age_ms"].is_i64(), "{q}");

    let peeked = env.run(&["peek", "q", "--state", "all"]);
    let states: Vec<(i64, String)> = peeked
        .json_lines()
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want =
        [(next, "ready"), (last, "delayed"), (head, "dead")].map(|(id, s)| (id, s.to_owned()));
    assert_eq!(states, want);
    let ready = env.run(&["peek", "q", "--state", "ready"]).json_lines();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0]["id"], next);
    let one = env
        .run(&["peek", "q", "--id", &next.to_string()])
        .json_lines();
    assert_eq!(one[0]["state"], "ready");
    let delayed = env.run(&["peek", "q", "--state", "delayed"]).json_lines();
    assert_eq!(
        delayed.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(),
        [last]
    );

    // And the claim agrees.
    assert_eq!(env.consume_one("q", &[])["id"], next);
}

// --------------------------------- 8. refused commands create no database

/// The database neither exists nor has spool's tables.
fn assert_no_database(env: &Env, what: &str) {
    assert!(!env.has_tables(), "{what} created spool's tables");
    assert!(!env.database_exists(), "{what} created the database");
}

#[test]
fn refused_commands_leave_a_missing_database_missing() {
    let env = Env::new();
    let cases: Vec<(Vec<&str>, Option<&str>, i32)> = vec![
        (vec!["publish", "q", "{bad"], None, 65),
        (vec!["publish", "q"], Some("{\"ok\":1}\n{bad\n"), 65),
        (vec!["publish", "q", "--single"], Some("{bad"), 65),
        (vec!["publish", "q", "--stream"], Some("{bad\n"), 65),
        (vec!["publish", "q", "--key-from", "/k", "{}"], None, 65),
        (vec!["ack", "garbage"], None, 3),
        (vec!["ack", "1_1_0000000000000001"], None, 3),
        (vec!["nack", "1_1_0000000000000001"], None, 3),
        (
            vec!["extend", "1_1_0000000000000001", "--by", "1m"],
            None,
            3,
        ),
        (vec!["ack"], Some("2_5_00000000000000aa\n"), 3),
        (vec!["queue", "set", "nope", "--retention", "1s"], None, 3),
        (vec!["unsubscribe", "t", "q"], None, 3),
    ];
    for (args, input, code) in cases {
        let run = match input {
            Some(input) => env.run_with_input(&args, input),
            None => env.run(&args),
        };
        run.code(code);
        assert!(run.stderr.starts_with("spool: error: "), "{run:?}");
        assert_no_database(&env, &args.join(" "));
    }
    // A publish that is fine still creates it.
    env.publish("q", "1");
    assert!(env.has_tables());
}

#[test]
fn a_refused_publish_creates_no_folder() {
    if sqlite_only("folders are a file system's") {
        return;
    }
    let env = Env::new();
    let db = env.path("new/dir/x.db");
    let db = db.to_str().unwrap();
    env.run(&["--db", db, "publish", "q", "{bad"]).code(65);
    env.run(&["--db", db, "nack", "1_1_0000000000000001"])
        .code(3);
    env.run(&["--db", db, "queue", "set", "q", "--max-size", "1KiB"])
        .code(3);
    assert!(
        !env.path("new").exists(),
        "a refused command made the folder"
    );
}
