//! Publishing, over [`backend::PublishTx`]: a batch of messages checked
//! against the schemas of every queue they reach, deduplicated by key, and
//! written by the backend's [`Inserter`]. Queue and topic settings,
//! subscriptions and JSON Schemas, over the same trait, are in the modules
//! `queues`, `topics` and `contracts` (which publishing builds on).

use super::contracts::for_publish;
use super::lease::{finish, settle_in};
use super::queues::ensure;
use crate::store::Store;
use crate::store::backend::WriteTx;
use crate::store::backend::{self, Backend, Fanout, Inserter};
use crate::store::checks::{ContractCache, PublishChecks};
use crate::store::error::{Error, Result};
use crate::store::flow::{self, DeadReason, Load, OnFull, Room};
use crate::store::receipt::{Receipt, ReceiptError};
use crate::store::rules;
use crate::store::types::{BodyLimit, NewMessage, QueueRow, State};

/// An open publish transaction, handed to the closure of
/// [`publish_batch`]: messages added become visible together when it
/// commits.
pub struct PublishBatch<'t> {
    inserter: &'t mut dyn Inserter,
    /// What this batch added (new messages, not those a key found), and the
    /// lowest new id, for the queues' length limits.
    added: &'t mut Added,
    origin: &'t str,
    /// The schemas each message must meet.
    checks: &'t PublishChecks,
    max_size: &'t BodyLimit,
    now: i64,
    /// The delivery the messages come from (`publish --ack`, `work --emit`).
    cause: Option<Cause>,
    /// The headers last given with a cause, and what they became.
    caused_headers: Option<(Option<String>, i64, String)>,
}

/// The delivery a published message comes from: an emitted message names it
/// in its headers and joins its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    /// The queue it was delivered from.
    pub queue: String,
    /// Its message id.
    pub id: i64,
    /// Its ordered group.
    pub group: Option<String>,
}

/// The headers that name a message's cause; they replace user headers of
/// the same names.
pub const CAUSE_QUEUE: &str = "spool-cause-queue";
/// See [`CAUSE_QUEUE`].
pub const CAUSE_ID: &str = "spool-cause-id";

impl PublishBatch<'_> {
    /// Adds one message and returns its id, or the id of the message the
    /// queue already holds under the same key. A message that breaks a schema
    /// of the queue, or of the topic or any of its subscribers, is refused
    /// ([`Error::Invalid`]; a raw body [`Error::RawBody`]), also when its key
    /// was seen before.
    pub fn publish(&mut self, msg: &NewMessage<'_>) -> Result<i64> {
        let Some(cause) = &self.cause else {
            return self.publish_as_is(msg);
        };
        let group = msg.group.or(cause.group.as_deref()).map(str::to_owned);
        let headers = self.caused_headers(msg.headers)?;
        let msg = NewMessage {
            group: group.as_deref(),
            headers: Some(&headers),
            ..*msg
        };
        self.publish_as_is(&msg)
    }

    /// Sets the delivery the next messages come from.
    pub(crate) fn set_cause(&mut self, cause: Option<Cause>) {
        self.cause = cause;
    }

    /// `headers` with the cause headers put in (a message's headers are
    /// usually the same for a whole batch: computed once per cause).
    fn caused_headers(&mut self, headers: Option<&str>) -> Result<String> {
        let Some(cause) = &self.cause else {
            return Ok(headers.unwrap_or("{}").to_owned());
        };
        if let Some((given, id, made)) = &self.caused_headers
            && given.as_deref() == headers
            && *id == cause.id
        {
            return Ok(made.clone());
        }
        let mut map = match headers {
            None => serde_json::Map::new(),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| Error::Internal(format!("headers are not a JSON object: {e}")))?,
        };
        map.insert(CAUSE_QUEUE.to_owned(), cause.queue.clone().into());
        map.insert(CAUSE_ID.to_owned(), cause.id.to_string().into());
        let made = serde_json::Value::Object(map).to_string();
        self.caused_headers = Some((headers.map(str::to_owned), cause.id, made.clone()));
        Ok(made)
    }

    fn publish_as_is(&mut self, msg: &NewMessage<'_>) -> Result<i64> {
        self.max_size.admit(msg.body.len())?;
        self.checks.message(self.origin, msg.body, msg.raw)?;
        check_labels(msg.key, msg.group)?;
        if let Some(key) = msg.key {
            match self.inserter.find_key(key)? {
                Some((id, true)) => return Ok(id),
                Some((id, false)) => {
                    // Every delivery is acked past retention: the key (unique
                    // per origin) is free for a new message once that one is
                    // gone. The sweep would remove it later; a key must not
                    // wait for that.
                    self.inserter.remove_expired(id)?;
                    if let Some((id, _)) = self.inserter.find_key(key)? {
                        return Ok(id);
                    }
                }
                None => {}
            }
        }
        let visible_at = msg.available_at.unwrap_or(self.now).max(self.now);
        let state = if visible_at > self.now {
            State::Delayed
        } else {
            State::Ready
        };
        let id = self.inserter.insert(msg, state, visible_at)?;
        self.added.load.count += 1;
        self.added.load.bytes += msg.body.len() as u64;
        self.added.first.get_or_insert(id);
        Ok(id)
    }
}

