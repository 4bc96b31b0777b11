//! The embedded store: one fjall database per data directory.
//!
//! Layout (keyspaces):
//! - `{Table}`: records, `encode(pk) -> [format][version][canonical JSON]`;
//! - `{Table}#{field}`: one per indexed field, `encode(value) ++ encode(pk) -> ()`;
//! - `__changes`: the change log, `seq (u64 BE) -> committed transaction (JSON)`;
//! - `__meta`: schema descriptors and index build state.
//!
//! Invariants:
//! - Every write transaction commits its records, their index entries and its change-log
//!   entry in one fjall batch, so readers and crash recovery see all of it or none of it.
//! - Write transactions run one at a time (the writer lock), so a transaction's reads see the
//!   latest committed state, change-log sequence numbers follow commit order, and events are
//!   published in that order.

pub(crate) mod change_log;
mod fresh_journal;
mod journal_sync;
pub mod key;
mod open_check;
pub(crate) mod record_cache;
mod schema_meta;
pub(crate) mod source;
pub(crate) mod tx;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use fjall::{Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::schema::{Table, TableDef};
use source::Ks;
pub use tx::{Change, ChangeKind, Commit, ReadTx, Reader, StoredRecord, WriteTx};

const META: &str = "__meta";

/// Options for every keyspace we create: small memtables ([`MEMTABLE_BYTES`]) keep resident
/// memory low (records are small, and flushed tables are served from the caches). Point
/// reads (a record per index entry) dominate queries, so every level keeps its block index
/// and filters in memory (about one entry per 4 KiB block), and data blocks carry a hash
/// index (two buckets per key) that finds a key's restart point without a binary search,
/// with a restart every 4 keys to bound the scan from there.
pub(crate) fn keyspace_options() -> KeyspaceCreateOptions {
    use fjall::config::{HashRatioPolicy, PinningPolicy, RestartIntervalPolicy};
    KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES)
        .index_block_pinning_policy(PinningPolicy::all(true))
        .filter_block_pinning_policy(PinningPolicy::all(true))
        .data_block_hash_ratio_policy(HashRatioPolicy::all(2.0))
        .data_block_restart_interval_policy(RestartIntervalPolicy::all(4))
}

const CHANGES: &str = "__changes";
/// Each change-log entry's size ([`change_log`]).
const CHANGE_SIZES: &str = "__change_sizes";

/// A keyspace's memtable is sealed and flushed at this size. A memtable costs about 1.6
/// times its bytes in memory (skiplist nodes, one allocation per key and value), and a
/// write touches several keyspaces (records, each index, the change log), so this bounds
/// most of a writing server's memory: at 8 MiB a storefront taking cart items sat at
/// 85-95 MiB resident, at 2 MiB at about 40 MiB, for 3-7% fewer writes per second (more,
/// smaller flushes). Stored with each keyspace when it is created; existing keyspaces keep
/// theirs.
pub const MEMTABLE_BYTES: u64 = 2 << 20;

/// When an acknowledged write is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Each commit is written to the operating system before it is acknowledged: it survives
    /// the process being killed, not a power loss. The fastest mode.
    #[default]
    Process,
    /// Each commit is fdatasync'ed before it is acknowledged; concurrent commits share one
    /// sync (group commit). Survives power loss.
    Sync,
}

/// Opens a [`Database`] with settings.
#[derive(Debug, Clone)]
pub struct DatabaseBuilder {
    path: PathBuf,
    temporary: bool,
    durability: Durability,
    cache_bytes: u64,
    record_cache_bytes: usize,
    retention: u64,
    log_bytes: u64,
}

/// The block cache's default capacity ([`DatabaseBuilder::cache_size`]).
pub const DEFAULT_BLOCK_CACHE_BYTES: u64 = 4 << 20;

/// The record cache's default budget ([`DatabaseBuilder::record_cache_size`]).
pub const DEFAULT_RECORD_CACHE_BYTES: usize = 16 << 20;

/// Change-log entries kept by default: subscribers reconnecting with `since` can resume from
/// any of the last this many transactions.
pub const DEFAULT_CHANGE_LOG_RETENTION: u64 = 100_000;

/// Bytes of change-log entries kept by default ([`DatabaseBuilder::change_log_bytes`]).
pub const DEFAULT_CHANGE_LOG_BYTES: u64 = 64 << 20;

impl DatabaseBuilder {
    /// How many of the newest change-log entries (transactions) to keep (default
    /// [`DEFAULT_CHANGE_LOG_RETENTION`]; at least 1). Older entries are deleted as new ones
    /// commit, so the log's size stays bounded; a subscriber resuming from before the oldest
    /// kept entry is told to resynchronise.
    pub fn change_log_retention(mut self, transactions: u64) -> Self {
        self.retention = transactions.max(1);
        self
    }

