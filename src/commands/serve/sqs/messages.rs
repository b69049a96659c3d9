//! The message actions: SendMessage(Batch), ReceiveMessage,
//! DeleteMessage(Batch), ChangeMessageVisibility(Batch). A send is
//! prepared as `spool publish --raw` prepares its body and written by the
//! server's group commit; a receive is the native API's long poll; a delete
//! is an ack, a change of visibility an extend (or, to 0, a nack).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::super::App;
use super::attributes::{self, Attribute};
use super::errors::SqsError;
use super::queues::{MAX_VISIBILITY_SECONDS, existing, is_fifo};
use super::{Call, int_of};
use crate::commands::publish::{self, ReadyPublish};
use crate::store::{Delivery, Receipt, ReceiptError, Release};

/// Entries a batch may hold, as SQS allows.
const MAX_ENTRIES: usize = 10;

/// The longest per-message delay SQS allows (15 minutes).
const MAX_DELAY_SECONDS: i64 = 900;

/// A message to send, checked.
struct Outgoing {
    body: String,
    attributes: Vec<Attribute>,
    delay: Option<i64>,
    group: Option<String>,
    dedup: Option<String>,
}

/// The most a message (its body and attributes), or a whole batch of
/// them, may weigh on SQS: 1 MiB.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

impl Outgoing {
    /// What SQS counts against [`MAX_MESSAGE_BYTES`]: the body and each
    /// attribute's name, type and value.
    fn size(&self) -> usize {
        let attributes: usize = self
            .attributes
            .iter()
            .map(|a| a.name.len() + a.data_type.len() + a.value.len())
            .sum();
        self.body.len() + attributes
    }
}

fn text_of<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, SqsError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SqsError::invalid(format!("{name} must be a string"))),
    }
}

/// A group or deduplication id: 1–128 printable ASCII characters.
fn id_member(m: &Map<String, Value>, name: &str) -> Result<Option<String>, SqsError> {
    match text_of(m, name)? {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(v.to_owned()))
        }
        Some(v) => Err(SqsError::invalid(format!(
            "Value {v} for parameter {name} is invalid. Reason: it must be 1 to 128 printable ASCII characters."
        ))),
    }
}

/// The members of a SendMessage (or of one batch entry), checked as SQS
/// checks them for a queue of this kind.
fn outgoing(m: &Map<String, Value>, fifo: bool) -> Result<Outgoing, SqsError> {
    let body = text_of(m, "MessageBody")?.ok_or_else(|| SqsError::missing("MessageBody"))?;
    if body.is_empty() {
        return Err(SqsError::invalid(
            "The request must contain a non-empty MessageBody.",
        ));
    }
    if let Some(c) = body.chars().find(|c| !sqs_allows(*c)) {
        return Err(SqsError::bad_contents(c));
    }
    if m.get("MessageSystemAttributes")
        .and_then(Value::as_object)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(SqsError::unsupported(
            "spool does not keep message system attributes (AWSTraceHeader)",
        ));
    }
    let delay = int_of(m.get("DelaySeconds"), "DelaySeconds", 0..=MAX_DELAY_SECONDS)?;
    let group = id_member(m, "MessageGroupId")?;
    let dedup = id_member(m, "MessageDeduplicationId")?;
    if fifo {
        if group.is_none() {
            return Err(SqsError::missing("MessageGroupId"));
        }
        if dedup.is_none() {
            return Err(SqsError::invalid(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly (spool needs MessageDeduplicationId)",
            ));
        }
        if delay.is_some_and(|d| d > 0) {
            return Err(SqsError::invalid(
                "Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.",
            ));
        }
    } else if dedup.is_some() {
        return Err(SqsError::invalid(
            "Value for parameter MessageDeduplicationId is invalid. Reason: The request include parameter that is not valid for this queue type.",
        ));
    }
    Ok(Outgoing {
        body: body.to_owned(),
        attributes: attributes::parse(m.get("MessageAttributes"))?,
        delay: delay.filter(|d| *d > 0),
        group,
        dedup,
    })
}

/// The characters SQS takes in a body (XML's, less the surrogates a Rust
/// string cannot hold anyway).
fn sqs_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The largest body queue `name` takes, from the settings a send reads
/// anyway (`NonExistentQueue` when there is no such queue).
fn body_limit(db: &mut crate::store::Db, name: &str) -> Result<crate::store::BodyLimit, SqsError> {
    Ok(crate::store::BodyLimit::new(
        existing(db, name)?.max_size,
        name,
    ))
}

