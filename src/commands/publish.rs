//! `spool publish`: one message from the command line, or many from stdin.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::Context;
use crate::commands::docs::complete_queues;
use crate::error::{Exit, Failure};
use crate::input::{self, Line, read_body_line, trim_blank};
use crate::output::{Output, Progress};
use crate::parse;
use crate::store::{self, Batch, BodyLimit, Db, NewMessage, Receipt, ReceiptError};

const EXAMPLES: &str = "\
Examples:
  spool publish orders '{\"id\": 1, \"total\": 9.5}'
  jq -c '.orders[]' export.json | spool publish orders
  tail -f app.log | spool publish logs --raw --stream
  spool publish orders --key-from /id --priority 10 < orders.ndjson
  ./charge < body.json | spool publish payments --ack \"$SPOOL_RECEIPT\"";

/// Publish messages to a queue or topic.
///
/// With BODY, publishes one message. Without it, reads stdin: one JSON value per
/// line (blank lines skipped), all or nothing: a bad line publishes nothing.
/// Prints the id of each message, one per line.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Queue or topic to publish to (a queue is created on first use)
    #[arg(value_parser = parse::queue_name, add = complete_queues())]
    pub queue: String,
    /// The message: one JSON value (or any text with --raw); without it, read stdin
    pub body: Option<String>,
    /// All of stdin is one message (e.g. a pretty-printed JSON document)
    #[arg(long, conflicts_with = "body")]
    pub single: bool,
    /// Commit as input arrives, for endless input; a bad line stops after the earlier ones are committed
    #[arg(long, conflicts_with_all = ["body", "single"])]
    pub stream: bool,
    /// Bodies are text lines (or all of stdin with --single), not JSON
    #[arg(long)]
    pub raw: bool,
    /// Deduplication key: a key the queue still holds adds nothing and answers the existing id
    #[arg(long, value_name = "KEY", conflicts_with = "key_from", value_parser = parse::label)]
    pub key: Option<String>,
    /// Take the key from each message at this JSON pointer (e.g. /order_id)
    #[arg(long, value_name = "POINTER", value_parser = json_pointer, conflicts_with = "raw")]
    pub key_from: Option<String>,
    /// Deliverable only after this long (e.g. 30s, 5m)
    #[arg(long, value_name = "DUR", value_parser = parse::duration, conflicts_with = "at")]
    pub delay: Option<Duration>,
    /// Deliverable only from this time on (RFC 3339)
    #[arg(long, value_name = "TIME", value_parser = parse::deliver_at)]
    pub at: Option<i64>,
    /// Not delivered again once this long has passed since its publish: it dies as `expired` unless acked (overrides the queue's --ttl)
    #[arg(long, value_name = "DUR", value_parser = parse::positive_duration)]
    pub ttl: Option<Duration>,
    /// Higher first, from -100 to 100; equal priority in id order
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-100..=100))]
    pub priority: i64,
    /// Ordered group: its messages are delivered one at a time, in id order
    #[arg(long, value_name = "GROUP", conflicts_with = "group_from", value_parser = parse::label)]
    pub group: Option<String>,
    /// Take the group from each message at this JSON pointer
    #[arg(long, value_name = "POINTER", value_parser = json_pointer, conflicts_with = "raw")]
    pub group_from: Option<String>,
    /// A string header, returned by consume and peek (repeatable)
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = header)]
    pub headers: Vec<(String, String)>,
    /// Ack this delivery in the same transaction: both happen or neither
    #[arg(long, value_name = "RECEIPT", conflicts_with = "stream")]
    pub ack: Option<String>,
}

fn json_pointer(text: &str) -> Result<String, String> {
    if !text.is_empty() && !text.starts_with('/') {
        return Err(format!(
            "invalid JSON pointer `{text}`: it starts with `/`, like `/order/id`"
        ));
    }
    let mut tildes = text.match_indices('~');
    if tildes.any(|(i, _)| !matches!(text.as_bytes().get(i + 1), Some(b'0' | b'1'))) {
        return Err(format!(
            "invalid JSON pointer `{text}`: `~` must be followed by `0` or `1` (`~0` stands for `~`, `~1` for `/`)"
        ));
    }
    Ok(text.to_owned())
}

/// `--header NAME=VALUE`, as publish and `schedule add` take it.
pub(crate) fn header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!(
            "invalid header `{text}`: write NAME=VALUE, like `source=shop`"
        )),
    }
}

/// Input held in memory before the write lock is taken, so a slow producer
/// does not block other writers. Past this, an all-or-nothing publish takes
/// the lock and writes as it reads.
const BUFFER_BYTES: usize = 16 << 20;
const BUFFER_MESSAGES: usize = 100_000;

/// Lines read before a progress bar appears on a terminal.
const PROGRESS_AFTER: u64 = 50_000;

/// `--stream` commits at least this often while input arrives.
const STREAM_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Where a message came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Argument,
    Stdin,
    Line(u64),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Argument => f.write_str("the BODY argument"),
            Origin::Stdin => f.write_str("stdin"),
            Origin::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// A checked message waiting to be written.
