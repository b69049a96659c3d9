//! `spool subscribe` and `spool unsubscribe`: which queues receive what is
//! published to a topic.

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::error::Exit;
use crate::parse;

const SUBSCRIBE_EXAMPLES: &str = "\
Examples:
  spool subscribe orders payment     # `payment` receives every message published to `orders`
  spool subscribe orders inventory
  spool publish orders '{\"type\":\"OrderPlaced\",\"order_id\":\"A-17\"}'   # one id, one copy per queue";

const UNSUBSCRIBE_EXAMPLES: &str = "\
Examples:
  spool unsubscribe orders inventory   # new messages no longer reach `inventory`
  spool peek inventory                 # what it already received stays there
  spool queue delete inventory --force # to drop that too";

/// The arguments of `spool subscribe` (its help text is on `Command::Subscribe`).
#[derive(Debug, clap::Args)]
#[command(after_help = SUBSCRIBE_EXAMPLES)]
pub struct SubscribeArgs {
    /// The topic to publish to
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub topic: String,
    /// The queue that receives a copy of each message
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub queue: String,
}

/// The arguments of `spool unsubscribe` (its help text is on `Command::Unsubscribe`).
#[derive(Debug, clap::Args)]
#[command(after_help = UNSUBSCRIBE_EXAMPLES)]
pub struct UnsubscribeArgs {
    /// The topic
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub topic: String,
    /// The queue that stops receiving its messages
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub queue: String,
}

/// Runs `spool subscribe`.
pub fn subscribe(ctx: &Context, args: SubscribeArgs) -> anyhow::Result<Exit> {
    ctx.store()?.subscribe(&args.topic, &args.queue)?;
    Ok(Exit::Ok)
}

/// Runs `spool unsubscribe`.
pub fn unsubscribe(ctx: &Context, args: UnsubscribeArgs) -> anyhow::Result<Exit> {
    // No database (and none is made for a refusal): no topic to leave.
    let Some(mut store) = ctx.existing_store()? else {
        return Err(crate::store::Error::NotSubscribed {
            topic: args.topic,
            queue: args.queue,
            subscribers: None,
        }
        .into());
    };
    let remaining = store.unsubscribe(&args.topic, &args.queue)?;
    if remaining.is_empty() {
        ctx.out.note(&format!(
            "topic `{}` has no subscribers now: publishing to it fails until a queue subscribes with `spool subscribe {} QUEUE`",
            args.topic, args.topic
        ));
    }
    Ok(Exit::Ok)
}
