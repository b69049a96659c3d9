//! `examples/order-pipeline`, run end to end with the spool under test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const ORDERS: usize = 30;
const SERVICES: [&str; 3] = ["payment", "inventory", "shipping"];

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/order-pipeline/run.sh")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn order_pipeline_pays_reserves_and_ships_every_order_exactly_once() {
    if sqlite_only("examples/order-pipeline keeps its queues in a file of its own") {
        return;
    }
    let env = Env::new();
    let dir = env.path("pipeline");
    let run = Command::new(example())
        .arg(ORDERS.to_string())
        .arg(&dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.dir.path())
        .env("SPOOL", bin())
        .output()
        .expect("run.sh runs");
    let run = Run::from(run);
    run.success();
    assert!(
        run.stdout.contains(&format!(
            "{ORDERS} paid (10 after a retry), {ORDERS} reserved, {ORDERS} shipped"
        )),
        "{run:?}"
    );

    // The shop got one id per order, and the retried checkout got the same id.
    let events: Vec<i64> = read(&dir.join("events"))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let ids: BTreeSet<i64> = events.iter().copied().collect();
    assert_eq!(events.len(), ORDERS);
    assert_eq!(ids.len(), ORDERS, "one event per order");

    for service in SERVICES {
        // One record per event, each written once: handled exactly once.
        let records = std::fs::read_dir(dir.join(service)).unwrap();
        let mut handled = BTreeSet::new();
        for record in records {
            let path = record.unwrap().path();
            let id: i64 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
            assert_eq!(read(&path).lines().count(), 1, "{service} {id}");
            handled.insert(id);
        }
        assert_eq!(handled, ids, "{service} handled every event");

        // Each customer's orders were handled in the order placed (groups).
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let log = read(&dir.join(format!("{service}.log")));
        assert_eq!(log.lines().count(), ORDERS, "{service}: {log}");
        for line in log.lines() {
            let (id, customer) = line.split_once(' ').unwrap();
            let id: i64 = id.parse().unwrap();
            let before = last.insert(customer.to_owned(), id);
            assert!(
                before < Some(id),
                "{service}: {customer} {before:?} then {id}"
            );
        }
    }

    // Payment failed on the first attempt for every third event, and the
    // retry paid it.
    for id in &ids {
        let record = read(&dir.join("payment").join(id.to_string()));
        let attempt = if id % 3 == 0 {
            "attempt 2"
        } else {
            "attempt 1"
        };
        assert!(record.contains(attempt), "{id}: {record}");
    }

    // Every delivery is acked, in every queue, and the topic holds nothing.
    let db = rusqlite::Connection::open(dir.join("spool.db")).unwrap();
    let states: Vec<(String, i64, i64)> = db
        .prepare(
            "SELECT q.name, d.state, count(*) FROM deliveries d JOIN queues q ON q.id = d.queue_id
             GROUP BY q.name, d.state ORDER BY q.name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let n = ORDERS as i64;
    assert_eq!(
        states,
        [
            ("inventory".to_owned(), 3, n),
            ("payment".to_owned(), 3, n),
            ("shipping".to_owned(), 3, n)
        ]
    );
}

#[test]
fn order_pipeline_refuses_to_run_without_spool() {
    let env = Env::new();
    let run = Command::new(example())
        .arg("1")
        .arg(env.path("pipeline"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SPOOL", env.path("no-such-spool"))
        .output()
        .expect("run.sh runs");
    let run = Run::from(run);
    run.code(2).stderr_has("set SPOOL=");
}
