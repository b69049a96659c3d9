//! `spool work`: run a command for each message, with leases kept alive,
//! retries and a graceful stop.
//!
//! One thread runs a loop of rounds. Each round: count stop signals, reap the
//! handlers that ended, extend the leases that are due, then settle the ended
//! handlers and lease messages for the free slots in one transaction, and
//! start their handlers. Between rounds it sleeps until a handler ends
//! (SIGCHLD), a signal arrives, a heartbeat is due or, with free slots and an
//! empty queue, another process commits.

mod events;
mod group_commit;
mod handler;
mod report;

use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::Context;
use crate::error::{Exit, Failure};
use crate::parse;
use crate::store::{self, Db, Delivery, Done, Emit, Outcome, Receipt, Settled};

use self::events::Events;
use self::group_commit::GroupCommit;
use self::handler::Handler;
use self::report::{Report, Tally};
use super::wait;

/// The examples shown by `-h` and `--help`.
macro_rules! examples {
    () => {
        "\
Examples:
  spool work orders -- ./handle-order.sh            # one at a time, until interrupted
  spool work orders --concurrency 8 -- ./handle-order.sh
  spool work mail --until-empty -- python3 send.py  # from cron: drain, then exit
  spool work jobs -- sh -c 'jq -r .url | xargs curl -fsS'
  spool work payment --emit payments.captured -- ./charge.sh  # stdout lines: next events"
    };
}

const EXAMPLES: &str = examples!();

/// `--help` explains the contract before the examples.
const LONG_HELP: &str = concat!(
    "\
The handler gets the body on stdin, exactly as stored (no newline added), and
SPOOL_QUEUE, SPOOL_ID, SPOOL_ATTEMPT and SPOOL_RECEIPT in its environment. Exit 0
acks; any other exit, or death by a signal, nacks with the queue's backoff
(retry_delay × 2^(attempt−1), ±20%, at most 1h); the last allowed failure makes
the message dead. Leases are extended every third of their length while
handlers run.

SIGINT/SIGTERM: take no new messages, let running handlers finish, then exit. A
second signal stops the handlers (SIGTERM to each one's process group, SIGKILL
5s later or on a third signal): a stopped handler's message goes back to the
queue without counting the attempt (one that still exits 0 is acked).

Exit status: 0 when every handler succeeded (an empty queue too), 4 when one
failed, was stopped or lost its lease, 2 when the handler cannot be started.

--emit TARGET: each line the handler prints on stdout is a message (JSON; text
with --emit-raw) published to TARGET in the transaction that acks its message,
with the headers spool-cause-queue and spool-cause-id and the message's group.
A failed handler emits nothing; a line that is not valid JSON, output over
16MiB, or a target that refuses the messages fails the delivery like a failed
handler. Without --emit, the handler's stdout is spool's.

",
    examples!()
);

