//! Transactions. A [`ReadTx`] reads one snapshot; a [`WriteTx`] reads the latest committed
//! state plus its own staged writes and commits them in one fjall batch.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use fjall::Slice;
use serde_json::{Map, Value};

use super::key::{self, Atom};
use super::source::{
    KeyRange, KvIter, OverlaySource, SnapshotSource, Source, StagedMap, overlay_scan,
};
use super::{Inner, TableStore, WriterState, change_log};
use crate::error::{Error, Result};
use crate::query::{self, Query, QueryStats};
use crate::record::{Record, split_stored};
use crate::schema::{Scalar, Table, TableDef};

/// A record as stored: its version and canonical JSON, served without re-encoding.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    pub(crate) key: Slice,
    pub(crate) bytes: Slice,
    pub(crate) version: u64,
}

impl StoredRecord {
    pub(crate) fn from_stored(key: Slice, bytes: Slice) -> Result<StoredRecord> {
        let (version, _) = split_stored(&bytes)?;
        Ok(StoredRecord {
            key,
            bytes,
            version,
        })
    }

    /// The record's canonical JSON object.
    pub fn json(&self) -> &[u8] {
        &self.bytes[9..]
    }

    /// Version of the last write (microseconds since the epoch; strictly increasing).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The primary key.
    pub fn key(&self) -> Result<Atom> {
        key::decode(&self.key)
            .map(|(a, _)| a)
            .map_err(|_| Error::Corrupt("record key".into()))
    }

    pub fn to_value(&self) -> Result<Value> {
        serde_json::from_slice(self.json()).map_err(|e| Error::Corrupt(format!("record: {e}")))
    }

    pub fn decode<T: Table>(&self) -> Result<T> {
        serde_json::from_slice(self.json()).map_err(|e| {
            Error::Corrupt(format!(
                "{} record does not match its type: {e}",
                T::DEF.name
            ))
        })
    }

    pub(crate) fn record(&self, def: &'static TableDef) -> Result<Record> {
        Record::from_stored_json(def, self.json())
    }
}

/// What a transaction reads through. Not part of the public API.
#[doc(hidden)]
pub struct View<'a> {
    source: ViewSource<'a>,
}

enum ViewSource<'a> {
    Snapshot(Arc<SnapshotSource>),
    Overlay(
        Arc<SnapshotSource>,
        &'a HashMap<u32, (super::source::Ks, StagedMap)>,
    ),
}

impl Source for View<'_> {
    fn get(&self, ks: &super::source::Ks, key: &[u8]) -> Result<Option<Slice>> {
        match &self.source {
            ViewSource::Snapshot(s) => s.get(ks, key),
            ViewSource::Overlay(base, staged) => OverlaySource { base, staged }.get(ks, key),
        }
    }

    fn scan(&self, ks: &super::source::Ks, range: &KeyRange, reverse: bool) -> KvIter<'_> {
        match &self.source {
            ViewSource::Snapshot(s) => s.scan(ks, range, reverse),
            ViewSource::Overlay(base, staged) => overlay_scan(base, staged, ks, range, reverse),
        }
    }
}

/// Reads shared by [`ReadTx`] and [`WriteTx`].
pub trait Reader {
    #[doc(hidden)]
    fn view(&self) -> View<'_>;

