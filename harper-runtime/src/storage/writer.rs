//! The writer thread: write transactions from async code run back to back on one thread.
//!
//! Write transactions run one at a time anyway (one writer lock). Run on tokio's blocking
//! pool, each concurrent request parks a pool thread on that lock and each hand-off wakes
//! one: under load, several context switches per write. Here async callers queue their
//! transaction to one thread, which runs them in arrival order without waiting between
//! them, and await the answer without holding a thread.
//!
//! Under [`Durability::Sync`] the writer thread does not wait for the fdatasync either: it
//! hands each commit to the sync thread and goes on with the next transaction. The sync
//! thread takes the commits in order: the fdatasync for the first covers every commit
//! published before it began, so the ones queued behind it are answered without another
//! ([`Database::sync_committed`], the same group commit as blocking writers use).
//!
//! Neither thread holds a [`Database`]: each queued job carries its own handle, so the
//! threads keep nothing open. They end when the database's last handle is dropped (their
//! channel closes).

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::sync::mpsc;

use super::{Database, Durability, WriteTx};
use crate::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A commit waiting for its fdatasync, and how to answer its caller.
struct PendingSync {
    db: Database,
    seq: u64,
    answer: Box<dyn FnOnce(Result<()>) + Send>,
}

/// The channels to the two threads, started on first use.
#[derive(Default)]
pub(super) struct Writer {
    jobs: OnceLock<mpsc::Sender<Job>>,
    syncs: OnceLock<mpsc::Sender<PendingSync>>,
}

impl Writer {
    fn submit(&self, job: Job) -> Result<()> {
        let jobs = start(&self.jobs, "harper-writer", |jobs: mpsc::Receiver<Job>| {
            while let Ok(job) = jobs.recv() {
                // A panicking transaction answers nobody (its caller is told so) and commits
                // nothing; the thread goes on (the writer lock recovers from poisoning).
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            }
        })?;
        jobs.send(job).map_err(|_| thread_gone("writer"))
    }

    /// The sync thread's queue (started on first use); holds no database handle.
    fn sync_queue(&self) -> Result<mpsc::Sender<PendingSync>> {
        let syncs = start(
            &self.syncs,
            "harper-sync",
            |syncs: mpsc::Receiver<PendingSync>| {
                // One commit at a time is enough for group commit: the first call syncs
                // through every commit published before it began, so the calls of the
                // commits queued behind it return at once.
                while let Ok(PendingSync { db, seq, answer }) = syncs.recv() {
                    let synced = db.sync_committed(seq);
                    // Dropped before the answer: a caller that then closes the database
                    // must hold its last handle.
                    drop(db);
                    answer(synced);
                }
            },
        )?;
        Ok(syncs.clone())
    }
}

/// Queues `pending` for its fdatasync, or answers it with the reason it cannot be.
fn sync_later(queue: Result<mpsc::Sender<PendingSync>>, pending: PendingSync) {
    match queue {
        Ok(queue) => {
            if let Err(mpsc::SendError(pending)) = queue.send(pending) {
                let PendingSync { db, answer, .. } = pending;
                drop(db);
                answer(Err(thread_gone("sync")));
            }
        }
        Err(e) => {
            let PendingSync { db, answer, .. } = pending;
            drop(db);
            answer(Err(e));
        }
    }
}

/// The sender to `slot`'s thread; on first use, starts the thread, which runs `run` on the
/// receiving end.
fn start<'a, T: Send + 'static>(
    slot: &'a OnceLock<mpsc::Sender<T>>,
    name: &str,
    run: impl FnOnce(mpsc::Receiver<T>) + Send + 'static,
) -> Result<&'a mpsc::Sender<T>> {
    if let Some(s) = slot.get() {
        return Ok(s);
    }
    let mut spawned = Ok(());
    let sender = slot.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<T>();
        spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(rx))
            .map(drop);
        tx
    });
    spawned.map_err(Error::Io)?;
    Ok(sender)
}

fn thread_gone(which: &str) -> Error {
    Error::Io(std::io::Error::other(format!(
        "the database's {which} thread is gone"
    )))
}

impl Database {
    /// Runs `f` as one atomic write transaction, like [`Database::write`], on the database's
    /// writer thread; resolves once it committed (and, under [`Durability::Sync`], once it
    /// is on disk). For async code: it holds no thread while it waits.
    pub async fn write_async<R, E, F>(&self, f: F) -> std::result::Result<R, E>
    where
        F: FnOnce(&mut WriteTx) -> std::result::Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let db = self.clone();
        let job: Job = Box::new(move || {
            let written = db.write_unsynced(f);
            if let Ok((_, Some(seq))) = &written
                && db.inner.durability == Durability::Sync
            {
                let queue = db.inner.writer_threads.sync_queue();
                let pending = PendingSync {
                    db,
                    seq: *seq,
                    answer: Box::new(move |synced: Result<()>| {
                        let out = written.map(|(out, _)| out);
                        let _ = answer.send(synced.map_err(E::from).and(out));
                    }),
                };
                sync_later(queue, pending);
                return;
            }
            // Dropped before the answer: a caller that then closes the database must hold
            // its last handle.
            drop(db);
            let _ = answer.send(written.map(|(out, _)| out));
        });
        self.inner.writer_threads.submit(job)?;
        answered.await.map_err(|_| {
            E::from(Error::Io(std::io::Error::other(
                "the write transaction panicked; it committed nothing",
            )))
        })?
    }
}
