//! Claims, receipts, leases and their ends: ack, nack, extend, release,
//! attempts, delays and `work`'s steps.

use std::time::Duration;

use super::{Fixture, ids, max_attempts, only, receipts};
use crate::store::{ClaimJob, Error, Receipt};
use crate::store::{Done, NewMessage, Outcome, ReceiptError, Release, Settled, State, Sync};

/// A lease long enough that only [`Fixture::advance`] ends it.
const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn claims_go_by_priority_then_id_and_acks_finish_them(f: &mut Fixture) {
    let low = f.publish_n("q", 3);
    let high = f
        .publish(
            "q",
            NewMessage {
                body: b"{\"urgent\":true}",
                priority: 5,
                headers: Some("{\"h\":\"v\"}"),
                ..NewMessage::default()
            },
        )
        .expect("publish");
    assert!(low.windows(2).all(|w| w[0] < w[1]) && low[2] < high);
    let got = f.db.claim("q", 2, None, false).expect("claim");
    assert_eq!(ids(&got), [high, low[0]]);
    assert_eq!(got[0].body, b"{\"urgent\":true}");
    assert_eq!(got[0].headers.as_deref(), Some("{\"h\":\"v\"}"));
    assert_eq!((got[0].attempt, got[0].priority), (1, 5));
    assert!(got[0].lease_expires_at > got[0].published_at);
    assert_eq!(got[1].body, b"0");
    let outcome = f.db.ack(&receipts(&got)).expect("ack");
    assert_eq!(outcome, [Ok(()), Ok(())]);
    // Acking again is harmless.
    assert_eq!(f.db.ack(&receipts(&got)).expect("again"), [Ok(()), Ok(())]);
    // Nack and extend of a finished delivery are refused.
    assert_eq!(
        f.db.nack(&receipts(&got)[..1], Release::Now, None)
            .expect("nack"),
        [Err(ReceiptError::Finished)]
    );
    assert_eq!(
        f.db.extend(&receipts(&got)[..1], HOUR).expect("extend"),
        [Err(ReceiptError::Finished)]
    );
    let rest = f.db.claim("q", 10, None, false).expect("claim");
    assert_eq!(ids(&rest), [low[1], low[2]]);
    assert!(f.db.claim("q", 10, None, false).expect("empty").is_empty());
    assert_eq!(f.state("q", high), (State::Acked, 1));
    f.assert_counts_match("q");
}

pub(super) fn a_claim_group_answers_each_claim_on_its_own(f: &mut Fixture) {
    let q = f.publish_n("q", 5);
    let other = f.publish_n("other", 1);
    f.db.subscribe("t", "sub").expect("subscribe");
    let jobs = [
        ClaimJob {
            queue: "q",
            max: 2,
            visibility: None,
        },
        ClaimJob {
            queue: "missing",
            max: 1,
            visibility: None,
        },
        ClaimJob {
            queue: "q",
            max: 2,
            visibility: Some(HOUR),
        },
        ClaimJob {
            queue: "t",
            max: 1,
            visibility: None,
        },
        ClaimJob {
            queue: "other",
            max: 5,
            visibility: None,
        },
    ];
    let answers = f.db.claim_group(&jobs).expect("the group commits");
    assert_eq!(answers.len(), 5);
    // Claims of one queue take turns in the order given.
    assert_eq!(ids(answers[0].as_ref().expect("first")), q[..2]);
    assert_eq!(ids(answers[2].as_ref().expect("second")), q[2..4]);
    let second = answers[2].as_ref().expect("second");
    assert!(second[0].lease_expires_at - second[0].published_at >= 3_000_000);
    assert!(
        matches!(answers[1], Err(Error::UnknownQueue { .. })),
        "{:?}",
        answers[1]
    );
    assert!(
        matches!(answers[3], Err(Error::NameIsTopic { .. })),
        "{:?}",
        answers[3]
    );
    assert_eq!(ids(answers[4].as_ref().expect("other")), other);
    // They are leases like any other: acked by receipt, counted.
    let all: Vec<Receipt> = [&answers[0], &answers[2], &answers[4]]
        .into_iter()
        .flat_map(|a| receipts(a.as_ref().expect("leased")))
        .collect();
    assert!(f.db.ack(&all).expect("ack").iter().all(Result::is_ok));
    assert_eq!(
        ids(&f.db.claim("q", 10, None, false).expect("rest")),
        q[4..]
    );
    f.assert_counts_match("q");
    f.assert_counts_match("other");
}

