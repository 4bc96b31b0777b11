//! Business rules on writes that arrive from outside: a validator registered for a table
//! runs inside the write transaction of every REST `PUT`/`PATCH`/`POST` and GraphQL
//! mutation of that table, before the record is written. Returning a [`Rejection`] aborts
//! the transaction (nothing is kept) and answers the client with the rejection's status,
//! code and message.
//!
//! ```ignore
//! App::new(db).table::<CartItem>().validate::<CartItem>(|tx, item| {
//!     if item.quantity > 10 { Err(Rejection::conflict("too_many", "at most 10")) } else { Ok(()) }
//! })
//! ```
//!
//! Writes made by Rust code through [`WriteTx`] are trusted and do not run validators (call
//! [`WriteTx::check`] to apply them).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::query::Query;
use crate::record::Record;
use crate::schema::{Table, TableDef};
use crate::storage::key::Atom;
use crate::storage::{Reader, WriteTx};

/// Why a validator refused a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 409 Conflict (the write contradicts current state) or 400 Bad Request (the record
    /// itself is unacceptable).
    pub conflict: bool,
    /// A short machine-readable reason (`"not_enough_stock"`): the REST `error` field and the
    /// GraphQL error's `extensions.code`.
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    /// The write contradicts current state: 409 over REST.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            conflict: true,
            code,
            message: message.into(),
        }
    }

    /// The record is unacceptable as such: 400 over REST.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            conflict: false,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

type Validator = Arc<dyn Fn(&WriteTx, &Record) -> Result<()> + Send + Sync>;

/// The validators of every table, by table name.
#[derive(Default)]
pub(crate) struct Validators {
    by_table: RwLock<HashMap<&'static str, Vec<Validator>>>,
}

impl Validators {
    pub(crate) fn add<T: Table>(
        &self,
        rule: impl Fn(&WriteTx, &T) -> std::result::Result<(), Rejection> + Send + Sync + 'static,
    ) {
        let validator: Validator = Arc::new(move |tx: &WriteTx, rec: &Record| {
            let typed: T =
                serde_json::from_slice(&rec.to_json_bytes()).map_err(|e| Error::InvalidRecord {
                    table: T::DEF.name,
                    field: None,
                    message: e.to_string(),
                })?;
            rule(tx, &typed).map_err(Error::Rejected)
        });
        let mut map = self.by_table.write().unwrap_or_else(|p| p.into_inner());
        map.entry(T::DEF.name).or_default().push(validator);
    }

    fn for_table(&self, def: &TableDef) -> Vec<Validator> {
        let map = self.by_table.read().unwrap_or_else(|p| p.into_inner());
        map.get(def.name).cloned().unwrap_or_default()
    }
}

impl WriteTx<'_> {
    /// Runs the validators registered for `rec`'s table against it (the transaction shows
    /// the state before `rec` is written). REST and GraphQL writes call this before writing.
    pub fn check(&self, rec: &Record) -> Result<()> {
        for validator in self.validators().for_table(rec.def) {
            validator(self, rec)?;
        }
        Ok(())
    }
}

/// The write path of requests from outside (REST, GraphQL): the caller's permission (table
/// rule and, for `owner` rules, the stored and the new record), then the table's validators,
/// then the write, all in one transaction.
impl WriteTx<'_> {
    fn stored_json(&self, def: &'static TableDef, key: Atom) -> Result<Option<Vec<u8>>> {
        Ok(self.get_stored(def, key)?.map(|r| r.json().to_vec()))
    }

    /// Creates or replaces `rec` for `caller`; whether it replaced a record.
    pub fn put_checked(&mut self, caller: &Caller, rec: Record) -> Result<bool> {
        let old = self.stored_json(rec.def, rec.key_atom()?)?;
        caller.check_write(rec.def, old.as_deref(), Some(&rec.to_json_bytes()))?;
        self.check(&rec)?;
        self.put_record(rec)
    }

    /// Creates `rec` for `caller`; [`Error::Conflict`] when its key is taken.
    pub fn insert_checked(&mut self, caller: &Caller, rec: Record) -> Result<()> {
        caller.check_write(rec.def, None, Some(&rec.to_json_bytes()))?;
        self.check(&rec)?;
        self.insert_record(rec)
    }

    /// Merges `patch` into the record at `key` for `caller`; the merged record.
    pub fn patch_checked(
        &mut self,
        caller: &Caller,
        def: &'static TableDef,
        key: Atom,
        patch: Map<String, Value>,
    ) -> Result<Record> {
        let old = self.stored_json(def, key.clone())?;
        let rec = self.merged(def, key, patch)?;
        caller.check_write(def, old.as_deref(), Some(&rec.to_json_bytes()))?;
        self.check(&rec)?;
        self.put_record(rec.clone())?;
        Ok(rec)
    }

    /// Deletes the record at `key` for `caller`; whether it existed.
    pub fn delete_checked(
        &mut self,
        caller: &Caller,
        def: &'static TableDef,
        key: Atom,
    ) -> Result<bool> {
        match self.stored_json(def, key.clone())? {
            Some(old) => {
                caller.check_write(def, Some(&old), None)?;
                self.delete_key(def, key)
            }
            None => Ok(false),
        }
    }

    /// Deletes every match of `query` for `caller`: all of them or, when one is not the
    /// caller's to delete, none. The number deleted.
    pub fn delete_where_checked(
        &mut self,
        caller: &Caller,
        def: &'static TableDef,
        query: &Query,
    ) -> Result<usize> {
        let rows = self.query_stored(def, query)?;
        for row in &rows {
            caller.check_write(def, Some(row.json()), None)?;
        }
        let mut n = 0;
        for row in rows {
            if self.delete_key(def, row.key()?)? {
                n += 1;
            }
        }
        Ok(n)
    }
}
