//! One subscriber's stream: the current state (or a replay from the change log), then live
//! changes, with catch-up from the log whenever the subscriber fell behind.
//!
//! Invariant: every message with a sequence number up to `last_seq` has been handed out (or
//! is covered by the state sent), and none after it; live deliveries at or below `last_seq`
//! are duplicates and are skipped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::event::{self, EventKind, LogEntry};
use super::hub::{Delivery, Hub, Scope, Sub};
use crate::error::{Error, Result};
use crate::query::{Filter, Predicate, Query};
use crate::record::Record;
use crate::schema::TableDef;
use crate::storage::key::{self, Atom};
use crate::storage::tx::coerce_key;
use crate::storage::{Database, ReadTx, Reader};

/// Deliveries queued per subscriber before it counts as lagging.
pub const DEFAULT_QUEUE: usize = 1024;
/// Change-log entries read per catch-up step (bounded memory per subscriber).
const LOG_BATCH: usize = 256;
/// Records per message batch while sending a collection's current state.
const SNAPSHOT_BATCH: usize = 128;

/// What to subscribe to.
#[derive(Debug, Clone)]
pub enum Target {
    /// One record by primary key (it need not exist yet).
    Record(Atom),
    /// A table's records, optionally only those matching a filter.
    Collection(Option<Filter>),
}

/// One message for the subscriber: Harper's JSON event, with its change-log sequence.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: u64,
    /// The JSON text (see [`crate::realtime`] for its shapes).
    pub data: Bytes,
    /// True on the last message of a transaction (and of the initial state): resuming with
    /// `since = seq` after this message misses nothing and repeats nothing.
    pub resume_point: bool,
}

enum Work {
    /// Sending the current state, in batches from a blocking reader.
    Snapshot(mpsc::Receiver<Result<Vec<Message>>>),
    /// Reading the change log after `last_seq`.
    CatchUp(JoinHandle<Result<CatchUp>>),
    Live,
}

struct CatchUp {
    messages: Vec<Message>,
    /// The last sequence number read.
    through: u64,
    /// More entries may follow.
    more: bool,
    /// The log no longer holds the entries after `last_seq`.
    gap: bool,
}

/// A live subscription; see [`Database::subscribe_to`]. Dropping it unsubscribes.
pub struct Subscription {
    db: Database,
    hub: Arc<Hub>,
    sub: Arc<Sub>,
    rx: mpsc::Receiver<Delivery>,
    /// The collection filter, for reading the current state through the query planner.
    filter: Option<Filter>,
    last_seq: u64,
    out: VecDeque<Message>,
    work: Work,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(&self.sub);
        if let Work::CatchUp(h) = &self.work {
            h.abort();
        }
    }
}

impl Database {
    /// Subscribes to changes of `def`'s records. Without `since`, the current state comes
    /// first (the record, or every matching record), then every later change. With
    /// `since = n`, every change after sequence `n` is replayed from the change log instead;
    /// when the log no longer reaches back to `n` (or `n` is ahead of it), a `resync` message
    /// and the current state come first. Must be called within a tokio runtime.
    pub fn subscribe_to(
        &self,
        def: &'static TableDef,
        target: Target,
        since: Option<u64>,
    ) -> Result<Subscription> {
        self.subscribe_with(def, target, since, DEFAULT_QUEUE)
    }

    /// [`Database::subscribe_to`] with the subscriber's queue length (in transactions).
    pub fn subscribe_with(
        &self,
        def: &'static TableDef,
        target: Target,
        since: Option<u64>,
        queue: usize,
    ) -> Result<Subscription> {
        self.register_def(def)?;
        let filter = match &target {
            Target::Collection(f) => f.clone(),
            Target::Record(_) => None,
        };
        let scope = match target {
            Target::Record(atom) => {
                let atom = coerce_key(def, atom).ok_or_else(|| Error::InvalidQuery {
                    table: def.name.to_owned(),
                    position: None,
                    message: format!("not a valid {} key", def.name),
                })?;
                Scope::Record {
                    key: key::encode_one(&atom),
                    id: event::id_json(&atom),
                }
            }
            Target::Collection(None) => Scope::Collection(None),
            Target::Collection(Some(filter)) => {
                let predicate = self.read(|tx| Predicate::compile(tx, def, &filter))?;
                Scope::Collection(Some(predicate))
            }
        };
        let hub = self.hub()?;
        let (sub, rx) = Sub::new(def, scope, queue);
        // Registered before anything is read, so no commit falls between state and live.
        hub.register(sub.clone());
        let mut s = Subscription {
            db: self.clone(),
            hub,
            sub,
            rx,
            filter,
            last_seq: 0,
            out: VecDeque::new(),
            work: Work::Live,
        };
        let last = self.last_seq();
        match since {
            Some(n) if n <= last && n.saturating_add(1) >= self.oldest_seq() => {
                s.last_seq = n;
                s.work = s.catch_up();
            }
            Some(n) => {
                let why = if n > last {
                    format!("since={n} is ahead of the change log (last seq {last})")
                } else {
                    format!(
                        "the change log no longer reaches back to since={n} (oldest kept: {})",
                        self.oldest_seq()
                    )
                };
                s.resync(&why);
            }
            None => s.start_snapshot(None),
        }
        Ok(s)
    }