pub(crate) struct Prepared {
    origin: Origin,
    pub(crate) body: Vec<u8>,
    pub(crate) key: Option<String>,
    pub(crate) group: Option<String>,
}

/// Checks and shapes raw input into messages, per the flags.
pub(crate) struct Preparer<'a> {
    pub(crate) args: &'a Args,
    pub(crate) limit: BodyLimit,
}

impl Preparer<'_> {
    /// Returns `None` for a blank NDJSON line.
    fn prepare(&self, origin: Origin, mut bytes: Vec<u8>) -> Result<Option<Prepared>, Failure> {
        let bad = |reason: String| Failure::data(format!("{origin}: {reason}"));
        let checked = checked_body(&bytes, self.args.raw, &self.limit).map_err(bad)?;
        if self.args.raw {
            return Ok(Some(self.with_meta(origin, bytes)));
        }
        let Some(trimmed) = checked else {
            return match origin {
                Origin::Line(_) => Ok(None),
                _ => Err(bad(EMPTY_BODY.into())),
            };
        };
        let from = |flag: &str, pointer: &str| {
            pointer_text(trimmed, pointer).map_err(|miss| bad(miss.explain(flag, pointer)))
        };
        let key = match &self.args.key_from {
            Some(p) => Some(from("--key-from", p)?),
            None => self.args.key.clone(),
        };
        let group = match &self.args.group_from {
            Some(p) => Some(from("--group-from", p)?),
            None => self.args.group.clone(),
        };
        let (start, len) = (
            trimmed.as_ptr() as usize - bytes.as_ptr() as usize,
            trimmed.len(),
        );
        bytes.truncate(start + len);
        bytes.drain(..start);
        let prepared = Prepared {
            origin,
            body: bytes,
            key,
            group,
        };
        Ok(Some(prepared))
    }

    fn with_meta(&self, origin: Origin, body: Vec<u8>) -> Prepared {
        Prepared {
            origin,
            body,
            key: self.args.key.clone(),
            group: self.args.group.clone(),
        }
    }
}

/// Why a body of blanks only is refused (where a line of them is skipped).
pub(crate) const EMPTY_BODY: &str = "empty body: a message is one JSON value";

/// A body checked as publish checks it, before any flag takes something
/// from it: at most `max_size` as stored (a JSON body without the blanks
/// around it, a raw one as it is), UTF-8, and unless `raw` one JSON value.
/// Returns the text stored (a raw body whole, a JSON body trimmed), or
/// `None` for a JSON body of blanks only; the error says why, as publish
/// says it.
pub(crate) fn checked_body<'b>(
    bytes: &'b [u8],
    raw: bool,
    limit: &BodyLimit,
) -> Result<Option<&'b str>, String> {
    let size = match raw {
        true => bytes.len(),
        false => trim_blank(bytes).len(),
    };
    if size as u64 > limit.bytes {
        return Err(too_large(Some(size as u64), limit));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "invalid UTF-8 at byte {}; bodies must be UTF-8 text",
            e.valid_up_to() + 1
        )
    })?;
    match raw {
        true => Ok(Some(text)),
        false => json_body(text),
    }
}

/// The JSON value in `text` without the blanks around it, or why it is not
/// one (as publish says it); `None` for blanks only.
pub(crate) fn json_body(text: &str) -> Result<Option<&str>, String> {
    let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.starts_with('\u{FEFF}') {
        return Err(
            "invalid JSON: the body starts with a byte-order mark (U+FEFF), which JSON does not allow; save the file without one"
                .to_owned(),
        );
    }
    serde_json::from_str::<serde::de::IgnoredAny>(trimmed).map_err(|e| {
        // Lines of the body as given: the blank lines trimmed count too.
        let start = text.len() - text.trim_start_matches([' ', '\t', '\n', '\r']).len();
        json_error(&e, text[..start].matches('\n').count())
    })?;
    if nesting_exceeds(trimmed.as_bytes(), MAX_NESTING) {
        return Err(format!(
            "JSON nested deeper than {MAX_NESTING} levels; spool refuses it, as many consumers cannot parse it"
        ));
    }
    Ok(Some(trimmed))
}

/// The deepest nesting of arrays and objects a JSON body may have: what
/// serde_json's `Value` parses (its recursion limit of 128 allows 127
/// levels). serde_json validates deeper documents without recursion, but
/// they would break `--key-from` and many consumers, so spool refuses them.
const MAX_NESTING: usize = 127;

/// True when valid JSON `text` nests arrays and objects deeper than `limit`.
fn nesting_exceeds(text: &[u8], limit: usize) -> bool {
    // Depth needs at least as many opening brackets: counting them is a
    // cheap, vectorised pass that settles almost every body at once.
    if text.iter().filter(|&&b| b == b'[' || b == b'{').count() <= limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Why `--key-from`/`--group-from` found no text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// The pointer leads nowhere, or to something not a string or number.
    Nothing,
    /// On the way there is a string that is not valid Unicode: JSON allows
    /// escapes of lone surrogates (`"\ud800"`), which no text can hold.
    NotUnicode,
}

