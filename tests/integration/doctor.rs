//! `spool doctor` and the refusal of network file systems.

use serde_json::Value;

use crate::common::{Env, on_postgres, receipt, sqlite_only};
use crate::mount::Mount;

fn doctor_json(env: &Env, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["doctor"];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    let report = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {run:?}"));
    (run.code, report)
}

#[test]
fn a_missing_database_is_reported_not_created() {
    let env = Env::new();
    let (code, report) = doctor_json(&env, &[]);
    assert_eq!(code, 0);
    assert_eq!(report["database"]["exists"], false);
    assert!(
        !env.database_exists(),
        "doctor must not create the database"
    );
    let human = env
        .cmd()
        .env("SPOOL_TEST_TERMINAL", "stdout")
        .arg("doctor")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains("no database"));
}

#[test]
fn a_healthy_database_reports_its_shape_and_settings_and_is_left_unchanged() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "jobs",
        "--visibility",
        "5m",
        "--retention",
        "0",
    ])
    .success();
    env.publish("jobs", "1");
    env.publish("jobs", "2");
    let m = env.consume_one("jobs", &[]);
    env.run(&["ack", receipt(&m)]).success();
    let before = env.contents();
    let (code, report) = doctor_json(&env, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["healthy"], true);
    let db = &report["database"];
    if on_postgres() {
        // PostgreSQL checks its own storage: no file, pages or WAL of spool's.
        assert_eq!(db["backend"], "postgres");
        assert_eq!(db["path"], env.display());
        assert_eq!(db["schema_version"], 4);
        assert_eq!(db["schema_supported"], 4);
        assert!(db["server_version"].as_str().is_some_and(|v| !v.is_empty()));
        assert!(db["size_bytes"].as_u64().unwrap() > 0);
        assert!(report.get("integrity").is_none(), "{report}");
    } else {
        assert_eq!(report["integrity"], serde_json::json!(["ok"]));
        assert_eq!(db["journal_mode"], "wal");
        assert_eq!(db["schema_version"], 5);
        assert!(db["page_count"].as_i64().unwrap() > 0);
        assert!(db["free_pages"].as_i64().is_some());
        assert!(db["wal_bytes"].as_u64().is_some());
    }
    let q = &report["queues"][0];
    assert_eq!(q["name"], "jobs");
    assert_eq!(q["visibility_ms"], 300_000);
    assert_eq!(q["retention_ms"], 0);
    assert_eq!(q["counted"]["ready"], 1);
    assert_eq!(q["consistent"], true);
    assert_eq!(env.contents(), before, "doctor only reads");
    let table = env
        .cmd()
        .env("SPOOL_TEST_TERMINAL", "stdout")
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    if !on_postgres() {
        assert!(text.contains("integrity  ok"), "{text}");
    }
    assert!(text.contains("healthy"), "{text}");
    assert!(text.contains("5m"), "settings are shown: {text}");
}

