//! Leases, receipts, ack/nack/extend, attempts, concurrency, exit codes.

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn consume_prints_the_documented_fields() {
    let env = Env::new();
    env.run(&["publish", "orders", "--key", "k1", "{\"total\":5}"])
        .success();
    let msg = env.consume_one("orders", &[]);
    let keys: Vec<&str> = msg
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
            "receipt",
            "attempt",
            "published_at",
            "lease_expires_at",
            "key",
            "group",
            "priority",
            "headers",
            "schema_version",
            "body"
        ]
    );
    assert_eq!(msg["queue"], "orders");
    assert_eq!(msg["attempt"], 1);
    assert_eq!(msg["key"], "k1");
    let published = msg["published_at"].as_str().unwrap();
    assert!(
        published.ends_with('Z') && published.len() == 24,
        "{published}"
    );
}

#[test]
fn empty_queue_exits_1_with_nothing_printed() {
    let env = Env::new();
    env.run(&["queue", "create", "q"]).success();
    let run = env.run(&["consume", "q"]);
    run.code(1);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.is_empty(), "{run:?}");
}

#[test]
fn unknown_queue_is_empty_with_a_warning_naming_similar_queues() {
    let env = Env::new();
    env.publish("orders", "1");
    let run = env.run(&["consume", "ordres"]);
    run.code(1).stderr_has("`orders`");
    assert_eq!(run.stderr.lines().count(), 1);
}

#[test]
fn n_is_at_least_one() {
    let env = Env::new();
    env.run(&["consume", "q", "-n", "0"]).code(2);
}

#[test]
fn lease_hides_message_then_redelivers_with_attempt_2_and_new_receipt() {
    let env = Env::new();
    env.publish("q", "\"job\"");
    let first = env.consume_one("q", &["--visibility", "2s"]);
    assert!(
        env.consume("q", &[]).is_empty(),
        "leased message must be invisible"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let second = env.consume_one("q", &[]);
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["attempt"], 2);
    assert_ne!(receipt(&second), receipt(&first));
    env.run(&["ack", receipt(&first)])
        .code(3)
        .stderr_has("lease");
    env.run(&["ack", receipt(&second)]).success();
}

#[test]
fn acking_twice_is_harmless_and_bad_receipts_do_not_stop_good_ones() {
    let env = Env::new();
    env.publish("q", "1");
    env.publish("q", "2");
    let msgs = env.consume("q", &["-n", "2"]);
    let (a, b) = (receipt(&msgs[0]), receipt(&msgs[1]));
    env.run(&["ack", a]).success();
    env.run(&["ack", a]).success();
    let run = env.run(&["ack", "not-a-receipt", b]);
    run.code(3).stderr_has("not-a-receipt");
    assert_eq!(
        env.state_of("q", 2),
        Some(3),
        "the good receipt is still acked"
    );
}

#[test]
fn ack_reads_receipts_from_consume_json_on_stdin() {
    let env = Env::new();
    for i in 0..3 {
        env.publish("q", &i.to_string());
    }
    let lines = env.run(&["consume", "q", "-n", "3"]);
    env.run_with_input(&["ack"], &lines.stdout).success();
    for id in 1..=3 {
        assert_eq!(env.state_of("q", id), Some(3));
    }
    let msg = env.publish("q", "4");
    let m = env.consume_one("q", &[]);
    env.run_with_input(&["ack"], format!("{}\n", receipt(&m)))
        .success();
    assert_eq!(env.state_of("q", msg), Some(3));
}

#[test]
fn nack_makes_the_message_deliverable_again_as_a_failed_attempt() {
    let env = Env::new();
    env.publish("q", "1");
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m)]).success();
    let again = env.consume_one("q", &[]);
    assert_eq!(again["attempt"], 2);
    env.run(&["nack", receipt(&m)]).code(3);
}

#[test]
fn nack_delay_and_backoff_wait_before_redelivery() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retry-delay", "1s"])
        .success();
    env.publish("q", "1");
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m), "--delay", "1500ms"])
        .success();
    assert!(env.consume("q", &[]).is_empty());
    std::thread::sleep(Duration::from_millis(1600));
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m), "--backoff"]).success();
    // Attempt 2 failed: 1s × 2 = 2s, ±20%, so at least 1.6s.
    assert!(env.consume("q", &[]).is_empty(), "backoff must still hold");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(env.consume_one("q", &[])["attempt"], 3);
    env.run(&["nack", receipt(&m), "--delay", "1s", "--backoff"])
        .code(2);
}

