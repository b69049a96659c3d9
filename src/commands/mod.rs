//! One module per subcommand: each owns its clap arguments and a `run`
//! function that parses what the user typed, calls the store and renders.

pub mod consume;
pub mod docs;
pub mod doctor;
pub mod migrate;
pub mod peek;
pub mod publish;
pub mod queue;
pub mod receipts;
pub mod replay;
pub mod schedule;
pub mod serve;
pub mod stats;
pub mod subscribe;
pub mod top;
pub mod view;
pub mod wait;
pub mod work;

use std::path::PathBuf;

use clap::Subcommand;

use crate::Context;
use crate::error::Exit;
use crate::store;

/// The database as output names it before it is opened (or when it does not
/// exist yet): the file's path, or the URL without its password, as an open
/// PostgreSQL database names itself.
pub fn shown_db(ctx: &Context) -> anyhow::Result<PathBuf> {
    Ok(store::shown(&ctx.global.db_path()?))
}

/// The subcommands.
///
/// `defer`: a subcommand's arguments are built only when clap needs them;
/// [`defer_arguments`] says how.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Publish messages to a queue or topic
    Publish(publish::Args),
    /// Lease messages and print them as JSON lines
    Consume(consume::Args),
    /// Mark deliveries as done
    Ack(receipts::AckArgs),
    /// Give deliveries back to the queue, now or later
    Nack(receipts::NackArgs),
    /// Extend the leases of deliveries (a heartbeat)
    Extend(receipts::ExtendArgs),
    /// Run a command for each message
    Work(work::Args),
    /// Show messages without changing anything
    Peek(peek::Args),
    /// Show counts per queue, as a table, JSON or Prometheus text
    Stats(stats::Args),
    /// Bring acked or dead messages back, in place or to another queue
    Replay(replay::Args),
    /// Serve the queues over HTTP, for services in any language and on other machines
    Serve(serve::Args),
    /// Watch queues live in the terminal; look into messages, replay, purge
    Top(top::Args),
    /// Create queues and change their settings
    #[command(subcommand)]
    Queue(queue::Command),
    /// Publish a message again and again: every DUR, or by a cron rule
    #[command(subcommand)]
    Schedule(schedule::Command),
    /// Subscribe a queue to a topic: it receives a copy of each message published to it
    ///
    /// Every message published to TOPIC from now on is also delivered to QUEUE:
    /// the same id and body in each subscribed queue, each with its own state,
    /// attempts and lease. Creates the queue and the topic if needed; the topic
    /// itself holds nothing. A name that holds messages cannot become a topic,
    /// and a topic cannot subscribe to a topic. Subscribing twice changes nothing.
    Subscribe(subscribe::SubscribeArgs),
    /// Stop a queue receiving a topic's messages
    ///
    /// Messages published to TOPIC from now on no longer reach QUEUE; what QUEUE
    /// already received stays there. The topic stays a topic, also without
    /// subscribers (publishing to it then fails until a queue subscribes again).
    /// Exits 3 when QUEUE is not subscribed to TOPIC.
    Unsubscribe(subscribe::UnsubscribeArgs),
    /// Check the database: integrity, WAL, settings, counters
    Doctor(doctor::Args),
    /// Copy a spool database from an SQLite file into PostgreSQL
    ///
    /// Copies everything: every queue and topic with its settings and JSON
    /// Schema versions, subscriptions, every message (same ids, bodies byte for
    /// byte, keys, headers, publish times) and every delivery with its state,
    /// priority, attempts and lease, group order, counts and rates. Queue ids and
    /// lease tokens stay the same, so receipts handed out before the move can
    /// still ack, nack or extend after it; ids never reused stay never reused.
    ///
    /// The SQLite file is only read, in one snapshot: what other processes commit
    /// meanwhile is not copied. Stop producers and consumers for the cut-over,
    /// migrate, then point them at the URL. The copy is one PostgreSQL
    /// transaction, so a failure leaves the target empty. The target schema must
    /// hold no queues (exit 2 otherwise); pick another with `?schema=NAME`.
    /// Prints a summary on stderr; `--json` prints it on stdout. `--db` is not
    /// used.
    Migrate(migrate::Args),
    /// Print a shell completion script
    Completions(docs::CompletionsArgs),
    /// Print the man page
    Man(docs::ManArgs),
}