    /// Live subscriptions (for tests and metrics).
    pub fn subscriber_count(&self) -> usize {
        self.inner.hub.get().map_or(0, |h| h.len())
    }

    /// How many times a subscriber fell behind its queue and caught up from the change log.
    pub fn subscriber_lags(&self) -> u64 {
        self.inner.hub.get().map_or(0, |h| h.lags())
    }

    fn hub(&self) -> Result<Arc<Hub>> {
        if let Some(h) = self.inner.hub.get() {
            return Ok(h.clone());
        }
        let _init = self.inner.lock_commit();
        if let Some(h) = self.inner.hub.get() {
            return Ok(h.clone());
        }
        let hub = Hub::start(self.subscribe())?;
        let _ = self.inner.hub.set(hub.clone());
        Ok(hub)
    }
}

impl Subscription {
    /// The next message; waits for one. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Message> {
        loop {
            if let Some(m) = self.out.pop_front() {
                return Ok(m);
            }
            match &mut self.work {
                Work::Snapshot(rx) => match rx.recv().await {
                    Some(batch) => self.out.extend(batch?),
                    None => self.work = Work::Live,
                },
                Work::CatchUp(handle) => {
                    let joined = handle.await;
                    let done =
                        joined.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
                    self.finish_catch_up(done);
                }
                Work::Live => {
                    if self.sub.lagged.load(Ordering::SeqCst) {
                        // Deliver what was queued before the overflow, then read the rest
                        // from the log (clearing the mark first, so nothing falls between).
                        while let Ok(d) = self.rx.try_recv() {
                            self.accept(d);
                        }
                        if self.out.is_empty() {
                            self.sub.lagged.store(false, Ordering::SeqCst);
                            self.work = self.catch_up();
                        }
                        continue;
                    }
                    tokio::select! {
                        d = self.rx.recv() => match d {
                            Some(d) => self.accept(d),
                            None => return Err(Error::Io(std::io::Error::other("event hub stopped"))),
                        },
                        _ = self.sub.wake.notified() => {}
                    }
                }
            }
        }
    }

    /// The next message if one is ready now (never waits).
    pub fn ready(&mut self) -> Option<Message> {
        if self.out.is_empty()
            && matches!(self.work, Work::Live)
            && !self.sub.lagged.load(Ordering::SeqCst)
            && let Ok(d) = self.rx.try_recv()
        {
            self.accept(d);
        }
        self.out.pop_front()
    }

    /// The sequence number of the last transaction fully handed out.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn finish_catch_up(&mut self, done: CatchUp) {
        if done.gap {
            self.resync(&format!(
                "the change log no longer holds the changes after seq {}",
                self.last_seq
            ));
            return;
        }
        self.out.extend(done.messages);
        self.last_seq = self.last_seq.max(done.through);
        self.work = if done.more {
            self.catch_up()
        } else {
            Work::Live
        };
    }

    fn accept(&mut self, d: Delivery) {
        if d.seq <= self.last_seq {
            return;
        }
        let n = d.messages.len();
        for (i, data) in d.messages.into_iter().enumerate() {
            self.out.push_back(Message {
                seq: d.seq,
                data,
                resume_point: i + 1 == n,
            });
        }
        self.last_seq = d.seq;
    }

    fn resync(&mut self, why: &str) {
        if let Work::CatchUp(h) = &self.work {
            h.abort();
        }
        self.out.clear();
        self.start_snapshot(Some(why));
    }

    /// Sends the current state: the record (a delete when it is missing and this is a
    /// resync), or every matching record.
    fn start_snapshot(&mut self, resync: Option<&str>) {
        let (tx, seq) = self.db.read_at_seq();
        self.last_seq = seq;
        if let Some(why) = resync {
            self.out.push_back(Message {
                seq,
                data: event::resync_event(seq, why),
                resume_point: false,
            });
        }
        let sub = self.sub.clone();
        match &sub.scope {
            Scope::Record { key, id } => {
                let found = key::decode(key)
                    .map_err(|_| Error::Corrupt("subscription key".into()))
                    .and_then(|(atom, _)| tx.get_stored(sub.def, atom));
                let local = event::millis(event::now_micros());
                let data = match found {
                    Ok(Some(row)) => Some(event::record_event(
                        EventKind::Put,
                        id,
                        Some(row.json()),
                        row.version(),
                        &local,
                        seq,
                        None,
                    )),
                    Ok(None) if resync.is_some() => Some(event::record_event(
                        EventKind::Delete,
                        id,
                        None,
                        event::now_micros(),
                        &local,
                        seq,
                        None,
                    )),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "subscription state read failed");
                        None
                    }
                };
                if let Some(data) = data {
                    self.out.push_back(Message {
                        seq,
                        data,
                        resume_point: true,
                    });
                }
                self.work = Work::Live;
            }
            Scope::Collection(_) => {
                let (batches, rx) = mpsc::channel(2);
                let query = Query {
                    filter: self.filter.clone(),
                    ..Query::default()
                };
                tokio::task::spawn_blocking(move || snapshot(tx, seq, &sub, &query, batches));
                self.work = Work::Snapshot(rx);
            }
        }
    }

    fn catch_up(&self) -> Work {
        let (db, sub, after) = (self.db.clone(), self.sub.clone(), self.last_seq);
        Work::CatchUp(tokio::task::spawn_blocking(move || {
            read_log(&db, &sub, after)
        }))
    }
}

