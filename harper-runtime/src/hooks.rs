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

use crate::error::{Error, Result};
use crate::record::Record;
use crate::schema::{Table, TableDef};
use crate::storage::WriteTx;

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
