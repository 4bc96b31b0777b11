//! One error type for the runtime. Client mistakes (bad records, bad queries, missing
//! records, conflicts) are distinct variants from storage failures, so the HTTP layer can map
//! each to a 4xx and only real faults to a 5xx.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record does not fit its table: wrong type, unknown attribute, missing field.
    #[error("invalid record for {table}: {message}")]
    InvalidRecord {
        table: &'static str,
        /// The attribute at fault, when there is one.
        field: Option<String>,
        message: String,
    },
    /// A query does not fit its table, or could not be parsed.
    #[error("invalid query on {table}: {message}")]
    InvalidQuery {
        table: String,
        /// Where in the query text the problem is, when parsed from text.
        position: Option<usize>,
        message: String,
    },
    /// A query names an attribute the table does not have.
    #[error("{attribute} is not a defined attribute of {table}")]
    UnknownAttribute { table: String, attribute: String },
    /// A query is valid but would be too expensive to run as asked.
    #[error("{message}")]
    QueryTooExpensive { table: String, message: String },
    /// No table of that name is registered.
    #[error("no table named {0}")]
    UnknownTable(String),
    /// The record does not exist (patch of a missing id, or a required lookup).
    #[error("{table} {id} does not exist")]
    NotFound { table: &'static str, id: String },
    /// The write contradicts current state (create of an existing id, business rule).
    #[error("{0}")]
    Conflict(String),
    /// A validator registered for the table refused the write (see [`crate::hooks`]).
    #[error("{0}")]
    Rejected(crate::hooks::Rejection),
    /// The caller may not do this (see [`crate::auth`]): 401 when it sent no valid
    /// credentials, 403 when it did.
    #[error("{message}")]
    Denied {
        authenticated: bool,
        message: String,
    },
    /// The data directory holds a schema this code cannot safely use.
    #[error("schema change refused for {table}.{field}: {message}")]
    IncompatibleSchema {
        table: String,
        field: String,
        message: String,
    },
    /// Stored bytes could not be decoded: the data directory is damaged.
    #[error("corrupt data in {0}")]
    Corrupt(String),
    #[error("storage failure: {0}")]
    Storage(#[from] fjall::Error),
    #[error("I/O failure: {0}")]
    Io(#[from] std::io::Error),
    /// The data directory cannot be used as it is: not a directory, in use by another
    /// process, on a read-only file system, or damaged. Nothing in it was changed.
    #[error("data directory {}: {message}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        problem: DataDirProblem,
        message: String,
    },
    /// Writes are refused because the storage failed (a full disk, an I/O error); reads
    /// still work. `disk_full` tells the two apart (507 and 503 over HTTP).
    #[error("{message}")]
    WritesUnavailable { disk_full: bool, message: String },
}

/// What is wrong with a data directory ([`Error::DataDir`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataDirProblem {
    /// The path exists and is not a directory.
    NotADirectory,
    /// Another process (or another handle in this one) has it open.
    InUse,
    /// It cannot be written: a read-only file system or missing permissions.
    NotWritable,
    /// Its files are damaged (corrupt or truncated journal or table files, a bad version).
    Damaged,
    /// Any other failure to open it (a missing parent, an I/O error).
    Unusable,
}

impl Error {
    pub(crate) fn invalid_record(
        table: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error::InvalidRecord {
            table,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub(crate) fn invalid_query(table: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidQuery {
            table: table.into(),
            position: None,
            message: message.into(),
        }
    }

    /// Whether the caller (not the server) is at fault.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Error::Storage(_)
                | Error::Io(_)
                | Error::Corrupt(_)
                | Error::IncompatibleSchema { .. }
                | Error::DataDir { .. }
                | Error::WritesUnavailable { .. }
        )
    }
}
