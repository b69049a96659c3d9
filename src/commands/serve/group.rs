//! Group commit: a writer thread, with a database connection of its own,
//! takes the publish requests waiting on the channel and writes them in one
//! transaction (one commit, one fsync), each request still all or nothing
//! on its own (`Store::publish_group`). A request is answered once its
//! group is committed, so a 2xx still means on disk.
//!
//! Ack requests join the same groups: the receipts of the acks gathered
//! together are settled by one `Store::ack` call (one transaction), each
//! receipt judged on its own as always, and each request answered with the
//! outcomes of its own receipts. So do consume's claims where the backend
//! has one writer (`Store::claim_group`, see [`Group::takes_claims`]).
//!
//! There are as many writers as the backend writes side by side
//! (`Store::writers`): one on SQLite, a few on PostgreSQL, where one
//! writer gathers the next group while another commits.
//!
//! The requests' bodies are read and checked before they join a group
//! (`publish::prepare_input`, on a blocking thread of their own): the group
//! only writes.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::Context;
use crate::commands::publish::ReadyPublish;
use crate::error::Exit;
use crate::store::{self, ClaimJob, Db, Delivery, PublishBatch, PublishJob, Receipt, ReceiptError};

/// Requests in one group at most.
const MAX_JOBS: usize = 256;

/// Body bytes in one group at most (a group always takes one request).
const MAX_BYTES: usize = 16 << 20;

/// A publish request waiting for its group, and where its answer goes.
struct Job {
    ready: ReadyPublish,
    answer: oneshot::Sender<anyhow::Result<Vec<i64>>>,
}

/// The outcome of each receipt of an ack.
type Acked = Vec<Result<(), ReceiptError>>;

/// An ack request waiting for its group, and where its answer goes.
struct AckJob {
    receipts: Vec<Receipt>,
    answer: oneshot::Sender<anyhow::Result<Acked>>,
}

/// A claim (of a consume request) waiting for its group: its own answer,
/// or the error that kept the group from running it.
struct ClaimWork {
    queue: String,
    max: usize,
    visibility: Option<Duration>,
    answer: oneshot::Sender<anyhow::Result<store::Result<Vec<Delivery>>>>,
}

/// What waits on the channel.
enum Work {
    /// Boxed: a prepared publish is large, an ack small.
    Publish(Box<Job>),
    Ack(AckJob),
    Claim(ClaimWork),
}

impl Work {
    /// What it adds to a group's size.
    fn bytes(&self) -> usize {
        match self {
            Work::Publish(job) => job.ready.bytes(),
            Work::Ack(job) => job.receipts.len() * std::mem::size_of::<Receipt>(),
            Work::Claim(job) => job.queue.len(),
        }
    }
}

/// The writer threads and their channel.
pub(crate) struct Group {
    jobs: Mutex<Option<mpsc::Sender<Work>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Whether claims join the groups: where the backend has one writer
    /// (SQLite), claims that would wait for each other's commits share
    /// one; PostgreSQL claims side by side, each in one statement, faster
    /// than a group of them (measured: 0.78x grouped).
    claims: bool,
}