pub(super) fn receipts_are_judged_one_by_one(f: &mut Fixture) {
    f.publish_n("q", 2);
    let got = f.db.claim("q", 2, Some(HOUR), false).expect("claim");
    let unknown_queue = Receipt {
        queue_id: 999_999,
        ..got[0].receipt
    };
    let unknown_msg = Receipt {
        msg_id: 999_999_999,
        ..got[0].receipt
    };
    let wrong_lease = Receipt {
        lease: got[0].receipt.lease ^ 1,
        ..got[0].receipt
    };
    let outcome =
        f.db.ack(&[unknown_queue, unknown_msg, wrong_lease, got[0].receipt])
            .expect("ack");
    assert_eq!(
        outcome,
        [
            Err(ReceiptError::Unknown),
            Err(ReceiptError::Unknown),
            Err(ReceiptError::LeaseEnded),
            Ok(())
        ]
    );
    // The second lease runs out: its receipt is refused, the message is ready.
    f.advance(HOUR + Duration::from_secs(1));
    assert_eq!(f.state("q", got[1].id), (State::Ready, 1));
    assert_eq!(
        f.db.extend(&[got[1].receipt], Duration::from_secs(5))
            .expect("extend"),
        [Err(ReceiptError::LeaseEnded)]
    );
    assert_eq!(
        f.db.ack(&[got[1].receipt]).expect("ack"),
        [Err(ReceiptError::LeaseEnded)]
    );
    let again = f.db.claim("q", 1, None, false).expect("claim");
    assert_eq!((again[0].id, again[0].attempt), (got[1].id, 2));
    assert_ne!(again[0].receipt, got[1].receipt);
    f.assert_counts_match("q");
}

pub(super) fn extend_keeps_a_lease_and_nack_gives_the_message_back(f: &mut Fixture) {
    f.publish_n("q", 2);
    let lease = Duration::from_secs(60);
    let got = f.db.claim("q", 2, Some(lease), false).expect("claim");
    assert_eq!(
        f.db.extend(&[got[0].receipt], Duration::from_secs(300))
            .expect("extend"),
        [Ok(())]
    );
    assert_eq!(
        f.db.nack(
            &[got[1].receipt],
            Release::After(Duration::from_secs(600)),
            None
        )
        .expect("nack"),
        [Ok(())]
    );
    // Past the first lease: the extended lease still holds, the nacked
    // message waits out its delay.
    f.advance(Duration::from_secs(120));
    assert!(f.db.claim("q", 2, None, false).expect("claim").is_empty());
    assert_eq!(f.state("q", got[0].id), (State::Leased, 1));
    assert_eq!(f.state("q", got[1].id), (State::Delayed, 1));
    // Next due: the extended lease, 300 s after the extend, 120 s ago.
    let due = f.db.due_in("q").expect("due").expect("some");
    assert!(
        due > Duration::from_secs(170) && due <= Duration::from_secs(180),
        "{due:?}"
    );
    assert_eq!(f.db.ack(&[got[0].receipt]).expect("ack"), [Ok(())]);
    f.advance(Duration::from_secs(300));
    assert!(f.db.claim("q", 2, None, false).expect("claim").is_empty());
    let due = f.db.due_in("q").expect("due").expect("some");
    assert!(due <= Duration::from_secs(180), "the delay: {due:?}");
    f.advance(Duration::from_secs(181));
    let again = f.db.claim("q", 2, None, false).expect("claim");
    assert_eq!((ids(&again), again[0].attempt), (vec![got[1].id], 2));
    f.assert_counts_match("q");
}

pub(super) fn the_last_failed_attempt_makes_a_message_dead(f: &mut Fixture) {
    f.db.create_queue("q", &max_attempts(2), None)
        .expect("create");
    let [a, b] = f.publish_n("q", 2)[..] else {
        panic!("two ids")
    };
    // a: nacked twice; b: its lease runs out twice.
    for attempt in 1..=2 {
        let got =
            f.db.claim("q", 2, Some(Duration::from_secs(60)), false)
                .expect("claim");
        assert_eq!(ids(&got), [a, b], "attempt {attempt}");
        assert_eq!(
            f.db.nack(&[got[0].receipt], Release::Now, None)
                .expect("nack"),
            [Ok(())]
        );
        f.advance(Duration::from_secs(61));
    }
    assert!(f.db.claim("q", 2, None, false).expect("claim").is_empty());
    assert_eq!(f.state("q", a), (State::Dead, 2));
    assert_eq!(f.state("q", b), (State::Dead, 2));
    f.assert_counts_match("q");
}

