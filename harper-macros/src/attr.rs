//! Attribute parsing: `#[table(..)]` arguments, `#[export(..)]`, and the field attributes
//! `#[primary_key]`, `#[indexed]`, `#[rename = ".."]` and `#[relationship(..)]`.
//!
//! Everything here is syntactic. Our attributes are removed from the item as they are read
//! (they are not real attributes and must not reach the compiler); problems are reported
//! into the `Ctxt` and parsing carries on, so one compile shows every mistake.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ExprLit, Fields, Ident, Lit, LitStr, Meta, Path, Token};

use crate::case::RenameRule;
use crate::ctxt::Ctxt;
use crate::symbol::*;

/// One option that may be given at most once; the second occurrence is reported as
/// "duplicate <what>" at its own span.
pub struct Attr<'c, T> {
    cx: &'c Ctxt,
    what: &'static str,
    value: Option<T>,
}

impl<'c, T> Attr<'c, T> {
    pub fn none(cx: &'c Ctxt, what: &'static str) -> Self {
        Attr {
            cx,
            what,
            value: None,
        }
    }

    pub fn set<A: ToTokens>(&mut self, obj: A, value: T) {
        if self.value.is_some() {
            self.cx
                .error_spanned_by(obj, format!("duplicate {}", self.what));
        } else {
            self.value = Some(value);
        }
    }

    pub fn get(self) -> Option<T> {
        self.value
    }
}

// ---------------------------------------------------------------------------------------
// Struct level

/// `#[table(name = "..", rename_all = "..", index(a, b)..)]`.
pub struct TableArgs {
    pub name: Option<LitStr>,
    pub rename_all: RenameRule,
    /// `index(a, b)` options: Rust field names, in key order (one list per index).
    pub indexes: Vec<Vec<Ident>>,
}

/// `#[export]` / `#[export(name = "..", read = "..", write = "..")]`, written above or
/// below `#[table]`.
pub struct ExportArgs {
    /// The attribute (or the hidden `__export` option) itself, for error spans.
    pub tokens: TokenStream,
    pub name: Option<LitStr>,
    pub access: AccessArgs,
}

/// Who may read, create, update and delete records of an exported table. `None` keeps the
/// default: anyone reads, only admins write.
#[derive(Default)]
pub struct AccessArgs {
    pub read: Option<Rule>,
    pub create: Option<Rule>,
    pub update: Option<Rule>,
    pub delete: Option<Rule>,
}

/// One permission: alternatives any of which grants it (`"owner | role:support"`).
/// Admins are always granted everything.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Rule {
    pub public: bool,
    pub authenticated: bool,
    pub owner: bool,
    pub roles: Vec<String>,
}

impl Rule {
    /// Parses `"public"`, `"authenticated"`, `"owner"`, `"admin"`, `"role:NAME"` and their
    /// alternatives separated by `|` or `,`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let mut rule = Rule::default();
        for atom in text.split(['|', ',']).map(str::trim) {
            match atom {
                "public" => rule.public = true,
                "authenticated" => rule.authenticated = true,
                "owner" => rule.owner = true,
                // Admins pass every rule; naming them documents the intent.
                "admin" | "role:admin" => {}
                "" => {
                    return Err(format!(
                        "empty permission in `{text}`; expected {RULE_HELP}"
                    ));
                }
                _ => match atom.strip_prefix("role:").map(str::trim) {
                    Some(role) if is_role_name(role) => {
                        if !rule.roles.iter().any(|r| r == role) {
                            rule.roles.push(role.to_owned());
                        }
                    }
                    Some(role) => {
                        return Err(format!(
                            "invalid role name `{role}`: use letters, digits, `_`, `-` and `.`"
                        ));
                    }
                    None => {
                        return Err(format!("unknown permission `{atom}`; expected {RULE_HELP}"));
                    }
                },
            }
        }
        Ok(rule)
    }
}

const RULE_HELP: &str =
    "`public`, `authenticated`, `owner`, `admin` or `role:NAME`, alternatives separated by `|`";

