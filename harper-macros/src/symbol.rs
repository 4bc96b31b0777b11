//! Names of the attributes and options the macros understand, compared as symbols
//! (`meta.path == NAME`) rather than as scattered string literals.

use std::fmt::{self, Display};

use syn::{Ident, Path};

#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Symbol(pub &'static str);

// Struct-level attributes.
pub const TABLE: Symbol = Symbol("table");
pub const EXPORT: Symbol = Symbol("export");
pub const SERDE: Symbol = Symbol("serde");
pub const DERIVE: Symbol = Symbol("derive");
pub const CFG: Symbol = Symbol("cfg");
/// The crate name users may prefix our attributes with (`#[harper::table]`).
pub const HARPER: Symbol = Symbol("harper");

// `#[table(..)]` and `#[export(..)]` options.
pub const NAME: Symbol = Symbol("name");
pub const RENAME_ALL: Symbol = Symbol("rename_all");
/// `#[table(index(a, b))]`: an index on several fields.
pub const INDEX: Symbol = Symbol("index");
// `#[export(..)]` permissions: who may do what.
pub const READ: Symbol = Symbol("read");
pub const WRITE: Symbol = Symbol("write");
pub const CREATE: Symbol = Symbol("create");
pub const UPDATE: Symbol = Symbol("update");
pub const DELETE: Symbol = Symbol("delete");
/// Hidden option: `#[export]` written above `#[table]` hands its arguments to `#[table]` this way.
pub const HIDDEN_EXPORT: Symbol = Symbol("__export");

// Field attributes.
pub const PRIMARY_KEY: Symbol = Symbol("primary_key");
pub const INDEXED: Symbol = Symbol("indexed");
pub const RELATIONSHIP: Symbol = Symbol("relationship");
pub const RENAME: Symbol = Symbol("rename");

// `#[relationship(..)]` options.
pub const FROM: Symbol = Symbol("from");
pub const TO: Symbol = Symbol("to");

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl PartialEq<Symbol> for &Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl Display for Symbol {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(self.0)
    }
}

/// Whether `path` names one of our struct-level macros: `table`, `harper::table` or
/// `::harper::table` (for `word == TABLE`).
pub fn is_harper_macro(path: &Path, word: Symbol) -> bool {
    let segments = &path.segments;
    match segments.len() {
        1 => path.leading_colon.is_none() && segments[0].ident == word,
        2 => segments[0].ident == HARPER && segments[1].ident == word,
        _ => false,
    }
}
