//! The JSON Schema checks of a publish or a replay, backend-neutral: the
//! cache of compiled contracts and what a message must meet. Each backend
//! reads the schema rows (`contracts` on SQLite, `postgres::contracts`) and
//! builds these.
//!
//! A schema is compiled when it is set (by the command, before the database
//! is opened) and again, once per process and version, when a publish first
//! needs it: [`ContractCache`] keeps compiled contracts by queue and version,
//! so the batches of `publish --stream` read only the current version numbers
//! at each commit, and a schema set meanwhile applies from the next commit on.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::{Error, Result};
use super::types::{QueueRow, SchemaChange};
use crate::contract::Contract;

/// Compiled contracts by (queue id, schema version).
pub(crate) type ContractCache = HashMap<(i64, i64), Arc<Contract>>;

/// A contract in force for one queue or topic, as a publish checks it.
#[derive(Debug, Clone)]
pub struct Check {
    pub queue: String,
    pub version: i64,
    pub contract: Arc<Contract>,
}

impl Check {
    /// Checks one body; a broken rule becomes [`Error::Invalid`] (for message
    /// `id`, when the message already has one).
    pub fn body(&self, value: &serde_json::Value, id: Option<i64>) -> Result<()> {
        self.contract
            .check(value)
            .map_err(|violation| Error::Invalid {
                id,
                queue: self.queue.clone(),
                version: self.version,
                violation,
            })
    }

    /// Checks stored message `id` (its body and raw flag as stored), for a
    /// replay into this check's queue: raw text and invalid JSON break it too.
    pub fn stored(&self, id: i64, body: &[u8], raw: bool) -> Result<()> {
        let value = crate::contract::parse_body(body, raw).map_err(|violation| Error::Invalid {
            id: Some(id),
            queue: self.queue.clone(),
            version: self.version,
            violation,
        })?;
        self.body(&value, Some(id))
    }
}

/// The schema a change asks for: `None` to leave it as it is, `Some(None)`
/// to remove it. The same on every backend.
pub(crate) fn wanted(change: SchemaChange<'_>) -> Option<Option<&Contract>> {
    match change {
        SchemaChange::Keep => None,
        SchemaChange::Set(c) => Some(Some(c)),
        SchemaChange::Remove => Some(None),
    }
}

/// True when `contract` is the schema whose text is in force (as JSON:
/// layout and key order do not count), or, for `None`, when none is.
pub(crate) fn same_schema(in_force: Option<&str>, contract: Option<&Contract>) -> bool {
    match (in_force, contract) {
        (None, None) => true,
        (Some(text), Some(c)) => c.same_text(text),
        _ => false,
    }
}

/// The compiled contract of version `version` of `queue`'s schema, from the
/// cache or compiled from `text()` (and kept). A stored schema that does not
/// compile is [`Error::BrokenSchema`].
pub(crate) fn compiled(
    cache: &mut ContractCache,
    queue: (i64, &str),
    version: i64,
    text: impl FnOnce() -> Result<String>,
) -> Result<Arc<Contract>> {
    if let Some(c) = cache.get(&(queue.0, version)) {
        return Ok(Arc::clone(c));
    }
    let compiled = Contract::compile(&text()?).map_err(|reason| Error::BrokenSchema {
        queue: queue.1.to_owned(),
        version,
        reason,
    })?;
    let compiled = Arc::new(compiled);
    cache.insert((queue.0, version), Arc::clone(&compiled));
    Ok(compiled)
}

/// The check of version `version` of `queue`'s schema, its contract from
/// the cache or compiled from `text()` (see [`compiled`]).
pub(crate) fn check(
    cache: &mut ContractCache,
    queue: &QueueRow,
    version: i64,
    text: impl FnOnce() -> Result<String>,
) -> Result<Check> {
    let contract = compiled(cache, (queue.id, &queue.name), version, text)?;
    Ok(Check {
        queue: queue.name.clone(),
        version,
        contract,
    })
}

/// What a publish checks: every contract a message must meet (the topic's
/// own and each receiving queue's), and per receiving queue the version its
/// deliveries record.
#[derive(Debug, Default)]
pub(crate) struct PublishChecks {
    pub checks: Vec<Check>,
    pub versions: Vec<Option<i64>>,
}

impl PublishChecks {
    /// The checks for publishing to `origin` (a queue, or a topic delivering
    /// to `targets`), given the check in force for each of them.
    pub fn of(
        origin: &QueueRow,
        targets: &[QueueRow],
        mut check_for: impl FnMut(&QueueRow) -> Result<Option<Check>>,
    ) -> Result<PublishChecks> {
        let mut out = PublishChecks::default();
        if origin.is_topic {
            out.checks.extend(check_for(origin)?);
        }
        for target in targets {
            let check = check_for(target)?;
            out.versions.push(check.as_ref().map(|c| c.version));
            out.checks.extend(check);
        }
        Ok(out)
    }

    /// Checks a message published to `origin` against every schema in
    /// force, parsing it once: a raw body is [`Error::RawBody`], a broken
    /// rule [`Error::Invalid`] naming the first schema it breaks.
    pub fn message(&self, origin: &str, body: &[u8], raw: bool) -> Result<()> {
        let Some(first) = self.checks.first() else {
            return Ok(());
        };
        if raw {
            return Err(Error::RawBody {
                name: origin.to_owned(),
                holder: first.queue.clone(),
            });
        }
        let value =
            crate::contract::parse_body(body, false).map_err(|violation| Error::Invalid {
                id: None,
                queue: first.queue.clone(),
                version: first.version,
                violation,
            })?;
        for check in &self.checks {
            check.body(&value, None)?;
        }
        Ok(())
    }
}