impl Miss {
    fn explain(self, flag: &str, pointer: &str) -> String {
        match self {
            Miss::Nothing => {
                format!("{flag} `{pointer}` points at no string or number in the message")
            }
            Miss::NotUnicode => format!(
                "{flag} `{pointer}` meets a string that is not valid Unicode (an escaped lone surrogate such as `\\ud800`), which cannot be a key or group"
            ),
        }
    }
}

/// The text at JSON `pointer` in the JSON document `text`: a string's value,
/// or a number's literal exactly as written, so `12345678901234567890123`
/// stays itself instead of becoming a rounded float (two such ids would
/// otherwise share a key, and the second message would be dropped as a
/// duplicate). [`Miss::Nothing`] when it points at nothing, or at another
/// kind of value.
fn pointer_text(text: &str, pointer: &str) -> Result<String, Miss> {
    use serde_json::value::RawValue;
    // `text` is valid JSON nested at most 127 deep, so the only thing these
    // parses can refuse is a string that is not valid Unicode.
    let unicode = |_| Miss::NotUnicode;
    let mut raw: &RawValue = serde_json::from_str(text).map_err(unicode)?;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        raw = match raw.get().as_bytes().first() {
            Some(b'{') => {
                let map: std::collections::HashMap<String, &RawValue> =
                    serde_json::from_str(raw.get()).map_err(unicode)?;
                map.get(&token).copied().ok_or(Miss::Nothing)?
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(unicode)?;
                let index = array_index(&token).ok_or(Miss::Nothing)?;
                items.get(index).copied().ok_or(Miss::Nothing)?
            }
            _ => return Err(Miss::Nothing),
        };
    }
    let literal = raw.get();
    match literal.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(literal).map_err(unicode),
        Some(b'-' | b'0'..=b'9') => Ok(literal.to_owned()),
        _ => Err(Miss::Nothing),
    }
}

/// A JSON pointer array index: `0`, or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let digits_only = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// serde's error, placed in the body: by column for a one-line body (an
/// NDJSON line, whose number the caller gives), by line and column when the
/// body spans lines (`--single`, a BODY argument), counting `skipped` blank
/// lines before it.
fn json_error(err: &serde_json::Error, skipped: usize) -> String {
    let reason = err.to_string();
    let reason = reason
        .split(" at line ")
        .next()
        .unwrap_or(&reason)
        .to_owned();
    match err.line() + skipped {
        1 => format!("invalid JSON: {reason} at column {}", err.column()),
        line => format!(
            "invalid JSON: {reason} at line {line}, column {}",
            err.column()
        ),
    }
}

/// True for a publish refused by a queue's length limits.
fn is_full(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<store::Error>(),
        Some(store::Error::QueueFull { .. } | store::Error::NeverFits { .. })
    )
}

/// Why a body (of `size` bytes, when known) is refused: over `limit`,
/// with what to do about it.
pub(crate) fn too_large(size: Option<u64>, limit: &BodyLimit) -> String {
    let body = match size {
        Some(size) => format!("body of {size} bytes"),
        None => "body".to_owned(),
    };
    let (bytes, queue) = (parse::format_size(limit.bytes), &limit.queue);
    if limit.bytes >= store::MAX_BODY_BYTES {
        format!("{body} is larger than {bytes}, the largest body a queue takes")
    } else {
        format!(
            "{body} is larger than the max_size of `{queue}`, {bytes}. Raise it with `spool queue set {queue} --max-size SIZE`"
        )
    }
}

/// Everything publish needs while writing.
struct Writer<'a> {
    args: &'a Args,
    /// `--ack`: the delivery acked in the publish's transaction.
    ack: Option<Receipt>,
    headers: Option<String>,
    available_at: Option<i64>,
    /// Committed ids held back for the end (all-or-nothing, or a terminal).
    ids: Vec<i64>,
    /// Print ids as soon as they are committed (`--stream` into a pipe).
    live: bool,
    /// How many messages were committed.
    published: usize,
}

