//! Property tests of the store's invariants over random sequences of
//! operations: nothing lost, no double lease (also within ordered groups),
//! nothing delivered again after an ack, ids never reused, counters exact.
//!
//! Time is not waited for: an `Expire` step moves a lease's or a delay's end
//! into the past, as if it had run out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::store::*;

#[derive(Debug, Clone)]
enum Op {
    /// Publish `n` messages, in `group` if any, delayed if `delayed`.
    Publish {
        n: usize,
        group: Option<u8>,
        delayed: bool,
        priority: i64,
    },
    /// Claim up to `n`, acking at once with `ack`.
    Claim {
        n: usize,
        ack: bool,
    },
    /// Ack, nack (now or later) or extend the `pick`-th receipt handed out.
    Ack {
        pick: usize,
    },
    Nack {
        pick: usize,
        later: bool,
    },
    Extend {
        pick: usize,
    },
    /// Let the `pick`-th lease or delay run out.
    Expire {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..5, prop::option::of(0u8..3), prop::bool::weighted(0.15), -1i64..2)
            .prop_map(|(n, group, delayed, priority)| Op::Publish { n, group, delayed, priority }),
        4 => (1usize..4, prop::bool::weighted(0.1)).prop_map(|(n, ack)| Op::Claim { n, ack }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, later)| Op::Nack { pick, later }),
        1 => any::<usize>().prop_map(|pick| Op::Extend { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Expire { pick }),
    ]
}

/// What the test knows: every id published, the receipts handed out, and
/// which of them still hold, per the model.
#[derive(Default)]
struct Model {
    published: Vec<i64>,
    /// Every receipt claimed, in order, with its message and group.
    receipts: Vec<(Receipt, i64, Option<String>)>,
    /// The receipt whose lease holds, per message.
    holder: HashMap<i64, Receipt>,
    acked: HashSet<i64>,
    dead: HashSet<i64>,
}

const MAX_ATTEMPTS: u32 = 3;

fn store_with_queue() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = Options {
        path: dir.path().join("spool.db"),
        busy_timeout: Duration::from_secs(5),
        sync: Sync::Normal,
    };
    let mut store = SqliteStore::open(&opts).expect("open");
    let patch = SettingsPatch {
        max_attempts: Some(MAX_ATTEMPTS),
        ..SettingsPatch::default()
    };
    store.create_queue("q", &patch, None).expect("create");
    (dir, store)
}

impl Model {
    fn apply(&mut self, store: &mut SqliteStore, op: &Op) {
        match *op {
            Op::Publish {
                n,
                group,
                delayed,
                priority,
            } => self.publish(store, n, group, delayed, priority),
            Op::Claim { n, ack } => self.claim(store, n, ack),
            Op::Ack { pick } => self.settle(store, pick, "ack"),
            Op::Nack { pick, later } => {
                self.settle(store, pick, if later { "nack-later" } else { "nack" })
            }
            Op::Extend { pick } => self.settle(store, pick, "extend"),
            Op::Expire { pick } => self.expire(store, pick),
        }
    }

    fn publish(
        &mut self,
        store: &mut SqliteStore,
        n: usize,
        group: Option<u8>,
        delayed: bool,
        priority: i64,
    ) {
        let group = group.map(|g| format!("g{g}"));
        let ids = store
            .publish_batch("q", |batch| {
                (0..n)
                    .map(|i| {
                        let body = i.to_string();
                        batch.publish(&NewMessage {
                            body: body.as_bytes(),
                            group: group.as_deref(),
                            priority,
                            available_at: delayed.then(|| now_ms() + 3_600_000),
                            ..NewMessage::default()
                        })
                    })
                    .collect::<Result<Vec<i64>>>()
            })
            .expect("publish");
        let last = self.published.last().copied().unwrap_or(0);
        assert!(
            ids.first().is_none_or(|&f| f > last),
            "ids reused or not increasing"
        );
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        self.published.extend(ids);
    }

    fn claim(&mut self, store: &mut SqliteStore, n: usize, ack: bool) {
        let got = store
            .claim("q", n, Some(Duration::from_secs(3600)), ack)
            .expect("claim");
        for d in got {
            assert!(
                !self.acked.contains(&d.id),
                "id {} delivered again after its ack",
                d.id
            );
            assert!(!self.dead.contains(&d.id), "dead id {} delivered", d.id);
            assert!(
                d.attempt <= i64::from(MAX_ATTEMPTS),
                "id {} delivered {} times",
                d.id,
                d.attempt
            );
            assert!(
                !self.holder.contains_key(&d.id),
                "id {} leased twice at once",
                d.id
            );
            if let Some(g) = &d.group {
                let busy = self.holder.keys().any(|id| {
                    self.receipts
                        .iter()
                        .any(|(_, m, gr)| m == id && gr.as_ref() == Some(g))
                });
                assert!(!busy, "group {g} had two messages out at once");
            }
            if ack {
                self.acked.insert(d.id);
            } else {
                self.holder.insert(d.id, d.receipt);
            }
            self.receipts.push((d.receipt, d.id, d.group.clone()));
        }
    }

