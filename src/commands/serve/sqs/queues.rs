//! The queue actions: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue,
//! PurgeQueue, GetQueueAttributes, SetQueueAttributes, on the store calls of
//! `spool queue create/set/delete/purge` and `stats`.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::errors::SqsError;
use super::{Call, strings_of};
use crate::store::{self, Created, SchemaChange, Settings, SettingsPatch, State};

/// Longest visibility timeout SQS allows (12 hours).
pub const MAX_VISIBILITY_SECONDS: i64 = 43_200;

/// The queue attributes GetQueueAttributes answers with `All`.
const READABLE: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "QueueArn",
    "RedrivePolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "SqsManagedSseEnabled",
];

/// True for a FIFO queue: its name ends with `.fifo`, as SQS requires.
pub fn is_fifo(name: &str) -> bool {
    name.ends_with(".fifo")
}

/// SQS's rule for a new queue's name: 1–80 letters, digits, `-` and `_`,
/// plus `.fifo` for a FIFO queue.
fn check_new_name(name: &str) -> Result<(), SqsError> {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    let fine = !stem.is_empty()
        && name.len() <= 80
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fine {
        Ok(())
    } else {
        Err(SqsError::invalid(format!(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length (plus `.fifo` for a FIFO queue): `{name}`"
        )))
    }
}

/// The settings an `Attributes` map asks for. `creating`: the attributes of
/// CreateQueue, where `FifoQueue` may be given (and must match the name).
fn patch_of(
    attributes: &Map<String, Value>,
    name: &str,
    creating: bool,
) -> Result<SettingsPatch, SqsError> {
    let mut patch = SettingsPatch::default();
    for (key, value) in attributes {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(SqsError::attribute_value(format!(
                    "Invalid value for the parameter {key}: give it as a string"
                )));
            }
        };
        let seconds = |range: std::ops::RangeInclusive<i64>| -> Result<i64, SqsError> {
            text.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    SqsError::attribute_value(format!(
                        "Invalid value for the parameter {key}: `{text}` is not a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ))
                })
        };
        match key.as_str() {
            "VisibilityTimeout" => {
                let s = seconds(0..=MAX_VISIBILITY_SECONDS)?;
                if s == 0 {
                    return Err(SqsError::attribute_value(
                        "Invalid value for the parameter VisibilityTimeout: spool's visibility must be above 0 (give 1 or more)",
                    ));
                }
                patch.visibility = Some(Duration::from_secs(s as u64));
            }
            "MaximumMessageSize" => {
                patch.max_size = Some(seconds(1024..=1_048_576)? as u64);
            }
            "MessageRetentionPeriod" => {
                patch.flow.ttl = Some(Some(Duration::from_secs(seconds(60..=1_209_600)? as u64)));
            }
            "RedrivePolicy" => patch.max_attempts = Some(redrive(&text)?),
            // No place in spool for a queue-wide delay or wait: only their
            // default of 0 is taken.
            "DelaySeconds" | "ReceiveMessageWaitTimeSeconds" if text.trim() == "0" => {}
            "ContentBasedDeduplication" | "SqsManagedSseEnabled" if text == "false" => {}
            "FifoQueue" if creating && (text == "true") == is_fifo(name) => {}
            "FifoQueue" if creating => {
                return Err(SqsError::invalid(
                    "A FIFO queue's name ends with `.fifo` and it has FifoQueue=true; other queues have neither",
                ));
            }
            _ => {
                return Err(SqsError::attribute_name(format!(
                    "Unknown or unsupported attribute {key}={text}: spool has no place for it (see the guide's SQS chapter)"
                )));
            }
        }
    }
    Ok(patch)
}

/// `maxReceiveCount` of a `RedrivePolicy` (an empty policy removes it: 0,
/// unlimited). Its `deadLetterTargetArn` is accepted and not used.
fn redrive(text: &str) -> Result<u32, SqsError> {
    if text.trim().is_empty() {
        return Ok(0);
    }
    let bad = || {
        SqsError::attribute_value(format!(
            "Value {text} for parameter RedrivePolicy is invalid. Reason: give {{\"deadLetterTargetArn\":\"…\",\"maxReceiveCount\":N}} with N from 1 to 1000."
        ))
    };
    let policy: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let count = match policy.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    match count {
        Some(n) if (1..=1000).contains(&n) => Ok(n as u32),
        _ => Err(bad()),
    }
}

/// The settings of a queue created through SQS: unlimited attempts, as
/// SQS, unless the attributes say otherwise.
fn sqs_defaults(patch: &SettingsPatch) -> SettingsPatch {
    SettingsPatch {
        max_attempts: Some(patch.max_attempts.unwrap_or(0)),
        ..*patch
    }
}

