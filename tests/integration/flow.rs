//! Flow control: pause, the in-flight cap, rates, TTL, length limits, dead
//! reasons and failure traces, through the binary on either backend.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// `queue show NAME --json`.
fn show(env: &Env, queue: &str) -> Value {
    let run = env.run(&["queue", "show", queue, "--json"]);
    run.success();
    serde_json::from_str(&run.stdout).expect("queue show prints one JSON object")
}

/// `peek --json` of the given state.
fn peek(env: &Env, queue: &str, state: &str) -> Vec<Value> {
    let run = env.run(&["peek", queue, "--state", state, "-n", "1000", "--json"]);
    run.success();
    run.json_lines()
}

/// Publishes `n` small messages (`{"n":i}`) in one batch.
fn publish_many(env: &Env, queue: &str, n: usize) -> Vec<i64> {
    let input: String = (0..n).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let run = env.run_with_input(&["publish", queue], input);
    run.success();
    run.ids()
}

/// A shell handler script in the test's folder.
fn script(env: &Env, name: &str, body: &str) -> String {
    let path = env.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Starts `consume QUEUE --wait 20s`, lets it settle into its wait, runs
/// `act`, and returns what the consumer printed: it must have got a message
/// soon after `act`, not at the end of its wait.
fn woken_by(env: &Env, queue: &str, act: impl FnOnce()) -> String {
    let waiting = env
        .cmd()
        .args(["consume", queue, "--wait", "20s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let acted = Instant::now();
    act();
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the waiting consumer got a message"
    );
    assert!(
        acted.elapsed() < Duration::from_secs(10),
        "woke on the change, not at the end of --wait"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn_work(env: &Env, args: &[&str]) -> Child {
    env.cmd()
        .arg("work")
        .args(args)
        .current_dir(env.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spool work starts")
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

#[test]
fn settings_are_shown_set_and_removed() {
    let env = Env::new();
    env.run(&["queue", "create", "q"]).success();
    let q = show(&env, "q");
    assert_eq!(q["paused"], false);
    assert_eq!(q["max_in_flight"], 0);
    assert!(q["rate"].is_null() && q["ttl_ms"].is_null());
    assert!(q["max_length"].is_null() && q["max_bytes"].is_null());
    assert_eq!(q["on_full"], "reject");

    env.run(&[
        "queue",
        "set",
        "q",
        "--max-in-flight",
        "3",
        "--rate",
        "50/1s",
        "--ttl",
        "1h",
        "--max-length",
        "100",
        "--max-bytes",
        "1MiB",
        "--on-full",
        "drop-oldest",
    ])
    .success();
    let q = show(&env, "q");
    assert_eq!(q["max_in_flight"], 3);
    assert_eq!(q["rate"], "50/1s");
    assert_eq!(q["ttl_ms"], 3_600_000);
    assert_eq!(q["max_length"], 100);
    assert_eq!(q["max_bytes"], 1 << 20);
    assert_eq!(q["on_full"], "drop-oldest");

    // The same fields in `queue list --json` and `stats --json`.
    let listed = env.run(&["queue", "list", "--json"]).json_lines();
    assert_eq!(listed[0]["rate"], "50/1s");
    assert_eq!(listed[0]["max_in_flight"], 3);
    let stats: Value = serde_json::from_str(&env.run(&["stats", "--json"]).stdout).unwrap();
    assert_eq!(stats["queues"][0]["max_length"], 100);
    assert_eq!(stats["queues"][0]["paused"], false);

    env.run(&[
        "queue",
        "set",
        "q",
        "--max-in-flight",
        "0",
        "--rate",
        "none",
        "--ttl",
        "none",
        "--max-length",
        "none",
        "--max-bytes",
        "none",
    ])
    .success();
    let q = show(&env, "q");
    assert_eq!(q["max_in_flight"], 0);
    assert!(q["rate"].is_null() && q["ttl_ms"].is_null());
    assert!(q["max_length"].is_null() && q["max_bytes"].is_null());
}

#[test]
fn bad_flow_settings_exit_2_and_change_nothing() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--rate", "10/1s"])
        .success();
    for bad in [
        &["--rate", "0/1s"][..],
        &["--rate", "10"],
        &["--rate", "ten/1s"],
        &["--ttl", "soon"],
        &["--max-length", "-1"],
        &["--max-bytes", "lots"],
        &["--on-full", "explode"],
        &["--max-in-flight", "x"],
    ] {
        let mut args = vec!["queue", "set", "q"];
        args.extend_from_slice(bad);
        env.run(&args).code(2);
    }
    assert_eq!(show(&env, "q")["rate"], "10/1s");
}

// ---------------------------------------------------------------------------
// Pause
// ---------------------------------------------------------------------------

#[test]
fn a_paused_queue_takes_publishes_but_delivers_nothing_until_resumed() {
    let env = Env::new();
    env.publish("q", r#"{"a":1}"#);
    let leased = env.consume_one("q", &[]);
    env.run(&["queue", "pause", "q"]).success();
    env.run(&["queue", "pause", "q"]).success();
    assert_eq!(show(&env, "q")["paused"], true);

    env.publish("q", r#"{"a":2}"#);
    env.run(&["consume", "q"]).code(1);
    // What is leased can still be settled.
    env.run(&["extend", receipt(&leased), "--by", "1m"])
        .success();
    env.run(&["ack", receipt(&leased)]).success();
    // `work --until-empty` stops at once on a paused queue.
    let run = env.run(&["work", "q", "--until-empty", "--", "true"]);
    run.success();
    assert_eq!(peek(&env, "q", "ready").len(), 1);

    // A consumer waiting on the paused queue wakes when it is resumed.
    let got = woken_by(&env, "q", || {
        env.run(&["queue", "resume", "q"]).success();
    });
    assert!(got.contains(r#""a":2"#));
    assert_eq!(show(&env, "q")["paused"], false);
}

#[test]
fn pause_and_resume_of_an_unknown_queue_exit_3() {
    let env = Env::new();
    env.publish("orders", "1");
    env.run(&["queue", "pause", "ordres"])
        .code(3)
        .stderr_has("orders");
    env.run(&["queue", "resume", "nope"]).code(3);
}

// ---------------------------------------------------------------------------
// In-flight cap
// ---------------------------------------------------------------------------

#[test]
fn a_consume_gets_only_what_the_cap_leaves() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-in-flight", "3"])
        .success();
    publish_many(&env, "q", 10);
    assert_eq!(env.consume("q", &["-n", "2"]).len(), 2);
    let second = env.consume("q", &["-n", "5"]);
    assert_eq!(second.len(), 1, "the cap leaves room for one");
    env.run(&["consume", "q"]).code(1);
    env.run(&["ack", receipt(&second[0])]).success();
    assert_eq!(env.consume("q", &["-n", "5"]).len(), 1);
}

#[test]
fn ten_work_processes_never_run_more_handlers_than_the_cap() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-in-flight", "3"])
        .success();
    publish_many(&env, "q", 40);
    let running = env.path("running");
    std::fs::create_dir(&running).unwrap();
    let log = env.path("seen.log");
    // Each handler marks itself running, counts the running ones, works a
    // while and unmarks itself before it exits (and so before its ack).
    let handler = script(
        &env,
        "h.sh",
        &format!(
            "touch {r}/$SPOOL_ID; ls {r} | wc -l >> {l}; sleep 0.2; rm {r}/$SPOOL_ID",
            r = running.display(),
            l = log.display()
        ),
    );
    let workers: Vec<Child> = (0..10)
        .map(|_| {
            spawn_work(
                &env,
                &["q", "--until-empty", "--concurrency", "8", "--", &handler],
            )
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    let seen: Vec<u32> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 40, "every message was handled once");
    let most = seen.iter().copied().max().unwrap();
    assert!(most <= 3, "{most} handlers ran at once under a cap of 3");
    assert!(most >= 2, "the cap is not a lock: {seen:?}");
    assert_eq!(
        peek(&env, "q", "all")
            .iter()
            .filter(|m| m["state"] != "acked")
            .count(),
        0
    );
}

// ---------------------------------------------------------------------------
// Rate
// ---------------------------------------------------------------------------

#[test]
fn a_consume_over_the_rate_gets_what_the_rate_allows() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--rate", "3/1m"])
        .success();
    publish_many(&env, "q", 10);
    assert_eq!(env.consume("q", &["-n", "10"]).len(), 3, "one burst");
    env.run(&["consume", "q"]).code(1);
}

#[test]
fn the_rate_holds_across_four_processes() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--rate", "20/1s"])
        .success();
    publish_many(&env, "q", 200);
    let log = env.path("times.log");
    let handler = script(&env, "h.sh", &format!("date +%s%N >> {}", log.display()));
    let started = Instant::now();
    let mut workers: Vec<Child> = (0..4)
        .map(|_| spawn_work(&env, &["q", "--concurrency", "4", "--", &handler]))
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let times: Vec<i64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<i64>().unwrap() / 1_000_000)
        .collect();
    // A burst of 20, then 20 per second: at most 20 + 20 × elapsed.
    let most = 20.0 + 20.0 * elapsed;
    assert!(
        (times.len() as f64) <= most + 1.0,
        "{} deliveries in {elapsed:.1}s at 20/1s",
        times.len()
    );
    assert!(
        times.len() >= 30,
        "only {} deliveries in {elapsed:.1}s",
        times.len()
    );
    // After the first burst, no one-second window holds much more than 20:
    // the times are the handlers' starts, which a loaded machine may bunch
    // up a little after their claims, hence the slack.
    let mut sorted = times.clone();
    sorted.sort_unstable();
    let after_burst: Vec<i64> = sorted.iter().copied().skip(20).collect();
    for (i, &t) in after_burst.iter().enumerate() {
        let in_window = after_burst[i..]
            .iter()
            .take_while(|&&u| u < t + 1000)
            .count();
        assert!(
            in_window <= 28,
            "{in_window} deliveries within 1s after {t}"
        );
    }
}

#[test]
fn work_until_empty_drains_a_rate_limited_queue_at_its_rate() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--rate", "10/1s"])
        .success();
    publish_many(&env, "q", 25);
    let started = Instant::now();
    env.run(&[
        "work",
        "q",
        "--until-empty",
        "--concurrency",
        "4",
        "--",
        "true",
    ])
    .success();
    let took = started.elapsed();
    assert!(peek(&env, "q", "ready").is_empty(), "all drained");
    assert_eq!(peek(&env, "q", "acked").len(), 25);
    // 10 at once, then 15 more at 10 per second.
    assert!(took >= Duration::from_millis(1300), "took only {took:?}");
}

// ---------------------------------------------------------------------------
// TTL
// ---------------------------------------------------------------------------

#[test]
fn ready_delayed_and_leased_messages_expire() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--ttl", "1s"]).success();
    let ready = env.publish("q", r#""ready""#);
    let delayed = {
        let run = env.run(&["publish", "q", r#""delayed""#, "--delay", "500ms"]);
        run.success();
        run.stdout.trim().parse::<i64>().unwrap()
    };
    let leased_msg = {
        let run = env.run(&[
            "publish",
            "q",
            r#""leased""#,
            "--ttl",
            "2s",
            "--priority",
            "9",
        ]);
        run.success();
        run.stdout.trim().parse::<i64>().unwrap()
    };
    let leased = env.consume_one("q", &["--visibility", "3s"]);
    assert_eq!(leased["id"], leased_msg);
    std::thread::sleep(Duration::from_millis(1200));
    // Readers show the expired ones as dead at once, with the reason.
    let dead = peek(&env, "q", "dead");
    let ids: Vec<i64> = dead.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [ready, delayed]);
    assert!(dead.iter().all(|m| m["dead_reason"] == "expired"));
    env.run(&["consume", "q"]).code(1);
    // The lease that began before its TTL holds: it can be extended...
    env.run(&["extend", receipt(&leased), "--by", "3s"])
        .success();
    std::thread::sleep(Duration::from_millis(1000));
    // ... and once it ends without an ack, past its TTL, the message dies.
    env.run(&["nack", receipt(&leased)]).success();
    let dead = peek(&env, "q", "dead");
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().all(|m| m["dead_reason"] == "expired"));
    env.run(&["consume", "q"]).code(1);
}

#[test]
fn replay_of_an_expired_message_counts_its_ttl_from_the_replay() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--ttl", "300ms"])
        .success();
    env.publish("q", "1");
    std::thread::sleep(Duration::from_millis(400));
    env.run(&["consume", "q"]).code(1);
    env.run(&["replay", "q", "--dead", "--dead-reason", "expired"])
        .success();
    assert_eq!(
        env.consume("q", &[]).len(),
        1,
        "deliverable again after replay"
    );
}

// ---------------------------------------------------------------------------
// Length limits
// ---------------------------------------------------------------------------

#[test]
fn reject_at_exactly_the_length_limit() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-length", "3"])
        .success();
    publish_many(&env, "q", 2);
    env.publish("q", "3");
    env.run(&["publish", "q", "4"]).code(75).stderr_has("full");
    // A batch that would go over publishes nothing.
    env.run(&["ack", receipt(&env.consume_one("q", &[]))])
        .success();
    env.run_with_input(&["publish", "q"], "5\n6\n").code(75);
    assert_eq!(peek(&env, "q", "ready").len(), 2);
    // A batch that could never fit is bad input.
    env.run_with_input(&["publish", "q"], "1\n2\n3\n4\n")
        .code(65);
    env.publish("q", "7");
    assert_eq!(peek(&env, "q", "ready").len(), 3);
}

#[test]
fn a_full_queue_names_the_limit_the_publish_breaks() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "q",
        "--max-length",
        "3",
        "--max-bytes",
        "100",
    ])
    .success();
    publish_many(&env, "q", 3);
    // Three messages of a few bytes: the length limit is what is reached.
    env.run(&["publish", "q", "4"]).code(75).stderr_has(
        "it holds 3 messages, may hold at most 3 messages, and this would add 1 message",
    );
    env.run(&[
        "queue",
        "create",
        "b",
        "--max-length",
        "100",
        "--max-bytes",
        "10",
    ])
    .success();
    env.publish("b", "12345678");
    env.run(&["publish", "b", "123"])
        .code(75)
        .stderr_has("it holds 8 bytes of bodies, may hold at most 10 bytes of bodies, and this would add 3 bytes of bodies");
}

