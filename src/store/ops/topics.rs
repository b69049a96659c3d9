//! Topics and their subscriptions.
//!
//! A topic is a row in `queues` with `is_topic` set; `subscriptions` says
//! which queues receive what is published to it. The fan-out itself happens
//! in the publish ([`super::publish`]), which reads the subscribers inside
//! its write transaction, so a publish and a (un)subscribe never interleave:
//! a message goes to exactly the queues subscribed when it was committed. On
//! SQLite writers take turns; on PostgreSQL a publish holds a shared lock on
//! the topic's name while it reads the subscribers and fans out, and
//! (un)subscribe take the exclusive one (see [`PublishTx::lock_shared`]).
//!
//! Rules kept here:
//! - a topic holds nothing; its subscribers are queues, never topics, so
//!   fan-out is one level deep and cannot loop;
//! - a queue becomes a topic only while it holds no message in any state
//!   (acked ones kept for replay included), and only if it subscribes to no
//!   topic itself;
//! - a topic stays a topic when its last subscriber leaves (publishing to it
//!   then fails with [`Error::NoSubscribers`]).
//!
//! A topic has no settings of its own that matter: each subscriber applies its
//! own visibility, attempts, retention and retry delay, and a message published
//! to the topic must fit the `max_size` of every subscriber.

use super::queues::ensure_with;
use crate::store::backend::{self, Backend, PublishTx};
use crate::store::error::{Error, Result};
use crate::store::types::{QueueRow, Settings, Subscribed};

/// Subscribes `queue` to `topic`, creating either if missing, in one
/// transaction. Messages published to the topic from now on are also
/// delivered to the queue; earlier ones are not.
pub(crate) fn subscribe(
    store: &mut (impl Backend + ?Sized),
    topic: &str,
    queue: &str,
) -> Result<Subscribed> {
    if topic == queue {
        return Err(Error::SelfSubscription {
            name: topic.to_owned(),
        });
    }
    backend::write(store, |tx| {
        // Keeps the queue from being deleted under the new subscription.
        tx.lock_shared(&[queue])?;
        let subscriber = match tx.queue(queue)? {
            Some(row) if row.is_topic => {
                return Err(Error::TopicSubscribes {
                    name: queue.to_owned(),
                    topic: topic.to_owned(),
                });
            }
            Some(row) => row,
            None => ensure_with(tx, queue, &Settings::default())?.0,
        };
        let topic_row = ensure_topic(tx, topic)?;
        Ok(if tx.add_subscription(topic_row.id, subscriber.id)? {
            // The topic's schedules now feed the queue too.
            tx.refresh_schedule_at(subscriber.id)?;
            Subscribed::New
        } else {
            Subscribed::Existed
        })
    })
}

/// Ends the subscription of `queue` to `topic`. What the queue already
/// received stays in it. Returns the topic's remaining subscribers.
pub(crate) fn unsubscribe(
    store: &mut (impl Backend + ?Sized),
    topic: &str,
    queue: &str,
) -> Result<Vec<String>> {
    backend::write(store, |tx| {
        let mut subscribers = None;
        if let Some(topic_row) = tx.queue(topic)?.filter(|row| row.is_topic) {
            tx.lock_exclusive(topic)?;
            let removed = match tx.queue(queue)? {
                Some(q) if tx.remove_subscription(topic_row.id, q.id)? => {
                    tx.refresh_schedule_at(q.id)?;
                    true
                }
                _ => false,
            };
            let remaining = names(tx.subscribers(topic_row.id)?);
            if removed {
                return Ok(remaining);
            }
            subscribers = Some(remaining);
        }
        Err(Error::NotSubscribed {
            topic: topic.to_owned(),
            queue: queue.to_owned(),
            subscribers,
        })
    })
}

/// The queues subscribed to `topic`, by name, or `None` when no topic has
/// this name.
pub(crate) fn subscribers(
    store: &(impl Backend + ?Sized),
    topic: &str,
) -> Result<Option<Vec<String>>> {
    backend::read(store, |tx| match tx.queue(topic)? {
        Some(row) if row.is_topic => Ok(Some(names(tx.subscribers(row.id)?))),
        _ => Ok(None),
    })
}

fn names(rows: Vec<QueueRow>) -> Vec<String> {
    rows.into_iter().map(|q| q.name).collect()
}

/// The topic named `name`: an existing topic, a new one, or an existing queue
/// turned into a topic when nothing stands against it. Its name stays locked.
fn ensure_topic(tx: &mut (impl PublishTx + ?Sized), name: &str) -> Result<QueueRow> {
    tx.lock_exclusive(name)?;
    let (mut row, _) = ensure_with(tx, name, &Settings::default())?;
    if row.is_topic {
        return Ok(row);
    }
    if tx.holds_messages(row.id)? {
        return Err(Error::NameHoldsMessages {
            name: row.name.clone(),
        });
    }
    let topics = tx.topics_of(row.id)?;
    if !topics.is_empty() {
        return Err(Error::SubscriberBecomesTopic {
            name: row.name.clone(),
            topics,
        });
    }
    tx.make_topic(row.id)?;
    row.is_topic = true;
    Ok(row)
}
