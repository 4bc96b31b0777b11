//! Resident memory of a serving process (Linux with glibc; nothing elsewhere).
//!
//! glibc's malloc gives threads their own arenas, up to eight per core, and keeps the memory
//! freed in each one: a burst of requests spread over tokio's worker and blocking threads
//! leaves tens of MB resident that no one uses. [`tune_malloc`] caps the arenas at two and
//! keeps large buffers out of the heap; [`crate::Database`] calls it when it opens (a server
//! has one open before it binds), before its own threads start. A thread keeps the arena it
//! first allocated in, so a cap set after threads have allocated leaves their arenas in
//! place. [`IdleTrim`] returns freed memory to the system once a burst of requests is over
//! (`malloc_trim`), so what stays resident is what is in use: block cache, memtables and
//! the like.

use std::sync::atomic::{AtomicBool, Ordering};

/// Allocations of this size and above get their own mapping, returned whole when freed.
const MMAP_THRESHOLD: i32 = 128 << 10;

/// Sets glibc malloc up for a long-running server, once per process:
/// - at most two arenas: threads share them (a little more lock contention in malloc, far
///   less memory kept in per-thread arenas);
/// - a fixed mmap threshold of 128 KiB. By default glibc raises the threshold each time a
///   large block is freed, so after a while large buffers (response bodies, flush and
///   compaction buffers) are carved out of the heap, and the holes they leave between
///   long-lived small allocations (memtable entries) stay resident.
///
/// Call it at the start of `main`, before threads allocate, for the cap to hold for every
/// thread; later calls (and calls after the first) change nothing. The
/// `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` environment variables, when set, win.
pub fn tune_malloc() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets a malloc parameter; any value is accepted or refused.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        }
    }
}

/// Returns memory freed inside malloc's arenas to the system (whole free pages anywhere in
/// them, not only at the top). Takes a few milliseconds on a large heap: call it when idle.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes malloc's own locks; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Calls [`release_free_memory`] once after each burst of activity: `tick` is called
/// periodically with a counter that grows with activity (requests served); the first tick
/// that finds it unchanged after it moved trims.
#[derive(Debug, Default)]
pub struct IdleTrim {
    last: u64,
    busy: bool,
}

impl IdleTrim {
    /// True when this tick ends a burst (and memory should be released now).
    pub fn tick(&mut self, activity: u64) -> bool {
        if activity != self.last {
            self.last = activity;
            self.busy = true;
            false
        } else {
            std::mem::take(&mut self.busy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_each_burst() {
        let mut t = IdleTrim::default();
        assert!(!t.tick(0), "idle from the start: nothing to release");
        assert!(!t.tick(5));
        assert!(!t.tick(9));
        assert!(t.tick(9), "the burst is over");
        assert!(!t.tick(9), "once");
        assert!(!t.tick(10));
        assert!(t.tick(10));
        release_free_memory();
    }
}
