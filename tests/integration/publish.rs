//! `spool publish`: input forms, all-or-nothing, bad input, keys, delays.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;

#[test]
fn argument_publishes_one_message_and_prints_its_id() {
    let env = Env::new();
    let run = env.run(&["publish", "orders", r#"{"id": 1}"#]);
    run.success();
    assert_eq!(run.ids(), vec![1]);
    let msg = env.consume_one("orders", &[]);
    assert_eq!(msg["body"], serde_json::json!({"id": 1}));
}

#[test]
fn first_write_creates_folder_and_file_with_mode_0600() {
    if sqlite_only("the file's folder and mode") {
        return;
    }
    let env = Env::new();
    let db = env.path("deep/er/spool.db");
    env.run(&["--db", db.to_str().unwrap(), "publish", "q", "1"])
        .success();
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn default_database_lives_under_xdg_data_home() {
    if sqlite_only("the default database is a file under XDG_DATA_HOME") {
        return;
    }
    let env = Env::new();
    let data = env.path("data");
    let run = env
        .cmd()
        .env_remove("SPOOL_DB")
        .env("XDG_DATA_HOME", &data)
        .args(["publish", "q", "1"])
        .output()
        .unwrap();
    assert!(run.status.success());
    assert!(data.join("spool/spool.db").exists());
}

#[test]
fn ndjson_publishes_each_line_and_skips_blank_lines() {
    let env = Env::new();
    let run = env.run_with_input(&["publish", "q"], "{\"a\":1}\n\n  \n[2]\r\n\"three\"\n");
    run.success();
    assert_eq!(run.ids(), vec![1, 2, 3]);
    let bodies = env.run(&["consume", "q", "-n", "10", "--body"]);
    assert_eq!(bodies.stdout, "{\"a\":1}\n[2]\n\"three\"\n");
}

#[test]
fn invalid_line_two_of_three_publishes_nothing() {
    let env = Env::new();
    let run = env.run_with_input(&["publish", "q"], "{\"a\":1}\n{nope}\n{\"c\":3}\n");
    run.code(65).stderr_has("line 2");
    assert!(run.stdout.is_empty());
    assert!(env.consume("q", &[]).is_empty(), "nothing may be published");
}

#[test]
fn invalid_utf8_is_bad_input() {
    let env = Env::new();
    let run = env.run_with_input(&["publish", "q"], b"\"ok\"\n\"\xff\xfe\"\n");
    run.code(65).stderr_has("line 2").stderr_has("UTF-8");
    assert!(env.consume("q", &[]).is_empty());
    let raw = env.run_with_input(&["publish", "q", "--raw"], b"\xc3\x28\n");
    raw.code(65).stderr_has("UTF-8");
}

#[test]
fn body_over_max_size_is_bad_input() {
    let env = Env::new();
    env.run(&["queue", "create", "small", "--max-size", "16"])
        .success();
    env.run(&["publish", "small", "\"0123456789abcd\""])
        .success();
    let run = env.run_with_input(&["publish", "small"], "1\n\"0123456789abcdef\"\n");
    run.code(65).stderr_has("line 2").stderr_has("max_size");
    let arg = env.run(&["publish", "small", "\"0123456789abcdef\""]);
    arg.code(65).stderr_has(
        "the BODY argument: body of 18 bytes is larger than the max_size of `small`, 16. Raise it with `spool queue set small --max-size SIZE`",
    );
    // A topic's limit is its smallest subscriber's, checked in the
    // publish's transaction as well, and named.
    env.run(&["subscribe", "t", "big"]).success();
    env.run(&["subscribe", "t", "small"]).success();
    env.run(&["publish", "t", "\"0123456789abcdef\""])
        .code(65)
        .stderr_has(
            "the BODY argument: body of 18 bytes is larger than the max_size of `small`, 16. Raise it with `spool queue set small --max-size SIZE`",
        );
    env.run_with_input(&["publish", "t"], "\"0123456789abcdef\"\n")
        .code(65)
        .stderr_has("line 1: body is larger than the max_size of `small`, 16.");
    // A schedule's body is checked against the same limit.
    env.run(&[
        "schedule",
        "add",
        "s",
        "--every",
        "1h",
        "--to",
        "t",
        "\"0123456789abcdef\"",
    ])
    .code(65)
    .stderr_has("larger than the max_size of `small`, 16.");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 1);
}

#[test]
fn a_huge_line_is_refused_without_reading_it_all() {
    let env = Env::new();
    let mut input = vec![b'"'];
    input.extend(std::iter::repeat_n(b'x', 3 << 20));
    input.extend_from_slice(b"\"\n");
    env.run_with_input(&["publish", "q"], input)
        .code(65)
        .stderr_has("line 1");
}

#[test]
fn single_keeps_a_pretty_document_verbatim_and_consume_prints_one_line() {
    let env = Env::new();
    let doc = "{\n  \"name\": \"a b\",\n  \"n\": 1.50\n}\n";
    env.run_with_input(&["publish", "q", "--single"], doc)
        .success();
    let line = env.run(&["consume", "q"]);
    assert_eq!(line.stdout.lines().count(), 1);
    let msg = &line.json_lines()[0];
    assert_eq!(msg["body"]["name"], "a b");
    assert!(
        line.stdout.contains(r#""body":{"name":"a b","n":1.50}"#),
        "{}",
        line.stdout
    );
    let env2 = Env::new();
    env2.run_with_input(&["publish", "q", "--single"], doc)
        .success();
    let body = env2.run(&["consume", "q", "--body"]);
    assert_eq!(body.stdout, format!("{}\n", doc.trim_end()));
}

#[test]
fn body_flag_returns_bytes_exactly_as_published() {
    let env = Env::new();
    let body = r#"{"z":1,  "a":[1.0, 2e10, "\u00e9"], "big": 123456789012345678901234567890}"#;
    env.run(&["publish", "q", body]).success();
    let out = env.run(&["consume", "q", "--body"]);
    assert_eq!(out.raw_stdout, format!("{body}\n").into_bytes());
}

#[test]
fn raw_bodies_are_text_and_come_back_as_strings() {
    let env = Env::new();
    env.run_with_input(&["publish", "logs", "--raw"], "plain text {not json}\r\n\n")
        .success();
    let msgs = env.consume("logs", &["-n", "5"]);
    assert_eq!(msgs.len(), 2, "an empty raw line is an empty message");
    assert_eq!(msgs[0]["body"], "plain text {not json}");
    assert_eq!(msgs[1]["body"], "");
}

#[test]
fn key_deduplicates_and_answers_the_existing_id() {
    let env = Env::new();
    let first = env.run(&["publish", "q", "--key", "order-7", "1"]);
    let again = env.run(&["publish", "q", "--key", "order-7", "2"]);
    assert_eq!(first.ids(), again.ids());
    let run = env.run_with_input(
        &["publish", "q", "--key-from", "/id"],
        "{\"id\":5}\n{\"id\":\"5\"}\n{\"id\":6}\n",
    );
    let ids = run.ids();
    assert_eq!(ids[0], ids[1], "a number and its text are the same key");
    assert_ne!(ids[1], ids[2]);
    assert_eq!(env.consume("q", &["-n", "10"]).len(), 3);
}

#[test]
fn key_from_pointing_at_nothing_is_bad_input() {
    let env = Env::new();
    let run = env.run_with_input(
        &["publish", "q", "--key-from", "/id"],
        "{\"id\":1}\n{\"x\":2}\n",
    );
    run.code(65).stderr_has("line 2").stderr_has("/id");
    assert!(env.consume("q", &[]).is_empty());
    env.run(&["publish", "q", "--key-from", "id", "{}"]).code(2);
    env.run(&["publish", "q", "--raw", "--key-from", "/id", "x"])
        .code(2);
}

#[test]
fn empty_input_publishes_nothing_and_succeeds() {
    let env = Env::new();
    let run = env.run_with_input(&["publish", "q"], "");
    run.success();
    assert!(run.stdout.is_empty());
}

#[test]
fn more_than_ten_ids_on_a_terminal_become_a_summary() {
    let env = Env::new();
    let input: String = (0..12).map(|i| format!("{i}\n")).collect();
    let piped = env.run_with_input(&["publish", "q"], &input);
    assert_eq!(piped.ids().len(), 12);
    let mut cmd = env.cmd();
    cmd.env("SPOOL_TEST_TERMINAL", "stdout");
    let child = cmd
        .args(["publish", "q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .as_ref()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("12 messages"), "{text}");
    let quiet = env.run_with_input(&["publish", "q", "-q"], &input);
    assert!(quiet.stdout.is_empty());
    // Lines a key deduplicated are not counted as new messages.
    let mut keyed = env
        .cmd()
        .env("SPOOL_TEST_TERMINAL", "stdout")
        .args(["publish", "k", "--key", "same"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = keyed.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let text = String::from_utf8(keyed.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        text.starts_with("published 12 lines to k: 1 distinct message (ids "),
        "{text}"
    );
    assert!(
        text.contains("), the other 11 lines had a key already used"),
        "{text}"
    );
}

#[test]
fn stream_commits_lines_before_a_bad_one() {
    let env = Env::new();
    let run = env.run_with_input(&["publish", "q", "--stream"], "1\n2\n{bad\n4\n");
    run.code(65).stderr_has("line 3").stderr_has("2 message");
    assert_eq!(run.ids(), vec![1, 2]);
    assert_eq!(env.consume("q", &["-n", "10"]).len(), 2);
}

#[test]
fn stream_commits_while_input_is_still_open() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["publish", "q", "--stream"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(b"{\"n\":1}\n").unwrap();
        stdin.flush().unwrap();
    }
    let msg = env.consume_one("q", &["--wait", "5s"]);
    assert_eq!(msg["body"]["n"], 1);
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn delay_and_at_hold_messages_back() {
    let env = Env::new();
    env.run(&["publish", "q", "--delay", "2s", "\"later\""])
        .success();
    env.run(&["publish", "q", "--at", "2100-01-01T00:00:00Z", "\"far\""])
        .success();
    env.run(&["publish", "q", "\"now\""]).success();
    assert_eq!(env.consume_one("q", &[])["body"], "now");
    assert!(env.consume("q", &[]).is_empty());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(env.consume_one("q", &[])["body"], "later");
    assert!(env.consume("q", &[]).is_empty());
}

#[test]
fn priority_orders_delivery_then_ids() {
    let env = Env::new();
    env.run(&["publish", "q", "--priority", "-5", "\"low\""])
        .success();
    env.run(&["publish", "q", "\"a\""]).success();
    env.run(&["publish", "q", "--priority", "10", "\"high\""])
        .success();
    env.run(&["publish", "q", "\"b\""]).success();
    let order: Vec<String> = env
        .consume("q", &["-n", "10"])
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["high", "a", "b", "low"]);
    env.run(&["publish", "q", "--priority", "101", "1"]).code(2);
}

#[test]
fn headers_round_trip() {
    let env = Env::new();
    env.run(&[
        "publish",
        "q",
        "--header",
        "source=shop",
        "--header",
        "trace=a=b",
        "1",
    ])
    .success();
    let msg = env.consume_one("q", &[]);
    assert_eq!(
        msg["headers"],
        serde_json::json!({"source": "shop", "trace": "a=b"})
    );
    env.run(&["publish", "q", "--header", "novalue", "1"])
        .code(2);
}

#[test]
fn hostile_json_is_refused_cleanly() {
    let env = Env::new();
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let run = env.run_with_input(&["publish", "q"], format!("{deep}\n"));
    assert!(run.code == 65 || run.code == 0, "{run:?}");
    assert!(!run.stderr.contains("panicked"));
    env.run_with_input(&["publish", "q"], "\"a\u{0}b\"\n")
        .code(65);
    env.run_with_input(&["publish", "q"], "1 2\n").code(65);
    let big = env.run(&["publish", "q", "123456789012345678901234567890e999"]);
    assert!(!big.stderr.contains("panicked"), "{big:?}");
}

#[test]
fn ids_are_never_reused_after_deletes() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retention", "0"])
        .success();
    let first = env.publish("q", "1");
    let msg = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&msg)]).success();
    let second = env.publish("q", "2");
    assert!(second > first, "{second} must be above {first}");
}

#[test]
fn large_input_shows_progress_on_a_terminal_only() {
    let env = Env::new();
    let input: String = (0..60_000).map(|i| format!("{i}\n")).collect();
    let tty = env
        .cmd()
        .env("SPOOL_TEST_TERMINAL", "stderr")
        .args(["publish", "q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        tty.stdin
            .as_ref()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = tty.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("publishing"), "{stderr:?}");
    // Each draw starts by clearing the line; a bar left standing would be
    // text after the last clear.
    let after_last_clear = stderr
        .rsplit_once("\u{1b}[2K")
        .map(|(_, rest)| without_escapes(rest).trim().to_owned());
    assert_eq!(
        after_last_clear.as_deref(),
        Some(""),
        "the bar is cleared at the end: {stderr:?}"
    );
    let piped = env.run_with_input(&["publish", "q"], &input);
    assert!(
        !piped.stderr.contains("publishing"),
        "no bar when stderr is not a terminal"
    );
    let quiet = env
        .cmd()
        .env("SPOOL_TEST_TERMINAL", "stderr")
        .args(["publish", "q", "-q"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        quiet
            .stdin
            .as_ref()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = quiet.wait_with_output().unwrap();
    assert!(out.stderr.is_empty(), "no bar with --quiet");
}

#[test]
fn a_body_spanning_lines_is_placed_by_line_and_a_bom_is_named() {
    let env = Env::new();
    env.run_with_input(&["publish", "q", "--single"], "{\"a\":\n1}\n{\"a\":2}\n")
        .code(65)
        .stderr_has("stdin: invalid JSON: trailing characters at line 3, column 1");
    env.run_with_input(&["publish", "q"], "{\"a\":1}\n{\"a\" 2}\n")
        .code(65)
        .stderr_has("line 2: invalid JSON: expected `:` at column 6");
    env.run_with_input(&["publish", "q"], "\u{feff}{\"a\":1}\n")
        .code(65)
        .stderr_has("line 1: invalid JSON: the body starts with a byte-order mark (U+FEFF)");
    // Nothing of the refused input was stored.
    env.publish("q", "1");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 1);
}
