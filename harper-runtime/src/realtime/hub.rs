//! The hub: one thread that takes each commit from the database's broadcast, encodes each
//! change once, and routes it to the subscribers that want it (by record key, or by table
//! and filter), each through its own bounded queue.
//!
//! Invariants:
//! - The hub never blocks on a subscriber: a full queue marks the subscriber lagged, and from
//!   then on the hub queues nothing for it until the subscriber clears the mark. Everything
//!   queued before the mark is contiguous, so the subscriber delivers it and then catches up
//!   from the change log (every commit is in the log before it reaches the hub).
//! - Deliveries to one subscriber follow commit order; one delivery holds all of a commit's
//!   messages for that subscriber.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{Notify, broadcast, mpsc};

use super::event::{self, EventKind};
use crate::query::Predicate;
use crate::record::Record;
use crate::schema::TableDef;
use crate::storage::{ChangeKind, Commit, key};

/// What one subscriber listens to.
pub(crate) enum Scope {
    /// One record, by its encoded primary key; `id` is the key's JSON text.
    Record { key: Vec<u8>, id: Vec<u8> },
    /// Every record of the table, or those matching the predicate.
    Collection(Option<Predicate>),
}

/// A commit's messages for one subscriber.
pub(crate) struct Delivery {
    pub seq: u64,
    pub messages: Vec<Bytes>,
}

/// The hub's side of one subscriber.
pub(crate) struct Sub {
    pub def: &'static TableDef,
    pub scope: Scope,
    queue: mpsc::Sender<Delivery>,
    /// Set by the hub when the queue overflowed; cleared by the subscriber before it catches
    /// up from the change log.
    pub lagged: AtomicBool,
    pub wake: Notify,
}

impl Sub {
    pub(crate) fn new(
        def: &'static TableDef,
        scope: Scope,
        capacity: usize,
    ) -> (Arc<Sub>, mpsc::Receiver<Delivery>) {
        let (queue, rx) = mpsc::channel(capacity.max(1));
        let sub = Arc::new(Sub {
            def,
            scope,
            queue,
            lagged: AtomicBool::new(false),
            wake: Notify::new(),
        });
        (sub, rx)
    }

