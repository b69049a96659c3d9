//! Recovering and cleaning up: `replay`, `queue delete`, `queue purge`,
//! retention and the file handing free pages back.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::inspect::publish_with;

fn count(env: &Env, sql: &str) -> i64 {
    env.count(sql)
}

fn consume_and_ack(env: &Env, queue: &str) -> Value {
    let m = env.consume_one(queue, &[]);
    env.run(&["ack", receipt(&m)]).success();
    m
}

/// Consumes and nacks until the message dies (max attempts `n`).
fn kill_one(env: &Env, queue: &str, n: usize) -> i64 {
    let mut id = 0;
    for _ in 0..n {
        let m = env.consume_one(queue, &[]);
        id = m["id"].as_i64().unwrap();
        env.run(&["nack", receipt(&m)]).success();
    }
    id
}

// ---------------------------------------------------------------- replay

#[test]
fn replay_acked_brings_back_the_same_id_with_attempt_1() {
    let env = Env::new();
    let id = env.publish("q", "{\"job\":1}");
    consume_and_ack(&env, "q");
    let run = env.run(&["replay", "q", "--acked"]);
    run.success();
    assert_eq!(run.stdout, "1\n");
    let again = env.consume_one("q", &[]);
    assert_eq!(again["id"], id);
    assert_eq!(again["attempt"], 1);
    assert_eq!(again["body"]["job"], 1);
    assert_consistent(&env, "after the change");
}

#[test]
fn replay_dead_after_max_attempts() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "2"])
        .success();
    let id = env.publish("q", "\"x\"");
    assert_eq!(kill_one(&env, "q", 2), id);
    assert_eq!(env.state_of("q", id), Some(4));
    assert!(env.consume("q", &[]).is_empty());
    env.run(&["replay", "q", "--dead"]).success();
    let again = env.consume_one("q", &[]);
    assert_eq!(again["id"], id);
    assert_eq!(again["attempt"], 1);
    // The reset attempts count: two more failures before it dies again.
    env.run(&["nack", receipt(&again)]).success();
    assert_eq!(env.state_of("q", id), Some(0));
    assert_consistent(&env, "after the change");
}

#[test]
fn replay_dead_includes_a_lease_that_ran_out_on_its_last_attempt() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    let id = env.publish("q", "1");
    env.consume_one("q", &["--visibility", "50ms"]);
    std::thread::sleep(Duration::from_millis(120));
    let dry = env.run(&["replay", "q", "--dead", "--dry-run"]);
    assert_eq!(dry.success().stdout, "1\n");
    env.run(&["replay", "q", "--dead"]).success();
    assert_eq!(env.consume_one("q", &[])["id"], id);
    assert_consistent(&env, "after the change");
}

#[test]
fn replay_to_copies_with_the_same_id_while_the_original_stays_acked() {
    let env = Env::new();
    let id = env.publish("q", "{\"history\":true}");
    consume_and_ack(&env, "q");
    let run = env.run(&["replay", "q", "--acked", "--to", "audit"]);
    run.success();
    assert_eq!(run.stdout, "1\n");
    assert_eq!(env.state_of("q", id), Some(3), "the original stays acked");
    let copy = env.consume_one("audit", &[]);
    assert_eq!(copy["id"], id);
    assert_eq!(copy["attempt"], 1);
    assert_eq!(copy["body"]["history"], true);
    assert_eq!(
        count(&env, "SELECT count(*) FROM messages"),
        1,
        "body stored once"
    );
    // Replaying again skips what audit already holds.
    let again = env.run(&["--json", "replay", "q", "--acked", "--to", "audit"]);
    let report: Value = serde_json::from_str(&again.success().stdout).unwrap();
    assert_eq!(report["count"], 0);
    assert_eq!(report["skipped"], serde_json::json!([id]));
    assert!(again.stderr.contains("skipped 1"), "{again:?}");
    assert_consistent(&env, "after the change");
}

