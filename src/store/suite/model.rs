//! A property test of the store against a model of it, over random
//! sequences of operations, run on both backends: the model knows the state,
//! attempts and due time of every message, so each claim must return exactly
//! the messages it predicts (by priority, then id; one per group), and after
//! every step `peek` must show each message in the state the model has,
//! `stats` must count them so, and `doctor` must find the counters exact and
//! no id reusable.
//!
//! Time is not waited for: an `Advance` step moves the store's clock
//! ([`Fixture::advance`]). Leases and delays come in different lengths, all
//! whole multiples of 100 s, so one advance ends some of them and not others,
//! and the model knows which; the real time a case takes (well under 100 s)
//! cannot move a due time across an advance.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::agreement::tally;
use super::{Fixture, Kind, all_states};
use crate::store::{NewMessage, Receipt, Release, Result, SettingsPatch, State};

const MAX_ATTEMPTS: u32 = 3;
/// Lease lengths of claims, in seconds.
const LEASES: [u64; 3] = [300, 1000, 5000];
/// Delays of publishes and nacks, in seconds.
const DELAYS: [u64; 2] = [400, 3000];
/// Clock advances, in seconds.
const ADVANCES: [u64; 3] = [100, 700, 2000];
/// What an extend gives a lease, in seconds.
const EXTEND: u64 = 600;

