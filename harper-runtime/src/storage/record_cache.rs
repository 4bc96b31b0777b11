//! The latest committed bytes of recently read records, by record key, so point reads (the
//! record behind each index entry of a query, GET by id) skip fjall's memtable skiplist and
//! table lookups (about 2.5k and 4k instructions per read; a hit is a hash lookup).
//!
//! Why a hit is exact. An entry `(seq, bytes)` means: these are the key's bytes as of commit
//! `seq`, and no commit since has written the key. That holds because every commit removes
//! the entries of the record keys it writes before its batch is applied ([`Clock::begin`]),
//! and an entry is only ever added with `seq` = the last commit that wrote any record
//! ([`Clock::end`]) by a reader that saw that commit, while no commit is under way. So:
//! - a reader whose view holds every commit up to `floor` may use an entry with
//!   `seq <= floor`: the version it names is in the view, and no later version exists;
//! - a reader may offer what it read when no commit is under way and `last_write <= floor`:
//!   its view then holds every commit that wrote records, so what it read is the latest.
//!
//! A view whose exact commit is unknown uses as `floor` the last commit published before the
//! view was taken (it may hold later ones; never fewer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fjall::Slice;

/// What every table's cache shares: the commit state and the memory budget.
#[derive(Debug)]
pub(crate) struct Clock {
    /// Commits between [`Clock::begin`] and [`Clock::end`].
    writing: AtomicU32,
    /// The last commit that wrote records (its sequence number).
    last_write: AtomicU64,
    /// Bytes held by all caches (keys, values and a per-entry overhead).
    bytes: AtomicUsize,
    budget: usize,
}

/// Bookkeeping per entry beyond its key and value bytes (map slot, boxed key, slice header).
const ENTRY_OVERHEAD: usize = 64;
const SHARDS: usize = 16;

impl Clock {
    pub(crate) fn new(budget: usize, last_seq: u64) -> Arc<Clock> {
        Arc::new(Clock {
            writing: AtomicU32::new(0),
            last_write: AtomicU64::new(last_seq),
            bytes: AtomicUsize::new(0),
            budget,
        })
    }

    /// Bytes held by every table's cache.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A commit is about to apply its batch: until the returned guard drops, no reader adds
    /// entries. The caller removes the keys it writes from their caches while holding it.
    pub(crate) fn begin(self: &Arc<Clock>) -> Writing {
        self.writing.fetch_add(1, Ordering::SeqCst);
        Writing {
            clock: self.clone(),
            seq: None,
        }
    }
}

/// A commit under way (see [`Clock::begin`]). Dropping it ends the commit; `seq` must be set
/// once the batch is applied (a failed batch leaves it unset: `last_write` is not lowered, and
/// the entries it removed stay removed).
pub(crate) struct Writing {
    clock: Arc<Clock>,
    pub seq: Option<u64>,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Some(seq) = self.seq {
            self.clock.last_write.fetch_max(seq, Ordering::SeqCst);
        }
        self.clock.writing.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Entry {
    seq: u64,
    value: Slice,
}

/// Record key -> entry. foldhash's random per-process seed keeps keys a client chooses (ids)
/// from being picked to collide.
type Shard = HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>;

/// One table's cache (its records keyspace).
pub(crate) struct RecordCache {
    clock: Arc<Clock>,
    shards: [Mutex<Shard>; SHARDS],
}

impl std::fmt::Debug for RecordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCache").finish_non_exhaustive()
    }
}

fn shard_of(key: &[u8]) -> usize {
    // Record keys share prefixes and end alike; their last bytes differ most.
    let h = key.iter().rev().take(6).fold(key.len(), |h, &b| {
        h.wrapping_mul(31).wrapping_add(b as usize)
    });
    h % SHARDS
}