/// Publish's arguments for one outgoing message: a raw body, its group,
/// key, delay and attributes as headers.
fn args_of(queue: &str, out: &Outgoing) -> publish::Args {
    publish::Args {
        queue: queue.to_owned(),
        body: None,
        single: false,
        stream: false,
        raw: true,
        key: out.dedup.clone(),
        key_from: None,
        delay: out.delay.map(|d| Duration::from_secs(d as u64)),
        at: None,
        ttl: None,
        priority: 0,
        group: out.group.clone(),
        group_from: None,
        headers: attributes::to_headers(&out.attributes),
        ack: None,
    }
}

/// Writes a prepared message: with the other publishes of its group
/// commit, or alone; its id.
async fn write(app: Arc<App>, ready: ReadyPublish) -> Result<i64, SqsError> {
    let ids = match &app.group {
        Some(group) => group.publish(ready).await?,
        None => app
            .blocking(move |db| ready.publish(db))
            .await
            .map_err(SqsError::of_api)?,
    };
    ids.first()
        .copied()
        .ok_or_else(|| SqsError::internal("the publish gave no message id"))
}

/// What SendMessage (or a batch entry) answers.
fn sent(id: i64, out: &Outgoing, fifo: bool) -> Map<String, Value> {
    let mut answer = Map::new();
    answer.insert("MessageId".into(), Value::String(id.to_string()));
    answer.insert(
        "MD5OfMessageBody".into(),
        Value::String(attributes::md5_hex(out.body.as_bytes())),
    );
    if let Some(md5) = attributes::md5_of_attributes(&out.attributes) {
        answer.insert("MD5OfMessageAttributes".into(), Value::String(md5));
    }
    if fifo {
        answer.insert("SequenceNumber".into(), Value::String(format!("{id:020}")));
    }
    answer
}

/// `SendMessage`.
pub async fn send(call: Call) -> Result<Value, SqsError> {
    let queue = call.queue()?;
    let fifo = is_fifo(&queue);
    let out = outgoing(&call.input, fifo)?;
    let args = args_of(&queue, &out);
    let body = out.body.clone().into_bytes();
    let ready = call
        .on_db(move |db| {
            let limit = body_limit(db, &args.queue)?;
            Ok(publish::prepare_one(db, args, limit, body)?)
        })
        .await?;
    let id = write(Arc::clone(&call.app), ready).await?;
    call.app.news.tell();
    Ok(Value::Object(sent(id, &out, fifo)))
}

/// A batch's entries with their ids, checked as SQS checks them: 1 to 10,
/// each id valid and distinct.
/// A batch's entries: each entry's id and members.
type Entries = Vec<(String, Map<String, Value>)>;

