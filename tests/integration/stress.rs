//! Stress: 8 publishers and 16 consumers, each a thread that runs `spool`
//! processes, on one database. Consumers ack, nack, extend, let leases run
//! out, and get killed (SIGKILL) in the middle of `consume` and `ack`. Each
//! logs every lease it saw. At the end an audit over the logs and the
//! database checks the guarantees of SPEC §6 and prints what it checked.
//!
//! Runs about 15 s of load (under a minute in CI). `SPOOL_SOAK_SECS=N` runs
//! N seconds instead (a soak); `SPOOL_TEST_SEED=N` replays the random choices.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Env;
use crate::common::assert_consistent;
use crate::crash::Rng;

const PUBLISHERS: usize = 8;
const CONSUMERS: usize = 16;
const QUEUE: &str = "stress";
const MAX_ATTEMPTS: i64 = 5;
/// `extend --by`: longer than any visibility used, so an extension never
/// shortens a lease.
const EXTEND_BY_MS: i64 = 3000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn parse_time(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// What the run saw go wrong outside the lease logs: unexpected exit codes,
/// forbidden words on stderr. Collected by every thread.
#[derive(Default)]
struct Problems {
    list: Mutex<Vec<String>>,
    busy: std::sync::atomic::AtomicUsize,
    processes: std::sync::atomic::AtomicUsize,
    killed: std::sync::atomic::AtomicUsize,
}

impl Problems {
    fn push(&self, p: String) {
        self.list.lock().unwrap().push(p);
    }

    /// Checks one finished `spool` run: stderr clean, exit code allowed.
    fn check(&self, what: &str, out: &Output, allowed: &[i32], killed: bool) -> Option<i32> {
        use std::sync::atomic::Ordering::Relaxed;
        self.processes.fetch_add(1, Relaxed);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for bad in ["database is locked", "locked", "panicked", "RUST_BACKTRACE"] {
            if stderr.contains(bad) {
                self.push(format!("{what}: stderr contains {bad:?}: {stderr}"));
            }
        }
        let code = out.status.code();
        match code {
            None if killed => {
                self.killed.fetch_add(1, Relaxed);
            }
            Some(75) => {
                self.busy.fetch_add(1, Relaxed);
            }
            Some(c) if allowed.contains(&c) => {}
            other => self.push(format!("{what}: exit {other:?}: {stderr}")),
        }
        code
    }
}

fn spool(env: &Env, args: &[&str], input: Option<String>) -> Child {
    let mut cmd: Command = env.cmd();
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        // Small inputs fit in the pipe; a killed child just closes it.
        let _ = stdin.write_all(text.as_bytes());
    }
    child
}

/// Runs to the end, or kills the process after `kill_after` (SIGKILL).
fn finish(mut child: Child, kill_after: Option<Duration>) -> (Output, bool) {
    let mut killed = false;
    if let Some(delay) = kill_after {
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed = true;
        }
    }
    (child.wait_with_output().unwrap(), killed)
}

// ---------------------------------------------------------------- publishers

struct Published {
    ids: Vec<i64>,
    batches: usize,
}

fn publisher(env: &Env, n: usize, seed: u64, until: Instant, problems: &Problems) -> Published {
    let mut rng = Rng::seeded(seed);
    let mut ids: Vec<i64> = Vec::new();
    let mut batches = 0;
    while Instant::now() < until {
        let size = 1 + rng.below(8) as usize;
        let lines: Vec<String> = (0..size)
            .map(|i| json!({"p": n, "b": batches, "i": i}).to_string())
            .collect();
        let (args, input): (Vec<&str>, Option<String>) = match rng.below(10) {
            0 => (vec!["publish", QUEUE, &lines[0]], None),
            1 => (
                vec!["publish", QUEUE, "--stream"],
                Some(lines.join("\n") + "\n"),
            ),
            _ => (vec!["publish", QUEUE], Some(lines.join("\n") + "\n")),
        };
        let expected = if input.is_some() { size } else { 1 };
        let (out, _) = finish(spool(env, &args, input), None);
        let code = problems.check(&format!("publisher {n}"), &out, &[0], false);
        if code == Some(0) {
            let got: Vec<i64> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.parse().unwrap())
                .collect();
            if got.len() != expected {
                problems.push(format!("publisher {n}: {expected} sent, ids {got:?}"));
            }
            let last = ids.last().copied().unwrap_or(0);
            if !got.windows(2).all(|w| w[0] < w[1]) || got.first().is_some_and(|&f| f <= last) {
                problems.push(format!(
                    "publisher {n}: ids not increasing: after {last}, {got:?}"
                ));
            }
            ids.extend(got);
        }
        batches += 1;
        std::thread::sleep(Duration::from_millis(20 + rng.below(80)));
    }
    Published { ids, batches }
}