    /// At most how many bytes of change-log entries to keep (default
    /// [`DEFAULT_CHANGE_LOG_BYTES`]), on top of [`DatabaseBuilder::change_log_retention`]:
    /// the log keeps the newest entries within both. An entry holds every record its
    /// transaction wrote, so without it a bulk import would leave a second copy of what it
    /// imported in the log. The newest entry is always kept.
    pub fn change_log_bytes(mut self, bytes: u64) -> Self {
        self.log_bytes = bytes;
        self
    }

    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Block cache size in bytes (default [`DEFAULT_BLOCK_CACHE_BYTES`], 4 MiB; fjall's own
    /// default is 32 MiB). It fills with the table blocks reads touch, so it is resident
    /// memory once a server has run a while. Point reads of hot records are served by the
    /// record cache first ([`DatabaseBuilder::record_cache_size`]), and table files sit in
    /// the operating system's page cache, so a miss costs a copy, not a disk read. Raise it
    /// when scans over a working set larger than a few MiB dominate.
    pub fn cache_size(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Bytes of recently read records kept ready for point reads, across all tables (default
    /// [`DEFAULT_RECORD_CACHE_BYTES`]; 0 turns it off). A query reads the record behind each
    /// index entry it matches; from this cache that is a hash lookup instead of an LSM lookup.
    /// Each entry holds its own copy of a record's bytes, so the budget bounds what it keeps.
    pub fn record_cache_size(mut self, bytes: usize) -> Self {
        self.record_cache_bytes = bytes;
        self
    }

    pub fn open(self) -> Result<Database> {
        // Before fjall's flush and compaction threads start: they then share malloc's arenas.
        crate::memory::tune_malloc();
        let started = std::time::Instant::now();
        let path = self.path.clone();
        let checked = !self.temporary;
        let mut clean_seq = None;
        let existed = checked && path.join("version").exists();
        if checked {
            open_check::check_path(&path)?;
            clean_seq = open_check::clean_shutdown_seq(&path);
            open_check::scan_journals(&path, clean_seq.is_some())?;
        }
        let scanned = started.elapsed();
        let explain = |e: fjall::Error| open_check::explain_open_error(&path, existed, e);
        let fjall = fjall::Database::builder(&self.path)
            .cache_size(self.cache_bytes)
            .temporary(self.temporary)
            .open()
            .map_err(explain)?;
        let recovered = started.elapsed();
        let meta = fjall.keyspace(META, keyspace_options).map_err(explain)?;
        let changes = fjall.keyspace(CHANGES, keyspace_options).map_err(explain)?;
        let change_sizes = fjall
            .keyspace(CHANGE_SIZES, keyspace_options)
            .map_err(explain)?;
        let last_seq = match changes.last_key_value() {
            Some(g) => {
                let k = g.key().map_err(explain)?;
                let arr: [u8; 8] = k.as_ref().try_into().map_err(|_| {
                    open_check::data_dir_error(
                        &path,
                        crate::error::DataDirProblem::Damaged,
                        "its change log holds a malformed key",
                    )
                })?;
                u64::from_be_bytes(arr)
            }
            None => 0,
        };
        if let Some(clean) = clean_seq
            && last_seq < clean
        {
            return Err(open_check::data_dir_error(
                &path,
                crate::error::DataDirProblem::Damaged,
                format!(
                    "it holds transactions up to {last_seq} only, but it was shut down cleanly \
                     after transaction {clean}: files were truncated, replaced or damaged \
                     since. Start-up is refused so that nothing is served wrong; restore the \
                     directory from a backup, or move it aside to start empty"
                ),
            ));
        }
        let last_version = schema_meta::last_version(&changes)?;
        let log_limits = change_log::Limits {
            entries: self.retention,
            bytes: self.log_bytes,
        };
        let log_window =
            change_log::prune_at_open(&fjall, &changes, &change_sizes, last_seq, log_limits)?;
        if checked {
            open_check::clear_clean_shutdown(&path)?;
        }
        tracing::debug!(
            path = %path.display(),
            journal_scan_ms = ms(scanned),
            fjall_open_ms = ms(recovered - scanned),
            log_and_markers_ms = ms(started.elapsed() - recovered),
            "start-up: data directory opened"
        );
        let (events, _) = broadcast::channel(4096);
        Ok(Database {
            inner: Arc::new(Inner {
                fjall,
                meta,
                changes: Ks {
                    id: 1,
                    handle: changes,
                    cache: None,
                },
                path: self.path,
                tables: RwLock::new(crate::schema::NameMap::default()),
                writer: Mutex::new(WriterState {
                    next_seq: last_seq + 1,
                    log: log_window,
                }),
                commit_lock: Mutex::new(()),
                batch_gate: RwLock::new(()),
                committed_seq: AtomicU64::new(last_seq),
                record_clock: record_cache::Clock::new(self.record_cache_bytes, last_seq),
                oldest_seq: AtomicU64::new(log_window.oldest),
                change_sizes,
                log_limits,
                synced: GroupSync::new(last_seq),
                durability: self.durability,
                clock: AtomicU64::new(last_version),
                next_ks_id: AtomicU32::new(2),
                registrations: AtomicU64::new(0),
                events,
                hub: std::sync::OnceLock::new(),
                validators: crate::hooks::Validators::default(),
                temporary: self.temporary,
                write_failure: std::sync::OnceLock::new(),
                fsyncs: AtomicU64::new(0),
                fsync_nanos: AtomicU64::new(0),
                journal_sync: journal_sync::JournalSync::new(&path),
                writer_threads: writer::Writer::default(),
                fresh_journal: fresh_journal::FreshJournal::default(),
            }),
        })
    }
}

/// Milliseconds, for start-up logs.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// A handle to an open data directory. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Database {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub fjall: fjall::Database,
    meta: Keyspace,
    pub changes: Ks,
    path: PathBuf,
    tables: RwLock<crate::schema::NameMap<Arc<TableStore>>>,
    /// Held for the whole of a write transaction.
    writer: Mutex<WriterState>,
    /// Held while a commit's batch is applied and its sequence number published (briefly):
    /// a snapshot taken under it pairs with an exact sequence number.
    pub(crate) commit_lock: Mutex<()>,
    /// Written while a commit's batch is applied, read while a snapshot is taken: a
    /// snapshot never holds part of a batch. fjall publishes a batch's sequence number only
    /// once all of it is applied, but a flush or compaction finishing on another thread also
    /// moves the visible sequence number forward (lsm-tree 3.1.10,
    /// `upgrade_version_with_seqno`), past a batch still being applied; a snapshot taken
    /// then sees some of its writes and not others.
    pub(crate) batch_gate: RwLock<()>,
    /// The sequence number of the last committed transaction.
    committed_seq: AtomicU64,
    /// Shared by the tables' record caches ([`record_cache`]).
    pub(crate) record_clock: Arc<record_cache::Clock>,
    /// The oldest sequence number still in the change log (`committed_seq + 1` when empty).
    oldest_seq: AtomicU64,
    /// Each change-log entry's size ([`change_log`]).
    pub(crate) change_sizes: Keyspace,
    /// How much of the change log to keep.
    pub(crate) log_limits: change_log::Limits,
    synced: GroupSync,
    durability: Durability,
    /// The last version handed out (microseconds since the epoch, strictly increasing).
    clock: AtomicU64,
    next_ks_id: AtomicU32,
    /// Bumped after each table registration (transactions refresh older snapshots).
    registrations: AtomicU64,
    events: broadcast::Sender<Arc<Commit>>,
    /// Routes commits to subscriptions; started by the first one.
    pub(crate) hub: std::sync::OnceLock<Arc<crate::realtime::Hub>>,
    /// Business rules run on REST and GraphQL writes ([`crate::hooks`]).
    pub(crate) validators: crate::hooks::Validators,
    temporary: bool,
    /// Set by the first failed commit or sync: from then on writes are refused (fjall
    /// refuses them anyway once poisoned) and the failure is what they are told.
    write_failure: std::sync::OnceLock<WriteFailure>,
    /// Explicit fsyncs (durability `Sync` commits, [`Database::persist`]) and their total time.
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    /// Syncs the journal outside fjall's journal lock (commits go on during a sync).
    journal_sync: journal_sync::JournalSync,
    /// The writer and sync threads of [`Database::write_async`].
    writer_threads: writer::Writer,
    /// Armed by a clean shutdown that found everything flushed: replaces the journal once
    /// fjall has closed. Must stay the last field (fields drop in order, after `drop`).
    fresh_journal: fresh_journal::FreshJournal,
}

/// What [`Database::storage_stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStats {
    /// Bytes of blocks in the block cache.
    pub cache_bytes: u64,
    /// The block cache's capacity ([`DatabaseBuilder::cache_size`]).
    pub cache_capacity_bytes: u64,
    /// Bytes of records in memtables (active and sealed) not yet flushed to tables.
    pub memtable_bytes: u64,
    /// Bytes of journal files on disk (preallocated space included).
    pub journal_bytes: u64,
    /// Bytes held by the record cache ([`DatabaseBuilder::record_cache_size`]).
    pub record_cache_bytes: u64,
}

/// Why writes stopped.
#[derive(Debug, Clone)]
struct WriteFailure {
    disk_full: bool,
    cause: String,
}

impl Drop for Inner {
    /// A clean shutdown: everything is synced, then a marker records the last sequence number
    /// so the next open can tell truncated or damaged files from a crash's torn write.
    fn drop(&mut self) {
        if self.temporary || self.write_failure.get().is_some() {
            return;
        }
        let flushed = self.flush_memtables();
        if self.fjall.persist(PersistMode::SyncAll).is_ok() {
            open_check::write_clean_shutdown(
                &self.path,
                self.committed_seq.load(Ordering::Acquire),
            );
            if flushed {
                self.fresh_journal.arm(&self.path);
            }
        }
    }
}

impl Inner {
    /// Writes every keyspace's in-memory table to disk tables (at a clean shutdown), so the
    /// next start finds the journal's records already in tables. Returns true when every
    /// keyspace's memtables were found empty afterwards: the journal then holds nothing that
    /// is not in tables, and can be replaced by an empty one once fjall has closed
    /// ([`fresh_journal`]). Only speeds the next start up; gives up after a while rather
    /// than hold the shutdown (false).
    fn flush_memtables(&self) -> bool {
        let started = std::time::Instant::now();
        let mut keyspaces = Vec::new();
        for name in self.fjall.list_keyspace_names() {
            let Ok(ks) = self.fjall.keyspace(&name, keyspace_options) else {
                continue;
            };
            match ks.rotate_memtable() {
                Ok(_) => keyspaces.push(ks),
                Err(e) => {
                    tracing::warn!(keyspace = %name.as_ref(), error = %e, "cannot flush at shutdown");
                    return false;
                }
            }
        }
        let deadline = started + std::time::Duration::from_secs(10);
        let pause = || std::thread::sleep(std::time::Duration::from_millis(2));
        while keyspaces.iter().any(|k| k.sealed_memtable_count() > 0) {
            if std::time::Instant::now() > deadline {
                tracing::warn!("flushing at shutdown takes too long; the next start replays more");
                return false;
            }
            pause();
        }
        // Nothing writes at a shutdown (no handle is left), but check rather than assume: no
        // memtable, active or sealed, of any keyspace holds an entry (fjall's own test before
        // it deletes a journal compares the same seqnos). `tree` is fjall's (documented-hidden)
        // public field.
        let all_flushed = {
            use fjall::AbstractTree;
            keyspaces
                .iter()
                .all(|k| k.tree.get_highest_memtable_seqno().is_none())
                && self.fjall.list_keyspace_names().len() == keyspaces.len()
        };
        // Each flush asks for a compaction; when it moves the new tables out of level 0, let
        // it finish now rather than at the next start, beside its first requests. A
        // compaction that decides to wait for more tables leaves level 0 as it is: stop once
        // none has run for a moment.
        let flushed = std::time::Instant::now();
        let settle = std::time::Duration::from_millis(50);
        let mut quiet_since = flushed;
        while keyspaces.iter().any(|k| k.l0_table_count() > 0)
            && quiet_since.elapsed() < settle
            && std::time::Instant::now() < deadline
        {
            if self.fjall.active_compactions() > 0 {
                quiet_since = std::time::Instant::now();
            }
            pause();
        }
        tracing::debug!(
            ms = ms(started.elapsed()),
            all_flushed,
            "shutdown: in-memory tables flushed"
        );
        all_flushed
    }
}

pub(crate) struct WriterState {
    pub next_seq: u64,
    /// The change log's kept entries.
    pub log: change_log::Window,
}

/// The keyspaces of one table. Not part of the public API.
#[doc(hidden)]
pub struct TableStore {
    pub(crate) def: &'static TableDef,
    pub(crate) records: Ks,
    /// One per field of `def.fields`: the index keyspace when that field has one (the primary
    /// key never does: records are keyed by it).
    pub(crate) indexes: Vec<Option<Ks>>,
    /// One per `def.compound_indexes`: entries `field values ++ primary key`.
    pub(crate) compound: Vec<Ks>,
    /// What the planner learned about this table's index ranges.
    pub(crate) planner: PlannerStats,
}

/// The entry of `rec` (stored under `pk`) in a compound index on `fields`: each field's value
/// encoded in turn (null when absent; the fields are never lists), then the primary key.
pub(crate) fn compound_key(rec: &crate::record::Record, fields: &[usize], pk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + pk.len());
    for &f in fields {
        let atom = rec.atoms(f).into_iter().next().unwrap_or(key::Atom::Null);
        key::encode(&atom, &mut out);
    }
    out.extend_from_slice(pk);
    out
}