/// Refuses a key or group that a backend could not keep
/// ([`rules::label_problem`]).
pub(crate) fn check_labels(key: Option<&str>, group: Option<&str>) -> Result<()> {
    for (what, value) in [("key", key), ("group", group)] {
        if let Some(problem) = value.and_then(rules::label_problem) {
            return Err(Error::BadLabel { what, problem });
        }
    }
    Ok(())
}

/// What a publish added to each queue it reached.
#[derive(Debug, Default)]
pub(crate) struct Added {
    /// How many messages and bytes.
    pub load: Load,
    /// The lowest new id: older messages may make room.
    pub first: Option<i64>,
}

/// Keeps `q` within its length limits after `added` went in (the rows are
/// written, the transaction not committed): refuses the whole transaction
/// when it does not fit ([`Error::QueueFull`], or [`Error::NeverFits`] for
/// a batch larger than the limits), or, with `--on-full drop-oldest`, makes
/// the oldest ready messages older than the batch dead (`dropped`) when
/// `may_drop`.
pub(crate) fn make_room(
    tx: &mut dyn WriteTx,
    q: &QueueRow,
    added: &Added,
    may_drop: bool,
) -> Result<()> {
    let flow = q.settings.flow;
    let on_full = if may_drop {
        flow.on_full
    } else {
        OnFull::Reject
    };
    let limits = flow.limits;
    if limits.is_unlimited() || added.load.count == 0 {
        return Ok(());
    }
    // What expired or ran out of its lease no longer takes up room.
    tx.promote_due(q)?;
    let now_held = tx.load(q.id, limits.max_bytes.is_some())?;
    let before = Load {
        count: now_held.count.saturating_sub(added.load.count),
        bytes: now_held.bytes.saturating_sub(added.load.bytes),
    };
    // The limit the batch breaks, for people: what is held (`before`, or
    // nothing for a batch that could never fit), the limit, and what the
    // batch adds, in that limit's unit.
    let shown = |held: Load| -> (String, String, String) {
        let bytes = |n: u64| match crate::parse::format_size(n) {
            s if s.ends_with("iB") => format!("{s} of bodies"),
            s => format!("{s} bytes of bodies"),
        };
        match (limits.max_length, limits.max_bytes) {
            (Some(n), _) if held.count + added.load.count > n => {
                let messages = |n: u64| match n {
                    1 => "1 message".to_owned(),
                    n => format!("{n} messages"),
                };
                (
                    messages(held.count),
                    messages(n),
                    messages(added.load.count),
                )
            }
            (_, Some(b)) => (bytes(held.bytes), bytes(b), bytes(added.load.bytes)),
            _ => Default::default(),
        }
    };
    match flow::room(limits, on_full, before, added.load) {
        Room::Fits => Ok(()),
        Room::NeverFits => {
            let (_, limit, adding) = shown(Load::default());
            Err(Error::NeverFits {
                name: q.name.clone(),
                adding,
                limit,
            })
        }
        Room::Full => {
            let (held, limit, adding) = shown(before);
            Err(Error::QueueFull {
                name: q.name.clone(),
                held,
                adding,
                limit,
            })
        }
        Room::Free(need) => {
            let below = added.first.unwrap_or(i64::MAX);
            let limit = i64::try_from(need.count.max(64)).unwrap_or(i64::MAX);
            let mut ready = tx.oldest_ready(q.id, below, limit)?;
            let mut picked = flow::victims(ready.iter().map(|r| (r.0, r.1.max(0) as u64)), need);
            if picked.is_none() && ready.len() as i64 == limit {
                // Small messages and a byte limit: look further back.
                ready = tx.oldest_ready(q.id, below, i64::MAX)?;
                picked = flow::victims(ready.iter().map(|r| (r.0, r.1.max(0) as u64)), need);
            }
            let Some(victims) = picked else {
                let (held, limit, adding) = shown(before);
                return Err(Error::QueueFull {
                    name: q.name.clone(),
                    held,
                    adding,
                    limit,
                });
            };
            for (id, _, group) in ready.into_iter().filter(|r| victims.contains(&r.0)) {
                tx.mark_done(q, id, State::Dead)?;
                tx.note_failure(q.id, id, Some(DeadReason::Dropped), None)?;
                tx.counts()
                    .moved(q.id, Some(State::Ready), Some(State::Dead));
                tx.counts().died(q.id, DeadReason::Dropped, 1);
                if let Some(group) = group {
                    tx.release_group(q.id, &group, id)?;
                }
            }
            tx.release_groups()
        }
    }
}

