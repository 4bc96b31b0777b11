//! The harper runtime: storage over fjall, the query engine, and (later) the HTTP server.
//! Users depend on the `harper` facade crate, which re-exports this one.

pub mod auth;
pub mod error;
pub mod graphql;
pub mod hooks;
pub mod http;
pub mod memory;
pub mod query;
pub mod realtime;
pub mod record;
pub mod schema;
pub mod server;
pub mod storage;
pub mod types;

pub use auth::{Auth, AuthConfig, Principal};
pub use error::{Error, Result};
pub use hooks::Rejection;
pub use query::{Query, QueryStats, attr};
pub use record::Record;
pub use schema::{Table, TableDef};
pub use server::{App, Server};
pub use storage::key::Atom;
pub use storage::tx::StoredRecord;
pub use storage::{
    Change, ChangeKind, Commit, Database, DatabaseBuilder, Durability, ReadTx, Reader,
    StorageStats, WriteTx,
};
pub use types::{Id, Link, Links};

/// The names most table modules use.
pub mod prelude {
    pub use crate::auth::Principal;
    pub use crate::query::{Filter, Query, attr};
    pub use crate::schema::Table;
    pub use crate::server::App;
    pub use crate::storage::{Database, Reader, WriteTx};
    pub use crate::types::{Id, Link, Links};
}
