//! What readers show: `stats`, `peek`, the rate histories of `top`, and the
//! lazy transitions they apply.

use std::time::Duration;

use super::{Fixture, all_states, ids, max_attempts, only, receipts};
use crate::store::{Counts, Error, NewMessage, Release, State};

/// A lease long enough that only [`Fixture::advance`] ends it.
const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn stats_count_by_state_and_apply_the_lazy_rules(f: &mut Fixture) {
    f.db.create_queue("q", &max_attempts(1), None)
        .expect("create");
    f.publish_n("q", 6);
    let got = f.db.claim("q", 4, Some(HOUR), false).expect("claim");
    f.db.ack(&receipts(&got)[..1]).expect("ack");
    f.db.nack(&receipts(&got)[1..2], Release::Now, None)
        .expect("nack: dead, last attempt");
    // One lease runs out on its last attempt: dead at once for readers.
    let short =
        f.db.claim("q", 1, Some(Duration::from_secs(5)), false)
            .expect("claim");
    let before = f.info("q");
    assert_eq!((before.counts.leased, before.counts.dead), (3, 1));
    f.advance(Duration::from_secs(6));
    let infos = f.db.queue_infos().expect("infos");
    assert_eq!(infos.len(), 1);
    let q = &infos[0];
    assert_eq!(
        q.counts,
        Counts {
            ready: 1,
            delayed: 0,
            leased: 2,
            acked: 1,
            dead: 2
        }
    );
    assert_eq!(q.published_total, 6);
    assert_eq!((q.published_last_minute, q.acked_last_minute), (6, 1));
    assert!(q.oldest_ready_age_ms.is_some_and(|age| age >= 6000));
    assert_eq!(q.settings.max_attempts, 1);
    let dead = f.db.peek("q", &only(State::Dead, 10)).expect("peek");
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().any(|p| p.delivery.id == short[0].id));
    assert!(
        dead.iter()
            .all(|p| p.state == State::Dead && p.done_at.is_some())
    );
    let named = f.db.queue_infos_named(&["q".to_owned()]).expect("named");
    assert_eq!(named[0].counts, q.counts);
    assert!(matches!(
        f.db.queue_infos_named(&["nope".to_owned()]),
        Err(Error::UnknownQueue { .. })
    ));
    let db_info = f.db.database_info().expect("db");
    assert!(db_info.size_bytes > 0);
    assert!(!db_info.path.to_string_lossy().contains("password"));
    // Readers changed nothing: the stored rows still say leased.
    f.assert_counts_match("q");
    assert_eq!(
        f.health().queues[0].counted[State::Leased as usize],
        3,
        "stored as leased until a writer moves it"
    );
}

pub(super) fn peek_shows_messages_in_delivery_order_without_changing_them(f: &mut Fixture) {
    let now = f.now();
    let later = f
        .publish(
            "q",
            NewMessage {
                body: b"\"later\"",
                available_at: Some(now + 60_000),
                key: Some("k"),
                ..NewMessage::default()
            },
        )
        .expect("delayed");
    let plain = f.publish_n("q", 2);
    let urgent = f
        .publish(
            "q",
            NewMessage {
                body: b"1",
                priority: 9,
                raw: true,
                ..NewMessage::default()
            },
        )
        .expect("urgent");
    let leased = f.db.claim("q", 1, None, false).expect("claim");
    assert_eq!(ids(&leased), [urgent]);
    let all = all_states(10);
    let peeked = f.db.peek("q", &all).expect("peek");
    let order: Vec<(i64, State)> = peeked.iter().map(|p| (p.delivery.id, p.state)).collect();
    assert_eq!(
        order,
        [
            (plain[0], State::Ready),
            (plain[1], State::Ready),
            (later, State::Delayed),
            (urgent, State::Leased)
        ]
    );
    assert_eq!(peeked[2].due_at, Some(now + 60_000));
    assert_eq!(peeked[2].delivery.key.as_deref(), Some("k"));
    assert_eq!(peeked[3].lease_end, Some(leased[0].lease_expires_at));
    assert!(peeked[3].delivery.raw);
    let limited =
        f.db.peek("q", &crate::store::PeekQuery { limit: 1, ..all })
            .expect("peek");
    assert_eq!(limited.len(), 1);
    let one = f.db.peek_id("q", urgent).expect("peek id").expect("some");
    assert_eq!((one.state, one.delivery.attempt), (State::Leased, 1));
    assert!(f.db.peek_id("q", 999_999).expect("none").is_none());
    assert!(matches!(
        f.db.peek("nope", &all),
        Err(Error::UnknownQueue { .. })
    ));
    // Nothing changed: the next claim still gets the first plain message.
    assert_eq!(
        ids(&f.db.claim("q", 1, None, false).expect("claim")),
        [plain[0]]
    );
}