// ----------------------------------------------------------------- consumers

/// What a consumer did with a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    Acked,
    AckRefused,
    AckKilled,
    Nacked,
    NackRefused,
    Expired,
    ConsumeKilled,
}

/// One lease as a consumer saw it (times in ms since the epoch).
#[derive(Debug, Clone)]
struct Lease {
    id: i64,
    receipt: String,
    attempt: i64,
    consumer: usize,
    /// When `consume` was started and when it had returned.
    start: i64,
    got: i64,
    /// The lease end `consume` printed, pushed out by a successful extend.
    end: i64,
    /// When an ack or nack of it was started.
    settled_at: Option<i64>,
    outcome: Outcome,
}

impl Lease {
    fn log_line(&self) -> String {
        json!({
            "id": self.id, "receipt": self.receipt, "attempt": self.attempt,
            "consumer": self.consumer, "start": self.start, "got": self.got,
            "end": self.end, "settled_at": self.settled_at,
            "outcome": format!("{:?}", self.outcome),
        })
        .to_string()
    }

    /// The earliest moment this lease may have stopped holding: its end, or
    /// the start of the ack or nack that ended it (that command committed
    /// at some point after it was started).
    fn held_until_at_least(&self) -> i64 {
        match (self.outcome, self.settled_at) {
            (Outcome::Acked | Outcome::Nacked | Outcome::AckKilled, Some(t)) => t.min(self.end),
            _ => self.end,
        }
    }
}

fn parse_leases(stdout: &[u8], consumer: usize, start: i64, got: i64) -> Vec<Lease> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|m| Lease {
            id: m["id"].as_i64().unwrap(),
            receipt: m["receipt"].as_str().unwrap().to_owned(),
            attempt: m["attempt"].as_i64().unwrap(),
            consumer,
            start,
            got,
            end: parse_time(m["lease_expires_at"].as_str().unwrap()),
            settled_at: None,
            outcome: Outcome::Expired,
        })
        .collect()
}