fn entries(call: &Call) -> Result<Entries, SqsError> {
    let list = match call.input.get("Entries") {
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) => return Err(SqsError::missing("Entries")),
        Some(_) => return Err(SqsError::invalid("Entries must be a list")),
    };
    if list.is_empty() {
        return Err(SqsError::empty_batch());
    }
    if list.len() > MAX_ENTRIES {
        return Err(SqsError::too_many_entries(list.len()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let map = entry
            .as_object()
            .ok_or_else(|| SqsError::invalid("each entry must be an object"))?;
        let id = text_of(map, "Id")?.ok_or_else(|| SqsError::missing("Id"))?;
        let fine = !id.is_empty()
            && id.len() <= 80
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !fine {
            return Err(SqsError::bad_entry_id(id));
        }
        if !seen.insert(id.to_owned()) {
            return Err(SqsError::ids_not_distinct(id));
        }
        out.push((id.to_owned(), map.clone()));
    }
    Ok(out)
}

/// `SendMessageBatch`: each entry on its own (one bad entry fails alone);
/// the good ones are handed to the group commit together.
pub async fn send_batch(call: Call) -> Result<Value, SqsError> {
    let queue = call.queue()?;
    let fifo = is_fifo(&queue);
    let mut failed = Vec::new();
    let mut good = Vec::new();
    for (id, map) in entries(&call)? {
        match outgoing(&map, fifo) {
            Ok(out) => good.push((id, out)),
            Err(e) => failed.push(e.entry(&id)),
        }
    }
    // The whole batch counts against one message's limit, as on SQS.
    let size: usize = good.iter().map(|(_, out)| out.size()).sum();
    if size > MAX_MESSAGE_BYTES {
        return Err(SqsError::batch_too_long(size, MAX_MESSAGE_BYTES));
    }
    let jobs: Vec<(publish::Args, Vec<u8>)> = good
        .iter()
        .map(|(_, out)| (args_of(&queue, out), out.body.clone().into_bytes()))
        .collect();
    let name = queue.clone();
    let prepared = call
        .on_db(move |db| {
            let limit = body_limit(db, &name)?;
            Ok(jobs
                .into_iter()
                .map(|(args, body)| {
                    publish::prepare_one(db, args, limit.clone(), body).map_err(SqsError::from)
                })
                .collect::<Vec<_>>())
        })
        .await?;
    let mut writes = Vec::new();
    for ((id, out), ready) in good.into_iter().zip(prepared) {
        match ready {
            Ok(ready) => {
                let app = Arc::clone(&call.app);
                writes.push((id, out, tokio::spawn(write(app, ready))));
            }
            Err(e) => failed.push(e.entry(&id)),
        }
    }
    let mut successful = Vec::new();
    for (id, out, handle) in writes {
        match handle.await {
            Ok(Ok(msg_id)) => {
                let mut answer = sent(msg_id, &out, fifo);
                answer.insert("Id".into(), Value::String(id));
                successful.push(Value::Object(answer));
            }
            Ok(Err(e)) => failed.push(e.entry(&id)),
            Err(e) => failed.push(SqsError::internal(e.to_string()).entry(&id)),
        }
    }
    if !successful.is_empty() {
        call.app.news.tell();
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

/// `ReceiveMessage`: the native consume's long poll.
pub async fn receive(call: Call) -> Result<Value, SqsError> {
    let queue = call.queue()?;
    let max = call.int("MaxNumberOfMessages", 1..=10)?.unwrap_or(1) as usize;
    let visibility = call
        .int("VisibilityTimeout", 0..=MAX_VISIBILITY_SECONDS)?
        // 0 (visible again at once) is the shortest lease spool has.
        .map(|s| match s {
            0 => Duration::from_millis(1),
            s => Duration::from_secs(s as u64),
        });
    let wait = call.int("WaitTimeSeconds", 0..=20)?.unwrap_or(0);
    let mut system = call.strings("AttributeNames")?;
    system.extend(call.strings("MessageSystemAttributeNames")?);
    let wanted = call.strings("MessageAttributeNames")?;
    // The long poll takes an unknown queue for an empty one; SQS says it
    // does not exist. A long poll asks first (rather than after waiting
    // for nothing); a receive that does not wait asks only when nothing
    // came back, so one that gets messages costs no extra read.
    if wait > 0 {
        let name = queue.clone();
        call.on_db(move |db| existing(db, &name).map(|_| ()))
            .await?;
    }
    let batch = super::super::routes::lease_waiting(
        &call.app,
        queue.clone(),
        max,
        visibility,
        Duration::from_secs(wait as u64),
    )
    .await
    .map_err(SqsError::of_api)?;
    if batch.is_empty() && wait == 0 {
        let name = queue.clone();
        call.on_db(move |db| existing(db, &name).map(|_| ()))
            .await?;
    }
    let fifo = is_fifo(&queue);
    let messages: Vec<Value> = batch
        .iter()
        .map(|d| received(d, &system, &wanted, fifo))
        .collect();
    if messages.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Messages": messages }))
}

/// One received message as SQS answers it: the system attributes and
/// message attributes asked for.
fn received(d: &Delivery, system: &[String], wanted: &[String], fifo: bool) -> Value {
    let body = String::from_utf8_lossy(&d.body);
    let mut m = Map::new();
    m.insert("MessageId".into(), Value::String(d.id.to_string()));
    m.insert("ReceiptHandle".into(), Value::String(d.receipt.to_string()));
    m.insert(
        "MD5OfBody".into(),
        Value::String(attributes::md5_hex(body.as_bytes())),
    );
    m.insert("Body".into(), Value::String(body.into_owned()));
    let all = system.iter().any(|s| s == "All");
    let asked = |name: &str| all || system.iter().any(|s| s == name);
    let mut attrs = Map::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(v) = value.filter(|_| asked(name)) {
            attrs.insert(name.to_owned(), Value::String(v));
        }
    };
    put("ApproximateReceiveCount", Some(d.attempt.to_string()));
    put("SentTimestamp", Some(d.published_at.to_string()));
    put("MessageGroupId", d.group.clone());
    put("MessageDeduplicationId", d.key.clone());
    put("SequenceNumber", fifo.then(|| format!("{:020}", d.id)));
    if !attrs.is_empty() {
        m.insert("Attributes".into(), Value::Object(attrs));
    }
    let chosen: Vec<Attribute> = attributes::from_headers(d.headers.as_deref())
        .into_iter()
        .filter(|a| attributes::wanted(wanted, &a.name))
        .collect();
    if let Some(md5) = attributes::md5_of_attributes(&chosen) {
        m.insert("MD5OfMessageAttributes".into(), Value::String(md5));
        m.insert("MessageAttributes".into(), attributes::to_json(&chosen));
    }
    Value::Object(m)
}

/// A receipt handle, or `ReceiptHandleIsInvalid`.
fn receipt_of(text: &str) -> Result<Receipt, SqsError> {
    text.parse().map_err(|_| {
        SqsError::bad_receipt(format!(
            "The input receipt handle \"{text}\" is not a valid receipt handle."
        ))
    })
}

/// The error of a refused delete.
fn delete_refused(e: ReceiptError, text: &str) -> SqsError {
    match e {
        ReceiptError::LeaseEnded => SqsError::bad_receipt(format!(
            "The receipt handle \"{text}\" has expired: its visibility timeout ended, and the message is back in the queue, with another consumer, or dead."
        )),
        ReceiptError::Dead => SqsError::bad_receipt(format!(
            "The receipt handle \"{text}\" has expired: the message is dead (its dead-letter state in spool)."
        )),
        ReceiptError::Unknown | ReceiptError::Finished => SqsError::bad_receipt(format!(
            "The input receipt handle \"{text}\" is not a valid receipt handle."
        )),
    }
}

/// The error of a refused change of visibility.
fn change_refused(e: ReceiptError, text: &str) -> SqsError {
    match e {
        ReceiptError::Unknown => SqsError::bad_receipt(format!(
            "The input receipt handle \"{text}\" is not a valid receipt handle."
        )),
        ReceiptError::LeaseEnded | ReceiptError::Dead | ReceiptError::Finished => {
            SqsError::not_inflight()
        }
    }
}

/// `DeleteMessage`: an ack.
pub async fn delete(call: Call) -> Result<Value, SqsError> {
    let queue = call.queue()?;
    let text = call.required("ReceiptHandle")?.to_owned();
    let receipt = receipt_of(&text)?;
    if !call.issued_by(&queue, &[receipt]).await?[0] {
        return Err(delete_refused(ReceiptError::Unknown, &text));
    }
    // With the other acks of its group, as the native API's acks.
    let outcome = match call.app.group.clone() {
        Some(group) => group.ack(vec![receipt]).await?,
        None => call.on_db(move |db| Ok(db.ack(&[receipt])?)).await?,
    };
    // An ack may free a place under the queue's in-flight cap.
    call.app.news.tell();
    match outcome.into_iter().next() {
        Some(Err(e)) => Err(delete_refused(e, &text)),
        _ => Ok(json!({})),
    }
}

/// The receipts of a batch's entries: `(id, handle text, parsed)`.
type Handles = Vec<(String, String, Result<Receipt, SqsError>)>;

/// Refuses, as not valid, the handles that queue `call.queue()` did not
/// hand out.
async fn handles(
    call: &Call,
    entries: &[(String, Map<String, Value>)],
) -> Result<Handles, SqsError> {
    let queue = call.queue()?;
    let mut handles = entries
        .iter()
        .map(|(id, map)| {
            let text = text_of(map, "ReceiptHandle")?
                .ok_or_else(|| SqsError::missing("ReceiptHandle"))?
                .to_owned();
            let parsed = receipt_of(&text);
            Ok((id.clone(), text, parsed))
        })
        .collect::<Result<Handles, SqsError>>()?;
    let parsed: Vec<Receipt> = handles
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().ok().copied())
        .collect();
    let mut issued = call.issued_by(&queue, &parsed).await?.into_iter();
    for (_, text, parsed) in &mut handles {
        if parsed.is_ok() && issued.next() == Some(false) {
            *parsed = Err(delete_refused(ReceiptError::Unknown, text));
        }
    }
    Ok(handles)
}

/// `DeleteMessageBatch`: each receipt acked on its own.
pub async fn delete_batch(call: Call) -> Result<Value, SqsError> {
    let handles = handles(&call, &entries(&call)?).await?;
    let valid: Vec<Receipt> = handles
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().ok().copied())
        .collect();
    let outcomes = call.on_db(move |db| Ok(db.ack(&valid)?)).await?;
    call.app.news.tell();
    Ok(batch_answer(handles, outcomes, delete_refused, |_| {
        Map::new()
    }))
}