impl Group {
    /// Starts the writer threads, the first with `db` (opened outside the
    /// runtime: a PostgreSQL connection runs a small runtime of its own;
    /// the others open theirs on their own thread when first needed).
    pub(crate) fn start(ctx: &Context, db: Db) -> anyhow::Result<Group> {
        let (jobs, waiting) = mpsc::channel();
        let waiting = Arc::new(Mutex::new(waiting));
        let mut first = Some(db);
        let count = first.as_ref().map_or(1, |db| db.writers().max(1));
        let claims = count == 1;
        let mut threads = Vec::with_capacity(count);
        for n in 0..count {
            let (ctx, waiting, db) = (ctx.clone(), Arc::clone(&waiting), first.take());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("spool-group-{n}"))
                    .spawn(move || writer(&ctx, db, &waiting))?,
            );
        }
        Ok(Group {
            jobs: Mutex::new(Some(jobs)),
            threads: Mutex::new(threads),
            claims,
        })
    }

    /// Whether consume's claims go through the groups
    /// ([`Group::claim_blocking`]) rather than each on its own connection.
    pub(crate) fn takes_claims(&self) -> bool {
        self.claims
    }

    /// Publishes `ready` in the next group; its ids once that committed.
    pub(crate) async fn publish(&self, ready: ReadyPublish) -> anyhow::Result<Vec<i64>> {
        let (answer, answered) = oneshot::channel();
        self.send(Work::Publish(Box::new(Job { ready, answer })))?;
        answered.await.map_err(|_| stopped())?
    }

    /// Acks `receipts` in the next group; the outcome of each once that
    /// committed.
    pub(crate) async fn ack(&self, receipts: Vec<Receipt>) -> anyhow::Result<Acked> {
        let (answer, answered) = oneshot::channel();
        self.send(Work::Ack(AckJob { receipts, answer }))?;
        answered.await.map_err(|_| stopped())?
    }

    /// Claims up to `max` of `queue` in the next group, from a blocking
    /// thread: the claim's own answer (an unknown queue is its error), or
    /// the error that kept the group from running it.
    pub(crate) fn claim_blocking(
        &self,
        queue: &str,
        max: usize,
        visibility: Option<Duration>,
    ) -> anyhow::Result<store::Result<Vec<Delivery>>> {
        let (answer, answered) = oneshot::channel();
        self.send(Work::Claim(ClaimWork {
            queue: queue.to_owned(),
            max,
            visibility,
            answer,
        }))?;
        answered.blocking_recv().map_err(|_| stopped())?
    }

    fn send(&self, work: Work) -> anyhow::Result<()> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        match jobs.as_ref() {
            Some(jobs) if jobs.send(work).is_ok() => Ok(()),
            _ => Err(stopped()),
        }
    }

    /// Closes the channel and waits until the writers have answered every
    /// request they hold.
    pub(crate) fn close(&self) {
        drop(self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn stopped() -> anyhow::Error {
    crate::error::Failure::new(Exit::IoErr, "the server is stopping: publish again").into()
}

/// A writer thread: one request, then whatever else is already waiting,
/// as one group; until the channel is closed and empty. The channel is
/// held while a group is gathered, not while it is written.
fn writer(ctx: &Context, mut db: Option<Db>, waiting: &Mutex<mpsc::Receiver<Work>>) {
    loop {
        let work = {
            let waiting = waiting.lock().unwrap_or_else(|e| e.into_inner());
            let Ok(first) = waiting.recv() else {
                return;
            };
            let mut bytes = first.bytes();
            let mut work = vec![first];
            while work.len() < MAX_JOBS && bytes < MAX_BYTES {
                match waiting.try_recv() {
                    Ok(more) => {
                        bytes += more.bytes();
                        work.push(more);
                    }
                    Err(_) => break,
                }
            }
            work
        };
        let (mut jobs, mut acks, mut claims) = (Vec::new(), Vec::new(), Vec::new());
        for w in work {
            match w {
                Work::Publish(job) => jobs.push(*job),
                Work::Ack(job) => acks.push(job),
                Work::Claim(job) => claims.push(job),
            }
        }
        if !acks.is_empty() {
            run_acks(ctx, &mut db, acks);
        }
        if !claims.is_empty() {
            run_claims(ctx, &mut db, claims);
        }
        if !jobs.is_empty() {
            run_group(ctx, &mut db, jobs);
        }
    }
}

/// Runs `claims` in one transaction and answers each with its own
/// deliveries.
fn run_claims(ctx: &Context, db: &mut Option<Db>, claims: Vec<ClaimWork>) {
    let jobs: Vec<ClaimJob<'_>> = claims
        .iter()
        .map(|c| ClaimJob {
            queue: &c.queue,
            max: c.max,
            visibility: c.visibility,
        })
        .collect();
    let outcome = connection(ctx, db).and_then(|open| Ok(open.claim_group(&jobs)?));
    drop(jobs);
    match outcome {
        Ok(answers) if answers.len() == claims.len() => {
            for (claim, answer) in claims.into_iter().zip(answers) {
                let _ = claim.answer.send(Ok(answer));
            }
        }
        outcome => {
            // The transaction failed: each claim runs alone, for an answer
            // of its own.
            if outcome.as_ref().is_err_and(super::broken) {
                *db = None;
            }
            for claim in claims {
                let answer = connection(ctx, db)
                    .map(|open| open.claim(&claim.queue, claim.max, claim.visibility, false));
                let broken = match &answer {
                    Ok(Err(e)) => crate::error::store_exit(e) == Exit::IoErr,
                    Ok(Ok(_)) => false,
                    Err(e) => super::broken(e),
                };
                if broken {
                    *db = None;
                }
                let _ = claim.answer.send(answer);
            }
        }
    }
}

/// Settles the receipts of `acks` in one transaction and answers each
/// with the outcomes of its own.
fn run_acks(ctx: &Context, db: &mut Option<Db>, acks: Vec<AckJob>) {
    let all: Vec<Receipt> = acks
        .iter()
        .flat_map(|job| job.receipts.iter().copied())
        .collect();
    let outcome = connection(ctx, db).and_then(|open| Ok(open.ack(&all)?));
    match outcome {
        Ok(outcomes) if outcomes.len() == all.len() => {
            let mut outcomes = outcomes.into_iter();
            for job in acks {
                let own: Acked = outcomes.by_ref().take(job.receipts.len()).collect();
                let _ = job.answer.send(Ok(own));
            }
        }
        outcome => {
            // The transaction failed (or answered for other receipts than
            // it was given): each request runs alone, for an answer of its
            // own.
            if outcome.as_ref().is_err_and(super::broken) {
                *db = None;
            }
            for job in acks {
                let answer = connection(ctx, db).and_then(|open| Ok(open.ack(&job.receipts)?));
                if answer.as_ref().is_err_and(super::broken) {
                    *db = None;
                }
                let _ = job.answer.send(answer);
            }
        }
    }
}

/// The writer's connection, opened again after one broke.
fn connection<'d>(ctx: &Context, db: &'d mut Option<Db>) -> anyhow::Result<&'d mut Db> {
    if db.is_none() {
        *db = Some(ctx.store()?);
    }
    db.as_mut()
        .ok_or_else(|| anyhow::anyhow!("no database connection"))
}

