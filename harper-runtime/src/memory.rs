//! Resident memory of a serving process (Linux with glibc; nothing elsewhere).
//!
//! glibc's malloc gives threads their own arenas, up to eight per core, and keeps the memory
//! freed in each one: a burst of requests spread over tokio's worker and blocking threads
//! leaves tens of MB resident that no one uses. [`limit_arenas`] caps the arenas at two (the
//! `MALLOC_ARENA_MAX` environment variable, when set, wins); the server calls it when it
//! starts. [`IdleTrim`] returns freed memory to the system once a burst of requests is over
//! (`malloc_trim`), so what stays resident is what is in use: block cache, memtables and
//! the like.

use std::sync::atomic::{AtomicBool, Ordering};

/// Caps glibc malloc's arenas at `n` (once per process; the `MALLOC_ARENA_MAX` environment
/// variable, when set, wins). Threads then share arenas: a little more lock contention in
/// malloc, far less memory kept in per-thread arenas.
pub fn limit_arenas(n: i32) {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; any value is accepted or refused.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
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
