//! # harper
//!
//! Tables from Rust structs: annotate a struct with `#[table]` and get durable storage
//! (the embedded fjall LSM engine), secondary indexes kept consistent with records, a
//! typed transactional API and one query engine shared by Rust code and the REST API.
//!
//! ```
//! use harper::prelude::*;
//!
//! #[table]
//! pub struct Category {
//!     #[primary_key]
//!     pub id: Id,
//!     #[indexed]
//!     pub name: String,
//! }
//!
//! let db = Database::temporary()?;
//! db.write(|tx| tx.put(&Category { id: "toys".into(), name: "Toys".into() }))?;
//! let toys = db.read(|tx| tx.get::<Category>("toys"))?;
//! assert_eq!(toys.map(|c| c.name).as_deref(), Some("Toys"));
//! # Ok::<(), harper::Error>(())
//! ```

// Lets the macros' `::harper::...` paths resolve inside this crate's own tests and docs.
extern crate self as harper;

pub use harper_macros::{export, table};
pub use harper_runtime::*;

/// Everything a table module and its business logic usually need.
pub mod prelude {
    pub use harper_macros::{export, table};
    pub use harper_runtime::prelude::*;
}

/// Paths used by macro-generated code. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
}