/// `{"Successful":[{"Id"}],"Failed":[…]}` of settled receipts, in the
/// entries' order.
fn batch_answer(
    handles: Handles,
    outcomes: Vec<Result<(), ReceiptError>>,
    refused: fn(ReceiptError, &str) -> SqsError,
    extra: impl Fn(usize) -> Map<String, Value>,
) -> Value {
    let mut outcomes = outcomes.into_iter();
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for (i, (id, text, parsed)) in handles.into_iter().enumerate() {
        let outcome = match parsed {
            Ok(_) => outcomes
                .next()
                .unwrap_or(Ok(()))
                .map_err(|e| refused(e, &text)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                let mut m = extra(i);
                m.insert("Id".into(), Value::String(id));
                successful.push(Value::Object(m));
            }
            Err(e) => failed.push(e.entry(&id)),
        }
    }
    json!({ "Successful": successful, "Failed": failed })
}

/// A new visibility timeout, 0 to 12 hours.
fn timeout_of(m: &Map<String, Value>) -> Result<i64, SqsError> {
    int_of(
        m.get("VisibilityTimeout"),
        "VisibilityTimeout",
        0..=MAX_VISIBILITY_SECONDS,
    )?
    .ok_or_else(|| SqsError::missing("VisibilityTimeout"))
}

