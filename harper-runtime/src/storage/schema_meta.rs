//! Opening a table: compare its definition with the schema stored in the data directory,
//! refuse changes that would misread existing records, build indexes that were added and drop
//! those that were removed.

use fjall::Keyspace;
use serde::{Deserialize, Serialize};

use super::key;
use super::source::Ks;
use super::{Inner, TableStore};
use crate::error::{Error, Result};
use crate::record::{Record, split_stored, value_atoms};
use crate::schema::{Scalar, TableDef};

/// What the data directory remembers of a table's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredSchema {
    primary_key: String,
    fields: Vec<StoredField>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredField {
    name: String,
    #[serde(rename = "type")]
    scalar: String,
    optional: bool,
    list: bool,
    indexed: bool,
}

fn scalar_code(s: Scalar) -> String {
    match s {
        Scalar::Id => "id".into(),
        Scalar::String => "string".into(),
        Scalar::Bool => "bool".into(),
        Scalar::Int { signed, bits } => format!("{}{bits}", if signed { "i" } else { "u" }),
        Scalar::Float { bits } => format!("f{bits}"),
        Scalar::Json => "json".into(),
    }
}

/// Whether values stored as `old` read back correctly as `new`.
fn compatible(old: &str, new: Scalar) -> bool {
    let new_code = scalar_code(new);
    if old == new_code {
        return true;
    }
    match (old, new) {
        ("id" | "string", Scalar::Id | Scalar::String) => true,
        (_, Scalar::Json) => true,
        (o, Scalar::Float { bits: 64 }) => o.starts_with('i') || o.starts_with('u') || o == "f32",
        (o, Scalar::Int { signed, bits }) => {
            // Widening only: every old value fits the new type.
            let parse = |s: &str| s[1..].parse::<u8>().ok();
            match (o.as_bytes().first(), parse(o)) {
                (Some(b'i'), Some(ob)) => signed && ob <= bits,
                (Some(b'u'), Some(ob)) => (signed && ob < bits) || (!signed && ob <= bits),
                _ => false,
            }
        }
        _ => false,
    }
}

fn describe(def: &TableDef) -> StoredSchema {
    StoredSchema {
        primary_key: def.primary_key().name.to_owned(),
        fields: def
            .fields
            .iter()
            .map(|f| StoredField {
                name: f.name.to_owned(),
                scalar: scalar_code(f.ty.scalar),
                optional: f.ty.optional,
                list: f.ty.list,
                indexed: f.indexed,
            })
            .collect(),
    }
}

fn schema_key(table: &str) -> String {
    format!("schema/{table}")
}

fn building_key(keyspace: &str) -> String {
    format!("building/{keyspace}")
}

pub(crate) fn index_keyspace_name(def: &TableDef, field: &str) -> String {
    format!("{}#{}", def.name, field)
}

/// The version of the newest change-log entry (0 when the log is empty).
pub(super) fn last_version(changes: &Keyspace) -> Result<u64> {
    #[derive(Deserialize)]
    struct Head {
        version: u64,
    }
    match changes.last_key_value() {
        None => Ok(0),
        Some(g) => {
            let v = g.value()?;
            let head: Head = serde_json::from_slice(&v)
                .map_err(|e| Error::Corrupt(format!("change log: {e}")))?;
            Ok(head.version)
        }
    }
}

fn refuse(def: &TableDef, field: &str, message: String) -> Error {
    Error::IncompatibleSchema {
        table: def.name.to_owned(),
        field: field.to_owned(),
        message,
    }
}

