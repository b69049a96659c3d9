//! A full disk: publish fails cleanly with exit 74, nothing committed is lost,
//! and everything works again once space is freed.

use crate::common::{Env, receipt, sqlite_only};
use crate::mount::Mount;

fn integrity(env: &Env, db: &std::path::Path) -> String {
    let _ = env;
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_full_disk_fails_publish_with_74_and_loses_nothing() {
    if sqlite_only("a full disk under the file") {
        return;
    }
    let env = Env::new();
    let Some(mount) = Mount::tmpfs(&env.path("small"), "3m") else {
        return;
    };
    let db = mount.path.join("spool.db");
    // Room to give back later: the test frees it once the disk is full.
    let ballast = mount.path.join("ballast");
    std::fs::write(&ballast, vec![0u8; 768 << 10]).unwrap();
    let body = format!("\"{}\"", "x".repeat(24_000));
    let spool = |args: &[&str]| {
        let out = env.cmd().arg("--db").arg(&db).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut published = Vec::new();
    let failure = loop {
        let (code, stdout, stderr) = spool(&["publish", "q", &body]);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if code != 0 {
            break (code, stderr);
        }
        published.push(stdout.trim().parse::<i64>().unwrap());
        assert!(published.len() < 1000, "the disk never filled up");
    };
    let (code, stderr) = failure;
    eprintln!(
        "disk full after {} messages: {}",
        published.len(),
        stderr.trim()
    );
    assert_eq!(code, 74, "{stderr}");
    assert!(stderr.starts_with("spool: error: "), "{stderr}");
    assert!(stderr.contains("Free some disk space"), "{stderr}");
    assert!(published.len() > 10, "only {} fit", published.len());

    // Everything committed is intact (read without writing).
    let stored: Vec<i64> = rusqlite::Connection::open(&db)
        .unwrap()
        .prepare("SELECT id FROM messages ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, published);
    assert_eq!(integrity(&env, &db), "ok");

    // While the disk is full, the other writing commands either work (a
    // claim may fit in pages already there) or fail the same clean way.
    let (code, stdout, stderr) = spool(&["consume", "q", "-n", "3"]);
    assert!(code == 0 || code == 74, "{stderr}");
    if code == 74 {
        assert!(stderr.contains("Free some disk space"), "{stderr}");
    }
    for line in stdout.lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        let (code, _, stderr) = spool(&["nack", receipt(&m)]);
        assert!(code == 0 || code == 74, "{stderr}");
    }
    assert_eq!(integrity(&env, &db), "ok");

    // Free space: everything works again.
    std::fs::remove_file(&ballast).unwrap();
    let (code, stdout, stderr) = spool(&["publish", "q", "\"after\""]);
    assert_eq!(code, 0, "{stderr}");
    let after: i64 = stdout.trim().parse().unwrap();
    assert!(after > *published.last().unwrap());
    let (code, stdout, stderr) = spool(&["consume", "q", "-n", "1000"]);
    assert_eq!(code, 0, "{stderr}");
    let msgs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(msgs.len(), published.len() + 1);
    let receipts: Vec<&str> = msgs.iter().map(receipt).collect();
    let mut ack = vec!["ack"];
    ack.extend(receipts);
    let (code, _, stderr) = spool(&ack);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(integrity(&env, &db), "ok");
    let (code, stdout, _) = spool(&["doctor", "--json"]);
    assert_eq!(code, 0, "{stdout}");
}
