//! Table metadata: what `#[table]` generates for each struct, and what the storage, the
//! query engine and the HTTP layer read. Everything here is `'static` and built in const
//! context, so no request ever computes schema information.

use serde::{Serialize, de::DeserializeOwned};

/// Tables (or anything else) by name: looked up on every request, so hashed with foldhash
/// rather than SipHash (the names are the schema's, not a client's).
pub type NameMap<V> = std::collections::HashMap<&'static str, V, foldhash::fast::RandomState>;

/// A struct annotated with `#[table]`. Implemented by the macro; never by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `#[table]` struct",
    label = "add `#[table]` to `{Self}`"
)]
pub trait Table: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The table's schema.
    const DEF: &'static TableDef;
}

/// One table: its stored fields, primary key, relationships and export settings.
#[derive(Debug)]
pub struct TableDef {
    /// Table name; also the name of its fjall keyspace ("Product").
    pub name: &'static str,
    /// Where the table is served over HTTP, when `#[export]`ed.
    pub export: Option<ExportDef>,
    /// Stored fields in declaration order. Relationship fields are not stored and not listed here.
    pub fields: &'static [FieldDef],
    /// Index into `fields` of the primary key.
    pub primary_key: usize,
    /// Relationship attributes, resolved on select and in conditions (`category.name=Toys`).
    pub relationships: &'static [RelationshipDef],
    /// Indexes on several fields (`#[table(index(category_id, name))]`).
    pub compound_indexes: &'static [CompoundIndexDef],
}

/// An index on several (non-list) fields: its entries are ordered by the first field, then
/// the second, and so on, then the primary key. A query with equality conditions on the
/// leading fields reads only its matches, already ordered by the next field: e.g.
/// `(categoryId, name)` answers `categoryId=x&sort(+name)&limit(24)` by reading 24 entries.
#[derive(Debug)]
pub struct CompoundIndexDef {
    /// Positions in [`TableDef::fields`], at least two, in key order.
    pub fields: &'static [usize],
}

/// `#[export]` settings.
#[derive(Debug, Clone, Copy)]
pub struct ExportDef {
    /// URL path segment (`/Product/`): the table name unless `#[export(name = "...")]`.
    pub name: &'static str,
    /// Who may do what over HTTP (`#[export(read = "public", write = "role:admin")]`).
    pub access: Access,
}

/// Permissions of an exported table, per operation. Checked on every REST request, GraphQL
/// field and subscription; code using [`crate::Database`] directly is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub read: Rule,
    pub create: Rule,
    pub update: Rule,
    pub delete: Rule,
}

impl Access {
    /// What `#[export]` without permissions declares: anyone reads, only admins write.
    pub const DEFAULT: Access = Access {
        read: Rule::PUBLIC,
        create: Rule::ADMIN,
        update: Rule::ADMIN,
        delete: Rule::ADMIN,
    };
}

/// Who is granted one operation: anyone matching one of the alternatives. Users with the
/// `admin` role are granted every operation whatever the rule says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Anyone, without credentials.
    pub public: bool,
    /// Anyone with valid credentials: a user or a guest session.
    pub authenticated: bool,
    /// A caller the table's owner rule (`App::owner`) accepts for the record concerned.
    pub owner: bool,
    /// Users holding one of these roles.
    pub roles: &'static [&'static str],
}

impl Rule {
    pub const PUBLIC: Rule = Rule {
        public: true,
        authenticated: false,
        owner: false,
        roles: &[],
    };
    /// Admins only.
    pub const ADMIN: Rule = Rule {
        public: false,
        authenticated: false,
        owner: false,
        roles: &[],
    };
}

impl std::fmt::Display for Rule {
    /// The rule as `#[export]` spells it (`owner | role:support`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.public {
            parts.push("public".into());
        }
        if self.authenticated {
            parts.push("authenticated".into());
        }
        if self.owner {
            parts.push("owner".into());
        }
        parts.extend(self.roles.iter().map(|r| format!("role:{r}")));
        if parts.is_empty() {
            parts.push("admin".into());
        }
        f.write_str(&parts.join(" | "))
    }
}

/// One stored field.
#[derive(Debug)]
pub struct FieldDef {
    /// The attribute name in JSON, queries and URLs ("categoryId").
    pub name: &'static str,
    /// The Rust field name ("category_id").
    pub rust_name: &'static str,
    pub ty: FieldType,
    /// Whether a secondary index is kept for this field (`#[indexed]`; always true for the key).
    pub indexed: bool,
}

/// The shape of a stored field: `T`, `Option<T>`, `Vec<T>` or `Option<Vec<T>>` of a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldType {
    pub scalar: Scalar,
    /// `Option<..>`: the attribute may be missing or null.
    pub optional: bool,
    /// `Vec<..>`: a JSON array of `scalar`; indexed per element.
    pub list: bool,
}