#[test]
fn extend_keeps_the_message_leased() {
    let env = Env::new();
    env.publish("q", "1");
    let m = env.consume_one("q", &["--visibility", "1500ms"]);
    env.run(&["extend", receipt(&m), "--by", "10s"]).success();
    std::thread::sleep(Duration::from_millis(1700));
    assert!(env.consume("q", &[]).is_empty(), "extended lease must hold");
    env.run(&["ack", receipt(&m)]).success();
    env.run(&["extend", receipt(&m), "--by", "0s"]).code(2);
}

#[test]
fn max_attempts_makes_the_message_dead() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "2"])
        .success();
    let id = env.publish("q", "1");
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m)]).success();
    env.consume_one("q", &["--visibility", "200ms"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        env.consume("q", &[]).is_empty(),
        "the second expired lease was the last"
    );
    assert_eq!(env.state_of("q", id), Some(4));
}

#[test]
fn consume_ack_is_at_most_once() {
    let env = Env::new();
    let id = env.publish("q", "1");
    let m = env.consume_one("q", &["--ack"]);
    assert_eq!(m["id"], id);
    assert_eq!(env.state_of("q", id), Some(3));
    assert!(env.consume("q", &[]).is_empty());
}

#[test]
fn wait_returns_a_message_published_during_the_wait() {
    let env = Env::new();
    env.run(&["queue", "create", "q"]).success();
    let child = env
        .cmd()
        .args(["consume", "q", "--wait", "10s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let published = Instant::now();
    env.publish("q", "\"hello\"");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(published.elapsed() < Duration::from_secs(5));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"hello\""), "{text}");
}