#[test]
fn wrong_counters_fail_the_check_and_repair_fixes_them() {
    let env = Env::new();
    env.publish("q", "1");
    // SQLite keeps the counters in `queues`; PostgreSQL sums rows of deltas
    // in `stats`, so one more row makes the sums wrong.
    env.exec(if on_postgres() {
        "INSERT INTO stats (queue_id, second, n_ready, n_dead) VALUES (1, 0, 6, 2)"
    } else {
        "UPDATE queues SET n_ready = 7, n_dead = 2"
    });
    let (code, report) = doctor_json(&env, &[]);
    assert_eq!(code, 74);
    assert_eq!(report["healthy"], false);
    let finding = report["findings"][0]["message"].as_str().unwrap();
    assert!(
        finding.contains("`q`") && finding.contains("ready 7"),
        "{finding}"
    );
    assert!(
        report["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("--repair")
    );
    let run = env.run(&["doctor"]);
    run.code(74).stderr_has("problem");
    let (code, report) = doctor_json(&env, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    let n = env.counters()["q"];
    assert_eq!((n[0], n[4]), (1, 0));
    assert_eq!(report["healthy"], true, "{report}");
}

#[test]
fn a_reusable_id_and_orphan_bodies_are_found_and_repaired() {
    let env = Env::new();
    env.publish("q", "1");
    env.publish("q", "2");
    env.exec(if on_postgres() {
        "SELECT setval('message_ids', 1, false);
         INSERT INTO messages (id, origin_id, published_at, raw, body)
           VALUES (99, 1, 0, false, '\\x31'::bytea);"
    } else {
        "UPDATE meta SET value = 1 WHERE key = 'next_message_id';
         INSERT INTO messages (id, origin_id, published_at, raw, body) VALUES (99, 1, 0, 0, x'31');"
    });
    let (code, report) = doctor_json(&env, &[]);
    assert_eq!(code, 74);
    let text = report["findings"].to_string();
    assert!(text.contains("reuse ids"), "{text}");
    assert!(text.contains("no longer in any queue"), "{text}");
    let (code, _) = doctor_json(&env, &["--repair"]);
    assert_eq!(code, 0);
    assert!(env.publish("q", "3") > 2);
}

#[test]
fn a_damaged_file_fails_the_integrity_check_with_exit_74() {
    if sqlite_only("a damaged file") {
        return;
    }
    let env = Env::new();
    let input: String = (0..3000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    env.run_with_input(&["publish", "q", "-q"], input).success();
    let mut bytes = std::fs::read(&env.db).unwrap();
    assert!(bytes.len() > 16 * 4096);
    // Scribble over the middle pages (table and index b-trees), not page 1.
    for b in &mut bytes[8 * 4096..12 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&env.db, &bytes).unwrap();
    let run = env.run(&["doctor", "--json"]);
    assert_eq!(run.code, 74, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_ne!(report["integrity"], serde_json::json!(["ok"]), "{report}");
    assert_eq!(report["healthy"], false);
    assert!(
        report["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("backup")
    );
}

#[test]
fn a_file_that_is_not_a_database_exits_74() {
    if sqlite_only("a file that is not a database") {
        return;
    }
    let env = Env::new();
    std::fs::write(&env.db, "hello, not sqlite\n".repeat(300)).unwrap();
    env.run(&["doctor"]).code(74).stderr_has("not a database");
}

#[test]
fn a_fuse_file_system_is_refused_unless_allowed() {
    if sqlite_only("a file on a network file system") {
        return;
    }
    if which("bindfs").is_none() {
        eprintln!("SKIPPED: bindfs is not installed (apt-get install bindfs), cannot test FUSE");
        return;
    }
    let env = Env::new();
    let source = env.path("real");
    std::fs::create_dir(&source).unwrap();
    let Some(mount) = Mount::bindfs(&source, &env.path("fuse")) else {
        return;
    };
    let db = mount.path.join("sub/spool.db");
    let run = env
        .cmd()
        .arg("--db")
        .arg(&db)
        .args(["publish", "q", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("network file system (FUSE)"), "{stderr}");
    assert!(stderr.contains("SPOOL_ALLOW_NETWORK_FS=1"), "{stderr}");
    assert!(!mount.path.join("sub").exists(), "nothing may be created");
    let run = env
        .cmd()
        .env("SPOOL_ALLOW_NETWORK_FS", "1")
        .arg("--db")
        .arg(&db)
        .args(["publish", "q", "1"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let (_, report) = {
        let out = env
            .cmd()
            .arg("--db")
            .arg(&db)
            .arg("doctor")
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        )
    };
    assert_eq!(report["database"]["network_fs"], "FUSE");
    assert_eq!(report["healthy"], false);
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[test]
fn a_database_out_of_wal_mode_is_a_problem() {
    if sqlite_only("SQLite's journal mode") {
        return;
    }
    let env = Env::new();
    env.publish("q", "1");
    let mode: String = env
        .sql()
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let (code, report) = doctor_json(&env, &[]);
    assert_eq!(code, 74);
    assert_eq!(report["database"]["journal_mode"], "delete");
    let text = report["findings"].to_string();
    assert!(
        text.contains("not `wal`") && text.contains("journal_mode=WAL"),
        "{text}"
    );
}

#[test]
fn doctor_warns_of_a_schedule_that_could_not_publish() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-length", "1"])
        .success();
    env.publish("q", "1");
    env.run(&[
        "schedule",
        "add",
        "s",
        "--every",
        "1h",
        "--start",
        "2020-01-01T00:00:00Z",
        "--to",
        "q",
        "{}",
    ])
    .success();
    // The claim fires the due occurrence first; the full queue refuses it.
    env.run(&["consume", "q"]).success();
    let run = env.run(&["doctor", "--json"]);
    run.success();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["healthy"], true, "{report}");
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["level"] == "warning"
            && f["message"].as_str().is_some_and(|m| m.starts_with(
                "schedule `s` could not publish its due occurrence to `q`: queue `q` is full"
            ))),
        "{report}"
    );
}