#[test]
fn reject_at_exactly_the_byte_limit() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-bytes", "10"])
        .success();
    env.publish("q", r#""abcd""#); // 6 bytes
    env.publish("q", "1234"); // 10 in all
    env.run(&["publish", "q", "1"]).code(75);
    env.run(&["publish", "q", r#""this body is longer than ten""#])
        .code(65);
    assert_eq!(peek(&env, "q", "ready").len(), 2);
}

#[test]
fn drop_oldest_makes_room_and_records_why() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "q",
        "--max-length",
        "3",
        "--on-full",
        "drop-oldest",
    ])
    .success();
    let ids = publish_many(&env, "q", 3);
    let newer = publish_many(&env, "q", 2);
    let ready: Vec<i64> = peek(&env, "q", "ready")
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ready, [ids[2], newer[0], newer[1]]);
    let dead = peek(&env, "q", "dead");
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|m| m["dead_reason"] == "dropped"));
    // Leased messages are never dropped: with none ready, it is refused.
    env.consume("q", &["-n", "3"]);
    env.run(&["publish", "q", "9"]).code(75);
}

#[test]
fn drop_oldest_by_bytes() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "q",
        "--max-bytes",
        "10",
        "--on-full",
        "drop-oldest",
    ])
    .success();
    let a = env.publish("q", "1234");
    let b = env.publish("q", "5678");
    let c = env.publish("q", "123456");
    let ready: Vec<i64> = peek(&env, "q", "ready")
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ready, [b, c]);
    assert_eq!(peek(&env, "q", "dead")[0]["id"], a);
}

