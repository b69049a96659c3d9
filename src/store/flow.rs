//! The rules of flow control, as pure functions (no SQL, the same on both
//! backends): how many deliveries a claim may start under a queue's pause,
//! in-flight cap and rate; when a message expires; what a publish into a
//! queue with length limits may do; why a message died.
//!
//! The rate is a token bucket kept as one number per queue, the time at
//! which the bucket would be full again (the "theoretical arrival time" of
//! the generic cell rate algorithm). One integer in the queue row is the
//! whole state, so a claim reads and writes it in the row it already locks,
//! and every process sharing the database shares the bucket.

use std::fmt;
use std::time::Duration;

/// A delivery rate: at most `count` deliveries start per `per`, on average,
/// in bursts of at most `count` (`--rate 100/1s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Deliveries per period (at least 1).
    pub count: u32,
    /// The period (above zero).
    pub per: Duration,
}

impl Rate {
    /// The time one delivery uses up, in microseconds, rounded up so that the
    /// long-run rate is never above the one given.
    fn interval_us(self) -> i64 {
        let per = i64::try_from(self.per.as_micros()).unwrap_or(i64::MAX);
        let count = i64::from(self.count.max(1));
        (per / count + i64::from(per % count != 0)).max(1)
    }

    /// How many deliveries may start at `now_ms`, given the bucket's state
    /// `full_at_us` (see the module doc; 0 for a bucket never used).
    pub fn allowance(self, full_at_us: i64, now_ms: i64) -> u32 {
        let now = now_ms.saturating_mul(1000);
        let behind = full_at_us.saturating_sub(now).max(0);
        let t = self.interval_us();
        let used = behind / t + i64::from(behind % t != 0);
        (i64::from(self.count) - used).clamp(0, i64::from(self.count)) as u32
    }

    /// The bucket's state after `n` deliveries started at `now_ms`.
    pub fn take(self, full_at_us: i64, now_ms: i64, n: u32) -> i64 {
        let now = now_ms.saturating_mul(1000);
        full_at_us
            .max(now)
            .saturating_add(self.interval_us().saturating_mul(i64::from(n)))
    }

    /// When (ms since the epoch) the next delivery may start: `now_ms` when
    /// one may start now.
    pub fn next_at(self, full_at_us: i64, now_ms: i64) -> i64 {
        let t = self.interval_us();
        let at_us = full_at_us.saturating_sub(t.saturating_mul(i64::from(self.count) - 1));
        // Rounded up to the next whole millisecond.
        let at = at_us / 1000 + i64::from(at_us % 1000 > 0);
        at.max(now_ms)
    }
}

impl fmt::Display for Rate {
    /// `N/DUR`, as `--rate` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            crate::parse::format_duration(self.per)
        )
    }
}

/// A queue's flow-control settings (all unset by default: a queue without
/// them pays nothing for them). Stored as one JSON text per queue row, NULL
/// when every setting is at its default, and shown with these field names
/// by `queue show`, `queue list` and `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    /// Nothing new is delivered (`queue pause`).
    pub paused: bool,
    /// At most this many leases at once (0: no cap).
    pub max_in_flight: u32,
    /// Deliveries start at most at this rate.
    pub rate: Option<Rate>,
    /// Messages expire this long after their publish (unless they carry
    /// their own TTL).
    pub ttl: Option<Duration>,
    /// What the queue may hold.
    pub limits: Limits,
    /// What a publish that would go over the limits does.
    pub on_full: OnFull,
}

/// [`Flow`] as stored and shown.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(default)]
struct FlowJson {
    paused: bool,
    max_in_flight: u32,
    rate: Option<String>,
    ttl_ms: Option<u64>,
    max_length: Option<u64>,
    max_bytes: Option<u64>,
    on_full: Option<String>,
}

impl serde::Serialize for Flow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FlowJson {
            paused: self.paused,
            max_in_flight: self.max_in_flight,
            rate: self.rate.map(|r| r.to_string()),
            ttl_ms: self.ttl.map(|d| d.as_millis() as u64),
            max_length: self.limits.max_length,
            max_bytes: self.limits.max_bytes,
            on_full: Some(self.on_full.name().to_owned()),
        }
        .serialize(s)
    }
}

impl Flow {
    /// True when a claim must look at the flow settings (pause, cap, rate).
    pub fn limits_claims(&self) -> bool {
        self.paused || self.max_in_flight > 0 || self.rate.is_some()
    }