/// How long handlers stopped by a second signal get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The longest sleep between rounds when nothing else sets a time.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Run a command for each message.
///
/// CMD runs once per message, directly (no shell unless CMD is one), with
/// the body on its stdin and SPOOL_QUEUE, SPOOL_ID, SPOOL_ATTEMPT and
/// SPOOL_RECEIPT in its environment; its stdout and stderr are spool's. Exit
/// 0 acks the message; any other exit, or death by a signal, nacks it with
/// the queue's backoff, and its last allowed failure makes it dead. Leases
/// are extended while handlers run. SIGINT/SIGTERM: take no new messages and
/// let running handlers finish; a second signal stops them (SIGTERM, then
/// SIGKILL after 5s) and puts their messages back without counting the
/// attempt. Exits 0 when every handler succeeded, 4 when any failed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = EXAMPLES,
    after_long_help = LONG_HELP,
    override_usage = "spool work [OPTIONS] <QUEUE> [--] <CMD> [ARG]..."
)]
pub struct Args {
    /// Queue to take messages from
    #[arg(value_parser = parse::queue_name, add = crate::commands::docs::complete_queues())]
    pub queue: String,
    /// Run up to N handlers at once
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// Stop when nothing is deliverable now and no handler runs (for cron)
    #[arg(long)]
    pub until_empty: bool,
    /// Stop after N messages
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// Lease length, renewed while a handler runs [default: the queue's visibility]
    #[arg(long, value_name = "DUR", value_parser = parse::positive_duration)]
    pub visibility: Option<Duration>,
    /// Publish each line the handler prints on stdout to this queue or topic,
    /// in the transaction that acks its message
    #[arg(long, value_name = "TARGET", value_parser = parse::queue_name, add = crate::commands::docs::complete_queues())]
    pub emit: Option<String>,
    /// With --emit: each line is a text message, not JSON
    #[arg(long, requires = "emit")]
    pub emit_raw: bool,
    /// The handler command and its arguments (everything after it, or after
    /// `--`, is the handler's)
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Runs `spool work`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    let program = args
        .command
        .first()
        .map_or(OsStr::new(""), |p| p.as_os_str());
    handler::check_program(program).map_err(|e| cannot_run(program, &e))?;
    // With --until-empty, a database that does not exist holds nothing to
    // do, and is not made; a worker that waits needs the file to watch.
    let store = match args.until_empty {
        true => ctx.existing_store()?,
        false => Some(ctx.store()?),
    };
    let Some(store) = store else {
        let report = Report::new(&ctx.out);
        report.warn(&crate::commands::consume::no_database_yet(&args.queue));
        report.finish(&Tally::default());
        return Ok(Exit::Ok);
    };
    let mut events = Events::listen()?;
    let mut worker = Worker::new(ctx, &args, store);
    let outcome = worker.run(&mut events);
    if outcome.is_err() {
        worker.abandon_handlers();
    }
    drop(events);
    // Whatever happened, what was committed goes to disk before spool exits.
    let flushed = worker.commits.flush(&worker.store, true);
    let Worker {
        report,
        tally,
        spawn_error,
        ..
    } = worker;
    report.finish(&tally);
    outcome?;
    flushed?;
    if let Some(err) = spawn_error {
        return Err(cannot_start(program, &err).into());
    }
    Ok(if tally.all_ok() {
        Exit::Ok
    } else {
        Exit::HandlerFailed
    })
}

/// `cannot run the handler `./x`: …` with the fix for the usual causes.
fn cannot_run(program: &OsStr, err: &std::io::Error) -> Failure {
    let name = program.to_string_lossy();
    let why = match err.kind() {
        std::io::ErrorKind::NotFound if name.contains('/') => {
            "no such file. Check the path".to_owned()
        }
        std::io::ErrorKind::NotFound => format!(
            "no such command on PATH. Check the spelling, or give its path: `spool work QUEUE -- ./{name}`"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("permission denied. Make it executable: `chmod +x {name}`")
        }
        _ => err.to_string(),
    };
    Failure::usage(format!("cannot run the handler `{name}`: {why}"))
}

/// The command was found, yet starting it failed: the usual cause of a
/// "not found" now is the interpreter named on its `#!` line.
fn cannot_start(program: &OsStr, err: &std::io::Error) -> Failure {
    let name = program.to_string_lossy();
    let why = match err.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{err}; if it is a script, check the interpreter on its `#!` line")
        }
        _ => err.to_string(),
    };
    Failure::usage(format!(
        "cannot start the handler `{name}`: {why}. The messages it was given are back in the queue, their attempt not counted"
    ))
}

/// Where the run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking messages.
    Running,
    /// Taking no more (a signal, `--max`, a handler that cannot start);
    /// running handlers finish.
    Draining,
    /// A second signal: handlers got SIGTERM; SIGKILL at `kill_at`.
    Stopping { kill_at: Instant, killed: bool },
}

/// Why a delivery is to be settled.
#[derive(Debug)]
enum Why {
    Succeeded,
    Failed(String),
    /// Stopped by a second signal and did not succeed.
    Stopped,
    /// Its handler could not be started.
    NotStarted,
}

/// A delivery waiting to be settled.
#[derive(Debug)]
struct Finished {
    receipt: Receipt,
    id: i64,
    attempt: i64,
    why: Why,
    /// For a failure: how the handler ended and the tail of its stderr.
    error: Option<String>,
    /// With `--emit`, for a success: the bodies it printed.
    emitted: Vec<Vec<u8>>,
    /// The handler ended before its lease ran out (as work last extended it).
    within_lease: bool,
}

impl Finished {
    fn outcome(&self) -> Outcome {
        match self.why {
            Why::Succeeded => Outcome::Ack,
            Why::Failed(_) => Outcome::Retry,
            Why::Stopped | Why::NotStarted => Outcome::Release,
        }
    }
}