#[test]
fn a_topic_with_one_full_subscriber_publishes_nothing() {
    let env = Env::new();
    env.run(&["subscribe", "events", "roomy"]).success();
    env.run(&["subscribe", "events", "tight"]).success();
    env.run(&["queue", "set", "tight", "--max-length", "1"])
        .success();
    env.publish("events", "1");
    env.run(&["publish", "events", "2"]).code(75);
    assert_eq!(peek(&env, "roomy", "ready").len(), 1);
    assert_eq!(peek(&env, "tight", "ready").len(), 1);
}

// ---------------------------------------------------------------------------
// Dead reasons and failure traces
// ---------------------------------------------------------------------------

#[test]
fn nack_dead_rejects_and_replay_selects_by_reason() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    let poison = env.publish("q", r#""poison""#);
    let tired = env.publish("q", r#""tired""#);
    let m = env.consume_one("q", &[]);
    assert_eq!(m["id"], poison);
    env.run(&["nack", receipt(&m), "--dead", "--reason", "cannot parse"])
        .success();
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m), "--reason", "timeout"])
        .success();
    let dead: BTreeMap<i64, Value> = peek(&env, "q", "dead")
        .into_iter()
        .map(|m| (m["id"].as_i64().unwrap(), m))
        .collect();
    assert_eq!(dead[&poison]["dead_reason"], "rejected");
    assert_eq!(dead[&poison]["last_error"], "cannot parse");
    assert_eq!(dead[&tired]["dead_reason"], "max_attempts");
    assert_eq!(dead[&tired]["last_error"], "timeout");

    let run = env.run(&["replay", "q", "--dead", "--dead-reason", "rejected"]);
    run.success();
    assert_eq!(run.stdout.trim(), "1");
    assert_eq!(peek(&env, "q", "ready")[0]["id"], poison);
    // `--dead` with a delay or backoff makes no sense.
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m), "--dead", "--delay", "1s"])
        .code(2);
    env.run(&["nack", receipt(&m), "--dead", "--backoff"])
        .code(2);
}