/// [`Store::publish_dyn`]: publishes to `name` in one transaction and,
/// with `ack`, acks that delivery in the same one; the messages then come
/// from it ([`Cause`]). A receipt that does not hold a lease (unknown, run
/// out, or already acked) refuses the whole publish ([`Error::Receipt`]).
/// Holds the write lock (SQLite), or the name locks (PostgreSQL), while
/// `fill` runs. A transaction that PostgreSQL ends for a deadlock or
/// serialization failure is run again, `fill` with it (see
/// [`Backend::write_dyn`]).
pub(crate) fn publish_batch(
    store: &mut (impl Backend + ?Sized),
    name: &str,
    ack: Option<&Receipt>,
    fill: &mut dyn FnMut(&mut PublishBatch<'_>) -> Result<()>,
) -> Result<()> {
    let mut cache = std::mem::take(store.contracts());
    let outcome = backend::write(store, |tx| {
        let cause = match ack {
            Some(receipt) => Some(ack_cause(tx, receipt)?),
            None => None,
        };
        let mut first = Some(cause);
        publish_in(tx, &mut cache, name, &mut |batch| {
            if let Some(cause) = first.take() {
                batch.set_cause(cause);
            }
            fill(batch)
        })
    });
    *store.contracts() = cache;
    outcome
}

/// Acks the delivery of `receipt` inside `tx` and returns it as a cause.
fn ack_cause(tx: &mut dyn WriteTx, receipt: &Receipt) -> Result<Cause> {
    let mut outcomes = settle_in(
        tx,
        std::slice::from_ref(receipt),
        |r| r,
        |tx, q, r, held| {
            finish(tx, q, r.msg_id, held.group.as_deref(), State::Acked)?;
            Ok(Cause {
                queue: q.name.clone(),
                id: r.msg_id,
                group: held.group,
            })
        },
    )?;
    match outcomes.pop() {
        Some(Ok(Some(cause))) => Ok(cause),
        // Acked before: its messages were published then (or it was acked
        // without them); publishing them now would publish them twice.
        Some(Ok(None)) => Err(Error::Receipt {
            receipt: receipt.to_string(),
            reason: ReceiptError::Finished,
        }),
        Some(Err(reason)) => Err(Error::Receipt {
            receipt: receipt.to_string(),
            reason,
        }),
        None => Err(Error::Internal("a settle answered nothing".into())),
    }
}

/// The body of [`publish_batch`], inside a transaction the caller commits:
/// `fill` adds the messages; the queues' rules (schemas, keys, length
/// limits, counters, fan-out) are applied to them.
pub(crate) fn publish_in(
    tx: &mut dyn WriteTx,
    cache: &mut ContractCache,
    name: &str,
    fill: &mut dyn FnMut(&mut PublishBatch<'_>) -> Result<()>,
) -> Result<()> {
    tx.lock_shared(&[name])?;

    let origin = ensure(tx, name)?;
    let targets = if origin.is_topic {
        let subs = tx.subscribers(origin.id)?;
        let names: Vec<&str> = subs.iter().map(|q| q.name.as_str()).collect();
        if tx.lock_shared(&names)? {
            // A subscriber deleted while we waited for its lock is gone
            // now (this statement sees that commit); none can be added
            // while we hold the topic's lock.
            tx.subscribers(origin.id)?
        } else {
            subs
        }
    } else {
        vec![origin.clone()]
    };
    if targets.is_empty() {
        return Err(Error::NoSubscribers {
            topic: name.to_owned(),
        });
    }
    // After the name locks: no schema can change before this commits.
    let checks = for_publish(tx, cache, &origin, &targets)?;
    // A topic holds nothing, so only its subscribers' limits count: the
    // message must fit every queue that receives it.
    let max_size =
        BodyLimit::smallest(&targets).unwrap_or_else(|| BodyLimit::new(u64::MAX, &origin.name));
    // Publishers into a queue with a length limit take turns on its row
    // (PostgreSQL), so two of them cannot both take the last place.
    for queue in &targets {
        if !queue.settings.flow.limits.is_unlimited() {
            tx.lock_row(queue.id)?;
        }
    }
    let now = tx.now();
    let mut added = Added::default();
    let fanout = Fanout {
        origin: &origin,
        targets: &targets,
        versions: &checks.versions,
    };
    let tally = tx.inserting(&fanout, &mut |inserter| {
        let mut batch = PublishBatch {
            inserter,
            added: &mut added,
            origin: &origin.name,
            checks: &checks,
            max_size: &max_size,
            now,
            cause: None,
            caused_headers: None,
        };
        fill(&mut batch)
    })?;
    for queue in tally.swept {
        tx.counts().moved(queue, Some(State::Acked), None);
    }
    // All or nothing: one full queue refuses the publish for all.
    for queue in &targets {
        make_room(tx, queue, &added, true)?;
    }
    for (queue, counts) in targets.iter().zip(&tally.added) {
        for (state, n) in State::ALL.iter().zip(counts) {
            tx.counts().moved_many(queue.id, None, Some(*state), *n);
        }
        tx.counts().published(queue.id, counts.iter().sum());
        if counts[State::Ready as usize] > 0 || counts[State::Delayed as usize] > 0 {
            tx.notify(&queue.name);
        }
    }
    if origin.is_topic {
        tx.counts().published(origin.id, tally.published);
    }
    // Retention cleanup in small steps, paid by the writers of each queue.
    for queue in &targets {
        tx.housekeeping(queue)?;
    }
    Ok(())
}

/// [`Store::publish_batch`] for any `fill`: its value is kept and its own
/// error returned as it is (a rerun after a PostgreSQL deadlock forgets
/// the error of the run before).
pub(crate) fn with_batch<T, E: From<Error>>(
    store: &mut (impl Store + ?Sized),
    name: &str,
    ack: Option<&Receipt>,
    mut fill: impl FnMut(&mut PublishBatch<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let mut value = None;
    let mut failed = None;
    let outcome = store.publish_dyn(name, ack, &mut |batch| {
        failed = None;
        match fill(batch) {
            Ok(v) => {
                value = Some(v);
                Ok(())
            }
            Err(e) => {
                failed = Some(e);
                Err(Error::Internal("the publish was given up".into()))
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    outcome?;
    value.ok_or_else(|| Error::Internal("a publish committed without its batch".into()).into())
}

/// Messages without a key that an [`Inserter`] keeps to write many at a
/// time, their bodies back to back in one arena.
#[derive(Default)]
pub(crate) struct Buffer {
    rows: Vec<Buffered>,
    arena: Vec<u8>,
}

/// A buffered message: everything but the body, which lives in the arena.
pub(crate) struct Buffered {
    pub id: i64,
    body_end: usize,
    pub raw: bool,
    pub headers: Option<String>,
    pub priority: i64,
    pub visible_at: i64,
    pub state: State,
    pub group: Option<String>,
}

impl Buffer {
    pub fn push(&mut self, id: i64, msg: &NewMessage<'_>, state: State, visible_at: i64) {
        self.arena.extend_from_slice(msg.body);
        self.rows.push(Buffered {
            id,
            body_end: self.arena.len(),
            raw: msg.raw,
            headers: msg.headers.map(str::to_owned),
            priority: msg.priority,
            visible_at,
            state,
            group: msg.group.map(str::to_owned),
        });
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Body bytes buffered.
    pub fn bytes(&self) -> usize {
        self.arena.len()
    }

    /// The buffered messages with their bodies, in order.
    pub fn rows(&self) -> impl Iterator<Item = (&Buffered, &[u8])> {
        let mut start = 0;
        self.rows.iter().map(move |row| {
            let body = &self.arena[start..row.body_end];
            start = row.body_end;
            (row, body)
        })
    }

    /// Adds one delivery per buffered message and target to `added`, and
    /// empties the buffer (keeping its memory).
    pub fn written(&mut self, added: &mut [[i64; 6]]) {
        for counts in added {
            for row in &self.rows {
                counts[row.state as usize] += 1;
            }
        }
        self.clear();
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.arena.clear();
    }
}

/// True for a publish error that is the target's answer to the messages
/// (a failed delivery), not a failure of the database.
pub(crate) fn target_refuses(e: &Error) -> bool {
    matches!(
        e,
        Error::Invalid { .. }
            | Error::RawBody { .. }
            | Error::TooLarge { .. }
            | Error::BadLabel { .. }
            | Error::QueueFull { .. }
            | Error::NeverFits { .. }
            | Error::NoSubscribers { .. }
            | Error::BadName { .. }
            | Error::NameIsTopic { .. }
    )
}

/// One publish of a group run by [`publish_group`]: to `name`, acking
/// `ack`'s delivery with it, the messages added by `fill` (which keeps
/// what it needs, such as the ids, for itself: it may run more than once).
pub struct PublishJob<'a> {
    /// The queue or topic published to.
    pub name: &'a str,
    /// The delivery acked in the same transaction (`publish --ack`).
    pub ack: Option<&'a Receipt>,
    /// Adds the job's messages to the batch.
    pub fill: &'a mut dyn FnMut(&mut PublishBatch<'_>) -> Result<()>,
}

/// [`Store::publish_group`]: runs `jobs` in one write transaction (one
/// commit). A job that fails (its `fill`, a schema, a full queue, a receipt
/// without a lease, ...) is taken out and the transaction run again without
/// it, as `work_step` does with a refused delivery: nothing of it lands,
/// and its own error is its answer. The others commit together. An error
/// of the transaction itself (its start or its commit) is returned for all.
pub(crate) fn publish_group(
    store: &mut (impl Backend + ?Sized),
    jobs: &mut [PublishJob<'_>],
) -> Result<Vec<Result<()>>> {
    let mut cache = std::mem::take(store.contracts());
    let mut failed: Vec<Option<Error>> = jobs.iter().map(|_| None).collect();
    let outcome = loop {
        if failed.iter().all(Option::is_some) {
            break Ok(());
        }
        let mut blamed = None;
        let run = backend::write(store, |tx| {
            blamed = None;
            for (i, job) in jobs.iter_mut().enumerate() {
                if failed[i].is_some() {
                    continue;
                }
                if let Err(e) = publish_job(tx, &mut cache, job) {
                    blamed = Some((i, e));
                    return Err(Error::Internal("a publish of the group failed".into()));
                }
            }
            Ok(())
        });
        match (run, blamed) {
            (Err(_), Some((i, e))) => failed[i] = Some(e),
            (run, _) => break run,
        }
    };
    *store.contracts() = cache;
    outcome?;
    Ok(failed.into_iter().map(|f| f.map_or(Ok(()), Err)).collect())
}

/// One job of [`publish_group`], as [`publish_batch`] runs it.
fn publish_job(
    tx: &mut dyn WriteTx,
    cache: &mut ContractCache,
    job: &mut PublishJob<'_>,
) -> Result<()> {
    let cause = match job.ack {
        Some(receipt) => Some(ack_cause(tx, receipt)?),
        None => None,
    };
    let mut first = Some(cause);
    let fill = &mut *job.fill;
    publish_in(tx, cache, job.name, &mut |batch| {
        if let Some(cause) = first.take() {
            batch.set_cause(cause);
        }
        fill(batch)
    })
}