#[derive(Debug, Clone)]
enum Op {
    /// Publish `n` messages, in `group` if any, delayed by `DELAYS[d]` if any.
    Publish {
        n: usize,
        group: Option<u8>,
        delay: Option<usize>,
        priority: i64,
    },
    /// Claim up to `n` for `LEASES[lease]`, acking at once with `ack`.
    Claim {
        n: usize,
        ack: bool,
        lease: usize,
    },
    /// Ack, nack (now, or later by `DELAYS[d]`) or extend the `pick`-th
    /// receipt handed out.
    Ack {
        pick: usize,
    },
    Nack {
        pick: usize,
        delay: Option<usize>,
    },
    Extend {
        pick: usize,
    },
    /// Move the clock forward by `ADVANCES[by]`.
    Advance {
        by: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let delay = prop::option::weighted(0.15, 0..DELAYS.len());
    prop_oneof![
        3 => (1usize..5, prop::option::of(0u8..3), delay.clone(), -1i64..2)
            .prop_map(|(n, group, delay, priority)| Op::Publish { n, group, delay, priority }),
        4 => (1usize..4, prop::bool::weighted(0.1), 0..LEASES.len())
            .prop_map(|(n, ack, lease)| Op::Claim { n, ack, lease }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        2 => (any::<usize>(), prop::option::of(0..DELAYS.len()))
            .prop_map(|(pick, delay)| Op::Nack { pick, delay }),
        1 => any::<usize>().prop_map(|pick| Op::Extend { pick }),
        2 => (0..ADVANCES.len()).prop_map(|by| Op::Advance { by }),
    ]
}

fn secs(s: u64) -> i64 {
    s as i64 * 1000
}

/// One message as the model knows it.
#[derive(Debug)]
struct Msg {
    group: Option<String>,
    priority: i64,
    state: State,
    attempts: i64,
    /// When its delay or lease ends, by the model's clock (ms).
    due: i64,
    /// The receipt of its lease, while leased; after an ack, the one that acked it.
    receipt: Option<Receipt>,
}

/// What the test knows: the clock's offset and every message.
#[derive(Default)]
struct Model {
    /// How far the store's clock was moved (ms).
    now: i64,
    msgs: BTreeMap<i64, Msg>,
    /// Every receipt handed out, in order, with its message.
    receipts: Vec<(Receipt, i64)>,
}

impl Model {
    fn apply(&mut self, f: &mut Fixture, op: &Op) {
        match *op {
            Op::Publish {
                n,
                group,
                delay,
                priority,
            } => self.publish(f, n, group, delay.map(|d| DELAYS[d]), priority),
            Op::Claim { n, ack, lease } => self.claim(f, n, ack, LEASES[lease]),
            Op::Ack { pick } => self.settle(f, pick, Settle::Ack),
            Op::Nack { pick, delay } => {
                self.settle(f, pick, Settle::Nack(delay.map(|d| DELAYS[d])))
            }
            Op::Extend { pick } => self.settle(f, pick, Settle::Extend),
            Op::Advance { by } => self.advance(f, ADVANCES[by]),
        }
    }

    /// True when `group` has a message out (ready, delayed or leased).
    fn group_busy(&self, group: &str) -> bool {
        self.msgs.values().any(|m| {
            m.group.as_deref() == Some(group)
                && matches!(m.state, State::Ready | State::Delayed | State::Leased)
        })
    }

    /// The head of `group` finished: the next of it, if any, comes out,
    /// ready or still delayed by its own delay.
    fn release_group(&mut self, group: Option<String>) {
        let Some(group) = group else { return };
        let now = self.now;
        if let Some(next) = self
            .msgs
            .values_mut()
            .find(|m| m.group.as_ref() == Some(&group) && m.state == State::Held)
        {
            next.state = if next.due > now {
                State::Delayed
            } else {
                State::Ready
            };
        }
    }

    fn publish(
        &mut self,
        f: &mut Fixture,
        n: usize,
        group: Option<u8>,
        delay: Option<u64>,
        priority: i64,
    ) {
        let group = group.map(|g| format!("g{g}"));
        let available_at = delay.map(|d| f.now() + secs(d));
        let ids =
            f.db.publish_batch("q", |batch| {
                (0..n)
                    .map(|i| {
                        let body = i.to_string();
                        batch.publish(&NewMessage {
                            body: body.as_bytes(),
                            group: group.as_deref(),
                            priority,
                            available_at,
                            ..NewMessage::default()
                        })
                    })
                    .collect::<Result<Vec<i64>>>()
            })
            .expect("publish");
        assert_eq!(ids.len(), n);
        let last = self.msgs.keys().next_back().copied().unwrap_or(0);
        assert!(
            ids.first().is_some_and(|&first| first > last),
            "ids reused or not increasing"
        );
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for id in ids {
            let state = match (&group, delay) {
                (Some(g), _) if self.group_busy(g) => State::Held,
                (_, Some(_)) => State::Delayed,
                (_, None) => State::Ready,
            };
            let msg = Msg {
                group: group.clone(),
                priority,
                state,
                attempts: 0,
                due: self.now + delay.map_or(0, secs),
                receipt: None,
            };
            self.msgs.insert(id, msg);
        }
    }

    fn claim(&mut self, f: &mut Fixture, n: usize, ack: bool, lease: u64) {
        let mut ready: Vec<(i64, i64)> = self
            .msgs
            .iter()
            .filter(|(_, m)| m.state == State::Ready)
            .map(|(id, m)| (-m.priority, *id))
            .collect();
        ready.sort_unstable();
        let want: Vec<i64> = ready.iter().take(n).map(|&(_, id)| id).collect();
        let got =
            f.db.claim("q", n, Some(Duration::from_secs(lease)), ack)
                .expect("claim");
        let ids: Vec<i64> = got.iter().map(|d| d.id).collect();
        assert_eq!(ids, want, "claim of {n}: by priority, then id");
        for d in got {
            let m = self.msgs.get_mut(&d.id).expect("known");
            m.attempts += 1;
            assert_eq!(d.attempt, m.attempts, "attempt of {}", d.id);
            assert!(d.attempt <= i64::from(MAX_ATTEMPTS));
            assert_eq!(d.group, m.group);
            m.receipt = Some(d.receipt);
            self.receipts.push((d.receipt, d.id));
            if ack {
                m.state = State::Acked;
                let group = m.group.clone();
                self.release_group(group);
            } else {
                m.state = State::Leased;
                m.due = self.now + secs(lease);
            }
        }
    }

    fn settle(&mut self, f: &mut Fixture, pick: usize, what: Settle) {
        let Some(&(r, id)) = self.receipts.get(pick % self.receipts.len().max(1)) else {
            return;
        };
        let m = &self.msgs[&id];
        let holds = m.state == State::Leased && m.receipt == Some(r);
        let acked_with_this = m.state == State::Acked && m.receipt == Some(r);
        let outcome = match what {
            Settle::Ack => f.db.ack(&[r]),
            Settle::Nack(None) => f.db.nack(&[r], Release::Now, None),
            Settle::Nack(Some(d)) => {
                f.db.nack(&[r], Release::After(Duration::from_secs(d)), None)
            }
            Settle::Extend => f.db.extend(&[r], Duration::from_secs(EXTEND)),
        }
        .expect("settle")[0];
        if holds || (what == Settle::Ack && acked_with_this) {
            // A repeated ack of the receipt that acked it is harmless.
            assert_eq!(outcome, Ok(()), "{what:?} of {id} with its receipt");
        } else {
            assert!(outcome.is_err(), "{what:?} of {id} with an ended lease");
        }
        if !holds {
            return;
        }
        let now = self.now;
        let m = self.msgs.get_mut(&id).expect("known");
        match what {
            Settle::Ack => {
                m.state = State::Acked;
                let group = m.group.clone();
                self.release_group(group);
            }
            Settle::Nack(_) if m.attempts >= i64::from(MAX_ATTEMPTS) => {
                m.state = State::Dead;
                m.receipt = None;
                let group = m.group.clone();
                self.release_group(group);
            }
            Settle::Nack(delay) => {
                m.receipt = None;
                (m.state, m.due) = match delay {
                    Some(d) => (State::Delayed, now + secs(d)),
                    None => (State::Ready, now),
                };
            }
            Settle::Extend => m.due = now + secs(EXTEND),
        }
    }

    /// Moves the clock: the delays and leases that end by then end, in the
    /// model as the store's lazy rules see them.
    fn advance(&mut self, f: &mut Fixture, by: u64) {
        f.advance(Duration::from_secs(by));
        self.now += secs(by);
        let now = self.now;
        let ids: Vec<i64> = self.msgs.keys().copied().collect();
        for id in ids {
            let m = self.msgs.get_mut(&id).expect("known");
            if m.due > now {
                continue;
            }
            match m.state {
                State::Delayed => m.state = State::Ready,
                State::Leased if m.attempts >= i64::from(MAX_ATTEMPTS) => {
                    m.state = State::Dead;
                    m.receipt = None;
                    let group = m.group.clone();
                    self.release_group(group);
                }
                State::Leased => {
                    m.state = State::Ready;
                    m.receipt = None;
                }
                _ => {}
            }
        }
    }

    /// What must hold between any two operations, read through the API.
    fn check(&self, f: &Fixture) {
        let peeked = f.db.peek("q", &all_states(10_000)).expect("peek");
        let shown: BTreeMap<i64, (State, i64)> = peeked
            .iter()
            .map(|p| (p.delivery.id, (p.state, p.delivery.attempt)))
            .collect();
        assert_eq!(peeked.len(), shown.len(), "a message shown twice");
        let known: BTreeMap<i64, (State, i64)> = self
            .msgs
            .iter()
            .map(|(id, m)| (*id, (m.state, m.attempts)))
            .collect();
        assert_eq!(shown, known, "peek's (state, attempts) by id");
        let states: Vec<State> = self.msgs.values().map(|m| m.state).collect();
        let info = f.info("q");
        assert_eq!(info.counts, tally(&states), "stats");
        assert_eq!(info.published_total, self.msgs.len() as i64);
        let health = f.health();
        assert!(health.healthy, "{health:?}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Nack(Option<u64>),
    Extend,
}

/// Random sequences of up to 40 operations, each case on a fresh database:
/// 150 cases on SQLite; 30 on PostgreSQL, where a case (a schema made and
/// dropped, a round trip per call) costs more, so the suite stays fast.
/// `PROPTEST_CASES` sets both.
pub(super) fn random_operations_keep_the_store_invariants(f: &mut Fixture) {
    let kind = f.kind();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(match kind {
            Kind::Sqlite => 150,
            Kind::Postgres => 30,
        });
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let mut f = Fixture::new(kind).expect("the server answered a moment ago");
        let patch = SettingsPatch {
            max_attempts: Some(MAX_ATTEMPTS),
            // Longer than any case's clock moves, so acked messages stay.
            retention: Some(Duration::from_secs(365 * 86_400)),
            ..SettingsPatch::default()
        };
        f.db.create_queue("q", &patch, None).expect("create");
        let mut model = Model::default();
        for op in &ops {
            model.apply(&mut f, op);
            model.check(&f);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
