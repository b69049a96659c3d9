//! `spool work`: handlers, acks and retries, heartbeats, signals, stops.

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;

/// A `spool work` running in the background, its stderr read line by line.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Worker {
    fn start(env: &Env, args: &[&str]) -> Worker {
        let mut child = env
            .cmd()
            .arg("work")
            .args(args)
            .current_dir(env.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spool starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for a stderr line containing `text`.
    fn wait_for_line(&mut self, text: &str) {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let found = line.contains(text);
                self.seen.push(line);
                if found {
                    return;
                }
            }
        }
        panic!("no stderr line with {text:?}; got {:?}", self.seen);
    }

    /// Waits for the exit (killing spool after a generous time) and returns
    /// the exit code and all of stderr.
    fn finish(&mut self) -> (i32, String) {
        let end = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("spool work did not end; stderr so far: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }
}

/// A failed test must not leave a worker behind.
impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `spool work` in the test's folder (handlers write files there).
/// A run that does not end within a generous time is killed and fails the
/// test, rather than hanging it.
fn work(env: &Env, args: &[&str]) -> Run {
    let mut child = env
        .cmd()
        .arg("work")
        .args(args)
        .current_dir(env.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spool starts");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("spool work {args:?} did not end; stderr: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run::from(std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    })
}

fn lines_of(env: &Env, name: &str) -> Vec<String> {
    std::fs::read_to_string(env.path(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// (state, attempts) of message `id` in `queue`.
fn row(env: &Env, queue: &str, id: i64) -> (i64, i64) {
    let rows = env.rows(
        "SELECT state, attempts FROM deliveries WHERE msg_id = $1
         AND queue_id = (SELECT id FROM queues WHERE name = $2)",
        &[id.into(), queue.into()],
    );
    let r = rows.first().expect("delivery row");
    (r[0].as_i64().unwrap(), r[1].as_i64().unwrap())
}

#[test]
fn twenty_messages_with_four_handlers_are_each_handled_once() {
    let env = Env::new();
    let ids: Vec<i64> = (0..20).map(|i| env.publish("q", &i.to_string())).collect();
    let run = work(
        &env,
        &[
            "q",
            "--concurrency",
            "4",
            "--until-empty",
            "--",
            "sh",
            "-c",
            "echo \"$SPOOL_ID $(cat)\" >> handled",
        ],
    );
    run.success().stderr_has("handled 20");
    let mut handled: Vec<(i64, i64)> = lines_of(&env, "handled")
        .iter()
        .map(|l| {
            let (id, body) = l.split_once(' ').expect("id and body");
            (id.parse().unwrap(), body.parse().unwrap())
        })
        .collect();
    handled.sort();
    let expected: Vec<(i64, i64)> = ids.iter().zip(0..).map(|(&id, n)| (id, n)).collect();
    assert_eq!(
        handled, expected,
        "each message exactly once, with its body"
    );
    for &id in &ids {
        assert_eq!(
            row(&env, "q", id),
            (3, 1),
            "message {id} acked at attempt 1"
        );
    }
    let n = env.counters()["q"];
    let (ready, leased, acked) = (n[0] + n[1] + n[5], n[2], n[3]);
    assert_eq!((ready, leased, acked), (0, 0, 20));
    assert_consistent(&env, "after the work");
}

#[test]
fn handlers_get_the_body_and_environment_and_a_live_receipt() {
    let env = Env::new();
    let id = env.publish("jobs", "{\"a\": [1, 2]}");
    // A first delivery whose lease runs out, so work's delivery is attempt 2.
    env.consume_one("jobs", &["--visibility", "100ms"]);
    std::thread::sleep(Duration::from_millis(200));
    let script = "cat > body; \
        printf '%s\\n' \"$SPOOL_QUEUE\" \"$SPOOL_ID\" \"$SPOOL_ATTEMPT\" \"$SPOOL_RECEIPT\" > env; \
        \"$1\" extend \"$SPOOL_RECEIPT\" --by 1m; echo $? > extend_code";
    work(
        &env,
        &[
            "jobs",
            "--until-empty",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            bin(),
        ],
    )
    .success();
    assert_eq!(
        std::fs::read(env.path("body")).unwrap(),
        b"{\"a\": [1, 2]}",
        "the body exactly as stored, no newline added"
    );
    let vars = lines_of(&env, "env");
    assert_eq!(
        vars[..3],
        ["jobs".to_owned(), id.to_string(), "2".to_owned()]
    );
    assert!(
        vars[3].starts_with(&format!("1_{id:x}_")),
        "receipt {:?}",
        vars[3]
    );
    assert_eq!(
        lines_of(&env, "extend_code"),
        ["0"],
        "the receipt is the live lease's"
    );
    assert_eq!(row(&env, "jobs", id), (3, 2));
}

#[test]
fn a_failing_handler_is_retried_with_growing_delays_then_dead() {
    let env = Env::new();
    env.run(&[
        "queue",
        "create",
        "f",
        "--max-attempts",
        "3",
        "--retry-delay",
        "300ms",
    ])
    .success();
    let id = env.publish("f", "\"x\"");
    let run = work(
        &env,
        &[
            "f",
            "--max",
            "3",
            "--",
            "sh",
            "-c",
            "echo \"$SPOOL_ATTEMPT $(date +%s%N)\" >> tries; exit 3",
        ],
    );
    run.code(4)
        .stderr_has("exit status 3")
        .stderr_has("3 failed (1 dead)");
    let tries: Vec<(i64, i64)> = lines_of(&env, "tries")
        .iter()
        .map(|l| {
            let (attempt, ns) = l.split_once(' ').unwrap();
            (
                attempt.parse().unwrap(),
                ns.parse::<i64>().unwrap() / 1_000_000,
            )
        })
        .collect();
    let attempts: Vec<i64> = tries.iter().map(|t| t.0).collect();
    assert_eq!(attempts, [1, 2, 3]);
    // Backoffs are 300ms × 2^(attempt−1) ± 20%: at least 240ms, then 480ms.
    // Only lower bounds: a busy machine can only make the gaps longer.
    let first_gap = tries[1].1 - tries[0].1;
    let second_gap = tries[2].1 - tries[1].1;
    assert!(first_gap >= 235, "first retry after {first_gap}ms");
    assert!(second_gap >= 475, "second retry after {second_gap}ms");
    assert_eq!(row(&env, "f", id), (4, 3), "dead after 3 attempts");
}

#[test]
fn a_handler_killed_by_a_signal_counts_as_failed() {
    let env = Env::new();
    let id = env.publish("q", "1");
    let run = work(
        &env,
        &["q", "--until-empty", "--", "sh", "-c", "kill -KILL $$"],
    );
    run.code(4)
        .stderr_has("killed by signal 9")
        .stderr_has("1 failed");
    assert_eq!(
        row(&env, "q", id),
        (1, 1),
        "delayed by the backoff, attempt counted"
    );
}

#[test]
fn a_slow_handler_keeps_its_lease_and_is_acked_at_attempt_1() {
    let env = Env::new();
    let id = env.publish("slow", "\"s\"");
    let worker = Worker::start(
        &env,
        &[
            "slow",
            "--until-empty",
            "--visibility",
            "1s",
            "--",
            "sh",
            "-c",
            "touch started; sleep 3.5",
        ],
    );
    assert!(wait_for_file(&env.path("started"), 30));
    let started = Instant::now();
    let mut child = worker;
    let mut late_looks = 0;
    while child.child.try_wait().unwrap().is_none() {
        let late = started.elapsed() > Duration::from_millis(1500);
        assert!(
            env.consume("slow", &[]).is_empty(),
            "a running handler's message was delivered to another consumer"
        );
        late_looks += usize::from(late);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        late_looks > 0,
        "no look after the first lease would have ended"
    );
    let (code, stderr) = child.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(row(&env, "slow", id), (3, 1));
}

#[test]
fn sigterm_lets_a_running_handler_finish_and_acks_it() {
    let env = Env::new();
    let first = env.publish("q", "1");
    let second = env.publish("q", "2");
    let mut worker = Worker::start(
        &env,
        &[
            "q",
            "--",
            "sh",
            "-c",
            "touch started; sleep 3; echo $SPOOL_ID >> finished",
        ],
    );
    assert!(wait_for_file(&env.path("started"), 30));
    worker.signal("TERM");
    worker.wait_for_line("stopping");
    let (code, stderr) = worker.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines_of(&env, "finished"), [first.to_string()]);
    assert_eq!(row(&env, "q", first), (3, 1), "acked");
    assert_eq!(row(&env, "q", second), (0, 0), "never claimed");
}

#[test]
fn a_second_signal_stops_handlers_and_releases_their_messages() {
    let env = Env::new();
    let id = env.publish("q", "1");
    let started = Instant::now();
    let mut worker = Worker::start(&env, &["q", "--", "sh", "-c", "touch started; sleep 30"]);
    assert!(wait_for_file(&env.path("started"), 30));
    worker.signal("INT");
    worker.wait_for_line("stopping:");
    worker.signal("TERM");
    let (code, stderr) = worker.finish();
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("1 stopped"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the handler was not stopped"
    );
    assert_eq!(
        row(&env, "q", id),
        (0, 0),
        "ready again, attempt not counted"
    );
}

#[test]
fn max_stops_after_n_messages() {
    let env = Env::new();
    let ids: Vec<i64> = (0..5).map(|i| env.publish("q", &i.to_string())).collect();
    // Without --until-empty: --max alone ends the run.
    let run = work(
        &env,
        &[
            "q",
            "--max",
            "2",
            "--concurrency",
            "3",
            "--",
            "sh",
            "-c",
            "echo $SPOOL_ID >> handled",
        ],
    );
    run.success().stderr_has("handled 2");
    let handled = lines_of(&env, "handled");
    assert_eq!(handled.len(), 2, "{handled:?}");
    let states: Vec<i64> = ids.iter().map(|&id| row(&env, "q", id).0).collect();
    assert_eq!(states, [3, 3, 0, 0, 0]);
}

#[test]
fn a_missing_command_is_a_clear_error_and_claims_nothing() {
    let env = Env::new();
    let id = env.publish("q", "1");
    let run = work(&env, &["q", "--until-empty", "--", "no-such-handler-xyz"]);
    run.code(2)
        .stderr_has("`no-such-handler-xyz`")
        .stderr_has("no such command");
    assert_eq!(row(&env, "q", id), (0, 0));
}

#[test]
fn a_handler_that_cannot_start_releases_its_messages() {
    let env = Env::new();
    let ids: Vec<i64> = (0..3).map(|i| env.publish("q", &i.to_string())).collect();
    // An executable file whose interpreter does not exist: found, but the
    // start itself fails, after the messages were claimed.
    let script = env.path("handler.sh");
    std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = work(
        &env,
        &[
            "q",
            "--until-empty",
            "--concurrency",
            "2",
            "--",
            "./handler.sh",
        ],
    );
    run.code(2)
        .stderr_has("`./handler.sh`")
        .stderr_has("back in the queue");
    for id in ids {
        assert_eq!(row(&env, "q", id), (0, 0), "message {id} untouched");
    }
}

#[test]
fn an_unknown_queue_is_empty_with_a_warning() {
    let env = Env::new();
    env.publish("orders", "1");
    let run = work(&env, &["ordres", "--until-empty", "--", "true"]);
    run.success().stderr_has("`orders`").stderr_has("empty");
}

#[test]
fn an_idle_worker_picks_up_a_new_message() {
    let env = Env::new();
    env.run(&["queue", "create", "q"]).success();
    let mut worker = Worker::start(&env, &["q", "--max", "1", "--", "sh", "-c", "cat > got"]);
    std::thread::sleep(Duration::from_millis(300));
    let id = env.publish("q", "\"late\"");
    let (code, stderr) = worker.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read(env.path("got")).unwrap(), b"\"late\"");
    assert_eq!(row(&env, "q", id), (3, 1));
}

#[test]
fn large_bodies_reach_the_handler_and_unread_stdin_is_fine() {
    let env = Env::new();
    let body = format!("\"{}\"", "x".repeat(200_000));
    env.run_with_input(&["publish", "q", "--single"], &body)
        .success();
    let big = 1;
    let run = work(
        &env,
        &["q", "--until-empty", "--", "sh", "-c", "wc -c > size"],
    );
    run.success();
    assert_eq!(lines_of(&env, "size")[0].trim(), body.len().to_string());
    // A handler that never reads its stdin still succeeds.
    env.run_with_input(&["publish", "q", "--single"], &body)
        .success();
    let unread = 2;
    work(&env, &["q", "--until-empty", "--", "true"]).success();
    assert_eq!(row(&env, "q", big), (3, 1));
    assert_eq!(row(&env, "q", unread), (3, 1));
}

#[test]
fn a_lost_lease_is_reported_and_not_acked() {
    let env = Env::new();
    let id = env.publish("q", "1");
    // On its first attempt, the handler stops spool itself for longer than
    // the lease, so no heartbeat can run: when spool resumes, the lease has
    // ended. The message is then deliverable again, and attempt 2 succeeds.
    let run = work(
        &env,
        &[
            "q",
            "--until-empty",
            "--visibility",
            "1s",
            "--",
            "sh",
            "-c",
            "if [ $SPOOL_ATTEMPT = 1 ]; then kill -STOP $PPID; sleep 2.5; kill -CONT $PPID; fi",
        ],
    );
    run.code(4)
        .stderr_has("lease")
        .stderr_has("1 succeeded")
        .stderr_has("1 lost");
    assert_eq!(
        row(&env, "q", id),
        (3, 2),
        "attempt 1, whose lease ended, was not acked"
    );
}

#[test]
fn json_summary_and_quiet() {
    let env = Env::new();
    env.publish("q", "1");
    env.publish("q", "2");
    let run = work(&env, &["q", "--until-empty", "--json", "--", "true"]);
    run.success();
    let summary: serde_json::Value =
        serde_json::from_str(run.stderr.trim()).expect("one JSON object");
    assert_eq!(summary["handled"], 2);
    assert_eq!(summary["succeeded"], 2);
    assert_eq!(summary["failed"], 0);
    env.publish("q", "3");
    let run = work(&env, &["q", "--until-empty", "-q", "--", "true"]);
    run.success();
    assert!(run.stderr.is_empty(), "{run:?}");
}

#[test]
fn concurrency_is_at_least_one() {
    let env = Env::new();
    work(&env, &["q", "--concurrency", "0", "--", "true"]).code(2);
    work(&env, &["q", "--max", "0", "--", "true"]).code(2);
}