    #[doc(hidden)]
    fn store(&self, def: &'static TableDef) -> Result<Arc<TableStore>>;

    /// One record by primary key.
    fn get<T: Table>(&self, key: impl Into<Atom>) -> Result<Option<T>>
    where
        Self: Sized,
    {
        match self.get_stored(T::DEF, key.into())? {
            Some(r) => r.decode::<T>().map(Some),
            None => Ok(None),
        }
    }

    /// One record of any registered table, as stored.
    fn get_stored(&self, def: &'static TableDef, key: Atom) -> Result<Option<StoredRecord>>
    where
        Self: Sized,
    {
        let store = self.store(def)?;
        let Some(key) = coerce_key(def, key) else {
            return Ok(None);
        };
        let k = key::encode_one(&key);
        let view = self.view();
        match view.get(&store.records, &k)? {
            Some(bytes) => StoredRecord::from_stored(Slice::from(k), bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Records of `T` matching `query`, in the query's order (its `select` is ignored: typed
    /// results are whole records).
    fn query<T: Table>(&self, query: &Query) -> Result<Vec<T>>
    where
        Self: Sized,
    {
        self.query_stored(T::DEF, query)?
            .iter()
            .map(|r| r.decode::<T>())
            .collect()
    }

    /// Records matching `query`, as stored.
    fn query_stored(&self, def: &'static TableDef, query: &Query) -> Result<Vec<StoredRecord>>
    where
        Self: Sized,
    {
        Ok(self.query_with_stats(def, query)?.0)
    }

    /// Records matching `query` and what the engine read to find them.
    fn query_with_stats(
        &self,
        def: &'static TableDef,
        query: &Query,
    ) -> Result<(Vec<StoredRecord>, QueryStats)>
    where
        Self: Sized,
    {
        query::run(self, def, query)
    }

    /// Runs `query`, handing each matching record to `sink` in order as it is found (rows
    /// are buffered only when the query needs an in-memory sort); `sink` returns false to stop.
    fn query_each(
        &self,
        def: &'static TableDef,
        query: &Query,
        sink: &mut dyn FnMut(StoredRecord) -> Result<bool>,
    ) -> Result<QueryStats>
    where
        Self: Sized,
    {
        query::run_each(self, def, query, sink)
    }

    /// Shapes already-fetched rows by `select` (whole records when `None`).
    fn query_json_rows(
        &self,
        def: &'static TableDef,
        rows: &[StoredRecord],
        select: Option<&query::Select>,
    ) -> Result<Vec<Value>>
    where
        Self: Sized,
    {
        query::project(self, def, rows, select)
    }

    /// The query's answer as JSON values, shaped by its `select` (relationships resolved).
    fn query_json(&self, def: &'static TableDef, query: &Query) -> Result<Vec<Value>>
    where
        Self: Sized,
    {
        let rows = self.query_stored(def, query)?;
        query::project(self, def, &rows, query.select.as_ref())
    }

    /// The records a relationship of `record` points to (`product.category`,
    /// `category.products`). Used by the accessors `#[table]` generates.
    fn follow<T: Table, U: Table>(&self, record: &T, relationship: &str) -> Result<Vec<U>>
    where
        Self: Sized,
    {
        let rel = T::DEF
            .relationship(relationship)
            .ok_or_else(|| Error::UnknownAttribute {
                table: T::DEF.name.to_owned(),
                attribute: relationship.to_owned(),
            })?;
        let value = serde_json::to_value(record).map_err(|e| Error::InvalidRecord {
            table: T::DEF.name,
            field: None,
            message: e.to_string(),
        })?;
        let rec = Record::from_json(T::DEF, value)?;
        let related = query::related_records(self, T::DEF, rel, &rec)?;
        related.iter().map(|r| r.decode::<U>()).collect()
    }
}

/// Interprets a key for `def`'s primary key type: ids given as numbers match string keys and
/// numeric strings match integer keys. `None` when it cannot name any record.
pub(crate) fn coerce_key(def: &TableDef, key: Atom) -> Option<Atom> {
    match (def.primary_key().ty.scalar, key) {
        (Scalar::Id | Scalar::String, Atom::Str(s)) => Some(Atom::Str(s)),
        (Scalar::Id | Scalar::String, Atom::Int(i)) => Some(Atom::Str(i.to_string())),
        (Scalar::Id | Scalar::String, Atom::BigUint(u)) => Some(Atom::Str(u.to_string())),
        (Scalar::Int { .. }, Atom::Str(s)) => {
            if let Ok(i) = s.parse::<i64>() {
                Some(Atom::Int(i))
            } else {
                s.parse::<u64>().ok().map(Atom::from_u64)
            }
        }
        (Scalar::Int { .. }, a @ (Atom::Int(_) | Atom::BigUint(_))) => Some(a),
        _ => None,
    }
}

/// A read-only transaction over one consistent snapshot.
pub struct ReadTx {
    inner: Arc<Inner>,
    snapshot: RefCell<Arc<SnapshotSource>>,
    generation: Cell<u64>,
}

impl super::Database {
    /// One record as stored, at the latest commit, without opening a snapshot: a single key
    /// needs no consistent view of any other (commits are atomic, so the record is one
    /// commit's whole version). For point reads on the request path.
    pub fn get_latest(&self, def: &'static TableDef, key: Atom) -> Result<Option<StoredRecord>> {
        let (store, _) = self.inner.table(def)?;
        let Some(key) = coerce_key(def, key) else {
            return Ok(None);
        };
        let k = key::encode_one(&key);
        // The read sees every commit published before it starts.
        let floor = self
            .inner
            .committed_seq
            .load(std::sync::atomic::Ordering::Acquire);
        let read = || store.records.handle.get(&k);
        let found = match &store.records.cache {
            Some(cache) => cache.read_through(&k, floor, read)?,
            None => read()?,
        };
        match found {
            Some(bytes) => StoredRecord::from_stored(Slice::from(k), bytes).map(Some),
            None => Ok(None),
        }
    }
}

impl ReadTx {
    pub(crate) fn new(inner: Arc<Inner>) -> ReadTx {
        let generation = inner.generation();
        let snapshot = inner.snapshot_source();
        ReadTx {
            inner,
            snapshot: RefCell::new(Arc::new(snapshot)),
            generation: Cell::new(generation),
        }
    }
}

impl Reader for ReadTx {
    fn view(&self) -> View<'_> {
        View {
            source: ViewSource::Snapshot(self.snapshot.borrow().clone()),
        }
    }

    fn store(&self, def: &'static TableDef) -> Result<Arc<TableStore>> {
        let (store, _) = self.inner.table(def)?;
        let generation = self.inner.generation();
        if generation != self.generation.get() {
            // A table was registered (and its indexes built) after this snapshot was taken.
            *self.snapshot.borrow_mut() = Arc::new(self.inner.snapshot_source());
            self.generation.set(generation);
        }
        Ok(store)
    }
}

/// What one committed write did to one record.
#[derive(Debug, Clone)]
pub struct Change {
    pub table: &'static TableDef,
    /// The primary key.
    pub id: Atom,
    pub kind: ChangeKind,
    /// The stored record (header + canonical JSON) after a put; `None` after a delete.
    pub(crate) stored: Option<Slice>,
    /// The stored record before the transaction; `None` when it did not exist. Kept in memory
    /// for subscribers (to tell when a record stops matching a filter), not in the change log.
    pub(crate) previous: Option<Slice>,
    pub version: u64,
}

impl Change {
    /// The record's canonical JSON after a put; `None` after a delete.
    pub fn json(&self) -> Option<&[u8]> {
        self.stored.as_ref().map(|s| &s[9..])
    }

    /// The record's canonical JSON before the transaction; `None` when it did not exist.
    pub fn previous_json(&self) -> Option<&[u8]> {
        self.previous.as_ref().map(|s| &s[9..])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Put,
    Delete,
}

/// One committed transaction, as published to subscribers and written to the change log.
#[derive(Debug, Clone)]
pub struct Commit {
    /// Position in the change log (strictly increasing, no gaps).
    pub seq: u64,
    pub version: u64,
    pub changes: Vec<Change>,
}

/// A read-write transaction; see [`crate::Database::write`].
pub struct WriteTx<'db> {
    inner: &'db Inner,
    _writer: MutexGuard<'db, WriterState>,
    snapshot: Arc<SnapshotSource>,
    generation: u64,
    staged: HashMap<u32, (super::source::Ks, StagedMap)>,
    changes: Vec<Change>,
    /// Position in `changes` of each written record, by table and record key.
    change_index: HashMap<(&'static str, Vec<u8>), usize>,
    version: u64,
    /// A staged key over fjall's limit (it would panic in the batch): the commit refuses.
    oversized: Option<Error>,
}

/// fjall's largest key.
const MAX_KEY_BYTES: usize = u16::MAX as usize;

impl Reader for WriteTx<'_> {
    fn view(&self) -> View<'_> {
        View {
            source: ViewSource::Overlay(self.snapshot.clone(), &self.staged),
        }
    }

    fn store(&self, def: &'static TableDef) -> Result<Arc<TableStore>> {
        let (store, _) = self.inner.table(def)?;
        Ok(store)
    }
}

impl<'db> WriteTx<'db> {
    pub(crate) fn new(inner: &'db Inner, writer: MutexGuard<'db, WriterState>) -> WriteTx<'db> {
        WriteTx {
            inner,
            _writer: writer,
            snapshot: Arc::new(inner.snapshot_source()),
            generation: inner.generation(),
            staged: HashMap::new(),
            changes: Vec::new(),
            change_index: HashMap::new(),
            version: inner.next_version(),
            oversized: None,
        }
    }

    /// The table's store; refreshes the snapshot when a registration happened since it was
    /// taken (safe: the writer lock means no commit happened in between).
    fn store_mut(&mut self, def: &'static TableDef) -> Result<Arc<TableStore>> {
        let (store, _) = self.inner.table(def)?;
        let generation = self.inner.generation();
        if generation != self.generation {
            self.snapshot = Arc::new(self.inner.snapshot_source());
            self.generation = generation;
        }
        Ok(store)
    }

    /// Creates or replaces a record.
    pub fn put<T: Table>(&mut self, record: &T) -> Result<()> {
        let rec = typed_record(record)?;
        self.put_record(rec).map(|_| ())
    }

    /// Creates a record; [`Error::Conflict`] when its primary key is taken.
    pub fn insert<T: Table>(&mut self, record: &T) -> Result<()> {
        let rec = typed_record(record)?;
        self.insert_record(rec)
    }

    /// Merges `patch` (a JSON object of attributes) into an existing record and returns the
    /// result; [`Error::NotFound`] when there is none.
    pub fn patch<T: Table>(&mut self, key: impl Into<Atom>, patch: Value) -> Result<T> {
        let Value::Object(patch) = patch else {
            return Err(Error::InvalidRecord {
                table: T::DEF.name,
                field: None,
                message: "a patch must be a JSON object".into(),
            });
        };
        let rec = self.patch_record(T::DEF, key.into(), patch)?;
        serde_json::from_value(rec.to_value()).map_err(|e| Error::Corrupt(e.to_string()))
    }

    /// Reads a record, lets `f` change it, and writes it back. `None` when it does not exist.
    pub fn update<T: Table>(
        &mut self,
        key: impl Into<Atom>,
        f: impl FnOnce(&mut T),
    ) -> Result<Option<T>> {
        let key = key.into();
        let Some(mut value) = self.get::<T>(key.clone())? else {
            return Ok(None);
        };
        f(&mut value);
        let rec = typed_record(&value)?;
        let new_key = rec.key_atom()?;
        if coerce_key(T::DEF, key) != Some(new_key) {
            return Err(Error::invalid_record(
                T::DEF.name,
                T::DEF.primary_key().name,
                "update cannot change the primary key",
            ));
        }
        self.put_record(rec)?;
        Ok(Some(value))
    }

    /// Deletes a record; returns whether it existed.
    pub fn delete<T: Table>(&mut self, key: impl Into<Atom>) -> Result<bool> {
        self.delete_key(T::DEF, key.into())
    }

    /// Deletes every record matching `query`; returns how many.
    pub fn delete_where(&mut self, def: &'static TableDef, query: &Query) -> Result<usize> {
        let rows = self.query_stored(def, query)?;
        let mut n = 0;
        for row in rows {
            if self.delete_key(def, row.key()?)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Creates or replaces a checked record. Returns whether it replaced an existing one.
    pub fn put_record(&mut self, rec: Record) -> Result<bool> {
        let def = rec.def;
        let store = self.store_mut(def)?;
        let pk = rec.key_atom()?;
        let key = key::encode_one(&pk);
        let old = self.current(&store, &key)?;
        let existed = old.is_some();
        self.write_record(&store, pk, key, old.as_ref(), Some(&rec));
        Ok(existed)
    }

    /// Creates a checked record; [`Error::Conflict`] when its primary key is taken.
    pub fn insert_record(&mut self, rec: Record) -> Result<()> {
        let def = rec.def;
        let store = self.store_mut(def)?;
        let pk = rec.key_atom()?;
        let key = key::encode_one(&pk);
        if self.current(&store, &key)?.is_some() {
            return Err(Error::Conflict(format!(
                "{} {} already exists",
                def.name, pk
            )));
        }
        self.write_record(&store, pk, key, None, Some(&rec));
        Ok(())
    }

    pub(crate) fn validators(&self) -> &crate::hooks::Validators {
        &self.inner.validators
    }

    /// The record `patch_record` would write (nothing is written); [`Error::NotFound`] when
    /// there is none.
    pub fn merged(
        &self,
        def: &'static TableDef,
        key: Atom,
        patch: Map<String, Value>,
    ) -> Result<Record> {
        let store = self.store(def)?;
        let not_found = || Error::NotFound {
            table: def.name,
            id: key.to_string(),
        };
        let pk = coerce_key(def, key.clone()).ok_or_else(not_found)?;
        let k = key::encode_one(&pk);
        let mut rec = self.current(&store, &k)?.ok_or_else(not_found)?.0;
        rec.patch(patch)?;
        Ok(rec)
    }

    /// Merges attributes into an existing record; [`Error::NotFound`] when there is none.
    pub fn patch_record(
        &mut self,
        def: &'static TableDef,
        key: Atom,
        patch: Map<String, Value>,
    ) -> Result<Record> {
        let store = self.store_mut(def)?;
        let not_found = || Error::NotFound {
            table: def.name,
            id: key.to_string(),
        };
        let pk = coerce_key(def, key.clone()).ok_or_else(not_found)?;
        let k = key::encode_one(&pk);
        let old = self.current(&store, &k)?.ok_or_else(not_found)?;
        let mut rec = old.0.clone();
        rec.patch(patch)?;
        self.write_record(&store, pk, k, Some(&old), Some(&rec));
        Ok(rec)
    }

    /// Deletes a record by key; returns whether it existed.
    pub fn delete_key(&mut self, def: &'static TableDef, key: Atom) -> Result<bool> {
        let store = self.store_mut(def)?;
        let Some(pk) = coerce_key(def, key) else {
            return Ok(false);
        };
        let k = key::encode_one(&pk);
        let Some(old) = self.current(&store, &k)? else {
            return Ok(false);
        };
        self.write_record(&store, pk, k, Some(&old), None);
        Ok(true)
    }

    /// The record under `key` as this transaction sees it, with its stored bytes.
    fn current(&self, store: &TableStore, key: &[u8]) -> Result<Option<(Record, Slice)>> {
        let view = self.view();
        match view.get(&store.records, key)? {
            Some(bytes) => {
                let (_, json) = split_stored(&bytes)?;
                let rec = Record::from_stored_json(store.def, json)?;
                Ok(Some((rec, bytes)))
            }
            None => Ok(None),
        }
    }

    fn stage(&mut self, ks: &super::source::Ks, key: Vec<u8>, value: Option<Slice>) {
        self.staged
            .entry(ks.id)
            .or_insert_with(|| (ks.clone(), StagedMap::new()))
            .1
            .insert(key, value);
    }

    /// Stages a record write (or deletion when `new` is `None`) with its index changes.
    /// Invariant kept: after staging, the index entries of this record are exactly those of
    /// `new`'s field values.
    fn write_record(
        &mut self,
        store: &TableStore,
        pk: Atom,
        key: Vec<u8>,
        old: Option<&(Record, Slice)>,
        new: Option<&Record>,
    ) {
        store.planner.wrote();
        let (old, old_bytes) = match old {
            Some((rec, bytes)) => (Some(rec), Some(bytes.clone())),
            None => (None, None),
        };
        for (i, index) in store.indexes.iter().enumerate() {
            let Some(index) = index else { continue };
            let old_atoms = old.map(|r| r.atoms(i)).unwrap_or_default();
            let new_atoms = new.map(|r| r.atoms(i)).unwrap_or_default();
            for atom in &old_atoms {
                if !new_atoms.iter().any(|a| a.cmp_value(atom).is_eq()) {
                    let mut ik = key::encode_one(atom);
                    ik.extend_from_slice(&key);
                    self.stage(index, ik, None);
                }
            }
            for atom in &new_atoms {
                if !old_atoms.iter().any(|a| a.cmp_value(atom).is_eq()) {
                    let mut ik = key::encode_one(atom);
                    ik.extend_from_slice(&key);
                    if ik.len() > MAX_KEY_BYTES && self.oversized.is_none() {
                        let field = store.def.fields[i].name;
                        self.oversized = Some(Error::invalid_record(
                            store.def.name,
                            field,
                            format!(
                                "{field} is indexed and its value is too long to index ({} \
                                 bytes with the id; at most {MAX_KEY_BYTES})",
                                ik.len()
                            ),
                        ));
                    }
                    self.stage(index, ik, Some(Slice::from(&[][..])));
                }
            }
        }
        for (index, ks) in store.def.compound_indexes.iter().zip(&store.compound) {
            let old_key = old.map(|r| super::compound_key(r, index.fields, &key));
            let new_key = new.map(|r| super::compound_key(r, index.fields, &key));
            if old_key == new_key {
                continue;
            }
            if let Some(ik) = old_key {
                self.stage(ks, ik, None);
            }
            if let Some(ik) = new_key {
                if ik.len() > MAX_KEY_BYTES && self.oversized.is_none() {
                    self.oversized = Some(Error::invalid_record(
                        store.def.name,
                        store.def.fields[index.fields[0]].name,
                        format!(
                            "{} is too long to index ({} bytes with the id; at most \
                             {MAX_KEY_BYTES})",
                            super::compound_label(store.def, index),
                            ik.len()
                        ),
                    ));
                }
                self.stage(ks, ik, Some(Slice::from(&[][..])));
            }
        }
        if key.len() > MAX_KEY_BYTES && self.oversized.is_none() {
            let pk_name = store.def.primary_key().name;
            self.oversized = Some(Error::invalid_record(
                store.def.name,
                pk_name,
                format!(
                    "the id is too long ({} bytes encoded; at most {MAX_KEY_BYTES})",
                    key.len()
                ),
            ));
        }
        let records = store.records.clone();
        let (kind, stored) = match new {
            Some(rec) => (
                ChangeKind::Put,
                Some(Slice::from(rec.to_stored(self.version))),
            ),
            None => (ChangeKind::Delete, None),
        };
        self.stage(&records, key.clone(), stored.clone());
        let mut change = Change {
            table: store.def,
            id: pk,
            kind,
            stored,
            previous: old_bytes,
            version: self.version,
        };
        // One change per record: a record written twice in a transaction keeps its final state
        // and its state from before the transaction.
        match self.change_index.entry((store.def.name, key)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let slot = &mut self.changes[*e.get()];
                change.previous = slot.previous.take();
                *slot = change;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.changes.len());
                self.changes.push(change);
            }
        }
    }

    /// Commits everything staged in one batch and publishes it. Returns the change-log
    /// sequence number, or `None` when nothing was written.
    pub(crate) fn commit(mut self) -> Result<Option<u64>> {
        if let Some(e) = self.oversized.take() {
            return Err(e);
        }
        if self.changes.is_empty() {
            return Ok(None);
        }
        let seq = self._writer.next_seq;
        let mut batch = self.inner.fjall.batch();
        // From here until the commit is published, readers add nothing to record caches,
        // and the records it writes leave them (see `record_cache`).
        let mut writing = self.inner.record_clock.begin();
        for (_, (ks, map)) in std::mem::take(&mut self.staged) {
            for (k, v) in map {
                if let Some(cache) = &ks.cache {
                    cache.remove(&k);
                }
                match v {
                    Some(v) => batch.insert(&ks.handle, k, v),
                    None => batch.remove(&ks.handle, k),
                }
            }
        }
        let entry = encode_log_entry(seq, self.version, &self.changes);
        let mut log = self._writer.log;
        let len = entry.len() as u64;
        log.bytes += len;
        log.total += len;
        batch.insert(&self.inner.changes.handle, seq.to_be_bytes(), entry);
        batch.insert(
            &self.inner.change_sizes,
            seq.to_be_bytes(),
            change_log::encode_size(len, log.total),
        );
        change_log::drop_oldest(
            &mut batch,
            &self.inner.changes.handle,
            &self.inner.change_sizes,
            &mut log,
            seq,
            self.inner.log_limits,
            None,
        )?;
        let committing = self.inner.lock_commit();
        {
            let _applying = self
                .inner
                .batch_gate
                .write()
                .unwrap_or_else(|p| p.into_inner());
            batch.commit()?;
        }
        self._writer.next_seq = seq + 1;
        self._writer.log = log;
        let commit = Arc::new(Commit {
            seq,
            version: self.version,
            changes: std::mem::take(&mut self.changes),
        });
        // Published while the writer lock is held, so subscribers see commit order.
        self.inner.publish(commit, log.oldest);
        writing.seq = Some(seq);
        drop(writing);
        drop(committing);
        Ok(Some(seq))
    }
}

fn typed_record<T: Table>(record: &T) -> Result<Record> {
    let value = serde_json::to_value(record).map_err(|e| Error::InvalidRecord {
        table: T::DEF.name,
        field: None,
        message: e.to_string(),
    })?;
    Record::from_json(T::DEF, value)
}

/// `{"seq":N,"version":V,"changes":[{"table":..,"id":..,"type":"put","value":{..}},..]}`
fn encode_log_entry(seq: u64, version: u64, changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64 + changes
            .iter()
            .map(|c| c.stored.as_ref().map_or(32, |v| v.len() + 48))
            .sum::<usize>(),
    );
    out.extend_from_slice(
        format!("{{\"seq\":{seq},\"version\":{version},\"changes\":[").as_bytes(),
    );
    for (i, c) in changes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"table\":");
        let _ = serde_json::to_writer(&mut out, c.table.name);
        out.extend_from_slice(b",\"id\":");
        let _ = serde_json::to_writer(&mut out, &c.id.to_json());
        match (&c.kind, c.json()) {
            (ChangeKind::Put, Some(v)) => {
                out.extend_from_slice(b",\"type\":\"put\",\"value\":");
                out.extend_from_slice(v);
            }
            _ => out.extend_from_slice(b",\"type\":\"delete\""),
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

impl From<&str> for Atom {
    fn from(s: &str) -> Atom {
        Atom::Str(s.to_owned())
    }
}
impl From<String> for Atom {
    fn from(s: String) -> Atom {
        Atom::Str(s)
    }
}
impl From<&String> for Atom {
    fn from(s: &String) -> Atom {
        Atom::Str(s.clone())
    }
}
impl From<crate::types::Id> for Atom {
    fn from(s: crate::types::Id) -> Atom {
        Atom::Str(s.into_string())
    }
}
impl From<&crate::types::Id> for Atom {
    fn from(s: &crate::types::Id) -> Atom {
        Atom::Str(s.as_str().to_owned())
    }
}
impl From<bool> for Atom {
    fn from(b: bool) -> Atom {
        Atom::Bool(b)
    }
}
impl From<f64> for Atom {
    fn from(x: f64) -> Atom {
        Atom::Float(x)
    }
}
impl From<f32> for Atom {
    fn from(x: f32) -> Atom {
        Atom::Float(x as f64)
    }
}
macro_rules! atom_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Atom {
            fn from(i: $t) -> Atom {
                Atom::Int(i as i64)
            }
        }
    )*};
}
atom_from_int!(i8, i16, i32, i64, isize, u8, u16, u32);
impl From<u64> for Atom {
    fn from(u: u64) -> Atom {
        Atom::from_u64(u)
    }
}
impl From<usize> for Atom {
    fn from(u: usize) -> Atom {
        Atom::from_u64(u as u64)
    }
}
