//! Pipelines: `publish --ack` and `work --emit`, where the messages a stage
//! emits and the ack of the message it handled commit together or not at
//! all, through the binary on either backend.

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// `peek --json` of every message of `queue` in the given states.
fn peek(env: &Env, queue: &str, state: &str) -> Vec<Value> {
    let run = env.run(&["peek", queue, "--state", state, "-n", "1000", "--json"]);
    if run.code == 3 {
        return Vec::new(); // no such queue: nothing was published to it
    }
    run.success();
    run.json_lines()
}

/// Every message `queue` holds, in any state.
fn all(env: &Env, queue: &str) -> Vec<Value> {
    peek(env, queue, "ready,delayed,leased,acked,dead")
}

/// The state of message `id` of `queue`, as peek shows it.
fn state(env: &Env, queue: &str, id: i64) -> String {
    let found: Vec<Value> = all(env, queue)
        .into_iter()
        .filter(|m| m["id"] == id)
        .collect();
    assert_eq!(found.len(), 1, "message {id} of {queue}: {found:?}");
    found[0]["state"].as_str().unwrap().to_owned()
}

/// A shell handler script in the test's folder.
fn script(env: &Env, name: &str, body: &str) -> String {
    let path = env.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Publishes `body` to `queue` and leases it: (id, receipt).
fn leased(env: &Env, queue: &str, body: &str, extra: &[&str]) -> (i64, String) {
    let mut args = vec!["publish", queue, body];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    run.success();
    let id: i64 = run.stdout.trim().parse().unwrap();
    let msg = env.consume_one(queue, &[]);
    assert_eq!(msg["id"], id);
    (id, receipt(&msg).to_owned())
}

fn header<'v>(msg: &'v Value, name: &str) -> &'v Value {
    &msg["headers"][name]
}

// ---------------------------------------------------------------------------
// publish --ack