/// The state of one `work` run, owned by its loop.
struct Worker<'a> {
    args: &'a Args,
    store: Db,
    report: Report,
    phase: Phase,
    running: Vec<Handler>,
    /// Ended handlers (or unstarted deliveries) not yet settled.
    done: Vec<Finished>,
    tally: Tally,
    /// Messages leased so far, for `--max`.
    claimed: u64,
    /// The last claim found fewer messages than it asked for.
    queue_empty: bool,
    /// ... because the queue's in-flight cap or rate held some back: not
    /// empty for `--until-empty`, which waits for them.
    held_back: bool,
    /// `data_version` as it was before the last claim.
    seen_version: i64,
    /// SIGINT/SIGTERM already acted on.
    stops_seen: usize,
    warned_missing: bool,
    spawn_error: Option<std::io::Error>,
    commits: GroupCommit,
}

impl<'a> Worker<'a> {
    fn new(ctx: &Context, args: &'a Args, store: Db) -> Worker<'a> {
        Worker {
            args,
            store,
            report: Report::new(&ctx.out),
            phase: Phase::Running,
            running: Vec::new(),
            done: Vec::new(),
            tally: Tally::default(),
            claimed: 0,
            queue_empty: false,
            held_back: false,
            seen_version: 0,
            stops_seen: 0,
            warned_missing: false,
            spawn_error: None,
            commits: GroupCommit::new(ctx.global.sync),
        }
    }

    fn run(&mut self, events: &mut Events) -> anyhow::Result<()> {
        loop {
            events.poll();
            self.follow_signals(events.stops());
            self.reap();
            self.heartbeat()?;
            self.step()?;
            self.commits.flush(&self.store, false)?;
            self.report.progress(&self.tally, self.running.len());
            if self.is_over() {
                return Ok(());
            }
            self.wait(events)?;
        }
    }

    /// How many messages to lease now.
    fn want(&self) -> usize {
        if self.phase != Phase::Running {
            return 0;
        }
        let free = (self.args.concurrency as usize).saturating_sub(self.running.len());
        let left = self
            .args
            .max
            .map_or(usize::MAX, |max| max.saturating_sub(self.claimed) as usize);
        free.min(left)
    }

    fn is_over(&self) -> bool {
        if !self.running.is_empty() || !self.done.is_empty() {
            return false;
        }
        match self.phase {
            Phase::Running => self.args.until_empty && self.queue_empty && !self.held_back,
            Phase::Draining | Phase::Stopping { .. } => true,
        }
    }

    /// First SIGINT/SIGTERM: drain. Second: stop the handlers. Third, or
    /// the grace period over: kill them.
    fn follow_signals(&mut self, stops: usize) {
        let first = stops >= 1 && self.stops_seen == 0;
        let second = stops >= 2 && self.stops_seen < 2;
        self.stops_seen = stops;
        if first {
            self.drain();
        }
        if second {
            self.stop_handlers();
        }
        if let Phase::Stopping { kill_at, killed } = &mut self.phase
            && !*killed
            && (stops >= 3 || Instant::now() >= *kill_at)
        {
            *killed = true;
            for h in &self.running {
                h.signal(Signal::KILL);
            }
        }
    }

    /// Takes no new messages; running handlers finish.
    fn drain(&mut self) {
        if self.phase == Phase::Running {
            self.phase = Phase::Draining;
        }
        let waiting = match self.running.len() {
            0 => String::new(),
            n => format!(
                ", waiting for {n} running handler(s). Send the signal again to stop them now"
            ),
        };
        self.report
            .note(&format!("stopping: taking no new messages{waiting}"));
    }

    /// SIGTERM to every handler, whose messages will be released.
    fn stop_handlers(&mut self) {
        self.phase = Phase::Stopping {
            kill_at: Instant::now() + STOP_GRACE,
            killed: false,
        };
        if !self.running.is_empty() {
            self.report.note(&format!(
                "stopping {} handler(s) now (SIGTERM, SIGKILL in {}s); their messages go back to the queue",
                self.running.len(),
                STOP_GRACE.as_secs()
            ));
        }
        for h in &mut self.running {
            h.stopped = true;
            h.signal(Signal::TERM);
        }
    }

    /// After an error the run cannot go on from (such as a lost connection
    /// to the database): stops the running handlers as a second signal does
    /// (SIGTERM to each one's process group, SIGKILL after the grace
    /// period), waits for them and counts them. Their messages cannot be
    /// released now: they are delivered again when their leases run out.
    fn abandon_handlers(&mut self) {
        let n = self.running.len();
        if n == 0 {
            return;
        }
        self.report.note(&format!(
            "stopping {n} running handler(s) (SIGTERM, SIGKILL in {}s): the run cannot go on; their messages are delivered again when their leases run out",
            STOP_GRACE.as_secs()
        ));
        for h in &self.running {
            h.signal(Signal::TERM);
        }
        let kill_at = Instant::now() + STOP_GRACE;
        let give_up = kill_at + Duration::from_secs(1);
        let mut killed = false;
        while !self.running.is_empty() && Instant::now() < give_up {
            self.running.retain_mut(|h| h.poll().is_none());
            if !killed && Instant::now() >= kill_at {
                killed = true;
                for h in &self.running {
                    h.signal(Signal::KILL);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.tally.abandoned += n as u64;
    }

    /// Collects the handlers that ended.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            match self.running[i].poll() {
                None => i += 1,
                Some(status) => {
                    let h = self.running.swap_remove(i);
                    self.ended(h, status);
                }
            }
        }
    }

    fn ended(&mut self, mut h: Handler, status: std::io::Result<std::process::ExitStatus>) {
        if h.lost {
            self.tally.lost += 1;
            return;
        }
        let mut emitted = Vec::new();
        let why = match (status, h.stopped) {
            (Ok(s), _) if s.success() => match h.output().and_then(|out| self.emitted(&out)) {
                Ok(bodies) => {
                    emitted = bodies;
                    Why::Succeeded
                }
                Err(why) => Why::Failed(format!("exit status 0, but {why}")),
            },
            (_, true) => Why::Stopped,
            (Ok(s), false) => Why::Failed(handler::describe(&s)),
            (Err(e), false) => Why::Failed(format!("cannot wait for it: {e}")),
        };
        let error = match &why {
            Why::Failed(ended) => Some(h.last_error(ended)),
            _ => None,
        };
        self.done.push(Finished {
            receipt: h.receipt,
            id: h.id,
            attempt: h.attempt,
            why,
            error,
            emitted,
            within_lease: Instant::now() < h.lease_end,
        });
    }

    /// The messages in a handler's stdout, one per line (`--emit`), or why
    /// they cannot be published: a line that is not JSON (or not UTF-8).
    fn emitted(&self, out: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let raw = self.args.emit_raw;
        let mut input = out;
        let mut bodies = Vec::new();
        let mut number = 0;
        while let Some(line) = crate::input::read_line(&mut input, u64::MAX)
            .map_err(|e| format!("cannot read its stdout: {e}"))?
        {
            number += 1;
            // No line is over an unlimited length; were one refused, its
            // message must not be dropped while the delivery is acked.
            let crate::input::Line::Text(line) = line else {
                return Err(format!("line {number} of its stdout is too long"));
            };
            let text = std::str::from_utf8(&line).map_err(|e| {
                format!(
                    "line {number} of its stdout is not UTF-8 (at byte {})",
                    e.valid_up_to() + 1
                )
            })?;
            if raw {
                bodies.push(line);
                continue;
            }
            match crate::commands::publish::json_body(text) {
                Ok(Some(body)) => bodies.push(body.as_bytes().to_vec()),
                Ok(None) => {}
                Err(why) => return Err(format!("line {number} of its stdout: {why}")),
            }
        }
        Ok(bodies)
    }

    /// Extends the leases that are a third of the way through.
    fn heartbeat(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.running.len())
            .filter(|&i| !self.running[i].lost && now >= self.running[i].renew_at())
            .collect();
        // Handlers leased at different times may have different lease lengths
        // (`queue set` between claims): one call per length.
        let mut lengths: Vec<Duration> = due.iter().map(|&i| self.running[i].lease).collect();
        lengths.sort();
        lengths.dedup();
        for by in lengths {
            let group: Vec<usize> = due
                .iter()
                .copied()
                .filter(|&i| self.running[i].lease == by)
                .collect();
            if !self.extend(&group, by, now)? {
                break;
            }
        }
        Ok(())
    }