/// The keyspace label of a compound index: its field names joined by `+`.
pub(crate) fn compound_label(def: &TableDef, index: &crate::schema::CompoundIndexDef) -> String {
    index
        .fields
        .iter()
        .map(|&f| def.fields[f].name)
        .collect::<Vec<_>>()
        .join("+")
}

/// Sizes of index ranges counted by earlier query plans, reused until the table has taken
/// [`PlannerStats::FRESH_FOR`] writes since. Only the choice of plan depends on them, never a
/// result: a stale count can make a query slower, not wrong.
#[derive(Default)]
pub(crate) struct PlannerStats {
    writes: AtomicU64,
    /// Range key -> (count, the cap it was counted to, `writes` then).
    counts: Mutex<HashMap<Vec<u8>, (usize, usize, u64)>>,
}

impl PlannerStats {
    const FRESH_FOR: u64 = 64;
    const MAX_ENTRIES: usize = 4096;

    pub(crate) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// A remembered count, capped at `cap`, when it is still fresh and was counted far enough.
    pub(crate) fn count(&self, range: &[u8], cap: usize) -> Option<usize> {
        let now = self.writes.load(Ordering::Relaxed);
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let &(n, counted_to, at) = counts.get(range)?;
        let fresh = now.saturating_sub(at) < Self::FRESH_FOR;
        // Exact (below its cap), or capped at least as far as asked.
        (fresh && (n < counted_to || cap <= counted_to)).then(|| n.min(cap))
    }