fn is_role_name(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Parses the arguments of `#[table(..)]`, including the hidden `__export(..)` option that
/// `#[export]` leaves when it is written above `#[table]`.
pub fn parse_table_args<'c>(
    cx: &'c Ctxt,
    args: TokenStream,
    export: &mut Attr<'c, ExportArgs>,
) -> TableArgs {
    let mut name = Attr::none(cx, "`#[table]` option `name`");
    let mut rename_all = Attr::none(cx, "`#[table]` option `rename_all`");
    let mut indexes: Vec<Vec<Ident>> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path == NAME {
            let lit: LitStr = meta.value()?.parse()?;
            name.set(&meta.path, lit);
        } else if meta.path == RENAME_ALL {
            let lit: LitStr = meta.value()?.parse()?;
            match RenameRule::parse(&lit.value()) {
                Ok(rule) => rename_all.set(&meta.path, rule),
                Err(unknown) => cx.error_spanned_by(&lit, unknown),
            }
        } else if meta.path == INDEX {
            let content;
            syn::parenthesized!(content in meta.input);
            let fields = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
            if fields.len() < 2 {
                cx.error_spanned_by(
                    &meta.path,
                    "`index(..)` names at least two fields (one field: `#[indexed]` on it)",
                );
            }
            indexes.push(fields.into_iter().collect());
        } else if meta.path == HIDDEN_EXPORT {
            let args = if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                content.parse::<TokenStream>()?
            } else {
                TokenStream::new()
            };
            let (name, access) = parse_export_args(cx, args);
            export.set(
                &meta.path,
                ExportArgs {
                    tokens: meta.path.to_token_stream(),
                    name,
                    access,
                },
            );
        } else {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown `#[table]` option `{}`; expected `name`, `rename_all` or `index`",
                    path_to_string(&meta.path)
                ),
            );
            skip_value(meta.input)?;
        }
        Ok(())
    });
    if let Err(err) = parser.parse2(args) {
        cx.syn_error(err);
    }
    TableArgs {
        name: name.get(),
        rename_all: rename_all.get().unwrap_or_default(),
        indexes,
    }
}

/// Parses the inside of `#[export(..)]`: the optional `name` and permissions (`read`,
/// `write`, and `create` / `update` / `delete`, which override `write`).
fn parse_export_args(cx: &Ctxt, args: TokenStream) -> (Option<LitStr>, AccessArgs) {
    let mut name = Attr::none(cx, "`#[export]` option `name`");
    let mut read = Attr::none(cx, "`#[export]` option `read`");
    let mut write = Attr::none(cx, "`#[export]` option `write`");
    let mut create = Attr::none(cx, "`#[export]` option `create`");
    let mut update = Attr::none(cx, "`#[export]` option `update`");
    let mut delete = Attr::none(cx, "`#[export]` option `delete`");
    let parser = syn::meta::parser(|meta| {
        let slot = if meta.path == NAME {
            let lit: LitStr = meta.value()?.parse()?;
            name.set(&meta.path, lit);
            return Ok(());
        } else if meta.path == READ {
            &mut read
        } else if meta.path == WRITE {
            &mut write
        } else if meta.path == CREATE {
            &mut create
        } else if meta.path == UPDATE {
            &mut update
        } else if meta.path == DELETE {
            &mut delete
        } else {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown `#[export]` option `{}`; expected `name`, `read`, `write`, \
                     `create`, `update` or `delete`",
                    path_to_string(&meta.path)
                ),
            );
            skip_value(meta.input)?;
            return Ok(());
        };
        let lit: LitStr = meta.value()?.parse()?;
        match Rule::parse(&lit.value()) {
            Ok(rule) => slot.set(&meta.path, rule),
            Err(message) => cx.error_spanned_by(&lit, message),
        }
        Ok(())
    });
    if let Err(err) = parser.parse2(args) {
        cx.syn_error(err);
    }
    let write = write.get();
    let access = AccessArgs {
        read: read.get(),
        create: create.get().or_else(|| write.clone()),
        update: update.get().or_else(|| write.clone()),
        delete: delete.get().or(write),
    };
    (name.get(), access)
}

/// Reads and removes the struct-level attributes that concern us: a second `#[table]`,
/// `#[export]` written below `#[table]`; and rejects `#[serde(..)]` options and derives
/// that would fight with the code we generate.
pub fn take_container_attrs<'c>(
    cx: &'c Ctxt,
    attrs: &mut Vec<Attribute>,
    export: &mut Attr<'c, ExportArgs>,
) {
    attrs.retain_mut(|attr| {
        let path = attr.path();
        if is_harper_macro(path, TABLE) {
            cx.error_spanned_by(&*attr, "`#[table]` is applied twice");
            false
        } else if is_harper_macro(path, EXPORT) {
            let (name, access) = match &attr.meta {
                Meta::Path(_) => (None, AccessArgs::default()),
                Meta::List(list) => parse_export_args(cx, list.tokens.clone()),
                Meta::NameValue(_) => {
                    cx.error_spanned_by(
                        &*attr,
                        "expected `#[export]` or `#[export(name = \"...\")]`",
                    );
                    (None, AccessArgs::default())
                }
            };
            export.set(
                &*attr,
                ExportArgs {
                    tokens: attr.to_token_stream(),
                    name,
                    access,
                },
            );
            false
        } else if path == SERDE {
            for key in serde_keys(attr) {
                let hint = if key == "rename_all" {
                    "use `#[table(rename_all = \"...\")]` instead"
                } else if key == "rename" {
                    "the table name is set with `#[table(name = \"...\")]`"
                } else if key == "crate" || key == "transparent" {
                    "`#[table]` derives Serialize and Deserialize itself"
                } else {
                    continue;
                };
                cx.error_spanned_by(
                    &key,
                    format!("`#[serde({key})]` is not supported on a `#[table]` struct; {hint}"),
                );
            }
            true
        } else if path == DERIVE {
            reject_serde_derives(cx, attr)
        } else {
            true
        }
    });
}

