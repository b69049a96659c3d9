//! Waiting for new messages without a daemon: shared by `consume --wait/--follow`
//! and `work`.

use std::time::{Duration, Instant};

use crate::store::Db;

/// How often a waiting consumer looks for new commits. On SQLite each look is
/// a read of the WAL index (`PRAGMA data_version`), which costs microseconds,
/// so a new message is seen within this time while an idle wait costs no CPU
/// to speak of. On PostgreSQL the consumer sleeps on its connection and
/// LISTEN/NOTIFY wakes it at once; it surfaces this often to check signals.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Waits until another process commits, a delayed message or lease of
/// `queue` comes due, its rate allows the next delivery, or the deadline
/// passes. `version` is the
/// `data_version` read before the caller's last claim, so a commit that
/// landed between that claim and this wait ends the wait at once.
///
/// Between looks it calls `pause(d)`, which should sleep for up to `d` and
/// return true to end the wait early (a signal, a child that exited).
pub fn for_news(
    store: &Db,
    queue: &str,
    version: i64,
    deadline: Option<Instant>,
    mut pause: impl FnMut(Duration) -> bool,
) -> anyhow::Result<()> {
    let due_at = store.wake_in(queue)?.map(|d| Instant::now() + d);
    loop {
        let nap = deadline.map_or(POLL_INTERVAL, |d| {
            d.saturating_duration_since(Instant::now())
                .min(POLL_INTERVAL)
        });
        if store.wait_step(queue, version, nap, &mut pause)?
            || deadline.is_some_and(|d| Instant::now() >= d)
            || due_at.is_some_and(|d| Instant::now() >= d)
        {
            return Ok(());
        }
    }
}