    fn settle(&mut self, store: &mut SqliteStore, pick: usize, what: &str) {
        let Some(&(r, id, _)) = self.receipts.get(pick % self.receipts.len().max(1)) else {
            return;
        };
        let holds = self.holder.get(&id) == Some(&r);
        let outcome = match what {
            "ack" => store.ack(&[r]),
            "nack" => store.nack(&[r], Release::Now),
            "nack-later" => store.nack(&[r], Release::After(Duration::from_secs(3600))),
            _ => store.extend(&[r], Duration::from_secs(3600)),
        }
        .expect("settle")[0];
        if holds {
            assert_eq!(outcome, Ok(()), "{what} of a holding lease");
        } else if what == "ack" && self.acked.contains(&id) {
            // A repeated ack of the receipt that acked it is harmless.
            let acked_with_this = self
                .receipts
                .iter()
                .rev()
                .find(|(_, m, _)| *m == id)
                .map(|x| x.0)
                == Some(r);
            if acked_with_this {
                assert_eq!(outcome, Ok(()), "repeated ack");
            }
        } else {
            assert!(
                outcome.is_err(),
                "{what} with a receipt whose lease had ended"
            );
        }
        if !holds {
            return;
        }
        match what {
            "ack" => {
                self.holder.remove(&id);
                self.acked.insert(id);
            }
            "nack" | "nack-later" => {
                self.holder.remove(&id);
                if attempts(store, id) >= i64::from(MAX_ATTEMPTS) {
                    self.dead.insert(id);
                }
            }
            _ => {}
        }
    }

    /// Moves the end of one lease or delay into the past.
    fn expire(&mut self, store: &mut SqliteStore, pick: usize) {
        let waiting: Vec<i64> = store
            .conn
            .prepare("SELECT msg_id FROM deliveries WHERE state IN (1, 2) ORDER BY msg_id")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let Some(&id) = waiting.get(pick % waiting.len().max(1)) else {
            return;
        };
        store
            .conn
            .execute(
                "UPDATE deliveries SET visible_at = 0 WHERE msg_id = ?1",
                [id],
            )
            .expect("expire");
        // The lease ran out: the next claim makes the message ready again,
        // or dead after its last attempt.
        self.holder.remove(&id);
    }

    /// The invariants that hold between any two operations.
    fn check(&self, store: &SqliteStore) {
        let health = store.health().expect("health");
        assert_eq!(health.integrity, ["ok"]);
        for q in &health.queues {
            assert!(
                q.consistent(),
                "counters {:?} but rows {:?}",
                q.counters,
                q.counted
            );
        }
        assert!(health.ids_safe());
        assert_eq!(health.orphan_messages, 0);
        let rows: BTreeMap<i64, (i64, Option<String>)> = store
            .conn
            .prepare("SELECT msg_id, state, grp FROM deliveries")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let ids: Vec<i64> = rows.keys().copied().collect();
        assert_eq!(ids, self.published, "a message was lost or appeared");
        for id in &self.acked {
            assert_eq!(rows[id].0, State::Acked as i64, "acked id {id} not acked");
        }
        for id in &self.dead {
            assert_eq!(rows[id].0, State::Dead as i64, "id {id} should be dead");
        }
        for (id, (state, _)) in &rows {
            if *state == State::Dead as i64 {
                assert!(
                    attempts(store, *id) >= i64::from(MAX_ATTEMPTS),
                    "id {id} dead too soon"
                );
            }
        }
        for id in self.holder.keys() {
            assert_eq!(rows[id].0, State::Leased as i64, "held id {id} not leased");
        }
        // At most one message per group is out (ready, delayed or leased);
        // the others wait, held.
        let mut out: HashMap<&str, i64> = HashMap::new();
        for (state, grp) in rows.values() {
            if let Some(g) = grp.as_deref().filter(|_| matches!(*state, 0..=2)) {
                *out.entry(g).or_default() += 1;
            }
        }
        assert!(
            out.values().all(|&n| n <= 1),
            "a group has several messages out: {out:?}"
        );
    }
}

fn attempts(store: &SqliteStore, id: i64) -> i64 {
    store
        .conn
        .query_row(
            "SELECT attempts FROM deliveries WHERE msg_id = ?1",
            [id],
            |r| r.get(0),
        )
        .expect("attempts")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(150),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_the_store_invariants(ops in prop::collection::vec(op(), 1..40)) {
        let (_dir, mut store) = store_with_queue();
        let mut model = Model::default();
        for op in &ops {
            model.apply(&mut store, op);
            model.check(&store);
        }
    }
}