impl Writer<'_> {
    fn write(&self, batch: &mut Batch<'_>, msg: &Prepared) -> anyhow::Result<i64> {
        let new = NewMessage {
            body: &msg.body,
            raw: self.args.raw,
            key: msg.key.as_deref(),
            group: msg.group.as_deref(),
            headers: self.headers.as_deref(),
            priority: self.args.priority,
            available_at: self.available_at,
            ttl: self.args.ttl,
        };
        batch.publish(&new).map_err(|e| match e {
            store::Error::TooLarge { size, limit, queue } => {
                let limit = BodyLimit {
                    bytes: limit,
                    queue,
                };
                Failure::data(format!(
                    "{}: {}",
                    msg.origin,
                    too_large(Some(size as u64), &limit)
                ))
                .into()
            }
            e @ (store::Error::Invalid { .. } | store::Error::BadLabel { .. }) => {
                Failure::data(format!("{}: {e}", msg.origin)).into()
            }
            other => anyhow::Error::from(other),
        })
    }

    /// Writes `pending` in one transaction and commits it. All or nothing,
    /// except with `--stream`: there a message that breaks a schema ends the
    /// batch, the messages before it are committed, and its error returned.
    fn flush(&mut self, store: &mut Target<'_>, pending: &mut Vec<Prepared>) -> anyhow::Result<()> {
        if pending.is_empty() {
            return match self.ack {
                // A handler that failed and printed nothing must not lose
                // its message.
                Some(_) => Err(Failure::data(
                    "no messages on stdin: with --ack, empty input acks nothing (finish a delivery without publishing with `spool ack`)",
                )
                .into()),
                None => Ok(()),
            };
        }
        let partial = self.args.stream;
        if partial && pending.len() > 1 {
            // A chunk that would go over the queue's length limit: with
            // `--stream` the messages that fit go in, one at a time, and the
            // first that does not ends the command.
            let mut chunk = std::mem::take(pending);
            match self.flush_all(store, &mut chunk) {
                Err(e) if is_full(&e) => {
                    for msg in chunk {
                        self.flush_all(store, &mut vec![msg])?;
                    }
                    return Ok(());
                }
                other => return other,
            }
        }
        self.flush_all(store, pending)
    }

    /// [`Writer::flush`] of one transaction.
    fn flush_all(
        &mut self,
        store: &mut Target<'_>,
        pending: &mut Vec<Prepared>,
    ) -> anyhow::Result<()> {
        self.publish_all(store.get()?, pending)
    }

    /// [`Writer::flush_all`] on an open database.
    fn publish_all(&mut self, db: &mut Db, pending: &mut Vec<Prepared>) -> anyhow::Result<()> {
        let partial = self.args.stream;
        let (ids, bad) = self.publish(db, |batch| {
            let mut ids = Vec::with_capacity(pending.len());
            for msg in pending.iter() {
                match self.write(batch, msg) {
                    Ok(id) => ids.push(id),
                    Err(e) if partial && e.is::<Failure>() => return Ok((ids, Some(e))),
                    Err(e) => return Err(e),
                }
            }
            anyhow::Ok((ids, None))
        })?;
        pending.clear();
        self.committed(ids)?;
        bad.map_or(Ok(()), Err)
    }

    /// One publish transaction, acking `--ack`'s delivery in it.
    fn publish<T>(
        &self,
        db: &mut Db,
        fill: impl FnMut(&mut Batch<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        match &self.ack {
            Some(receipt) => db.publish_acking(&self.args.queue, receipt, fill),
            None => db.publish_batch(&self.args.queue, fill),
        }
    }

    /// Records ids that are now on disk, printing them at once in live mode.
    fn committed(&mut self, ids: Vec<i64>) -> anyhow::Result<()> {
        self.published += ids.len();
        if !self.live {
            self.ids.extend(ids);
            return Ok(());
        }
        let mut out = crate::output::stdout();
        let printed = ids.iter().try_for_each(|id| writeln!(out, "{id}"));
        printed
            .and_then(|()| out.flush())
            .map_err(|e| not_printed(e, &ids))
    }
}

/// An error printing ids of messages that are already committed. A closed
/// stdout stays quiet (SPEC §4); any other failure says that the messages
/// were published, so that a producer does not publish them twice.
fn not_printed(err: io::Error, ids: &[i64]) -> anyhow::Error {
    if err.kind() == io::ErrorKind::BrokenPipe || ids.is_empty() {
        return err.into();
    }
    let what = match ids {
        [id] => format!("message {id} was published"),
        _ => format!(
            "{} messages were published (ids {}–{})",
            ids.len(),
            ids.iter().min().unwrap_or(&0),
            ids.iter().max().unwrap_or(&0)
        ),
    };
    Failure::new(
        Exit::IoErr,
        format!(
            "{err}; {what} and committed: do not retry, as a retry publishes again (safe only with --key)"
        ),
    )
    .into()
}

/// The database, opened at the start when it exists, and created only when
/// there are messages to write: a publish whose input is refused leaves a
/// missing database missing.
struct Target<'c> {
    ctx: &'c Context,
    db: Option<Db>,
}

impl Target<'_> {
    fn get(&mut self) -> anyhow::Result<&mut Db> {
        Ok(match self.db {
            Some(ref mut db) => db,
            None => self.db.insert(self.ctx.store()?),
        })
    }
}

/// With `--raw`, refuses a target whose messages must meet a JSON Schema
/// ([`store::Error::RawBody`]), before any input is read.
fn refuse_raw_body(db: &Db, args: &Args) -> anyhow::Result<()> {
    if args.raw
        && let Some(holder) = db.schema_holder(&args.queue)?
    {
        return Err(store::Error::RawBody {
            name: args.queue.clone(),
            holder,
        }
        .into());
    }
    Ok(())
}

