//! Hostile input: each case gets its documented exit code, a clear message,
//! no panic, and leaves the database byte for byte as it was.
//!
//! Some cases have simpler tests in `core.rs` and `publish.rs`; these go
//! further (every command, the checksum of the file, memory bounds).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::common::{Contents, Env, Run, checksum, on_postgres, receipt, sqlite_only};
use crate::mount::Mount;

/// What a command must leave as it found it: the database file's bytes and
/// which of its side files exist, or on PostgreSQL every row of spool's
/// tables.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    contents: Contents,
    wal: bool,
    shm: bool,
}

fn snapshot_of(db: &Path) -> Snapshot {
    let side = |ext: &str| {
        let mut p = db.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p).exists()
    };
    Snapshot {
        contents: Contents::File(std::fs::read(db).ok().map(|b| checksum(&b))),
        wal: side("-wal"),
        shm: side("-shm"),
    }
}

/// The test's own database, on either backend.
fn snapshot(env: &Env) -> Snapshot {
    if on_postgres() {
        Snapshot {
            contents: env.contents(),
            wal: false,
            shm: false,
        }
    } else {
        snapshot_of(&env.db)
    }
}

/// Asserts a refused command: this exit code, `spool: error:` with `needle`,
/// no panic, nothing on stdout.
fn refused(run: &Run, code: i32, needle: &str) {
    assert_eq!(run.code, code, "{run:?}");
    assert!(run.stderr.starts_with("spool: error: "), "{run:?}");
    assert!(
        run.stderr.contains(needle),
        "stderr lacks {needle:?}: {run:?}"
    );
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}

/// A database with a leased, a ready and an acked message, and the receipt
/// of the leased one.
fn populated() -> (Env, String) {
    let env = Env::new();
    env.publish("q", r#"{"n":1}"#);
    env.publish("q", r#"{"n":2}"#);
    env.publish("q", r#"{"n":3}"#);
    let first = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&first)]).success();
    let leased = env.consume_one("q", &["--visibility", "1h"]);
    (env, receipt(&leased).to_owned())
}

fn run_os(env: &Env, args: &[&OsStr]) -> Run {
    Run::from(env.cmd().args(args).output().unwrap())
}

#[test]
fn invalid_utf8_anywhere_is_refused_and_changes_nothing() {
    let (env, _) = populated();
    let before = snapshot(&env);
    for args in [
        &["publish", "q"][..],
        &["publish", "q", "--raw"],
        &["publish", "q", "--single"],
        &["publish", "q", "--stream"],
    ] {
        let input: &[u8] = if args.contains(&"--single") {
            b"\"bad \xc3\x28\""
        } else {
            b"\"fine\"\n\"bad \xff\xfe\"\n"
        };
        let run = env.run_with_input(args, input);
        assert_eq!(run.code, 65, "{args:?} {run:?}");
        assert!(run.stderr.contains("UTF-8"), "{args:?} {run:?}");
        if !args.contains(&"--stream") {
            assert_eq!(snapshot(&env), before, "{args:?}");
        }
    }
    // --stream commits the good first line before stopping: that is its contract.
    let bad_arg = OsStr::from_bytes(b"\"\xff\"");
    let run = run_os(&env, &[OsStr::new("publish"), OsStr::new("p"), bad_arg]);
    refused(&run, 2, "UTF-8");
    let bad_queue = OsStr::from_bytes(b"q\xff");
    let run = run_os(&env, &[OsStr::new("consume"), bad_queue]);
    refused(&run, 2, "UTF-8");
    let before = snapshot(&env);
    let run = env.run_with_input(&["ack"], b"1_1_\xff\xff\n");
    refused(&run, 3, "unknown receipt");
    assert_eq!(snapshot(&env), before);
}

