//! Event contracts: JSON Schemas per queue or topic, checked on publish.

use serde_json::Value;

use crate::common::*;

const ORDER: &str = r#"{
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "amount": {"type": "number", "minimum": 0}
  },
  "required": ["id", "amount"]
}"#;

impl Env {
    /// Writes a schema file into the test's folder and returns its path.
    fn schema_file(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// A queue with the ORDER schema.
    fn order_queue(&self, queue: &str) {
        let file = self.schema_file("order.json", ORDER);
        self.run(&["queue", "create", queue, "--schema", &file])
            .success();
    }

    fn show(&self, queue: &str) -> Value {
        let lines = self.run(&["queue", "show", queue]).success().json_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0].clone()
    }
}

#[test]
fn valid_messages_pass_and_consume_returns_the_schema_version() {
    let env = Env::new();
    env.order_queue("orders");
    let run = env.run_with_input(
        &["publish", "orders"],
        "{\"id\":1,\"amount\":0}\n\n{\"id\":2,\"amount\":9.5,\"note\":\"extra fields are fine\"}\n",
    );
    run.success();
    assert_eq!(run.ids(), vec![1, 2]);
    env.run(&["publish", "orders", "{\"id\":3,\"amount\":1}"])
        .success();
    let got = env.consume("orders", &["-n", "10"]);
    assert_eq!(got.len(), 3);
    for msg in &got {
        assert_eq!(msg["schema_version"], 1, "{msg}");
    }
    let keys: Vec<&str> = got[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let at = |k: &str| keys.iter().position(|x| *x == k).unwrap();
    assert_eq!(at("schema_version") + 1, at("body"), "{keys:?}");
    let plain = env.publish("plain", "{\"id\":\"anything\"}");
    let msg = env.consume_one("plain", &[]);
    assert_eq!(msg["id"], plain);
    assert_eq!(msg["schema_version"], Value::Null);
}

#[test]
fn one_invalid_message_refuses_the_whole_batch_naming_line_pointer_and_rule() {
    let env = Env::new();
    env.order_queue("orders");
    let mut input = String::new();
    for i in 1..=20 {
        let amount = if i == 17 { -5 } else { i };
        input.push_str(&format!("{{\"id\":{i},\"amount\":{amount}}}\n"));
    }
    let run = env.run_with_input(&["publish", "orders"], &input);
    run.code(65)
        .stderr_has("line 17: /amount: -5 is less than the minimum of 0")
        .stderr_has("schema version 1 of `orders`");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 0);
    assert!(env.consume("orders", &[]).is_empty());

    let missing = env.run_with_input(
        &["publish", "orders"],
        "{\"id\":1,\"amount\":1}\n{\"id\":2}\n",
    );
    missing
        .code(65)
        .stderr_has("line 2: (root): \"amount\" is a required property");
    let single = env.run(&["publish", "orders", "{\"id\":\"x\",\"amount\":1}"]);
    single
        .code(65)
        .stderr_has("the BODY argument: /id: \"x\" is not of type \"integer\"");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 0);
}

#[test]
fn a_large_batch_written_through_is_refused_whole_too() {
    let env = Env::new();
    env.order_queue("orders");
    // Past the in-memory buffer (100,000 messages), publish writes as it reads.
    let mut input = String::with_capacity(3_000_000);
    for i in 1..=120_000 {
        input.push_str(&format!("{{\"id\":{i},\"amount\":1}}\n"));
    }
    input.push_str("{\"id\":0,\"amount\":\"many\"}\n");
    let run = env.run_with_input(&["publish", "orders", "-q"], &input);
    run.code(65).stderr_has("line 120001: /amount");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 0);
}

#[test]
fn an_invalid_message_is_refused_even_when_its_key_was_seen() {
    let env = Env::new();
    env.order_queue("orders");
    let id = env.run(&["publish", "orders", "--key", "k", "{\"id\":1,\"amount\":1}"]);
    id.success();
    let again = env.run(&[
        "publish",
        "orders",
        "--key",
        "k",
        "{\"id\":1,\"amount\":-1}",
    ]);
    again.code(65).stderr_has("/amount");
    let same = env.run(&["publish", "orders", "--key", "k", "{\"id\":1,\"amount\":1}"]);
    assert_eq!(same.success().stdout, id.stdout);
}