#[test]
fn work_records_the_handlers_exit_and_the_tail_of_its_stderr() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    env.publish("q", "1");
    // 6,000 bytes of noise, then the line that matters.
    let handler = script(
        &env,
        "fail.sh",
        "head -c 6000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'disk on fire' >&2; exit 7",
    );
    let run = env.run(&["work", "q", "--until-empty", "--", &handler]);
    run.code(4).stderr_has("disk on fire");
    let dead = peek(&env, "q", "dead");
    let error = dead[0]["last_error"].as_str().expect("last_error");
    assert!(error.contains("disk on fire"), "{error}");
    assert!(
        error.contains("exit status 7") || error.contains("exit 7"),
        "{error}"
    );
    assert!(error.len() <= 4096 + 100, "{} bytes kept", error.len());
    assert_eq!(dead[0]["dead_reason"], "max_attempts");
}

#[test]
fn a_nul_in_a_handlers_stderr_is_kept_as_u_fffd_and_the_run_goes_on() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    env.publish("q", "1");
    env.publish("q", "2");
    // PostgreSQL's text cannot hold a NUL: the failure must still be
    // recorded there, and the other message handled.
    let handler = script(
        &env,
        "nul.sh",
        "if [ \"$(cat)\" = 1 ]; then printf 'x\\000y' >&2; exit 1; fi",
    );
    env.run(&["work", "q", "--until-empty", "--", &handler])
        .code(4);
    let dead = peek(&env, "q", "dead");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = dead[0]["last_error"].as_str().expect("last_error");
    assert!(error.ends_with("x\u{FFFD}y"), "{error:?}");
    assert_eq!(peek(&env, "q", "acked").len(), 1);
}