/// Streams a collection's current (matching) records as put messages with their size.
fn snapshot(
    tx: ReadTx,
    seq: u64,
    sub: &Sub,
    query: &Query,
    batches: mpsc::Sender<Result<Vec<Message>>>,
) {
    let local = event::millis(event::now_micros());
    let mut batch: Vec<Message> = Vec::with_capacity(SNAPSHOT_BATCH);
    let mut open = true;
    let result = tx.query_each(sub.def, query, &mut |row| {
        let id = event::id_json(&row.key()?);
        batch.push(Message {
            seq,
            data: event::record_event(
                EventKind::Put,
                &id,
                Some(row.json()),
                row.version(),
                &local,
                seq,
                Some(row.json().len()),
            ),
            resume_point: false,
        });
        if batch.len() == SNAPSHOT_BATCH {
            // Keep the last one back: it is marked as the resume point at the end.
            let last = batch.pop();
            let full = std::mem::replace(&mut batch, Vec::with_capacity(SNAPSHOT_BATCH));
            batch.extend(last);
            open = batches.blocking_send(Ok(full)).is_ok();
        }
        Ok(open)
    });
    match result {
        Ok(_) => {
            if let Some(last) = batch.last_mut() {
                last.resume_point = true;
            }
            if !batch.is_empty() {
                let _ = batches.blocking_send(Ok(batch));
            }
        }
        Err(e) => {
            let _ = batches.blocking_send(Err(e));
        }
    }
}

/// Reads up to [`LOG_BATCH`] change-log entries after `after`, keeping what `sub` wants.
fn read_log(db: &Database, sub: &Sub, after: u64) -> Result<CatchUp> {
    if after.saturating_add(1) < db.oldest_seq() {
        return Ok(CatchUp {
            messages: Vec::new(),
            through: after,
            more: false,
            gap: true,
        });
    }
    let local = event::millis(event::now_micros());
    let mut messages = Vec::new();
    let mut through = after;
    let mut read = 0;
    for entry in db.changes_since(after) {
        let (seq, bytes) = entry?;
        if seq != through + 1 {
            // Pruned while we read: the entries in between are gone.
            return Ok(CatchUp {
                messages: Vec::new(),
                through: after,
                more: false,
                gap: true,
            });
        }
        let e = LogEntry::parse(&bytes)?;
        if e.seq != seq {
            return Err(Error::Corrupt(format!(
                "change log entry {seq} says it is {}",
                e.seq
            )));
        }
        let first = messages.len();
        for c in &e.changes {
            if c.table != sub.def.name {
                continue;
            }
            let put = c.is_put();
            let value = c.value.map(|v| v.get().as_bytes());
            let kind = match &sub.scope {
                Scope::Record { id, .. } => {
                    if c.id.get().as_bytes() != id.as_slice() {
                        continue;
                    }
                    if put {
                        EventKind::Put
                    } else {
                        EventKind::Delete
                    }
                }
                Scope::Collection(None) => {
                    if put {
                        EventKind::Put
                    } else {
                        EventKind::Delete
                    }
                }
                // The state before is unknown here: a put that does not match is sent as
                // `unmatched` (drop it if held), and every delete is sent.
                Scope::Collection(Some(p)) => match value {
                    Some(v) if put => {
                        if p.matches(&Record::from_stored_json(sub.def, v)?) {
                            EventKind::Put
                        } else {
                            EventKind::Unmatched
                        }
                    }
                    _ => EventKind::Delete,
                },
            };
            messages.push(Message {
                seq,
                data: event::record_event(
                    kind,
                    c.id.get().as_bytes(),
                    value,
                    e.version,
                    &local,
                    seq,
                    None,
                ),
                resume_point: false,
            });
        }
        if let Some(last) = messages[first..].last_mut() {
            last.resume_point = true;
        }
        through = seq;
        read += 1;
        if read == LOG_BATCH {
            return Ok(CatchUp {
                messages,
                through,
                more: true,
                gap: false,
            });
        }
    }
    Ok(CatchUp {
        messages,
        through,
        more: false,
        gap: false,
    })
}