pub(super) fn counters_follow_every_transition(f: &mut Fixture) {
    f.db.create_queue("q", &max_attempts(1), None)
        .expect("create");
    f.publish_n("q", 5);
    let got = f.db.claim("q", 3, None, false).expect("claim");
    f.db.ack(&receipts(&got)[..1]).expect("ack");
    f.db.nack(&receipts(&got)[1..2], Release::Now, None)
        .expect("nack: dead, last attempt");
    let info = f.info("q");
    assert_eq!(
        (
            info.counts.ready,
            info.counts.delayed,
            info.counts.leased,
            info.counts.acked,
            info.counts.dead,
            info.published_total
        ),
        (2, 0, 1, 1, 1, 5)
    );
    let ready = f.db.peek("q", &only(State::Ready, 10)).expect("peek");
    assert_eq!(ready.len(), 2);
    f.assert_counts_match("q");
}

pub(super) fn delayed_messages_wait_for_their_time(f: &mut Fixture) {
    let now = f.now();
    let id = f
        .publish(
            "q",
            NewMessage {
                body: b"1",
                available_at: Some(now + 60_000),
                ..NewMessage::default()
            },
        )
        .expect("publish");
    assert!(f.db.claim("q", 1, None, false).expect("claim").is_empty());
    let peeked = f.db.peek_id("q", id).expect("peek").expect("some");
    assert_eq!(
        (peeked.state, peeked.due_at),
        (State::Delayed, Some(now + 60_000))
    );
    let due = f.db.due_in("q").expect("due").expect("some");
    assert!(
        due > Duration::from_secs(50) && due <= Duration::from_secs(60),
        "{due:?}"
    );
    f.advance(Duration::from_secs(59));
    assert!(f.db.claim("q", 1, None, false).expect("claim").is_empty());
    f.advance(Duration::from_secs(2));
    assert_eq!(f.state("q", id), (State::Ready, 0));
    assert_eq!(ids(&f.db.claim("q", 1, None, false).expect("claim")), [id]);
    f.assert_counts_match("q");
}

pub(super) fn quick_repeated_claims_still_see_expired_leases_and_keep_counts(f: &mut Fixture) {
    f.publish_n("q", 3);
    let first =
        f.db.claim("q", 1, Some(Duration::from_secs(60)), false)
            .expect("claim");
    f.advance(Duration::from_secs(61));
    // Within a second of the full claim (PostgreSQL's one-statement claim,
    // which must notice the expired lease and leave it to the full path).
    let again = f.db.claim("q", 1, None, false).expect("claim");
    assert_eq!((again[0].id, again[0].attempt), (first[0].id, 2));
    let next = f.db.claim("q", 5, None, false).expect("claim");
    assert_eq!(next.len(), 2);
    let mut all = receipts(&next);
    all.push(again[0].receipt);
    all.push(first[0].receipt);
    assert_eq!(
        f.db.ack(&all).expect("ack"),
        [Ok(()), Ok(()), Ok(()), Err(ReceiptError::LeaseEnded)]
    );
    f.assert_counts_match("q");
}

pub(super) fn work_step_settles_then_claims_in_one_go(f: &mut Fixture) {
    f.db.create_queue("q", &max_attempts(2), None)
        .expect("create");
    f.publish_n("q", 5);
    let first = f.db.work_step("q", &[], 4, None, None).expect("step");
    let got = first.claimed.expect("claimed");
    assert_eq!(got.len(), 4);
    assert_eq!(
        first.lease,
        Duration::from_secs(30),
        "the queue's visibility"
    );
    let done = [
        Done::new(got[0].receipt, Outcome::Ack),
        Done::new(got[1].receipt, Outcome::Retry),
        Done::new(got[2].receipt, Outcome::Release),
    ];
    // The released message is ready again at once, so the claim in the same
    // transaction can take it (after the never-delivered fifth, by id order).
    let second = f.db.work_step("q", &done, 2, None, None).expect("step");
    assert_eq!(
        second.settled,
        [
            Ok(Settled::Acked),
            Ok(Settled::Retrying),
            Ok(Settled::Released)
        ]
    );
    assert_eq!(
        ids(&second.claimed.expect("claimed")),
        [got[2].id, got[3].id + 1]
    );
    assert_eq!(f.state("q", got[0].id), (State::Acked, 1));
    assert_eq!(f.state("q", got[1].id), (State::Delayed, 1));
    assert_eq!(
        f.state("q", got[2].id),
        (State::Leased, 1),
        "released without counting, then claimed as attempt 1 again"
    );
    // The released message was leased again: its old receipt is refused.
    assert_eq!(
        f.db.release(&[got[2].receipt]).expect("release"),
        [Err(ReceiptError::LeaseEnded)]
    );
    // The retry waits out its backoff (the queue's retry delay, 1 s, give
    // or take a fifth), then comes back as attempt 2.
    f.advance(Duration::from_millis(1300));
    let third = f.db.work_step("q", &[], 10, None, None).expect("step");
    let third = third.claimed.expect("claimed");
    assert_eq!(
        third.iter().map(|d| (d.id, d.attempt)).collect::<Vec<_>>(),
        [(got[1].id, 2)]
    );
    f.db.set_sync(Sync::Full).expect("sync");
    f.db.flush().expect("flush");
    f.assert_counts_match("q");
}

