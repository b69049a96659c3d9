//! Ordered groups: one message of a group at a time, in id order, while other
//! groups go on; per queue when a topic fans a group out.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Publishes `body` to `queue` in `group` and returns its id.
fn publish_in(env: &Env, queue: &str, group: &str, body: &str) -> i64 {
    let run = env.run(&["publish", queue, "--group", group, body]);
    run.success();
    run.ids()[0]
}

fn ids(msgs: &[Value]) -> Vec<i64> {
    msgs.iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

#[test]
fn a_group_delivers_in_order_one_at_a_time_while_other_groups_go_on() {
    let env = Env::new();
    let a1 = publish_in(&env, "q", "A", "\"a1\"");
    let b1 = publish_in(&env, "q", "B", "\"b1\"");
    let a2 = publish_in(&env, "q", "A", "\"a2\"");
    let free = env.publish("q", "\"no group\"");
    let a3 = publish_in(&env, "q", "A", "\"a3\"");
    let b2 = publish_in(&env, "q", "B", "\"b2\"");

    // One message per group, plus the ungrouped one.
    let first = env.consume("q", &["-n", "10"]);
    assert_eq!(ids(&first), [a1, b1, free]);
    assert_eq!(first[0]["group"], "A");
    assert!(
        env.consume("q", &["-n", "10"]).is_empty(),
        "a leased head holds back the rest of its group"
    );

    // Acking B's head lets b2 go; A still waits for a1.
    env.run(&["ack", receipt(&first[1])]).success();
    assert_eq!(ids(&env.consume("q", &["-n", "10"])), [b2]);

    env.run(&["ack", receipt(&first[0])]).success();
    let next = env.consume_one("q", &["-n", "10"]);
    assert_eq!(next["id"], a2);
    env.run(&["ack", receipt(&next)]).success();
    assert_eq!(env.consume_one("q", &["-n", "10"])["id"], a3);
}

#[test]
fn the_first_message_of_a_group_goes_first_whatever_the_priorities() {
    let env = Env::new();
    let low = publish_in(&env, "q", "G", "\"low\"");
    env.run(&[
        "publish",
        "q",
        "--group",
        "G",
        "--priority",
        "100",
        "\"high\"",
    ])
    .success();
    assert_eq!(env.consume_one("q", &["-n", "10"])["id"], low);
}

#[test]
fn a_nack_delayed_head_holds_its_group_back() {
    let env = Env::new();
    let a1 = publish_in(&env, "q", "A", "1");
    let a2 = publish_in(&env, "q", "A", "2");
    let b1 = publish_in(&env, "q", "B", "3");
    let head = env.consume_one("q", &[]);
    assert_eq!(head["id"], a1);
    env.run(&["nack", receipt(&head), "--delay", "1h"])
        .success();
    let got = env.consume("q", &["-n", "10"]);
    assert_eq!(ids(&got), [b1], "a2 must wait behind the delayed a1");
    assert_eq!(env.state_of("q", a2), Some(5), "held");
}

#[test]
fn a_head_whose_lease_ran_out_comes_back_before_the_rest_of_its_group() {
    let env = Env::new();
    let a1 = publish_in(&env, "q", "A", "1");
    publish_in(&env, "q", "A", "2");
    env.consume_one("q", &["--visibility", "200ms"]);
    std::thread::sleep(Duration::from_millis(400));
    let again = env.consume("q", &["-n", "10"]);
    assert_eq!(ids(&again), [a1]);
    assert_eq!(again[0]["attempt"], 2);
}

#[test]
fn a_nacked_head_is_redelivered_before_the_rest_of_its_group() {
    let env = Env::new();
    let a1 = publish_in(&env, "q", "A", "1");
    publish_in(&env, "q", "A", "2");
    let head = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&head)]).success();
    assert_eq!(ids(&env.consume("q", &["-n", "10"])), [a1]);
}

#[test]
fn a_head_that_dies_by_nack_releases_the_next_of_its_group() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "1"])
        .success();
    let a1 = publish_in(&env, "q", "A", "1");
    let a2 = publish_in(&env, "q", "A", "2");
    let head = env.consume_one("q", &[]);
    env.run(&["nack", receipt(&head)]).success();
    assert_eq!(env.state_of("q", a1), Some(4), "dead");
    assert_eq!(env.consume_one("q", &["-n", "10"])["id"], a2);
}

