//! JSON Schemas: checks on publish and replay, versions and their history.

use std::time::Duration;

use super::{Fixture, all_states, health_of, ids, max_attempts, publish_one, receipts};
use crate::store::{
    Created, Db, Delivery, Error, NewMessage, ReplayFilter, Result, SchemaChange, SettingsPatch,
};

const ORDER: &str = r#"{
  "type": "object",
  "properties": {"id": {"type": "integer"}, "amount": {"type": "number", "minimum": 0}},
  "required": ["id", "amount"]
}"#;

fn contract(text: &str) -> crate::contract::Contract {
    crate::contract::Contract::compile(text).expect("schema")
}

fn json(body: &str) -> NewMessage<'_> {
    NewMessage {
        body: body.as_bytes(),
        ..NewMessage::default()
    }
}

fn publish_all(db: &mut Db, queue: &str, bodies: &[&str]) -> Result<Vec<i64>> {
    db.publish_batch(queue, |batch| {
        bodies.iter().map(|b| batch.publish(&json(b))).collect()
    })
}

fn versions(ds: &[Delivery]) -> Vec<Option<i64>> {
    ds.iter().map(|d| d.schema_version).collect()
}

pub(super) fn schema_checks_refuse_whole_batches_and_deliveries_record_the_version(
    f: &mut Fixture,
) {
    let order = contract(ORDER);
    let none = SettingsPatch::default();
    assert_eq!(
        f.db.create_queue("orders", &none, Some(&order))
            .expect("create"),
        Created::New
    );
    let mut bodies: Vec<String> = (1..=20)
        .map(|i| format!("{{\"id\":{i},\"amount\":{}}}", if i == 17 { -5 } else { i }))
        .collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    match publish_all(&mut f.db, "orders", &refs) {
        Err(Error::Invalid {
            id: None,
            queue,
            version: 1,
            violation,
        }) => {
            assert_eq!(queue, "orders");
            assert_eq!(violation.pointer, "/amount");
            assert_eq!(
                violation.to_string(),
                "/amount: -5 is less than the minimum of 0"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.count("SELECT count(*) FROM messages"), 0);
    match publish_all(&mut f.db, "orders", &["not json"]) {
        Err(Error::Invalid { violation, .. }) => {
            assert!(violation.reason.contains("not JSON"), "{violation}")
        }
        other => panic!("{other:?}"),
    }
    bodies[16] = "{\"id\":17,\"amount\":17}".into();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let published = publish_all(&mut f.db, "orders", &refs).expect("valid batch");
    assert_eq!(published.len(), 20);
    // Keyed and grouped messages go their own way into the table.
    let grouped = publish_one(
        &mut *f.db,
        "orders",
        NewMessage {
            key: Some("k"),
            group: Some("g"),
            ..json("{\"id\":21,\"amount\":0}")
        },
    )
    .expect("keyed");
    let peeked = f.db.peek("orders", &all_states(100)).expect("peek");
    assert_eq!(peeked.len(), 21);
    assert!(peeked.iter().all(|p| p.delivery.schema_version == Some(1)));
    // The full claim, then the one-statement claim of a recent queue.
    let first = f.db.claim("orders", 1, None, false).expect("claim");
    let rest = f.db.claim("orders", 100, None, false).expect("claim");
    assert_eq!(first.len() + rest.len(), 21);
    assert!(ids(&rest).contains(&grouped));
    assert_eq!(versions(&first), [Some(1)]);
    assert!(versions(&rest).iter().all(|v| *v == Some(1)));
    assert_eq!(f.info("orders").schema_version, Some(1));
    let plain = f.publish_n("plain", 1);
    let got = f.db.claim("plain", 1, None, false).expect("claim");
    assert_eq!((ids(&got), versions(&got)), (plain, vec![None]));
    assert_eq!(f.info("plain").schema_version, None);
    f.assert_counts_match("orders");
}

pub(super) fn an_invalid_message_is_refused_even_when_its_key_was_seen(f: &mut Fixture) {
    f.db.create_queue("orders", &SettingsPatch::default(), Some(&contract(ORDER)))
        .expect("create");
    let keyed = |body| NewMessage {
        key: Some("k"),
        ..json(body)
    };
    let id = f
        .publish("orders", keyed("{\"id\":1,\"amount\":1}"))
        .expect("first");
    assert!(matches!(
        f.publish("orders", keyed("{\"id\":1,\"amount\":-1}")),
        Err(Error::Invalid { .. })
    ));
    let again = f
        .publish("orders", keyed("{\"id\":1,\"amount\":1}"))
        .expect("again");
    assert_eq!(again, id);
    assert_eq!(f.count("SELECT count(*) FROM messages"), 1);
}

pub(super) fn raw_bodies_are_refused_where_a_schema_is_in_force(f: &mut Fixture) {
    let none = SettingsPatch::default();
    f.db.create_queue("orders", &none, Some(&contract(ORDER)))
        .expect("create");
    let raw = NewMessage {
        body: b"hello",
        raw: true,
        ..NewMessage::default()
    };
    match f.publish("orders", raw) {
        Err(Error::RawBody { name, holder }) => {
            assert_eq!((name, holder), ("orders".into(), "orders".into()))
        }
        other => panic!("{other:?}"),
    }
    f.db.subscribe("events", "audit").expect("subscribe");
    f.db.subscribe("events", "orders").expect("subscribe");
    match f.publish("events", raw) {
        Err(e @ Error::RawBody { .. }) => assert!(
            e.to_string().contains(
                "`orders` has a JSON Schema, so messages published to `events` must be JSON"
            ),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.db.schema_holder("events").expect("holder").as_deref(),
        Some("orders")
    );
    assert_eq!(
        f.db.schema_holder("orders").expect("holder").as_deref(),
        Some("orders")
    );
    assert_eq!(f.db.schema_holder("audit").expect("holder"), None);
    assert_eq!(f.db.schema_holder("missing").expect("holder"), None);
    assert_eq!(f.count("SELECT count(*) FROM messages"), 0);
    f.publish("audit", raw).expect("no schema there");
}

pub(super) fn topic_fan_out_meets_the_topic_and_every_subscriber_schema(f: &mut Fixture) {
    for q in ["payment", "inventory", "shipping"] {
        f.db.subscribe("orders", q).expect("subscribe");
    }
    let payment = contract(r#"{"required": ["amount"], "properties": {"amount": {"minimum": 0}}}"#);
    let inventory = contract(r#"{"required": ["sku"], "properties": {"sku": {"type": "string"}}}"#);
    let topic = contract(r#"{"type": "object"}"#);
    let none = SettingsPatch::default();
    let set = |store: &mut Db, q: &str, c| {
        store
            .set_queue(q, &none, SchemaChange::Set(c))
            .expect("set")
            .schema_version
    };
    assert_eq!(set(&mut f.db, "payment", &inventory), Some(1));
    assert_eq!(set(&mut f.db, "payment", &payment), Some(2));
    assert_eq!(set(&mut f.db, "inventory", &inventory), Some(1));
    assert_eq!(set(&mut f.db, "orders", &topic), Some(1));
    let refused = |store: &mut Db, body: &str| match publish_one(&mut **store, "orders", json(body))
    {
        Err(Error::Invalid { queue, version, .. }) => (queue, version),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(&mut f.db, "{\"amount\":5}"),
        ("inventory".into(), 1)
    );
    assert_eq!(
        refused(&mut f.db, "{\"amount\":-1,\"sku\":\"a\"}"),
        ("payment".into(), 2)
    );
    assert_eq!(refused(&mut f.db, "[1]"), ("orders".into(), 1));
    assert_eq!(f.count("SELECT count(*) FROM messages"), 0);
    let id = f
        .publish("orders", json("{\"amount\":5,\"sku\":\"a\"}"))
        .expect("ok");
    let got: Vec<(i64, Option<i64>)> = ["payment", "inventory", "shipping"]
        .iter()
        .map(|q| {
            let d = f.db.claim(q, 1, None, false).expect("claim").remove(0);
            (d.id, d.schema_version)
        })
        .collect();
    assert_eq!(got, [(id, Some(2)), (id, Some(1)), (id, None)]);
    assert_eq!(f.info("orders").schema_version, Some(1));
    // A topic takes a schema but no settings.
    assert!(matches!(
        f.db.set_queue("orders", &max_attempts(3), SchemaChange::Keep),
        Err(Error::NameIsTopic { .. })
    ));
    assert!(matches!(
        f.db.set_queue("orders", &max_attempts(3), SchemaChange::Remove),
        Err(Error::NameIsTopic { .. })
    ));
    assert!(matches!(
        f.db.set_queue("orders", &none, SchemaChange::Keep),
        Err(Error::NameIsTopic { .. })
    ));
    assert_eq!(
        f.db.set_queue("orders", &none, SchemaChange::Remove)
            .expect("remove")
            .schema_version,
        Some(2)
    );
}

pub(super) fn schema_versions_advance_and_history_keeps_removals(f: &mut Fixture) {
    let v1 = contract(r#"{"required": ["a"]}"#);
    let v2 = contract(r#"{"required": ["a", "b"]}"#);
    let v2_again = contract("{\n  \"required\": [\"a\", \"b\"]\n}\n");
    let none = SettingsPatch::default();
    f.db.create_queue("q", &none, Some(&v1)).expect("create");
    let set = |store: &mut Db, change| {
        store
            .set_queue("q", &none, change)
            .expect("set")
            .schema_version
    };
    f.publish("q", json("{\"a\":1}")).expect("v1");
    assert_eq!(set(&mut f.db, SchemaChange::Set(&v2)), Some(2));
    assert_eq!(set(&mut f.db, SchemaChange::Set(&v2_again)), None);
    assert!(matches!(
        f.publish("q", json("{\"a\":1}")),
        Err(Error::Invalid { version: 2, .. })
    ));
    f.publish("q", json("{\"a\":1,\"b\":2}")).expect("v2");
    assert_eq!(set(&mut f.db, SchemaChange::Remove), Some(3));
    assert_eq!(set(&mut f.db, SchemaChange::Remove), None);
    f.publish("q", json("\"anything\"")).expect("none");
    assert_eq!(set(&mut f.db, SchemaChange::Set(&v1)), Some(4));
    f.publish("q", json("{\"a\":2}")).expect("v4");
    let peeked: Vec<Option<i64>> =
        f.db.peek("q", &all_states(10))
            .expect("peek")
            .iter()
            .map(|p| p.delivery.schema_version)
            .collect();
    assert_eq!(peeked, [Some(1), Some(2), None, Some(4)]);
    let claimed = f.db.claim("q", 10, None, false).expect("claim");
    assert_eq!(versions(&claimed), peeked);
    let history = f.db.schema_history("q").expect("history");
    let numbers: Vec<i64> = history.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(history[2].schema, None);
    assert_eq!(history[1].schema.as_deref(), Some(v2.text()));
    assert!(
        history
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );
    assert!(matches!(
        f.db.schema_history("nope"),
        Err(Error::UnknownQueue { .. })
    ));
}

pub(super) fn queue_create_is_a_no_op_with_the_same_schema_and_a_conflict_with_another(
    f: &mut Fixture,
) {
    let none = SettingsPatch::default();
    let order = contract(ORDER);
    let same = contract(&ORDER.replace('\n', " "));
    let other = contract(r#"{"type": "object"}"#);
    f.db.create_queue("orders", &none, Some(&order))
        .expect("create");
    for schema in [Some(&same), None] {
        assert_eq!(
            f.db.create_queue("orders", &none, schema).expect("again"),
            Created::Existed
        );
    }
    assert!(matches!(
        f.db.create_queue("orders", &none, Some(&other)),
        Err(Error::SettingsConflict { .. })
    ));
    f.db.create_queue("plain", &none, None).expect("plain");
    assert!(matches!(
        f.db.create_queue("plain", &none, Some(&other)),
        Err(Error::SettingsConflict { .. })
    ));
    assert_eq!(f.db.schema_history("orders").expect("history").len(), 1);
    assert!(f.db.schema_history("plain").expect("history").is_empty());
}

pub(super) fn queue_delete_removes_the_schemas(f: &mut Fixture) {
    f.db.create_queue("orders", &SettingsPatch::default(), Some(&contract(ORDER)))
        .expect("create");
    f.db.delete_queue("orders", false).expect("delete");
    assert_eq!(f.count("SELECT count(*) FROM schemas"), 0);
    f.publish("orders", json("\"no schema now\""))
        .expect("publish");
    assert!(f.db.schema_history("orders").expect("history").is_empty());
}

pub(super) fn replay_to_a_queue_with_a_schema_checks_every_message(f: &mut Fixture) {
    let msgs = publish_all(
        &mut f.db,
        "history",
        &[
            "{\"id\":1,\"amount\":1}",
            "{\"id\":2,\"amount\":-2}",
            "{\"id\":3,\"amount\":3}",
        ],
    )
    .expect("publish");
    let raw = publish_one(
        &mut *f.db,
        "history",
        NewMessage {
            body: b"text",
            raw: true,
            ..NewMessage::default()
        },
    )
    .expect("raw");
    let got = f.db.claim("history", 10, None, false).expect("claim");
    f.db.ack(&receipts(&got)).expect("ack");
    f.db.create_queue("audit", &SettingsPatch::default(), Some(&contract(ORDER)))
        .expect("audit");
    let acked = |ids: &[i64]| ReplayFilter {
        acked: true,
        ids: ids.to_vec(),
        ..ReplayFilter::default()
    };
    for result in [
        f.db.replay_preview("history", &acked(&[]), Some("audit")),
        f.db.replay("history", &acked(&[]), Some("audit")),
    ] {
        match result {
            Err(e @ Error::Invalid { id: Some(_), .. }) => {
                assert!(
                    e.to_string()
                        .starts_with(&format!("message {}: /amount", msgs[1])),
                    "{e}"
                );
                assert!(e.to_string().contains("`audit`"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
    match f.db.replay("history", &acked(&[raw]), Some("audit")) {
        Err(Error::Invalid { id, violation, .. }) => {
            assert_eq!(id, Some(raw));
            assert!(violation.reason.contains("raw text"), "{violation}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.count("SELECT count(*) FROM deliveries WHERE queue_id = (SELECT id FROM queues WHERE name = 'audit')"),
        0
    );
    let done =
        f.db.replay("history", &acked(&[msgs[0], msgs[2]]), Some("audit"))
            .expect("valid ones");
    assert_eq!(done.ids, [msgs[0], msgs[2]]);
    let replayed = f.db.claim("audit", 10, None, false).expect("claim");
    assert_eq!(versions(&replayed), [Some(1), Some(1)]);
    // In place, a message keeps the version it was published under.
    f.db.set_queue(
        "history",
        &SettingsPatch::default(),
        SchemaChange::Set(&contract("true")),
    )
    .expect("schema");
    f.db.replay("history", &acked(&[msgs[1]]), None)
        .expect("in place");
    let again = f.db.claim("history", 1, None, false).expect("claim");
    assert_eq!((ids(&again), versions(&again)), (vec![msgs[1]], vec![None]));
    f.assert_counts_match("audit");
}

pub(super) fn a_stored_schema_that_no_longer_compiles_is_reported_not_skipped(f: &mut Fixture) {
    f.db.create_queue("orders", &SettingsPatch::default(), Some(&contract(ORDER)))
        .expect("create");
    f.publish("orders", json("{\"id\":1,\"amount\":1}"))
        .expect("publish");
    f.execute("UPDATE schemas SET schema = '{\"type\": 5}'");
    // A fresh connection: the compiled contract is cached per connection.
    let mut fresh = f.open();
    match publish_one(&mut *fresh, "orders", json("{\"id\":2,\"amount\":1}")) {
        Err(e @ Error::BrokenSchema { .. }) => {
            assert!(
                e.to_string().contains("schema version 1 of `orders`"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    let health = health_of(&fresh);
    assert!(!health.healthy);
    assert_eq!(health.broken_schemas.len(), 1);
    assert_eq!(
        (
            health.broken_schemas[0].queue.as_str(),
            health.broken_schemas[0].version
        ),
        ("orders", 1)
    );
    fresh
        .set_queue("orders", &SettingsPatch::default(), SchemaChange::Remove)
        .expect("remove");
    publish_one(&mut *fresh, "orders", json("{\"id\":2}")).expect("publish");
    assert!(health_of(&fresh).healthy);
    assert_eq!(f.count("SELECT count(*) FROM messages"), 2);
}

pub(super) fn a_schema_change_waits_for_open_publishes_and_applies_to_the_next(f: &mut Fixture) {
    let none = SettingsPatch::default();
    f.db.create_queue("q", &none, Some(&contract("true")))
        .expect("create");
    let opts = f.options().clone();
    let mut setter = None;
    f.db.publish_batch("q", |batch| -> Result<()> {
        batch.publish(&json("1"))?;
        let opts = opts.clone();
        let handle = std::thread::spawn(move || {
            let mut other = Db::open(&opts).expect("open");
            let c = crate::contract::Contract::compile(r#"{"type": "string"}"#).expect("c");
            other
                .set_queue("q", &SettingsPatch::default(), SchemaChange::Set(&c))
                .expect("set")
                .schema_version
        });
        std::thread::sleep(Duration::from_millis(300));
        // Still waiting for this batch's lock on the queue's name.
        assert!(!handle.is_finished());
        setter = Some(handle);
        Ok(())
    })
    .expect("publish");
    let version = setter.expect("spawned").join().expect("setter");
    assert_eq!(version, Some(2));
    assert!(matches!(
        f.publish("q", json("2")),
        Err(Error::Invalid { version: 2, .. })
    ));
    f.publish("q", json("\"two\"")).expect("meets v2");
    let got = f.db.claim("q", 10, None, false).expect("claim");
    assert_eq!(versions(&got), [Some(1), Some(2)]);
}