    pub(crate) fn remember(&self, range: Vec<u8>, n: usize, cap: usize) {
        let now = self.writes.load(Ordering::Relaxed);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= Self::MAX_ENTRIES {
            counts.clear();
        }
        counts.insert(range, (n, cap, now));
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (or creates) the data directory at `path` with default settings.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Database::builder(path).open()
    }

    pub fn builder(path: impl AsRef<Path>) -> DatabaseBuilder {
        DatabaseBuilder {
            path: path.as_ref().to_path_buf(),
            temporary: false,
            durability: Durability::default(),
            cache_bytes: DEFAULT_BLOCK_CACHE_BYTES,
            record_cache_bytes: DEFAULT_RECORD_CACHE_BYTES,
            retention: DEFAULT_CHANGE_LOG_RETENTION,
            log_bytes: DEFAULT_CHANGE_LOG_BYTES,
        }
    }

    /// A database in a fresh temporary directory, deleted when the last handle is dropped.
    pub fn temporary() -> Result<Database> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "harper-{}-{}-{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut builder = Database::builder(path);
        builder.temporary = true;
        builder.open()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Opens table `T`'s keyspaces, checking its stored schema, building indexes that were
    /// added and dropping those that were removed. Done on first use anyway; call it at
    /// start-up to get migration errors and index builds early.
    pub fn register<T: Table>(&self) -> Result<()> {
        self.register_def(T::DEF).map(|_| ())
    }

