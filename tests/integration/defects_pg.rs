//! Regression tests for PostgreSQL defects of issue 15: ordered groups that
//! deadlocked, lease tokens with zero low bits, and `spool work` that left
//! handlers running after a lost connection. They run on both backends
//! through the harness (except the lost connection, which only PostgreSQL has).

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Env, on_postgres, receipt};

/// For a test of something only PostgreSQL has: on SQLite, says so on
/// stderr and returns true, so the test returns.
fn postgres_only(what: &str) -> bool {
    if !on_postgres() {
        eprintln!("skipped on SQLite: {what}");
    }
    !on_postgres()
}

/// A small deterministic generator for varying orders.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// One consumer round: `spool consume q -n 20 | spool ack`. Returns the
/// failures (any exit but 0, and 1 from an empty consume).
fn consume_and_ack(env: &Env) -> Vec<String> {
    let consumed = env.run(&["consume", "q", "-n", "20"]);
    match consumed.code {
        0 => {}
        1 => return Vec::new(),
        _ => return vec![format!("consume: {consumed:?}")],
    }
    let acked = env.run_with_input(&["ack"], &consumed.stdout);
    if acked.code != 0 {
        return vec![format!("ack: {acked:?}")];
    }
    Vec::new()
}

#[test]
fn grouped_publishes_and_concurrent_acks_never_fail_busy_nor_lose_messages() {
    let env = Arc::new(Env::new());
    env.run(&["queue", "create", "q"]).success();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (env, stop) = (Arc::clone(&env), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rng = Lcg(7);
            let (mut ids, mut failures) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                // 12 messages over 6 of 10 groups, in a varying order.
                let mut input = String::new();
                for i in 0..12 {
                    let g = rng.next() % 10;
                    input.push_str(&format!("{{\"g\":\"g{g}\",\"i\":{i}}}\n"));
                }
                let run = env.run_with_input(&["publish", "q", "--group-from", "/g"], &input);
                if run.code == 0 {
                    ids.extend(run.ids());
                } else {
                    failures.push(format!("publish: {run:?}"));
                }
            }
            (ids, failures)
        })
    };
    let ackers: Vec<_> = (0..2)
        .map(|_| {
            let (env, stop) = (Arc::clone(&env), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    failures.extend(consume_and_ack(&env));
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let (ids, mut failures) = publisher.join().unwrap();
    for a in ackers {
        failures.extend(a.join().unwrap());
    }
    let busy = failures.iter().filter(|f| f.contains("code: 75")).count();
    assert!(
        failures.is_empty(),
        "{} failure(s), {busy} of them exit 75, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(!ids.is_empty(), "nothing was published");
    // Drain: every published message ends acked.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let failures = consume_and_ack(&env);
        assert!(failures.is_empty(), "{failures:?}");
        let open = env.count("SELECT count(*) FROM deliveries WHERE state <> 3");
        if open == 0 {
            break;
        }
        assert!(Instant::now() < end, "{open} message(s) never got acked");
    }
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an id was given twice");
    let acked = env.count("SELECT count(*) FROM deliveries WHERE state = 3");
    assert_eq!(acked, ids.len() as i64, "acked vs published");
}

/// The queue id, message id and lease of a receipt (`q_m_lease`, in hex).
fn parse_receipt(text: &str) -> (u64, u64, u64) {
    let parts: Vec<u64> = text
        .split('_')
        .map(|p| u64::from_str_radix(p, 16).unwrap_or_else(|_| panic!("receipt {text}")))
        .collect();
    assert_eq!(parts.len(), 3, "receipt {text}");
    (parts[0], parts[1], parts[2])
}

fn check_tokens(leases: &[u64], context: &str) {
    let distinct: HashSet<u64> = leases.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        leases.len(),
        "{context}: a lease token repeats"
    );
    // With random tokens, the chance that the low 16 bits of 200 tokens
    // are all zero is 2^-3200; float-derived tokens had 9 to 12 zero bits.
    let low = leases.iter().fold(0u64, |acc, l| acc | (l & 0xffff));
    assert_eq!(low, 0xffff, "{context}: low bits never set: {leases:x?}");
    let high = leases.iter().fold(0u64, |acc, l| acc | (l >> 48));
    assert_eq!(high, 0xffff, "{context}: high bits never set: {leases:x?}");
}

#[test]
fn lease_tokens_are_random_in_every_bit_on_every_claim_path() {
    let env = Env::new();
    let input: String = (0..400).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    env.run_with_input(&["publish", "q"], &input).success();
    // Batches of 50 (the full claim, then the fast path of a recent claim),
    // and one by one.
    let mut leases = Vec::new();
    for _ in 0..4 {
        let run = env.run(&["consume", "q", "-n", "50"]);
        run.success();
        for line in run.json_lines() {
            leases.push(parse_receipt(receipt(&line)).2);
        }
    }
    for _ in 0..40 {
        let msg = env.consume_one("q", &[]);
        leases.push(parse_receipt(receipt(&msg)).2);
    }
    assert_eq!(leases.len(), 240);
    check_tokens(&leases, "consume");
    // `spool work` claims through its own path.
    let out = env.path("receipts");
    let run = env.run(&[
        "work",
        "q",
        "--until-empty",
        "--max",
        "200",
        "--",
        "sh",
        "-c",
        &format!("echo $SPOOL_RECEIPT >> {}", out.display()),
    ]);
    run.success();
    let text = std::fs::read_to_string(&out).unwrap();
    let work: Vec<u64> = text.lines().map(|l| parse_receipt(l).2).collect();
    assert_eq!(work.len(), 160);
    check_tokens(&work, "work");
}

#[test]
fn work_stops_its_handlers_when_the_connection_is_lost() {
    if postgres_only("terminating the server sessions of spool") {
        return;
    }
    let env = Env::new();
    env.publish("q", "{}");
    let pid_file = env.path("pid");
    // Into a file, not a pipe: a handler left running would hold a pipe open.
    let stderr_file = env.path("stderr");
    let mut child = env
        .cmd()
        .args([
            "work",
            "q",
            "--",
            "sh",
            "-c",
            &format!("echo $$ > {}; exec sleep 30", pid_file.display()),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .expect("spool work starts");
    assert!(
        crate::common::wait_for_file(&pid_file, 20),
        "the handler did not start"
    );
    std::thread::sleep(Duration::from_millis(200));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let schema = env.pg_schema.clone().unwrap();
    let mut admin = env.pg();
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1) AS t",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert!(killed > 0, "no session of spool work found");
    // It notices at its next heartbeat or wait, well within the 30 s the
    // handler sleeps; a kill after 25 s keeps a hung test from hanging.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(25) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_file).unwrap();
    let status = status.unwrap_or_else(|| panic!("spool work did not exit: {stderr}"));
    // The handler is gone (not a zombie of ours: it is reaped by spool or init).
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    if alive {
        // Do not leave it behind.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(
        !alive,
        "the handler {pid} still runs after work exited: {stderr}"
    );
    assert_eq!(status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains("1 stopped unfinished"),
        "the summary does not report the stopped handler: {stderr}"
    );
}

#[test]
fn busy_messages_say_what_was_held_and_for_how_long() {
    let env = Env::new();
    env.publish("q", "1");
    let lock = crate::common::Locker::hold(&env);
    let run = env.run(&["--busy-timeout", "300ms", "publish", "q", "2"]);
    lock.release();
    run.code(75);
    let held = if on_postgres() {
        "another transaction held a lock this command needed"
    } else {
        "another connection held the SQLite write lock"
    };
    run.stderr_has(held)
        .stderr_has("longer than the busy timeout (300ms)")
        .stderr_has("raise `--busy-timeout`");
    assert!(!run.stderr.contains("deadlock"), "{run:?}");
}
