//! The on-disk guarantee (SPEC §6), watched from outside: every command that
//! writes, run under `--sync full` and traced with `strace`, fsyncs the WAL
//! after its last write to it and before it exits 0. An optimisation that
//! skipped or deferred that fsync would still pass every other test; this
//! one fails it. SQLite only (PostgreSQL's durability is the server's).
//!
//! Needs `strace` (`.ci/run` installs it). Without it the test fails when
//! `SPOOL_TEST_STRACE` is set, as in CI, and is reported as skipped
//! otherwise.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// The system calls that write, sync or cut a file.
const TRACED: &str =
    "trace=write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,sync_file_range,ftruncate";

/// True when strace can be used here; otherwise says why (and fails in CI).
fn strace_missing() -> bool {
    let works = Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return false;
    }
    assert!(
        std::env::var_os("SPOOL_TEST_STRACE").is_none(),
        "SPOOL_TEST_STRACE is set but strace cannot run here"
    );
    eprintln!(
        "SKIPPED durability tests: strace is not installed or cannot trace (.ci/run installs it)"
    );
    true
}

/// One traced system call on a file: its name and the file's path.
#[derive(Debug)]
struct Call {
    name: String,
    path: String,
}

/// Parses `strace -y` output: `PID name(FD</path>, …) = RESULT`.
fn calls(trace: &str) -> Vec<Call> {
    trace
        .lines()
        .filter_map(|line| {
            let rest = line.split_once(' ').map_or(line, |(_, r)| r).trim_start();
            let (name, args) = rest.split_once('(')?;
            let path = args.split_once('<')?.1.split_once('>')?.0;
            if line.trim_end().ends_with("= -1") || line.contains("= -1 E") {
                return None; // failed calls write nothing
            }
            Some(Call {
                name: name.to_owned(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// Runs spool (with `args` and `input`) under strace and checks that its
/// last write to the WAL is followed by an fsync of the WAL before it exits
/// 0. Returns the calls it made on files.
fn assert_synced(env: &Env, args: &[&str], input: &str) -> Vec<Call> {
    let trace_file = env.path("trace");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-y", "-s", "0", "-e", TRACED, "-o"])
        .arg(&trace_file)
        .arg(bin())
        .args(["--sync", "full"])
        .args(args)
        .env_clear()
        .env("HOME", env.dir.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SPOOL_DB", &env.db)
        .current_dir(env.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("strace runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "spool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let calls = calls(&trace);
    let wal = format!("{}-wal", Path::new(&env.db).display());
    let is_wal = |c: &Call| c.path.ends_with(&wal) || c.path.ends_with("-wal");
    let writes: Vec<usize> = (0..calls.len())
        .filter(|&i| is_wal(&calls[i]) && calls[i].name.contains("write"))
        .collect();
    let Some(&last_write) = writes.last() else {
        panic!("spool {args:?} wrote nothing to the WAL:\n{trace}");
    };
    let synced = calls[last_write..]
        .iter()
        .any(|c| is_wal(c) && matches!(c.name.as_str(), "fsync" | "fdatasync"));
    assert!(
        synced,
        "spool {args:?}: no fsync of the WAL after its last write to it:\n{trace}"
    );
    calls
}

#[test]
fn every_writing_command_fsyncs_the_wal_before_it_exits() {
    if sqlite_only("the WAL and its fsync are SQLite's") || strace_missing() {
        return;
    }
    let env = Env::new();
    env.run(&["queue", "create", "setup"]).success();
    // Another process has the database open, as in real life: a command's
    // closing connection is then not the last one and does not checkpoint
    // (which would fsync the WAL anyway), so only the commit's own fsync
    // is watched.
    let other = env.sql();
    let _: i64 = other
        .query_row("SELECT count(*) FROM queues", [], |r| r.get(0))
        .unwrap();
    let schema = env.path("schema.json");
    std::fs::write(&schema, r#"{"type":"object"}"#).unwrap();
    let schema = schema.display().to_string();

    // Creating things.
    assert_synced(&env, &["queue", "create", "q", "--visibility", "1m"], "");
    assert_synced(&env, &["publish", "q", r#"{"n":0}"#], "");
    assert_synced(&env, &["publish", "q"], "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    assert_synced(
        &env,
        &["publish", "q", "--stream"],
        "{\"n\":4}\n{\"n\":5}\n",
    );
    assert_synced(&env, &["publish", "q", "--single"], "{\"n\":\n6}\n");
    assert_synced(&env, &["queue", "set", "q", "--schema", &schema], "");
    assert_synced(&env, &["queue", "set", "q", "--max-in-flight", "100"], "");
    assert_synced(&env, &["queue", "pause", "q"], "");
    assert_synced(&env, &["queue", "resume", "q"], "");
    assert_synced(&env, &["subscribe", "t", "q"], "");
    assert_synced(&env, &["publish", "t", r#"{"n":7}"#], "");

    // Settling.
    let leased = env.consume("q", &["-n", "5"]);
    let receipt_of = |i: usize| receipt(&leased[i]).to_owned();
    assert_synced(&env, &["consume", "q"], "");
    assert_synced(&env, &["consume", "q", "--ack"], "");
    assert_synced(&env, &["ack", &receipt_of(0)], "");
    assert_synced(&env, &["nack", &receipt_of(1)], "");
    assert_synced(&env, &["nack", "--dead", &receipt_of(2)], "");
    assert_synced(&env, &["extend", "--by", "2m", &receipt_of(3)], "");
    assert_synced(
        &env,
        &["publish", "next", "--ack", &receipt_of(4), r#"{"n":8}"#],
        "",
    );

    // Workers.
    env.publish("jobs", r#"{"n":9}"#);
    env.publish("jobs", r#"{"n":10}"#);
    assert_synced(&env, &["work", "jobs", "--until-empty", "--", "true"], "");
    env.publish("jobs", r#"{"n":11}"#);
    assert_synced(
        &env,
        &[
            "work",
            "jobs",
            "--until-empty",
            "--emit",
            "next",
            "--",
            "echo",
            r#"{"n":12}"#,
        ],
        "",
    );

    // Admin.
    assert_synced(&env, &["replay", "jobs", "--acked"], "");
    assert_synced(&env, &["replay", "q", "--dead", "--to", "next"], "");
    assert_synced(&env, &["queue", "purge", "jobs", "--state", "ready"], "");
    assert_synced(&env, &["unsubscribe", "t", "q"], "");
    assert_synced(&env, &["queue", "delete", "next", "--force"], "");
    drop(other);
}

/// A command alone with the database closes last: it checkpoints the WAL
/// into the database file and then cuts the WAL to nothing, keeping the
/// file for the next process (`SQLITE_FCNTL_PERSIST_WAL`). The WAL may only
/// be emptied once what it held is on disk in the database file: every
/// write to the database file is followed by an fsync of it before the WAL
/// is cut (or deleted), and the commit's own fsync of the WAL is checked
/// as above.
#[test]
fn a_lone_command_syncs_the_database_file_before_it_empties_the_wal() {
    if sqlite_only("the WAL and its checkpoint are SQLite's") || strace_missing() {
        return;
    }
    let env = Env::new();
    env.run(&["queue", "create", "q"]).success();
    env.publish("q", r#"{"n":0}"#);
    let leased = env.consume("q", &["-n", "1"]);
    let leased = receipt(&leased[0]).to_owned();
    let db = Path::new(&env.db);
    let name = format!("/{}", db.file_name().unwrap().to_string_lossy());
    let mut cut = 0;
    for (args, input) in [
        (vec!["publish", "q", r#"{"n":1}"#], ""),
        (vec!["publish", "q"], "{\"n\":2}\n{\"n\":3}\n"),
        (vec!["consume", "q", "--ack"], ""),
        (vec!["ack", leased.as_str()], ""),
    ] {
        let calls = assert_synced(&env, &args, input);
        let is_db = |c: &Call| c.path.ends_with(&name);
        let is_wal = |c: &Call| c.path.ends_with("-wal");
        let Some(emptied) = calls
            .iter()
            .position(|c| is_wal(c) && c.name == "ftruncate")
        else {
            continue;
        };
        cut += 1;
        let before = &calls[..emptied];
        if let Some(last_write) = before
            .iter()
            .rposition(|c| is_db(c) && c.name.contains("write"))
        {
            assert!(
                before[last_write..]
                    .iter()
                    .any(|c| is_db(c) && matches!(c.name.as_str(), "fsync" | "fdatasync")),
                "spool {args:?}: the WAL was emptied before the database file was synced: {calls:?}"
            );
        }
    }
    // The WAL is kept between processes: each lone command emptied it.
    assert_eq!(cut, 4, "no lone command emptied the WAL it keeps");
    let wal = format!("{}-wal", db.display());
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).ok(),
        Some(0),
        "the WAL is kept, empty, after the last process"
    );
}