    /// Registers a table by its definition (what [`Database::register`] does).
    pub fn register_def(&self, def: &'static TableDef) -> Result<()> {
        self.inner.table(def).map(|_| ())
    }

    /// Registers a business rule for writes of `T` that come from outside (REST, GraphQL);
    /// see [`crate::hooks`]. `App::validate` calls this.
    pub fn validate<T: Table>(
        &self,
        rule: impl Fn(&WriteTx, &T) -> std::result::Result<(), crate::hooks::Rejection>
        + Send
        + Sync
        + 'static,
    ) {
        self.inner.validators.add::<T>(rule);
    }

    /// The definitions of every registered table.
    pub fn tables(&self) -> Vec<&'static TableDef> {
        let tables = self.inner.tables.read().unwrap_or_else(|p| p.into_inner());
        let mut defs: Vec<_> = tables.values().map(|t| t.def).collect();
        defs.sort_by_key(|d| d.name);
        defs
    }

    /// A registered table by name.
    pub fn table_def(&self, name: &str) -> Option<&'static TableDef> {
        let tables = self.inner.tables.read().unwrap_or_else(|p| p.into_inner());
        tables.get(name).map(|t| t.def)
    }

    /// Runs `f` on a consistent snapshot of the whole database.
    pub fn read<R, E: From<Error>>(&self, f: impl FnOnce(&ReadTx) -> Result<R, E>) -> Result<R, E> {
        let tx = ReadTx::new(self.inner.clone());
        f(&tx)
    }

    /// Runs `f` as one atomic write transaction. When `f` returns `Ok`, everything it wrote
    /// commits at once (and is published to subscribers); when it returns `Err`, nothing it
    /// wrote is kept. Write transactions run one at a time, and each sees every commit
    /// before it, so read-check-write logic inside `f` cannot race with other writers.
    ///
    /// Blocking: call it from a blocking context; async code has [`Database::write_async`].
    pub fn write<R, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut WriteTx) -> Result<R, E>,
    ) -> Result<R, E> {
        let (out, seq) = self.write_unsynced(f)?;
        if let Some(seq) = seq
            && self.inner.durability == Durability::Sync
        {
            self.sync_committed(seq)?;
        }
        Ok(out)
    }

    /// Runs and commits a write transaction; the sequence number of its commit (`None` when
    /// it wrote nothing) is not yet synced under [`Durability::Sync`].
    fn write_unsynced<R, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut WriteTx) -> Result<R, E>,
    ) -> Result<(R, Option<u64>), E> {
        self.inner.check_writable()?;
        let guard = self.inner.lock_writer();
        let mut tx = WriteTx::new(&self.inner, guard);
        let out = f(&mut tx)?;
        let seq = tx.commit().map_err(|e| self.inner.storage_failed(e))?;
        Ok((out, seq))
    }

    /// Makes every commit up to `seq` durable (group commit).
    fn sync_committed(&self, seq: u64) -> Result<()> {
        self.inner
            .sync_through(seq)
            .map_err(|e| self.inner.storage_failed(e))
    }

    /// Reads one record by primary key.
    pub fn get<T: Table>(&self, key: impl Into<key::Atom>) -> Result<Option<T>> {
        self.read(|tx| tx.get::<T>(key))
    }

    /// Every committed transaction from now on, in commit order. A receiver that falls more
    /// than 4096 commits behind gets `RecvError::Lagged` and must resynchronise.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Commit>> {
        self.inner.events.subscribe()
    }

    /// The sequence number of the last committed transaction.
    pub fn last_seq(&self) -> u64 {
        self.inner.committed_seq.load(Ordering::Acquire)
    }

    /// The oldest sequence number still in the change log (`last_seq() + 1` when it is empty):
    /// [`Database::changes_since`] is complete for any `after >= oldest_seq() - 1`.
    pub fn oldest_seq(&self) -> u64 {
        self.inner.oldest_seq.load(Ordering::Acquire)
    }

    /// A read transaction together with the sequence number of the last commit it contains:
    /// it holds every commit up to that number and none after.
    pub fn read_at_seq(&self) -> (ReadTx, u64) {
        // The commit lock keeps commits out while the snapshot and the number are taken
        // (without waiting for a write transaction in progress, only for a batch being applied).
        let _commit = self.inner.lock_commit();
        let seq = self.last_seq();
        (ReadTx::new(self.inner.clone()), seq)
    }

    /// Change-log entries with sequence numbers above `after`, oldest first, as the JSON
    /// bytes that were logged (`{"seq","version","changes":[...]}`).
    pub fn changes_since(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, fjall::Slice)>> + use<> {
        let start = after.saturating_add(1).to_be_bytes().to_vec();
        self.inner.changes.handle.range(start..).map(|g| {
            let (k, v) = g.into_inner()?;
            let arr: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| Error::Corrupt("change log key".into()))?;
            Ok((u64::from_be_bytes(arr), v))
        })
    }

    /// Forces everything committed so far to disk (fdatasync).
    pub fn persist(&self) -> Result<()> {
        self.inner
            .timed_persist()
            .map_err(|e| self.inner.storage_failed(e))
    }

    /// Why writes are refused, when a storage failure (a full disk, an I/O error) stopped
    /// them; `None` while writes work. Reads keep working either way.
    pub fn write_failure(&self) -> Option<String> {
        self.inner.write_failure.get().map(|f| f.cause.clone())
    }

    /// Gives memory back once a burst of work is over (call when idle, from a blocking
    /// context): memory freed inside malloc goes back to the system
    /// ([`crate::memory::release_free_memory`]). Memtables stay: flushing them early would
    /// turn the next burst's reads of recent writes into table reads (about half as fast
    /// again per record) to save at most their 2 MiB each. The server calls it a second
    /// after the requests stop.
    pub fn release_memory(&self) {
        crate::memory::release_free_memory();
    }

    /// Memory and disk the storage engine holds now (for `/metrics`).
    pub fn storage_stats(&self) -> StorageStats {
        let f = &self.inner.fjall;
        StorageStats {
            cache_bytes: f.cache_size(),
            cache_capacity_bytes: f.cache_capacity(),
            memtable_bytes: f.write_buffer_size(),
            journal_bytes: f.journal_disk_space().unwrap_or(0),
            record_cache_bytes: self.inner.record_clock.bytes() as u64,
        }
    }

    /// Explicit fsyncs so far (commits under [`Durability::Sync`], shared by group commit,
    /// and [`Database::persist`]) and the total time they took. fjall's own syncs (memtable
    /// flushes, compactions) are not included.
    pub fn fsync_stats(&self) -> (u64, std::time::Duration) {
        (
            self.inner.fsyncs.load(Ordering::Relaxed),
            std::time::Duration::from_nanos(self.inner.fsync_nanos.load(Ordering::Relaxed)),
        )
    }
}