#[test]
fn a_head_that_dies_by_running_out_of_leases_releases_the_next_of_its_group() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--max-attempts", "2"])
        .success();
    let a1 = publish_in(&env, "q", "A", "1");
    let a2 = publish_in(&env, "q", "A", "2");
    for _ in 0..2 {
        assert_eq!(env.consume_one("q", &["--visibility", "200ms"])["id"], a1);
        std::thread::sleep(Duration::from_millis(400));
    }
    // The claim finds a1's last lease ran out, marks it dead, and hands out a2.
    assert_eq!(env.consume_one("q", &["-n", "10"])["id"], a2);
    assert_eq!(env.state_of("q", a1), Some(4));
}

#[test]
fn acking_with_retention_0_releases_the_group_too() {
    let env = Env::new();
    env.run(&["queue", "create", "q", "--retention", "0"])
        .success();
    publish_in(&env, "q", "A", "1");
    let a2 = publish_in(&env, "q", "A", "2");
    let head = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&head)]).success();
    let next = env.consume_one("q", &[]);
    assert_eq!(next["id"], a2);
    env.run(&["ack", receipt(&next)]).success();
    // consume --ack finishes the head at once and releases the next.
    let a3 = publish_in(&env, "q", "A", "3");
    let a4 = publish_in(&env, "q", "A", "4");
    assert_eq!(env.consume_one("q", &["--ack"])["id"], a3);
    assert_eq!(env.consume_one("q", &["--ack"])["id"], a4);
    // The table of group heads has another name on each backend.
    let table = if on_postgres() {
        "group_heads"
    } else {
        "groups"
    };
    let groups = env.count(&format!("SELECT count(*) FROM {table}"));
    assert_eq!(groups, 0, "a finished group leaves no row behind");
}

#[test]
fn group_from_takes_the_group_from_each_message() {
    let env = Env::new();
    let run = env.run_with_input(
        &["publish", "q", "--group-from", "/customer"],
        "{\"customer\":\"c1\",\"n\":1}\n{\"customer\":7,\"n\":2}\n{\"customer\":\"c1\",\"n\":3}\n",
    );
    let published = run.success().ids();
    let got = env.consume("q", &["-n", "10"]);
    assert_eq!(ids(&got), [published[0], published[1]]);
    assert_eq!(got[0]["group"], "c1");
    assert_eq!(got[1]["group"], "7", "a number is used as its text");
    env.run_with_input(&["publish", "q", "--group-from", "/nope"], "{}\n")
        .code(65);
}

#[test]
fn a_topic_fans_a_group_out_and_each_queue_keeps_its_own_order() {
    let env = Env::new();
    env.run(&["subscribe", "orders", "payment"]).success();
    env.run(&["subscribe", "orders", "shipping"]).success();
    let first = publish_in(&env, "orders", "customer-7", "1");
    let second = publish_in(&env, "orders", "customer-7", "2");

    let paying = env.consume_one("payment", &[]);
    assert_eq!(paying["id"], first);
    // Payment is still busy with the first; shipping moves on independently.
    let shipping = env.consume_one("shipping", &[]);
    env.run(&["ack", receipt(&shipping)]).success();
    assert_eq!(env.consume_one("shipping", &[])["id"], second);
    assert!(
        env.consume("payment", &[]).is_empty(),
        "payment's second waits for its first"
    );
    env.run(&["ack", receipt(&paying)]).success();
    assert_eq!(env.consume_one("payment", &[])["id"], second);
}

#[test]
fn a_deduplicated_publish_does_not_join_the_group_twice() {
    let env = Env::new();
    let run = env.run(&["publish", "q", "--group", "A", "--key", "k", "1"]);
    let id = run.success().ids()[0];
    let again = env.run(&["publish", "q", "--group", "A", "--key", "k", "1"]);
    assert_eq!(again.success().ids(), [id]);
    let head = env.consume_one("q", &[]);
    env.run(&["ack", receipt(&head)]).success();
    assert!(env.consume("q", &[]).is_empty());
    let later = publish_in(&env, "q", "A", "2");
    assert_eq!(
        env.consume_one("q", &[])["id"],
        later,
        "the group is free again"
    );
}
