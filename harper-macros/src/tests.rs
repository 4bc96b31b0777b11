//! Front-end and expansion tests without a compiler round-trip: parse a struct, run the
//! passes, and look at the model, the error messages and the generated tokens.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Item, ItemStruct};

use crate::ast::{Input, Table};
use crate::attr::Direction;
use crate::ctxt::Ctxt;
use crate::ty::{FieldType, Marker, Scalar};
use crate::{check, expand, export};

/// Runs the front end: the model (if any), the cleaned item, and every error message.
fn front(args: TokenStream, item: TokenStream) -> (Option<Table>, Item, Vec<String>) {
    let cx = Ctxt::new();
    let item: Item = syn::parse2(item).expect("test input parses");
    let Input { item, table } = Input::from_syn(&cx, args, item);
    if let Some(table) = &table {
        check::check(&cx, table);
    }
    let errors = match cx.check() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    };
    (table, item, errors)
}

fn valid(args: TokenStream, item: TokenStream) -> Table {
    let (table, _, errors) = front(args, item);
    assert_eq!(errors, Vec::<String>::new());
    table.expect("a model")
}

fn errors(args: TokenStream, item: TokenStream) -> Vec<String> {
    front(args, item).2
}

/// The single error of `item`.
fn error(args: TokenStream, item: TokenStream) -> String {
    let mut errors = errors(args, item);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.remove(0)
}

fn product() -> TokenStream {
    quote! {
        /// A product.
        #[derive(Debug, Clone)]
        pub struct Product {
            #[primary_key] pub id: Id,
            #[indexed] pub name: String,
            pub description: Option<String>,
            #[indexed] pub price: f64,
            #[indexed] pub category_id: Id,
            #[indexed] pub tags: Vec<String>,
            #[rename = "SKU"] pub sku: Option<String>,
            pub extra: serde_json::Value,
            #[serde(default)] pub stock_quantity: i64,
            #[relationship(from = category_id)] pub category: Link<Category>,
        }
    }
}

fn ft(scalar: Scalar, optional: bool, list: bool) -> FieldType {
    FieldType {
        scalar,
        optional,
        list,
    }
}

#[test]
fn product_model() {
    let table = valid(quote!(), product());
    assert_eq!(table.name, "Product");
    assert!(table.export.is_none());
    let names: Vec<_> = table.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "name",
            "description",
            "price",
            "categoryId",
            "tags",
            "SKU",
            "extra",
            "stockQuantity"
        ]
    );
    let rust: Vec<_> = table.fields.iter().map(|f| f.rust_name.as_str()).collect();
    assert_eq!(rust[4], "category_id");
    let types: Vec<_> = table.fields.iter().map(|f| f.field_type).collect();
    assert_eq!(
        types,
        [
            ft(Scalar::Id, false, false),
            ft(Scalar::String, false, false),
            ft(Scalar::String, true, false),
            ft(Scalar::Float { bits: 64 }, false, false),
            ft(Scalar::Id, false, false),
            ft(Scalar::String, false, true),
            ft(Scalar::String, true, false),
            ft(Scalar::Json, false, false),
            ft(
                Scalar::Int {
                    signed: true,
                    bits: 64
                },
                false,
                false
            ),
        ]
    );
    let indexed: Vec<_> = table.fields.iter().map(|f| f.is_indexed()).collect();
    assert_eq!(
        indexed,
        [true, true, false, true, true, true, false, false, false]
    );
    assert!(table.fields[0].primary_key.is_some());
    assert_eq!(table.relationships.len(), 1);
    let rel = &table.relationships[0];
    assert_eq!(rel.name, "category");
    assert_eq!(rel.marker, Marker::Link);
    assert!(matches!(&rel.direction, Direction::From(f) if f == "category_id"));
    assert_eq!(rel.index, 9);
}