/// Receipts that a settle command refused, from its stderr.
fn refused(stderr: &[u8]) -> HashSet<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("spool: error: receipt `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// Acks or nacks `leases` in one command (sometimes killed), recording outcomes.
fn settle(env: &Env, leases: &mut [&mut Lease], nack: bool, rng: &mut Rng, problems: &Problems) {
    if leases.is_empty() {
        return;
    }
    let receipts: Vec<String> = leases.iter().map(|l| l.receipt.clone()).collect();
    let mut args = vec![if nack { "nack" } else { "ack" }];
    if nack && rng.chance(30) {
        args.extend(["--delay", "200ms"]);
    }
    let kill = (!nack && rng.chance(5)).then(|| Duration::from_millis(rng.below(25)));
    let started = now_ms();
    let (out, killed) = finish(spool(env, &args, Some(receipts.join("\n") + "\n")), kill);
    problems.check(args[0], &out, &[0, 3], killed);
    let refused = refused(&out.stderr);
    for l in leases.iter_mut() {
        l.settled_at = Some(started);
        l.outcome = match (nack, killed, refused.contains(&l.receipt)) {
            (false, true, _) => Outcome::AckKilled,
            (false, false, false) => Outcome::Acked,
            (false, false, true) => Outcome::AckRefused,
            (true, _, false) => Outcome::Nacked,
            (true, _, true) => Outcome::NackRefused,
        };
    }
}

fn extend(env: &Env, lease: &mut Lease, problems: &Problems) {
    let started = now_ms();
    let by = format!("{EXTEND_BY_MS}ms");
    let (out, _) = finish(
        spool(env, &["extend", &lease.receipt, "--by", &by], None),
        None,
    );
    if problems.check("extend", &out, &[0, 3], false) == Some(0) {
        lease.end = lease.end.max(started + EXTEND_BY_MS);
    }
}

fn consumer(env: &Env, n: usize, seed: u64, until: Instant, problems: &Problems) -> Vec<Lease> {
    let mut rng = Rng::seeded(seed);
    let mut log = Vec::new();
    while Instant::now() < until {
        let batch = (1 + rng.below(4)).to_string();
        let visibility = format!("{}ms", 300 + rng.below(1200));
        let kill = rng.chance(12).then(|| Duration::from_millis(rng.below(30)));
        let start = now_ms();
        let child = spool(
            env,
            &["consume", QUEUE, "-n", &batch, "--visibility", &visibility],
            None,
        );
        let (out, killed) = finish(child, kill);
        let got = now_ms();
        let code = problems.check("consume", &out, &[0, 1], killed);
        let mut leases = parse_leases(&out.stdout, n, start, got);
        if killed {
            // The consumer died holding whatever it had leased.
            leases
                .iter_mut()
                .for_each(|l| l.outcome = Outcome::ConsumeKilled);
            log.extend(leases);
            continue;
        }
        if code == Some(1) {
            std::thread::sleep(Duration::from_millis(20 + rng.below(50)));
            continue;
        }
        // Work on the batch for a while; sometimes past the lease's end.
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        let (mut acks, mut nacks) = (Vec::new(), Vec::new());
        for lease in &mut leases {
            match rng.below(100) {
                0..55 => acks.push(lease),
                55..70 => nacks.push(lease),
                70..80 => {
                    extend(env, lease, problems);
                    acks.push(lease);
                }
                _ => {} // let the lease run out
            }
        }
        settle(env, &mut acks, false, &mut rng, problems);
        settle(env, &mut nacks, true, &mut rng, problems);
        log.extend(leases);
    }
    log
}

// --------------------------------------------------------------------- audit

/// The final state of each delivery of the stress queue: (state, attempts).
fn final_states(env: &Env) -> HashMap<i64, (i64, i64)> {
    // Killed consumers' transactions end on the server first.
    env.settle();
    let rows = env.rows(
        "SELECT msg_id, state, attempts FROM deliveries
         WHERE queue_id = (SELECT id FROM queues WHERE name = $1)",
        &[QUEUE.into()],
    );
    let mut out = HashMap::new();
    for row in rows {
        let [id, state, attempts] = [0, 1, 2].map(|i| row[i].as_i64().unwrap());
        assert!(out.insert(id, (state, attempts)).is_none(), "id {id} twice");
    }
    out
}

struct Audit<'a> {
    published: &'a [i64],
    leases: &'a [Lease],
    states: &'a HashMap<i64, (i64, i64)>,
    failures: Vec<String>,
    counts: BTreeMap<&'static str, usize>,
}