/// Writes `jobs` in one transaction and answers each.
fn run_group(ctx: &Context, db: &mut Option<Db>, jobs: Vec<Job>) {
    let outcome = connection(ctx, db).and_then(|open| together(open, &jobs));
    match outcome {
        Ok(answers) => {
            for (job, answer) in jobs.into_iter().zip(answers) {
                let _ = job.answer.send(answer);
            }
        }
        Err(e) => {
            // The transaction itself failed (it could not start or
            // commit): nothing was published. Each request runs alone,
            // for an answer of its own.
            if super::broken(&e) {
                *db = None;
            }
            for job in jobs {
                let answer = connection(ctx, db).and_then(|open| job.ready.publish(open));
                if answer.as_ref().is_err_and(super::broken) {
                    *db = None;
                }
                let _ = job.answer.send(answer);
            }
        }
    }
}

/// The answers of `jobs` run as one group, or the error of the group's
/// transaction.
fn together(db: &mut Db, jobs: &[Job]) -> anyhow::Result<Vec<anyhow::Result<Vec<i64>>>> {
    let mut ids: Vec<Vec<i64>> = vec![Vec::new(); jobs.len()];
    let mut failed: Vec<Option<anyhow::Error>> = jobs.iter().map(|_| None).collect();
    let outcome = {
        let mut fills: Vec<_> = jobs
            .iter()
            .zip(ids.iter_mut())
            .zip(failed.iter_mut())
            .map(|((job, ids), failed)| {
                // Its own error is kept; the group is told only that it
                // failed (a rerun forgets the error of the run before).
                move |batch: &mut PublishBatch<'_>| -> store::Result<()> {
                    *failed = None;
                    match job.ready.fill(batch) {
                        Ok(got) => {
                            *ids = got;
                            Ok(())
                        }
                        Err(e) => {
                            *failed = Some(e);
                            Err(store::Error::Internal("the publish was given up".into()))
                        }
                    }
                }
            })
            .collect();
        let mut group: Vec<PublishJob<'_>> = jobs
            .iter()
            .zip(fills.iter_mut())
            .map(|(job, fill)| PublishJob {
                name: job.ready.queue(),
                ack: job.ready.ack(),
                fill,
            })
            .collect();
        db.publish_group(&mut group)?
    };
    Ok(outcome
        .into_iter()
        .zip(ids)
        .zip(failed)
        .map(|((answer, ids), failed)| match answer {
            Ok(()) => Ok(ids),
            Err(e) => Err(failed.unwrap_or_else(|| e.into())),
        })
        .collect())
}