#[test]
fn our_attributes_are_removed_and_others_kept() {
    let (_, item, errors) = front(quote!(), product());
    assert!(errors.is_empty());
    let Item::Struct(item) = item else {
        panic!("not a struct")
    };
    let outer: Vec<_> = item
        .attrs
        .iter()
        .map(|a| a.path().get_ident().unwrap().to_string())
        .collect();
    assert_eq!(outer, ["doc", "derive"]);
    for field in &item.fields {
        for attr in &field.attrs {
            assert!(attr.path().is_ident("serde"), "left {}", quote!(#attr));
        }
    }
}

#[test]
fn rename_all_rules() {
    let item = quote! {
        struct Item { #[primary_key] item_id: u32, unit_price: f32, #[rename = "x"] other_name: bool }
    };
    let names = |args| -> Vec<String> {
        valid(args, item.clone())
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect()
    };
    assert_eq!(names(quote!()), ["itemId", "unitPrice", "x"]);
    assert_eq!(
        names(quote!(rename_all = "snake_case")),
        ["item_id", "unit_price", "x"]
    );
    assert_eq!(
        names(quote!(rename_all = "PascalCase")),
        ["ItemId", "UnitPrice", "x"]
    );
    assert_eq!(
        names(quote!(rename_all = "kebab-case")),
        ["item-id", "unit-price", "x"]
    );
    assert_eq!(
        names(quote!(rename_all = "SCREAMING_SNAKE_CASE")),
        ["ITEM_ID", "UNIT_PRICE", "x"]
    );
    assert_eq!(
        names(quote!(rename_all = "lowercase")),
        ["item_id", "unit_price", "x"]
    );
    let table = valid(
        quote!(name = "Items", rename_all = "snake_case"),
        item.clone(),
    );
    assert_eq!(table.name, "Items");
    assert_eq!(
        table.fields[0].field_type,
        ft(
            Scalar::Int {
                signed: false,
                bits: 32
            },
            false,
            false
        )
    );
}

#[test]
fn raw_identifiers() {
    let table = valid(
        quote!(),
        quote!(
            struct r#Type {
                #[primary_key]
                r#type: String,
                r#loop_count: i8,
            }
        ),
    );
    assert_eq!(table.name, "Type");
    assert_eq!(table.fields[0].rust_name, "type");
    assert_eq!(table.fields[1].name, "loopCount");
}

#[test]
fn export_options() {
    let item = quote!(
        #[export]
        struct P {
            #[primary_key]
            id: Id,
        }
    );
    let table = valid(quote!(), item);
    assert_eq!(table.export.as_ref().map(|e| e.name.as_str()), Some("P"));

    let item = quote!(
        #[export(name = "products")]
        struct P {
            #[primary_key]
            id: Id,
        }
    );
    let table = valid(quote!(name = "Product"), item);
    assert_eq!(
        table.export.as_ref().map(|e| e.name.as_str()),
        Some("products")
    );

    // What `#[export]` above `#[table]` leaves behind.
    let item = quote!(
        struct P {
            #[primary_key]
            id: Id,
        }
    );
    let table = valid(quote!(name = "Product", __export), item.clone());
    assert_eq!(
        table.export.as_ref().map(|e| e.name.as_str()),
        Some("Product")
    );
    let table = valid(quote!(__export(name = "p")), item);
    assert_eq!(table.export.as_ref().map(|e| e.name.as_str()), Some("p"));
}

#[test]
fn export_permissions() {
    use crate::attr::Rule;
    let item = quote!(
        #[export(read = "public", write = "owner | role:support", delete = "admin")]
        struct P {
            #[primary_key]
            id: Id,
        }
    );
    let table = valid(quote!(), item);
    let access = &table.export.as_ref().map(|e| &e.access).unwrap();
    assert_eq!(
        access.read,
        Some(Rule {
            public: true,
            ..Rule::default()
        })
    );
    let owner_or_support = Rule {
        owner: true,
        roles: vec!["support".into()],
        ..Rule::default()
    };
    assert_eq!(access.create.as_ref(), Some(&owner_or_support));
    assert_eq!(access.update.as_ref(), Some(&owner_or_support));
    // `delete` overrides `write`; `admin` alone grants nothing beyond admins.
    assert_eq!(access.delete, Some(Rule::default()));

    // Nothing declared: defaults are applied at expansion.
    let table = valid(
        quote!(__export),
        quote!(
            struct P {
                #[primary_key]
                id: Id,
            }
        ),
    );
    assert!(
        table
            .export
            .as_ref()
            .is_some_and(|e| e.access.read.is_none())
    );
}

#[test]
fn export_permission_errors() {
    let cases = [
        (quote!(read = "everyone"), "unknown permission `everyone`"),
        (quote!(write = "role:"), "invalid role name ``"),
        (quote!(write = "role:a b"), "invalid role name `a b`"),
        (quote!(read = "public |"), "empty permission"),
        (
            quote!(read = "public", read = "owner"),
            "duplicate `#[export]` option `read`",
        ),
        (quote!(owner = "x"), "unknown `#[export]` option `owner`"),
    ];
    for (args, expected) in cases {
        let item = quote!(
            #[export(#args)]
            struct P {
                #[primary_key]
                id: Id,
            }
        );
        let message = error(quote!(), item);
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn export_above_table_hands_over() {
    let rewrite = |args: TokenStream, item: TokenStream| {
        let out = export::export(args, item);
        let item: ItemStruct = syn::parse2(out).expect("an item and no errors");
        let table = item
            .attrs
            .iter()
            .find(|a| a.path().is_ident("table"))
            .expect("table attribute");
        quote!(#table).to_string()
    };
    assert_eq!(
        rewrite(
            quote!(),
            quote!(
                #[table]
                struct P {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        "# [table (__export)]"
    );
    assert_eq!(
        rewrite(
            quote!(name = "products"),
            quote!(
                #[table(name = "Product")]
                struct P {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        "# [table (name = \"Product\" , __export (name = \"products\"))]"
    );
    assert_eq!(
        rewrite(
            quote!(),
            quote!(
                #[table(rename_all = "snake_case")]
                struct P {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        "# [table (rename_all = \"snake_case\" , __export)]"
    );
}

#[test]
fn export_without_table() {
    let out = export::export(
        quote!(),
        quote!(
            struct P {
                #[primary_key]
                id: Id,
            }
        ),
    )
    .to_string();
    assert!(out.contains("`#[export]` goes with `#[table]`"), "{out}");
    assert!(!out.contains("primary_key"), "{out}");
}

#[test]
fn relationships() {
    let table = valid(
        quote!(),
        quote! {
            struct Category {
                #[primary_key] id: Id,
                tag_ids: Option<Vec<Id>>,
                #[relationship(to = category_id)] products: Links<Product>,
                #[relationship(from = tag_ids)] tags: Links<Tag>,
                #[rename = "mainProduct"] #[relationship(from = id)] main: Link<Product>,
            }
        },
    );
    let rels: Vec<_> = table
        .relationships
        .iter()
        .map(|r| (r.name.as_str(), r.marker))
        .collect();
    assert_eq!(
        rels,
        [
            ("products", Marker::Links),
            ("tags", Marker::Links),
            ("mainProduct", Marker::Link)
        ]
    );
    assert!(matches!(&table.relationships[0].direction, Direction::To(f) if f == "category_id"));
}

// ---------------------------------------------------------------------------------------
// Errors, one rule each

#[test]
fn no_primary_key() {
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    name: String,
                }
            )
        ),
        "`#[table]` struct `P` has no primary key: mark one field `#[primary_key]`"
    );
}

#[test]
fn two_primary_keys() {
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    a: Id,
                    #[primary_key]
                    b: Id,
                }
            )
        ),
        "`a` already is the primary key; a table has exactly one `#[primary_key]`"
    );
}

#[test]
fn primary_key_types() {
    for (ty, problem) in [
        (quote!(Option<Id>), "cannot be optional"),
        (quote!(Vec<Id>), "cannot be a list"),
        (quote!(f64), "cannot be a float"),
        (quote!(bool), "cannot be a `bool`"),
        (quote!(serde_json::Value), "cannot be a type stored as JSON"),
    ] {
        assert_eq!(
            error(quote!(), quote!(struct P { #[primary_key] id: #ty })),
            format!("the primary key {problem}: use `Id`, `String` or an integer type")
        );
    }
    for ty in [quote!(Id), quote!(String), quote!(u64), quote!(i32)] {
        valid(quote!(), quote!(struct P { #[primary_key] id: #ty }));
    }
}

#[test]
fn table_options() {
    let item = quote!(
        struct P {
            #[primary_key]
            id: Id,
        }
    );
    assert_eq!(
        error(quote!(bogus), item.clone()),
        "unknown `#[table]` option `bogus`; expected `name`, `rename_all` or `index`"
    );
    assert_eq!(
        error(quote!(bogus = 1, name = "Q"), item.clone()),
        "unknown `#[table]` option `bogus`; expected `name`, `rename_all` or `index`"
    );
    assert_eq!(
        error(quote!(name = "A", name = "B"), item.clone()),
        "duplicate `#[table]` option `name`"
    );
    assert_eq!(
        error(quote!(rename_all = "camelcase"), item.clone()),
        "unknown rename rule `rename_all = \"camelcase\"`; expected one of \"camelCase\", \
         \"snake_case\", \"PascalCase\", \"kebab-case\", \"SCREAMING_SNAKE_CASE\", \"lowercase\""
    );
    assert_eq!(
        error(quote!(name = 5), item.clone()),
        "expected string literal"
    );
    // Errors in several options are all reported.
    assert_eq!(errors(quote!(a, b = 1, name = ""), item).len(), 3);
}

#[test]
fn export_errors() {
    let item = |attrs: TokenStream| quote!(#attrs struct P { #[primary_key] id: Id });
    assert_eq!(
        error(quote!(), item(quote!(#[export(nmae = "x")]))),
        "unknown `#[export]` option `nmae`; expected `name`, `read`, `write`, `create`, \
         `update` or `delete`"
    );
    assert_eq!(
        error(quote!(), item(quote!(#[export] #[export]))),
        "duplicate `#[export]`"
    );
    assert_eq!(
        error(quote!(__export), item(quote!(#[export]))),
        "duplicate `#[export]`"
    );
    assert_eq!(
        error(quote!(), item(quote!(#[export(name = "a/b")]))),
        "the export name `a/b` contains '/'; use ASCII letters, digits, `_`, `-`, `.` and `$`"
    );
    assert_eq!(
        error(quote!(), item(quote!(#[table]))),
        "`#[table]` is applied twice"
    );
}

#[test]
fn field_attribute_arguments() {
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key(auto)]
                    id: Id,
                }
            )
        ),
        "`#[primary_key]` takes no arguments"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    #[indexed(unique)]
                    a: String,
                }
            )
        ),
        "`#[indexed]` takes no arguments"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    #[indexed = 1]
                    a: String,
                }
            )
        ),
        "`#[indexed]` takes no arguments"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    #[indexed]
                    #[indexed]
                    a: String,
                }
            )
        ),
        "duplicate `#[indexed]`"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    #[rename("a")]
                    a: String,
                }
            )
        ),
        "expected `#[rename = \"jsonName\"]`"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    #[rename = ""]
                    a: String,
                }
            )
        ),
        "`#[rename]` needs a non-empty name"
    );
}

#[test]
fn cfg_fields() {
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    #[cfg(feature = "x")]
                    extra: String,
                }
            )
        ),
        "`#[cfg]` is not supported on `#[table]` fields: a table's fields cannot depend on the \
         build configuration"
    );
    // `cfg_attr` for other attributes is fine.
    valid(
        quote!(),
        quote!(
            struct P {
                #[primary_key]
                id: Id,
                #[cfg_attr(test, allow(dead_code))]
                extra: String,
            }
        ),
    );
}

#[test]
fn indexed_types() {
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    #[indexed]
                    extra: serde_json::Value,
                }
            )
        ),
        "`#[indexed]` field `extra` has a type stored as JSON, which cannot be indexed; \
         indexable types are `Id`, `String`, `bool`, integers, `f32`/`f64`, and `Option`/`Vec` \
         of those"
    );
    valid(
        quote!(),
        quote!(
            struct P {
                #[primary_key]
                id: Id,
                #[indexed]
                a: Option<Vec<u8>>,
                #[indexed]
                b: bool,
                #[indexed]
                c: Option<f32>,
            }
        ),
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    category_id: Id,
                    #[indexed]
                    #[relationship(from = category_id)]
                    category: Link<Category>,
                }
            )
        ),
        "relationship field `category` is not stored and cannot be `#[indexed]`; index the \
         field holding the keys (`category_id`) instead"
    );
}