#[test]
fn stream_commits_the_lines_before_an_invalid_one_and_stops_there() {
    let env = Env::new();
    env.order_queue("orders");
    let run = env.run_with_input(
        &["publish", "orders", "--stream"],
        "{\"id\":1,\"amount\":1}\n{\"id\":2,\"amount\":2}\n{\"id\":3,\"amount\":-3}\n{\"id\":4,\"amount\":4}\n",
    );
    run.code(65)
        .stderr_has("line 3: /amount: -3 is less than the minimum of 0")
        .stderr_has("after publishing 2 message(s)");
    assert_eq!(run.ids(), vec![1, 2]);
    let got = env.consume("orders", &["-n", "10"]);
    let ids: Vec<i64> = got
        .iter()
        .map(|m| m["body"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn stream_applies_a_schema_set_meanwhile_from_the_next_commit() {
    use std::io::Write;
    let env = Env::new();
    env.run(&["queue", "create", "orders"]).success();
    let mut child = env
        .cmd()
        .args(["publish", "orders", "--stream"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"id\":1}\n").unwrap();
    stdin.flush().unwrap();
    let first = env.consume_one("orders", &["--wait", "10s"]);
    assert_eq!(first["schema_version"], Value::Null);
    let file = env.schema_file("order.json", ORDER);
    env.run(&["queue", "set", "orders", "--schema", &file])
        .success();
    stdin.write_all(b"{\"id\":2}\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("line 2: (root): \"amount\""), "{stderr}");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 1);
}

#[test]
fn raw_bodies_are_refused_where_a_schema_is_in_force() {
    let env = Env::new();
    env.order_queue("orders");
    let run = env.run(&["publish", "orders", "--raw", "hello"]);
    run.code(2)
        .stderr_has("`orders` has a JSON Schema")
        .stderr_has("--raw");
    let piped = env.run_with_input(&["publish", "orders", "--raw", "--stream"], "a\nb\n");
    piped.code(2);
    env.run(&["subscribe", "events", "orders"]).success();
    env.run(&["subscribe", "events", "audit"]).success();
    let topic = env.run(&["publish", "events", "--raw", "hello"]);
    topic
        .code(2)
        .stderr_has("`orders` has a JSON Schema, so messages published to `events` must be JSON");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 0);
    env.run(&["publish", "audit", "--raw", "plain text is fine here"])
        .success();
}

#[test]
fn topic_fan_out_meets_the_topic_and_every_subscriber_schema() {
    let env = Env::new();
    for q in ["payment", "inventory", "shipping"] {
        env.run(&["subscribe", "orders", q]).success();
    }
    let payment = env.schema_file(
        "payment.json",
        r#"{"required": ["amount"], "properties": {"amount": {"minimum": 0}}}"#,
    );
    let inventory = env.schema_file(
        "inventory.json",
        r#"{"required": ["sku"], "properties": {"sku": {"type": "string"}}}"#,
    );
    let topic = env.schema_file("topic.json", r#"{"type": "object"}"#);
    env.run(&["queue", "set", "payment", "--schema", &inventory])
        .success();
    env.run(&["queue", "set", "payment", "--schema", &payment])
        .success();
    env.run(&["queue", "set", "inventory", "--schema", &inventory])
        .success();
    env.run(&["queue", "set", "orders", "--schema", &topic])
        .success();

    // Fits payment but not inventory: nothing reaches any queue.
    let run = env.run_with_input(
        &["publish", "orders"],
        "{\"amount\":5,\"sku\":\"a\"}\n{\"amount\":5}\n",
    );
    run.code(65)
        .stderr_has("line 2: (root): \"sku\" is a required property")
        .stderr_has("schema version 1 of `inventory`");
    let fails_payment = env.run(&["publish", "orders", "{\"amount\":-1,\"sku\":\"a\"}"]);
    fails_payment
        .code(65)
        .stderr_has("/amount")
        .stderr_has("schema version 2 of `payment`");
    let fails_topic = env.run(&["publish", "orders", "[1]"]);
    fails_topic.code(65).stderr_has("of `orders`");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 0);

    let id = env.publish("orders", "{\"amount\":5,\"sku\":\"a\"}");
    let versions: Vec<(String, Value)> = ["payment", "inventory", "shipping"]
        .iter()
        .map(|q| {
            let msg = env.consume_one(q, &[]);
            assert_eq!(msg["id"], id);
            (q.to_string(), msg["schema_version"].clone())
        })
        .collect();
    assert_eq!(
        versions,
        [
            ("payment".to_string(), Value::from(2)),
            ("inventory".to_string(), Value::from(1)),
            ("shipping".to_string(), Value::Null),
        ]
    );
    // The topic's own schema shows in `queue show`, a topic takes no settings.
    assert_eq!(env.show("orders")["schema_version"], 1);
    env.run(&["queue", "set", "orders", "--visibility", "5s"])
        .code(2)
        .stderr_has("is a topic");
}

#[test]
fn an_invalid_schema_is_refused_and_changes_nothing() {
    let env = Env::new();
    let cases = [
        ("not-json.json", "{\"type\": ", "it is not JSON"),
        (
            "bad-type.json",
            r#"{"type": "nmber"}"#,
            "not a valid JSON Schema",
        ),
        (
            "bad-min.json",
            r#"{"minimum": "zero"}"#,
            "not a valid JSON Schema",
        ),
        ("array.json", "[]", "a schema is a JSON object"),
        (
            "remote.json",
            r#"{"$ref": "https://example.com/order.json"}"#,
            "points outside the schema",
        ),
        (
            "file.json",
            r#"{"$ref": "order.json"}"#,
            "never files or URLs",
        ),
    ];
    for (name, text, reason) in cases {
        let file = env.schema_file(name, text);
        let run = env.run(&["queue", "create", "q", "--schema", &file]);
        run.code(65).stderr_has(name).stderr_has(reason);
    }
    assert!(
        !env.database_exists(),
        "a refused schema created the database"
    );
    let missing = env.path("missing.json");
    let run = env.run(&[
        "queue",
        "create",
        "q",
        "--schema",
        missing.to_str().unwrap(),
    ]);
    run.code(2).stderr_has("missing.json");
    assert!(!env.database_exists());

    // On an existing queue: the schema in force stays.
    env.order_queue("q");
    let before = env.contents();
    let bad = env.schema_file("bad.json", r#"{"type": 5}"#);
    env.run(&["queue", "set", "q", "--schema", &bad]).code(65);
    env.run(&["queue", "set", "q", "--schema", "/nonexistent/x.json"])
        .code(2)
        .stderr_has("/nonexistent/x.json");
    assert_eq!(env.contents(), before);
    let shown = env.show("q");
    assert_eq!(shown["schema_version"], 1);
    assert_eq!(shown["schema_history"].as_array().unwrap().len(), 1);
}

#[test]
fn schema_versions_advance_and_are_returned_by_consume_and_peek() {
    let env = Env::new();
    let v1 = env.schema_file("v1.json", r#"{"required": ["a"]}"#);
    let v2 = env.schema_file("v2.json", r#"{"required": ["a", "b"]}"#);
    let v2_again = env.schema_file("v2-again.json", "{\n  \"required\": [\"a\", \"b\"]\n}\n");
    env.run(&["queue", "create", "q", "--schema", &v1])
        .success();
    env.publish("q", "{\"a\":1}");
    env.run(&["queue", "set", "q", "--schema", &v2])
        .success()
        .stderr_has("schema version 2");
    // The same schema, written differently: no new version.
    let same = env.run(&["queue", "set", "q", "--schema", &v2_again]);
    same.success();
    assert!(same.stderr.is_empty(), "{same:?}");
    env.run(&["publish", "q", "{\"a\":1}"])
        .code(65)
        .stderr_has("\"b\"");
    env.publish("q", "{\"a\":1,\"b\":2}");
    env.run(&["queue", "set", "q", "--no-schema"]).success();
    env.run(&["queue", "set", "q", "--no-schema"]).success();
    env.publish("q", "\"anything\"");
    env.run(&["queue", "set", "q", "--schema", &v1]).success();
    env.publish("q", "{\"a\":2}");

    let peeked: Vec<Value> = env
        .run(&["peek", "q"])
        .success()
        .json_lines()
        .iter()
        .map(|m| m["schema_version"].clone())
        .collect();
    assert_eq!(
        peeked,
        [Value::from(1), Value::from(2), Value::Null, Value::from(4)]
    );
    let consumed: Vec<Value> = env
        .consume("q", &["-n", "10"])
        .iter()
        .map(|m| m["schema_version"].clone())
        .collect();
    assert_eq!(consumed, peeked);

    let shown = env.show("q");
    assert_eq!(shown["schema_version"], 4);
    assert_eq!(shown["schema"], serde_json::json!({"required": ["a"]}));
    let history = shown["schema_history"].as_array().unwrap();
    let numbers: Vec<i64> = history
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(history[2]["schema"], Value::Null);
    assert_eq!(
        history[1]["schema"],
        serde_json::json!({"required": ["a", "b"]})
    );
    assert!(history[0]["created_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn queue_create_is_a_no_op_with_the_same_schema_and_a_conflict_with_another() {
    let env = Env::new();
    env.order_queue("orders");
    let same = env.schema_file("same.json", &ORDER.replace('\n', " "));
    env.run(&["queue", "create", "orders", "--schema", &same])
        .success();
    env.run(&["queue", "create", "orders"]).success();
    let other = env.schema_file("other.json", "{\"type\": \"object\"}");
    env.run(&["queue", "create", "orders", "--schema", &other])
        .code(2)
        .stderr_has("spool queue set orders");
    env.run(&["queue", "create", "plain"]).success();
    env.run(&["queue", "create", "plain", "--schema", &other])
        .code(2);
    assert_eq!(
        env.show("orders")["schema_history"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(env.show("plain")["schema_version"], Value::Null);
}

#[test]
fn queue_show_prints_settings_schema_and_versions() {
    let env = Env::new();
    env.order_queue("orders");
    let shown = env.show("orders");
    assert_eq!(shown["name"], "orders");
    assert_eq!(shown["kind"], "queue");
    assert_eq!(shown["visibility_ms"], 30_000);
    assert_eq!(shown["schema"]["properties"]["amount"]["minimum"], 0);
    let table = env
        .cmd()
        .env("SPOOL_TEST_TERMINAL", "stdout")
        .env("COLUMNS", "100")
        .args(["queue", "show", "orders"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text}");
    assert!(text.contains("visibility     30s"), "{text}");
    assert!(text.contains("schema         version 1"), "{text}");
    assert!(text.contains(ORDER), "the schema as written: {text}");
    assert!(text.contains("Schema versions:"), "{text}");
    let listed = env.run(&["queue", "list"]).success().json_lines();
    assert_eq!(listed[0]["schema_version"], 1);

    env.run(&["queue", "show", "ordres"])
        .code(3)
        .stderr_has("`orders`");
    let fresh = Env::new();
    fresh.run(&["queue", "show", "q"]).code(3);
    assert!(!fresh.database_exists());
}

#[test]
fn queue_delete_removes_the_schemas() {
    let env = Env::new();
    env.order_queue("orders");
    env.run(&["queue", "delete", "orders"]).success();
    assert_eq!(env.count("SELECT count(*) FROM schemas"), 0);
    env.run(&["publish", "orders", "\"no schema now\""])
        .success();
    assert_eq!(env.show("orders")["schema_history"], serde_json::json!([]));
}

#[test]
fn replay_to_a_queue_with_a_schema_checks_every_message() {
    let env = Env::new();
    for body in [
        "{\"id\":1,\"amount\":1}",
        "{\"id\":2,\"amount\":-2}",
        "{\"id\":3,\"amount\":3}",
    ] {
        env.publish("history", body);
    }
    let raw = env.run(&["publish", "history", "--raw", "text"]);
    raw.success();
    for msg in env.consume("history", &["-n", "10"]) {
        env.run(&["ack", receipt(&msg)]).success();
    }
    env.order_queue("audit");
    let run = env.run(&["replay", "history", "--acked", "--to", "audit"]);
    run.code(65)
        .stderr_has("message 2: /amount: -2 is less than the minimum of 0")
        .stderr_has("`audit`");
    let dry = env.run(&["replay", "history", "--acked", "--to", "audit", "--dry-run"]);
    dry.code(65).stderr_has("message 2");
    assert!(env.consume("audit", &[]).is_empty());
    let raw_run = env.run(&["replay", "history", "--acked", "--id", "4", "--to", "audit"]);
    raw_run
        .code(65)
        .stderr_has("message 4")
        .stderr_has("raw text");

    env.run(&[
        "replay", "history", "--acked", "--id", "1", "--id", "3", "--to", "audit",
    ])
    .success();
    let got = env.consume("audit", &["-n", "10"]);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m["schema_version"] == 1), "{got:?}");
    // In place, messages keep the version they were published under.
    env.run(&["replay", "history", "--acked", "--id", "2"])
        .success();
    assert_eq!(
        env.consume_one("history", &[])["schema_version"],
        Value::Null
    );
}

#[test]
fn a_stored_schema_that_no_longer_compiles_is_reported_not_skipped() {
    let env = Env::new();
    env.order_queue("orders");
    env.publish("orders", "{\"id\":1,\"amount\":1}");
    // As if written by another build whose validator accepted it.
    env.exec("UPDATE schemas SET schema = '{\"type\": 5}'");
    env.run(&["publish", "orders", "{\"id\":2,\"amount\":1}"])
        .code(74)
        .stderr_has("schema version 1 of `orders`")
        .stderr_has("spool queue set orders --schema FILE");
    assert_eq!(env.count("SELECT count(*) FROM messages"), 1);
    let doctor = env.run(&["doctor", "--json"]);
    doctor.code(74);
    let report: Value = serde_json::from_str(doctor.stdout.trim()).unwrap();
    assert_eq!(report["broken_schemas"][0]["queue"], "orders");
    assert_eq!(report["broken_schemas"][0]["version"], 1);
    env.run(&["queue", "set", "orders", "--no-schema"])
        .success();
    env.publish("orders", "{\"id\":2}");
    env.run(&["doctor"]).success();
}
