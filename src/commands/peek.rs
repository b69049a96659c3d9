//! `spool peek`: show messages without changing anything.

use std::io::Write;

use comfy_table::{Cell, Row};

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::commands::view;
use crate::error::{Exit, Failure};
use crate::output::{self, LineKind};
use crate::parse;
use crate::store::{self, Db, PeekQuery, Peeked};

const EXAMPLES: &str = "\
Examples:
  spool peek orders                          # the next 10 messages
  spool peek orders --state dead -n 50       # what failed
  spool peek orders --id 42 --json | jq .body
  spool peek orders --state all -n 1000 | jq -c 'select(.attempt > 2)'";

/// Show messages without changing anything.
///
/// No lease is taken, no attempt counted, nothing written to the database.
/// By default the next 10 ready, delayed and leased messages, in delivery
/// order: ready ones as `consume` would deliver them, then delayed ones
/// (soonest due first, then those waiting behind their group), then leased
/// ones (soonest lease end first); acked and dead ones come last, earliest
/// done first. A table on a terminal, JSON lines when piped or with `--json`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Queue to look into
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub queue: String,
    /// Show at most N messages
    #[arg(short = 'n', value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,
    /// States to show, repeatable or comma-separated [default: ready,delayed,leased]
    #[arg(long, value_enum, value_name = "STATE", value_delimiter = ',')]
    pub state: Vec<StateArg>,
    /// Show only the message with this id, whatever its state
    #[arg(long, value_name = "ID", conflicts_with = "state")]
    pub id: Option<i64>,
}

/// A state to show, as `--state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateArg {
    /// Deliverable now
    Ready,
    /// Deliverable later, or waiting behind an earlier message of its group
    Delayed,
    /// Delivered, lease running
    Leased,
    /// Done, kept for replay until retention passes
    Acked,
    /// Dead: out of attempts, rejected (nack --dead), expired (TTL) or dropped (full queue)
    Dead,
    /// All of the above
    All,
}

/// The store query for these flags.
pub(crate) fn query(args: &Args) -> PeekQuery {
    let has = |s: StateArg| args.state.contains(&s) || args.state.contains(&StateArg::All);
    let default = args.state.is_empty();
    PeekQuery {
        ready: default || has(StateArg::Ready),
        delayed: default || has(StateArg::Delayed),
        leased: default || has(StateArg::Leased),
        acked: has(StateArg::Acked),
        dead: has(StateArg::Dead),
        limit: usize::try_from(args.n).unwrap_or(usize::MAX),
    }
}

/// Runs `spool peek`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    let Some(store) = ctx.read_store()? else {
        return Err(store::Error::UnknownQueue {
            name: args.queue,
            similar: Vec::new(),
        }
        .into());
    };
    let messages = match args.id {
        Some(id) => vec![one(&store, &args.queue, id)?],
        None => store.peek(&args.queue, &query(&args))?,
    };
    if ctx.out.human() {
        print_table(ctx, &args, &messages)?;
    } else {
        print_json(&messages)?;
    }
    Ok(Exit::Ok)
}

/// The message `id` of `queue`, whatever its state; exit 3 without it.
pub(crate) fn one(store: &Db, queue: &str, id: i64) -> anyhow::Result<Peeked> {
    store.peek_id(queue, id)?.ok_or_else(|| {
        Failure::new(
            Exit::NotFound,
            format!(
                "queue `{queue}` holds no message `{id}`. List its messages with `spool peek {queue} --state all`"
            ),
        )
        .into()
    })
}

fn print_json(messages: &[Peeked]) -> anyhow::Result<()> {
    let mut out = output::stdout();
    write_json(&mut out, messages)?;
    out.flush()?;
    Ok(())
}

/// Writes `messages` as peek's JSON lines.
pub(crate) fn write_json(out: &mut impl Write, messages: &[Peeked]) -> std::io::Result<()> {
    for m in messages {
        let kind = LineKind::Peeked {
            state: m.state.name(),
            lease_end: m.lease_end,
            dead_reason: m.dead_reason.map(|r| r.name()),
            last_error: m.last_error.as_deref(),
        };
        output::write_delivery(out, &m.delivery, kind)?;
    }
    Ok(())
}

/// The dead reason and the last line of the last error, in a few words.
fn why(m: &Peeked) -> String {
    let error = m
        .last_error
        .as_deref()
        .and_then(|e| e.lines().rev().find(|l| !l.trim().is_empty()))
        .map(view::text_line);
    match (m.dead_reason, error) {
        (Some(r), Some(e)) => format!("{}: {e}", r.name()),
        (Some(r), None) => r.name().to_owned(),
        (None, Some(e)) => e,
        (None, None) => String::new(),
    }
}

fn print_table(ctx: &Context, args: &Args, messages: &[Peeked]) -> anyhow::Result<()> {
    if messages.is_empty() {
        ctx.out
            .note(&format!("queue `{}` has no messages to show", args.queue));
        return Ok(());
    }
    let width = usize::from(view::terminal_width());
    let now = store::now_ms();
    // Why messages died or failed, when any did.
    let traced = messages
        .iter()
        .any(|m| m.dead_reason.is_some() || m.last_error.is_some());
    let mut headers = vec!["ID", "STATE", "ATTEMPT", "AGE", "KEY"];
    if traced {
        headers.push("WHY");
    }
    headers.push("BODY");
    let cut: &[usize] = if traced { &[4, 5, 6] } else { &[4, 5] };
    let mut table = view::table(&ctx.out, &headers, cut);
    for m in messages {
        let d = &m.delivery;
        // Cut long bodies before layout; the table cuts the rest to the width
        // and marks the cut with an ellipsis.
        let body: String = view::body_line(&d.body, d.raw)
            .chars()
            .take(width + 1)
            .collect();
        let mut cells = vec![
            view::number(d.id),
            view::state_cell(m.state),
            view::number(d.attempt),
            view::number(view::age(now - d.published_at)),
            Cell::new(view::text_line(d.key.as_deref().unwrap_or(""))),
        ];
        if traced {
            cells.push(Cell::new(why(m)));
        }
        cells.push(Cell::new(body));
        let mut row = Row::from(cells);
        row.max_height(1);
        table.add_row(row);
    }
    let mut out = output::stdout();
    writeln!(out, "{table}")?;
    out.flush()?;
    Ok(())
}
