//! Group commit for `work` under `--sync full`.
//!
//! An fsync costs milliseconds (about 4 ms on the machine this was measured
//! on), more than starting a small handler, so one per ack would make the
//! disk, not the handlers, set the pace. Instead, a commit waits for the disk
//! only when the last one that did is at least [`WINDOW`] old; the others are
//! made durable by the next synced commit (the WAL is one file, written in
//! order) or by a flush at most [`WINDOW`] later, and always before `work`
//! exits. A slow stream of messages (one round per window or less) still
//! fsyncs every commit.
//!
//! What a power loss can undo is at most the last [`WINDOW`] of `work`'s own
//! bookkeeping (claims, acks, nacks, extends). Each of these, undone, leaves
//! a message that will be delivered again: never a lost one.

use std::time::{Duration, Instant};

use crate::store::{self, Db, Sync};

/// The longest a commit of `work` waits before it is on disk.
pub(super) const WINDOW: Duration = Duration::from_millis(100);

/// When to make commits durable.
#[derive(Debug)]
pub(super) struct GroupCommit {
    /// `--sync full`: group commits. With `--sync normal`, every commit
    /// skips the fsync anyway and there is nothing to do.
    enabled: bool,
    /// The mode the connection is in.
    mode: Sync,
    /// When the last durable commit or flush happened.
    last_sync: Option<Instant>,
    /// Commits since then that are not on disk yet.
    pending: bool,
}

impl GroupCommit {
    /// The policy for the global `--sync` mode (the connection starts in it).
    pub fn new(sync: Sync) -> GroupCommit {
        GroupCommit {
            enabled: sync == Sync::Full,
            mode: sync,
            last_sync: None,
            pending: false,
        }
    }

    /// Sets the connection's mode for the next commit.
    pub fn before_commit(&mut self, store: &mut Db) -> store::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let full = self.last_sync.is_none_or(|t| t.elapsed() >= WINDOW);
        let mode = if full { Sync::Full } else { Sync::Normal };
        if mode != self.mode {
            store.set_sync(mode)?;
            self.mode = mode;
        }
        Ok(())
    }

    /// Notes a commit made after [`GroupCommit::before_commit`].
    pub fn after_commit(&mut self) {
        if !self.enabled {
            return;
        }
        if self.mode == Sync::Full {
            self.last_sync = Some(Instant::now());
            self.pending = false;
        } else {
            self.pending = true;
        }
    }

    /// When commits not yet on disk must be flushed.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
            .then(|| self.last_sync.map(|t| t + WINDOW))
            .flatten()
    }

    /// Flushes pending commits once their window has passed, or always with
    /// `now`.
    pub fn flush(&mut self, store: &Db, now: bool) -> store::Result<()> {
        let due = self.deadline().is_some_and(|d| Instant::now() >= d);
        if self.pending && (now || due) {
            store.flush()?;
            self.last_sync = Some(Instant::now());
            self.pending = false;
        }
        Ok(())
    }
}