#[test]
fn replay_dry_run_changes_nothing() {
    let env = Env::new();
    env.publish("q", "1");
    env.publish("q", "2");
    consume_and_ack(&env, "q");
    consume_and_ack(&env, "q");
    let before = env.contents();
    let run = env.run(&["replay", "q", "--acked", "--dry-run"]);
    run.success();
    assert_eq!(run.stdout, "2\n");
    let to = env.run(&["replay", "q", "--acked", "--dry-run", "--to", "new"]);
    assert_eq!(to.success().stdout, "2\n");
    assert_eq!(env.contents(), before);
    assert!(env.consume("q", &[]).is_empty());
    env.run(&["stats", "new"]).code(3);
}

#[test]
fn replay_with_no_match_prints_0() {
    let env = Env::new();
    env.publish("q", "1");
    let run = env.run(&["replay", "q", "--acked", "--dead"]);
    run.success();
    assert_eq!(run.stdout, "0\n");
    env.run(&["replay", "nope", "--acked"]).code(3);
    env.run(&["replay", "q"]).code(2);
    env.run(&["replay", "q", "--acked", "--to", "q"]).code(2);
}

#[test]
fn replay_filters_by_time_and_id() {
    let env = Env::new();
    let first = env.publish("q", "1");
    consume_and_ack(&env, "q");
    std::thread::sleep(Duration::from_millis(50));
    let cut = jiff::Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(50));
    let second = env.publish("q", "2");
    consume_and_ack(&env, "q");
    let third = env.publish("q", "3");
    consume_and_ack(&env, "q");
    let ids = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["--json", "replay", "q", "--acked", "--dry-run"];
        all.extend_from_slice(args);
        let report: Value = serde_json::from_str(&env.run(&all).success().stdout).unwrap();
        report["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&[]), [first, second, third]);
    assert_eq!(ids(&["--since", &cut]), [second, third]);
    assert_eq!(ids(&["--until", &cut]), [first]);
    assert_eq!(ids(&["--since", "1h"]), [first, second, third]);
    assert_eq!(ids(&["--until", "1h"]), Vec::<i64>::new());
    let third_s = third.to_string();
    assert_eq!(ids(&["--id", &third_s, "--id", "999"]), [third]);
    assert_eq!(ids(&["--id", &format!("{first},{third}")]), [first, third]);
    env.run(&["replay", "q", "--acked", "--since", "yesterday"])
        .code(2);
}

#[test]
fn replay_json_lists_which() {
    let env = Env::new();
    let id = env.publish("q", "1");
    consume_and_ack(&env, "q");
    let run = env.run(&["--json", "replay", "q", "--acked"]);
    let report: Value = serde_json::from_str(&run.success().stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({"queue": "q", "to": null, "dry_run": false, "count": 1, "ids": [id], "skipped": []})
    );
    let quiet = env.run(&["-q", "replay", "q", "--acked"]);
    assert!(quiet.success().stdout.is_empty());
}

#[test]
fn replayed_grouped_message_waits_behind_its_groups_unfinished_head() {
    let env = Env::new();
    let first = publish_with(&env, "q", &["--group", "g"], "1");
    consume_and_ack(&env, "q");
    let second = publish_with(&env, "q", &["--group", "g"], "2");
    let head = env.consume_one("q", &[]);
    assert_eq!(head["id"], second);
    env.run(&["replay", "q", "--acked"]).success();
    assert_eq!(env.state_of("q", first), Some(5), "held behind the head");
    assert!(env.consume("q", &[]).is_empty(), "one at a time per group");
    env.run(&["ack", receipt(&head)]).success();
    assert_eq!(env.consume_one("q", &[])["id"], first);
    assert_consistent(&env, "after the change");
}

