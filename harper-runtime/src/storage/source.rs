//! Reading keyspaces: from a snapshot (read transactions) or from a snapshot overlaid with a
//! write transaction's staged changes (read-your-own-writes). The query engine reads only
//! through [`Source`], so it behaves the same inside and outside write transactions.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Bound;

use fjall::{Keyspace, Readable, Slice, Snapshot};

use crate::error::Result;

/// A keyspace with a process-unique id (used to key staged writes).
#[derive(Clone)]
pub(crate) struct Ks {
    pub id: u32,
    pub handle: Keyspace,
    /// A records keyspace's cache of recently read records.
    pub cache: Option<std::sync::Arc<super::record_cache::RecordCache>>,
}

/// A range of raw keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    pub fn all() -> KeyRange {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// `[start, end)`.
    pub fn half_open(start: Vec<u8>, end: Vec<u8>) -> KeyRange {
        KeyRange {
            start: Bound::Included(start),
            end: Bound::Excluded(end),
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Whether the range can hold no key.
    pub fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        }
    }
}

pub(crate) type KvIter<'a> = Box<dyn Iterator<Item = Result<(Slice, Slice)>> + 'a>;

/// Counts what a query reads, so tests and benches can show that plans use indexes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub index_entries: Cell<u64>,
    pub records: Cell<u64>,
    /// When set: scans end once this many entries and records were read, and `exceeded` is
    /// raised (the caller discards what it got and runs the query elsewhere).
    pub budget: Option<u64>,
    pub exceeded: Cell<bool>,
}

impl Counters {
    fn over_budget(&self) -> bool {
        let over = self
            .budget
            .is_some_and(|b| self.index_entries.get() + self.records.get() > b);
        if over {
            self.exceeded.set(true);
        }
        over
    }
}

pub(crate) trait Source {
    fn get(&self, ks: &Ks, key: &[u8]) -> Result<Option<Slice>>;
    fn scan(&self, ks: &Ks, range: &KeyRange, reverse: bool) -> KvIter<'_>;
}

pub(crate) struct SnapshotSource {
    pub snapshot: Snapshot,
    /// The snapshot holds every commit up to this one (it may hold later ones): what
    /// record caches check their entries against.
    pub floor: u64,
}

fn fjall_iter(iter: fjall::Iter, reverse: bool) -> KvIter<'static> {
    let map = |g: fjall::Guard| g.into_inner().map_err(Into::into);
    if reverse {
        Box::new(iter.rev().map(map))
    } else {
        Box::new(iter.map(map))
    }
}

fn fjall_range(snapshot: &Snapshot, ks: &Ks, range: &KeyRange) -> fjall::Iter {
    snapshot.range(&ks.handle, (range.start.clone(), range.end.clone()))
}

impl Source for SnapshotSource {
    fn get(&self, ks: &Ks, key: &[u8]) -> Result<Option<Slice>> {
        let read = || self.snapshot.get(&ks.handle, key);
        Ok(match &ks.cache {
            Some(cache) => cache.read_through(key, self.floor, read)?,
            None => read()?,
        })
    }

    fn scan(&self, ks: &Ks, range: &KeyRange, reverse: bool) -> KvIter<'_> {
        if range.is_empty() {
            return Box::new(std::iter::empty());
        }
        fjall_iter(fjall_range(&self.snapshot, ks, range), reverse)
    }
}

/// Staged writes of one keyspace: `None` is a deletion.
pub(crate) type StagedMap = BTreeMap<Vec<u8>, Option<Slice>>;

/// A snapshot overlaid with staged writes.
pub(crate) struct OverlaySource<'a> {
    pub base: &'a SnapshotSource,
    pub staged: &'a std::collections::HashMap<u32, (Ks, StagedMap)>,
}