/// Removes `Serialize`/`Deserialize` from a user `#[derive(..)]` (reporting them: `#[table]`
/// derives both). Returns whether the attribute is kept.
fn reject_serde_derives(cx: &Ctxt, attr: &mut Attribute) -> bool {
    let Meta::List(list) = &mut attr.meta else {
        return true;
    };
    let Ok(paths) = list.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) else {
        return true;
    };
    let is_serde = |path: &Path| {
        path.segments
            .last()
            .is_some_and(|s| s.ident == "Serialize" || s.ident == "Deserialize")
    };
    if !paths.iter().any(is_serde) {
        return true;
    }
    let mut kept = Punctuated::<Path, Token![,]>::new();
    for path in paths {
        if is_serde(&path) {
            let last = path.segments.last().map(|s| s.ident.to_string());
            cx.error_spanned_by(
                &path,
                format!(
                    "remove `{}` from `#[derive(..)]`: `#[table]` derives Serialize and \
                     Deserialize itself",
                    last.unwrap_or_default()
                ),
            );
        } else {
            kept.push(path);
        }
    }
    if kept.is_empty() {
        return false;
    }
    list.tokens = kept.to_token_stream();
    true
}

// ---------------------------------------------------------------------------------------
// Field level

/// `from = field` (this table's field holds the target's keys) or `to = field` (the
/// target's field holds this table's keys).
#[derive(Clone)]
pub enum Direction {
    From(Ident),
    To(Ident),
}

pub struct RelationshipAttr {
    /// The whole `#[relationship(..)]`, for error spans.
    pub attr: Attribute,
    /// `None` when neither or both of `from`/`to` were given (already reported).
    pub direction: Option<Direction>,
}

#[derive(Default)]
pub struct FieldAttrs {
    pub primary_key: Option<Attribute>,
    pub indexed: Option<Attribute>,
    pub rename: Option<LitStr>,
    pub relationship: Option<RelationshipAttr>,
    /// User `#[serde(..)]` attributes, left on the field.
    pub serde: Vec<Attribute>,
}

impl FieldAttrs {
    /// Reads and removes our attributes from one field.
    pub fn take(cx: &Ctxt, attrs: &mut Vec<Attribute>) -> FieldAttrs {
        let mut primary_key = Attr::none(cx, "`#[primary_key]`");
        let mut indexed = Attr::none(cx, "`#[indexed]`");
        let mut rename = Attr::none(cx, "`#[rename]`");
        let mut relationship = Attr::none(cx, "`#[relationship]`");
        let mut serde = Vec::new();
        attrs.retain(|attr| {
            let path = attr.path();
            if path == PRIMARY_KEY {
                flag(cx, attr, "primary_key");
                primary_key.set(attr, attr.clone());
            } else if path == INDEXED {
                flag(cx, attr, "indexed");
                indexed.set(attr, attr.clone());
            } else if path == RENAME {
                if let Some(lit) = rename_value(cx, attr) {
                    rename.set(attr, lit);
                }
            } else if path == RELATIONSHIP {
                let direction = relationship_direction(cx, attr);
                relationship.set(
                    attr,
                    RelationshipAttr {
                        attr: attr.clone(),
                        direction,
                    },
                );
            } else {
                if path == SERDE {
                    serde.push(attr.clone());
                } else if path == CFG {
                    // Attribute macros see fields before `cfg` removes them: the definition
                    // would list a field the struct does not have.
                    cx.error_spanned_by(
                        attr,
                        "`#[cfg]` is not supported on `#[table]` fields: a table's fields \
                         cannot depend on the build configuration",
                    );
                }
                return true;
            }
            false
        });
        FieldAttrs {
            primary_key: primary_key.get(),
            indexed: indexed.get(),
            rename: rename.get(),
            relationship: relationship.get(),
            serde,
        }
    }
}

