//! In-process store benchmarks: many connections draining one queue, on
//! PostgreSQL and on SQLite in the same run, and the latency of a publish
//! on PostgreSQL (open connection, and connect + publish). Prints numbers;
//! asserts only that every message was drained once.
//!
//! ```text
//! cargo bench --bench store_drain            # server from SPOOL_TEST_PG
//! ```
//!
//! The PostgreSQL part needs a server (`SPOOL_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and works in a schema of its
//! own, dropped at the end. Figures and what they mean: `docs/postgres.md`.
//! The drain compares three ways of committing: as shipped (one-statement
//! claims and acks where possible), full transactions only, and full
//! transactions that also update one shared row (what a counter kept in
//! the queue's row would cost); see `PostgresStore::set_before_commit`.

// A benchmark's output is its figures, on stdout.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spool::store::postgres::{PgOptions, connect};
use spool::store::{
    Delivery, Error, Location, NewMessage, Options, PostgresStore, Receipt, SqliteStore, Store,
    Sync,
};
use spool::testing::with_param;

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// As shipped: one-statement claims and acks where possible.
    Fast,
    /// Full transactions only.
    Slow,
    /// Full transactions, each also updating one shared row.
    Hot,
}

const BODY: &[u8] = b"{\"order\":12345,\"items\":[1,2,3]}";

fn receipts(ds: &[Delivery]) -> Vec<Receipt> {
    ds.iter().map(|d| d.receipt).collect()
}

fn pg_options(url: &str, sync: Sync) -> PgOptions {
    PgOptions {
        url: url.to_owned(),
        busy_timeout: Duration::from_secs(30),
        sync,
    }
}

/// Publishes `n` messages to `queue`, a thousand per transaction.
fn fill(store: &mut impl Store, queue: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        store
            .publish_batch(queue, |batch| {
                for _ in chunk {
                    batch.publish(&NewMessage {
                        body: BODY,
                        ..NewMessage::default()
                    })?;
                }
                Ok::<_, Error>(())
            })
            .expect("fill");
    }
}

