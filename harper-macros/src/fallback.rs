//! What `#[table]` emits when the struct has errors: the item itself (without our
//! attributes, so the compiler adds no "cannot find attribute" errors), the errors, and
//! stub impls of everything a valid table would have (`Serialize`, `Deserialize`, `Table`,
//! relationship accessors) so that code using the table reports no follow-up errors.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::{Attribute, Fields, Generics, Ident, Item};

use crate::symbol::SERDE;
use crate::ty::{self, Marker, TypeClass};

pub fn expand(item: Item, errors: Vec<syn::Error>) -> TokenStream {
    let errors = errors.into_iter().map(syn::Error::into_compile_error);
    let (item, stubs) = match item {
        Item::Struct(mut item) => {
            strip_serde(&mut item.attrs);
            strip_serde_fields(&mut item.fields);
            let accessors = accessor_stubs(&item.ident, &item.fields);
            let stubs = stubs(&item.ident, &item.generics, accessors);
            (Item::Struct(item), stubs)
        }
        Item::Enum(mut item) => {
            strip_serde(&mut item.attrs);
            for variant in &mut item.variants {
                strip_serde(&mut variant.attrs);
                strip_serde_fields(&mut variant.fields);
            }
            let stubs = stubs(&item.ident, &item.generics, TokenStream::new());
            (Item::Enum(item), stubs)
        }
        Item::Union(mut item) => {
            strip_serde(&mut item.attrs);
            for field in &mut item.fields.named {
                strip_serde(&mut field.attrs);
            }
            let stubs = stubs(&item.ident, &item.generics, TokenStream::new());
            (Item::Union(item), stubs)
        }
        item => (item, TokenStream::new()),
    };
    quote! {
        #item
        #stubs
        #(#errors)*
    }
}

/// No serde derive is emitted on this path, so `#[serde(..)]` would be an unknown attribute.
fn strip_serde(attrs: &mut Vec<Attribute>) {
    attrs.retain(|attr| attr.path() != SERDE);
}

fn strip_serde_fields(fields: &mut Fields) {
    for field in fields.iter_mut() {
        strip_serde(&mut field.attrs);
    }
}

/// Stub impls for a non-generic item (for a generic one the bounds are unknowable: the
/// "cannot be generic" error stands alone).
fn stubs(ident: &Ident, generics: &Generics, accessors: TokenStream) -> TokenStream {
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        return TokenStream::new();
    }
    let name = ident.unraw().to_string();
    quote! {
        impl ::harper::__private::serde::Serialize for #ident {
            fn serialize<S: ::harper::__private::serde::Serializer>(
                &self,
                _: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                ::core::unreachable!()
            }
        }
        impl<'de> ::harper::__private::serde::Deserialize<'de> for #ident {
            fn deserialize<D: ::harper::__private::serde::Deserializer<'de>>(
                _: D,
            ) -> ::core::result::Result<Self, D::Error> {
                ::core::unreachable!()
            }
        }
        // No fields: the cross-table checks of other tables recognise a stub by that and
        // stay quiet (every real table has at least its primary key).
        impl ::harper::Table for #ident {
            const DEF: &'static ::harper::schema::TableDef = &::harper::schema::TableDef {
                name: #name,
                export: ::core::option::Option::None,
                fields: &[],
                primary_key: 0,
                relationships: &[],
                compound_indexes: &[],
            };
        }
        #accessors
    }
}

/// Accessors for every `Link<T>`/`Links<T>` field, with the signatures a valid table gets.
fn accessor_stubs(ident: &Ident, fields: &Fields) -> TokenStream {
    let Fields::Named(fields) = fields else {
        return TokenStream::new();
    };
    let methods = fields.named.iter().filter_map(|field| {
        let TypeClass::Marker {
            marker,
            target: Some(target),
        } = ty::classify(&field.ty)
        else {
            return None;
        };
        let vis = &field.vis;
        let method = field.ident.as_ref()?;
        let output = match marker {
            Marker::Link => quote!(::core::option::Option<#target>),
            Marker::Links => quote!(::std::vec::Vec<#target>),
        };
        Some(quote! {
            #vis fn #method(&self, _: &impl ::harper::Reader) -> ::harper::Result<#output> {
                ::core::unreachable!()
            }
        })
    });
    quote! {
        impl #ident {
            #(#methods)*
        }
    }
}
