//! `spool queue …`: create queues and change their settings.

use std::time::Duration;

use crate::Context;
use crate::error::Exit;
use crate::parse;
use crate::store::SettingsPatch;

/// Queue management.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a queue with settings (a no-op if it exists with the same settings)
    #[command(
        after_help = "Examples:\n  spool queue create orders --visibility 5m --max-attempts 10\n  spool queue create audit --retention 30d"
    )]
    Create(NamedSettings),
    /// Change the settings of an existing queue
    #[command(
        after_help = "Examples:\n  spool queue set orders --max-size 4MiB\n  spool queue set orders --retention 0   # delete messages on ack"
    )]
    Set(NamedSettings),
}

/// A queue name and the settings to give it.
#[derive(Debug, clap::Args)]
pub struct NamedSettings {
    /// The queue
    #[arg(value_parser = parse::queue_name)]
    pub name: String,
    /// The settings to give it.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// The per-queue settings flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SettingsArgs {
    /// How long a delivery stays invisible to other consumers [default: 30s]
    #[arg(long, value_name = "DUR", value_parser = parse::positive_duration)]
    pub visibility: Option<Duration>,
    /// Deliveries before a message is dead; 0 for unlimited [default: 5]
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// How long acked messages stay for replay; 0 deletes them on ack [default: 1d]
    #[arg(long, value_name = "DUR", value_parser = parse::duration)]
    pub retention: Option<Duration>,
    /// The largest body accepted [default: 1MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    pub max_size: Option<u64>,
    /// Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]
    #[arg(long, value_name = "DUR", value_parser = parse::duration)]
    pub retry_delay: Option<Duration>,
}

impl SettingsArgs {
    /// The settings given, as a patch over the current ones.
    pub fn patch(&self) -> SettingsPatch {
        SettingsPatch {
            visibility: self.visibility,
            max_attempts: self.max_attempts,
            retention: self.retention,
            max_size: self.max_size,
            retry_delay: self.retry_delay,
        }
    }
}

/// Runs `spool queue …`.
pub fn run(ctx: &Context, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Create(args) => {
            ctx.store()?
                .create_queue(&args.name, &args.settings.patch())?;
        }
        Command::Set(args) => {
            ctx.store()?.set_queue(&args.name, &args.settings.patch())?;
        }
    }
    Ok(Exit::Ok)
}