#[test]
fn replayed_grouped_message_becomes_head_when_its_group_is_idle() {
    let env = Env::new();
    let a = publish_with(&env, "q", &["--group", "g"], "1");
    let b = publish_with(&env, "q", &["--group", "g"], "2");
    consume_and_ack(&env, "q");
    consume_and_ack(&env, "q");
    let run = env.run(&["replay", "q", "--acked"]);
    assert_eq!(run.success().stdout, "2\n");
    let m = env.consume_one("q", &[]);
    assert_eq!(m["id"], a);
    assert!(env.consume("q", &[]).is_empty());
    env.run(&["ack", receipt(&m)]).success();
    assert_eq!(env.consume_one("q", &[])["id"], b);
    assert_consistent(&env, "after the change");
}

// ---------------------------------------------------------------- retention

#[test]
fn retention_0_leaves_nothing_to_replay() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retention", "0"])
        .success();
    env.publish("q", "1");
    consume_and_ack(&env, "q");
    assert_eq!(count(&env, "SELECT count(*) FROM deliveries"), 0);
    assert_eq!(count(&env, "SELECT count(*) FROM messages"), 0);
    assert_eq!(env.run(&["replay", "q", "--acked"]).success().stdout, "0\n");
    assert!(env.consume("q", &[]).is_empty());
}

#[test]
fn retention_of_1s_removes_acked_messages_after_it_passes() {
    let env = Env::new();
    for q in ["a", "b"] {
        env.run(&["queue", "create", q, "--retention", "1s"])
            .success();
        env.publish(q, "1");
        consume_and_ack(&env, q);
    }
    // Only writes to queue a sweep it, so its acked row stays until one comes.
    let acked_in_a = "SELECT count(*) FROM deliveries WHERE state = 3 AND queue_id = 1";
    assert_eq!(count(&env, acked_in_a), 1);
    let b_leased = {
        env.publish("b", "2");
        env.consume_one("b", &["--visibility", "1h"])
    };
    std::thread::sleep(Duration::from_millis(1200));
    // Readers see them gone at once; rows go with the next write to the queue.
    assert!(
        env.run(&["peek", "a", "--state", "acked"])
            .success()
            .stdout
            .is_empty()
    );
    assert_eq!(
        env.run(&["replay", "a", "--acked", "--dry-run"])
            .success()
            .stdout,
        "0\n"
    );
    // A publish sweeps queue a.
    env.publish("a", "2");
    assert_eq!(count(&env, acked_in_a), 0);
    // An ack sweeps queue b. (On PostgreSQL an ack is one statement that
    // leaves the sweep to the queue's next full transaction: a claim, say.)
    env.run(&["ack", receipt(&b_leased)]).success();
    if on_postgres() {
        assert!(env.consume("b", &[]).is_empty());
    }
    let b_id = b_leased["id"].as_i64().unwrap();
    assert_eq!(
        count(
            &env,
            &format!("SELECT count(*) FROM deliveries WHERE queue_id = 2 AND msg_id != {b_id}")
        ),
        0
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM messages"),
        2,
        "orphaned bodies removed"
    );
    assert_consistent(&env, "after the change");
}

#[test]
fn deleted_rows_hand_free_pages_back_to_the_file_system() {
    if sqlite_only("free pages of the file") {
        return;
    }
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retention", "0"])
        .success();
    let body = format!("\"{}\"", "x".repeat(2000));
    let input: String = (0..3000).map(|_| format!("{body}\n")).collect();
    env.run_with_input(&["publish", "q"], input).success();
    let full = std::fs::metadata(&env.db).unwrap().len();
    assert!(full > 6_000_000, "{full}");
    for _ in 0..6 {
        env.run(&["consume", "q", "-n", "500", "--ack"]).success();
    }
    assert_eq!(count(&env, "SELECT count(*) FROM messages"), 0);
    let free = count(&env, "PRAGMA freelist_count");
    let emptied = std::fs::metadata(&env.db).unwrap().len();
    assert!(
        emptied < full / 4,
        "file stayed at {emptied} of {full} bytes ({free} free pages)"
    );
}

// ---------------------------------------------------------------- queue delete

