//! `spool replay`: bring acked or dead messages back, in place or to another queue.

use std::io::Write;

use serde::Serialize;

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::error::{Exit, Failure};
use crate::output;
use crate::parse::{self, SinceArg};
use crate::store::{self, ReplayFilter, Replayed};

const EXAMPLES: &str = "\
Examples:
  spool replay orders --dead                         # retry every dead letter
  spool replay orders --acked --since 2h             # redo the last two hours
  spool replay orders --dead --id 41 --id 42
  spool replay orders --acked --to orders-audit      # feed history to a new consumer
  spool replay orders --dead --dry-run               # only count
  spool replay orders --dead --dead-reason expired   # only those whose TTL ran out";

/// Bring acked or dead messages back to ready.
///
/// In place, the messages become ready again with the same ids and their
/// attempt count reset. With `--to QUEUE`, the same messages (same ids and
/// bodies) are delivered to QUEUE as new ready deliveries, and the originals
/// stay as they were; messages QUEUE already holds are skipped. Prints how
/// many; with `--json`, which.
#[derive(Debug, clap::Args)]
#[command(
    after_help = EXAMPLES,
    group(clap::ArgGroup::new("which").required(true).multiple(true).args(["acked", "dead"]))
)]
pub struct Args {
    /// Queue whose messages to replay
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub queue: String,
    /// Replay acked messages (those retention still keeps)
    #[arg(long)]
    pub acked: bool,
    /// Replay dead messages
    #[arg(long)]
    pub dead: bool,
    /// Only dead messages that died for this reason
    #[arg(long, value_enum, value_name = "REASON", requires = "dead")]
    pub dead_reason: Option<store::flow::DeadReason>,
    /// Only messages acked or dead at or after this time: a duration back from now (`2h`) or RFC 3339
    #[arg(long, value_name = "DUR|TIME", value_parser = parse::since)]
    pub since: Option<SinceArg>,
    /// Only messages acked or dead before this time: a duration back from now (`1h`) or RFC 3339
    #[arg(long, value_name = "DUR|TIME", value_parser = parse::since)]
    pub until: Option<SinceArg>,
    /// Only the message with this id (repeatable, or comma-separated)
    #[arg(long = "id", value_name = "ID", value_delimiter = ',')]
    pub ids: Vec<i64>,
    /// Deliver the messages to this queue instead (created if needed), leaving the originals as they were
    #[arg(long, value_name = "QUEUE", value_parser = parse::queue_name, add = complete_queues())]
    pub to: Option<String>,
    /// Only count what would be replayed; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// What `replay --json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    queue: &'a str,
    to: Option<&'a str>,
    dry_run: bool,
    count: usize,
    ids: &'a [i64],
    skipped: &'a [i64],
}

/// Runs `spool replay`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    if args.to.as_deref() == Some(args.queue.as_str()) {
        return Err(Failure::usage(format!(
            "`--to {}` names the queue being replayed. Leave out `--to` to replay in place",
            args.queue
        ))
        .into());
    }
    let now = store::now_ms();
    let filter = ReplayFilter {
        acked: args.acked,
        dead: args.dead,
        since: args.since.map(|s| s.resolve(now)),
        until: args.until.map(|s| s.resolve(now)),
        ids: args.ids.clone(),
        dead_reason: args.dead_reason,
    };
    let to = args.to.as_deref();
    let done = if args.dry_run {
        // Read-only: a dry run never creates or changes the file.
        match ctx.read_store()? {
            Some(store) => store.replay_preview(&args.queue, &filter, to)?,
            None => {
                return Err(store::Error::UnknownQueue {
                    name: args.queue,
                    similar: Vec::new(),
                }
                .into());
            }
        }
    } else {
        let mut bar = output::Progress::new(&ctx.out, "replaying", None, PROGRESS_AFTER);
        crate::commands::queue::existing_store(ctx, &args.queue)?.replay_with_progress(
            &args.queue,
            &filter,
            to,
            &mut |n| bar.inc(n),
        )?
    };
    report(ctx, &args, &done).map_err(|e| {
        // The replay is committed; a retry would replay nothing new, but
        // say so rather than leave it to guess.
        if args.dry_run || crate::error::is_broken_pipe(&e) {
            e
        } else {
            e.context(format!(
                "{} message(s) were replayed and committed",
                done.ids.len()
            ))
        }
    })?;
    Ok(Exit::Ok)
}

/// Messages replayed before a progress bar appears on a terminal.
const PROGRESS_AFTER: u64 = 20_000;

fn report(ctx: &Context, args: &Args, done: &Replayed) -> anyhow::Result<()> {
    let mut out = output::stdout();
    if ctx.out.json {
        let report = Report {
            queue: &args.queue,
            to: args.to.as_deref(),
            dry_run: args.dry_run,
            count: done.ids.len(),
            ids: &done.ids,
            skipped: &done.skipped,
        };
        serde_json::to_writer(&mut out, &report)?;
        out.write_all(b"\n")?;
    } else if !ctx.out.quiet {
        writeln!(out, "{}", done.ids.len())?;
    }
    out.flush()?;
    if let (Some(to), false) = (&args.to, done.skipped.is_empty()) {
        ctx.out.note(&format!(
            "skipped {} message(s) that `{to}` already holds",
            done.skipped.len()
        ));
    }
    if args.dry_run {
        ctx.out.note("dry run: nothing was changed");
    }
    Ok(())
}