#[test]
fn wait_gives_up_with_exit_1() {
    let env = Env::new();
    let start = Instant::now();
    env.run(&["consume", "q", "--wait", "300ms"]).code(1);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn follow_delivers_until_sigterm_then_exits_0() {
    let env = Env::new();
    env.publish("q", "1");
    let child = env
        .cmd()
        .args(["consume", "q", "--follow", "--ack"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    env.publish("q", "2");
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY-free: send SIGTERM through the kill command.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
}

#[test]
fn closed_stdout_ends_quietly() {
    let env = Env::new();
    let input: String = (0..5000).map(|i| format!("{i}\n")).collect();
    env.run_with_input(&["publish", "q"], &input).success();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' consume q -n 5000 | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}",
            bin()
        ))
        .env("SPOOL_DB", &env.db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn concurrent_consumers_get_each_message_exactly_once() {
    let env = Env::new();
    let input: String = (0..2000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    env.run_with_input(&["publish", "q"], &input).success();
    let script = format!(
        "while true; do out=$('{bin}' consume q -n 7 --ack); code=$?; \
           [ $code -eq 0 ] || break; printf '%s\\n' \"$out\"; done; \
         [ $code -eq 1 ] || echo \"exit $code\" >&2",
        bin = bin()
    );
    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new("bash")
                .arg("-c")
                .arg(&script)
                .env("SPOOL_DB", &env.db)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = std::collections::HashMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("locked"), "{stderr}");
        assert!(stderr.trim().is_empty(), "{stderr}");
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            *seen.entry(v["id"].as_i64().unwrap()).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 2000);
    assert!(
        seen.values().all(|&n| n == 1),
        "a message was delivered twice"
    );
}

#[test]
fn write_lock_held_past_busy_timeout_exits_75_and_loses_nothing() {
    let env = Env::new();
    env.publish("q", "1");
    // SQLite: another connection holds the write lock. PostgreSQL: another
    // transaction holds a lock that keeps every writer out of `deliveries`.
    let lock = Locker::hold(&env);
    let start = Instant::now();
    let run = env.run(&["--busy-timeout", "300ms", "publish", "q", "2"]);
    run.code(75).stderr_has("busy");
    assert!(start.elapsed() >= Duration::from_millis(300));
    env.run(&["--busy-timeout", "200ms", "consume", "q"])
        .code(75);
    lock.release();
    let msgs = env.consume("q", &["-n", "10"]);
    assert_eq!(
        msgs.len(),
        1,
        "the busy publish added nothing, the first is intact"
    );
    assert_eq!(msgs[0]["attempt"], 1, "the busy consume leased nothing");
}

#[test]
fn a_file_that_is_not_a_database_exits_74_untouched() {
    if sqlite_only("a file that is not a database") {
        return;
    }
    let env = Env::new();
    let path = env.path("notes.txt");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    for args in [
        &["publish", "q", "1"][..],
        &["consume", "q"],
        &["ack", "1_1_1"],
    ] {
        let run = env
            .cmd()
            .arg("--db")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(74), "{args:?} {run:?}");
    }
    let run = env
        .cmd()
        .arg("--db")
        .arg(&path)
        .args(["publish", "q", "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a database"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    assert!(!env.path("notes.txt-wal").exists());
}

#[test]
fn a_directory_as_db_exits_74() {
    if sqlite_only("a directory where the file should be") {
        return;
    }
    let env = Env::new();
    let dir = env.path("adir");
    std::fs::create_dir(&dir).unwrap();
    let run = env
        .cmd()
        .arg("--db")
        .arg(&dir)
        .args(["publish", "q", "1"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(74));
    assert!(String::from_utf8_lossy(&run.stderr).contains("directory"));
}

#[test]
fn a_database_from_a_newer_spool_is_refused() {
    let env = Env::new();
    env.publish("q", "1");
    env.mark_newer(999);
    env.run(&["publish", "q", "2"])
        .code(74)
        .stderr_has("Upgrade spool");
    env.run(&["consume", "q"]).code(74);
}

#[test]
fn kill_9_during_a_large_publish_leaves_all_or_nothing() {
    let env = Env::new();
    let input: String = (0..400_000)
        .map(|i| format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}}\n"))
        .collect();
    let input_file = env.path("big.ndjson");
    std::fs::write(&input_file, &input).unwrap();
    for delay_ms in [50u64, 150, 400] {
        let mut child = env
            .cmd()
            .args(["publish", "q", "-q"])
            .stdin(std::fs::File::open(&input_file).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        // On PostgreSQL the server rolls the transaction back once it sees
        // the connection gone.
        env.settle();
        let count = if env.has_tables() {
            env.count("SELECT count(*) FROM messages")
        } else {
            0
        };
        assert!(
            count % 400_000 == 0,
            "after kill at {delay_ms}ms ({status}): {count} messages"
        );
    }
}

#[test]
fn queue_create_is_idempotent_and_refuses_other_settings() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--visibility", "1m"])
        .success();
    env.run(&["queue", "create", "q", "--visibility", "1m"])
        .success();
    env.run(&["queue", "create", "q"]).success();
    env.run(&["queue", "create", "q", "--visibility", "2m"])
        .code(2)
        .stderr_has("queue set");
    env.run(&["queue", "set", "q", "--visibility", "2m"])
        .success();
    env.run(&["queue", "set", "nope", "--visibility", "2m"])
        .code(3);
    env.run(&["queue", "create", "q", "--visibility", "0s"])
        .code(2);
}

#[test]
fn queue_visibility_is_the_default_lease() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--visibility", "250ms"])
        .success();
    env.publish("q", "1");
    let m = env.consume_one("q", &[]);
    let published = jiff_like_ms(m["lease_expires_at"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        published - now < 1000,
        "lease should end within the queue's 250ms visibility"
    );
}

/// Parses the milliseconds of an RFC 3339 UTC time as spool prints it.
fn jiff_like_ms(text: &str) -> i64 {
    let ts: jiff::Timestamp = text.parse().unwrap();
    ts.as_millisecond()
}

#[test]
fn global_options_work_after_the_subcommand() {
    let env = Env::new();
    // `--db` after the subcommand wins over SPOOL_DB (whichever backend
    // that names): the file is created, the test's database is not.
    let other = env.path("other.db");
    env.run(&[
        "publish",
        "q",
        "1",
        "--db",
        other.to_str().unwrap(),
        "--quiet",
    ])
    .success();
    assert!(other.exists());
    assert!(!env.database_exists());
}

#[test]
fn a_receipt_of_a_dead_message_says_it_is_dead() {
    let env = Env::new();
    env.publish("q", "1");
    let got = env.consume_one("q", &[]);
    let r = got["receipt"].as_str().unwrap();
    env.run(&["nack", r, "--dead"]).success();
    for cmd in [
        vec!["ack", r],
        vec!["nack", r],
        vec!["extend", r, "--by", "1m"],
    ] {
        env.run(&cmd)
            .code(3)
            .stderr_has("the message is dead; `spool replay QUEUE --dead`");
    }
}

#[test]
fn consume_of_an_unknown_queue_is_empty_and_creates_nothing() {
    let env = Env::new();
    let missing = env.path("not/yet/spool.db");
    let run = env.run(&["--db", missing.to_str().unwrap(), "consume", "nosuch"]);
    run.code(1)
        .stderr_has("no queue named `nosuch`. List queues with `spool queue list`. Until it exists, it counts as empty.");
    assert!(!env.path("not").exists(), "consume created the database");
    let run = env.run(&[
        "--db",
        missing.to_str().unwrap(),
        "work",
        "nosuch",
        "--until-empty",
        "--",
        "true",
    ]);
    run.success()
        .stderr_has("Until it exists, it counts as empty.")
        .stderr_has("handled 0");
    assert!(!env.path("not").exists(), "work created the database");
    env.publish("orders", "1");
    env.run(&["consume", "ORDERS"])
        .code(1)
        .stderr_has("Did you mean `orders`? Until it exists, it counts as empty.");
}