#[test]
fn queue_delete_refuses_a_queue_with_messages_and_keeps_them() {
    let env = Env::new();
    let id = env.publish("q", "1");
    let run = env.run(&["queue", "delete", "q"]);
    run.code(2).stderr_has("--force");
    assert_eq!(env.state_of("q", id), Some(0));
    assert_eq!(env.consume_one("q", &[])["id"], id);
    env.run(&["queue", "delete", "nope"]).code(3);
}

#[test]
fn queue_delete_refuses_dead_messages_but_not_acked_ones() {
    let env = Env::new();
    env.run(&["queue", "create", "dead", "--max-attempts", "1"])
        .success();
    env.publish("dead", "1");
    kill_one(&env, "dead", 1);
    env.run(&["queue", "delete", "dead"]).code(2);
    env.publish("done", "1");
    consume_and_ack(&env, "done");
    env.run(&["queue", "delete", "done"]).success();
    let names = env.run(&["queue", "list"]).success().json_lines();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0]["name"], "dead");
}

#[test]
fn queue_delete_force_removes_everything_it_owned() {
    let env = Env::new();
    publish_with(&env, "q", &["--group", "g"], "1");
    publish_with(&env, "q", &["--group", "g"], "2");
    env.publish("q", "3");
    env.consume_one("q", &[]);
    let shared = env.publish("keep", "\"shared\"");
    consume_and_ack(&env, "keep");
    env.run(&["replay", "keep", "--acked", "--to", "q"])
        .success();
    let run = env.run(&["queue", "delete", "q", "--force"]);
    run.success().stderr_has("4 message");
    // The tables keyed by queue (group heads and rates have other names on
    // PostgreSQL, which keeps its rates with the counts in `stats`).
    let tables = if on_postgres() {
        ["deliveries", "group_heads", "stats"]
    } else {
        ["deliveries", "groups", "rates"]
    };
    for table in tables {
        let n = count(
            &env,
            &format!("SELECT count(*) FROM {table} WHERE queue_id NOT IN (SELECT id FROM queues)"),
        );
        assert_eq!(n, 0, "{table} rows of the deleted queue remain");
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM messages"),
        1,
        "only the shared body stays"
    );
    assert_eq!(env.state_of("keep", shared), Some(3));
    env.run(&["peek", "q"]).code(3);
    // The name can be used again, fresh.
    env.publish("q", "4");
    assert_eq!(
        env.run(&["stats", "q"])
            .success()
            .stdout
            .matches("\"ready\":1")
            .count(),
        1
    );
    assert_consistent(&env, "after the change");
}

#[test]
fn queue_delete_of_a_subscriber_removes_its_subscription() {
    let env = Env::new();
    env.run(&["queue", "create", "a"]).success();
    env.run(&["queue", "create", "b"]).success();
    env.run(&["subscribe", "t", "a"]).success();
    env.run(&["subscribe", "t", "b"]).success();
    assert_eq!(count(&env, "SELECT count(*) FROM subscriptions"), 2);
    env.run(&["queue", "delete", "a"]).success();
    assert_eq!(count(&env, "SELECT count(*) FROM subscriptions"), 1);
    env.run(&["queue", "delete", "t"]).success();
    assert_eq!(count(&env, "SELECT count(*) FROM subscriptions"), 0);
}

// ---------------------------------------------------------------- queue purge

#[test]
fn queue_purge_keeps_leased_messages_by_default() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    env.publish("q", "\"dead\"");
    kill_one(&env, "q", 1);
    env.publish("q", "\"acked\"");
    consume_and_ack(&env, "q");
    env.publish("q", "\"leased\"");
    let leased = env.consume_one("q", &[]);
    env.publish("q", "\"ready\"");
    publish_with(&env, "q", &["--delay", "1h"], "\"delayed\"");
    let run = env.run(&["queue", "purge", "q"]);
    assert_eq!(run.success().stdout, "4\n");
    let left = env
        .run(&["peek", "q", "--state", "all"])
        .success()
        .json_lines();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["state"], "leased");
    env.run(&["ack", receipt(&leased)]).success();
    assert_consistent(&env, "after the change");
}