/// Runs `spool publish`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    let mut store = Target {
        ctx,
        db: ctx.existing_store()?,
    };
    if let Some(db) = &store.db {
        // Refused before any input is read; the batch checks again.
        refuse_raw_body(db, &args)?;
    }
    let preparer = Preparer {
        args: &args,
        // Without a database the queue is new, with the default settings;
        // the batch checks again.
        limit: match &store.db {
            Some(db) => db.body_limit(&args.queue)?,
            None => BodyLimit::default_for(&args.queue),
        },
    };
    let ack = match &args.ack {
        Some(text) => Some(ack_receipt(text, store.db.is_some())?),
        None => None,
    };
    let mut writer = Writer {
        args: &args,
        ack,
        headers: headers_json(&args.headers),
        available_at: available_at(&args),
        ids: Vec::new(),
        live: args.stream && !ctx.out.human() && !ctx.out.quiet,
        published: 0,
    };
    let result = if let Some(body) = &args.body {
        let msg = preparer.prepare(Origin::Argument, body.clone().into_bytes())?;
        let mut pending: Vec<Prepared> = msg.into_iter().collect();
        writer.flush(&mut store, &mut pending)
    } else if args.single {
        let bytes = read_all(&preparer.limit, args.raw)?;
        let mut pending: Vec<Prepared> = preparer
            .prepare(Origin::Stdin, bytes)?
            .into_iter()
            .collect();
        writer.flush(&mut store, &mut pending)
    } else if args.stream {
        stream(&mut store, &preparer, &mut writer, &ctx.out)
    } else {
        all_or_nothing(&mut store, &preparer, &mut writer, &ctx.out)
    };
    print_ids(ctx, &args.queue, &writer.ids).map_err(|e| not_printed(e, &writer.ids))?;
    result.map(|()| Exit::Ok)
}

/// `--ack`'s receipt, refused (exit 3) before any input is read when it
/// cannot be one: not a receipt, or no database yet.
fn ack_receipt(text: &str, database_exists: bool) -> anyhow::Result<Receipt> {
    let refused = |reason| store::Error::Receipt {
        receipt: text.to_owned(),
        reason,
    };
    let receipt: Receipt = text.trim().parse().map_err(refused)?;
    if !database_exists {
        return Err(refused(ReceiptError::Unknown).into());
    }
    Ok(receipt)
}