pub(super) fn open_table(inner: &Inner, def: &'static TableDef) -> Result<TableStore> {
    let started = std::time::Instant::now();
    let meta = &inner.meta;
    let records_handle = inner.fjall.keyspace(def.name, super::keyspace_options)?;
    let has_records = records_handle.first_key_value().is_some();
    let stored: Option<StoredSchema> = match meta.get(schema_key(def.name))? {
        Some(bytes) => Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::Corrupt(format!("schema of {}: {e}", def.name)))?,
        ),
        None => None,
    };
    let new = describe(def);
    if let (Some(old), true) = (&stored, has_records) {
        check_compatible(inner, def, &records_handle, old, &new)?;
    }

    let mut records = inner.alloc_ks(records_handle);
    records.cache = Some(std::sync::Arc::new(super::record_cache::RecordCache::new(
        inner.record_clock.clone(),
    )));
    let mut indexes = Vec::with_capacity(def.fields.len());
    for (i, field) in def.fields.iter().enumerate() {
        if !field.indexed || i == def.primary_key {
            indexes.push(None);
            continue;
        }
        let name = index_keyspace_name(def, field.name);
        let existed = inner.fjall.keyspace_exists(&name);
        let handle = inner.fjall.keyspace(&name, super::keyspace_options)?;
        let was_indexed_same = stored
            .as_ref()
            .and_then(|s| s.fields.iter().find(|f| f.name == field.name))
            .is_some_and(|f| {
                f.indexed && f.scalar == scalar_code(field.ty.scalar) && f.list == field.ty.list
            });
        let interrupted = meta.get(building_key(&name))?.is_some();
        if !existed || !was_indexed_same || interrupted {
            build_index(inner, def, Entries::Field(i), &records, &handle, &name)?;
        }
        indexes.push(Some(inner.alloc_ks(handle)));
    }
    // Compound indexes: built when new, interrupted, or when one of their fields changed type.
    let mut compound = Vec::with_capacity(def.compound_indexes.len());
    for (c, index) in def.compound_indexes.iter().enumerate() {
        let name = index_keyspace_name(def, &super::compound_label(def, index));
        let existed = inner.fjall.keyspace_exists(&name);
        let handle = inner.fjall.keyspace(&name, super::keyspace_options)?;
        let same_types = index.fields.iter().all(|&i| {
            let field = &def.fields[i];
            stored
                .as_ref()
                .and_then(|s| s.fields.iter().find(|f| f.name == field.name))
                .is_some_and(|f| {
                    f.scalar == scalar_code(field.ty.scalar) && f.list == field.ty.list
                })
        });
        let interrupted = meta.get(building_key(&name))?.is_some();
        if !existed || !same_types || interrupted {
            build_index(inner, def, Entries::Compound(c), &records, &handle, &name)?;
        }
        compound.push(inner.alloc_ks(handle));
    }

    // Drop index keyspaces of fields that are no longer indexed.
    let prefix = format!("{}#", def.name);
    for name in inner.fjall.list_keyspace_names() {
        let name: &str = name.as_ref();
        if let Some(field) = name.strip_prefix(&prefix) {
            let wanted = def
                .field(field)
                .is_some_and(|f| f.indexed && f.name != def.primary_key().name)
                || def
                    .compound_indexes
                    .iter()
                    .any(|c| super::compound_label(def, c) == field);
            if !wanted {
                tracing::info!(
                    table = def.name,
                    field,
                    "dropping index that is no longer declared"
                );
                let handle = inner.fjall.keyspace(name, super::keyspace_options)?;
                inner.fjall.delete_keyspace(handle)?;
            }
        }
    }

    if stored.as_ref() != Some(&new) {
        let bytes = serde_json::to_vec(&new).map_err(|e| Error::Corrupt(e.to_string()))?;
        meta.insert(schema_key(def.name), bytes)?;
    }
    tracing::debug!(
        table = def.name,
        ms = super::ms(started.elapsed()),
        "start-up: table opened"
    );
    Ok(TableStore {
        def,
        records,
        indexes,
        compound,
        planner: Default::default(),
    })
}