impl Inner {
    /// An fdatasync of the journal ([`journal_sync`]), counted and timed for
    /// [`Database::fsync_stats`].
    fn timed_persist(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let result = self.journal_sync.sync(&self.fjall);
        self.fsync_nanos.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Refuses a write once the storage has failed.
    fn check_writable(&self) -> Result<()> {
        match self.write_failure.get() {
            None => Ok(()),
            Some(f) => Err(Error::WritesUnavailable {
                disk_full: f.disk_full,
                message: format!(
                    "writes are refused since the storage failed: {}. Reads still work; \
                     restart the server once the cause is fixed",
                    f.cause
                ),
            }),
        }
    }

    /// Turns a failed commit or sync into [`Error::WritesUnavailable`] (and remembers the
    /// first failure: fjall refuses every later write once a write or sync has failed).
    /// Errors that are not storage failures pass through.
    fn storage_failed(&self, e: Error) -> Error {
        let failure = match &e {
            Error::Storage(fjall::Error::Poisoned) => None,
            Error::Storage(fjall::Error::Io(io))
            | Error::Storage(fjall::Error::Storage(fjall::LsmError::Io(io)))
            | Error::Io(io) => {
                let disk_full = matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                );
                Some(WriteFailure {
                    disk_full,
                    cause: if disk_full {
                        format!(
                            "the disk holding the data directory {} is full ({io}); free space \
                             on it",
                            self.path.display()
                        )
                    } else {
                        format!(
                            "writing to the data directory {} failed ({io})",
                            self.path.display()
                        )
                    },
                })
            }
            Error::Storage(other) => Some(WriteFailure {
                disk_full: false,
                cause: format!(
                    "writing to the data directory {} failed ({other})",
                    self.path.display()
                ),
            }),
            _ => return e,
        };
        let first = match failure {
            Some(f) => {
                let _ = self.write_failure.set(f.clone());
                self.write_failure.get().cloned().unwrap_or(f)
            }
            None => self.write_failure.get().cloned().unwrap_or(WriteFailure {
                disk_full: false,
                cause: format!(
                    "an earlier write or sync to the data directory {} failed",
                    self.path.display()
                ),
            }),
        };
        tracing::error!(cause = %first.cause, "a write failed; writes are refused until a restart");
        Error::WritesUnavailable {
            disk_full: first.disk_full,
            message: format!(
                "the write was not applied: {}. Writes are refused until the server is \
                 restarted; reads still work",
                first.cause
            ),
        }
    }