/// Sets the visibility of each receipt: 0 gives the message back at once
/// (a nack), more extends the lease to now + that (an extend).
fn change(
    db: &mut crate::store::Db,
    changes: &[(Receipt, i64)],
) -> Result<Vec<Result<(), ReceiptError>>, SqsError> {
    let mut outcomes = Vec::with_capacity(changes.len());
    for (receipt, seconds) in changes {
        let one = match seconds {
            0 => db.nack(&[*receipt], Release::Now, None)?,
            s => db.extend(&[*receipt], Duration::from_secs(*s as u64))?,
        };
        outcomes.extend(one);
    }
    Ok(outcomes)
}

/// `ChangeMessageVisibility`.
pub async fn change_visibility(call: Call) -> Result<Value, SqsError> {
    let queue = call.queue()?;
    let text = call.required("ReceiptHandle")?.to_owned();
    let seconds = timeout_of(&call.input)?;
    let receipt = receipt_of(&text)?;
    if !call.issued_by(&queue, &[receipt]).await?[0] {
        return Err(change_refused(ReceiptError::Unknown, &text));
    }
    let outcome = call
        .on_db(move |db| change(db, &[(receipt, seconds)]))
        .await?;
    // A visibility of 0 makes the message deliverable again at once.
    call.app.news.tell();
    match outcome.into_iter().next() {
        Some(Err(e)) => Err(change_refused(e, &text)),
        _ => Ok(json!({})),
    }
}

/// `ChangeMessageVisibilityBatch`.
pub async fn change_visibility_batch(call: Call) -> Result<Value, SqsError> {
    let entries = entries(&call)?;
    let mut handles = handles(&call, &entries).await?;
    let mut changes = Vec::new();
    for ((_, map), (_, _, parsed)) in entries.iter().zip(handles.iter_mut()) {
        if let Ok(receipt) = parsed {
            match timeout_of(map) {
                Ok(seconds) => changes.push((*receipt, seconds)),
                Err(e) => *parsed = Err(e),
            }
        }
    }
    let outcomes = call.on_db(move |db| change(db, &changes)).await?;
    call.app.news.tell();
    Ok(batch_answer(handles, outcomes, change_refused, |_| {
        Map::new()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn fifo_sends_need_a_group_and_a_deduplication_id() {
        let e = outgoing(&members(json!({"MessageBody": "x"})), true).err();
        assert_eq!(e.map(|e| e.code), Some("MissingParameter"));
        let e = outgoing(
            &members(json!({"MessageBody": "x", "MessageGroupId": "g"})),
            true,
        )
        .err();
        assert_eq!(e.map(|e| e.code), Some("InvalidParameterValue"));
        let fine = outgoing(
            &members(
                json!({"MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d"}),
            ),
            true,
        )
        .expect("fifo");
        assert_eq!(fine.group.as_deref(), Some("g"));
        assert_eq!(fine.dedup.as_deref(), Some("d"));
        // A standard queue takes no deduplication id, and any delay up to 900.
        assert!(
            outgoing(
                &members(json!({"MessageBody": "x", "MessageDeduplicationId": "d"})),
                false
            )
            .is_err()
        );
        assert!(
            outgoing(
                &members(json!({"MessageBody": "x", "DelaySeconds": 901})),
                false
            )
            .is_err()
        );
        assert!(outgoing(&members(json!({"MessageBody": ""})), false).is_err());
    }

    #[test]
    fn receipts_that_do_not_parse_are_invalid_handles() {
        let e = receipt_of("nonsense").expect_err("bad");
        assert_eq!(e.code, "ReceiptHandleIsInvalid");
        assert_eq!(e.status.as_u16(), 404);
        assert_eq!(
            change_refused(ReceiptError::LeaseEnded, "x").code,
            "AWS.SimpleQueueService.MessageNotInflight"
        );
    }
}