/// 16 connections, each from `open`, claim and ack `n` messages of
/// `queue`, `batch` at a time; returns messages per second.
fn drain<S: Store>(
    open: impl Fn() -> S + std::marker::Sync,
    queue: &str,
    n: usize,
    batch: usize,
) -> f64 {
    let start = Instant::now();
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let mut store = open();
                loop {
                    let got = store.claim(queue, batch, None, false).expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    store.ack(&receipts(&got)).expect("ack");
                    done.fetch_add(got.len(), Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(done.into_inner(), n, "every message drained once");
    n as f64 / start.elapsed().as_secs_f64()
}

/// The drain on PostgreSQL, committing as `mode` says.
fn drain_pg(url: &str, queue: &str, n: usize, batch: usize, mode: Mode, sync: Sync) -> f64 {
    let open = || {
        let mut store = PostgresStore::open(&pg_options(url, sync)).expect("open");
        store.set_before_commit(match mode {
            Mode::Fast => None,
            Mode::Slow => Some(String::new()),
            Mode::Hot => Some("UPDATE queues SET created_at = created_at + 1 WHERE id = 1;".into()),
        });
        store
    };
    drain(open, queue, n, batch)
}

/// The same drain on SQLite: 16 connections to one file.
fn drain_sqlite(n: usize, batch: usize, sync: Sync) -> f64 {
    let dir = tempfile::tempdir().expect("dir");
    let opts = Options {
        location: Location::File(dir.path().join("spool.db")),
        busy_timeout: Duration::from_secs(30),
        sync,
    };
    fill(&mut SqliteStore::open(&opts).expect("open"), "q", n);
    drain(|| SqliteStore::open(&opts).expect("open"), "q", n, batch)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn publish_one(store: &mut PostgresStore, queue: &str, body: &[u8]) {
    store
        .publish_batch(queue, |batch| {
            batch.publish(&NewMessage {
                body,
                ..NewMessage::default()
            })
        })
        .expect("publish");
}

/// One consumer, claim and ack timed apart.
fn probe(store: &mut PostgresStore) {
    for batch in [100, 1] {
        let queue = format!("probe{batch}");
        fill(store, &queue, 5000);
        let (mut tc, mut ta, mut n) = (Duration::ZERO, Duration::ZERO, 0);
        let start = Instant::now();
        loop {
            let t = Instant::now();
            let got = store.claim(&queue, batch, None, false).expect("claim");
            tc += t.elapsed();
            if got.is_empty() {
                break;
            }
            let t = Instant::now();
            store.ack(&receipts(&got)).expect("ack");
            ta += t.elapsed();
            n += got.len();
        }
        println!(
            "PostgreSQL, one consumer, batch {batch}: {:.0} msg/s, claim {tc:?} ack {ta:?}",
            n as f64 / start.elapsed().as_secs_f64()
        );
    }
}

fn postgres(base: &str) {
    let schema = format!("spool_bench_{}", std::process::id());
    let url = with_param(base, &format!("schema={schema}"));
    let mut store = match PostgresStore::open(&pg_options(&url, Sync::Full)) {
        Ok(store) => store,
        Err(Error::Open { reason, .. }) => {
            // Fails when `SPOOL_TEST_PG` is set; otherwise says so and
            // goes on with SQLite.
            spool::testing::no_pg_server(base, reason);
            return;
        }
        Err(e) => panic!("cannot open the benchmark schema: {e}"),
    };
    probe(&mut store);
    let cases = [
        (1, 10_000, Mode::Fast, Sync::Full),
        (1, 10_000, Mode::Slow, Sync::Full),
        (1, 10_000, Mode::Hot, Sync::Full),
        (1, 20_000, Mode::Fast, Sync::Normal),
        (1, 20_000, Mode::Slow, Sync::Normal),
        (1, 20_000, Mode::Hot, Sync::Normal),
        (100, 100_000, Mode::Fast, Sync::Full),
        (100, 100_000, Mode::Fast, Sync::Normal),
    ];
    for (i, (batch, n, mode, sync)) in cases.into_iter().enumerate() {
        let queue = format!("drain{i}");
        fill(&mut store, &queue, n);
        let rate = drain_pg(&url, &queue, n, batch, mode, sync);
        println!(
            "PostgreSQL drain, 16 connections, batch {batch}, sync {sync:?}, {mode:?}: {rate:.0} msg/s ({n} messages)"
        );
    }
    let mut times = Vec::new();
    for i in 0..500 {
        let body = format!("{{\"n\":{i}}}");
        let start = Instant::now();
        publish_one(&mut store, "latency", body.as_bytes());
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "PostgreSQL publish of one message, open connection: p50 {:?}, p99 {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    let mut times = Vec::new();
    for i in 0..200 {
        let url = if i % 2 == 0 {
            url.clone()
        } else {
            with_param(&url, "sslmode=disable")
        };
        let start = Instant::now();
        let mut fresh = PostgresStore::open(&pg_options(&url, Sync::Full)).expect("open");
        publish_one(&mut fresh, "latency", b"1");
        drop(fresh);
        times.push((i % 2, start.elapsed()));
    }
    for (mode, label) in [(0, "TLS (sslmode=prefer)"), (1, "sslmode=disable")] {
        let mut t: Vec<Duration> = times
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, d)| *d)
            .collect();
        t.sort();
        println!(
            "PostgreSQL connect + publish of one message, {label}: p50 {:?}, p99 {:?}",
            percentile(&t, 0.5),
            percentile(&t, 0.99)
        );
    }
    drop(store);
    let dropped = connect::parse(&url)
        .and_then(|target| connect::connect(&target))
        .map_err(|e| e.to_string())
        .and_then(|mut client| {
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = dropped {
        println!("could not drop the benchmark schema {schema}: {e}");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    postgres(&spool::testing::pg_url());
    for (batch, n) in [(1, 20_000), (100, 100_000)] {
        for sync in [Sync::Full, Sync::Normal] {
            let rate = drain_sqlite(n, batch, sync);
            println!("SQLite drain, 16 connections, batch {batch}, sync {sync:?}: {rate:.0} msg/s");
        }
    }
}