    /// The settings as `queue show` lists them (`all`), or only those that
    /// are set, for the one-line summaries of `queue list` and `top`.
    pub fn shown(&self, all: bool) -> Vec<(&'static str, String)> {
        let fmt_d = crate::parse::format_duration;
        let fmt_s = crate::parse::format_size;
        let none = || "none".to_owned();
        let rows = [
            (
                "paused",
                self.paused,
                if self.paused {
                    "yes".into()
                } else {
                    "no".into()
                },
            ),
            (
                "max_in_flight",
                self.max_in_flight > 0,
                if self.max_in_flight > 0 {
                    self.max_in_flight.to_string()
                } else {
                    none()
                },
            ),
            (
                "rate",
                self.rate.is_some(),
                self.rate.map_or_else(none, |r| r.to_string()),
            ),
            ("ttl", self.ttl.is_some(), self.ttl.map_or_else(none, fmt_d)),
            (
                "max_length",
                self.limits.max_length.is_some(),
                self.limits.max_length.map_or_else(none, |n| n.to_string()),
            ),
            (
                "max_bytes",
                self.limits.max_bytes.is_some(),
                self.limits.max_bytes.map_or_else(none, fmt_s),
            ),
            (
                "on_full",
                self.on_full != OnFull::Reject,
                self.on_full.name().to_owned(),
            ),
        ];
        rows.into_iter()
            .filter(|(_, set, _)| all || *set)
            .map(|(name, _, value)| (name, value))
            .collect()
    }

    /// The stored text: `None` when every setting is at its default.
    pub fn to_stored(&self) -> Option<String> {
        (*self != Flow::default()).then(|| serde_json::to_string(self).unwrap_or_default())
    }

    /// The settings from their stored text (`None`: the defaults). Text
    /// this version cannot read gives the defaults rather than an error, so
    /// a queue stays usable.
    pub fn from_stored(text: Option<&str>) -> Flow {
        let Some(json) = text.and_then(|t| serde_json::from_str::<FlowJson>(t).ok()) else {
            return Flow::default();
        };
        Flow {
            paused: json.paused,
            max_in_flight: json.max_in_flight,
            rate: json.rate.and_then(|r| crate::parse::rate(&r).ok()),
            ttl: json.ttl_ms.map(Duration::from_millis),
            limits: Limits {
                max_length: json.max_length,
                max_bytes: json.max_bytes,
            },
            on_full: if json.on_full.as_deref() == Some("drop-oldest") {
                OnFull::DropOldest
            } else {
                OnFull::Reject
            },
        }
    }
}

/// Flow settings given on the command line: `None` keeps the current value,
/// `Some(None)` removes a setting (`--rate none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowPatch {
    /// `queue pause` / `queue resume`.
    pub paused: Option<bool>,
    /// `--max-in-flight` (0 removes the cap).
    pub max_in_flight: Option<u32>,
    /// `--rate`.
    pub rate: Option<Option<Rate>>,
    /// `--ttl`.
    pub ttl: Option<Option<Duration>>,
    /// `--max-length`.
    pub max_length: Option<Option<u64>>,
    /// `--max-bytes`.
    pub max_bytes: Option<Option<u64>>,
    /// `--on-full`.
    pub on_full: Option<OnFull>,
}

impl FlowPatch {
    /// `base` with the given settings applied.
    pub fn apply(&self, base: Flow) -> Flow {
        Flow {
            paused: self.paused.unwrap_or(base.paused),
            max_in_flight: self.max_in_flight.unwrap_or(base.max_in_flight),
            rate: self.rate.unwrap_or(base.rate),
            ttl: self.ttl.unwrap_or(base.ttl),
            limits: Limits {
                max_length: self.max_length.unwrap_or(base.limits.max_length),
                max_bytes: self.max_bytes.unwrap_or(base.limits.max_bytes),
            },
            on_full: self.on_full.unwrap_or(base.on_full),
        }
    }
}

/// How many deliveries a claim of `wanted` may start: none on a paused
/// queue; no more than the in-flight cap leaves room for (`max_in_flight`
/// 0: no cap; `leased`: the leases that hold now); no more than the rate
/// allows now (`rate_allows`: `None` without a rate).
pub fn claim_budget(
    wanted: usize,
    paused: bool,
    max_in_flight: u32,
    leased: u64,
    rate_allows: Option<u32>,
) -> usize {
    if paused {
        return 0;
    }
    let mut budget = wanted;
    if max_in_flight > 0 {
        let room = u64::from(max_in_flight).saturating_sub(leased);
        budget = budget.min(usize::try_from(room).unwrap_or(usize::MAX));
    }
    if let Some(allowed) = rate_allows {
        budget = budget.min(allowed as usize);
    }
    budget
}

