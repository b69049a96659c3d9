//! Regression tests for the command-line defects of issue 15: a closed or
//! failing stdout must not take messages nobody saw, message data must not
//! reach a terminal as escape sequences, and smaller input checks.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::common::*;

/// Bytes of each body in the closed-reader tests: large enough that only a
/// handful of lines fit in a pipe's buffer (64 KiB on Linux).
const BIG: usize = 10 * 1024;

/// Lines of `BIG` bytes that could have been written before the reader
/// closed: what fits in the pipe's buffer, what the test's reader took out of
/// it, and one line to spare. Anything above this was never written.
const AT_MOST_WRITTEN: i64 = 12;

/// Publishes `n` messages of about `BIG` bytes to `queue`.
fn publish_big(env: &Env, queue: &str, n: usize) {
    let pad = "x".repeat(BIG);
    let input: String = (0..n)
        .map(|i| format!("{{\"n\":{i},\"pad\":\"{pad}\"}}\n"))
        .collect();
    env.run_with_input(&["publish", queue], input).success();
}

/// Starts spool with `args`, stdout piped; reads one line, then closes the
/// pipe, and waits for spool to end. Returns the line and the run.
fn read_one_then_close(env: &Env, args: &[&str]) -> (String, Run) {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spool starts");
    let line = first_line_then_close(&mut child);
    (
        line,
        Run::from(child.wait_with_output().expect("spool ends")),
    )
}

fn first_line_then_close(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line");
    line
}

/// `stats --json` of one queue.
fn stats_of(env: &Env, queue: &str) -> Value {
    let run = env.run(&["stats", queue]);
    run.success();
    let all: Value = serde_json::from_str(&run.stdout).unwrap();
    all["queues"][0].clone()
}

fn count(q: &Value, field: &str) -> i64 {
    q[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} in {q}"))
}

/// Every message in these states, from `peek --json`.
fn peek_all(env: &Env, queue: &str, state: &str) -> Vec<Value> {
    let run = env.run(&["peek", queue, "--state", state, "-n", "100000", "--json"]);
    run.success();
    run.json_lines()
}

#[test]
fn consume_ack_into_a_closed_reader_acks_only_what_was_written() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retention", "0"])
        .success();
    publish_big(&env, "q", 200);
    let (line, run) = read_one_then_close(&env, &["consume", "q", "-n", "200", "--ack"]);
    run.success();
    let first: Value = serde_json::from_str(&line).unwrap();
    let q = stats_of(&env, "q");
    let (ready, leased) = (count(&q, "ready"), count(&q, "leased"));
    let gone = 200 - ready - leased;
    assert_eq!(leased, 0, "nothing stays leased: {q}");
    assert!(
        (1..=AT_MOST_WRITTEN).contains(&gone),
        "only lines written to the pipe are acked, got {gone} gone: {q}"
    );
    let left = peek_all(&env, "q", "ready");
    assert_eq!(left.len() as i64, ready);
    assert!(
        left.iter().all(|m| m["attempt"] == 0),
        "attempts not counted"
    );
    assert!(
        left.iter().all(|m| m["id"] != first["id"]),
        "the printed one is gone"
    );
}

#[test]
fn consume_into_a_closed_reader_hands_back_what_was_not_written() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    publish_big(&env, "q", 200);
    let (_, run) = read_one_then_close(&env, &["consume", "q", "-n", "200"]);
    run.success();
    let q = stats_of(&env, "q");
    let (ready, leased) = (count(&q, "ready"), count(&q, "leased"));
    assert_eq!(count(&q, "dead"), 0, "{q}");
    assert_eq!(ready + leased, 200, "{q}");
    assert!(
        (1..=AT_MOST_WRITTEN).contains(&leased),
        "only lines written stay leased, got {leased}: {q}"
    );
    let left = peek_all(&env, "q", "ready");
    assert_eq!(left.len() as i64, ready);
    assert!(
        left.iter().all(|m| m["attempt"] == 0),
        "attempts not counted"
    );
    // Even when the leases of the written ones run out, nothing goes dead
    // but what was delivered: the released ones were never an attempt.
    assert!(
        peek_all(&env, "q", "leased")
            .iter()
            .all(|m| m["attempt"] == 1),
        "the written ones are leased once"
    );
}