/// `--header` values as the JSON object text the store keeps (`None`: none).
pub(crate) fn headers_json(headers: &[(String, String)]) -> Option<String> {
    if headers.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

fn available_at(args: &Args) -> Option<i64> {
    match (args.delay, args.at) {
        (Some(d), _) => Some(store::now_ms().saturating_add(d.as_millis() as i64)),
        (None, at) => at,
    }
}

/// Reads all of stdin, refusing a body over `limit` bytes: with `raw`, the
/// input as it is; otherwise (JSON) without the whitespace around it.
pub(crate) fn read_all(limit: &BodyLimit, raw: bool) -> anyhow::Result<Vec<u8>> {
    input::read_whole(&mut io::stdin().lock(), limit.bytes, raw)
        .context("cannot read stdin")?
        .ok_or_else(|| Failure::data(format!("stdin: {}", too_large(None, limit))).into())
}

/// Stdin as a sequence of checked messages.
struct Lines<'p, 'a> {
    input: io::StdinLock<'static>,
    number: u64,
    preparer: &'p Preparer<'a>,
    progress: Progress,
}

impl<'p, 'a> Lines<'p, 'a> {
    fn new(preparer: &'p Preparer<'a>, out: &Output) -> Self {
        Lines {
            input: io::stdin().lock(),
            number: 0,
            preparer,
            progress: Progress::new(out, "publishing", None, PROGRESS_AFTER),
        }
    }

    /// The next message, skipping blank lines; `None` at the end of input.
    fn next(&mut self) -> anyhow::Result<Option<Prepared>> {
        let (limit, raw) = (self.preparer.limit.bytes, self.preparer.args.raw);
        while let Some(line) =
            read_body_line(&mut self.input, limit, raw).context("cannot read stdin")?
        {
            self.number += 1;
            self.progress.inc(1);
            if let Some(msg) = prepare_line(self.preparer, Origin::Line(self.number), line)? {
                return Ok(Some(msg));
            }
        }
        Ok(None)
    }
}

/// The default mode: everything or nothing. Input is read into memory before
/// the write lock is taken, so a slow producer does not block other writers;
/// past [`BUFFER_BYTES`] it is written as it is read, in one transaction that
/// holds the lock until the input ends.
fn all_or_nothing(
    store: &mut Target<'_>,
    preparer: &Preparer<'_>,
    writer: &mut Writer<'_>,
    out: &Output,
) -> anyhow::Result<()> {
    let mut lines = Lines::new(preparer, out);
    let mut pending = Vec::new();
    let mut pending_bytes = 0;
    while let Some(msg) = lines.next()? {
        pending_bytes += msg.body.len();
        pending.push(msg);
        if pending_bytes >= BUFFER_BYTES || pending.len() >= BUFFER_MESSAGES {
            return write_through(store, &mut lines, pending, writer);
        }
    }
    writer.flush(store, &mut pending)
}

fn write_through(
    store: &mut Target<'_>,
    lines: &mut Lines<'_, '_>,
    pending: Vec<Prepared>,
    writer: &mut Writer<'_>,
) -> anyhow::Result<()> {
    // The input is consumed as it is written, so a transaction that
    // PostgreSQL ended for a conflict (the only error it retries) cannot be
    // run again.
    let mut ran = false;
    // Taken by the one run, so that each buffered message is freed once it is
    // written (16 MiB of them would otherwise stay for the whole transaction).
    let mut pending = Some(pending);
    let db = store.get()?;
    let ids = writer.publish(db, |batch| {
        if ran {
            return Err(store::Error::PgBusy {
                reason: "PostgreSQL ended this publish's transaction to resolve a conflict with another one (a deadlock or serialization failure), and input that was written as it was read cannot be written again".to_owned(),
            }
            .into());
        }
        ran = true;
        let pending = pending.take().unwrap_or_default();
        let mut ids = Vec::with_capacity(pending.len());
        for msg in pending {
            ids.push(writer.write(batch, &msg)?);
        }
        while let Some(msg) = lines.next()? {
            ids.push(writer.write(batch, &msg)?);
        }
        anyhow::Ok(ids)
    })?;
    writer.committed(ids)
}

/// `--stream`: a reader thread feeds lines; the main thread commits whatever
/// arrived at least every [`STREAM_COMMIT_INTERVAL`], holding the write lock
/// only while it writes. SIGINT/SIGTERM commit what was read and end with 0.
fn stream(
    store: &mut Target<'_>,
    preparer: &Preparer<'_>,
    writer: &mut Writer<'_>,
    out: &Output,
) -> anyhow::Result<()> {
    let mut progress = Progress::new(out, "publishing", None, PROGRESS_AFTER);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let (tx, rx) = mpsc::sync_channel::<io::Result<Option<Line>>>(4096);
    let (limit, raw) = (preparer.limit.bytes, preparer.args.raw);
    std::thread::spawn(move || {
        let mut input = io::stdin().lock();
        loop {
            let line = read_body_line(&mut input, limit, raw);
            let end = !matches!(line, Ok(Some(_)));
            if tx.send(line).is_err() || end {
                break;
            }
        }
    });
    let mut pending: Vec<Prepared> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut number = 0;
    let outcome = loop {
        let wait = oldest.map_or(STREAM_COMMIT_INTERVAL, |t| {
            STREAM_COMMIT_INTERVAL.saturating_sub(t.elapsed())
        });
        let line = match rx.recv_timeout(wait) {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) | Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
            Ok(Err(e)) => break Err(anyhow::Error::from(e).context("cannot read stdin")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = writer.flush(store, &mut pending) {
                    pending.clear();
                    break Err(e);
                }
                oldest = None;
                if stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
                continue;
            }
        };
        number += 1;
        progress.inc(1);
        match prepare_line(preparer, Origin::Line(number), line) {
            Ok(Some(msg)) => {
                pending.push(msg);
                oldest.get_or_insert_with(Instant::now);
            }
            Ok(None) => {}
            Err(e) => break Err(e.into()),
        }
        let due = oldest.is_some_and(|t| t.elapsed() >= STREAM_COMMIT_INTERVAL);
        if due || pending.len() >= BUFFER_MESSAGES || stop.load(Ordering::Relaxed) {
            if let Err(e) = writer.flush(store, &mut pending) {
                pending.clear();
                break Err(e);
            }
            oldest = None;
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
        }
    };
    // The lines read before a bad one are committed; a message among them
    // that breaks a schema comes first, so it is the one reported.
    let outcome = writer.flush(store, &mut pending).and(outcome);
    outcome.map_err(|e: anyhow::Error| match e.downcast::<Failure>() {
        Ok(f) => Failure::new(
            f.exit,
            format!(
                "{}; stopped there after publishing {} message(s)",
                f.message, writer.published
            ),
        )
        .into(),
        // Disk full, a lost connection, the topic's last subscriber gone:
        // the caller still needs to know what was committed. A closed stdout
        // stays quiet.
        Err(e) if crate::error::is_broken_pipe(&e) => e,
        Err(e) => Failure::new(
            crate::error::exit_code(&e),
            format!(
                "{e:#}; stopped there after publishing {} message(s)",
                writer.published
            ),
        )
        .into(),
    })
}

/// Checks one stdin line (line `number`) as publish does (for
/// `spool::fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn check_line(
    preparer: &Preparer<'_>,
    number: u64,
    line: Line,
) -> Result<Option<Prepared>, Failure> {
    prepare_line(preparer, Origin::Line(number), line)
}

