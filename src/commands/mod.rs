//! One module per subcommand: each owns its clap arguments and a `run`
//! function that parses what the user typed, calls the store and renders.

pub mod consume;
pub mod doctor;
pub mod publish;
pub mod queue;
pub mod receipts;

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
    /// Check the database: integrity, WAL, settings, counters
    Doctor(doctor::Args),
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
        Command::Doctor(args) => doctor::run(ctx, args),
    }
}
