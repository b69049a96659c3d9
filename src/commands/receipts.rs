//! `spool ack`, `spool nack` and `spool extend`: settle deliveries by receipt.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use anyhow::Context as _;

use crate::Context;
use crate::error::{Exit, Failure, Silent};
use crate::parse;
use crate::store::{Receipt, ReceiptError, Release};

const ACK_EXAMPLES: &str = "\
Examples:
  spool ack 1_2a_9f3c0d4e5b6a7980
  spool consume orders -n 100 | ./handle | spool ack";

const NACK_EXAMPLES: &str = "\
Examples:
  spool nack \"$receipt\"                  # deliverable again now
  spool nack \"$receipt\" --delay 5m       # after five minutes
  spool nack \"$receipt\" --backoff        # after the queue's exponential backoff
  spool nack \"$receipt\" --reason 'HTTP 503 from the API'
  spool nack \"$receipt\" --dead --reason 'cannot parse'   # a poison message: dead now";

const EXTEND_EXAMPLES: &str = "\
Examples:
  spool extend \"$receipt\" --by 5m
  spool consume jobs -n 10 | spool extend --by 10m   # every receipt on stdin
  while sleep 20; do spool extend \"$receipt\" --by 1m; done &   # heartbeat";

/// Receipts from the command line, or else from stdin.
#[derive(Debug, clap::Args)]
pub struct ReceiptArgs {
    /// Receipts from `spool consume`; without any, read stdin: one per line,
    /// bare or as consume's JSON lines
    #[arg(value_name = "RECEIPT")]
    pub receipts: Vec<String>,
}

/// Mark deliveries as done.
///
/// Each receipt is handled on its own: an unknown receipt, or one whose lease
/// ran out, is reported and the others are still acked (exit 3). Acking the same
/// receipt twice is harmless.
#[derive(Debug, clap::Args)]
#[command(after_help = ACK_EXAMPLES)]
pub struct AckArgs {
    /// The receipts to settle.
    #[command(flatten)]
    pub receipts: ReceiptArgs,
}

/// Give deliveries back to the queue, now or later.
///
/// Counts as a failed attempt: the last allowed failure makes the message dead.
#[derive(Debug, clap::Args)]
#[command(after_help = NACK_EXAMPLES)]
pub struct NackArgs {
    /// The receipts to settle.
    #[command(flatten)]
    pub receipts: ReceiptArgs,
    /// Deliverable again only after DUR
    #[arg(long, value_name = "DUR", value_parser = parse::duration, conflicts_with = "backoff")]
    pub delay: Option<Duration>,
    /// Deliverable again after the queue's exponential backoff (retry_delay × 2^(attempt−1))
    #[arg(long)]
    pub backoff: bool,
    /// Reject the message: dead at once (reason `rejected`), whatever attempts it has left
    #[arg(long, conflicts_with_all = ["delay", "backoff"])]
    pub dead: bool,
    /// Why it failed, kept as the message's `last_error` (shown by `peek`)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// Extend the leases of deliveries (a heartbeat).
///
/// Pushes each lease's end to now + DUR.
#[derive(Debug, clap::Args)]
#[command(after_help = EXTEND_EXAMPLES)]
pub struct ExtendArgs {
    /// The receipts to settle.
    #[command(flatten)]
    pub receipts: ReceiptArgs,
    /// The lease ends this long from now
    #[arg(long, value_name = "DUR", value_parser = parse::positive_duration)]
    pub by: Duration,
}

/// A receipt as typed, and what it parsed to.
type Parsed = (String, Result<Receipt, ReceiptError>);

fn collect(args: &ReceiptArgs) -> anyhow::Result<Vec<Parsed>> {
    let texts = if args.receipts.is_empty() {
        read_stdin()?
    } else {
        args.receipts.clone()
    };
    Ok(texts
        .into_iter()
        .map(|text| {
            let parsed = text.parse();
            (text, parsed)
        })
        .collect())
}

fn read_stdin() -> anyhow::Result<Vec<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::usage(
            "no receipts given. Pass them as arguments, or pipe them in: `spool consume QUEUE | spool ack`",
        )
        .into());
    }
    let mut receipts = Vec::new();
    for line in stdin.lock().split(b'\n') {
        let line = line.context("cannot read stdin")?;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if !text.is_empty() {
            receipts.push(receipt_of_line(text));
        }
    }
    Ok(receipts)
}