/// When a message published (or replayed) at `from_ms` expires: its own
/// TTL when it has one, else the queue's; `None` when neither is set.
pub fn expires_at(from_ms: i64, own_ttl_ms: Option<i64>, queue_ttl_ms: Option<i64>) -> Option<i64> {
    own_ttl_ms
        .or(queue_ttl_ms)
        .map(|ttl| from_ms.saturating_add(ttl))
}

/// True when a message that expires at `expires_at` may not be delivered at
/// `now`.
pub fn expired(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// What a full queue does with a publish that would go over its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnFull {
    /// Refuse the publish whole (exit 75).
    #[default]
    Reject,
    /// Make room: the oldest ready messages die with reason `dropped`.
    DropOldest,
}

impl OnFull {
    /// The name as `--on-full` takes it and JSON shows it.
    pub fn name(self) -> &'static str {
        match self {
            OnFull::Reject => "reject",
            OnFull::DropOldest => "drop-oldest",
        }
    }
}

/// A queue's length limits: what it may hold in ready, delayed (and held)
/// and leased messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// At most this many messages (`None`: no limit).
    pub max_length: Option<u64>,
    /// At most this many bytes of bodies (`None`: no limit).
    pub max_bytes: Option<u64>,
}

impl Limits {
    /// True when neither limit is set: a publish need not count anything.
    pub fn is_unlimited(&self) -> bool {
        self.max_length.is_none() && self.max_bytes.is_none()
    }
}

/// How much a queue holds, or a publish adds: messages and body bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Messages.
    pub count: u64,
    /// Bytes of bodies.
    pub bytes: u64,
}

/// What a publish of `adding` into a queue holding `held` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// It fits.
    Fits,
    /// It fits once this much more is freed (with `drop-oldest`).
    Free(Load),
    /// It does not fit now: refuse it (exit 75, safe to retry later).
    Full,
    /// It could never fit, even into the empty queue (exit 65).
    NeverFits,
}

/// Judges a publish of `adding` into a queue holding `held` under `limits`.
pub fn room(limits: Limits, on_full: OnFull, held: Load, adding: Load) -> Room {
    let over = |max: Option<u64>, held: u64, adding: u64| match max {
        Some(max) if adding > max => None,
        Some(max) => Some((held + adding).saturating_sub(max)),
        None => Some(0),
    };
    let (Some(count), Some(bytes)) = (
        over(limits.max_length, held.count, adding.count),
        over(limits.max_bytes, held.bytes, adding.bytes),
    ) else {
        return Room::NeverFits;
    };
    match (count, bytes, on_full) {
        (0, 0, _) => Room::Fits,
        (_, _, OnFull::Reject) => Room::Full,
        (count, bytes, OnFull::DropOldest) => Room::Free(Load { count, bytes }),
    }
}

/// The oldest ready messages to drop to free `need`, from `ready` (id and
/// body size, oldest first): `None` when dropping all of them is not enough.
pub fn victims(ready: impl IntoIterator<Item = (i64, u64)>, need: Load) -> Option<Vec<i64>> {
    let mut freed = Load::default();
    let mut ids = Vec::new();
    for (id, size) in ready {
        if freed.count >= need.count && freed.bytes >= need.bytes {
            break;
        }
        ids.push(id);
        freed.count += 1;
        freed.bytes += size;
    }
    (freed.count >= need.count && freed.bytes >= need.bytes).then_some(ids)
}

/// Why a message died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum DeadReason {
    /// Its last allowed attempt failed.
    #[value(name = "max_attempts")]
    MaxAttempts,
    /// Its TTL passed before it was delivered (or while it was back in the
    /// queue).
    Expired,
    /// A full queue with `--on-full drop-oldest` dropped it to make room.
    Dropped,
    /// A consumer rejected it (`nack --dead`).
    Rejected,
}

impl DeadReason {
    /// Every reason.
    pub const ALL: [DeadReason; 4] = [
        DeadReason::MaxAttempts,
        DeadReason::Expired,
        DeadReason::Dropped,
        DeadReason::Rejected,
    ];

