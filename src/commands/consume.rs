//! `spool consume`: lease messages and print them as JSON lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::error::{Exit, Failure};
use crate::output::{self, LineKind};
use crate::parse;
use crate::store::{self, Db, Delivery};

use super::wait;

const EXAMPLES: &str = "\
Examples:
  spool consume orders                       # lease one message, or exit 1
  spool consume orders -n 100 | ./handle | spool ack
  spool consume orders --wait 30s --body     # long poll, print the body only
  while m=$(spool consume jobs); do echo \"$m\" | ./run; done";

/// Lease messages and print them as JSON lines.
///
/// Leases up to N deliverable messages, highest priority first, then oldest
/// first. Ack them with `spool ack RECEIPT` before their lease runs out, or they
/// are delivered again. Exits 1 when no message is available.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Queue to consume from
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub queue: String,
    /// Lease up to N messages at once
    #[arg(short = 'n', value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub n: u64,
    /// How long the messages stay invisible to others [default: the queue's visibility]
    #[arg(long, value_name = "DUR", value_parser = parse::positive_duration)]
    pub visibility: Option<Duration>,
    /// Wait up to DUR for the first message (long poll)
    #[arg(long, value_name = "DUR", value_parser = parse::duration)]
    pub wait: Option<Duration>,
    /// Keep delivering as messages arrive, until interrupted
    #[arg(long)]
    pub follow: bool,
    /// Ack what was printed (at-most-once, like a pop); what could not be printed goes back to the queue
    #[arg(long)]
    pub ack: bool,
    /// Print only the bodies, exactly as stored, one per line
    #[arg(long)]
    pub body: bool,
}

/// Runs `spool consume`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    // One look at a database that does not exist finds nothing, and creates
    // nothing; waiting for messages needs the file to watch.
    let once = args.wait.is_none() && !args.follow;
    let mut store = match once {
        true => match ctx.existing_store()? {
            Some(store) => store,
            None => {
                ctx.out.warn(&no_database_yet(&args.queue));
                return Ok(Exit::Empty);
            }
        },
        false => ctx.store()?,
    };
    let deadline = args.wait.map(|d| Instant::now() + d);
    let stop = Arc::new(AtomicBool::new(false));
    if args.follow {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&stop))
                .context("cannot install signal handlers")?;
        }
    }
    let mut warned = false;
    loop {
        // Read before the claim: a commit that lands between the claim and
        // the wait must still wake the wait, or its message sits unseen until
        // the deadline.
        let version = store.data_version()?;
        // Claimed without the ack: only what is written gets acked.
        match claim(ctx, &mut store, &args) {
            Ok(batch) if !batch.is_empty() => {
                deliver(ctx, &mut store, &batch, &args)?;
                if !args.follow {
                    return Ok(Exit::Ok);
                }
                continue;
            }
            Ok(_) => {}
            Err(e @ (store::Error::UnknownQueue { .. } | store::Error::NameIsTopic { .. })) => {
                if !warned {
                    ctx.out.warn(&counts_as_empty(&e));
                    warned = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
        let expired = deadline.is_none_or(|d| Instant::now() >= d);
        if !args.follow && expired {
            return Ok(Exit::Empty);
        }
        let deadline = deadline.filter(|_| !args.follow);
        wait::for_news(&store, &args.queue, version, deadline, |nap| {
            std::thread::sleep(nap);
            stop.load(Ordering::Relaxed)
        })?;
        if stop.load(Ordering::Relaxed) {
            return Ok(Exit::Ok);
        }
    }
}

/// The warning for a queue that does not exist (or is a topic), which
/// consume and work read as empty.
pub(crate) fn counts_as_empty(e: &store::Error) -> String {
    let text = e.to_string();
    let stop = if text.ends_with(['.', '?']) { "" } else { "." };
    format!("{text}{stop} Until it exists, it counts as empty.")
}

/// [`counts_as_empty`] for a queue asked of a database that does not exist.
pub(crate) fn no_database_yet(queue: &str) -> String {
    counts_as_empty(&store::Error::UnknownQueue {
        name: queue.to_owned(),
        similar: Vec::new(),
    })
}

/// Leases the next batch. With `--ack` under `--sync full`, the lease is
/// committed without an fsync and the ack that follows it (or the release)
/// makes both durable with one: a power loss in between can only leave the
/// messages ready again, never lose one, and a pop costs one fsync as it did
/// when claim and ack were one transaction.
fn claim(ctx: &Context, store: &mut Db, args: &Args) -> store::Result<Vec<Delivery>> {
    let relax = args.ack && ctx.global.sync == store::Sync::Full;
    if relax {
        store.set_sync(store::Sync::Normal)?;
    }
    let batch = store.claim(&args.queue, args.n as usize, args.visibility, false);
    if relax {
        store.set_sync(store::Sync::Full)?;
    }
    batch
}

/// Prints `batch`, then settles it by what was written: with `--ack` the
/// written deliveries are acked, and every delivery that was not written
/// (stdout closed or failing) is released at once, its attempt not counted,
/// so no message is taken that nobody saw. A closed stdout then ends the
/// command quietly (`Err` with the broken pipe); another write error names
/// stdout.
fn deliver(ctx: &Context, store: &mut Db, batch: &[Delivery], args: &Args) -> anyhow::Result<()> {
    let (written, failed) = print(batch, args.body);
    let receipts = |ds: &[Delivery]| ds.iter().map(|d| d.receipt).collect::<Vec<_>>();
    let (seen, unseen) = batch.split_at(written);
    if args.ack && !seen.is_empty() {
        let outcomes = store.ack(&receipts(seen))?;
        for (d, outcome) in seen.iter().zip(outcomes) {
            if let Err(e) = outcome {
                ctx.out.warn(&format!(
                    "message {} was printed but could not be acked ({e}); it will be delivered again. Use a longer --visibility",
                    d.id
                ));
            }
        }
    }
    if !unseen.is_empty() {
        // A refused receipt here had its lease end already: back in the queue.
        store.release(&receipts(unseen))?;
    }
    match failed {
        None => Ok(()),
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(e.into()),
        Some(e) => Err(Failure::new(
            Exit::IoErr,
            format!(
                "cannot write to stdout: {e}; the {} message(s) not printed were returned to the queue",
                unseen.len()
            ),
        )
        .into()),
    }
}

/// Prints the deliveries in order; returns how many were fully written, and
/// the error that stopped the rest.
fn print(batch: &[Delivery], body_only: bool) -> (usize, Option<std::io::Error>) {
    let mut out = match output::CountedLines::stdout() {
        Ok(out) => out,
        Err(e) => return (0, Some(e)),
    };
    let mut result = Ok(());
    for d in batch {
        result = out.line(|buf| {
            if body_only {
                buf.extend_from_slice(&d.body);
                buf.push(b'\n');
                Ok(())
            } else {
                output::write_delivery(buf, d, LineKind::Consumed)
            }
        });
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|()| out.flush());
    (out.written(), result.err())
}
