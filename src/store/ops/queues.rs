//! Queue and topic rows: creation on first use, settings, `queue create`
//! and `queue set`.

use std::time::Duration;

use super::contracts;
use crate::contract::Contract;
use crate::store::backend::{self, Backend, PublishTx, topic_error, unknown_queue};
use crate::store::checks::same_schema;
use crate::store::error::{Error, Result};
use crate::store::types::{
    BodyLimit, Created, QueueRow, QueueSet, SchemaChange, Settings, SettingsPatch, ms,
};

/// The queue named `name`, created with `settings` if it does not exist,
/// and whether this call created it. Safe against a concurrent creation of
/// the same name: one insert wins and the other reads its row.
pub(crate) fn ensure_with(
    tx: &mut (impl PublishTx + ?Sized),
    name: &str,
    settings: &Settings,
) -> Result<(QueueRow, bool)> {
    if let Some(row) = tx.queue(name)? {
        return Ok((row, false));
    }
    if crate::parse::queue_name(name).is_err() {
        return Err(Error::BadName {
            name: name.to_owned(),
        });
    }
    match tx.insert_queue(name, settings)? {
        Some(row) => Ok((row, true)),
        None => tx
            .queue(name)?
            .map(|row| (row, false))
            .ok_or_else(|| Error::Internal(format!("queue `{name}` vanished while being created"))),
    }
}

/// The queue named `name`, created with default settings if it does not exist.
pub(crate) fn ensure(tx: &mut (impl PublishTx + ?Sized), name: &str) -> Result<QueueRow> {
    Ok(ensure_with(tx, name, &Settings::default())?.0)
}

/// Creates a queue with the given settings (the rest default) and, if
/// given, a JSON Schema (its version 1). An existing queue with the same
/// settings, and the same schema or none given, is left alone; one with
/// other settings or another schema is [`Error::SettingsConflict`].
pub(crate) fn create_queue(
    store: &mut (impl Backend + ?Sized),
    name: &str,
    patch: &SettingsPatch,
    schema: Option<&Contract>,
) -> Result<Created> {
    backend::write(store, |tx| {
        let (row, new) = ensure_with(tx, name, &patch.apply(Settings::default()))?;
        if new {
            // Nobody sees the queue before this commit, schema and all.
            if let Some(c) = schema {
                contracts::apply(tx, row.id, SchemaChange::Set(c))?;
            }
            return Ok(Created::New);
        }
        if row.is_topic {
            return Err(topic_error(tx, row)?);
        }
        // The same schema as JSON: layout and key order do not count.
        let current = tx.latest_schema(row.id)?.and_then(|(_, text)| text);
        let same = schema.is_none() || same_schema(current.as_deref(), schema);
        if patch.apply(row.settings) != row.settings || !same {
            return Err(Error::SettingsConflict {
                name: name.to_owned(),
            });
        }
        Ok(Created::Existed)
    })
}

/// Changes settings and the schema of an existing queue. A topic takes a
/// schema (checked before its messages fan out) but no settings.
pub(crate) fn set_queue(
    store: &mut (impl Backend + ?Sized),
    name: &str,
    patch: &SettingsPatch,
    schema: SchemaChange<'_>,
) -> Result<QueueSet> {
    backend::write(store, |tx| {
        let changes_schema = !matches!(schema, SchemaChange::Keep);
        if changes_schema {
            // Publishes into the queue hold this lock shared to their commit.
            tx.lock_exclusive(name)?;
        }
        let Some(row) = tx.queue(name)? else {
            return Err(unknown_queue(tx, name));
        };
        let schema_only = patch.is_empty() && changes_schema;
        if row.is_topic && !schema_only {
            return Err(topic_error(tx, row)?);
        }
        let settings = if row.is_topic {
            row.settings
        } else {
            // Lock the row so two concurrent patches both apply.
            tx.lock_row(row.id)?;
            let current = tx.queue(name)?.map_or(row.settings, |r| r.settings);
            let settings = patch.apply(current);
            tx.write_settings(row.id, &settings)?;
            // A new TTL applies to the messages already in the queue.
            if settings.flow.ttl != current.flow.ttl {
                tx.retime_ttl(row.id, settings.flow.ttl.map(ms))?;
            }
            // A resumed queue, a higher cap or rate: waiting consumers look again.
            tx.notify(name);
            settings
        };
        let schema_version = contracts::apply(tx, row.id, schema)?;
        Ok(QueueSet {
            settings,
            schema_version,
        })
    })
}

/// How long until the rate of `name` lets a waiting consumer have the
/// ready messages it holds back (zero: now). `None` when the rate is not
/// what holds them: no rate, nothing ready, a pause, or a full in-flight
/// cap (an ack or a lease running out frees that, and wakes waiters
/// itself). The time is the rate's, not the one the last claim saw: the
/// rate may have come to allow a delivery since.
pub(crate) fn rate_wait(store: &(impl Backend + ?Sized), name: &str) -> Result<Option<Duration>> {
    backend::read(store, |tx| {
        let Some(q) = tx.queue(name)? else {
            return Ok(None);
        };
        let flow = q.settings.flow;
        let Some(rate) = flow.rate.filter(|_| !flow.paused) else {
            return Ok(None);
        };
        if !tx.any_ready(q.id)? {
            return Ok(None);
        }
        if flow.max_in_flight > 0
            && tx.count_leased(q.id, flow.max_in_flight)? >= u64::from(flow.max_in_flight)
        {
            return Ok(None);
        }
        let now = tx.now();
        let next = rate.next_at(q.rate_full_at, now);
        Ok(Some(Duration::from_millis(
            next.saturating_sub(now).max(0) as u64
        )))
    })
}

/// The settings of a queue, or `None` if no queue has this name.
pub(crate) fn settings(store: &(impl Backend + ?Sized), name: &str) -> Result<Option<Settings>> {
    backend::read(store, |tx| {
        Ok(tx
            .queue(name)?
            .filter(|row| !row.is_topic)
            .map(|row| row.settings))
    })
}

/// [`crate::store::Store::body_limit`]: a topic holds nothing, so its own
/// setting does not count.
pub(crate) fn body_limit(store: &(impl Backend + ?Sized), name: &str) -> Result<BodyLimit> {
    backend::read(store, |tx| {
        let limit = match tx.queue(name)? {
            Some(row) if row.is_topic => BodyLimit::smallest(&tx.subscribers(row.id)?),
            row => row.map(|row| BodyLimit::of(&row)),
        };
        Ok(limit.unwrap_or_else(|| BodyLimit::default_for(name)))
    })
}