/// `CreateQueue`: a new queue, or the URL of an existing one whose settings
/// match the attributes given.
pub async fn create(call: Call) -> Result<Value, SqsError> {
    let name = call.required("QueueName")?.to_owned();
    check_new_name(&name)?;
    let attributes = match call.input.get("Attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(SqsError::invalid("Attributes must be a map")),
    };
    if is_fifo(&name) && attributes.get("FifoQueue").and_then(Value::as_str) != Some("true") {
        return Err(SqsError::invalid(
            "The name of a FIFO queue ends with `.fifo` and it needs the attribute FifoQueue=true",
        ));
    }
    if call
        .input
        .get("tags")
        .and_then(Value::as_object)
        .is_some_and(|t| !t.is_empty())
    {
        return Err(SqsError::unsupported("spool does not keep queue tags"));
    }
    let patch = patch_of(&attributes, &name, true)?;
    let queue = name.clone();
    call.on_db(move |db| {
        if let Some(current) = db.settings(&queue)? {
            return match patch.apply(current) == current {
                true => Ok(()),
                false => Err(SqsError::queue_exists(&queue)),
            };
        }
        match db.create_queue(&queue, &sqs_defaults(&patch), None) {
            Ok(Created::New | Created::Existed) => Ok(()),
            Err(store::Error::SettingsConflict { .. }) => Err(SqsError::queue_exists(&queue)),
            Err(store::Error::NameIsTopic { .. }) => Err(SqsError::name_is_topic(&queue)),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    Ok(json!({ "QueueUrl": call.url(&name) }))
}

/// The settings of an existing queue, or `QueueDoesNotExist`.
pub fn existing(db: &mut store::Db, name: &str) -> Result<Settings, SqsError> {
    db.settings(name)?.ok_or_else(|| SqsError::no_queue(name))
}

/// `GetQueueUrl`.
pub async fn url(call: Call) -> Result<Value, SqsError> {
    let name = call.required("QueueName")?.to_owned();
    if crate::parse::queue_name(&name).is_err() {
        return Err(SqsError::no_queue(&name));
    }
    let queue = name.clone();
    call.on_db(move |db| existing(db, &queue)).await?;
    Ok(json!({ "QueueUrl": call.url(&name) }))
}

/// What a `NextToken` of ListQueues starts with; the last name given
/// follows. A token without it was not handed out here.
const TOKEN_PREFIX: &str = "after:";

/// `ListQueues`: queues (not topics) by name, with `QueueNamePrefix`, and
/// pages of `MaxResults` whose `NextToken` names the last queue given.
pub async fn list(call: Call) -> Result<Value, SqsError> {
    let prefix = call.text("QueueNamePrefix")?.unwrap_or("").to_owned();
    let max = call.int("MaxResults", 1..=1000)?;
    let after = match call.text("NextToken")? {
        None => None,
        Some(token) => match token.strip_prefix(TOKEN_PREFIX) {
            Some(name) if crate::parse::queue_name(name).is_ok() => Some(name.to_owned()),
            _ => return Err(SqsError::invalid("Invalid NextToken value.")),
        },
    };
    let names = call
        .on_db(|db| {
            Ok(db
                .queue_infos()?
                .into_iter()
                .filter(|q| !q.is_topic)
                .map(|q| q.name)
                .collect::<Vec<_>>())
        })
        .await?;
    let mut chosen: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .filter(|n| after.as_ref().is_none_or(|a| n.as_str() > a.as_str()))
        .collect();
    let limit = max.unwrap_or(1000) as usize;
    let more = chosen.len() > limit;
    chosen.truncate(limit);
    let mut answer = Map::new();
    answer.insert(
        "QueueUrls".into(),
        chosen.iter().map(|n| Value::String(call.url(n))).collect(),
    );
    if more
        && max.is_some()
        && let Some(last) = chosen.last()
    {
        answer.insert(
            "NextToken".into(),
            Value::String(format!("{TOKEN_PREFIX}{last}")),
        );
    }
    Ok(Value::Object(answer))
}

/// `DeleteQueue`: the queue and every message in it (`queue delete --force`).
pub async fn delete(call: Call) -> Result<Value, SqsError> {
    let name = call.queue()?;
    call.on_db(move |db| {
        existing(db, &name)?;
        db.delete_queue(&name, true)?;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// `PurgeQueue`: removes ready, delayed and leased messages; acked and dead
/// ones stay for replay.
pub async fn purge(call: Call) -> Result<Value, SqsError> {
    let name = call.queue()?;
    call.on_db(move |db| {
        existing(db, &name)?;
        db.purge(
            &name,
            &[State::Ready, State::Delayed, State::Held, State::Leased],
        )?;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// `SetQueueAttributes` (`queue set`).
pub async fn set_attributes(call: Call) -> Result<Value, SqsError> {
    let name = call.queue()?;
    let attributes = match call.input.get("Attributes") {
        Some(Value::Object(map)) => map.clone(),
        _ => return Err(SqsError::missing("Attributes")),
    };
    let patch = patch_of(&attributes, &name, false)?;
    call.on_db(move |db| {
        existing(db, &name)?;
        if !patch.is_empty() {
            db.set_queue(&name, &patch, SchemaChange::Keep)?;
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

/// `GetQueueAttributes`: the queue's settings and counts, as `stats` reads
/// them.
pub async fn get_attributes(call: Call) -> Result<Value, SqsError> {
    let name = call.queue()?;
    let mut asked = strings_of(call.input.get("AttributeNames"), "AttributeNames")?;
    if asked.iter().any(|a| a == "All") {
        asked = READABLE.iter().map(|s| (*s).to_owned()).collect();
    }
    if let Some(unknown) = asked.iter().find(|a| !READABLE.contains(&a.as_str())) {
        return Err(SqsError::attribute_name(format!(
            "Unknown or unsupported attribute {unknown}"
        )));
    }
    let queue = name.clone();
    let info = call
        .on_db(move |db| {
            existing(db, &queue)?;
            let mut infos = db.queue_infos_named(std::slice::from_ref(&queue))?;
            infos.pop().ok_or_else(|| SqsError::no_queue(&queue))
        })
        .await?;
    let mut answer = Map::new();
    for attribute in &asked {
        if let Some(value) = attribute_value(&call, &name, &info, attribute) {
            answer.insert(attribute.clone(), Value::String(value));
        }
    }
    Ok(json!({ "Attributes": answer }))
}

/// One queue attribute's value, or `None` where spool has none to give.
fn attribute_value(
    call: &Call,
    name: &str,
    info: &store::QueueInfo,
    attribute: &str,
) -> Option<String> {
    let s = &info.settings;
    let fifo = is_fifo(name);
    Some(match attribute {
        "ApproximateNumberOfMessages" => info.counts.ready.to_string(),
        "ApproximateNumberOfMessagesNotVisible" => info.counts.leased.to_string(),
        "ApproximateNumberOfMessagesDelayed" => info.counts.delayed.to_string(),
        "CreatedTimestamp" | "LastModifiedTimestamp" => (info.created_at / 1000).to_string(),
        "VisibilityTimeout" => s.visibility.as_secs().to_string(),
        "MaximumMessageSize" => s.max_size.to_string(),
        "MessageRetentionPeriod" => s.flow.ttl?.as_secs().to_string(),
        "DelaySeconds" | "ReceiveMessageWaitTimeSeconds" => "0".into(),
        "QueueArn" => call.arn(name),
        "RedrivePolicy" if s.max_attempts > 0 => json!({
            "deadLetterTargetArn": call.arn(name),
            "maxReceiveCount": s.max_attempts,
        })
        .to_string(),
        "FifoQueue" if fifo => "true".into(),
        "ContentBasedDeduplication" if fifo => "false".into(),
        "SqsManagedSseEnabled" => "false".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn attributes_map_onto_settings() {
        let patch = patch_of(
            &attrs(json!({
                "VisibilityTimeout": "45",
                "MessageRetentionPeriod": "3600",
                "RedrivePolicy": "{\"deadLetterTargetArn\":\"arn:aws:sqs:x:1:dead\",\"maxReceiveCount\":\"3\"}",
                "DelaySeconds": "0",
            })),
            "q",
            true,
        )
        .expect("patch");
        assert_eq!(patch.visibility, Some(Duration::from_secs(45)));
        assert_eq!(patch.flow.ttl, Some(Some(Duration::from_secs(3600))));
        assert_eq!(patch.max_attempts, Some(3));
        assert_eq!(
            sqs_defaults(&SettingsPatch::default()).max_attempts,
            Some(0)
        );
    }

    #[test]
    fn attributes_without_a_place_are_refused() {
        for (key, value) in [
            ("DelaySeconds", "5"),
            ("Policy", "{}"),
            ("KmsMasterKeyId", "alias/x"),
            ("ContentBasedDeduplication", "true"),
        ] {
            let e = patch_of(&attrs(json!({ key: value })), "q", true).expect_err(key);
            assert_eq!(e.code, "InvalidAttributeName", "{key}");
        }
        let e = patch_of(&attrs(json!({"VisibilityTimeout": "99999"})), "q", true)
            .expect_err("too long");
        assert_eq!(e.code, "InvalidAttributeValue");
        assert!(patch_of(&attrs(json!({"FifoQueue": "true"})), "q", true).is_err());
        assert!(patch_of(&attrs(json!({"FifoQueue": "true"})), "q.fifo", true).is_ok());
    }

    #[test]
    fn new_names_follow_sqs() {
        assert!(check_new_name("orders-1_a").is_ok());
        assert!(check_new_name("orders.fifo").is_ok());
        assert!(check_new_name("a.b").is_err());
        assert!(check_new_name(".fifo").is_err());
        assert!(check_new_name(&"x".repeat(81)).is_err());
    }
}