impl Source for OverlaySource<'_> {
    fn get(&self, ks: &Ks, key: &[u8]) -> Result<Option<Slice>> {
        if let Some((_, map)) = self.staged.get(&ks.id)
            && let Some(v) = map.get(key)
        {
            return Ok(v.clone());
        }
        self.base.get(ks, key)
    }

    fn scan(&self, ks: &Ks, range: &KeyRange, reverse: bool) -> KvIter<'_> {
        overlay_scan(self.base, self.staged, ks, range, reverse)
    }
}

/// Scans `base` overlaid with `staged`, borrowing only those two.
pub(crate) fn overlay_scan<'a>(
    base: &'a SnapshotSource,
    staged: &'a std::collections::HashMap<u32, (Ks, StagedMap)>,
    ks: &Ks,
    range: &KeyRange,
    reverse: bool,
) -> KvIter<'a> {
    let base_iter = base.scan(ks, range, reverse);
    let Some((_, map)) = staged.get(&ks.id) else {
        return base_iter;
    };
    if range.is_empty() {
        return base_iter;
    }
    // Staged sets are small (one transaction's writes); copying the range keeps the merge simple.
    let entries: Vec<(Vec<u8>, Option<Slice>)> = map
        .range::<Vec<u8>, _>((range.start.clone(), range.end.clone()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if entries.is_empty() {
        return base_iter;
    }
    let staged_iter: Box<dyn Iterator<Item = (Vec<u8>, Option<Slice>)>> = if reverse {
        Box::new(entries.into_iter().rev())
    } else {
        Box::new(entries.into_iter())
    };
    Box::new(Merge {
        base: base_iter.peekable(),
        staged: staged_iter.peekable(),
        reverse,
    })
}

type StagedIter = std::iter::Peekable<Box<dyn Iterator<Item = (Vec<u8>, Option<Slice>)>>>;

/// Merges a base iterator with staged entries in key order; staged entries win and staged
/// deletions hide base entries.
struct Merge<'a> {
    base: std::iter::Peekable<KvIter<'a>>,
    staged: StagedIter,
    reverse: bool,
}

impl Iterator for Merge<'_> {
    type Item = Result<(Slice, Slice)>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering;
        loop {
            // Which side holds the next key; `Equal` means the staged entry shadows the base one.
            let order = match (self.base.peek(), self.staged.peek()) {
                (None, None) => return None,
                (Some(_), None) | (Some(Err(_)), _) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(Ok((bk, _))), Some((sk, _))) => {
                    let o = bk.as_ref().cmp(sk.as_slice());
                    if self.reverse { o.reverse() } else { o }
                }
            };
            match order {
                Ordering::Less => return self.base.next(),
                Ordering::Equal => {
                    self.base.next();
                }
                Ordering::Greater => {}
            }
            if let Some((k, Some(v))) = self.staged.next() {
                return Some(Ok((Slice::from(k), v)));
            }
            // A staged deletion: the key is gone, move on.
        }
    }
}

/// A source that counts what passes through it.
pub(crate) struct Counting<'a, S: Source + ?Sized> {
    pub inner: &'a S,
    pub counters: &'a Counters,
    /// Keyspaces that hold records (reads of these count as record reads).
    pub is_record_ks: &'a dyn Fn(u32) -> bool,
}

impl<S: Source + ?Sized> Source for Counting<'_, S> {
    fn get(&self, ks: &Ks, key: &[u8]) -> Result<Option<Slice>> {
        let v = self.inner.get(ks, key)?;
        if (self.is_record_ks)(ks.id) {
            self.counters.records.set(self.counters.records.get() + 1);
        } else {
            self.counters
                .index_entries
                .set(self.counters.index_entries.get() + 1);
        }
        Ok(v)
    }

    fn scan(&self, ks: &Ks, range: &KeyRange, reverse: bool) -> KvIter<'_> {
        let record = (self.is_record_ks)(ks.id);
        let counters = self.counters;
        Box::new(
            self.inner
                .scan(ks, range, reverse)
                .take_while(move |_| !counters.over_budget())
                .inspect(move |_| {
                    let cell = if record {
                        &counters.records
                    } else {
                        &counters.index_entries
                    };
                    cell.set(cell.get() + 1);
                }),
        )
    }
}
