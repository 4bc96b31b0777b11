//! `#[table]`: the driver (parse, check, then generate or fall back) and code generation
//! from a valid model.
//!
//! Generated code names everything by absolute path (`::harper::..`, `::core::..`), so it
//! works whatever the user has imported.

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Item, ItemStruct, Type, parse_quote};

use crate::ast::{Field, Input, Relationship, Table, type_to_string};
use crate::attr::{self, Direction};
use crate::check;
use crate::ctxt::Ctxt;
use crate::fallback;
use crate::ty::{Marker, Scalar};

/// `#[table(args)] input`.
pub fn table(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(err) => {
            let err = err.into_compile_error();
            return quote!(#input #err);
        }
    };
    let cx = Ctxt::new();
    let Input { item, table } = Input::from_syn(&cx, args, item);
    if let Some(table) = &table {
        check::check(&cx, table);
    }
    match (cx.check(), item, table) {
        (Ok(()), Item::Struct(item), Some(table)) => generate(item, &table),
        (Ok(()), item, _) => {
            // `from_syn` reports an error whenever it returns no model; this is unreachable.
            let err = syn::Error::new(Span::call_site(), "harper-macros: internal error");
            fallback::expand(item, vec![err])
        }
        (Err(errors), item, _) => fallback::expand(item, errors),
    }
}

/// The code for a valid table: the struct with serde derives, `impl Table`, relationship
/// accessors and the compile-time checks across tables.
pub fn generate(item: ItemStruct, table: &Table) -> TokenStream {
    let item = with_serde(item, table);
    let table_impl = table_impl(table);
    let accessors = accessors(table);
    let checks = table
        .relationships
        .iter()
        .map(|r| relationship_check(table, r));
    quote! {
        #item
        #table_impl
        #accessors
        #(#checks)*
    }
}

