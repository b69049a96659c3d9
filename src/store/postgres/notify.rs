//! Waiting for news with LISTEN/NOTIFY instead of polling: writers that make
//! messages deliverable send `pg_notify('spool_<schema>', queue)` inside
//! their transaction (see [`super::tx::Tx::notify`]); PostgreSQL delivers it
//! to every listening connection when, and only if, the transaction commits.

use crate::store::Store;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use super::tx::{NOW_MS, channel};
use super::{Conn, PostgresStore, RowExt};
use crate::store::error::Result;

/// The longest a wait sleeps before it checks the clock against the next
/// due time again: a safety net should a delayed message's due time move
/// earlier without a notification (it never does today).
const MAX_NAP: Duration = Duration::from_secs(5);

impl Conn {
    /// Sends `LISTEN` once per connection.
    pub(super) fn listen(&mut self) -> Result<()> {
        if !self.listening {
            let channel = channel(&self.target.schema);
            self.batch(&format!("LISTEN \"{channel}\""))?;
            self.listening = true;
        }
        Ok(())
    }

    /// Takes the notifications the server has sent, without waiting.
    pub(super) fn drain(&mut self) -> Result<()> {
        let mut notifications = self.client.notifications();
        let pending: Vec<String> = notifications
            .iter()
            .map(|n| Ok(n.payload().to_owned()))
            .collect()?;
        self.seen += pending.len() as i64;
        self.news.extend(pending);
        Ok(())
    }

    /// Waits up to `timeout` for one notification.
    fn wait_one(&mut self, timeout: Duration) -> Result<()> {
        let mut notifications = self.client.notifications();
        if let Some(n) = notifications.timeout_iter(timeout).next()? {
            self.seen += 1;
            self.news.push(n.payload().to_owned());
        }
        Ok(())
    }

    pub(crate) fn server_now(&mut self) -> Result<i64> {
        let row = self.query_opt(&format!("SELECT {NOW_MS}"), &[])?;
        match row {
            Some(r) => r.at(0),
            None => Ok(crate::store::types::now_ms()),
        }
    }
}

impl PostgresStore {
    /// Starts listening for news (as the first [`PostgresStore::data_version`]
    /// does) and forgets news received so far: call before the claim that
    /// precedes a [`PostgresStore::wait_for_news`].
    pub fn listen(&self) -> Result<()> {
        let mut conn = self.conn.borrow_mut();
        conn.listen()?;
        conn.drain()?;
        conn.news.clear();
        Ok(())
    }

    /// Blocks on the socket, without a query, until news for `queue`
    /// arrives (news received since [`PostgresStore::listen`] counts) or `until`
    /// passes. Returns true when woken by news.
    pub fn wait_news(&self, queue: &str, until: Instant) -> Result<bool> {
        let mut conn = self.conn.borrow_mut();
        conn.listen()?;
        loop {
            conn.drain()?;
            let news = conn.news.iter().any(|q| q == queue);
            conn.news.clear();
            if news {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(false);
            }
            conn.wait_one((until - now).min(MAX_NAP))?;
        }
    }

    /// Blocks until news for `queue` arrives (a publish, nack, release or
    /// replay committed; news received since [`PostgresStore::listen`] counts), a
    /// delayed message or lease of `queue` comes due by the server's clock,
    /// or `until` passes. Returns true when woken by news or a due message,
    /// false at `until`. Costs [`PostgresStore::due_in`] plus the wait; sleeps on
    /// the socket, so an idle consumer uses no CPU.
    pub fn wait_for_news(&self, queue: &str, until: Instant) -> Result<bool> {
        let due_at = self.due_in(queue)?.map(|d| Instant::now() + d);
        let stop = due_at.map_or(until, |d| d.min(until));
        Ok(self.wait_news(queue, stop)? || due_at.is_some_and(|d| Instant::now() >= d))
    }
}