    fn mark_lagged(&self) {
        self.lagged.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

#[derive(Default)]
struct Registry {
    by_record: HashMap<(&'static str, Vec<u8>), Vec<Arc<Sub>>>,
    by_table: HashMap<&'static str, Vec<Arc<Sub>>>,
}

impl Registry {
    fn list(&mut self, sub: &Sub) -> &mut Vec<Arc<Sub>> {
        match &sub.scope {
            Scope::Record { key, .. } => self
                .by_record
                .entry((sub.def.name, key.clone()))
                .or_default(),
            Scope::Collection(_) => self.by_table.entry(sub.def.name).or_default(),
        }
    }

    fn remove(&mut self, sub: &Arc<Sub>) {
        let empty = {
            let list = self.list(sub);
            list.retain(|s| !Arc::ptr_eq(s, sub));
            list.is_empty()
        };
        if empty {
            match &sub.scope {
                Scope::Record { key, .. } => {
                    self.by_record.remove(&(sub.def.name, key.clone()));
                }
                Scope::Collection(_) => {
                    self.by_table.remove(sub.def.name);
                }
            }
        }
    }

    fn all(&self) -> impl Iterator<Item = &Arc<Sub>> {
        self.by_record
            .values()
            .chain(self.by_table.values())
            .flatten()
    }
}

/// Shared between the hub thread and subscriptions.
pub(crate) struct Hub {
    registry: Mutex<Registry>,
    count: AtomicUsize,
    /// Times a subscriber's queue overflowed (it then caught up from the change log).
    lags: AtomicU64,
}

impl Hub {
    /// Starts the hub thread on `commits`. It ends when the database closes the channel.
    pub(crate) fn start(commits: broadcast::Receiver<Arc<Commit>>) -> std::io::Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            registry: Mutex::new(Registry::default()),
            count: AtomicUsize::new(0),
            lags: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&hub);
        std::thread::Builder::new()
            .name("harper-events".into())
            .spawn(move || run(weak, commits))?;
        Ok(hub)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn register(&self, sub: Arc<Sub>) {
        self.registry().list(&sub).push(sub);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unregister(&self, sub: &Arc<Sub>) {
        self.registry().remove(sub);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Subscribers currently registered.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn lags(&self) -> u64 {
        self.lags.load(Ordering::Relaxed)
    }
}

fn run(hub: std::sync::Weak<Hub>, mut commits: broadcast::Receiver<Arc<Commit>>) {
    loop {
        let received = commits.blocking_recv();
        let Some(hub) = hub.upgrade() else { return };
        match received {
            Ok(commit) => dispatch(&hub, &commit),
            // The hub itself fell behind: every subscriber catches up from the change log.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                for sub in hub.registry().all() {
                    sub.mark_lagged();
                    hub.lags.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One change, encoded lazily: each message is built at most once, whoever needs it.
struct Encoded<'c> {
    change: &'c crate::storage::Change,
    seq: u64,
    local_time: &'c str,
    id: Option<Vec<u8>>,
    messages: [Option<Bytes>; 3],
    records: Option<(Option<Record>, Option<Record>)>,
}

impl Encoded<'_> {
    fn message(&mut self, kind: EventKind) -> Bytes {
        let slot = kind as usize;
        if let Some(m) = &self.messages[slot] {
            return m.clone();
        }
        let id = self
            .id
            .get_or_insert_with(|| event::id_json(&self.change.id));
        let m = event::record_event(
            kind,
            id,
            self.change.json(),
            self.change.version,
            self.local_time,
            self.seq,
            None,
        );
        self.messages[slot] = Some(m.clone());
        m
    }

    /// The record after and before the change (decoded once, for filters).
    fn records(&mut self) -> &(Option<Record>, Option<Record>) {
        let (def, change) = (self.change.table, self.change);
        self.records.get_or_insert_with(|| {
            let decode =
                |json: Option<&[u8]>| json.and_then(|j| Record::from_stored_json(def, j).ok());
            (decode(change.json()), decode(change.previous_json()))
        })
    }

    /// What a collection subscriber with `filter` is told, if anything.
    fn for_collection(&mut self, filter: Option<&Predicate>) -> Option<Bytes> {
        let put = self.change.kind == ChangeKind::Put;
        let Some(p) = filter else {
            return Some(self.message(if put {
                EventKind::Put
            } else {
                EventKind::Delete
            }));
        };
        let (now, before) = {
            let (new, old) = self.records();
            (
                new.as_ref().is_some_and(|r| p.matches(r)),
                old.as_ref().is_some_and(|r| p.matches(r)),
            )
        };
        match (put, now, before) {
            (true, true, _) => Some(self.message(EventKind::Put)),
            (true, false, true) => Some(self.message(EventKind::Unmatched)),
            (false, _, true) => Some(self.message(EventKind::Delete)),
            _ => None,
        }
    }
}

fn dispatch(hub: &Hub, commit: &Commit) {
    let registry = hub.registry();
    if registry.by_record.is_empty() && registry.by_table.is_empty() {
        return;
    }
    let local_time = event::millis(event::now_micros());
    // (subscriber, message) in commit order; grouped per subscriber below.
    let mut out: Vec<(&Arc<Sub>, Bytes)> = Vec::new();
    for change in &commit.changes {
        let mut enc = Encoded {
            change,
            seq: commit.seq,
            local_time: &local_time,
            id: None,
            messages: [None, None, None],
            records: None,
        };
        if !registry.by_record.is_empty() {
            let k = key::encode_one(&change.id);
            if let Some(subs) = registry.by_record.get(&(change.table.name, k)) {
                let kind = match change.kind {
                    ChangeKind::Put => EventKind::Put,
                    ChangeKind::Delete => EventKind::Delete,
                };
                for sub in subs {
                    out.push((sub, enc.message(kind)));
                }
            }
        }
        if let Some(subs) = registry.by_table.get(change.table.name) {
            for sub in subs {
                let filter = match &sub.scope {
                    Scope::Collection(f) => f.as_ref(),
                    Scope::Record { .. } => continue,
                };
                if let Some(m) = enc.for_collection(filter) {
                    out.push((sub, m));
                }
            }
        }
    }
    if commit.changes.len() > 1 {
        // Stable: each subscriber's messages stay in commit order.
        out.sort_by_key(|(sub, _)| Arc::as_ptr(sub) as usize);
    }
    let mut rest = out.as_slice();
    while let Some(((sub, _), _)) = rest.split_first() {
        let n = rest.iter().take_while(|(s, _)| Arc::ptr_eq(s, sub)).count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        if sub.lagged.load(Ordering::SeqCst) {
            continue;
        }
        let delivery = Delivery {
            seq: commit.seq,
            messages: group.iter().map(|(_, m)| m.clone()).collect(),
        };
        match sub.queue.try_send(delivery) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                sub.mark_lagged();
                hub.lags.fetch_add(1, Ordering::Relaxed);
            }
            // The subscription is being dropped; it unregisters itself.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}