#[test]
fn publish_ack_publishes_and_acks_in_one_go_with_the_cause_named() {
    let env = Env::new();
    let (id, r) = leased(&env, "orders", r#"{"order":1}"#, &["--group", "cust-7"]);
    let run = env.run_with_input(
        &[
            "publish",
            "payments",
            "--ack",
            &r,
            "--header",
            "trace=abc",
            "--header",
            "spool-cause-id=forged",
        ],
        "{\"paid\":1}\n\n{\"paid\":2}\n",
    );
    run.success();
    let ids = run.ids();
    assert_eq!(ids.len(), 2, "{run:?}");
    assert_eq!(state(&env, "orders", id), "acked");
    let out = all(&env, "payments");
    assert_eq!(out.len(), 2);
    for msg in &out {
        assert_eq!(header(msg, "spool-cause-queue"), "orders");
        assert_eq!(
            header(msg, "spool-cause-id"),
            &Value::from(id.to_string()),
            "replaces a user header of that name"
        );
        assert_eq!(header(msg, "trace"), "abc", "user headers stay");
        assert_eq!(msg["group"], "cust-7", "the cause's group");
    }

    // The same receipt again: its delivery is finished, nothing more lands.
    let again = env.run(&["publish", "payments", "--ack", &r, r#"{"paid":3}"#]);
    again.code(3).stderr_has("Nothing was published");
    assert_eq!(all(&env, "payments").len(), 2);

    // --group names another group.
    let (_, r2) = leased(&env, "orders", r#"{"order":2}"#, &["--group", "cust-8"]);
    let run = env.run(&["publish", "payments", "--ack", &r2, "--group", "mine", "{}"]);
    run.success();
    let third = peek(&env, "payments", "ready")
        .into_iter()
        .find(|m| m["id"] == run.ids()[0])
        .unwrap();
    assert_eq!(third["group"], "mine");
}

#[test]
fn publish_ack_fans_out_to_a_topic_with_every_publish_flag() {
    let env = Env::new();
    env.run(&["subscribe", "payments", "shipping"]).success();
    env.run(&["subscribe", "payments", "audit"]).success();
    let (id, r) = leased(&env, "orders", r#"{"order":1}"#, &[]);
    let run = env.run_with_input(
        &[
            "publish",
            "payments",
            "--ack",
            &r,
            "--delay",
            "1h",
            "--priority",
            "5",
            "--group-from",
            "/order",
        ],
        "{\"order\":1,\"paid\":950}\n",
    );
    run.success();
    let [sent] = run.ids()[..] else {
        panic!("one id: {run:?}")
    };
    assert_eq!(state(&env, "orders", id), "acked");
    for queue in ["shipping", "audit"] {
        let got = all(&env, queue);
        assert_eq!(got.len(), 1, "{queue}: {got:?}");
        let msg = &got[0];
        assert_eq!(msg["id"], sent, "the same message in every subscriber");
        assert_eq!(msg["state"], "delayed");
        assert_eq!(msg["priority"], 5);
        assert_eq!(msg["group"], "1", "--group-from names the group");
        assert_eq!(header(msg, "spool-cause-queue"), "orders");
        assert_eq!(header(msg, "spool-cause-id"), &Value::from(id.to_string()));
    }
}

#[test]
fn publish_ack_with_a_key_that_deduplicates_still_acks() {
    let env = Env::new();
    let first = env.run(&["publish", "payments", "--key", "order-1", r#"{"paid":1}"#]);
    first.success();
    let (id, r) = leased(&env, "orders", r#"{"order":1}"#, &[]);
    let run = env.run(&[
        "publish",
        "payments",
        "--key",
        "order-1",
        "--ack",
        &r,
        r#"{"paid":1}"#,
    ]);
    run.success();
    assert_eq!(run.ids(), first.ids(), "the existing id");
    assert_eq!(all(&env, "payments").len(), 1);
    assert_eq!(state(&env, "orders", id), "acked");
}

#[test]
fn publish_ack_with_a_refused_receipt_publishes_nothing() {
    let env = Env::new();
    let (id, r) = leased(&env, "orders", r#"{"order":1}"#, &[]);
    // Not a receipt at all, one spool never issued, one whose lease is not
    // this one: exit 3, nothing published, the delivery untouched.
    let (head, _) = r.rsplit_once('_').unwrap();
    let forged = format!("{head}_0000000000000001");
    for bad in ["nonsense", "1_999999_0000000000000001", forged.as_str()] {
        let run = env.run(&["publish", "payments", "--ack", bad, r#"{"paid":1}"#]);
        run.code(3).stderr_has("Nothing was published");
        assert!(all(&env, "payments").is_empty(), "{bad}: {run:?}");
        assert_eq!(state(&env, "orders", id), "leased");
    }

    // A lease that ran out.
    let (id2, r2) = {
        env.publish("short", r#"{"order":2}"#);
        let msg = env.consume_one("short", &["--visibility", "300ms"]);
        (msg["id"].as_i64().unwrap(), receipt(&msg).to_owned())
    };
    std::thread::sleep(Duration::from_millis(600));
    let run = env.run(&["publish", "payments", "--ack", &r2, r#"{"paid":2}"#]);
    run.code(3).stderr_has("lease has ended");
    assert!(all(&env, "payments").is_empty());
    assert_eq!(
        env.consume_one("short", &[])["id"],
        id2,
        "the message is back"
    );
}

#[test]
fn publish_ack_with_bad_or_empty_input_acks_nothing() {
    let env = Env::new();
    let (id, r) = leased(&env, "orders", r#"{"order":1}"#, &[]);
    let bad = env.run_with_input(
        &["publish", "payments", "--ack", &r],
        "{\"paid\":1}\n{\"paid\":\n",
    );
    bad.code(65).stderr_has("line 2");
    let empty = env.run_with_input(&["publish", "payments", "--ack", &r], "\n\n");
    empty.code(65).stderr_has("empty input acks nothing");
    let schema = env.path("schema.json");
    std::fs::write(&schema, r#"{"type":"object","required":["paid"]}"#).unwrap();
    env.run(&[
        "queue",
        "create",
        "strict",
        "--schema",
        schema.to_str().unwrap(),
    ])
    .success();
    let invalid = env.run(&["publish", "strict", "--ack", &r, r#"{"nope":1}"#]);
    invalid.code(65);
    let stream = env.run(&["publish", "payments", "--ack", &r, "--stream"]);
    stream.code(2);
    assert!(all(&env, "payments").is_empty());
    assert!(all(&env, "strict").is_empty());
    assert_eq!(state(&env, "orders", id), "leased");
    // The lease still holds: a plain ack takes it.
    env.run(&["ack", &r]).success();
    assert_eq!(state(&env, "orders", id), "acked");
}

#[test]
fn publish_ack_killed_during_a_large_input_leaves_both_or_neither() {
    let env = Env::new();
    let (id, r) = leased(&env, "orders", r#"{"order":1}"#, &[]);
    // More than publish holds in memory (16 MiB): it writes as it reads, in
    // its one transaction, and is killed before the input ends.
    let pad = "x".repeat(1000);
    let line = format!("{{\"pad\":\"{pad}\"}}\n");
    let mut child = env
        .cmd()
        .args(["publish", "payments", "--ack", &r])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let chunk = line.repeat(1000);
    for _ in 0..18 {
        stdin.write_all(chunk.as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still reading its input, in its transaction"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdin);
    assert!(all(&env, "payments").is_empty(), "nothing published");
    assert_eq!(state(&env, "orders", id), "leased", "nothing acked");

    // The same input to its end: both.
    let input = line.repeat(18_000);
    let run = env.run_with_input(&["publish", "payments", "--ack", &r], input);
    run.success();
    assert_eq!(run.ids().len(), 18_000);
    assert_eq!(state(&env, "orders", id), "acked");
    let stats = env.run(&["stats", "--json"]);
    stats.success();
    let stats: Value = serde_json::from_str(&stats.stdout).unwrap();
    let payments = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "payments")
        .unwrap()
        .clone();
    assert_eq!(payments["ready"], 18_000);
}

// ---------------------------------------------------------------------------
// work --emit

fn work(env: &Env, args: &[&str]) -> Run {
    let mut all = vec!["work"];
    all.extend_from_slice(args);
    Run::from(
        env.cmd()
            .args(&all)
            .current_dir(env.dir.path())
            .output()
            .unwrap(),
    )
}

#[test]
fn work_emit_publishes_each_stdout_line_with_the_ack() {
    let env = Env::new();
    let a = env.run(&[
        "publish",
        "orders",
        "--group",
        "cust-1",
        "--header",
        "h=1",
        r#"{"n":1}"#,
    ]);
    a.success();
    let a = a.ids()[0];
    let b = env.publish("orders", r#"{"n":2}"#);
    let handler = script(
        &env,
        "h.sh",
        r#"body=$(cat); echo "{\"from\":$body}"; echo; echo "{\"id\":$SPOOL_ID}""#,
    );
    let run = work(
        &env,
        &["orders", "--until-empty", "--emit", "next", "--", &handler],
    );
    run.code(0);
    assert_eq!(state(&env, "orders", a), "acked");
    assert_eq!(state(&env, "orders", b), "acked");
    let out = all(&env, "next");
    assert_eq!(
        out.len(),
        4,
        "two lines each, the blank one skipped: {out:?}"
    );
    for msg in &out {
        let cause = header(msg, "spool-cause-id").as_str().unwrap();
        assert_eq!(header(msg, "spool-cause-queue"), "orders");
        let cause: i64 = cause.parse().unwrap();
        assert!(cause == a || cause == b);
        let group = if cause == a {
            Value::from("cust-1")
        } else {
            Value::Null
        };
        assert_eq!(msg["group"], group, "the cause's group");
        assert!(msg["headers"].get("h").is_none(), "not the cause's headers");
    }
    let bodies: Vec<String> = out.iter().map(|m| m["body"].to_string()).collect();
    assert!(
        bodies.contains(&r#"{"from":{"n":1}}"#.to_owned()),
        "{bodies:?}"
    );
    assert!(bodies.contains(&format!(r#"{{"id":{b}}}"#)), "{bodies:?}");

    // --emit-raw: each line is text.
    env.publish("texts", r#""x""#);
    let say = script(&env, "say.sh", "echo 'plain words'");
    work(
        &env,
        &[
            "texts",
            "--until-empty",
            "--emit",
            "said",
            "--emit-raw",
            "--",
            &say,
        ],
    )
    .code(0);
    let said = all(&env, "said");
    assert_eq!(said.len(), 1);
    assert_eq!(said[0]["body"], "plain words");

    // Without --emit, stdout passes through as before.
    env.publish("quiet", "{}");
    let run = work(&env, &["quiet", "--until-empty", "--", &say]);
    run.code(0);
    assert!(run.stdout.contains("plain words"), "{run:?}");
    assert!(all(&env, "said").len() == 1);
}

#[test]
fn work_emit_publishes_a_last_line_without_its_newline() {
    let env = Env::new();
    env.publish("s", r#"{"a":1}"#);
    let run = work(
        &env,
        &[
            "s",
            "--until-empty",
            "--emit",
            "d",
            "--",
            "printf",
            r#"{"c":1}\n{"c":2}"#,
        ],
    );
    run.success();
    let emitted = env.consume("d", &["-n", "10"]);
    let bodies: Vec<&Value> = emitted.iter().map(|m| &m["body"]).collect();
    assert_eq!(
        bodies,
        [&serde_json::json!({"c": 1}), &serde_json::json!({"c": 2})]
    );
}

#[test]
fn work_emit_with_a_failing_handler_emits_nothing_and_nacks() {
    let env = Env::new();
    let id = env.publish("orders", r#"{"n":1}"#);
    let fail = script(
        &env,
        "fail.sh",
        r#"echo '{"half":1}'; echo broke >&2; exit 3"#,
    );
    let run = work(
        &env,
        &["orders", "--until-empty", "--emit", "next", "--", &fail],
    );
    run.code(4);
    assert!(all(&env, "next").is_empty());
    let held = all(&env, "orders");
    assert_eq!(held[0]["id"], id);
    assert_eq!(held[0]["state"], "delayed", "nacked with backoff");
    let error = held[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("exit status 3") && error.contains("broke"),
        "{error}"
    );
}

#[test]
fn work_emit_with_an_invalid_line_fails_the_delivery_and_says_why() {
    let env = Env::new();
    let id = env.publish("orders", r#"{"n":1}"#);
    let bad = script(&env, "bad.sh", r#"echo '{"good":1}'; echo 'not json'"#);
    let run = work(
        &env,
        &["orders", "--until-empty", "--emit", "next", "--", &bad],
    );
    run.code(4).stderr_has("line 2 of its stdout");
    assert!(all(&env, "next").is_empty(), "not even the valid line");
    let held = all(&env, "orders");
    assert_eq!(held[0]["id"], id);
    assert_eq!(held[0]["state"], "delayed");
    let error = held[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("line 2 of its stdout: invalid JSON"),
        "{error}"
    );
}

#[test]
fn work_emit_refused_by_the_target_fails_only_that_delivery() {
    let env = Env::new();
    let schema = env.path("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","required":["n"],"properties":{"n":{"type":"integer"}}}"#,
    )
    .unwrap();
    env.run(&[
        "queue",
        "create",
        "next",
        "--schema",
        schema.to_str().unwrap(),
    ])
    .success();
    let good = env.publish("orders", r#"{"n":1}"#);
    let bad = env.publish("orders", r#"{"n":"one"}"#);
    let echo = script(&env, "echo.sh", "cat; echo");
    // Both in one round: the refusal of one does not hold back the other.
    let run = work(
        &env,
        &[
            "orders",
            "--until-empty",
            "--concurrency",
            "2",
            "--emit",
            "next",
            "--",
            &echo,
        ],
    );
    run.code(4);
    let out = all(&env, "next");
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["body"]["n"], 1);
    assert_eq!(state(&env, "orders", good), "acked");
    assert_eq!(state(&env, "orders", bad), "delayed");
    let error = all(&env, "orders")
        .into_iter()
        .find(|m| m["id"] == bad)
        .unwrap()["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("not published to `next`"), "{error}");

    // A full target, and a topic without subscribers.
    env.run(&["queue", "create", "small", "--max-length", "1"])
        .success();
    env.publish("small", "{}");
    env.run(&["queue", "create", "lonely-input"]).success();
    let id = env.publish("full-input", r#"{"n":2}"#);
    work(
        &env,
        &[
            "full-input",
            "--until-empty",
            "--emit",
            "small",
            "--",
            &echo,
        ],
    )
    .code(4);
    assert_eq!(all(&env, "small").len(), 1);
    let held = all(&env, "full-input");
    assert_eq!(held[0]["id"], id);
    assert_eq!(held[0]["state"], "delayed");
    assert!(
        held[0]["last_error"].as_str().unwrap().contains("is full"),
        "{held:?}"
    );

    env.run(&["subscribe", "events", "audit"]).success();
    env.run(&["unsubscribe", "events", "audit"]).success();
    let id = env.publish("lonely-input", r#"{"n":3}"#);
    work(
        &env,
        &[
            "lonely-input",
            "--until-empty",
            "--emit",
            "events",
            "--",
            &echo,
        ],
    )
    .code(4);
    assert!(all(&env, "audit").is_empty());
    let held = all(&env, "lonely-input");
    assert_eq!(held[0]["id"], id);
    assert_eq!(held[0]["state"], "delayed");
    assert!(
        held[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("no subscribers"),
        "{held:?}"
    );
}

#[test]
fn work_emit_after_a_lost_lease_emits_nothing() {
    let env = Env::new();
    let id = env.publish("orders", r#"{"n":1}"#);
    let started = env.path("started");
    let handler = script(
        &env,
        "slow.sh",
        &format!(
            r#"touch '{}'; sleep 1.5; echo '{{"late":1}}'"#,
            started.display()
        ),
    );
    let worker: Child = env
        .cmd()
        .args([
            "work",
            "orders",
            "--max",
            "1",
            "--visibility",
            "1s",
            "--emit",
            "next",
            "--",
            &handler,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_file(&started, 20), "the handler started");
    let pid = worker.id().to_string();
    // Stopped, spool cannot renew the lease; its handler ends meanwhile.
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    std::thread::sleep(Duration::from_millis(2500));
    // The lease ran out: another consumer has the message now.
    let again = env.consume_one("orders", &[]);
    assert_eq!(again["id"], id);
    assert_eq!(again["attempt"], 2);
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    let out = worker.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(all(&env, "next").is_empty(), "a lost lease emits nothing");
    assert_eq!(state(&env, "orders", id), "leased", "the other consumer's");
}