#[test]
fn queue_purge_by_state() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    env.publish("q", "1");
    kill_one(&env, "q", 1);
    env.publish("q", "2");
    env.consume_one("q", &[]);
    env.publish("q", "3");
    assert_eq!(
        env.run(&["queue", "purge", "q", "--state", "dead"])
            .success()
            .stdout,
        "1\n"
    );
    assert_eq!(
        env.run(&["queue", "purge", "q", "--state", "leased"])
            .success()
            .stdout,
        "1\n"
    );
    let left = env
        .run(&["peek", "q", "--state", "all"])
        .success()
        .json_lines();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["state"], "ready");
    let json = env.run(&["--json", "queue", "purge", "q", "--state", "all"]);
    let v: Value = serde_json::from_str(&json.success().stdout).unwrap();
    assert_eq!(v["purged"], 1);
    assert_eq!(count(&env, "SELECT count(*) FROM messages"), 0);
    env.run(&["queue", "purge", "nope"]).code(3);
    assert_consistent(&env, "after the change");
}

#[test]
fn queue_purge_of_a_group_head_releases_the_next_message() {
    let env = Env::new();
    publish_with(&env, "q", &["--group", "g"], "1");
    let next = publish_with(&env, "q", &["--group", "g"], "2");
    assert_eq!(
        env.run(&["queue", "purge", "q", "--state", "ready"])
            .success()
            .stdout,
        "1\n"
    );
    assert_eq!(env.state_of("q", next), Some(0));
    assert_eq!(env.consume_one("q", &[])["id"], next);
    assert_consistent(&env, "after the change");
}

#[test]
fn large_replays_and_purges_show_progress_on_a_terminal_only() {
    let env = Env::new();
    let input: String = (0..25_000).map(|i| format!("{i}\n")).collect();
    env.run_with_input(&["publish", "q", "-q"], &input)
        .success();
    env.run(&["consume", "q", "-n", "25000", "--ack"]).success();
    let on_tty = |args: &[&str]| {
        Run::from(
            env.cmd()
                .env("SPOOL_TEST_TERMINAL", "stderr")
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let replay = on_tty(&["replay", "q", "--acked"]);
    replay.success();
    assert!(
        replay.stderr.contains("replaying"),
        "{:?}",
        &replay.stderr[..replay.stderr.len().min(300)]
    );
    assert_eq!(replay.stdout.trim(), "25000");
    let purge = on_tty(&["queue", "purge", "q"]);
    assert!(purge.stderr.contains("purging"));
    let quiet = on_tty(&["queue", "purge", "q", "-q"]);
    assert!(quiet.stderr.is_empty());
    env.run_with_input(&["publish", "q", "-q"], &input)
        .success();
    let piped = env.run(&["queue", "purge", "q"]);
    assert!(
        !piped.stderr.contains("purging"),
        "no bar when stderr is not a terminal"
    );
}

/// Regression: on PostgreSQL, `queue delete`, `queue purge` and `replay`
/// looked for the database as a file, found none, and called every queue
/// unknown. They act on the queue; on a database not created yet, the queue
/// is unknown and the database stays uncreated, on either backend.
#[test]
fn delete_purge_and_replay_act_on_the_queue_and_never_create_the_database() {
    let env = Env::new();
    for args in [
        &["queue", "delete", "q"][..],
        &["queue", "purge", "q"],
        &["replay", "q", "--dead"],
    ] {
        env.run(args).code(3).stderr_has("no queue named `q`");
    }
    assert!(!env.database_exists(), "created for an unknown queue");
    env.publish("q", "1");
    consume_and_ack(&env, "q");
    assert_eq!(env.run(&["replay", "q", "--acked"]).success().stdout, "1\n");
    assert_eq!(env.run(&["queue", "purge", "q"]).success().stdout, "1\n");
    env.run(&["queue", "delete", "q"]).success();
    env.run(&["queue", "delete", "q"]).code(3);
    env.run(&["replay", "q", "--acked"]).code(3);
    assert_consistent(&env, "after the delete");
}