impl Audit<'_> {
    fn fail(&mut self, what: String) {
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }

    fn count(&mut self, what: &'static str, n: usize) {
        *self.counts.entry(what).or_default() += n;
    }

    /// Every published id is in the database once, and nothing else is; each
    /// is acked, dead, or still deliverable.
    fn nothing_lost(&mut self) {
        let published: HashSet<i64> = self.published.iter().copied().collect();
        if published.len() != self.published.len() {
            self.fail("an id was returned to two publishes".into());
        }
        let stored: HashSet<i64> = self.states.keys().copied().collect();
        for id in published.difference(&stored) {
            self.fail(format!("published id {id} is not in the queue: lost"));
        }
        for id in stored.difference(&published) {
            self.fail(format!("id {id} is in the queue but no publisher got it"));
        }
        for (&id, &(state, attempts)) in self.states {
            let name = match state {
                0 => "final: ready",
                1 => "final: delayed",
                2 => "final: leased",
                3 => "final: acked",
                4 => "final: dead",
                _ => {
                    self.fail(format!("id {id} in unexpected state {state}"));
                    continue;
                }
            };
            self.count(name, 1);
            if state == 4 && attempts < MAX_ATTEMPTS {
                self.fail(format!("id {id} dead after only {attempts} attempts"));
            }
        }
        self.count("published ids checked", published.len());
    }

    /// No two consumers held one message at once; nothing came back after an ack.
    fn no_double_lease(&mut self) {
        let mut by_id: HashMap<i64, Vec<&Lease>> = HashMap::new();
        for l in self.leases {
            by_id.entry(l.id).or_default().push(l);
        }
        let mut pairs = 0;
        for (id, mut leases) in by_id {
            leases.sort_by_key(|l| l.attempt);
            for w in leases.windows(2) {
                let (a, b) = (w[0], w[1]);
                if a.attempt == b.attempt {
                    self.fail(format!(
                        "id {id} attempt {} delivered twice (consumers {} and {})",
                        a.attempt, a.consumer, b.consumer
                    ));
                    continue;
                }
                pairs += 1;
                if a.outcome == Outcome::Acked {
                    self.fail(format!(
                        "id {id} delivered again (attempt {}) after attempt {} was acked",
                        b.attempt, a.attempt
                    ));
                }
                // `b` was leased no later than its consume returned; `a`
                // held at least until `held_until_at_least`.
                if b.got < a.held_until_at_least() {
                    self.fail(format!(
                        "id {id}: attempt {} (consumer {}, leased by {}) overlaps attempt {} (consumer {}, held until {})",
                        b.attempt,
                        b.consumer,
                        b.got,
                        a.attempt,
                        a.consumer,
                        a.held_until_at_least()
                    ));
                }
            }
            if let Some(last) = leases.last() {
                let stored = self.states.get(&id).map_or(0, |s| s.1);
                if last.attempt > stored {
                    self.fail(format!(
                        "id {id}: attempt {} seen but {stored} stored",
                        last.attempt
                    ));
                }
            }
        }
        self.count("consecutive lease pairs checked", pairs);
    }

    /// Acks that succeeded stuck; nothing is acked that nobody tried to ack.
    fn acks_match(&mut self) {
        let mut tried: HashSet<i64> = HashSet::new();
        for l in self.leases {
            self.count(outcome_name(l.outcome), 1);
            if matches!(l.outcome, Outcome::Acked | Outcome::AckKilled) {
                tried.insert(l.id);
            }
            if l.outcome == Outcome::Acked && self.states.get(&l.id).map(|s| s.0) != Some(3) {
                self.fail(format!("id {} was acked but is not in state acked", l.id));
            }
        }
        for (&id, &(state, _)) in self.states {
            if state == 3 && !tried.contains(&id) {
                self.fail(format!("id {id} is acked, but no consumer acked it"));
            }
        }
        self.count("leases logged", self.leases.len());
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Acked => "lease: acked",
        Outcome::AckRefused => "lease: ack refused (lease had ended)",
        Outcome::AckKilled => "lease: ack killed",
        Outcome::Nacked => "lease: nacked",
        Outcome::NackRefused => "lease: nack refused (lease had ended)",
        Outcome::Expired => "lease: left to expire",
        Outcome::ConsumeKilled => "lease: consumer killed",
    }
}