fn with_rel(rel: TokenStream) -> TokenStream {
    quote! {
        struct Product {
            #[primary_key] id: Id,
            category_id: Id,
            tag_ids: Vec<Id>,
            price: f64,
            #rel
        }
    }
}

#[test]
fn relationship_errors() {
    let err = |rel| error(quote!(), with_rel(rel));
    assert_eq!(
        err(quote!(#[relationship(from = category)] category: Link<Category>)),
        "`category` is a relationship; `from` names the stored field holding the keys of `Category`"
    );
    assert_eq!(
        err(quote!(#[relationship(from = categoryId)] category: Link<Category>)),
        "no field `categoryId` in `Product`; did you mean `category_id`?"
    );
    assert_eq!(
        err(quote!(#[relationship(from = categry_id)] category: Link<Category>)),
        "no field `categry_id` in `Product`; did you mean `category_id`?"
    );
    assert_eq!(
        err(quote!(#[relationship(from = nothing_alike)] category: Link<Category>)),
        "no field `nothing_alike` in `Product`"
    );
    assert_eq!(
        err(quote!(#[relationship(from = price)] category: Link<Category>)),
        "relationship `category`: field `price` cannot hold keys of `Category`; a `from` field \
         must be `Id`, `String` or an integer type, or an `Option`/`Vec` of those"
    );
    assert_eq!(
        err(quote!(#[relationship(from = tag_ids)] tags: Link<Tag>)),
        "`tag_ids` is a list of keys, so `tags` relates many records: use `Links<Tag>`"
    );
    assert_eq!(
        err(quote!(#[relationship(from = category_id)] categories: Links<Category>)),
        "`category_id` holds a single key, so `categories` relates at most one record: use \
         `Link<Category>` (or make `category_id` a `Vec` for many-to-many)"
    );
    assert_eq!(
        err(quote!(#[relationship(to = product_id)] item: Link<CartItem>)),
        "`to` relationships are one-to-many: use `Links<CartItem>`"
    );
    let needs = "`#[relationship]` needs `from = <field>` (a field of this struct holds the keys \
                 of the related table) or `to = <field>` (a field of the related table holds the \
                 keys of this one)";
    assert_eq!(err(quote!(#[relationship] category: Link<Category>)), needs);
    assert_eq!(
        err(quote!(#[relationship()] category: Link<Category>)),
        needs
    );
    assert_eq!(
        err(quote!(#[relationship(from = category_id, to = id)] category: Link<Category>)),
        "`#[relationship]` takes either `from` or `to`, not both"
    );
    assert_eq!(
        err(quote!(#[relationship(from = category_id, from = id)] category: Link<Category>)),
        "duplicate `#[relationship]` option `from`"
    );
    assert_eq!(
        err(quote!(#[relationship(via = category_id)] category: Link<Category>)),
        "unknown `#[relationship]` option `via`; expected `from` or `to`"
    );
    assert_eq!(
        err(quote!(#[relationship(from = "category_id")] category: Link<Category>)),
        "write the Rust field name without quotes: `category_id`"
    );
    assert_eq!(
        err(quote!(#[relationship(from = category_id)] category: Category)),
        "`#[relationship]` field `category` must have type `Link<T>` (one related record) or \
         `Links<T>` (many)"
    );
    assert_eq!(
        err(quote!(category: Link<Category>)),
        "`Link<Category>` marks a relationship: add `#[relationship(from = <field of this struct \
         holding Category keys>)]` or `#[relationship(to = <field of Category holding this \
         table's keys>)]`"
    );
    assert_eq!(
        err(quote!(#[relationship(from = category_id)] category: Option<Link<Category>>)),
        "relationship markers cannot be wrapped in `Option` or `Vec`: use `Link<T>` as the \
         field type"
    );
    assert_eq!(
        err(quote!(#[relationship(from = category_id)] #[serde(default)] category: Link<Category>)),
        "relationship fields are never serialized; remove this `#[serde(..)]`"
    );
    assert_eq!(
        err(quote!(#[primary_key] #[relationship(from = category_id)] category: Link<Category>)),
        "a relationship field cannot be the primary key"
    );
}

#[test]
fn item_shapes() {
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P(Id);
            )
        ),
        "`#[table]` needs a struct with named fields, not a tuple struct: \
         `struct P { #[primary_key] id: Id, .. }`"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P;
            )
        ),
        "`#[table]` needs a struct with named fields, not a unit struct: \
         `struct P { #[primary_key] id: Id, .. }`"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                enum P {
                    A {
                        #[primary_key]
                        id: Id,
                    },
                }
            )
        ),
        "`#[table]` goes on a struct with named fields, not on an enum"
    );
    assert_eq!(
        error(quote!(), quote!(union P { #[primary_key] id: u64 })),
        "`#[table]` goes on a struct with named fields, not on a union"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P<T> {
                    #[primary_key]
                    id: Id,
                    t: T,
                }
            )
        ),
        "`#[table]` structs cannot be generic"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P<'a> {
                    #[primary_key]
                    id: Id,
                    t: &'a str,
                }
            )
        ),
        "`#[table]` structs cannot be generic"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P
                where
                    Id: Clone,
                {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        "`#[table]` structs cannot be generic"
    );
}

#[test]
fn serde_conflicts() {
    assert_eq!(
        error(
            quote!(),
            quote!(
                #[serde(rename_all = "camelCase")]
                struct P {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        "`#[serde(rename_all)]` is not supported on a `#[table]` struct; use \
         `#[table(rename_all = \"...\")]` instead"
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    #[serde(rename = "ID")]
                    id: Id,
                }
            )
        ),
        "`#[serde(rename)]` is not supported on `#[table]` fields; use `#[rename = \"...\"]`"
    );
    assert_eq!(
        errors(
            quote!(),
            quote!(
                #[derive(Debug, serde::Serialize, Deserialize)]
                struct P {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        [
            "remove `Serialize` from `#[derive(..)]`: `#[table]` derives Serialize and \
             Deserialize itself",
            "remove `Deserialize` from `#[derive(..)]`: `#[table]` derives Serialize and \
             Deserialize itself"
        ]
    );
    // Other serde options pass.
    valid(
        quote!(),
        quote!(
            #[serde(deny_unknown_fields)]
            struct P {
                #[primary_key]
                id: Id,
                #[serde(default, skip_serializing_if = "Option::is_none")]
                a: Option<u8>,
            }
        ),
    );
}

#[test]
fn names() {
    let long = "T".repeat(256);
    assert_eq!(
        error(
            quote!(name = #long),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        "the table name is 256 bytes long; fjall keyspace names are limited to 255 bytes"
    );
    assert_eq!(
        error(
            quote!(name = ""),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        "the table name cannot be empty"
    );
    assert_eq!(
        error(
            quote!(name = "My Table"),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                }
            )
        ),
        "the table name `My Table` contains ' '; use ASCII letters, digits, `_`, `-`, `.` and `$`"
    );
    // 200 + 1 + 55 = 256 bytes.
    let table = "T".repeat(200);
    let field = "f".repeat(55);
    let msg = error(
        quote!(name = #table),
        quote!(struct P { #[primary_key] id: Id, #[indexed] #[rename = #field] a: String }),
    );
    assert!(
        msg.starts_with("the index of `a` would be stored in keyspace `TTT"),
        "{msg}"
    );
    assert!(
        msg.contains("which is 256 bytes long; fjall allows at most 255"),
        "{msg}"
    );
    // Not indexed: no keyspace.
    valid(
        quote!(name = #table),
        quote!(struct P { #[primary_key] id: Id, #[rename = #field] a: String }),
    );
    assert_eq!(
        error(
            quote!(),
            quote!(
                struct P {
                    #[primary_key]
                    id: Id,
                    #[rename = "id"]
                    other: String,
                }
            )
        ),
        "attribute name `id` is already used by field `id`"
    );
}

#[test]
fn all_errors_at_once() {
    let errors = errors(
        quote!(bogus),
        quote! {
            struct P {
                #[indexed] extra: serde_json::Value,
                #[relationship(from = nope)] category: Link<Category>,
                other: Links<Tag>,
            }
        },
    );
    assert_eq!(errors.len(), 5, "{errors:#?}");
}

// ---------------------------------------------------------------------------------------
// Expansion

/// Tokens as a string without whitespace, so that comparisons do not depend on how
/// `proc_macro2` spaces punctuation (`> >` or `>>`).
fn normalized(tokens: TokenStream) -> String {
    squash(&tokens.to_string())
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

fn assert_contains(out: &str, parts: &[&str]) {
    for part in parts {
        assert!(out.contains(&squash(part)), "missing\n{part}\nin\n{out}");
    }
}

#[test]
fn expansion() {
    let out = normalized(expand::table(quote!(), product()));
    assert_contains(
        &out,
        &[
            r#"# [derive (:: harper :: __private :: serde :: Serialize , :: harper :: __private :: serde :: Deserialize)]
               # [serde (crate = "::harper::__private::serde")]
               # [doc = r" A product."] # [derive (Debug , Clone)] pub struct Product"#,
            r#"# [serde (rename = "id")] pub id : Id"#,
            r#"# [serde (rename = "categoryId")] pub category_id : Id"#,
            r#"# [serde (rename = "SKU")] pub sku : Option < String >"#,
            r#"# [serde (rename = "stockQuantity")] # [serde (default)] pub stock_quantity : i64"#,
            r#"# [serde (skip)] # [allow (dead_code)] pub category : Link < Category >"#,
            r#"impl :: harper :: Table for Product {
                 const DEF : & 'static :: harper :: schema :: TableDef = {
                   static __HARPER_TABLE_DEF : :: harper :: schema :: TableDef = :: harper :: schema :: TableDef {
                   name : "Product" , export : :: core :: option :: Option :: None , fields : & ["#,
            r#":: harper :: schema :: FieldDef { name : "categoryId" , rust_name : "category_id" ,
                 ty : :: harper :: schema :: FieldType { scalar : :: harper :: schema :: Scalar :: Id , optional : false , list : false } ,
                 indexed : true , }"#,
            r#":: harper :: schema :: FieldDef { name : "tags" , rust_name : "tags" ,
                 ty : :: harper :: schema :: FieldType { scalar : :: harper :: schema :: Scalar :: String , optional : false , list : true } ,
                 indexed : true , }"#,
            r#"scalar : :: harper :: schema :: Scalar :: Int { signed : true , bits : 64u8 }"#,
            r#"primary_key : 0usize , relationships : & [:: harper :: schema :: RelationshipDef {
                 name : "category" , target : || < Category as :: harper :: Table > :: DEF ,
                 kind : :: harper :: schema :: RelationshipKind :: From { field : "categoryId" } , }] ,"#,
            r#"pub fn category (& self , tx : & impl :: harper :: Reader ,)
                 -> :: harper :: Result < :: core :: option :: Option < Category >>"#,
            r#":: harper :: Reader :: follow :: < Self , Category > (tx , self , "category")"#,
            r#"let this : & :: harper :: schema :: TableDef = < Product as :: harper :: Table > :: DEF ;"#,
            r#":: harper :: schema :: checks :: can_reference (this , "category_id" ,
                 :: harper :: schema :: checks :: key_scalar (target) ,)"#,
            r#""relationship `category`: field `category_id` of `Product` cannot hold keys of `Category`: `Id` and `String` keys need an `Id` or `String` field, integer keys an integer field""#,
        ],
    );
    assert!(!out.contains("primary_key]"), "{out}");
    assert!(!out.contains("compile_error"), "{out}");
}

#[test]
fn expansion_of_to_relationship_and_export() {
    let out = normalized(expand::table(
        quote!(name = "Cat"),
        quote! {
            #[export(name = "categories")]
            pub struct Category {
                #[primary_key] pub id: Id,
                #[relationship(to = category_id)] pub(crate) products: Links<Product>,
            }
        },
    ));
    assert_contains(
        &out,
        &[
            r#"name : "Cat" , export : :: core :: option :: Option :: Some (:: harper :: schema :: ExportDef { name : "categories" , access : :: harper :: schema :: Access { read : :: harper :: schema :: Rule { public : true , authenticated : false , owner : false , roles : & [] , } , create : :: harper :: schema :: Rule { public : false , authenticated : false , owner : false , roles : & [] , }"#,
            r#"kind : :: harper :: schema :: RelationshipKind :: To { rust_field : "category_id" }"#,
            r#"pub (crate) fn products (& self , tx : & impl :: harper :: Reader ,)
                 -> :: harper :: Result < :: std :: vec :: Vec < Product >> {
                 :: harper :: Reader :: follow :: < Self , Product > (tx , self , "products") }"#,
            r#":: harper :: schema :: checks :: can_reference (target , "category_id" ,
                 :: harper :: schema :: checks :: key_scalar (this) ,)"#,
            r#""relationship `products`: `Product` has no field `category_id` holding `Category` keys""#,
        ],
    );
}

#[test]
fn self_relationship_checks_name_the_struct() {
    let out = normalized(expand::table(
        quote!(),
        quote! {
            struct Node {
                #[primary_key] id: Id,
                parent_id: Option<Id>,
                #[relationship(from = parent_id)] parent: Link<Self>,
            }
        },
    ));
    assert_contains(
        &out,
        &[
            "let target : & :: harper :: schema :: TableDef = < Node as :: harper :: Table > :: DEF",
            ":: harper :: Reader :: follow :: < Self , Self >",
        ],
    );
}

#[test]
fn fallback_keeps_the_item_and_stubs() {
    let out = normalized(expand::table(
        quote!(),
        quote! {
            #[derive(Debug)]
            #[serde(default)]
            pub struct Product {
                #[indexed] pub name: String,
                #[serde(default)] pub tags: Vec<String>,
                #[relationship(from = name)] pub category: Link<Category>,
            }
        },
    ));
    assert_contains(
        &out,
        &[
            "# [derive (Debug)] pub struct Product { pub name : String , pub tags : Vec < String > ,
               pub category : Link < Category > , }",
            "impl :: harper :: __private :: serde :: Serialize for Product",
            "impl < 'de > :: harper :: __private :: serde :: Deserialize < 'de > for Product",
            "impl :: harper :: Table for Product",
            "fields : & [] ,",
            "pub fn category (& self , _ : & impl :: harper :: Reader)
               -> :: harper :: Result < :: core :: option :: Option < Category >>",
            r#"compile_error ! { "`#[table]` struct `Product` has no primary key"#,
        ],
    );
    assert!(!out.contains("serde(default)"), "{out}");
}

#[test]
fn fallback_for_generic_structs_has_no_stubs() {
    let out = normalized(expand::table(
        quote!(),
        quote!(
            struct P<T> {
                #[primary_key]
                id: T,
            }
        ),
    ));
    assert!(out.starts_with("structP<T>{id:T"), "{out}");
    assert!(!out.contains("impl"), "{out}");
    assert!(out.contains("cannotbegeneric"), "{out}");
}