pub(super) fn rate_histories_bucket_by_minute_ending_now(f: &mut Fixture) {
    // 61 minutes before the end: 100 published and acked, outside the hour.
    f.publish_n("q", 100);
    let got = f.db.claim("q", 100, None, false).expect("claim");
    f.db.ack(&receipts(&got)).expect("ack");
    f.publish_n("idle", 1);
    f.advance(Duration::from_secs(61 * 60 - 150));
    // Two and a half minutes before the end: 7 published, 2 acked.
    f.publish_n("q", 7);
    let got = f.db.claim("q", 2, None, false).expect("claim");
    f.db.ack(&receipts(&got)).expect("ack");
    f.advance(Duration::from_secs(150));
    // The last minute: 3 published.
    f.publish_n("q", 3);
    let got = f.db.rate_histories(5).expect("rates");
    let q = &got["q"];
    assert_eq!(q.published, vec![0, 0, 7, 0, 3]);
    assert_eq!(q.acked, vec![0, 0, 2, 0, 0]);
    assert!(!got.contains_key("idle"), "{got:?}");
    // The last bucket is the window stats calls the last minute.
    let info = f.info("q");
    assert_eq!((info.published_last_minute, info.acked_last_minute), (3, 0));
    assert_eq!(info.published_total, 110);
    // Wider than the hour of kept rates: clamped to 60 buckets.
    let wide = &f.db.rate_histories(500).expect("rates")["q"];
    assert_eq!(wide.published.len(), 60);
    assert_eq!(wide.published.iter().sum::<i64>(), 10);
    f.assert_counts_match("q");
}

/// The lazy transitions run as SQL in a claim (promoting the due rows), in
/// `stats` (the due summary) and in `peek`'s ready rows, and as Rust in
/// `peek_id`: for every combination of stored state, due time and attempts
/// all agree with `rules::effective`. The rows are set up with raw SQL: some
/// combinations (a lease with no attempt, more attempts than allowed) are
/// no operation's result, but a rule must still read them one way.
pub(super) fn the_sql_of_the_lazy_transitions_agrees_with_the_rule(f: &mut Fixture) {
    use super::agreement::{DELAYED, EXPIRES, LEASED, MAX_ATTEMPTS, expected, tally};
    f.db.create_queue("q", &max_attempts(MAX_ATTEMPTS), None)
        .expect("create");
    let per = EXPIRES.len();
    f.publish_n("q", LEASED.len() * per);
    let leased =
        f.db.claim(
            "q",
            LEASED.len() * per,
            Some(Duration::from_secs(600)),
            false,
        )
        .expect("claim");
    let later = f.now() + 3_600_000;
    let delayed: Vec<i64> = (0..DELAYED.len() * per)
        .map(|_| {
            let msg = NewMessage {
                body: b"{}",
                available_at: Some(later),
                ..NewMessage::default()
            };
            f.publish("q", msg).expect("publish")
        })
        .collect();
    let ready = f.publish_n("q", per);
    let now = f.now();
    // (id, state, visible_at, attempts, expires_at)
    let mut rows: Vec<(i64, State, i64, i64, Option<i64>)> = Vec::new();
    for (i, (d, (due, attempts))) in leased.iter().zip(LEASED.repeat(per)).enumerate() {
        let expires = EXPIRES[i / LEASED.len()].map(|e| now + e);
        rows.push((d.id, State::Leased, now + due, attempts, expires));
    }
    for (i, (id, due)) in delayed.iter().zip(DELAYED.repeat(per)).enumerate() {
        let expires = EXPIRES[i / DELAYED.len()].map(|e| now + e);
        rows.push((*id, State::Delayed, now + due, 0, expires));
    }
    for (id, expires) in ready.iter().zip(EXPIRES) {
        rows.push((*id, State::Ready, now, 0, expires.map(|e| now + e)));
    }
    for (id, _, visible_at, attempts, expires) in &rows {
        let expires = expires.map_or("NULL".to_owned(), |e| e.to_string());
        f.execute(&format!(
            "UPDATE deliveries SET visible_at = {visible_at}, attempts = {attempts},
               expires_at = {expires}
             WHERE msg_id = {id}"
        ));
    }
    // SQLite's claims look for expired messages only in a queue whose row
    // says it may hold some (`QueueRow::may_expire`), as whatever writes an
    // expiry sets it.
    if f.kind() == crate::store::suite::Kind::Sqlite {
        f.execute("UPDATE queues SET may_expire = 1");
    }
    let want: Vec<State> = rows
        .iter()
        .map(|(_, state, visible_at, attempts, expires)| {
            expected(*state, *visible_at, *attempts, *expires, now)
        })
        .collect();
    assert!(want.contains(&State::Dead) && want.contains(&State::Ready));
    for ((id, ..), state) in rows.iter().zip(&want) {
        let peeked = f.db.peek_id("q", *id).expect("peek").expect("held");
        assert_eq!(peeked.state, *state, "peek of {id}");
    }
    let mut shown: Vec<i64> =
        f.db.peek("q", &only(State::Ready, 100))
            .expect("peek")
            .iter()
            .map(|p| p.delivery.id)
            .collect();
    shown.sort_unstable();
    let mut ready_ids: Vec<i64> = rows
        .iter()
        .zip(&want)
        .filter(|(_, s)| **s == State::Ready)
        .map(|((id, ..), _)| *id)
        .collect();
    ready_ids.sort_unstable();
    assert_eq!(shown, ready_ids, "peek's ready rows");
    let infos = f.db.queue_infos().expect("stats");
    assert_eq!(infos[0].counts, tally(&want), "stats");
    // A new connection: its first claim takes the full path, with the lazy
    // transitions, which write the states.
    let mut other = f.open();
    other.claim("q", 0, None, false).expect("claim nothing");
    for ((id, ..), state) in rows.iter().zip(&want) {
        let stored = f.count(&format!("SELECT state FROM deliveries WHERE msg_id = {id}"));
        assert_eq!(
            State::from_i64(stored),
            *state,
            "claim's transition of {id}"
        );
    }
    f.assert_counts_match("q");
}