/// The struct as written (our attributes already removed), deriving serde under the JSON
/// names, relationships skipped.
fn with_serde(mut item: ItemStruct, table: &Table) -> ItemStruct {
    let derive: Attribute = parse_quote! {
        #[derive(::harper::__private::serde::Serialize, ::harper::__private::serde::Deserialize)]
    };
    let krate: Attribute = parse_quote!(#[serde(crate = "::harper::__private::serde")]);
    // First, so that the user's own `#[serde(..)]` container attributes follow the derive.
    item.attrs.splice(0..0, [derive, krate]);
    if let Fields::Named(fields) = &mut item.fields {
        for field in &table.fields {
            let name = &field.name;
            if let Some(f) = fields.named.iter_mut().nth(field.index) {
                f.attrs.insert(0, parse_quote!(#[serde(rename = #name)]));
            }
        }
        for rel in &table.relationships {
            if let Some(f) = fields.named.iter_mut().nth(rel.index) {
                // A marker holds nothing and is never read: no "field is never read" warning.
                f.attrs.insert(0, parse_quote!(#[allow(dead_code)]));
                f.attrs.insert(0, parse_quote!(#[serde(skip)]));
            }
        }
    }
    item
}

/// A `::harper::schema::Rule`; when not declared, reads default to public and writes to
/// admins only.
fn rule_tokens(rule: Option<&attr::Rule>, public_by_default: bool) -> TokenStream {
    let default = attr::Rule {
        public: public_by_default,
        ..attr::Rule::default()
    };
    let rule = rule.unwrap_or(&default);
    let (public, authenticated, owner, roles) =
        (rule.public, rule.authenticated, rule.owner, &rule.roles);
    quote!(::harper::schema::Rule {
        public: #public,
        authenticated: #authenticated,
        owner: #owner,
        roles: &[#(#roles),*],
    })
}

fn table_impl(table: &Table) -> TokenStream {
    let ident = &table.ident;
    let name = &table.name;
    let export = match &table.export {
        Some(export) => {
            let name = &export.name;
            let read = rule_tokens(export.access.read.as_ref(), true);
            let create = rule_tokens(export.access.create.as_ref(), false);
            let update = rule_tokens(export.access.update.as_ref(), false);
            let delete = rule_tokens(export.access.delete.as_ref(), false);
            quote!(::core::option::Option::Some(::harper::schema::ExportDef {
                name: #name,
                access: ::harper::schema::Access {
                    read: #read,
                    create: #create,
                    update: #update,
                    delete: #delete,
                },
            }))
        }
        None => quote!(::core::option::Option::None),
    };
    let fields = table.fields.iter().map(field_def);
    let primary_key = table
        .fields
        .iter()
        .position(|f| f.primary_key.is_some())
        .unwrap_or_default();
    let relationships = table
        .relationships
        .iter()
        .map(|r| relationship_def(table, r));
    let compound_indexes = table
        .compound_indexes
        .iter()
        .map(|fields| quote!(::harper::schema::CompoundIndexDef { fields: &[#(#fields),*] }));
    // A static behind the const gives the definition one address: every `T::DEF` (and
    // every relationship's `target()`) is the same pointer, which the runtime may compare.
    quote! {
        #[automatically_derived]
        impl ::harper::Table for #ident {
            const DEF: &'static ::harper::schema::TableDef = {
                static __HARPER_TABLE_DEF: ::harper::schema::TableDef = ::harper::schema::TableDef {
                    name: #name,
                    export: #export,
                    fields: &[#(#fields),*],
                    primary_key: #primary_key,
                    relationships: &[#(#relationships),*],
                    compound_indexes: &[#(#compound_indexes),*],
                };
                &__HARPER_TABLE_DEF
            };
        }
    }
}

fn field_def(field: &Field) -> TokenStream {
    let name = &field.name;
    let rust_name = &field.rust_name;
    let scalar = scalar(field.field_type.scalar);
    let optional = field.field_type.optional;
    let list = field.field_type.list;
    let indexed = field.is_indexed();
    quote! {
        ::harper::schema::FieldDef {
            name: #name,
            rust_name: #rust_name,
            ty: ::harper::schema::FieldType { scalar: #scalar, optional: #optional, list: #list },
            indexed: #indexed,
        }
    }
}

fn scalar(scalar: Scalar) -> TokenStream {
    match scalar {
        Scalar::Id => quote!(::harper::schema::Scalar::Id),
        Scalar::String => quote!(::harper::schema::Scalar::String),
        Scalar::Bool => quote!(::harper::schema::Scalar::Bool),
        Scalar::Int { signed, bits } => {
            quote!(::harper::schema::Scalar::Int { signed: #signed, bits: #bits })
        }
        Scalar::Float { bits } => quote!(::harper::schema::Scalar::Float { bits: #bits }),
        Scalar::Json => quote!(::harper::schema::Scalar::Json),
    }
}

fn relationship_def(table: &Table, rel: &Relationship) -> TokenStream {
    let name = &rel.name;
    let target = target_type(table, rel);
    let kind = match &rel.direction {
        Direction::From(from) => {
            let from = from.unraw().to_string();
            // `check` has made sure the field exists.
            let field = table
                .fields
                .iter()
                .find(|f| f.rust_name == from)
                .map_or(from.as_str(), |f| f.name.as_str());
            quote!(::harper::schema::RelationshipKind::From { field: #field })
        }
        Direction::To(to) => {
            let to = to.unraw().to_string();
            quote!(::harper::schema::RelationshipKind::To { rust_field: #to })
        }
    };
    let def = quote_spanned!(rel.target.span()=> <#target as ::harper::Table>::DEF);
    quote! {
        ::harper::schema::RelationshipDef {
            name: #name,
            target: || #def,
            kind: #kind,
        }
    }
}

/// The related type, with `Link<Self>` resolved to the struct (the checks live outside the
/// struct's impls).
fn target_type(table: &Table, rel: &Relationship) -> Type {
    match &rel.target {
        Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self") => {
            let ident = &table.ident;
            parse_quote!(#ident)
        }
        ty => ty.clone(),
    }
}

/// `product.category(&tx)`, `category.products(&tx)`.
fn accessors(table: &Table) -> TokenStream {
    if table.relationships.is_empty() {
        return TokenStream::new();
    }
    let ident = &table.ident;
    let methods = table.relationships.iter().map(|rel| {
        let vis = &rel.vis;
        let method = &rel.ident;
        let name = &rel.name;
        let target = &rel.target;
        let target_name = type_to_string(target);
        match rel.marker {
            Marker::Link => {
                let doc = format!(
                    " The `{target_name}` this record's `{name}` relationship points to, if any."
                );
                quote! {
                    #[doc = #doc]
                    #vis fn #method(
                        &self,
                        tx: &impl ::harper::Reader,
                    ) -> ::harper::Result<::core::option::Option<#target>> {
                        ::core::result::Result::map(
                            ::harper::Reader::follow::<Self, #target>(tx, self, #name),
                            |records| ::core::iter::Iterator::next(
                                &mut ::core::iter::IntoIterator::into_iter(records),
                            ),
                        )
                    }
                }
            }
            Marker::Links => {
                let doc = format!(
                    " The `{target_name}` records related through this record's `{name}` \
                     relationship."
                );
                quote! {
                    #[doc = #doc]
                    #vis fn #method(
                        &self,
                        tx: &impl ::harper::Reader,
                    ) -> ::harper::Result<::std::vec::Vec<#target>> {
                        ::harper::Reader::follow::<Self, #target>(tx, self, #name)
                    }
                }
            }
        }
    });
    quote! {
        impl #ident {
            #(#methods)*
        }
    }
}

/// A const assertion that the field a relationship names exists in the right table and can
/// hold the right keys. It is evaluated by the compiler, and reported at the
/// `#[relationship(..)]` attribute.
fn relationship_check(table: &Table, rel: &Relationship) -> TokenStream {
    let this = &table.ident;
    let this_name = this.unraw().to_string();
    let target = target_type(table, rel);
    let target_name = type_to_string(&target);
    let (holder, field, key_owner, msg) = match &rel.direction {
        Direction::From(from) => {
            let from = from.unraw().to_string();
            let msg = format!(
                "relationship `{}`: field `{from}` of `{this_name}` cannot hold keys of \
                 `{target_name}`: `Id` and `String` keys need an `Id` or `String` field, \
                 integer keys an integer field",
                rel.name
            );
            (quote!(this), from, quote!(target), msg)
        }
        Direction::To(to) => {
            let to = to.unraw().to_string();
            let msg = format!(
                "relationship `{}`: `{target_name}` has no field `{to}` holding \
                 `{this_name}` keys",
                rel.name
            );
            (quote!(target), to, quote!(this), msg)
        }
    };
    let target_def = quote_spanned!(rel.target.span()=> <#target as ::harper::Table>::DEF);
    // A table whose definition failed to compile gets a stub with no fields (see
    // `fallback`); its own error is the one to read, so the check passes.
    let condition = quote! {
        this.fields.is_empty()
            || target.fields.is_empty()
            || ::harper::schema::checks::can_reference(
                #holder,
                #field,
                ::harper::schema::checks::key_scalar(#key_owner),
            )
    };
    let assertion = assert_spanning(&rel.attr, condition, &msg);
    quote! {
        const _: () = {
            let this: &::harper::schema::TableDef = <#this as ::harper::Table>::DEF;
            let target: &::harper::schema::TableDef = #target_def;
            #assertion;
        };
    }
}

/// `::core::assert!(condition, "msg")` spanning the whole of `attr`: rustc reports a failed
/// const assertion at the macro call, from its first token to its last.
fn assert_spanning(attr: &Attribute, condition: TokenStream, msg: &str) -> TokenStream {
    let start = attr.pound_token.span;
    let end = attr.bracket_token.span.close();
    // The message is a format string: escape braces (from type names such as `Foo<{N}>`).
    let msg = Literal::string(&msg.replace('{', "{{").replace('}', "}}"));
    let mut args = Group::new(Delimiter::Parenthesis, quote!(#condition, #msg));
    args.set_span(end);
    let path = quote_spanned!(start=> ::core::assert!);
    let mut tokens = path;
    args.to_tokens(&mut tokens);
    tokens
}
