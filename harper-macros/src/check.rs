//! Validation across fields: the primary key, relationships against the fields they
//! name, and the names that become keyspaces and URL segments.
//!
//! Checks that need another table's definition (does `Category` have a field holding
//! `Product` keys?) cannot run here; `expand` turns them into const assertions.

use std::collections::HashMap;

use syn::ext::IdentExt;

use crate::ast::{Relationship, Table, type_to_string};
use crate::attr::Direction;
use crate::ctxt::Ctxt;
use crate::ty::Marker;

/// fjall keyspace names are 1..=255 bytes.
pub const MAX_KEYSPACE_NAME: usize = 255;

pub fn check(cx: &Ctxt, table: &Table) {
    check_primary_key(cx, table);
    for relationship in &table.relationships {
        check_relationship(cx, table, relationship);
    }
    check_names(cx, table);
}

fn check_primary_key(cx: &Ctxt, table: &Table) {
    let mut keys = table.fields.iter().filter(|f| f.primary_key.is_some());
    let Some(first) = keys.next() else {
        cx.error_spanned_by(
            &table.ident,
            format!(
                "`#[table]` struct `{}` has no primary key: mark one field `#[primary_key]`",
                table.ident
            ),
        );
        return;
    };
    for other in keys {
        if let Some(attr) = &other.primary_key {
            cx.error_spanned_by(
                attr,
                format!(
                    "`{}` already is the primary key; a table has exactly one `#[primary_key]`",
                    first.rust_name
                ),
            );
        }
    }
}

fn check_relationship(cx: &Ctxt, table: &Table, rel: &Relationship) {
    let Direction::From(from) = &rel.direction else {
        // `to = ..` names a field of the other table: checked at compile time by `expand`.
        return;
    };
    let from_name = from.unraw().to_string();
    let target = type_to_string(&rel.target);
    let Some(field) = table.fields.iter().find(|f| f.rust_name == from_name) else {
        let msg = if table
            .relationships
            .iter()
            .any(|r| r.ident.unraw() == from_name)
        {
            format!(
                "`{from_name}` is a relationship; `from` names the stored field holding the \
                 keys of `{target}`"
            )
        } else {
            let mut msg = format!("no field `{from_name}` in `{}`", table.ident);
            if let Some(suggestion) = suggest(table, &from_name) {
                msg.push_str(&format!("; did you mean `{suggestion}`?"));
            }
            msg
        };
        cx.error_spanned_by(from, msg);
        return;
    };
    if !field.field_type.scalar.can_hold_keys() {
        cx.error_spanned_by(
            from,
            format!(
                "relationship `{}`: field `{from_name}` cannot hold keys of `{target}`; a \
                 `from` field must be `Id`, `String` or an integer type, or an `Option`/`Vec` \
                 of those",
                rel.name
            ),
        );
        return;
    }
    match (rel.marker, field.field_type.list) {
        (Marker::Link, true) => cx.error_spanned_by(
            &rel.ty,
            format!(
                "`{from_name}` is a list of keys, so `{}` relates many records: use \
                 `Links<{target}>`",
                rel.ident
            ),
        ),
        (Marker::Links, false) => cx.error_spanned_by(
            &rel.ty,
            format!(
                "`{from_name}` holds a single key, so `{}` relates at most one record: use \
                 `Link<{target}>` (or make `{from_name}` a `Vec` for many-to-many)",
                rel.ident
            ),
        ),
        _ => {}
    }
}

/// A stored field the user may have meant: one whose JSON name is what they wrote
/// (`from = categoryId`), or whose Rust name is a small typo away.
fn suggest<'a>(table: &'a Table, wrong: &str) -> Option<&'a str> {
    if let Some(field) = table.fields.iter().find(|f| f.name == wrong) {
        return Some(&field.rust_name);
    }
    table
        .fields
        .iter()
        .map(|f| (edit_distance(&f.rust_name, wrong), f))
        .filter(|(distance, f)| *distance <= (f.rust_name.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, f)| f.rust_name.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn check_names(cx: &Ctxt, table: &Table) {
    let table_name_ok = check_segment(cx, "table name", &table.name, &table.name_tokens);
    if let Some(export) = &table.export
        && export.name != table.name
    {
        check_segment(cx, "export name", &export.name, &export.name_tokens);
    }

    // JSON attribute names, stored and relationship, must be unique.
    let mut seen: HashMap<&str, &syn::Ident> = HashMap::new();
    let names = table
        .fields
        .iter()
        .map(|f| (&f.name, &f.ident, &f.name_tokens))
        .chain(
            table
                .relationships
                .iter()
                .map(|r| (&r.name, &r.ident, &r.name_tokens)),
        );
    for (name, ident, tokens) in names {
        if name.is_empty() {
            cx.error_spanned_by(tokens, format!("field `{ident}` has an empty JSON name"));
        } else if let Some(first) = seen.get(name.as_str()) {
            cx.error_spanned_by(
                tokens,
                format!("attribute name `{name}` is already used by field `{first}`"),
            );
        } else {
            seen.insert(name, ident);
        }
    }

    // Every index lives in a keyspace named "{table}#{attribute}".
    if table_name_ok {
        for field in table.fields.iter().filter(|f| f.is_indexed()) {
            let keyspace = format!("{}#{}", table.name, field.name);
            if keyspace.len() > MAX_KEYSPACE_NAME {
                cx.error_spanned_by(
                    &field.name_tokens,
                    format!(
                        "the index of `{}` would be stored in keyspace `{}`, which is {} bytes \
                         long; fjall allows at most {MAX_KEYSPACE_NAME}: shorten the table name \
                         or the attribute name (`#[rename = \"...\"]`)",
                        field.rust_name,
                        abbreviate(&keyspace),
                        keyspace.len()
                    ),
                );
            }
        }
    }
}

/// The start of a long name, for messages.
fn abbreviate(name: &str) -> String {
    const SHOWN: usize = 40;
    match name.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &name[..end]),
        None => name.to_owned(),
    }
}

/// Table and export names become a keyspace name and a URL segment: 1..=255 bytes of
/// ASCII letters, digits, `_`, `-`, `.` and `$`. Returns whether `name` is valid.
fn check_segment(cx: &Ctxt, what: &str, name: &str, tokens: &proc_macro2::TokenStream) -> bool {
    let msg = if name.is_empty() {
        format!("the {what} cannot be empty")
    } else if name.len() > MAX_KEYSPACE_NAME {
        format!(
            "the {what} is {} bytes long; fjall keyspace names are limited to \
             {MAX_KEYSPACE_NAME} bytes",
            name.len()
        )
    } else if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$')))
    {
        format!(
            "the {what} `{name}` contains {bad:?}; use ASCII letters, digits, `_`, `-`, `.` \
             and `$`"
        )
    } else {
        return true;
    };
    cx.error_spanned_by(tokens, msg);
    false
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("category_id", "category_id"), 0);
        assert_eq!(edit_distance("category_id", "categry_id"), 1);
        assert_eq!(edit_distance("category_id", "category_ids"), 1);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
