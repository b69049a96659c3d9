//! Topics: subscribe, unsubscribe, fan-out, keys and headers on topics.

use serde_json::{Value, json};

use crate::common::*;

const SERVICES: [&str; 3] = ["payment", "inventory", "shipping"];

/// A database with topic `orders` subscribed by payment, inventory and shipping.
fn shop() -> Env {
    let env = Env::new();
    for queue in SERVICES {
        env.run(&["subscribe", "orders", queue]).success();
    }
    env
}

fn count(env: &Env, sql: &str) -> i64 {
    env.count(sql)
}

#[test]
fn fan_out_gives_the_same_id_and_body_in_each_queue() {
    let env = shop();
    let first = env.publish("orders", r#"{"type":"OrderPlaced","order_id":"A-1"}"#);
    let second = env.publish("orders", r#"{"type":"OrderPlaced","order_id":"A-2"}"#);
    assert!(second > first);
    for queue in SERVICES {
        let got = env.consume(queue, &["-n", "10"]);
        let ids: Vec<i64> = got.iter().map(|m| m["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [first, second], "{queue}");
        assert_eq!(got[0]["queue"], queue);
        assert_eq!(got[0]["attempt"], 1);
        assert_eq!(got[0]["body"]["order_id"], "A-1");
        assert_eq!(got[1]["body"]["order_id"], "A-2");
    }
    // Bodies are stored once; each queue has its own delivery row.
    assert_eq!(count(&env, "SELECT count(*) FROM messages"), 2);
    assert_eq!(count(&env, "SELECT count(*) FROM deliveries"), 6);
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM deliveries WHERE queue_id = (SELECT id FROM queues WHERE name = 'orders')"
        ),
        0,
        "the topic itself holds nothing"
    );
}

#[test]
fn acking_in_one_queue_leaves_the_others_untouched() {
    let env = shop();
    let id = env.publish("orders", r#"{"order_id":"A-1"}"#);
    let paid = env.consume_one("payment", &[]);
    env.run(&["ack", receipt(&paid)]).success();
    let shipping = env.consume_one("shipping", &[]);
    env.run(&["nack", receipt(&shipping)]).success();
    assert_eq!(env.state_of("payment", id), Some(3), "acked");
    assert_eq!(env.state_of("inventory", id), Some(0), "still ready");
    assert_eq!(env.state_of("shipping", id), Some(0), "ready again");
    assert!(env.consume("payment", &[]).is_empty());
    assert_eq!(env.consume_one("inventory", &[])["attempt"], 1);
    assert_eq!(
        env.consume_one("shipping", &[])["attempt"],
        2,
        "attempts are per queue"
    );
}

#[test]
fn the_body_stays_until_the_last_queue_lets_go_of_it() {
    let env = Env::new();
    for queue in ["a", "b"] {
        env.run(&["queue", "create", queue, "--retention", "0"])
            .success();
        env.run(&["subscribe", "t", queue]).success();
    }
    env.publish("t", r#"{"n":1}"#);
    let a = env.consume_one("a", &[]);
    env.run(&["ack", receipt(&a)]).success();
    assert_eq!(count(&env, "SELECT count(*) FROM messages"), 1);
    let b = env.consume_one("b", &[]);
    assert_eq!(b["body"], json!({"n": 1}));
    env.run(&["ack", receipt(&b)]).success();
    assert_eq!(count(&env, "SELECT count(*) FROM messages"), 0);
}

#[test]
fn unsubscribe_stops_new_copies_but_keeps_what_was_delivered() {
    let env = shop();
    let before = env.publish("orders", r#"{"order_id":"A-1"}"#);
    env.run(&["unsubscribe", "orders", "inventory"]).success();
    let after = env.publish("orders", r#"{"order_id":"A-2"}"#);
    let inventory = env.consume("inventory", &["-n", "10"]);
    assert_eq!(inventory.len(), 1);
    assert_eq!(inventory[0]["id"], before);
    let payment = env.consume("payment", &["-n", "10"]);
    let ids: Vec<&Value> = payment.iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, [&json!(before), &json!(after)]);
    // The receipt from before the unsubscribe still works.
    env.run(&["ack", receipt(&inventory[0])]).success();
}

#[test]
fn a_queue_subscribed_later_gets_only_later_messages() {
    let env = Env::new();
    env.run(&["subscribe", "orders", "payment"]).success();
    env.publish("orders", "1");
    env.run(&["subscribe", "orders", "audit"]).success();
    let later = env.publish("orders", "2");
    let audit = env.consume("audit", &["-n", "10"]);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["id"], later);
}

#[test]
fn the_topic_name_itself_delivers_nothing() {
    let env = shop();
    env.publish("orders", "1");
    let run = env.run(&["consume", "orders"]);
    run.code(1)
        .stderr_has("`orders` is a topic")
        .stderr_has("`payment`")
        .stderr_has("`shipping`");
    assert!(run.stdout.is_empty());
    assert_eq!(
        env.state_of("payment", 1),
        Some(0),
        "nothing was leased anywhere"
    );
}

#[test]
fn publishing_to_a_queue_directly_does_not_reach_the_topics_other_queues() {
    let env = shop();
    let id = env.publish("payment", "\"refund\"");
    assert_eq!(env.consume_one("payment", &[])["id"], id);
    assert!(env.consume("inventory", &[]).is_empty());
}

#[test]
fn publishing_to_a_topic_without_subscribers_exits_3_and_names_the_fix() {
    let env = Env::new();
    env.run(&["subscribe", "orders", "payment"]).success();
    let run = env.run(&["unsubscribe", "orders", "payment"]);
    run.success().stderr_has("no subscribers");
    let run = env.run(&["publish", "orders", "1"]);
    run.code(3)
        .stderr_has("`orders` has no subscribers")
        .stderr_has("spool subscribe orders QUEUE");
    assert!(run.stdout.is_empty());
    env.run_with_input(&["publish", "orders"], "1\n2\n").code(3);
    assert_eq!(count(&env, "SELECT count(*) FROM messages"), 0);
    assert_eq!(env.next_message_id(), 1, "a refused publish takes no id");
    // Still a topic: it can get subscribers again.
    env.run(&["subscribe", "orders", "shipping"]).success();
    env.publish("orders", "3");
    assert_eq!(env.consume_one("shipping", &[])["body"], 3);
}

#[test]
fn a_key_on_a_topic_deduplicates_at_topic_scope() {
    let env = shop();
    let first = env.run(&["publish", "orders", "--key", "A-1", "{\"v\":1}"]);
    let again = env.run(&["publish", "orders", "--key", "A-1", "{\"v\":2}"]);
    assert_eq!(first.success().ids(), again.success().ids());
    for queue in SERVICES {
        let got = env.consume(queue, &["-n", "10"]);
        assert_eq!(got.len(), 1, "{queue}");
        assert_eq!(got[0]["body"], json!({"v": 1}));
        assert_eq!(got[0]["key"], "A-1");
    }
    // The same key published to one of the queues directly is another scope.
    let direct = env.run(&["publish", "payment", "--key", "A-1", "{\"v\":3}"]);
    assert_ne!(direct.success().ids(), first.ids());
    // Keys from stdin dedupe within the batch and against the topic's history.
    let run = env.run_with_input(
        &["publish", "orders", "--key-from", "/id"],
        "{\"id\":\"A-1\"}\n{\"id\":\"A-2\"}\n{\"id\":\"A-2\"}\n",
    );
    let ids = run.success().ids();
    assert_eq!(ids[0], first.ids()[0]);
    assert_eq!(ids[1], ids[2]);
    assert_eq!(env.consume("inventory", &["-n", "10"]).len(), 1);
}

#[test]
fn headers_round_trip_through_a_topic() {
    let env = shop();
    env.run(&[
        "publish",
        "orders",
        "--header",
        "source=web-shop",
        "--header",
        "trace-id=4bf9=2",
        "--header",
        "note=grüße, 注文",
        "{}",
    ])
    .success();
    let expected = json!({"source": "web-shop", "trace-id": "4bf9=2", "note": "grüße, 注文"});
    for queue in SERVICES {
        assert_eq!(env.consume_one(queue, &[])["headers"], expected, "{queue}");
    }
    env.publish("orders", "{}");
    assert_eq!(
        env.consume_one("payment", &[])["headers"],
        json!({}),
        "no headers: an empty object"
    );
}

#[test]
fn subscribe_creates_topic_and_queue_and_twice_is_a_no_op() {
    let env = Env::new();
    env.run(&["subscribe", "orders", "payment"]).success();
    let run = env.run(&["subscribe", "orders", "payment"]);
    run.success();
    assert!(run.stdout.is_empty() && run.stderr.is_empty(), "{run:?}");
    assert_eq!(count(&env, "SELECT count(*) FROM subscriptions"), 1);
    assert_eq!(
        count(&env, "SELECT is_topic FROM queues WHERE name = 'orders'"),
        1
    );
    assert_eq!(
        count(&env, "SELECT is_topic FROM queues WHERE name = 'payment'"),
        0
    );
    // The queue is an ordinary queue: it has settings and can be consumed.
    env.run(&["queue", "set", "payment", "--visibility", "1m"])
        .success();
    // The topic is not a queue.
    env.run(&["queue", "create", "orders"])
        .code(2)
        .stderr_has("`orders` is a topic");
}

#[test]
fn an_existing_empty_queue_can_become_a_topic_and_keeps_its_subscribers_settings() {
    let env = Env::new();
    env.run(&["queue", "create", "orders"]).success();
    env.run(&["queue", "create", "payment", "--max-attempts", "1"])
        .success();
    env.run(&["subscribe", "orders", "payment"]).success();
    env.publish("orders", "1");
    let m = env.consume_one("payment", &[]);
    env.run(&["nack", receipt(&m)]).success();
    assert_eq!(
        env.state_of("payment", 1),
        Some(4),
        "payment's own max_attempts applies"
    );
}

#[test]
fn a_queue_holding_messages_cannot_become_a_topic() {
    let env = Env::new();
    env.publish("orders", "1");
    env.run(&["subscribe", "orders", "payment"])
        .code(2)
        .stderr_has("`orders` is a queue that holds messages");
    // Acked messages kept for replay count too.
    let m = env.consume_one("orders", &[]);
    env.run(&["ack", receipt(&m)]).success();
    env.run(&["subscribe", "orders", "payment"]).code(2);
    assert_eq!(
        count(&env, "SELECT count(*) FROM queues WHERE name = 'payment'"),
        0,
        "a refused subscribe changes nothing"
    );
    assert_eq!(count(&env, "SELECT count(*) FROM subscriptions"), 0);
}

#[test]
fn topics_do_not_subscribe_to_topics_and_queues_not_to_themselves() {
    let env = shop();
    env.run(&["subscribe", "events", "orders"])
        .code(2)
        .stderr_has("`orders` is a topic, and a topic cannot subscribe to another topic");
    env.run(&["subscribe", "payment", "refunds"])
        .code(2)
        .stderr_has("`payment` is a queue subscribed to `orders`");
    env.run(&["subscribe", "audit", "audit"])
        .code(2)
        .stderr_has("cannot subscribe to itself");
    let names: Vec<String> = env
        .rows("SELECT name FROM queues ORDER BY name", &[])
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["inventory", "orders", "payment", "shipping"]);
    env.run(&["subscribe", "orders", "bad name"]).code(2);
}

#[test]
fn unsubscribing_what_is_not_subscribed_exits_3() {
    let env = shop();
    env.run(&["queue", "create", "audit"]).success();
    env.run(&["unsubscribe", "orders", "audit"])
        .code(3)
        .stderr_has("`audit` is not subscribed to `orders`")
        .stderr_has("`inventory`, `payment`, `shipping`");
    env.run(&["unsubscribe", "orders", "nosuch"]).code(3);
    env.run(&["unsubscribe", "payment", "audit"])
        .code(3)
        .stderr_has("`payment` is not a topic");
    env.run(&["unsubscribe", "nosuch", "payment"]).code(3);
    assert_eq!(count(&env, "SELECT count(*) FROM subscriptions"), 3);
    env.run(&["unsubscribe", "orders", "payment"]).success();
    env.run(&["unsubscribe", "orders", "payment"]).code(3);
}

#[test]
fn a_topic_takes_the_smallest_max_size_of_its_subscribers() {
    let env = Env::new();
    env.run(&["queue", "create", "small", "--max-size", "16"])
        .success();
    env.run(&["queue", "create", "big", "--max-size", "4MiB"])
        .success();
    env.run(&["subscribe", "t", "small"]).success();
    env.run(&["subscribe", "t", "big"]).success();
    env.run(&["publish", "t", "\"0123456789abcdef\""]).code(65);
    assert!(env.consume("big", &[]).is_empty(), "nothing published");
    env.run(&["unsubscribe", "t", "small"]).success();
    // The topic's own (default 1 MiB) setting does not cap what its
    // subscribers accept.
    let body = format!("\"{}\"", "x".repeat(2 << 20));
    env.run_with_input(&["publish", "t"], body).success();
    assert_eq!(env.consume("big", &[]).len(), 1);
}

#[test]
fn counters_count_every_subscriber() {
    let env = shop();
    env.run_with_input(&["publish", "orders"], "1\n2\n3\n")
        .success();
    // The counters spool keeps, as `doctor` and `stats` read them.
    let counters = env.counters();
    let row = |name: &str| -> (i64, i64) {
        let n = counters[name];
        (n[0], n[6])
    };
    for queue in SERVICES {
        assert_eq!(row(queue), (3, 3), "{queue}");
    }
    assert_eq!(
        row("orders"),
        (0, 3),
        "the topic counts what was published to it"
    );
    assert_consistent(&env, "after the fan-out");
}

#[test]
fn replay_to_another_queue_keeps_the_fan_out_id() {
    let env = Env::new();
    env.run(&["subscribe", "orders", "payment"]).success();
    env.run(&["subscribe", "orders", "shipping"]).success();
    let id = env.publish("orders", r#"{"order":"A-17"}"#);
    let paid = env.consume_one("payment", &[]);
    env.run(&["ack", receipt(&paid)]).success();
    // Feed payment's history to a new consumer: the same id and body.
    let replay = env.run(&["replay", "payment", "--acked", "--to", "audit", "--json"]);
    replay.success();
    let report: serde_json::Value = serde_json::from_str(replay.stdout.trim()).unwrap();
    assert_eq!(report["ids"], serde_json::json!([id]));
    let copy = env.consume_one("audit", &[]);
    assert_eq!(copy["id"], id);
    assert_eq!(copy["body"], serde_json::json!({"order": "A-17"}));
    assert_eq!(copy["attempt"], 1);
    // The originals are untouched: acked in payment, still ready in shipping.
    assert_eq!(env.state_of("payment", id), Some(3));
    assert_eq!(env.state_of("shipping", id), Some(0));
    // Replaying into a queue that already holds the id skips it.
    let again = env.run(&["replay", "payment", "--acked", "--to", "shipping", "--json"]);
    let report: serde_json::Value = serde_json::from_str(again.stdout.trim()).unwrap();
    assert_eq!(report["skipped"], serde_json::json!([id]));
    let bodies = count(&env, "SELECT count(*) FROM messages");
    assert_eq!(bodies, 1, "the body is still stored once");
}