fn check_compatible(
    inner: &Inner,
    def: &'static TableDef,
    records: &Keyspace,
    old: &StoredSchema,
    new: &StoredSchema,
) -> Result<()> {
    let _ = inner;
    if old.primary_key != new.primary_key {
        return Err(refuse(
            def,
            &new.primary_key,
            format!(
                "the primary key changed from {} to {} while the table holds records; migrate the data first",
                old.primary_key, new.primary_key
            ),
        ));
    }
    for (field, nf) in def.fields.iter().zip(&new.fields) {
        match old.fields.iter().find(|f| f.name == nf.name) {
            Some(of) => {
                if of.list != nf.list || !compatible(&of.scalar, field.ty.scalar) {
                    return Err(refuse(
                        def,
                        &nf.name,
                        format!(
                            "its type changed from {}{} to {}{} while the table holds records that would no longer read back",
                            if of.list { "list of " } else { "" },
                            of.scalar,
                            if nf.list { "list of " } else { "" },
                            nf.scalar
                        ),
                    ));
                }
                if of.optional && !nf.optional {
                    let missing = first_record_missing(def, records, field.name)?;
                    if let Some(id) = missing {
                        return Err(refuse(
                            def,
                            &nf.name,
                            format!(
                                "it became required, but record {id} has no value for it; keep it an Option or fill it first"
                            ),
                        ));
                    }
                }
            }
            None => {
                if !nf.optional && nf.name != new.primary_key {
                    let missing = first_record_missing(def, records, field.name)?;
                    if let Some(id) = missing {
                        return Err(refuse(
                            def,
                            &nf.name,
                            format!(
                                "it is new and required, but record {id} has no value for it; declare it as Option<..>"
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The id of the first record lacking a non-null `field`, if any.
fn first_record_missing(
    def: &'static TableDef,
    records: &Keyspace,
    field: &str,
) -> Result<Option<String>> {
    for g in records.iter() {
        let (k, v) = g.into_inner()?;
        let (_, json) = split_stored(&v)?;
        let rec = Record::from_stored_json(def, json)?;
        if rec.get(field).is_none_or(|v| v.is_null()) {
            let id = key::decode(&k)
                .map(|(a, _)| a.to_string())
                .unwrap_or_else(|_| "?".into());
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// (Re)builds one index from the records. Marked in `__meta` while it runs, so a crash
/// mid-build is finished on the next open.
/// What a built index holds for each record.
#[derive(Clone, Copy)]
enum Entries {
    /// Each value of this field, then the primary key.
    Field(usize),
    /// `def.compound_indexes[_]`: its fields' values, then the primary key.
    Compound(usize),
}

fn build_index(
    inner: &Inner,
    def: &'static TableDef,
    entries: Entries,
    records: &Ks,
    index: &Keyspace,
    name: &str,
) -> Result<()> {
    inner.meta.insert(building_key(name), [])?;
    // Clear whatever a previous life left behind.
    let mut batch = inner.fjall.batch();
    for g in index.iter() {
        batch.remove(index, g.key()?);
        if batch.len() >= 10_000 {
            std::mem::replace(&mut batch, inner.fjall.batch()).commit()?;
        }
    }
    batch.commit()?;

    let total = records.handle.approximate_len();
    let mut batch = inner.fjall.batch();
    let mut done: u64 = 0;
    let started = std::time::Instant::now();
    for g in records.handle.iter() {
        let (k, v) = g.into_inner()?;
        let (_, json) = split_stored(&v)?;
        let rec = Record::from_stored_json(def, json)?;
        match entries {
            Entries::Field(i) => {
                for atom in value_atoms(&def.fields[i], rec.slots[i].as_ref()) {
                    let mut ik = key::encode_one(&atom);
                    ik.extend_from_slice(&k);
                    batch.insert(index, ik, []);
                }
            }
            Entries::Compound(c) => {
                let ik = super::compound_key(&rec, def.compound_indexes[c].fields, &k);
                batch.insert(index, ik, []);
            }
        }
        done += 1;
        if batch.len() >= 10_000 {
            std::mem::replace(&mut batch, inner.fjall.batch()).commit()?;
        }
        if done.is_multiple_of(100_000) {
            tracing::info!(index = name, done, total, "building index");
        }
    }
    batch.commit()?;
    inner.meta.remove(building_key(name))?;
    if done > 0 {
        tracing::info!(index = name, records = done, elapsed = ?started.elapsed(), "index built");
    }
    Ok(())
}