#[test]
fn nul_bytes_are_refused_in_json_and_kept_in_raw_text() {
    let (env, _) = populated();
    let before = snapshot(&env);
    refused(
        &env.run_with_input(&["publish", "q"], b"\"a\0b\"\n"),
        65,
        "line 1",
    );
    refused(
        &env.run_with_input(&["publish", "q"], b"{\"a\":1}\0\n"),
        65,
        "invalid JSON",
    );
    refused(
        &env.run_with_input(&["ack"], b"1_1\x001\n"),
        3,
        "unknown receipt",
    );
    assert_eq!(snapshot(&env), before);
    // An escaped NUL is valid JSON; a raw NUL is valid UTF-8 text.
    env.run_with_input(&["publish", "n"], "\"a\\u0000b\"\n")
        .success();
    env.run_with_input(&["publish", "n", "--raw"], b"a\0b\n")
        .success();
    let run = env.run(&["consume", "n", "-n", "2", "--body"]);
    run.success();
    assert_eq!(run.raw_stdout, b"\"a\\u0000b\"\na\0b\n");
}

/// Runs `spool ARGS` in bash with the data segment limited to 64 MiB, feeding
/// `lines` of `len` bytes (a JSON string) as stdin without building them in
/// memory here either.
fn publish_with_memory_limit(env: &Env, args: &str, len: usize) -> Run {
    let script = format!(
        "ulimit -d 65536 && head -c {len} /dev/zero | tr '\\0' x | \
         {{ printf '\"'; cat; printf '\"\\n'; }} | '{bin}' {args}",
        bin = crate::common::bin()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SPOOL_DB", &env.db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run::from(out)
}

#[test]
fn a_100_mb_line_is_refused_in_bounded_memory() {
    let (env, _) = populated();
    // The limit itself lets a normal publish through.
    publish_with_memory_limit(&env, "publish ok", 1000).success();
    let before = snapshot(&env);
    for args in [
        "publish q",
        "publish q --raw",
        "publish q --single",
        "publish q --stream",
    ] {
        let run = publish_with_memory_limit(&env, args, 100 << 20);
        assert_eq!(run.code, 65, "{args}: {run:?}");
        assert!(run.stderr.contains("max_size"), "{args}: {run:?}");
        assert!(!run.stderr.contains("memory"), "{args}: {run:?}");
        assert_eq!(snapshot(&env), before, "{args}");
    }
}

#[test]
fn deeply_nested_json_is_refused_as_bad_input() {
    let (env, _) = populated();
    let before = snapshot(&env);
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    // One argument may hold at most 128 KiB (MAX_ARG_STRLEN).
    let deep_arg = "[".repeat(60_000) + &"]".repeat(60_000);
    for args in [
        &["publish", "q"][..],
        &["publish", "q", "--single"],
        &["publish", "q", "--stream"],
        &["publish", "q", "--key-from", "/0"],
    ] {
        let run = env.run_with_input(args, format!("{deep}\n"));
        refused(&run, 65, "nested deeper than 127");
        assert_eq!(snapshot(&env), before, "{args:?}");
    }
    let run = env.run(&["publish", "q", &deep_arg]);
    refused(&run, 65, "nested deeper than 127");
    assert_eq!(snapshot(&env), before);
    // As raw text it is just text.
    env.run_with_input(&["publish", "raw", "--raw"], format!("{deep}\n"))
        .success();
}

#[test]
fn numbers_too_big_for_64_bits_are_kept_exactly() {
    let env = Env::new();
    let bodies = [
        "18446744073709551617",
        "-9223372036854775809",
        "123456789012345678901234567890.5e-999",
        "1e999",
        "{\"id\":340282366920938463463374607431768211457}",
    ];
    let input: String = bodies.iter().map(|b| format!("{b}\n")).collect();
    env.run_with_input(&["publish", "big"], &input).success();
    let run = env.run(&["consume", "big", "-n", "10", "--body"]);
    assert_eq!(run.stdout, input);
    // Regression: --key-from on ids past 2^64 used the rounded float as the
    // key, so the second id was taken for a duplicate of the first and lost.
    let ids = "{\"id\":12345678901234567890123}\n{\"id\":12345678901234567890124}\n";
    let run = env.run_with_input(&["publish", "keyed", "--key-from", "/id"], ids);
    let published = run.success().ids();
    assert_eq!(published.len(), 2);
    assert_ne!(
        published[0], published[1],
        "two different ids, two messages"
    );
    let msgs = env.consume("keyed", &["-n", "5"]);
    assert_eq!(msgs[0]["key"], "12345678901234567890123");
    assert_eq!(msgs[1]["key"], "12345678901234567890124");
}

#[test]
fn control_characters_in_queue_names_are_refused_escaped() {
    let (env, receipt) = populated();
    let before = snapshot(&env);
    for name in ["a\tb", "a\nb", "a\rb", "a\x1b[2Jb", "q\x7f", "\x07", "é"] {
        for args in [
            vec!["publish", name, "1"],
            vec!["consume", name],
            vec!["queue", "create", name],
            vec!["queue", "set", name, "--retention", "1s"],
        ] {
            let run = env.run(&args);
            refused(&run, 2, "invalid queue name");
            assert!(!run.stderr.contains('\x1b'), "raw escape in {run:?}");
            assert!(!run.stderr.contains('\x07'), "raw bell in {run:?}");
            assert!(!run.stderr.contains('\r'), "raw carriage return in {run:?}");
            let first = run.stderr.lines().next().unwrap_or_default();
            assert!(
                first.contains("invalid queue name"),
                "split message: {run:?}"
            );
        }
    }
    assert_eq!(snapshot(&env), before);
    env.run(&["ack", &receipt]).success();
}

#[test]
fn garbage_receipts_are_unknown_and_change_nothing() {
    let (env, good) = populated();
    let before = snapshot(&env);
    let long = "1".repeat(10_000);
    let garbage = [
        "_",
        "1_1",
        "1_1_1_1",
        "zz_1_1",
        "1_zz_1",
        "1_1_zz",
        "0_1_1",
        "1_0_1",
        "11111111111111111_1_1",
        "1_1_11111111111111111",
        &long,
        "ünï_cödé_1",
        " 1_1_1",
        "1__1",
        "-1_1_1",
    ];
    for cmd in [&["ack"][..], &["nack"], &["extend", "--by", "1m"]] {
        for g in garbage {
            let mut args = cmd.to_vec();
            args.extend(["--", g]);
            refused(&env.run(&args), 3, "unknown receipt");
        }
        let run = env.run_with_input(cmd, "{\"receipt\":5}\n[]\nnull\n");
        assert_eq!(run.code, 3, "{run:?}");
        assert_eq!(run.stderr.matches("unknown receipt").count(), 2, "{run:?}");
        assert!(
            run.stderr
                .contains("line `{\"receipt\":5}` has no string `receipt` field"),
            "{run:?}"
        );
    }
    assert_eq!(snapshot(&env), before);
    env.run(&["ack", &good]).success();
}

#[test]
fn receipts_of_another_queue_or_lease_do_not_touch_the_delivery() {
    let (env, good) = populated();
    env.publish("other", "1");
    let other = env.consume_one("other", &["--visibility", "1h"]);
    let parts: Vec<&str> = good.split('_').collect();
    let other_parts: Vec<&str> = receipt(&other).split('_').collect();
    let before = snapshot(&env);
    // The right message and queue, another lease: refused, lease ended.
    let wrong_lease = format!("{}_{}_{:016x}", parts[0], parts[1], 12345);
    refused(&env.run(&["ack", &wrong_lease]), 3, "lease has ended");
    // A queue that does not exist.
    let no_queue = format!("ff_{}_{}", parts[1], parts[2]);
    refused(&env.run(&["nack", &no_queue]), 3, "unknown receipt");
    // Another queue's id on this delivery: it never held the message, so the
    // delivery it names does not exist. spool cannot tell this from a repeat
    // ack of a message deleted on ack (retention 0), which must stay harmless,
    // so it answers like a repeated ack; what matters is that nothing changes.
    let swapped = format!("{}_{}_{}", other_parts[0], parts[1], parts[2]);
    let run = env.run(&["ack", &swapped]);
    assert!(run.code == 0 || run.code == 3, "{run:?}");
    assert!(!run.stderr.contains("panicked"));
    assert_eq!(snapshot(&env), before);
    // The real receipts still hold.
    env.run(&["extend", &good, "--by", "1m"]).success();
    env.run(&["ack", &good, receipt(&other)]).success();
}

#[test]
fn bad_durations_are_usage_errors_that_change_nothing() {
    let (env, receipt) = populated();
    let before = snapshot(&env);
    for dur in ["-5s", "1.5.3s", "99999999d", "5", "s", "1h-1m", "١s"] {
        // `--flag=VALUE`, so that clap hands `-5s` to the parser as a value.
        let [visibility, wait, delay, by, retention, busy] = [
            "visibility",
            "wait",
            "delay",
            "by",
            "retention",
            "busy-timeout",
        ]
        .map(|flag| format!("--{flag}={dur}"));
        let cases: [Vec<&str>; 7] = [
            vec!["consume", "q", &visibility],
            vec!["consume", "q", &wait],
            vec!["nack", &receipt, &delay],
            vec!["extend", &receipt, &by],
            vec!["queue", "set", "q", &retention],
            vec!["publish", "q", "1", &delay],
            vec![&busy, "publish", "q", "1"],
        ];
        for args in cases {
            let run = env.run(&args);
            refused(&run, 2, &format!("`{dur}`"));
            let expected = if dur == "99999999d" {
                "too long"
            } else {
                "invalid duration"
            };
            assert!(run.stderr.contains(expected), "{args:?}: {run:?}");
        }
    }
    assert_eq!(snapshot(&env), before);
}

fn every_command(receipt: &str) -> Vec<Vec<String>> {
    let cmds: [&[&str]; 8] = [
        &["publish", "q", "1"],
        &["consume", "q"],
        &["ack", receipt],
        &["nack", receipt],
        &["extend", receipt, "--by", "1m"],
        &["queue", "create", "x"],
        &["queue", "set", "q", "--retention", "1s"],
        &["doctor"],
    ];
    cmds.iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect()
}

fn with_db(env: &Env, db: &Path, args: &[String]) -> Run {
    Run::from(env.cmd().arg("--db").arg(db).args(args).output().unwrap())
}

#[test]
fn a_directory_as_the_database_exits_74_for_every_command() {
    if sqlite_only("a directory where the file should be") {
        return;
    }
    let env = Env::new();
    let dir = env.path("adir");
    std::fs::create_dir(&dir).unwrap();
    for args in every_command("1_1_1") {
        refused(&with_db(&env, &dir, &args), 74, "is a directory");
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn a_symlink_loop_exits_74_for_every_command() {
    if sqlite_only("a symbolic link loop as the file") {
        return;
    }
    let env = Env::new();
    let (a, b) = (env.path("loop-a"), env.path("loop-b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    for args in every_command("1_1_1") {
        refused(&with_db(&env, &a, &args), 74, "symbolic links");
    }
    assert!(std::fs::symlink_metadata(&a).unwrap().is_symlink());
}

#[test]
fn files_that_are_not_spool_databases_exit_74_untouched() {
    if sqlite_only("files that are not spool databases") {
        return;
    }
    let env = Env::new();
    let (real, _) = populated();
    let full = std::fs::read(&real.db).unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("text", b"not a database\n".repeat(500), "not a database"),
        ("zeros", vec![0u8; 8192], "not a database"),
        ("truncated", full[..100].to_vec(), "database"),
        ("half", full[..full.len() / 2].to_vec(), "database"),
    ];
    for (name, bytes, needle) in cases {
        let path = env.path(name);
        std::fs::write(&path, &bytes).unwrap();
        for args in every_command("1_1_1") {
            let run = with_db(&env, &path, &args);
            assert!(!run.stderr.contains("panicked"), "{name} {args:?}: {run:?}");
            if name == "half" && run.code == 0 {
                // Half a database can still answer what it holds in its first
                // pages; it must not be able to hide damage from doctor.
                continue;
            }
            refused(&run, 74, needle);
            let after = std::fs::read(&path).unwrap();
            assert!(after == bytes, "{name} {args:?} changed the file");
        }
    }
    // An SQLite database of someone else's: refused, untouched.
    let foreign = env.path("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    let before = snapshot_of(&foreign);
    for args in every_command("1_1_1") {
        refused(&with_db(&env, &foreign, &args), 74, "not a spool database");
    }
    assert_eq!(snapshot_of(&foreign), before);
}

#[test]
fn a_database_from_a_newer_schema_is_refused_by_every_command_untouched() {
    let (env, receipt) = populated();
    env.mark_newer(1000);
    let before = snapshot(&env);
    for args in every_command(&receipt) {
        refused(&with_db(&env, &env.db, &args), 74, "Upgrade spool");
        assert_eq!(snapshot(&env), before, "{args:?}");
    }
}

#[test]
fn an_immutable_database_file_exits_74_untouched() {
    if sqlite_only("an immutable file") {
        return;
    }
    let (env, receipt) = populated();
    let before = snapshot(&env);
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&env.db)
        .output();
    match chattr {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!("SKIPPED: chattr +i is not available here: {other:?}");
            return;
        }
    }
    struct Unfreeze(PathBuf);
    impl Drop for Unfreeze {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        }
    }
    let _unfreeze = Unfreeze(env.db.clone());
    for args in every_command(&receipt) {
        if args[0] == "doctor" {
            continue;
        }
        refused(&with_db(&env, &env.db, &args), 74, "not writable");
    }
    assert_eq!(snapshot(&env), before);
    let doctor = with_db(&env, &env.db, &["doctor".to_owned()]);
    assert_eq!(doctor.code, 0, "reading still works: {doctor:?}");
}

#[test]
fn a_read_only_mount_exits_74_untouched() {
    if sqlite_only("a read-only mount") {
        return;
    }
    let (env, receipt) = populated();
    let source = env.dir.path().to_owned();
    let Some(mount) = Mount::read_only_bind(&source, &env.path("ro")) else {
        return;
    };
    let db = mount.path.join("spool.db");
    let before = snapshot(&env);
    for args in every_command(&receipt) {
        if args[0] == "doctor" {
            continue;
        }
        refused(&with_db(&env, &db, &args), 74, "Read-only file system");
    }
    assert_eq!(snapshot(&env), before);
    // Reading still works: doctor checks a read-only copy (say, a backup).
    let run = with_db(&env, &db, &["doctor".to_owned()]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["healthy"], true, "{report}");
    assert_eq!(report["queues"][0]["counted"]["acked"], 1, "{report}");
}

/// Regression (found by the store's property test): nack and extend of a
/// delivery that was already acked answered 0, as if the message were back
/// in the queue or still leased. Only a repeated ack is harmless.
#[test]
fn nack_and_extend_after_ack_are_refused_but_a_repeated_ack_is_not() {
    for retention in ["1d", "0"] {
        let env = Env::new();
        env.run(&["queue", "create", "q", "--retention", retention])
            .success();
        env.publish("q", "1");
        let m = env.consume_one("q", &[]);
        let r = receipt(&m);
        env.run(&["ack", r]).success();
        let before = snapshot(&env);
        refused(&env.run(&["nack", r]), 3, "already finished");
        refused(
            &env.run(&["extend", r, "--by", "1m"]),
            3,
            "already finished",
        );
        env.run(&["ack", r]).success();
        assert_eq!(snapshot(&env), before, "retention {retention}");
        assert!(env.consume("q", &[]).is_empty(), "retention {retention}");
    }
}

#[test]
fn a_json_line_without_a_receipt_is_named_and_long_lines_are_cut() {
    let (env, _) = populated();
    let run = env.run_with_input(&["ack"], "{\"no\":\"receipt\"}\n");
    refused(
        &run,
        3,
        "line `{\"no\":\"receipt\"}` has no string `receipt` field",
    );
    let long = "x".repeat(100_000);
    let run = env.run_with_input(&["ack"], format!("{long}\n"));
    refused(&run, 3, "unknown receipt");
    assert!(
        run.stderr.len() < 300,
        "{} bytes of stderr",
        run.stderr.len()
    );
    assert!(run.stderr.contains("xxx…`"), "{}", run.stderr);
}
