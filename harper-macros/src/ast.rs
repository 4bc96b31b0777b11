//! The typed model of a `#[table]` struct, built from the syntax tree while collecting
//! errors. Code generation (`expand`) only ever sees a model for which no error was
//! reported.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{Attribute, Fields, Ident, Item, ItemStruct, Type, Visibility};

use crate::attr::{self, Attr, Direction, ExportArgs, FieldAttrs};
use crate::case::RenameRule;
use crate::ctxt::Ctxt;
use crate::ty::{self, FieldType, Marker, Scalar, TypeClass};

/// The parsed input: the item with our attributes removed (always re-emitted, valid or
/// not) and, for a struct with named fields, its model.
pub struct Input {
    pub item: Item,
    pub table: Option<Table>,
}

pub struct Table {
    pub ident: Ident,
    /// Table name, also its fjall keyspace ("Product").
    pub name: String,
    /// Where the name comes from (`name = ".."` or the struct ident), for error spans.
    pub name_tokens: TokenStream,
    pub export: Option<Export>,
    /// Stored fields, in declaration order.
    pub fields: Vec<Field>,
    pub relationships: Vec<Relationship>,
    /// `#[table(index(..))]`: positions in `fields`, in key order.
    pub compound_indexes: Vec<Vec<usize>>,
}

pub struct Export {
    /// URL path segment.
    pub name: String,
    pub name_tokens: TokenStream,
    pub access: attr::AccessArgs,
}

pub struct Field {
    /// Position among the struct's fields.
    pub index: usize,
    pub ident: Ident,
    /// The Rust name, without `r#`.
    pub rust_name: String,
    /// The JSON attribute name.
    pub name: String,
    /// `#[rename = ".."]` literal or the field ident, for error spans.
    pub name_tokens: TokenStream,
    pub field_type: FieldType,
    pub primary_key: Option<Attribute>,
    pub indexed: Option<Attribute>,
}

impl Field {
    /// The primary key is always indexed.
    pub fn is_indexed(&self) -> bool {
        self.primary_key.is_some() || self.indexed.is_some()
    }
}

pub struct Relationship {
    pub index: usize,
    pub ident: Ident,
    pub vis: Visibility,
    /// The JSON attribute name ("category").
    pub name: String,
    pub name_tokens: TokenStream,
    pub marker: Marker,
    /// `T` in `Link<T>` / `Links<T>`.
    pub target: Type,
    /// The marker type as written, for error spans.
    pub ty: Type,
    /// The `#[relationship(..)]` attribute, for error spans.
    pub attr: Attribute,
    pub direction: Direction,
}