#[test]
fn replay_into_a_full_queue_is_refused_whole() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "q",
        "--max-length",
        "2",
        "--max-attempts",
        "1",
    ])
    .success();
    for _ in 0..2 {
        env.publish("q", "1");
        let m = env.consume_one("q", &[]);
        env.run(&["nack", receipt(&m)]).success();
    }
    env.publish("q", "2");
    // Two dead, one ready: replaying both would make three.
    env.run(&["replay", "q", "--dead"])
        .code(75)
        .stderr_has("full");
    assert_eq!(peek(&env, "q", "dead").len(), 2, "nothing replayed");
    env.run(&[
        "replay",
        "q",
        "--dead",
        "--id",
        &peek(&env, "q", "dead")[0]["id"].to_string(),
    ])
    .success();
    assert_eq!(peek(&env, "q", "ready").len(), 2);
}

#[test]
fn publish_stream_stops_at_a_full_queue_and_says_how_many_went_in() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-length", "3"])
        .success();
    let run = env.run_with_input(&["publish", "q", "--stream"], "1\n2\n3\n4\n5\n");
    run.code(75).stderr_has("full");
    assert_eq!(peek(&env, "q", "ready").len(), 3);
}

#[test]
fn stats_count_dropped_messages_and_show_a_pause() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "q",
        "--max-length",
        "1",
        "--on-full",
        "drop-oldest",
    ])
    .success();
    env.publish("q", "1");
    env.publish("q", "2");
    env.run(&["queue", "pause", "q"]).success();
    let text = env.run(&["stats", "--format", "prometheus"]).stdout;
    assert!(text.contains("spool_queue_paused{queue=\"q\"} 1"), "{text}");
    assert!(
        text.contains("spool_dropped_total{queue=\"q\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("spool_expired_total{queue=\"q\"} 0"),
        "{text}"
    );
    let stats: Value = serde_json::from_str(&env.run(&["stats", "--json"]).stdout).unwrap();
    assert_eq!(stats["queues"][0]["dropped_total"], 1);
    assert_eq!(stats["queues"][0]["paused"], true);
}