    /// Extends the leases of these handlers by `by` from `now`; false when
    /// the database was busy (the next round tries again).
    fn extend(&mut self, handlers: &[usize], by: Duration, now: Instant) -> anyhow::Result<bool> {
        let receipts: Vec<Receipt> = handlers.iter().map(|&i| self.running[i].receipt).collect();
        self.commits.before_commit(&mut self.store)?;
        let outcomes = match self.store.extend(&receipts, by) {
            Ok(outcomes) => outcomes,
            Err(e @ (store::Error::Busy { .. } | store::Error::PgBusy { .. })) => {
                self.report
                    .warn(&format!("{e} (work tries again by itself)"));
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        self.commits.after_commit();
        for (&i, outcome) in handlers.iter().zip(outcomes) {
            let h = &mut self.running[i];
            match outcome {
                Ok(()) => h.lease_end = now + by,
                Err(e) => {
                    h.lost = true;
                    self.report.warn(&format!(
                        "lost the lease of message {} (attempt {}): {e}. Its handler goes on, but its result will not be reported",
                        h.id, h.attempt
                    ));
                }
            }
        }
        Ok(true)
    }

    /// Settles what ended and leases messages for the free slots, in one
    /// transaction, then starts their handlers.
    fn step(&mut self) -> anyhow::Result<()> {
        let want = self.want();
        if self.done.is_empty() && want == 0 {
            return Ok(());
        }
        let settle: Vec<Done> = self
            .done
            .iter()
            .map(|f| Done {
                receipt: f.receipt,
                outcome: f.outcome(),
                error: f.error.clone(),
                emitted: f.emitted.clone(),
            })
            .collect();
        let emit = self.args.emit.as_deref().map(|target| Emit {
            target,
            raw: self.args.emit_raw,
        });
        self.commits.before_commit(&mut self.store)?;
        // Read before the claim: a commit landing after it must end the next wait.
        self.seen_version = self.store.data_version()?;
        let leased_at = Instant::now();
        let step =
            match self
                .store
                .work_step(&self.args.queue, &settle, want, self.args.visibility, emit)
            {
                Ok(step) => {
                    self.commits.after_commit();
                    step
                }
                Err(e @ (store::Error::Busy { .. } | store::Error::PgBusy { .. })) => {
                    // Keep what is to be settled, and try again next round.
                    self.report
                        .warn(&format!("{e} (work tries again by itself)"));
                    self.queue_empty = false;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
        let finished = std::mem::take(&mut self.done);
        for (i, (mut f, settled)) in finished.into_iter().zip(step.settled).enumerate() {
            if let Some((_, why)) = step.refused.iter().find(|(r, _)| *r == i) {
                f.why = Why::Failed(format!("exit status 0, but {why}"));
            }
            self.account(f, settled);
        }
        let batch = self.claimed_or_empty(step.claimed)?;
        self.queue_empty = batch.len() < want;
        self.held_back = step.held_back;
        self.claimed += batch.len() as u64;
        self.start(&batch, step.lease, leased_at);
        if self.phase == Phase::Running && self.args.max.is_some_and(|max| self.claimed >= max) {
            self.phase = Phase::Draining;
        }
        Ok(())
    }

    /// The claimed deliveries; none, after a warning, when the queue does
    /// not exist (yet) or is a topic, as `consume` does.
    fn claimed_or_empty(
        &mut self,
        claimed: store::Result<Vec<Delivery>>,
    ) -> anyhow::Result<Vec<Delivery>> {
        match claimed {
            Ok(batch) => Ok(batch),
            Err(e @ (store::Error::UnknownQueue { .. } | store::Error::NameIsTopic { .. })) => {
                if !self.warned_missing {
                    self.report
                        .warn(&crate::commands::consume::counts_as_empty(&e));
                    self.warned_missing = true;
                }
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Counts a settled delivery and tells people about failures.
    fn account(&mut self, f: Finished, settled: Result<Settled, store::ReceiptError>) {
        let settled = match settled {
            Ok(settled) => settled,
            Err(e) => {
                self.tally.lost += 1;
                // A lease that ended early, before its time ran out, was
                // most likely ended by the handler itself (a nack or an
                // extend of $SPOOL_RECEIPT that gave it up).
                let hint = match e {
                    store::ReceiptError::LeaseEnded if f.within_lease => {
                        " (the handler may have settled $SPOOL_RECEIPT itself)"
                    }
                    _ => "",
                };
                self.report.warn(&format!(
                    "cannot settle message {} (attempt {}): {e}{hint}",
                    f.id, f.attempt
                ));
                return;
            }
        };
        match (f.why, settled) {
            (Why::Succeeded, _) => self.tally.succeeded += 1,
            (Why::Failed(how), Settled::Dead) => {
                self.tally.failed += 1;
                self.tally.dead += 1;
                self.report.warn(&format!(
                    "message {} failed on attempt {} ({how}), its last allowed attempt: it is now dead",
                    f.id, f.attempt
                ));
            }
            (Why::Failed(how), Settled::Acked) => {
                // The delivery was finished before the failure could be
                // recorded: the handler acked its own $SPOOL_RECEIPT.
                self.tally.failed += 1;
                self.report.warn(&format!(
                    "message {} failed on attempt {} ({how}), but its delivery was already acked (by the handler, with $SPOOL_RECEIPT?): it will not be retried",
                    f.id, f.attempt
                ));
            }
            (Why::Failed(how), _) => {
                self.tally.failed += 1;
                self.report.warn(&format!(
                    "message {} failed on attempt {} ({how}); it will be retried after the queue's backoff",
                    f.id, f.attempt
                ));
            }
            (Why::Stopped, _) => self.tally.stopped += 1,
            (Why::NotStarted, _) => {}
        }
    }

    /// Starts a handler for each delivery. When one cannot be started, it and
    /// the rest are released, and the run drains and ends with an error.
    fn start(&mut self, batch: &[Delivery], lease: Duration, leased_at: Instant) {
        for (i, d) in batch.iter().enumerate() {
            match Handler::spawn(
                &self.args.command,
                d,
                lease,
                leased_at,
                self.args.emit.is_some(),
            ) {
                Ok(h) => self.running.push(h),
                Err(e) => {
                    self.done.extend(batch[i..].iter().map(|d| Finished {
                        receipt: d.receipt,
                        id: d.id,
                        attempt: d.attempt,
                        why: Why::NotStarted,
                        error: None,
                        emitted: Vec::new(),
                        within_lease: true,
                    }));
                    self.spawn_error = Some(e);
                    if self.phase == Phase::Running {
                        self.phase = Phase::Draining;
                    }
                    return;
                }
            }
        }
    }

    /// Sleeps until there is something to do.
    fn wait(&mut self, events: &mut Events) -> anyhow::Result<()> {
        let want = self.want();
        if !self.done.is_empty() || (want > 0 && !self.queue_empty) {
            return Ok(());
        }
        let heartbeat = self
            .running
            .iter()
            .filter(|h| !h.lost)
            .map(|h| h.renew_at())
            .min();
        let kill_at = match self.phase {
            Phase::Stopping {
                kill_at,
                killed: false,
            } => Some(kill_at),
            _ => None,
        };
        let deadline = heartbeat
            .into_iter()
            .chain(kill_at)
            .chain(self.commits.deadline())
            .min();
        if want > 0 {
            // Free slots and an empty queue: watch for new messages too.
            return wait::for_news(
                &self.store,
                &self.args.queue,
                self.seen_version,
                deadline,
                |nap| events.wait(nap),
            );
        }
        let timeout = deadline.map_or(IDLE_WAKE, |d| {
            d.saturating_duration_since(Instant::now()).min(IDLE_WAKE)
        });
        events.wait(timeout);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::Cli;
    use crate::commands::Command;

    fn parse(args: &[&str]) -> super::Args {
        let cli = Cli::try_parse_from(args).expect("parses");
        match cli.command {
            Command::Work(args) => args,
            other => panic!("not work: {other:?}"),
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn everything_from_cmd_on_belongs_to_the_handler() {
        let args = parse(&[
            "spool", "work", "q", "--max", "2", "--", "cmd", "-x", "--max",
        ]);
        assert_eq!(args.max, Some(2));
        assert_eq!(args.command, ["cmd", "-x", "--max"]);
        let args = parse(&["spool", "work", "q", "cmd", "--concurrency", "3"]);
        assert_eq!(args.concurrency, 1);
        assert_eq!(args.command, ["cmd", "--concurrency", "3"]);
        assert!(Cli::try_parse_from(["spool", "work", "q"]).is_err());
    }
}