impl RecordCache {
    pub(crate) fn new(clock: Arc<Clock>) -> RecordCache {
        RecordCache {
            clock,
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
        }
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while holding a shard cannot leave an entry half-written (map operations
        // either happen or not): the map stays usable.
        self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The key's bytes, when cached and valid for a view holding every commit up to `floor`.
    pub(crate) fn get(&self, key: &[u8], floor: u64) -> Option<Slice> {
        let shard = self.shard(key);
        let e = shard.get(key)?;
        (e.seq <= floor).then(|| e.value.clone())
    }

    /// Offers bytes a view holding every commit up to `floor` read for `key`.
    pub(crate) fn offer(&self, key: &[u8], value: &Slice, floor: u64) {
        let clock = &self.clock;
        let size = key.len() + value.len() + ENTRY_OVERHEAD;
        if size > clock.budget / 64 {
            return; // one record never takes a large share
        }
        let mut shard = self.shard(key);
        // Checked under the shard lock: a commit that begins after this check removes its
        // keys from this shard only once the entry below is in (and so removes it).
        if clock.writing.load(Ordering::SeqCst) != 0 {
            return;
        }
        let seq = clock.last_write.load(Ordering::SeqCst);
        if seq > floor || shard.contains_key(key) {
            return;
        }
        if clock.bytes.load(Ordering::Relaxed) + size > clock.budget {
            // Over budget: evict an eighth of a shard's share at once (in hash order, which is
            // arbitrary), so the pass over the shard is paid once per many inserts.
            let goal = size.max(clock.budget / SHARDS / 8);
            let mut freed = 0;
            shard.retain(|k, e| {
                if freed >= goal {
                    return true;
                }
                freed += k.len() + e.value.len() + ENTRY_OVERHEAD;
                false
            });
            clock.bytes.fetch_sub(freed, Ordering::Relaxed);
            if clock.bytes.load(Ordering::Relaxed) + size > clock.budget {
                return;
            }
        }
        clock.bytes.fetch_add(size, Ordering::Relaxed);
        shard.insert(
            key.into(),
            Entry {
                seq,
                // A copy of exactly the record's bytes: a value read from a table is a view
                // into its whole decompressed block (4 KiB or more), which a shared clone would
                // keep alive, outside the budget (at 1M products, 16 MiB of records held
                // ~180 MB of blocks).
                value: Slice::from(&value[..]),
            },
        );
    }

    /// The key's bytes from the cache when it may answer, else from `read` (a view holding
    /// every commit up to `floor`), offering what that finds.
    pub(crate) fn read_through<E>(
        &self,
        key: &[u8],
        floor: u64,
        read: impl FnOnce() -> Result<Option<Slice>, E>,
    ) -> Result<Option<Slice>, E> {
        if let Some(v) = self.get(key, floor) {
            return Ok(Some(v));
        }
        let v = read()?;
        if let Some(v) = &v {
            self.offer(key, v, floor);
        }
        Ok(v)
    }

    /// Removes `key` (a commit writes it; call between [`Clock::begin`] and the batch).
    pub(crate) fn remove(&self, key: &[u8]) {
        if let Some(e) = self.shard(key).remove(key) {
            let size = key.len() + e.value.len() + ENTRY_OVERHEAD;
            self.clock.bytes.fetch_sub(size, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> RecordCache {
        RecordCache::new(Clock::new(1 << 20, 10))
    }

    #[test]
    fn entries_serve_views_that_hold_their_commit() {
        let c = cache();
        c.offer(b"k", &Slice::from(&b"v1"[..]), 10);
        assert_eq!(c.get(b"k", 10).as_deref(), Some(&b"v1"[..]));
        assert_eq!(
            c.get(b"k", 9),
            None,
            "a view older than the entry reads fjall"
        );
    }

    #[test]
    fn views_behind_the_last_write_offer_nothing() {
        let c = cache();
        c.offer(b"k", &Slice::from(&b"old"[..]), 9);
        assert_eq!(c.get(b"k", 100), None);
    }

    #[test]
    fn a_commit_removes_its_keys_and_blocks_offers_until_it_ends() {
        let c = cache();
        c.offer(b"k", &Slice::from(&b"v1"[..]), 10);
        let mut w = c.clock.begin();
        c.remove(b"k");
        // A reader that read the old version during the commit may not put it back.
        c.offer(b"k", &Slice::from(&b"v1"[..]), 10);
        assert_eq!(c.get(b"k", 10), None);
        w.seq = Some(11);
        drop(w);
        // Views taken before commit 11 was published still may not offer.
        c.offer(b"k", &Slice::from(&b"v1"[..]), 10);
        assert_eq!(c.get(b"k", 11), None);
        c.offer(b"k", &Slice::from(&b"v2"[..]), 11);
        assert_eq!(c.get(b"k", 11).as_deref(), Some(&b"v2"[..]));
        assert_eq!(c.get(b"k", 10), None);
    }

    #[test]
    fn a_failed_commit_keeps_the_last_write() {
        let c = cache();
        let w = c.clock.begin();
        c.remove(b"k");
        drop(w); // no seq: the batch failed
        c.offer(b"k", &Slice::from(&b"v"[..]), 10);
        assert_eq!(c.get(b"k", 10).as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn entries_own_their_bytes() {
        let c = cache();
        // Longer than a slice's inline storage, so the offered value lives on the heap.
        let value = Slice::from(vec![7u8; 200]);
        c.offer(b"k", &value, 10);
        let held = c.get(b"k", 10).unwrap();
        assert_eq!(held, value);
        assert_ne!(
            held.as_ptr(),
            value.as_ptr(),
            "the cache holds a copy, not a view that would keep the reader's buffer alive"
        );
    }

    #[test]
    fn the_budget_bounds_what_is_held() {
        let c = RecordCache::new(Clock::new(64 * 1024, 0));
        let value = Slice::from(vec![7u8; 200]);
        for i in 0..10_000u32 {
            c.offer(&i.to_be_bytes(), &value, 0);
            assert!(c.clock.bytes() <= 64 * 1024);
        }
        let held = (0..10_000u32)
            .filter(|i| c.get(&i.to_be_bytes(), 0).is_some())
            .count();
        assert!(held > 100, "it still caches: {held}");
        for i in 0..10_000u32 {
            c.remove(&i.to_be_bytes());
        }
        assert_eq!(c.clock.bytes(), 0, "removals give their bytes back");
    }
}
