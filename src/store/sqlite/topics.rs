//! Topics and their subscriptions.
//!
//! A topic is a row in `queues` with `is_topic = 1`; `subscriptions` says which
//! queues receive what is published to it. The fan-out itself happens in
//! [`SqliteStore::publish_batch`], which reads the subscribers inside its write
//! transaction, so a publish and a (un)subscribe never interleave: a message
//! goes to exactly the queues subscribed when it was committed.
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

use super::queues::{self, QueueRow};
use super::tx::Tx;
use crate::store::types::Subscribed;
use crate::store::{Error, Result, Settings, SqliteStore};

impl SqliteStore {
    /// Subscribes `queue` to `topic`, creating either if missing, in one
    /// transaction. Messages published to the topic from now on are also
    /// delivered to the queue; earlier ones are not.
    pub fn subscribe(&mut self, topic: &str, queue: &str) -> Result<Subscribed> {
        if topic == queue {
            return Err(Error::SelfSubscription {
                name: topic.to_owned(),
            });
        }
        let tx = Tx::begin(&mut self.conn)?;
        let subscriber = match queues::lookup(&tx.tx, queue)? {
            Some(row) if row.is_topic => {
                return Err(Error::TopicSubscribes {
                    name: queue.to_owned(),
                    topic: topic.to_owned(),
                });
            }
            Some(row) => row,
            None => queues::insert(&tx, queue, &Settings::default())?,
        };
        let topic_row = ensure_topic(&tx, topic)?;
        let added = tx
            .tx
            .prepare_cached(
                "INSERT INTO subscriptions (topic_id, queue_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic_id, queue_id) DO NOTHING",
            )?
            .execute((topic_row.id, subscriber.id, tx.now))?;
        tx.commit()?;
        Ok(if added == 0 {
            Subscribed::Existed
        } else {
            Subscribed::New
        })
    }

    /// Ends the subscription of `queue` to `topic`. What the queue already
    /// received stays in it. Returns the topic's remaining subscribers.
    pub fn unsubscribe(&mut self, topic: &str, queue: &str) -> Result<Vec<String>> {
        let tx = Tx::begin(&mut self.conn)?;
        let topic_row = queues::lookup(&tx.tx, topic)?.filter(|row| row.is_topic);
        let Some(topic_row) = topic_row else {
            return Err(Error::NotSubscribed {
                topic: topic.to_owned(),
                queue: queue.to_owned(),
                subscribers: None,
            });
        };
        let removed = match queues::lookup(&tx.tx, queue)? {
            Some(q) => tx
                .tx
                .prepare_cached("DELETE FROM subscriptions WHERE topic_id = ?1 AND queue_id = ?2")?
                .execute((topic_row.id, q.id))?,
            None => 0,
        };
        let remaining = names(queues::subscribers(&tx.tx, topic_row.id)?);
        if removed == 0 {
            return Err(Error::NotSubscribed {
                topic: topic.to_owned(),
                queue: queue.to_owned(),
                subscribers: Some(remaining),
            });
        }
        tx.commit()?;
        Ok(remaining)
    }

    /// The queues subscribed to `topic`, by name, or `None` when no topic has
    /// this name.
    pub fn subscribers(&self, topic: &str) -> Result<Option<Vec<String>>> {
        match queues::lookup(&self.conn, topic)? {
            Some(row) if row.is_topic => Ok(Some(names(queues::subscribers(&self.conn, row.id)?))),
            _ => Ok(None),
        }
    }
}

fn names(rows: Vec<QueueRow>) -> Vec<String> {
    rows.into_iter().map(|q| q.name).collect()
}

/// The topic named `name`: an existing topic, a new one, or an existing queue
/// turned into a topic when nothing stands against it.
fn ensure_topic(tx: &Tx<'_>, name: &str) -> Result<QueueRow> {
    let mut row = match queues::lookup(&tx.tx, name)? {
        Some(row) if row.is_topic => return Ok(row),
        Some(row) => {
            check_can_become_topic(tx, &row)?;
            row
        }
        None => queues::insert(tx, name, &Settings::default())?,
    };
    tx.tx
        .prepare_cached("UPDATE queues SET is_topic = 1 WHERE id = ?1")?
        .execute([row.id])?;
    row.is_topic = true;
    Ok(row)
}

/// A queue may become a topic only if it holds no messages (the per-state
/// counters are exact, so this reads one row) and subscribes to no topic.
fn check_can_become_topic(tx: &Tx<'_>, row: &QueueRow) -> Result<()> {
    let held: i64 = tx
        .tx
        .prepare_cached(
            "SELECT n_ready + n_delayed + n_leased + n_acked + n_dead + n_held
             FROM queues WHERE id = ?1",
        )?
        .query_row([row.id], |r| r.get(0))?;
    if held > 0 {
        return Err(Error::NameHoldsMessages {
            name: row.name.clone(),
        });
    }
    let topics = tx
        .tx
        .prepare_cached(
            "SELECT name FROM queues
             WHERE id IN (SELECT topic_id FROM subscriptions WHERE queue_id = ?1) ORDER BY name",
        )?
        .query_map([row.id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    if !topics.is_empty() {
        return Err(Error::SubscriberBecomesTopic {
            name: row.name.clone(),
            topics,
        });
    }
    Ok(())
}
