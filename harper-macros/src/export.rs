//! `#[export]`. Written below `#[table]`, it never runs: `#[table]` reads and removes it.
//! Written above, it runs first and hands its arguments to `#[table]` as the hidden option
//! `__export(..)`, so the table macro alone decides what is generated.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::quote;
use syn::{Attribute, Item, MacroDelimiter, Meta, MetaList};

use crate::attr;
use crate::ctxt::Ctxt;
use crate::symbol::{EXPORT, HIDDEN_EXPORT, TABLE, is_harper_macro};

pub fn export(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut item: Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(err) => {
            let err = err.into_compile_error();
            return quote!(#input #err);
        }
    };
    let cx = Ctxt::new();
    match item_attrs(&mut item) {
        Some(attrs) => {
            attrs.retain(|attr| {
                let duplicate = is_harper_macro(attr.path(), EXPORT);
                if duplicate {
                    cx.error_spanned_by(attr, "duplicate `#[export]`");
                }
                !duplicate
            });
            match attrs.iter_mut().find(|a| is_harper_macro(a.path(), TABLE)) {
                Some(table) => hand_over(table, args),
                None => {
                    not_a_table(&cx);
                    strip_field_attrs(&mut item);
                }
            }
        }
        None => not_a_table(&cx),
    }
    let errors = match cx.check() {
        Ok(()) => Vec::new(),
        Err(errors) => errors,
    };
    let errors = errors.into_iter().map(syn::Error::into_compile_error);
    quote! {
        #item
        #(#errors)*
    }
}

fn not_a_table(cx: &Ctxt) {
    cx.error_at(
        Span::call_site(),
        "`#[export]` goes with `#[table]`: write `#[table]` on this struct too",
    );
}

/// `#[table]` becomes `#[table(__export)]`, `#[table(name = "P")]` becomes
/// `#[table(name = "P", __export(name = "products"))]`.
fn hand_over(table: &mut Attribute, args: TokenStream) {
    let hidden = syn::Ident::new(HIDDEN_EXPORT.0, Span::call_site());
    let option = if args.is_empty() {
        quote!(#hidden)
    } else {
        quote!(#hidden(#args))
    };
    match &mut table.meta {
        Meta::Path(path) => {
            table.meta = Meta::List(MetaList {
                path: path.clone(),
                delimiter: MacroDelimiter::Paren(Default::default()),
                tokens: option,
            });
        }
        Meta::List(list) => {
            let ends_with_comma = matches!(
                list.tokens.clone().into_iter().last(),
                Some(TokenTree::Punct(p)) if p.as_char() == ','
            );
            if !list.tokens.is_empty() && !ends_with_comma {
                list.tokens.extend(quote!(,));
            }
            list.tokens.extend(option);
        }
        // `#[table = ..]` is rejected by the compiler itself.
        Meta::NameValue(_) => {}
    }
}

fn item_attrs(item: &mut Item) -> Option<&mut Vec<Attribute>> {
    match item {
        Item::Struct(item) => Some(&mut item.attrs),
        Item::Enum(item) => Some(&mut item.attrs),
        Item::Union(item) => Some(&mut item.attrs),
        _ => None,
    }
}

/// Without `#[table]` nothing would remove our field attributes.
fn strip_field_attrs(item: &mut Item) {
    match item {
        Item::Struct(item) => attr::strip_field_attrs(&mut item.fields),
        Item::Enum(item) => {
            for variant in &mut item.variants {
                attr::strip_field_attrs(&mut variant.fields);
            }
        }
        Item::Union(item) => {
            for field in &mut item.fields.named {
                field.attrs.retain(|a| !attr::is_field_attr(a));
            }
        }
        _ => {}
    }
}
