//! Schedules as the readers show them (`stats`, `queue show`) and as
//! `doctor` checks them. Schedules are added through the store's API, the
//! same call `spool schedule add` makes.

use std::time::Duration;

use serde_json::Value;
use spool::store::schedule::{CatchUp, Rule};
use spool::store::{self, Db, ScheduleSpec, Store, Sync};

use crate::common::*;

/// The test's database, open for writing through the store's API.
pub fn open(env: &Env) -> Db {
    Db::open(&store::Options {
        location: store::Location::of(&env.db),
        busy_timeout: Duration::from_secs(10),
        sync: Sync::Normal,
    })
    .unwrap()
}

/// Adds schedule `name`: `{"tick":true}` to `target` every `every`, from
/// now (so its first occurrence is due at once).
pub fn add_schedule(env: &Env, name: &str, target: &str, every: Duration) {
    let spec = ScheduleSpec {
        target: target.to_owned(),
        rule: Rule::every(every).unwrap(),
        start: None,
        catch_up: CatchUp::default(),
        body: br#"{"tick":true}"#.to_vec(),
        raw: false,
        headers: None,
        priority: 0,
        group: None,
        ttl: None,
    };
    open(env).add_schedule(name, &spec).unwrap();
}

/// Pauses schedule `name`.
pub fn pause_schedule(env: &Env, name: &str) {
    assert!(open(env).pause_schedule(name, true).unwrap());
}

/// Every schedule, as the store keeps it.
pub fn schedules(env: &Env) -> Vec<store::Schedule> {
    open(env).schedules().unwrap()
}