impl Input {
    pub fn from_syn(cx: &Ctxt, args: TokenStream, item: Item) -> Input {
        let mut export = Attr::none(cx, "`#[export]`");
        let args = attr::parse_table_args(cx, args, &mut export);
        match item {
            Item::Struct(mut item) => {
                attr::take_container_attrs(cx, &mut item.attrs, &mut export);
                let table = table_from_struct(cx, &mut item, args, export.get());
                Input {
                    item: Item::Struct(item),
                    table,
                }
            }
            Item::Enum(mut item) => {
                attr::take_container_attrs(cx, &mut item.attrs, &mut export);
                for variant in &mut item.variants {
                    attr::strip_field_attrs(&mut variant.fields);
                }
                let (enum_token, ident) = (&item.enum_token, &item.ident);
                cx.error_spanned_by(
                    quote!(#enum_token #ident),
                    "`#[table]` goes on a struct with named fields, not on an enum",
                );
                Input {
                    item: Item::Enum(item),
                    table: None,
                }
            }
            Item::Union(mut item) => {
                attr::take_container_attrs(cx, &mut item.attrs, &mut export);
                for field in &mut item.fields.named {
                    field.attrs.retain(|a| !attr::is_field_attr(a));
                }
                let (union_token, ident) = (&item.union_token, &item.ident);
                cx.error_spanned_by(
                    quote!(#union_token #ident),
                    "`#[table]` goes on a struct with named fields, not on a union",
                );
                Input {
                    item: Item::Union(item),
                    table: None,
                }
            }
            item => {
                cx.error_spanned_by(&item, "`#[table]` goes on a struct with named fields");
                Input { item, table: None }
            }
        }
    }
}

fn table_from_struct(
    cx: &Ctxt,
    item: &mut ItemStruct,
    args: attr::TableArgs,
    export: Option<ExportArgs>,
) -> Option<Table> {
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(&item.generics, "`#[table]` structs cannot be generic");
    } else if let Some(where_clause) = &item.generics.where_clause {
        cx.error_spanned_by(where_clause, "`#[table]` structs cannot be generic");
    }

    let fields = match &mut item.fields {
        Fields::Named(fields) => fields,
        Fields::Unnamed(_) | Fields::Unit => {
            let what = if matches!(item.fields, Fields::Unit) {
                "a unit struct"
            } else {
                "a tuple struct"
            };
            attr::strip_field_attrs(&mut item.fields);
            let (struct_token, ident, fields) = (&item.struct_token, &item.ident, &item.fields);
            cx.error_spanned_by(
                quote!(#struct_token #ident #fields),
                format!(
                    "`#[table]` needs a struct with named fields, not {what}: \
                     `struct {ident} {{ #[primary_key] id: Id, .. }}`"
                ),
            );
            return None;
        }
    };

    let (name, name_tokens) = match &args.name {
        Some(lit) => (lit.value(), lit.to_token_stream()),
        None => (item.ident.unraw().to_string(), item.ident.to_token_stream()),
    };
    let export = export.map(|export| match export.name {
        Some(lit) => Export {
            name: lit.value(),
            name_tokens: lit.to_token_stream(),
            access: export.access,
        },
        // Served under the table name.
        None => Export {
            name: name.clone(),
            name_tokens: export.tokens,
            access: export.access,
        },
    });

    let mut table = Table {
        ident: item.ident.clone(),
        name,
        name_tokens,
        export,
        fields: Vec::new(),
        relationships: Vec::new(),
        compound_indexes: Vec::new(),
    };
    for (index, field) in fields.named.iter_mut().enumerate() {
        let attrs = FieldAttrs::take(cx, &mut field.attrs);
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        parse_field(
            cx,
            &mut table,
            args.rename_all,
            FieldInput {
                index,
                ident,
                vis: &field.vis,
                ty: &field.ty,
                attrs,
            },
        );
    }
    for idents in &args.indexes {
        let mut positions = Vec::with_capacity(idents.len());
        for ident in idents {
            let rust_name = ident.unraw().to_string();
            let Some(i) = table.fields.iter().position(|f| f.rust_name == rust_name) else {
                cx.error_spanned_by(
                    ident,
                    format!("`index(..)` names `{rust_name}`, which is not a stored field"),
                );
                continue;
            };
            let ty = &table.fields[i].field_type;
            if ty.list || ty.scalar == Scalar::Json {
                cx.error_spanned_by(
                    ident,
                    format!(
                        "`index(..)` field `{rust_name}` must hold one indexable value \
                         (`Id`, `String`, `bool`, an integer or a float, or an `Option` of one)"
                    ),
                );
            } else if positions.contains(&i) {
                cx.error_spanned_by(ident, format!("`index(..)` names `{rust_name}` twice"));
            }
            positions.push(i);
        }
        table.compound_indexes.push(positions);
    }
    Some(table)
}

struct FieldInput<'a> {
    index: usize,
    ident: Ident,
    vis: &'a Visibility,
    ty: &'a Type,
    attrs: FieldAttrs,
}

fn parse_field(cx: &Ctxt, table: &mut Table, rename_all: RenameRule, field: FieldInput) {
    let FieldInput {
        index,
        ident,
        vis,
        ty,
        attrs,
    } = field;
    let rust_name = ident.unraw().to_string();
    let (name, name_tokens) = match &attrs.rename {
        Some(lit) => (lit.value(), lit.to_token_stream()),
        None => (
            rename_all.apply_to_field(&rust_name),
            ident.to_token_stream(),
        ),
    };

    match ty::classify(ty) {
        TypeClass::Stored(field_type) => {
            if attrs.relationship.is_some() {
                cx.error_spanned_by(
                    ty,
                    format!(
                        "`#[relationship]` field `{rust_name}` must have type `Link<T>` \
                         (one related record) or `Links<T>` (many)"
                    ),
                );
                return;
            }
            check_stored_serde(cx, &attrs.serde);
            if attrs.primary_key.is_some() {
                check_primary_key_type(cx, ty, field_type);
            }
            if let Some(indexed) = &attrs.indexed
                && !field_type.scalar.is_indexable()
            {
                cx.error_spanned_by(
                    indexed,
                    format!(
                        "`#[indexed]` field `{rust_name}` has a type stored as JSON, which cannot \
                         be indexed; indexable types are `Id`, `String`, `bool`, integers, \
                         `f32`/`f64`, and `Option`/`Vec` of those"
                    ),
                );
            }
            table.fields.push(Field {
                index,
                ident,
                rust_name,
                name,
                name_tokens,
                field_type,
                primary_key: attrs.primary_key,
                indexed: attrs.indexed,
            });
        }
        TypeClass::Marker { marker, target } => {
            let Some(rel) = attrs.relationship else {
                let target = target.map(type_to_string).unwrap_or_else(|| "T".to_owned());
                cx.error_spanned_by(
                    ty,
                    format!(
                        "`{}<{target}>` marks a relationship: add \
                         `#[relationship(from = <field of this struct holding {target} keys>)]` \
                         or `#[relationship(to = <field of {target} holding this table's keys>)]`",
                        marker.name()
                    ),
                );
                return;
            };
            let Some(target) = target else {
                cx.error_spanned_by(
                    ty,
                    format!(
                        "expected `{0}<T>` where `T` is the related `#[table]` struct",
                        marker.name()
                    ),
                );
                return;
            };
            if let Some(pk) = &attrs.primary_key {
                cx.error_spanned_by(pk, "a relationship field cannot be the primary key");
            }
            if let Some(indexed) = &attrs.indexed {
                let hint = match &rel.direction {
                    Some(Direction::From(field)) => {
                        format!("; index the field holding the keys (`{field}`) instead")
                    }
                    _ => String::new(),
                };
                cx.error_spanned_by(
                    indexed,
                    format!(
                        "relationship field `{rust_name}` is not stored and cannot be \
                         `#[indexed]`{hint}"
                    ),
                );
            }
            for serde in &attrs.serde {
                cx.error_spanned_by(
                    serde,
                    "relationship fields are never serialized; remove this `#[serde(..)]`",
                );
            }
            let Some(direction) = rel.direction else {
                return;
            };
            if let (Marker::Link, Direction::To(_)) = (marker, &direction) {
                cx.error_spanned_by(
                    ty,
                    format!(
                        "`to` relationships are one-to-many: use `Links<{}>`",
                        type_to_string(target)
                    ),
                );
            }
            table.relationships.push(Relationship {
                index,
                ident,
                vis: vis.clone(),
                name,
                name_tokens,
                marker,
                target: target.clone(),
                ty: ty.clone(),
                attr: rel.attr,
                direction,
            });
        }
        TypeClass::WrappedMarker(marker) => {
            cx.error_spanned_by(
                ty,
                format!(
                    "relationship markers cannot be wrapped in `Option` or `Vec`: use `{0}<T>` \
                     as the field type",
                    marker.name()
                ),
            );
        }
    }
}

/// Serde options that would make the stored JSON disagree with the table's fields.
fn check_stored_serde(cx: &Ctxt, serde: &[Attribute]) {
    for attr in serde {
        for key in attr::serde_keys(attr) {
            let msg = match key.to_string().as_str() {
                "rename" => {
                    "`#[serde(rename)]` is not supported on `#[table]` fields; \
                     use `#[rename = \"...\"]`"
                }
                "flatten" | "skip" | "skip_serializing" | "skip_deserializing" => {
                    "stored fields are serialized as declared: `#[serde(skip)]`, \
                     `skip_serializing`, `skip_deserializing` and `flatten` are not supported \
                     on `#[table]` fields"
                }
                _ => continue,
            };
            cx.error_spanned_by(&key, msg);
        }
    }
}

fn check_primary_key_type(cx: &Ctxt, ty: &Type, field_type: FieldType) {
    let problem = if field_type.optional {
        "cannot be optional"
    } else if field_type.list {
        "cannot be a list"
    } else if !field_type.scalar.can_hold_keys() {
        match field_type.scalar {
            Scalar::Float { .. } => "cannot be a float",
            Scalar::Bool => "cannot be a `bool`",
            _ => "cannot be a type stored as JSON",
        }
    } else {
        return;
    };
    cx.error_spanned_by(
        ty,
        format!("the primary key {problem}: use `Id`, `String` or an integer type"),
    );
}

/// `crate::Category` rather than quote's `crate :: Category`.
pub fn type_to_string(ty: &Type) -> String {
    let mut out = String::new();
    for token in ty.to_token_stream().to_string().split_whitespace() {
        // Keep a space only between two word-like tokens (`dyn Trait`).
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word(out.chars().last()) && word(token.chars().next()) {
            out.push(' ');
        }
        out.push_str(token);
    }
    out
}