pub(super) fn work_step_on_a_missing_queue_still_settles(f: &mut Fixture) {
    f.publish_n("q", 1);
    let got = f.db.claim("q", 1, None, false).expect("claim");
    let step =
        f.db.work_step(
            "nope",
            &[Done::new(got[0].receipt, Outcome::Ack)],
            1,
            None,
            None,
        )
        .expect("step");
    assert_eq!(step.settled, [Ok(Settled::Acked)]);
    assert!(matches!(step.claimed, Err(Error::UnknownQueue { .. })));
    assert_eq!(f.state("q", got[0].id), (State::Acked, 1));
    f.assert_counts_match("q");
}

pub(super) fn retry_on_the_last_attempt_is_dead_and_release_refuses_the_old_receipt(
    f: &mut Fixture,
) {
    f.db.create_queue("q", &max_attempts(1), None)
        .expect("create");
    f.publish_n("q", 2);
    let got = f.db.claim("q", 2, None, false).expect("claim");
    let step =
        f.db.work_step(
            "q",
            &[Done::new(got[0].receipt, Outcome::Retry)],
            0,
            None,
            None,
        )
        .expect("step");
    assert_eq!(step.settled, [Ok(Settled::Dead)]);
    assert_eq!(f.state("q", got[0].id), (State::Dead, 1));
    let released = f.db.release(&[got[1].receipt]).expect("release");
    assert_eq!(released, [Ok(())]);
    assert_eq!(f.state("q", got[1].id), (State::Ready, 0));
    let again = f.db.ack(&[got[1].receipt]).expect("ack");
    assert_eq!(
        again,
        [Err(ReceiptError::LeaseEnded)],
        "the receipt died with its lease"
    );
    f.assert_counts_match("q");
}

pub(super) fn release_lease_makes_a_leased_message_ready_without_counting_an_attempt(
    f: &mut Fixture,
) {
    f.db.create_queue("q", &max_attempts(1), None)
        .expect("create");
    f.publish_n("q", 2);
    let got = f.db.claim("q", 1, None, false).expect("claim");
    let (id, old) = (got[0].id, got[0].receipt);
    // On its last allowed attempt: a nack would kill it, a release must not.
    assert!(f.db.release_lease("q", id).expect("release"));
    assert_eq!(f.state("q", id), (State::Ready, 0));
    // The consumer that held it can no longer ack it.
    assert_eq!(
        f.db.ack(&[old]).expect("ack"),
        [Err(ReceiptError::LeaseEnded)]
    );
    // Not leased any more: a second release changes nothing.
    assert!(!f.db.release_lease("q", id).expect("again"));
    let q = f.info("q");
    assert_eq!((q.counts.ready, q.counts.leased, q.counts.dead), (2, 0, 0));
    // It is delivered again first, as attempt 1.
    let again = f.db.claim("q", 1, None, false).expect("claim again");
    assert_eq!((again[0].id, again[0].attempt), (id, 1));
    assert!(matches!(
        f.db.release_lease("nope", 1),
        Err(Error::UnknownQueue { .. })
    ));
    f.assert_counts_match("q");
}

pub(super) fn release_lease_leaves_expired_leases_to_the_lazy_rules(f: &mut Fixture) {
    f.db.create_queue("q", &max_attempts(1), None)
        .expect("create");
    f.publish_n("q", 1);
    let got =
        f.db.claim("q", 1, Some(Duration::from_secs(60)), false)
            .expect("claim");
    f.advance(Duration::from_secs(61));
    // The lease ran out on the last attempt: the message is dead, not released.
    assert!(!f.db.release_lease("q", got[0].id).expect("release"));
    let q = f.info("q");
    assert_eq!((q.counts.ready, q.counts.leased, q.counts.dead), (0, 0, 1));
    assert_eq!(f.state("q", got[0].id), (State::Dead, 1));
    assert!(matches!(
        f.db.release_lease("nope", 1),
        Err(Error::UnknownQueue { .. })
    ));
    f.assert_counts_match("q");
}