/// `#[primary_key]` and `#[indexed]` take no arguments.
fn flag(cx: &Ctxt, attr: &Attribute, name: &str) {
    if attr.meta.require_path_only().is_err() {
        cx.error_spanned_by(attr, format!("`#[{name}]` takes no arguments"));
    }
}

/// `#[rename = "jsonName"]`.
fn rename_value(cx: &Ctxt, attr: &Attribute) -> Option<LitStr> {
    let lit = match &attr.meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => Some(lit.clone()),
            _ => None,
        },
        _ => None,
    };
    match lit {
        Some(lit) if lit.value().is_empty() => {
            cx.error_spanned_by(&lit, "`#[rename]` needs a non-empty name");
            None
        }
        Some(lit) => Some(lit),
        None => {
            cx.error_spanned_by(attr, "expected `#[rename = \"jsonName\"]`");
            None
        }
    }
}

/// `#[relationship(from = field)]` or `#[relationship(to = field)]`.
fn relationship_direction(cx: &Ctxt, attr: &Attribute) -> Option<Direction> {
    const NEEDS: &str = "`#[relationship]` needs `from = <field>` (a field of this struct \
                         holds the keys of the related table) or `to = <field>` (a field of the \
                         related table holds the keys of this one)";
    if let Meta::Path(_) = attr.meta {
        cx.error_spanned_by(attr, NEEDS);
        return None;
    }
    let mut from = Attr::none(cx, "`#[relationship]` option `from`");
    let mut to = Attr::none(cx, "`#[relationship]` option `to`");
    let mut unknown = false;
    let result = attr.parse_nested_meta(|meta| {
        if meta.path == FROM {
            let field = field_name(meta.value()?)?;
            from.set(&meta.path, field);
        } else if meta.path == TO {
            let field = field_name(meta.value()?)?;
            to.set(&meta.path, field);
        } else {
            cx.error_spanned_by(
                &meta.path,
                format!(
                    "unknown `#[relationship]` option `{}`; expected `from` or `to`",
                    path_to_string(&meta.path)
                ),
            );
            unknown = true;
            skip_value(meta.input)?;
        }
        Ok(())
    });
    if let Err(err) = result {
        cx.syn_error(err);
        return None;
    }
    match (from.get(), to.get()) {
        (Some(from), None) => Some(Direction::From(from)),
        (None, Some(to)) => Some(Direction::To(to)),
        (Some(_), Some(_)) => {
            cx.error_spanned_by(
                attr,
                "`#[relationship]` takes either `from` or `to`, not both",
            );
            None
        }
        (None, None) => {
            if !unknown {
                cx.error_spanned_by(attr, NEEDS);
            }
            None
        }
    }
}

/// The field named by `from = ..` / `to = ..`: a Rust identifier.
fn field_name(input: ParseStream) -> syn::Result<Ident> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new_spanned(
            &lit,
            format!(
                "write the Rust field name without quotes: `{}`",
                lit.value()
            ),
        ));
    }
    input.parse()
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Whether an attribute is one of our field attributes.
pub fn is_field_attr(attr: &Attribute) -> bool {
    let path = attr.path();
    path == PRIMARY_KEY || path == INDEXED || path == RENAME || path == RELATIONSHIP
}

/// Removes our field attributes from every field (the error paths re-emit the item
/// without them, so the compiler does not add "cannot find attribute" errors).
pub fn strip_field_attrs(fields: &mut Fields) {
    for field in fields.iter_mut() {
        field.attrs.retain(|attr| !is_field_attr(attr));
    }
}

/// The top-level keys of `#[serde(a, b = "..", c(..))]`: `a`, `b`, `c`.
pub fn serde_keys(attr: &Attribute) -> Vec<Ident> {
    let Meta::List(list) = &attr.meta else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let mut at_start = true;
    for tt in list.tokens.clone() {
        match tt {
            TokenTree::Punct(p) if p.as_char() == ',' => at_start = true,
            TokenTree::Ident(ident) if at_start => {
                keys.push(ident);
                at_start = false;
            }
            _ => at_start = false,
        }
    }
    keys
}

/// Consumes the rest of an unknown option (`= value` or `(..)`) up to the next comma.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

pub fn path_to_string(path: &Path) -> String {
    let mut out = String::new();
    if path.leading_colon.is_some() {
        out.push_str("::");
    }
    for (i, segment) in path.segments.iter().enumerate() {
        if i > 0 {
            out.push_str("::");
        }
        out.push_str(&segment.ident.to_string());
    }
    out
}