#[test]
fn stress_publishers_and_consumers_lose_nothing_and_never_double_lease() {
    let env = Env::new();
    let secs: u64 = std::env::var("SPOOL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let mut rng = Rng::new("stress");
    env.run(&[
        "queue",
        "create",
        QUEUE,
        "--max-attempts",
        &MAX_ATTEMPTS.to_string(),
    ])
    .success();
    let problems = Problems::default();
    let started = Instant::now();
    let publish_until = started + Duration::from_secs(secs);
    // Consumers go on a little longer, to drain what the publishers left.
    let consume_until = publish_until + Duration::from_secs(3);
    let seeds: Vec<u64> = (0..PUBLISHERS + CONSUMERS).map(|_| rng.next()).collect();
    let (published, leases) = std::thread::scope(|s| {
        let pubs: Vec<_> = (0..PUBLISHERS)
            .map(|n| {
                let (env, problems, seed) = (&env, &problems, seeds[n]);
                s.spawn(move || publisher(env, n, seed, publish_until, problems))
            })
            .collect();
        let cons: Vec<_> = (0..CONSUMERS)
            .map(|n| {
                let (env, problems, seed) = (&env, &problems, seeds[PUBLISHERS + n]);
                s.spawn(move || consumer(env, n, seed, consume_until, problems))
            })
            .collect();
        let published: Vec<Published> = pubs.into_iter().map(|h| h.join().unwrap()).collect();
        let leases: Vec<Lease> = cons.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (published, leases)
    });
    let elapsed = started.elapsed();

    // The consumers' logs, as files a person can read after a failure.
    let log_path = env.path("leases.ndjson");
    let log: String = leases.iter().map(|l| l.log_line() + "\n").collect();
    std::fs::write(&log_path, log).unwrap();

    let ids: Vec<i64> = published.iter().flat_map(|p| p.ids.clone()).collect();
    let batches: usize = published.iter().map(|p| p.batches).sum();
    let states = final_states(&env);
    let mut audit = Audit {
        published: &ids,
        leases: &leases,
        states: &states,
        failures: problems.list.lock().unwrap().clone(),
        counts: BTreeMap::new(),
    };
    audit.nothing_lost();
    audit.no_double_lease();
    audit.acks_match();
    assert_consistent(&env, "after the stress run");

    use std::sync::atomic::Ordering::Relaxed;
    eprintln!(
        "stress audit after {elapsed:.1?} ({PUBLISHERS} publishers, {CONSUMERS} consumers, {secs}s of publishing):"
    );
    eprintln!(
        "  {} spool processes, {} killed with SIGKILL, {} busy (exit 75); {batches} publish commands",
        problems.processes.load(Relaxed),
        problems.killed.load(Relaxed),
        problems.busy.load(Relaxed)
    );
    for (what, n) in &audit.counts {
        eprintln!("  {what}: {n}");
    }
    let checked = if crate::common::on_postgres() {
        "doctor healthy"
    } else {
        "integrity_check ok"
    };
    eprintln!("  {checked}; counters match rows; no stderr said \"locked\" or \"panicked\"");
    assert!(
        audit.failures.is_empty(),
        "stress audit failed (lease log: {}):\n{}",
        log_path.display(),
        audit.failures.join("\n")
    );
    // The run must have done real work for the audit to mean anything.
    assert!(ids.len() > 100, "only {} messages published", ids.len());
    assert!(audit.counts.get("lease: acked").copied().unwrap_or(0) > 50);
    assert!(
        audit
            .counts
            .get("consecutive lease pairs checked")
            .copied()
            .unwrap_or(0)
            > 20
    );
    assert!(problems.killed.load(Relaxed) > 5);
}

/// The audit itself must be able to fail: feed it made-up logs with a lost
/// message, an overlapping lease, a redelivery after an ack and an ack that
/// did not stick.
#[test]
fn the_stress_audit_catches_what_it_claims_to() {
    let lease = |id, attempt, got, end, outcome| Lease {
        id,
        receipt: format!("r{id}_{attempt}"),
        attempt,
        consumer: attempt as usize,
        start: got - 5,
        got,
        end,
        settled_at: Some(got + 10),
        outcome,
    };
    let published = [1, 2, 3, 4];
    let leases = [
        // id 1: attempt 2 leased at 150 while attempt 1 held until 200.
        lease(1, 1, 100, 200, Outcome::Expired),
        lease(1, 2, 150, 400, Outcome::Acked),
        // id 2: delivered again after a successful ack.
        lease(2, 1, 100, 200, Outcome::Acked),
        lease(2, 2, 300, 400, Outcome::Expired),
        // id 3: acked, but the database says ready.
        lease(3, 1, 100, 200, Outcome::Acked),
    ];
    // id 4 is missing from the database: lost.
    let states: HashMap<i64, (i64, i64)> = [(1, (3, 2)), (2, (3, 2)), (3, (0, 1))]
        .into_iter()
        .collect();
    let mut audit = Audit {
        published: &published,
        leases: &leases,
        states: &states,
        failures: Vec::new(),
        counts: BTreeMap::new(),
    };
    audit.nothing_lost();
    audit.no_double_lease();
    audit.acks_match();
    let text = audit.failures.join("\n");
    assert!(
        text.contains("published id 4 is not in the queue"),
        "{text}"
    );
    assert!(text.contains("id 1: attempt 2"), "{text}");
    assert!(text.contains("id 2 delivered again"), "{text}");
    assert!(text.contains("id 3 was acked but"), "{text}");
    assert_eq!(audit.failures.len(), 4, "{text}");
}