#[test]
fn a_topic_takes_no_flow_settings() {
    let env = Env::new();
    env.run(&["subscribe", "events", "audit"]).success();
    env.run(&["queue", "pause", "events"])
        .code(2)
        .stderr_has("audit");
    env.run(&["queue", "set", "events", "--rate", "1/1s"])
        .code(2);
    assert_eq!(show(&env, "audit")["paused"], false);
}

#[test]
fn the_stats_table_names_the_flow_settings_in_force() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "q",
        "--rate",
        "5/1s",
        "--max-in-flight",
        "2",
    ])
    .success();
    env.run(&["queue", "create", "plain"]).success();
    env.run(&["queue", "pause", "q"]).success();
    let out = env
        .cmd()
        .env("SPOOL_TEST_TERMINAL", "stdout")
        .args(["stats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("queue q: PAUSED, max_in_flight 2, rate 5/1s"),
        "{text}"
    );
    assert!(!text.contains("queue plain:"), "{text}");
}

#[test]
fn a_consumer_waiting_on_a_full_cap_wakes_when_a_lease_ends() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-in-flight", "1"])
        .success();
    publish_many(&env, "q", 2);
    let first = env.consume_one("q", &[]);
    let got = woken_by(&env, "q", || {
        env.run(&["ack", receipt(&first)]).success();
    });
    assert!(got.contains(r#""n":1"#));
}

#[test]
fn an_expired_message_takes_up_no_room() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-length", "1", "--ttl", "2s"])
        .success();
    // Long enough that a loaded machine cannot expire it before the refused
    // publish (300 ms did on PostgreSQL at load 10).
    env.publish("q", "1");
    env.run(&["publish", "q", "2"]).code(75);
    std::thread::sleep(Duration::from_millis(2100));
    // Its own TTL, so that a slow machine cannot expire it before the peek.
    env.run(&["publish", "q", "3", "--ttl", "1h"]).success();
    assert_eq!(peek(&env, "q", "dead")[0]["dead_reason"], "expired");
    assert_eq!(peek(&env, "q", "ready").len(), 1);
}

#[test]
fn queue_show_names_the_message_that_died_last_and_why() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    assert!(show(&env, "q")["last_dead"].is_null());
    env.publish("q", "1");
    let second = env.publish("q", "2");
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m), "--dead", "--reason", "bad input"])
        .success();
    std::thread::sleep(Duration::from_millis(20));
    let m = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&m), "--reason", "HTTP 503\nretry later"])
        .success();
    let last = &show(&env, "q")["last_dead"];
    assert_eq!(last["id"], second);
    assert_eq!(last["dead_reason"], "max_attempts");
    assert_eq!(last["last_error"], "HTTP 503\nretry later");
    let table = env
        .cmd()
        .env("SPOOL_TEST_TERMINAL", "stdout")
        .args(["queue", "show", "q"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("max_attempts: retry later"), "{text}");
}