    /// The name users see and the database stores.
    pub fn name(self) -> &'static str {
        match self {
            DeadReason::MaxAttempts => "max_attempts",
            DeadReason::Expired => "expired",
            DeadReason::Dropped => "dropped",
            DeadReason::Rejected => "rejected",
        }
    }

    /// The reason stored as `name`; `None` for anything else.
    pub fn from_name(name: &str) -> Option<DeadReason> {
        DeadReason::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// The most of a handler's stderr that `work` keeps as a message's
/// `last_error`: its last 4 KiB.
pub const LAST_ERROR_MAX: usize = 4096;

/// The last [`LAST_ERROR_MAX`] bytes of `text`, cut at a character boundary.
pub fn error_tail(text: &str) -> &str {
    if text.len() <= LAST_ERROR_MAX {
        return text;
    }
    let mut start = text.len() - LAST_ERROR_MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, per_ms: u64) -> Rate {
        Rate {
            count,
            per: Duration::from_millis(per_ms),
        }
    }

    /// Starts as many deliveries as allowed at each millisecond of
    /// `0..span_ms`, and returns how many started in each `per` window.
    fn simulate(r: Rate, span_ms: i64, step_ms: i64) -> Vec<u32> {
        let per = r.per.as_millis() as i64;
        let mut state = 0;
        let mut windows = vec![0; (span_ms / per) as usize];
        let mut now = 1_000_000;
        let start = now;
        while now < start + span_ms {
            let n = r.allowance(state, now);
            state = r.take(state, now, n);
            windows[((now - start) / per) as usize] += n;
            now += step_ms;
        }
        windows
    }

    #[test]
    fn a_fresh_bucket_allows_one_burst_of_count() {
        let r = rate(50, 1000);
        assert_eq!(r.allowance(0, 1_000_000), 50);
        let after = r.take(0, 1_000_000, 50);
        assert_eq!(r.allowance(after, 1_000_000), 0);
        // One interval (20 ms) later, one more.
        assert_eq!(r.allowance(after, 1_000_019), 0);
        assert_eq!(r.allowance(after, 1_000_020), 1);
        assert_eq!(r.next_at(after, 1_000_000), 1_000_020);
    }

    #[test]
    fn the_long_run_rate_never_exceeds_the_one_given() {
        for (count, per) in [(50, 1000), (3, 1000), (5, 60_000), (7, 10), (1, 1)] {
            let r = rate(count, per);
            let windows = simulate(r, per as i64 * 20, (per as i64 / 7).max(1));
            // The first window holds the burst and what refilled during it;
            // every later one at most `count`, and the bucket keeps up: each
            // holds at least count - 1.
            assert!(
                windows[0] < 2 * count,
                "{count}/{per}ms first window: {windows:?}"
            );
            for (i, &w) in windows.iter().enumerate().skip(1) {
                assert!(
                    w <= count && w + 1 >= count,
                    "{count}/{per}ms window {i}: {w}"
                );
            }
        }
    }

    #[test]
    fn rates_above_one_per_millisecond_hold() {
        let r = rate(5000, 1000);
        let windows = simulate(r, 5000, 1);
        assert!(
            windows[1..].iter().all(|&w| (4990..=5000).contains(&w)),
            "{windows:?}"
        );
    }

    #[test]
    fn an_idle_bucket_refills_to_one_burst_not_more() {
        let r = rate(10, 1000);
        let used = r.take(0, 1_000_000, 10);
        assert_eq!(r.allowance(used, 1_000_000 + 3_600_000), 10);
    }

    #[test]
    fn next_at_is_now_when_a_delivery_may_start() {
        let r = rate(2, 1000);
        assert_eq!(r.next_at(0, 5_000), 5_000);
        let s = r.take(0, 5_000, 2);
        assert_eq!(r.next_at(s, 5_000), 5_500);
        assert_eq!(r.allowance(s, 5_499), 0);
        assert_eq!(r.allowance(s, 5_500), 1);
    }

    #[test]
    fn rate_displays_as_given() {
        assert_eq!(rate(100, 1000).to_string(), "100/1s");
        assert_eq!(rate(5, 60_000).to_string(), "5/1m");
    }

    #[test]
    fn the_budget_is_the_least_of_cap_and_rate() {
        assert_eq!(claim_budget(10, false, 0, 99, None), 10);
        assert_eq!(claim_budget(10, true, 0, 0, None), 0);
        assert_eq!(claim_budget(10, false, 3, 1, None), 2);
        assert_eq!(claim_budget(10, false, 3, 5, None), 0);
        assert_eq!(claim_budget(10, false, 3, 0, Some(1)), 1);
        assert_eq!(claim_budget(2, false, 0, 0, Some(9)), 2);
    }

    #[test]
    fn a_message_ttl_overrides_the_queue_ttl() {
        assert_eq!(expires_at(100, None, None), None);
        assert_eq!(expires_at(100, None, Some(50)), Some(150));
        assert_eq!(expires_at(100, Some(10), Some(50)), Some(110));
        assert!(expired(Some(150), 150));
        assert!(!expired(Some(150), 149));
        assert!(!expired(None, i64::MAX));
    }

    fn load(count: u64, bytes: u64) -> Load {
        Load { count, bytes }
    }

    #[test]
    fn room_at_exactly_the_limit() {
        let limits = Limits {
            max_length: Some(3),
            max_bytes: None,
        };
        let r = OnFull::Reject;
        assert_eq!(room(limits, r, load(2, 0), load(1, 9)), Room::Fits);
        assert_eq!(room(limits, r, load(3, 0), load(1, 9)), Room::Full);
        assert_eq!(room(limits, r, load(0, 0), load(4, 9)), Room::NeverFits);
        assert_eq!(
            room(limits, OnFull::DropOldest, load(3, 0), load(2, 9)),
            Room::Free(load(2, 0))
        );
        let bytes = Limits {
            max_length: None,
            max_bytes: Some(100),
        };
        assert_eq!(room(bytes, r, load(5, 90), load(1, 10)), Room::Fits);
        assert_eq!(room(bytes, r, load(5, 90), load(1, 11)), Room::Full);
        assert_eq!(room(bytes, r, load(0, 0), load(1, 101)), Room::NeverFits);
        assert_eq!(
            room(bytes, OnFull::DropOldest, load(5, 90), load(1, 30)),
            Room::Free(load(0, 20))
        );
        assert_eq!(
            room(Limits::default(), r, load(u64::MAX / 2, 0), load(1, 1)),
            Room::Fits
        );
    }

    #[test]
    fn victims_are_the_oldest_until_enough_is_free() {
        let ready = [(1, 10), (2, 10), (3, 50)];
        assert_eq!(victims(ready, load(1, 0)), Some(vec![1]));
        assert_eq!(victims(ready, load(0, 15)), Some(vec![1, 2]));
        assert_eq!(victims(ready, load(1, 60)), Some(vec![1, 2, 3]));
        assert_eq!(victims(ready, load(0, 71)), None);
        assert_eq!(victims(ready, load(4, 0)), None);
        assert_eq!(victims(ready, load(0, 0)), Some(vec![]));
    }

    #[test]
    fn flow_settings_round_trip_through_their_stored_text() {
        assert_eq!(Flow::default().to_stored(), None);
        assert_eq!(Flow::from_stored(None), Flow::default());
        let flow = Flow {
            paused: true,
            max_in_flight: 3,
            rate: Some(rate(50, 1000)),
            ttl: Some(Duration::from_secs(60)),
            limits: Limits {
                max_length: Some(10),
                max_bytes: Some(1 << 20),
            },
            on_full: OnFull::DropOldest,
        };
        let stored = flow.to_stored().unwrap();
        assert_eq!(Flow::from_stored(Some(&stored)), flow);
        assert_eq!(Flow::from_stored(Some("not json")), Flow::default());
        let patch = FlowPatch {
            rate: Some(None),
            max_in_flight: Some(0),
            ..FlowPatch::default()
        };
        let patched = patch.apply(flow);
        assert_eq!((patched.rate, patched.max_in_flight), (None, 0));
        assert_eq!(patched.limits, flow.limits);
    }

    #[test]
    fn dead_reasons_round_trip_by_name() {
        for r in DeadReason::ALL {
            assert_eq!(DeadReason::from_name(r.name()), Some(r));
        }
        assert_eq!(DeadReason::from_name("other"), None);
    }

    #[test]
    fn the_error_tail_keeps_the_last_4_kib_on_a_char_boundary() {
        let short = "boom";
        assert_eq!(error_tail(short), "boom");
        let long = format!("{}{}", "é".repeat(3000), "end");
        let tail = error_tail(&long);
        assert!(tail.len() <= LAST_ERROR_MAX && tail.len() >= LAST_ERROR_MAX - 1);
        assert!(tail.ends_with("end"));
    }
}