/// A line is a bare receipt or a JSON object with a `receipt` field.
pub(crate) fn receipt_of_line(line: &str) -> String {
    if !line.starts_with('{') {
        return line.to_owned();
    }
    // The object is checked whole but only its receipt is kept: building a
    // `Value` of every field (the body too) cost about 11,000 instructions a
    // line of `consume`'s output, a sixth of an `ack` of 100.
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        receipt: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<Line<'_>>(line) {
        Ok(Line { receipt: Some(r) }) => r.into_owned(),
        Ok(Line { receipt: None }) => line.to_owned(),
        // A receipt that is not a string, or a key given twice: as before,
        // the last `receipt` that is a string, else the line.
        Err(_) => match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(map)) => match map.get("receipt") {
                Some(serde_json::Value::String(r)) => r.clone(),
                _ => line.to_owned(),
            },
            _ => line.to_owned(),
        },
    }
}

/// Settles every parsable receipt with `op` and reports the refused ones.
fn settle(
    ctx: &Context,
    args: &ReceiptArgs,
    op: impl FnOnce(
        &mut crate::store::Db,
        &[Receipt],
    ) -> crate::store::Result<Vec<Result<(), ReceiptError>>>,
) -> anyhow::Result<Exit> {
    let parsed = collect(args)?;
    if parsed.is_empty() {
        return Ok(Exit::Ok);
    }
    let valid: Vec<Receipt> = parsed.iter().filter_map(|(_, r)| r.ok()).collect();
    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        match ctx.existing_store()? {
            Some(mut store) => op(&mut store, &valid)?,
            // No database (and none is made): it handed out no receipt.
            None => vec![Err(ReceiptError::Unknown); valid.len()],
        }
    };
    let mut outcomes = outcomes.into_iter();
    let mut refused = 0;
    for (text, parsed) in &parsed {
        let outcome = match parsed {
            Ok(_) => outcomes.next().unwrap_or(Ok(())),
            Err(e) => Err(*e),
        };
        if let Err(e) = outcome {
            refused += 1;
            eprintln!("spool: error: {}", refusal(text, e));
        }
    }
    if refused > 0 {
        return Err(Silent(Exit::NotFound).into());
    }
    Ok(Exit::Ok)
}

/// Why receipt `text` was refused, for people: the receipt (its first 80
/// characters, control characters escaped), and a JSON line that carries
/// none named as such.
fn refusal(text: &str, e: ReceiptError) -> String {
    const SHOWN: usize = 80;
    // Control characters escaped, so that none can break the line.
    let escaped: String = text
        .chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect();
    let shown = match escaped.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    };
    if text.starts_with('{') {
        return format!(
            "line `{shown}` has no string `receipt` field: give receipts, or the lines `spool consume` prints"
        );
    }
    format!("receipt `{shown}`: {e}")
}

/// Runs `spool ack`.
pub fn ack(ctx: &Context, args: AckArgs) -> anyhow::Result<Exit> {
    settle(ctx, &args.receipts, |store, r| store.ack(r))
}

/// Runs `spool nack`.
pub fn nack(ctx: &Context, args: NackArgs) -> anyhow::Result<Exit> {
    let release = match (args.delay, args.backoff, args.dead) {
        (_, _, true) => Release::Dead,
        (_, true, false) => Release::Backoff,
        (Some(d), false, false) => Release::After(d),
        (None, false, false) => Release::Now,
    };
    let reason = args.reason.as_deref();
    settle(ctx, &args.receipts, |store, r| {
        store.nack(r, release, reason)
    })
}

/// Runs `spool extend`.
pub fn extend(ctx: &Context, args: ExtendArgs) -> anyhow::Result<Exit> {
    settle(ctx, &args.receipts, |store, r| store.extend(r, args.by))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_give_their_receipt() {
        assert_eq!(receipt_of_line(r#"{"id":1,"receipt":"1_1_00"}"#), "1_1_00");
        assert_eq!(receipt_of_line("1_1_00"), "1_1_00");
        assert_eq!(receipt_of_line("{not json"), "{not json");
        // A whole message line, its body ignored; an escaped receipt.
        assert_eq!(
            receipt_of_line(r#"{"id":1,"body":{"a":[1,{"b":null}]},"receipt":"1_2_\u0030f"}"#),
            "1_2_0f"
        );
        // No string receipt: the line itself (and so refused as a receipt).
        for line in [
            r#"{"id":1}"#,
            r#"{"receipt":null}"#,
            r#"{"receipt":5}"#,
            r#"{"receipt":"1_1_00"} x"#,
        ] {
            assert_eq!(receipt_of_line(line), line);
        }
        // A key given twice: the last string one, as a JSON object reads.
        assert_eq!(
            receipt_of_line(r#"{"receipt":"1_1_00","receipt":"2_2_00"}"#),
            "2_2_00"
        );
    }
}
