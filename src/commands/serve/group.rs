//! Group commit of publish requests: a writer thread, with a database
//! connection of its own, takes the publish requests waiting on the channel
//! and writes them in one transaction (one commit, one fsync), each request
//! still all or nothing on its own (`Store::publish_group`). A request is
//! answered once its group is committed, so a 2xx still means on disk.
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

use tokio::sync::oneshot;

use crate::Context;
use crate::commands::publish::ReadyPublish;
use crate::error::Exit;
use crate::store::{self, Db, PublishBatch, PublishJob};

/// Requests in one group at most.
const MAX_JOBS: usize = 256;

/// Body bytes in one group at most (a group always takes one request).
const MAX_BYTES: usize = 16 << 20;

/// A publish request waiting for its group, and where its answer goes.
struct Job {
    ready: ReadyPublish,
    answer: oneshot::Sender<anyhow::Result<Vec<i64>>>,
}

/// The writer threads and their channel.
pub(crate) struct Group {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
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
        })
    }

    /// Publishes `ready` in the next group; its ids once that committed.
    pub(crate) async fn publish(&self, ready: ReadyPublish) -> anyhow::Result<Vec<i64>> {
        let (answer, answered) = oneshot::channel();
        let sent = {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            jobs.as_ref()
                .is_some_and(|jobs| jobs.send(Job { ready, answer }).is_ok())
        };
        if !sent {
            return Err(stopped());
        }
        answered.await.map_err(|_| stopped())?
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
fn writer(ctx: &Context, mut db: Option<Db>, waiting: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let jobs = {
            let waiting = waiting.lock().unwrap_or_else(|e| e.into_inner());
            let Ok(first) = waiting.recv() else {
                return;
            };
            let mut bytes = first.ready.bytes();
            let mut jobs = vec![first];
            while jobs.len() < MAX_JOBS && bytes < MAX_BYTES {
                match waiting.try_recv() {
                    Ok(job) => {
                        bytes += job.ready.bytes();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        run_group(ctx, &mut db, jobs);
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