#[test]
fn consume_follow_into_a_closed_reader_leaves_no_extra_message_leased() {
    let env = Env::new();
    let first = env.publish("q", r#"{"n":1}"#);
    let mut child = env
        .cmd()
        .args(["consume", "q", "--follow", "--ack"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spool starts");
    let line = first_line_then_close(&mut child);
    let got: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(got["id"], first);
    // The reader is gone; the next message is claimed, cannot be written,
    // and must be handed back.
    let second = env.publish("q", r#"{"n":2}"#);
    let run = Run::from(child.wait_with_output().expect("spool ends"));
    run.success();
    let left = peek_all(&env, "q", "all");
    let second_msg = left
        .iter()
        .find(|m| m["id"] == second)
        .unwrap_or_else(|| panic!("message {second} is still there: {left:?}"));
    assert_eq!(second_msg["state"], "ready", "{second_msg}");
    assert_eq!(second_msg["attempt"], 0, "{second_msg}");
}

/// Runs spool with stdout on `/dev/full`, where every write fails.
fn into_full_device(env: &Env, args: &[&str], input: Option<&str>) -> Run {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut cmd = env.cmd();
    cmd.args(args).stdout(full).stderr(Stdio::piped());
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spool starts");
    if let Some(text) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    Run::from(child.wait_with_output().expect("spool ends"))
}

#[test]
fn consume_into_a_full_device_names_stdout_and_returns_the_messages() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retention", "0"])
        .success();
    for i in 0..10 {
        env.publish("q", &format!("{{\"n\":{i}}}"));
    }
    let run = into_full_device(&env, &["consume", "q", "-n", "10", "--ack"], None);
    run.code(74)
        .stderr_has("cannot write to stdout")
        .stderr_has("returned to the queue");
    let left = peek_all(&env, "q", "all");
    assert_eq!(left.len(), 10, "{left:?}");
    assert!(
        left.iter()
            .all(|m| m["state"] == "ready" && m["attempt"] == 0)
    );
}

#[test]
fn publish_into_a_full_device_says_it_published() {
    let env = Env::new();
    let run = into_full_device(&env, &["publish", "q", "1"], None);
    run.code(74)
        .stderr_has("cannot write to stdout")
        .stderr_has("published");
    let left = peek_all(&env, "q", "all");
    assert_eq!(left.len(), 1, "published exactly once: {left:?}");
    let id = left[0]["id"].as_i64().unwrap();
    run.stderr_has(&format!("message {id} was published"))
        .stderr_has("do not retry");

    let run = into_full_device(&env, &["publish", "q"], Some("1\n2\n3\n"));
    run.code(74).stderr_has("3 messages were published");
    assert_eq!(peek_all(&env, "q", "all").len(), 4);
}

/// A key, group and header value that would clear the screen and set the
/// window title if they reached a terminal as they are.
const HOSTILE: &str = "\u{1b}]2;TITLE\u{7}\u{1b}[2J";

/// What a person must see instead: the control characters escaped.
const HOSTILE_SHOWN: &str = "\\u{1b}]2;TITLE\\u{7}\\u{1b}[2J";

fn publish_hostile(env: &Env) -> i64 {
    let header = format!("h={HOSTILE}");
    let run = env.run(&[
        "publish", "q", "--key", HOSTILE, "--group", HOSTILE, "--header", &header, "{}",
    ]);
    run.success();
    run.stdout.trim().parse().unwrap()
}

#[test]
fn peek_table_escapes_control_characters_in_keys() {
    let env = Env::new();
    publish_hostile(&env);
    let run = Run::from(
        env.cmd()
            .env("SPOOL_TEST_TERMINAL", "stdout")
            .env("COLUMNS", "200")
            .args(["peek", "q", "--color", "never"])
            .output()
            .unwrap(),
    );
    run.success();
    assert!(
        !run.stdout.contains(['\u{1b}', '\u{7}']),
        "escape sequences reach the terminal: {:?}",
        run.stdout
    );
    assert!(run.stdout.contains(HOSTILE_SHOWN), "{}", run.stdout);
}

#[test]
fn top_shows_keys_groups_and_headers_escaped() {
    use clap::Parser;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::KeyCode;
    use spool::commands::top::app::{App, Outcome, key};
    use spool::commands::top::ui;

    let env = Env::new();
    publish_hostile(&env);
    let db = env.db.to_str().unwrap();
    let cli = spool::Cli::try_parse_from(["spool", "--db", db, "top"]).unwrap();
    let ctx = spool::Context {
        global: cli.global,
        out: spool::output::Output::new(false, false, spool::output::ColorChoice::Never),
    };
    let mut app = App::new(false, db.to_owned());
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
    let mut screen = |app: &mut App| {
        terminal.draw(|f| ui::draw(f, app)).unwrap();
        let buf = terminal.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    app.refresh(ctx.read_store().unwrap().as_ref());
    screen(&mut app);
    assert!(matches!(app.on_key(key(KeyCode::Enter)), Outcome::Refresh));
    app.refresh(ctx.read_store().unwrap().as_ref());
    let list = screen(&mut app);
    assert!(list.contains(" \\u{1b}]2;"), "the key column:\n{list}");
    app.on_key(key(KeyCode::Enter));
    app.refresh(ctx.read_store().unwrap().as_ref());
    let detail = screen(&mut app);
    assert!(
        detail.contains(&format!("{HOSTILE_SHOWN} · {HOSTILE_SHOWN}")),
        "key and group:\n{detail}"
    );
    assert!(
        detail.contains(&format!("h: {HOSTILE_SHOWN}")),
        "the header:\n{detail}"
    );
}

#[test]
fn stream_stopped_by_a_lost_subscriber_says_how_many_it_published() {
    use std::io::Write;
    let env = Env::new();
    env.run(&["subscribe", "t", "q"]).success();
    let mut child = env
        .cmd()
        .args(["publish", "t", "--stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spool starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"1\n").unwrap();
    stdin.flush().unwrap();
    // The id is printed once the first message is committed.
    let id = first_line_then_close(&mut child);
    assert!(id.trim().parse::<i64>().is_ok(), "an id: {id:?}");
    env.run(&["unsubscribe", "t", "q"]).success();
    stdin.write_all(b"2\n").unwrap();
    drop(stdin);
    let run = Run::from(child.wait_with_output().unwrap());
    run.code(3)
        .stderr_has("no subscribers")
        .stderr_has("after publishing 1 message");
}

#[test]
fn at_and_delay_share_one_documented_limit() {
    let env = Env::new();
    for args in [
        &["publish", "q", "--at", "9999-12-31T23:59:59Z", "1"][..],
        &["publish", "q", "--at", "2200-01-01T00:00:00Z", "1"],
        &["publish", "q", "--delay", "36501d", "1"],
    ] {
        env.run(args).code(2).stderr_has("at most 100 years");
    }
    assert!(
        !env.run(&["queue", "list"]).stdout.contains('q'),
        "nothing created"
    );
    env.run(&["publish", "q", "--at", "2100-01-01T00:00:00Z", "1"])
        .success();
    env.run(&["publish", "q", "--delay", "36500d", "1"])
        .success();
}

#[test]
fn key_from_names_what_is_wrong() {
    let env = Env::new();
    let run = env.run_with_input(
        &["publish", "q", "--key-from", "/k"],
        "{\"k\":\"\\ud800\"}\n",
    );
    run.code(65)
        .stderr_has("line 1")
        .stderr_has("not valid Unicode");
    for flag in ["--key-from", "--group-from"] {
        let run = env.run_with_input(&["publish", "q", flag, "/a~2"], "{\"a~2\":\"x\"}\n");
        run.code(2).stderr_has("invalid JSON pointer `/a~2`");
    }
    assert!(peek_queue_missing(&env), "nothing published");
}

fn peek_queue_missing(env: &Env) -> bool {
    env.run(&["peek", "q"]).code == 3
}

#[test]
fn max_size_zero_is_refused() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-size", "0"])
        .code(2)
        .stderr_has("--max-size");
    assert!(peek_queue_missing(&env), "no queue created");
    env.run(&["queue", "create", "q", "--max-size", "2KiB"])
        .success();
    env.run(&["queue", "set", "q", "--max-size", "0"]).code(2);
    let show = env.run(&["queue", "show", "q", "--json"]);
    let q: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(q["max_size"], 2048, "{q}");
}

#[test]
fn readers_and_replay_into_a_full_device_name_stdout() {
    let env = Env::new();
    env.publish("q", "1");
    env.run(&["consume", "q", "--ack"]).success();
    for args in [
        vec!["peek", "q", "--state", "all"],
        vec!["stats"],
        vec!["queue", "list"],
        vec!["queue", "show", "q"],
    ] {
        into_full_device(&env, &args, None)
            .code(74)
            .stderr_has("cannot write to stdout: No space left on device");
    }
    // A replay is committed before its count is printed, and says so.
    into_full_device(&env, &["replay", "q", "--acked"], None)
        .code(74)
        .stderr_has("1 message(s) were replayed and committed: cannot write to stdout");
    assert_eq!(peek_all(&env, "q", "ready").len(), 1);
}

#[test]
fn an_empty_variable_is_named_not_the_flag_it_stands_for() {
    let env = Env::new();
    env.cmd()
        .env("SPOOL_DB", "")
        .arg("stats")
        .output()
        .map(Run::from)
        .unwrap()
        .code(2)
        .stderr_has("SPOOL_DB is set but empty; unset it, or set it to a value (as `--db` takes)");
    env.cmd()
        .env("SPOOL_SYNC", "")
        .args(["publish", "q", "1"])
        .output()
        .map(Run::from)
        .unwrap()
        .code(2)
        .stderr_has("SPOOL_SYNC is set but empty");
    // Typed on the command line, the flag is what is named.
    env.run(&["--db", "", "stats"])
        .code(2)
        .stderr_has("'--db <PATH|URL>'");
    // ... and it wins over a variable that is empty or invalid.
    let db = env.db.to_str().unwrap().to_owned();
    for (var, value, args) in [
        (
            "SPOOL_DB",
            "",
            vec!["--db", db.as_str(), "publish", "q", "1"],
        ),
        (
            "SPOOL_SYNC",
            "bogus",
            vec!["--sync", "full", "publish", "q", "2"],
        ),
        ("SPOOL_SYNC", "", vec!["publish", "q", "3", "--sync=normal"]),
    ] {
        let run = env
            .cmd()
            .env(var, value)
            .args(&args)
            .output()
            .map(Run::from)
            .unwrap();
        run.success();
    }
    env.cmd()
        .env("SPOOL_SYNC", "bogus")
        .args(["publish", "q", "4"])
        .output()
        .map(Run::from)
        .unwrap()
        .code(2)
        .stderr_has("SPOOL_SYNC: invalid value 'bogus' for '--sync <MODE>'");
}

#[test]
fn work_says_when_a_handler_settled_its_own_delivery() {
    let env = Env::new();
    env.publish("q", "1");
    let spool = bin();
    let acks_then_fails = format!("{spool} ack \"$SPOOL_RECEIPT\"; exit 1");
    env.run(&["work", "q", "--max", "1", "--", "sh", "-c", &acks_then_fails])
        .code(4)
        .stderr_has("but its delivery was already acked (by the handler, with $SPOOL_RECEIPT?): it will not be retried");
    assert_eq!(peek_all(&env, "q", "acked").len(), 1);
    env.publish("q", "2");
    let nacks = format!("{spool} nack \"$SPOOL_RECEIPT\" --delay 1h; exit 0");
    env.run(&["work", "q", "--max", "1", "--", "sh", "-c", &nacks])
        .stderr_has("(the handler may have settled $SPOOL_RECEIPT itself)");
}

#[test]
fn a_long_refused_value_is_cut_in_the_message() {
    let env = Env::new();
    let key = "k".repeat(3000);
    let run = env.run(&["publish", "q", "--key", &key, "1"]);
    run.code(2)
        .stderr_has("…' for '--key <KEY>': the value is 3000 bytes long");
    assert!(
        run.stderr.len() < 400,
        "{} bytes of stderr",
        run.stderr.len()
    );
}