    /// A snapshot of everything committed, with the last commit published before it was
    /// taken (it holds that one and every earlier one).
    pub(crate) fn snapshot_source(&self) -> source::SnapshotSource {
        let _no_batch = self.batch_gate.read().unwrap_or_else(|p| p.into_inner());
        let floor = self.committed_seq.load(Ordering::Acquire);
        source::SnapshotSource {
            snapshot: self.fjall.snapshot(),
            floor,
        }
    }

    pub(crate) fn lock_commit(&self) -> MutexGuard<'_, ()> {
        self.commit_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        // A panic inside a write closure poisons the lock; the state it guards (the next
        // sequence number) is only changed after a successful commit, so it stays valid.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new version, strictly greater than every earlier one (microseconds since the epoch).
    pub(crate) fn next_version(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut last = self.clock.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .clock
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    pub(crate) fn alloc_ks(&self, handle: Keyspace) -> Ks {
        Ks {
            id: self.next_ks_id.fetch_add(1, Ordering::Relaxed),
            handle,
            cache: None,
        }
    }

    /// The open table for `def`, opening and migrating it on first use. The flag is true when
    /// this call opened it (snapshots taken before may miss the indexes it just built).
    ///
    /// Needs no writer lock: no commit can touch a table before it is registered, and the
    /// `tables` write lock keeps others from using it until its indexes are complete.
    pub(crate) fn table(&self, def: &'static TableDef) -> Result<(Arc<TableStore>, bool)> {
        {
            let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = tables.get(def.name) {
                return Ok((t.clone(), false));
            }
        }
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tables.get(def.name) {
            return Ok((t.clone(), false));
        }
        let store = Arc::new(schema_meta::open_table(self, def)?);
        tables.insert(def.name, store.clone());
        self.registrations.fetch_add(1, Ordering::AcqRel);
        Ok((store, true))
    }

    pub(crate) fn generation(&self) -> u64 {
        self.registrations.load(Ordering::Acquire)
    }

    /// Publishes a commit, after which the change log starts at `oldest_seq`.
    pub(crate) fn publish(&self, commit: Arc<Commit>, oldest_seq: u64) {
        self.oldest_seq.fetch_max(oldest_seq, Ordering::AcqRel);
        self.committed_seq.store(commit.seq, Ordering::Release);
        // No receivers is fine: nobody is subscribed.
        let _ = self.events.send(commit);
    }

    /// Makes every commit up to `seq` durable, sharing one fdatasync among concurrent callers.
    fn sync_through(&self, seq: u64) -> Result<()> {
        let sync = &self.synced;
        let mut state = sync.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.synced >= seq {
                return Ok(());
            }
            // After a failed fdatasync the kernel may have dropped the pages it could not
            // write: a later sync that succeeds proves nothing about them.
            self.check_writable()?;
            if !state.in_progress {
                state.in_progress = true;
                let target = self.committed_seq.load(Ordering::Acquire);
                drop(state);
                let result = self.timed_persist();
                state = sync.state.lock().unwrap_or_else(|p| p.into_inner());
                state.in_progress = false;
                if result.is_ok() {
                    state.synced = state.synced.max(target);
                }
                sync.done.notify_all();
                result?;
            } else {
                state = sync.done.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

/// Group commit: one thread syncs while the others wait for it and find their commit covered.
struct GroupSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

struct SyncState {
    synced: u64,
    in_progress: bool,
}

impl GroupSync {
    fn new(synced: u64) -> GroupSync {
        GroupSync {
            state: Mutex::new(SyncState {
                synced,
                in_progress: false,
            }),
            done: Condvar::new(),
        }
    }
}

impl Database {
    /// Checks that every index of every registered table holds exactly the entries its
    /// records call for, and that every record decodes. Reads everything: for tests, crash
    /// checks and operators, not for request paths.
    pub fn check_integrity(&self) -> Result<()> {
        let snapshot = self.inner.fjall.snapshot();
        let tables: Vec<Arc<TableStore>> = {
            let t = self.inner.tables.read().unwrap_or_else(|p| p.into_inner());
            t.values().cloned().collect()
        };
        for store in tables {
            check_table(&snapshot, &store)?;
        }
        Ok(())
    }

    /// Approximate number of records in a registered table (cheap; for planning and limits).
    pub fn approximate_len(&self, def: &'static TableDef) -> Result<u64> {
        let (store, _) = self.inner.table(def)?;
        Ok(store.records.handle.approximate_len() as u64)
    }
}

fn check_table(snapshot: &fjall::Snapshot, store: &TableStore) -> Result<()> {
    use fjall::Readable;
    use std::collections::BTreeSet;
    let def = store.def;
    let mut expected: Vec<BTreeSet<Vec<u8>>> = vec![BTreeSet::new(); def.fields.len()];
    let mut expected_compound: Vec<BTreeSet<Vec<u8>>> = vec![BTreeSet::new(); store.compound.len()];
    for g in snapshot.iter(&store.records.handle) {
        let (k, v) = g.into_inner()?;
        let (_, json) = crate::record::split_stored(&v)?;
        let rec = crate::record::Record::from_stored_json(def, json)?;
        let pk = rec
            .key_atom()
            .map_err(|_| Error::Corrupt(format!("{} record without a primary key", def.name)))?;
        if key::encode_one(&pk) != k.as_ref() {
            return Err(Error::Corrupt(format!(
                "{} record {pk} is stored under another key",
                def.name
            )));
        }
        for (i, index) in store.indexes.iter().enumerate() {
            if index.is_some() {
                for atom in rec.atoms(i) {
                    let mut ik = key::encode_one(&atom);
                    ik.extend_from_slice(&k);
                    expected[i].insert(ik);
                }
            }
        }
        for (c, index) in def.compound_indexes.iter().enumerate() {
            expected_compound[c].insert(compound_key(&rec, index.fields, &k));
        }
    }
    for (i, index) in store.indexes.iter().enumerate() {
        let Some(index) = index else { continue };
        let mut actual = BTreeSet::new();
        for g in snapshot.iter(&index.handle) {
            actual.insert(g.key()?.to_vec());
        }
        if actual != expected[i] {
            let missing = expected[i].difference(&actual).count();
            let extra = actual.difference(&expected[i]).count();
            return Err(Error::Corrupt(format!(
                "index {}#{} disagrees with its records: {missing} missing, {extra} extra entries",
                def.name, def.fields[i].name
            )));
        }
    }
    for ((ks, index), expected) in store
        .compound
        .iter()
        .zip(def.compound_indexes)
        .zip(&expected_compound)
    {
        let mut actual = BTreeSet::new();
        for g in snapshot.iter(&ks.handle) {
            actual.insert(g.key()?.to_vec());
        }
        if &actual != expected {
            return Err(Error::Corrupt(format!(
                "index {}#{} disagrees with its records",
                def.name,
                compound_label(def, index)
            )));
        }
    }
    Ok(())
}