fn prepare_line(
    preparer: &Preparer<'_>,
    origin: Origin,
    line: Line,
) -> Result<Option<Prepared>, Failure> {
    let bytes = match line {
        Line::Text(bytes) => bytes,
        Line::TooLong => {
            return Err(Failure::data(format!(
                "{origin}: {}",
                too_large(None, &preparer.limit)
            )));
        }
    };
    preparer.prepare(origin, bytes)
}

/// A body over the queue's `max_size` (or the input's limit): publish's
/// message for it, kept apart so that `spool serve` answers 413 rather than
/// 422. Its cause is the [`Failure`] (exit 65) the command line reports.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BodyTooLarge(#[source] pub(crate) Failure);

/// Publishes the NDJSON `input` to `args.queue` as `spool publish` without
/// BODY does (all or nothing, one transaction, `--ack` in it), on an open
/// database; returns the ids in input order. What `spool serve` runs for a
/// publish request: the flags come from its query, the lines from its body.
pub(crate) fn publish_input(db: &mut Db, args: Args, input: &[u8]) -> anyhow::Result<Vec<i64>> {
    prepare_input(db, args, input)?.publish(db)
}

/// A publish request read and checked (the lines, their sizes, the flags),
/// its messages waiting to be written: alone ([`ReadyPublish::publish`]) or
/// in a group with others ([`ReadyPublish::fill`], `spool serve`'s group
/// commit).
pub(crate) struct ReadyPublish {
    args: Args,
    ack: Option<Receipt>,
    headers: Option<String>,
    available_at: Option<i64>,
    pending: Vec<Prepared>,
}

/// Reads and checks `input` for a publish with `args`: the work of
/// `publish_input` before the write transaction. An empty body with `ack`
/// is refused here.
pub(crate) fn prepare_input(db: &mut Db, args: Args, input: &[u8]) -> anyhow::Result<ReadyPublish> {
    refuse_raw_body(db, &args)?;
    let preparer = Preparer {
        args: &args,
        limit: db.body_limit(&args.queue)?,
    };
    let ack = match &args.ack {
        Some(text) => Some(ack_receipt(text, true)?),
        None => None,
    };
    let mut lines = input;
    let mut pending = Vec::new();
    let mut number = 0;
    while let Some(line) = read_body_line(&mut lines, preparer.limit.bytes, args.raw)? {
        number += 1;
        if matches!(line, Line::TooLong) {
            let failure = Failure::data(format!(
                "line {number}: {}",
                too_large(None, &preparer.limit)
            ));
            return Err(BodyTooLarge(failure).into());
        }
        if let Some(msg) = prepare_line(&preparer, Origin::Line(number), line)? {
            pending.push(msg);
        }
    }
    if pending.is_empty() && ack.is_some() {
        return Err(Failure::data(
            "no messages in the body: with ack, an empty body acks nothing (finish a delivery without publishing with POST /v1/ack)",
        )
        .into());
    }
    Ok(ReadyPublish {
        headers: headers_json(&args.headers),
        available_at: available_at(&args),
        args,
        ack,
        pending,
    })
}

/// Checks one message whose body is given whole (never split into lines),
/// as `spool publish QUEUE BODY` checks its argument: what `spool serve
/// --sqs` runs for a SendMessage, whose body may hold newlines. The caller,
/// which has read the queue's settings anyway, gives its `max_size`.
pub(crate) fn prepare_one(
    db: &mut Db,
    args: Args,
    limit: BodyLimit,
    body: Vec<u8>,
) -> anyhow::Result<ReadyPublish> {
    refuse_raw_body(db, &args)?;
    let preparer = Preparer { args: &args, limit };
    let pending: Vec<Prepared> = preparer
        .prepare(Origin::Argument, body)?
        .into_iter()
        .collect();
    Ok(ReadyPublish {
        headers: headers_json(&args.headers),
        available_at: available_at(&args),
        args,
        ack: None,
        pending,
    })
}

impl ReadyPublish {
    /// The queue or topic published to.
    pub(crate) fn queue(&self) -> &str {
        &self.args.queue
    }

    /// The delivery acked with the publish.
    pub(crate) fn ack(&self) -> Option<&Receipt> {
        self.ack.as_ref()
    }

    /// True when there is nothing to write (an empty body, without ack).
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The bytes of the bodies waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.pending.iter().map(|m| m.body.len()).sum()
    }

    fn writer(&self) -> Writer<'_> {
        Writer {
            args: &self.args,
            ack: self.ack,
            headers: self.headers.clone(),
            available_at: self.available_at,
            ids: Vec::new(),
            live: false,
            published: 0,
        }
    }

    /// Adds the messages to `batch` (of a transaction that publishes to
    /// [`ReadyPublish::queue`] and acks [`ReadyPublish::ack`]); returns
    /// their ids.
    pub(crate) fn fill(&self, batch: &mut Batch<'_>) -> anyhow::Result<Vec<i64>> {
        let writer = self.writer();
        self.pending
            .iter()
            .map(|msg| writer.write(batch, msg))
            .collect()
    }

    /// Publishes the messages in a transaction of their own.
    pub(crate) fn publish(mut self, db: &mut Db) -> anyhow::Result<Vec<i64>> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut pending = std::mem::take(&mut self.pending);
        let mut writer = self.writer();
        writer.publish_all(db, &mut pending)?;
        Ok(writer.ids)
    }
}

