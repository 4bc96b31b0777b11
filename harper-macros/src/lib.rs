//! Attribute macros for [harper](https://docs.rs/harper): `#[table]` and `#[export]`.
//!
//! Use them through the `harper` crate (`use harper::prelude::*;`), never directly: the
//! generated code refers to `::harper::..`.
//!
//! The crate reads like serde_derive: `ast` and `attr` parse the struct into a typed model
//! while collecting errors in a `ctxt::Ctxt`, `check` validates across fields, `expand`
//! generates code from a valid model only, and `fallback` re-emits the item with stub
//! impls next to the errors otherwise, so one mistake gives one error.

mod ast;
mod attr;
mod case;
mod check;
mod ctxt;
mod expand;
mod export;
mod fallback;
mod symbol;
mod ty;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Makes a struct a table: stored records, secondary indexes and relationships.
///
/// ```ignore
/// use harper::prelude::*;
///
/// #[table]                   // or #[table(name = "Product", rename_all = "camelCase")]
/// #[export]                  // or #[export(name = "products")]: served at /Product/
/// pub struct Product {
///     #[primary_key] pub id: Id,
///     #[indexed] pub name: String,
///     #[indexed] pub category_id: Id,          // JSON name `categoryId`
///     #[indexed] pub tags: Vec<String>,        // indexed per element
///     #[rename = "SKU"] pub sku: Option<String>,
///     pub extra: serde_json::Value,            // any serde type, stored as JSON
///     #[relationship(from = category_id)]
///     pub category: Link<Category>,            // not stored; `product.category(&tx)`
/// }
/// ```
///
/// Options of `#[table(..)]`:
/// - `name = "..."`: the table name (default: the struct name);
/// - `rename_all = "..."`: JSON names of the fields: `"camelCase"` (default), `"snake_case"`,
///   `"PascalCase"`, `"kebab-case"`, `"SCREAMING_SNAKE_CASE"` or `"lowercase"`;
/// - `index(a, b, ..)` (repeatable): an index on several fields (not `Vec`s), ordered by `a`,
///   then `b`, .., then the key. Equality on its leading fields reads only their matches,
///   ordered by the next field: `index(category_id, name)` answers
///   `categoryId=x&sort(+name)&limit(24)` by reading about 24 entries, whatever the table's size.
///
/// Field attributes:
/// - `#[primary_key]` on exactly one field of type `Id`, `String` or an integer;
/// - `#[indexed]` on a field of type `Id`, `String`, `bool`, an integer, a float, or an
///   `Option`/`Vec` of those (a `Vec` is indexed per element);
/// - `#[rename = "..."]`: the field's JSON name;
/// - `#[relationship(from = field)]` on a `Link<T>` (`field` holds a key of `T`) or a
///   `Links<T>` (`field` is a `Vec` of keys of `T`), `#[relationship(to = field)]` on a
///   `Links<T>` (`T`'s `field` holds keys of this table).
///
/// The struct derives `Serialize` and `Deserialize` (do not derive them yourself); other
/// derives and attributes are kept.
#[proc_macro_attribute]
pub fn table(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::table(args.into(), input.into()).into()
}

/// Serves a `#[table]` over HTTP at `/<name>/` (default: the table name). Goes with
/// `#[table]`, above or below it: `#[export]`, `#[export(name = "products")]`.
#[proc_macro_attribute]
pub fn export(args: TokenStream, input: TokenStream) -> TokenStream {
    export::export(args.into(), input.into()).into()
}
