//! `kill -9` at random moments: every command is one transaction (or, for
//! `publish --stream`, a clear series of them), so the database stays
//! consistent and shows all or nothing of each.
//!
//! The delays are random; the seed is printed, and `SPOOL_TEST_SEED=N` replays
//! a run.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, assert_consistent};

/// A small xorshift generator: enough to spread kill times, and repeatable.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `SPOOL_TEST_SEED`, else the clock; prints the seed.
    pub fn new(test: &str) -> Rng {
        let seed = std::env::var("SPOOL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: SPOOL_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    /// A generator for one of several threads, from a seed drawn by the test.
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The stored bodies in id order (none when the database is not there yet),
/// once every killed spool's transaction has ended on the server.
fn bodies(env: &Env) -> Vec<String> {
    env.settle();
    if !env.has_tables() {
        return Vec::new();
    }
    env.rows("SELECT body FROM messages ORDER BY id", &[])
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect()
}

fn lines(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("{{\"{tag}\":{i},\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}"))
        .collect()
}

/// How long a publish of `input` takes here (on a database of its own, on
/// the same backend), to spread the kills over it.
fn time_publish(input: &Path, extra: &[&str]) -> Duration {
    let scratch = Env::new();
    let start = Instant::now();
    let mut args = vec!["publish", "t", "-q"];
    args.extend_from_slice(extra);
    let status = scratch
        .cmd()
        .args(&args)
        .stdin(std::fs::File::open(input).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

fn kill_after(mut child: Child, delay: Duration) -> &'static str {
    std::thread::sleep(delay);
    let outcome = match child.try_wait().unwrap() {
        Some(_) => "finished",
        None => {
            child.kill().unwrap();
            "killed"
        }
    };
    child.wait().unwrap();
    outcome
}

/// Kills all-or-nothing publishes at random moments; after each, either the
/// whole input or none of it is there, and the database is consistent.
fn all_or_nothing_under_kill(n_lines: usize, runs: usize, test: &str) {
    let env = Env::new();
    let mut rng = Rng::new(test);
    let input = lines(n_lines, "n");
    let file = env.path("input.ndjson");
    std::fs::write(&file, input.join("\n") + "\n").unwrap();
    let full = time_publish(&file, &[]);
    let mut batches = 0;
    let mut outcomes = std::collections::BTreeMap::new();
    for run in 0..runs {
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 * 5 / 4 + 1));
        let child = env
            .cmd()
            .args(["publish", "q", "-q"])
            .stdin(std::fs::File::open(&file).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let outcome = kill_after(child, delay);
        let context = format!("run {run}, {outcome} after {delay:?}");
        let stored = bodies(&env);
        assert_eq!(
            stored.len() % n_lines,
            0,
            "{context}: {} messages",
            stored.len()
        );
        let now = stored.len() / n_lines;
        assert!(now == batches || now == batches + 1, "{context}");
        let committed = now > batches;
        batches = now;
        if committed {
            assert_eq!(&stored[stored.len() - n_lines..], &input[..], "{context}");
        }
        assert_consistent(&env, &context);
        *outcomes
            .entry((outcome, if committed { "all" } else { "none" }))
            .or_insert(0) += 1;
    }
    eprintln!("{test}: one publish takes {full:?}; outcomes over {runs} runs: {outcomes:?}");
}

#[test]
fn kill_9_during_all_or_nothing_publish_leaves_all_or_nothing() {
    // 10k lines: buffered in memory, then written in one transaction.
    all_or_nothing_under_kill(10_000, 20, "buffered publish");
}

#[test]
fn kill_9_during_a_write_through_publish_leaves_all_or_nothing() {
    // Over 100k lines (or 16 MiB): written while it is read, one transaction.
    all_or_nothing_under_kill(105_000, 4, "write-through publish");
}

#[test]
fn kill_9_during_stream_publish_leaves_a_prefix_of_whole_lines() {
    let env = Env::new();
    let mut rng = Rng::new("stream publish");
    let mut published: Vec<String> = Vec::new();
    let mut seen_partial = 0;
    for run in 0..12 {
        let input = lines(3000, &format!("r{run}"));
        let mut child = env
            .cmd()
            .args(["publish", "q", "--stream", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Write the input in pieces that cut lines anywhere, with pauses, and
        // kill the publisher at a random moment in between.
        let text = input.join("\n") + "\n";
        let bytes = text.as_bytes();
        let kill_at = rng.below(bytes.len() as u64) as usize;
        let mut pos = 0;
        while pos < kill_at {
            let end = (pos + 1 + rng.below(20_000) as usize).min(kill_at);
            if stdin.write_all(&bytes[pos..end]).is_err() {
                break;
            }
            pos = end;
            std::thread::sleep(Duration::from_millis(rng.below(40)));
        }
        std::thread::sleep(Duration::from_millis(rng.below(150)));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        let context = format!("run {run}, killed after {kill_at} of {} bytes", bytes.len());
        let stored = bodies(&env);
        let new = &stored[published.len()..];
        assert!(
            new.len() <= input.len() && new == &input[..new.len()],
            "{context}: the visible messages are not a prefix of the input"
        );
        let complete_lines = bytes[..kill_at].iter().filter(|&&b| b == b'\n').count();
        assert!(
            new.len() <= complete_lines,
            "{context}: a partial line is visible"
        );
        if new.len() < complete_lines {
            seen_partial += 1;
        }
        published.extend_from_slice(new);
        assert_consistent(&env, &context);
    }
    eprintln!(
        "stream publish: {} messages survived 12 kills; {seen_partial} kills lost uncommitted lines",
        published.len()
    );
    assert!(!published.is_empty(), "nothing was ever committed");
}

#[test]
fn kill_9_during_consume_and_ack_leaves_whole_batches() {
    let env = Env::new();
    let mut rng = Rng::new("consume and ack");
    // Enough for every claim below to succeed: 10 x 1000, then 8 x 500.
    let input = lines(14_000, "n").join("\n") + "\n";
    env.run_with_input(&["publish", "q", "-q"], &input)
        .success();
    let count = |state: i64| -> i64 {
        env.settle();
        env.rows(
            "SELECT count(*) FROM deliveries WHERE state = $1",
            &[state.into()],
        )[0][0]
            .as_i64()
            .unwrap()
    };
    for run in 0..10 {
        // A claim of 1000 is one transaction: 0 or 1000 more leased.
        let leased = count(2);
        let child = env
            .cmd()
            .args(["consume", "q", "-n", "1000", "--visibility", "1h"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let outcome = kill_after(child, Duration::from_millis(rng.below(120)));
        let context = format!("consume run {run} ({outcome})");
        let delta = count(2) - leased;
        assert!(delta == 0 || delta == 1000, "{context}: {delta} leased");
        assert_consistent(&env, &context);
    }
    // Lease a batch, then kill acks of it: 0 or all of them acked.
    for run in 0..8 {
        let run_out = env.run(&["consume", "q", "-n", "500", "--visibility", "1h"]);
        run_out.success();
        let receipts: String = run_out
            .json_lines()
            .iter()
            .map(|m| format!("{}\n", m["receipt"].as_str().unwrap()))
            .collect();
        let acked = count(3);
        let mut child = env
            .cmd()
            .arg("ack")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(receipts.as_bytes())
            .unwrap();
        let outcome = kill_after(child, Duration::from_millis(rng.below(60)));
        let context = format!("ack run {run} ({outcome})");
        let delta = count(3) - acked;
        assert!(delta == 0 || delta == 500, "{context}: {delta} acked");
        assert_consistent(&env, &context);
    }
}
