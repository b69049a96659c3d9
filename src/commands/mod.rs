//! One module per subcommand: each owns its clap arguments and a `run`
//! function that parses what the user typed, calls the store and renders.

pub mod consume;
pub mod peek;
pub mod publish;
pub mod queue;
pub mod receipts;
pub mod replay;
pub mod stats;
pub mod view;

use clap::Subcommand;

use crate::Context;
use crate::error::Exit;

/// The subcommands.
#[derive(Debug, Subcommand)]
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
    /// Create queues and change their settings
    #[command(subcommand)]
    Queue(queue::Command),
    /// Show messages without changing anything
    Peek(peek::Args),
    /// Show counts per queue, as a table, JSON or Prometheus text
    Stats(stats::Args),
    /// Bring acked or dead messages back, in place or to another queue
    Replay(replay::Args),
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
        Command::Peek(args) => peek::run(ctx, args),
        Command::Stats(args) => stats::run(ctx, args),
        Command::Replay(args) => replay::run(ctx, args),
    }
}