/// `cli` (the whole command line, as the derive builds it) with each
/// subcommand's arguments built only when clap needs them: when that
/// subcommand is parsed, or for help, man pages and completions. Building
/// every subcommand's arguments cost a process about 300,000 instructions,
/// a tenth of a one-message `consume`.
///
/// The derive's own deferral (`#[command(defer = true)]` on [`Command`] and
/// [`queue::Command`]) lets the `Args` struct's doc comment and
/// `after_help` win over the variant's, the reverse of the order without
/// it; [`with_args`] keeps the variant's, so help stays as it was. Every
/// subcommand with arguments is listed here; a test checks that building
/// none of them changes its help texts.
pub fn defer_arguments(cli: clap::Command) -> clap::Command {
    cli.mut_subcommands(|cmd| match cmd.get_name() {
        "publish" => later::<publish::Args>(cmd),
        "consume" => later::<consume::Args>(cmd),
        "ack" => later::<receipts::AckArgs>(cmd),
        "nack" => later::<receipts::NackArgs>(cmd),
        "extend" => later::<receipts::ExtendArgs>(cmd),
        "work" => later::<work::Args>(cmd),
        "peek" => later::<peek::Args>(cmd),
        "stats" => later::<stats::Args>(cmd),
        "replay" => later::<replay::Args>(cmd),
        "serve" => later::<serve::Args>(cmd),
        "top" => later::<top::Args>(cmd),
        "subscribe" => later::<subscribe::SubscribeArgs>(cmd),
        "unsubscribe" => later::<subscribe::UnsubscribeArgs>(cmd),
        "doctor" => later::<doctor::Args>(cmd),
        "migrate" => later::<migrate::Args>(cmd),
        "completions" => later::<docs::CompletionsArgs>(cmd),
        "man" => later::<docs::ManArgs>(cmd),
        "queue" => queue::defer_arguments(cmd),
        "schedule" => schedule::defer_arguments(cmd),
        _ => cmd,
    })
}

/// `cmd`, whose arguments are those of `A`, built when clap needs them.
pub(crate) fn later<A: clap::Args>(cmd: clap::Command) -> clap::Command {
    cmd.defer(with_args::<A>)
}

/// Adds the arguments of `A` to `cmd`, keeping the texts the variant gave it.
fn with_args<A: clap::Args>(cmd: clap::Command) -> clap::Command {
    use clap::builder::Resettable;
    let text = |t: Option<&clap::builder::StyledStr>| {
        t.cloned().map_or(Resettable::Reset, Resettable::Value)
    };
    let about = text(cmd.get_about());
    let long_about = text(cmd.get_long_about());
    let after_help = cmd.get_after_help().cloned();
    let after_long_help = cmd.get_after_long_help().cloned();
    let mut cmd = A::augment_args(cmd).about(about).long_about(long_about);
    if let Some(help) = after_help {
        cmd = cmd.after_help(help);
    }
    if let Some(help) = after_long_help {
        cmd = cmd.after_long_help(help);
    }
    cmd
}

/// Runs one subcommand.
pub fn run(ctx: &Context, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Publish(args) => publish::run(ctx, args),
        Command::Consume(args) => consume::run(ctx, args),
        Command::Ack(args) => receipts::ack(ctx, args),
        Command::Nack(args) => receipts::nack(ctx, args),
        Command::Extend(args) => receipts::extend(ctx, args),
        Command::Queue(command) => queue::run(ctx, command),
        Command::Schedule(command) => schedule::run(ctx, command),
        Command::Subscribe(args) => subscribe::subscribe(ctx, args),
        Command::Unsubscribe(args) => subscribe::unsubscribe(ctx, args),
        Command::Completions(args) => docs::completions(ctx, args),
        Command::Man(args) => docs::man(ctx, args),
        Command::Peek(args) => peek::run(ctx, args),
        Command::Stats(args) => stats::run(ctx, args),
        Command::Replay(args) => replay::run(ctx, args),
        Command::Serve(args) => serve::run(ctx, args),
        Command::Work(args) => work::run(ctx, args),
        Command::Doctor(args) => doctor::run(ctx, args),
        Command::Migrate(args) => migrate::run(ctx, args),
        Command::Top(args) => top::run(ctx, args),
    }
}