/// Element types a field can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// `harper::Id`: a string identifier.
    Id,
    String,
    Bool,
    /// Integers; `bits` is 8, 16, 32, 64 (or 64 for isize/usize).
    Int {
        signed: bool,
        bits: u8,
    },
    /// f32 or f64.
    Float {
        bits: u8,
    },
    /// Any other serde type: stored as JSON, never indexed or compared.
    Json,
}

/// A relationship attribute (`#[relationship(from = ..)]` or `#[relationship(to = ..)]`).
#[derive(Debug)]
pub struct RelationshipDef {
    /// The attribute name in JSON and queries ("category").
    pub name: &'static str,
    /// The related table. A function, so that two tables may refer to each other.
    pub target: fn() -> &'static TableDef,
    pub kind: RelationshipKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationshipKind {
    /// Many-to-one (or many-to-many when the local field is a list): this table's `field`
    /// holds primary keys of the target table.
    From { field: &'static str },
    /// One-to-many: the target table's field holds primary keys of this table. Named by its
    /// Rust name (the macro cannot see the target's JSON names); resolve with
    /// [`TableDef::field_by_rust_name`].
    To { rust_field: &'static str },
}

impl Scalar {
    /// Whether values of this type can be indexed and compared.
    pub const fn is_indexable(self) -> bool {
        !matches!(self, Scalar::Json)
    }

    /// Name used in table descriptions and error messages (Harper's GraphQL names).
    pub const fn type_name(self) -> &'static str {
        match self {
            Scalar::Id => "ID",
            Scalar::String => "String",
            Scalar::Bool => "Boolean",
            Scalar::Int { bits: 64, .. } => "Long",
            Scalar::Int { .. } => "Int",
            Scalar::Float { .. } => "Float",
            Scalar::Json => "Any",
        }
    }

    /// Inclusive integer range of an integer scalar, widened to i128.
    pub const fn int_range(self) -> Option<(i128, i128)> {
        match self {
            Scalar::Int { signed: true, bits } => {
                let max = (1i128 << (bits - 1)) - 1;
                Some((-max - 1, max))
            }
            Scalar::Int {
                signed: false,
                bits,
            } => Some((0, (1i128 << bits) - 1)),
            _ => None,
        }
    }
}

impl TableDef {
    pub fn field(&self, name: &str) -> Option<&'static FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn field_by_rust_name(&self, rust_name: &str) -> Option<&'static FieldDef> {
        self.fields.iter().find(|f| f.rust_name == rust_name)
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn primary_key(&self) -> &'static FieldDef {
        &self.fields[self.primary_key]
    }

    pub fn relationship(&self, name: &str) -> Option<&'static RelationshipDef> {
        self.relationships.iter().find(|r| r.name == name)
    }

    /// URL segment when exported.
    pub fn export_name(&self) -> Option<&'static str> {
        self.export.map(|e| e.name)
    }

    /// Who may do what over HTTP: the export's permissions (the defaults if not exported).
    pub fn access(&self) -> Access {
        self.export.map_or(Access::DEFAULT, |e| e.access)
    }
}

/// Const helpers the macro uses for compile-time checks across tables.
#[doc(hidden)]
pub mod checks {
    use super::{Scalar, TableDef};

    const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Position of the field whose JSON name is `name`, or `usize::MAX`.
    pub const fn field_position(def: &TableDef, name: &str) -> usize {
        let mut i = 0;
        while i < def.fields.len() {
            if str_eq(def.fields[i].name, name) {
                return i;
            }
            i += 1;
        }
        usize::MAX
    }

    /// Position of the field whose Rust name is `rust_name`, or `usize::MAX`.
    pub const fn rust_field_position(def: &TableDef, rust_name: &str) -> usize {
        let mut i = 0;
        while i < def.fields.len() {
            if str_eq(def.fields[i].rust_name, rust_name) {
                return i;
            }
            i += 1;
        }
        usize::MAX
    }

    /// The scalar type of `def`'s primary key.
    pub const fn key_scalar(def: &TableDef) -> Scalar {
        def.fields[def.primary_key].ty.scalar
    }

    /// Whether `def` has a field with Rust name `rust_name` whose scalar can hold a key of
    /// scalar type `key` (identifiers and strings interchange; integers must be integers).
    pub const fn can_reference(def: &TableDef, rust_name: &str, key: Scalar) -> bool {
        let i = rust_field_position(def, rust_name);
        if i == usize::MAX {
            return false;
        }
        let s = def.fields[i].ty.scalar;
        matches!(
            (s, key),
            (Scalar::Id | Scalar::String, Scalar::Id | Scalar::String)
                | (Scalar::Int { .. }, Scalar::Int { .. })
        )
    }
}