/// Prints ids one per line, or a summary for more than ten on a terminal.
fn print_ids(ctx: &Context, queue: &str, ids: &[i64]) -> io::Result<()> {
    if ctx.out.quiet || ids.is_empty() {
        return Ok(());
    }
    let mut out = crate::output::stdout();
    if ctx.out.human() && ids.len() > 10 {
        let (first, last) = (
            ids.iter().min().unwrap_or(&0),
            ids.iter().max().unwrap_or(&0),
        );
        let distinct = ids.iter().collect::<std::collections::HashSet<_>>().len();
        if distinct == ids.len() {
            writeln!(
                out,
                "published {} messages to {queue} (ids {first}–{last})",
                ids.len()
            )?;
        } else {
            // A key the queue holds answers with the id it already has.
            writeln!(
                out,
                "published {} lines to {queue}: {distinct} distinct message{} (ids {first}–{last}), the other {} lines had a key already used",
                ids.len(),
                if distinct == 1 { "" } else { "s" },
                ids.len() - distinct
            )?;
        }
    } else {
        for id in ids {
            writeln!(out, "{id}")?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_text_keeps_number_literals_exactly() {
        let doc = r#"{ "id" : 12345678901234567890123 , "x": [1, {"a/b": "g~", "": -1.50e3}] }"#;
        assert_eq!(
            pointer_text(doc, "/id").ok().as_deref(),
            Some("12345678901234567890123")
        );
        assert_eq!(pointer_text(doc, "/x/1/a~1b").ok().as_deref(), Some("g~"));
        assert_eq!(pointer_text(doc, "/x/1/").ok().as_deref(), Some("-1.50e3"));
        assert_eq!(pointer_text(doc, "/x/0").ok().as_deref(), Some("1"));
        assert_eq!(pointer_text("\"top\"", "").ok().as_deref(), Some("top"));
        for missing in [
            "/nope",
            "/x",
            "/x/2",
            "/x/01",
            "/x/-",
            "/id/0",
            "/x/1/a~1b/c",
        ] {
            assert_eq!(pointer_text(doc, missing), Err(Miss::Nothing), "{missing}");
        }
        assert_eq!(
            pointer_text(r#"{"k": "a\"b\u00e9"}"#, "/k").ok().as_deref(),
            Some("a\"bé")
        );
        assert_eq!(pointer_text(r#"{"k": true}"#, "/k"), Err(Miss::Nothing));
        assert_eq!(
            pointer_text(r#"{"k": "\ud800"}"#, "/k"),
            Err(Miss::NotUnicode)
        );
        assert_eq!(
            pointer_text(r#"{"k": 1, "k": 2}"#, "/k").ok().as_deref(),
            Some("2")
        );
    }

    /// JSON lines read through buffers of every small size, against a model:
    /// a line is too long when it is, trimmed, over the limit; otherwise it
    /// reads as its trimmed self (leading whitespace dropped, trailing
    /// whitespace kept as it is or shortened).
    #[test]
    fn pointers_with_a_bad_escape_are_refused() {
        for good in ["", "/", "/a", "/a~0b", "/a~1b/~0", "/~01"] {
            assert_eq!(json_pointer(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["/a~2", "/a~", "/~/x", "/é~x", "a"] {
            assert!(json_pointer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn array_indexes_follow_the_json_pointer_rules() {
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("12"), Some(12));
        for bad in ["", "01", "-1", "+1", "1a", "-", "99999999999999999999999"] {
            assert_eq!(array_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(!nesting_exceeds(deep(127).as_bytes(), MAX_NESTING));
        assert!(nesting_exceeds(deep(128).as_bytes(), MAX_NESTING));
        assert!(nesting_exceeds(deep(100_000).as_bytes(), MAX_NESTING));
        let at_limit = deep(MAX_NESTING);
        assert!(serde_json::from_str::<serde_json::Value>(&at_limit).is_ok());
        let in_string = format!("[\"{}\\\"{}\"]", "[".repeat(500), "{".repeat(500));
        assert!(!nesting_exceeds(in_string.as_bytes(), MAX_NESTING));
        assert!(nesting_exceeds(b"{\"a\":{\"b\":[[1]]}}", 3));
        assert!(!nesting_exceeds(b"{\"a\":{\"b\":[[1]]}}", 4));
        // Many brackets, little depth: past the quick count, still accepted.
        let wide = format!("[{}]", vec!["[{}]"; 500].join(","));
        assert!(!nesting_exceeds(wide.as_bytes(), MAX_NESTING));
        let wide_then_deep = format!("[{},{}]", vec!["[]"; 500].join(","), deep(127));
        assert!(nesting_exceeds(wide_then_deep.as_bytes(), MAX_NESTING));
    }
}
