//! The OpenAPI 3.0.3 document served at `GET /openapi`, generated from the table definitions.
//!
//! Pure: it reads `TableDef`s and builds a `serde_json::Value`; nothing here knows warp. The
//! document follows Harper's URL layout (see `rest.rs`): `/T/` collection, `/T/{id}` record,
//! `/T/{id}.{attribute}` one property, `/T` the table description.
//!
//! Naming, so that every name is unique and valid (`^[A-Za-z0-9._-]+$` for components):
//! - a table's schema is named after the table (`Product`); table names are unique within a
//!   database (each is a fjall keyspace). The one reserved name is `Error`: a table of that
//!   name gets `Error.Record`.
//! - a table's PATCH body schema is `<schema>.Patch`; a `.` cannot occur in a Rust
//!   identifier, so it never meets a table's name.
//! - operation ids are `<verb><Table>` (`getProduct`, `listProduct`, ...), with a numeric
//!   suffix in the unlikely case two of them coincide.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::schema::{FieldDef, RelationshipDef, RelationshipKind, Scalar, TableDef};

/// The OpenAPI version the document declares.
pub const OPENAPI_VERSION: &str = "3.0.3";
/// `info.title` of the document.
pub const TITLE: &str = "harper-rs REST API";

/// Name of the error schema in `components.schemas`.
const ERROR: &str = "Error";
/// Media types every read can answer in (chosen by `Accept`).
const READ_TYPES: [&str; 4] = [
    "application/json",
    "application/cbor",
    "application/x-msgpack",
    "text/csv",
];
/// Media types accepted for request bodies (chosen by `Content-Type`).
const BODY_TYPES: [&str; 3] = [
    "application/json",
    "application/cbor",
    "application/x-msgpack",
];
/// The query directives that also have a `name=value` form, and their parameter components.
const DIRECTIVES: [&str; 4] = ["limit", "offset", "sort", "select"];

/// Builds the OpenAPI 3.0.3 document for the exported tables among `tables`, served at
/// `server_url` (e.g. `http://127.0.0.1:9926`). Tables without `#[export]` get no paths; a
/// table reachable through a relationship still gets a schema, since `select` can embed it.
pub fn document(tables: &[&'static TableDef], server_url: &str) -> Value {
    // Exported tables, first occurrence wins for both the table and its URL segment.
    let mut exported: Vec<&'static TableDef> = Vec::new();
    for &def in tables {
        let Some(segment) = def.export_name() else {
            continue;
        };
        let duplicate = exported
            .iter()
            .any(|d| d.name == def.name || d.export_name() == Some(segment));
        if !duplicate {
            exported.push(def);
        }
    }
    let names = SchemaNames::collect(&exported);

    let mut schemas = Map::new();
    schemas.insert(ERROR.to_owned(), error_schema());
    for def in &names.order {
        let name = names.of(def);
        schemas.insert(name.to_owned(), record_schema(def, &names));
        schemas.insert(patch_name(name), patch_schema(def));
    }

    let mut ops = OperationIds::default();
    let mut paths = Map::new();
    let mut tags = Vec::new();
    for def in &exported {
        let segment = def.export_name().unwrap_or(def.name);
        tags.push(json!({
            "name": def.name,
            "description": match def.export {
                Some(e) => format!(
                    "{} records at /{segment}/ (schema: {}). Read: {}; create: {}; update: {}; \
                     delete: {}.",
                    def.name,
                    names.of(def),
                    e.access.read,
                    e.access.create,
                    e.access.update,
                    e.access.delete
                ),
                None => format!("{} records at /{segment}/ (schema: {}).", def.name, names.of(def)),
            },
        }));
        let t = TablePaths {
            def,
            schema: names.of(def),
            segment,
        };
        paths.insert(format!("/{segment}/"), t.collection(&mut ops));
        paths.insert(format!("/{segment}/{{id}}"), t.record(&mut ops));
        paths.insert(
            format!("/{segment}/{{id}}.{{attribute}}"),
            t.attribute(&mut ops),
        );
        paths.insert(format!("/{segment}"), t.description(&mut ops));
    }

    let server = server_url.trim_end_matches('/');
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": env!("CARGO_PKG_VERSION"),
            "description": INFO_DESCRIPTION,
        },
        "servers": [{
            "url": if server.is_empty() { "/" } else { server },
            "description": "REST API",
        }],
        "tags": tags,
        "paths": paths,
        // Anonymous calls are allowed where a table's permissions say `public`.
        "security": [{}, {"basicAuth": []}, {"bearerAuth": []}],
        "components": {
            "schemas": schemas,
            "parameters": parameters(),
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An accessToken from POST /auth/login or POST /auth/session.",
                },
            },
        },
    })
}

const INFO_DESCRIPTION: &str = "\
Harper-compatible REST API generated from the `#[table]` structs.\n\n\
* `/T/` is a table's collection (query, create, delete matches), `/T/{id}` one record, \
`/T/{id}.{attribute}` one property of a record and `/T` (no slash) the table's description.\n\
* Reads answer in JSON (default), CBOR, MessagePack or CSV, chosen by `Accept`; \
anything else is 406. Request bodies may be JSON, CBOR or MessagePack (`Content-Type`).\n\
* Every client error is a 4xx with a JSON object body `{\"error\": \"<kind>\", \
\"message\": \"<what and where>\"}` (schema `Error`).\n\
* Relationship attributes are not stored: they are resolved when named in `select(...)`.\n\
* Permissions are per table (see each tag): calls without the credentials a rule needs \
get 401, calls whose credentials do not grant it 403. `owner` tables show each caller \
only its own records.";

/// Schema names of every table that needs one: the exported tables, then every table
/// reachable from them through relationships.
struct SchemaNames {
    order: Vec<&'static TableDef>,
    names: HashMap<&'static str, String>,
}

impl SchemaNames {
    fn collect(exported: &[&'static TableDef]) -> SchemaNames {
        let mut order: Vec<&'static TableDef> = Vec::new();
        let mut queue: Vec<&'static TableDef> = exported.to_vec();
        let mut next = 0;
        while next < queue.len() {
            let def = queue[next];
            next += 1;
            if order.iter().any(|d| d.name == def.name) {
                continue;
            }
            order.push(def);
            queue.extend(def.relationships.iter().map(|r| (r.target)()));
        }
        let names = order
            .iter()
            .map(|d| {
                let name = if d.name == ERROR {
                    format!("{}.Record", d.name)
                } else {
                    d.name.to_owned()
                };
                (d.name, name)
            })
            .collect();
        SchemaNames { order, names }
    }

    fn of(&self, def: &TableDef) -> &str {
        self.names.get(def.name).map_or(def.name, String::as_str)
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn patch_name(schema: &str) -> String {
    format!("{schema}.Patch")
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "The body of every 4xx and 5xx response.",
        "required": ["error", "message"],
        "properties": {
            "error": {
                "type": "string",
                "description": "Machine-readable kind, e.g. `invalid_query`, `invalid_record`, `not_found`.",
            },
            "message": {
                "type": "string",
                "description": "What went wrong and where (the attribute, or the position in the query).",
            },
        },
        "example": {
            "error": "invalid_record",
            "message": "unknown attribute color",
        },
    })
}

// ---- record schemas ----------------------------------------------------------------------

/// JSON schema of one element of `scalar`.
fn scalar_schema(scalar: Scalar) -> Map<String, Value> {
    let mut s = Map::new();
    match scalar {
        Scalar::Id | Scalar::String => {
            s.insert("type".into(), "string".into());
        }
        Scalar::Bool => {
            s.insert("type".into(), "boolean".into());
        }
        Scalar::Int { signed, bits } => {
            s.insert("type".into(), "integer".into());
            // u64 exceeds int64, so it gets no format, only its range.
            let format = match (signed, bits) {
                (true, ..=32) | (false, ..=16) => Some("int32"),
                (true, _) | (false, ..=32) => Some("int64"),
                (false, _) => None,
            };
            if let Some(f) = format {
                s.insert("format".into(), f.into());
            }
            if (bits < 64 || !signed)
                && let Some((min, max)) = scalar.int_range()
            {
                s.insert("minimum".into(), int_value(min));
                s.insert("maximum".into(), int_value(max));
            }
        }
        Scalar::Float { bits } => {
            s.insert("type".into(), "number".into());
            let format = if bits == 32 { "float" } else { "double" };
            s.insert("format".into(), format.into());
        }
        Scalar::Json => {} // free-form: any JSON value
    }
    s
}

/// An integer bound as a JSON number (every 8..=64-bit bound fits an i64 or a u64).
fn int_value(n: i128) -> Value {
    if let Ok(v) = i64::try_from(n) {
        Value::from(v)
    } else if let Ok(v) = u64::try_from(n) {
        Value::from(v)
    } else {
        Value::from(n as f64)
    }
}

/// Schema of a stored field's value: element type, list, nullability and a description.
fn field_schema(def: &TableDef, index: usize, field: &FieldDef) -> Value {
    let element = scalar_schema(field.ty.scalar);
    let mut s = if field.ty.list {
        let mut s = Map::new();
        s.insert("type".into(), "array".into());
        s.insert("items".into(), Value::Object(element));
        s
    } else {
        element
    };
    if field.ty.optional {
        s.insert("nullable".into(), true.into());
    }
    let mut notes: Vec<String> = Vec::new();
    if index == def.primary_key {
        notes.push(match field.ty.scalar {
            Scalar::Id | Scalar::String => {
                "Primary key. Generated (a UUID v4) by POST when absent; taken from the URL by PUT and PATCH.".to_owned()
            }
            _ => "Primary key. Required by POST; taken from the URL by PUT and PATCH.".to_owned(),
        });
    } else if field.indexed {
        notes.push(if field.ty.list {
            "Indexed (per element): conditions match any element; fast in conditions and sort(...)."
                .to_owned()
        } else {
            "Indexed: fast in conditions and sort(...).".to_owned()
        });
    }
    if field.ty.scalar == Scalar::Json {
        notes.push("Any JSON value; stored as is, not usable in conditions or sort.".to_owned());
    }
    if !notes.is_empty() {
        s.insert("description".into(), notes.join(" ").into());
    }
    Value::Object(s)
}

/// The JSON name of the target-table field a `To` relationship reads.
fn to_field_name(target: &TableDef, rust_field: &'static str) -> &'static str {
    target
        .field_by_rust_name(rust_field)
        .map_or(rust_field, |f| f.name)
}

/// Schema of a relationship attribute: a read-only reference to the target's schema, or an
/// array of them.
fn relationship_schema(def: &TableDef, rel: &RelationshipDef, names: &SchemaNames) -> Value {
    let target = (rel.target)();
    let target_schema = names.of(target);
    let (many, how) = match rel.kind {
        RelationshipKind::From { field } => {
            let list = def.field(field).is_some_and(|f| f.ty.list);
            let how = if list {
                format!(
                    "The {} records whose primary keys `{field}` lists",
                    target.name
                )
            } else {
                format!(
                    "The {} record whose primary key is `{field}` (null when there is none)",
                    target.name
                )
            };
            (list, how)
        }
        RelationshipKind::To { rust_field } => (
            true,
            format!(
                "The {} records whose `{}` holds this record's primary key",
                target.name,
                to_field_name(target, rust_field)
            ),
        ),
    };
    // An attribute of the target for the nested-select example: its first non-key one.
    let nested = target
        .fields
        .iter()
        .enumerate()
        .find(|(i, _)| *i != target.primary_key)
        .map_or(target.primary_key().name, |(_, f)| f.name);
    let description = format!(
        "Relationship, not stored. {how}. Resolved only when selected: `select({pk},{n})` \
         embeds whole records, `select({pk},{n}{{{nested}}})` chosen attributes of them. \
         Read-only: a request body must not contain it.",
        pk = def.primary_key().name,
        n = rel.name,
    );
    if many {
        json!({
            "type": "array",
            "items": schema_ref(target_schema),
            "readOnly": true,
            "description": description,
        })
    } else {
        // In OpenAPI 3.0 a `$ref` ignores its siblings, so the reference goes in `allOf`.
        json!({
            "allOf": [schema_ref(target_schema)],
            "nullable": true,
            "readOnly": true,
            "description": description,
        })
    }
}

/// `components.schemas.<Table>`: a stored record, plus its relationship attributes.
fn record_schema(def: &TableDef, names: &SchemaNames) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (i, field) in def.fields.iter().enumerate() {
        properties.insert(field.name.to_owned(), field_schema(def, i, field));
        if i != def.primary_key && !field.ty.optional {
            required.push(Value::from(field.name));
        }
    }
    for rel in def.relationships {
        properties.insert(rel.name.to_owned(), relationship_schema(def, rel, names));
    }
    let mut s = Map::new();
    s.insert("type".into(), "object".into());
    s.insert(
        "description".into(),
        format!(
            "A {} record, attributes in declaration order. Request bodies may hold only these \
             attributes (others are refused with 400); with `select(...)` a response holds the \
             selected shape instead.",
            def.name
        )
        .into(),
    );
    if !required.is_empty() {
        s.insert("required".into(), required.into());
    }
    s.insert("properties".into(), properties.into());
    Value::Object(s)
}

/// `components.schemas.<Table>.Patch`: any subset of the stored attributes.
fn patch_schema(def: &TableDef) -> Value {
    let properties: Map<String, Value> = def
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.to_owned(), field_schema(def, i, f)))
        .collect();
    json!({
        "type": "object",
        "description": format!(
            "Attributes to change in a {} record; the others are kept. The primary key, if \
             present, must equal the URL's. `null` clears an optional attribute.",
            def.name
        ),
        "properties": properties,
        "additionalProperties": false,
    })
}

// ---- parameters --------------------------------------------------------------------------

fn param_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

/// `components.parameters`: the query conditions and directives, and `If-None-Match`.
fn parameters() -> Value {
    json!({
        "conditions": {
            "name": "conditions",
            "in": "query",
            "required": false,
            "style": "form",
            "explode": true,
            "description": CONDITIONS_DESCRIPTION,
            "schema": {
                "type": "object",
                "additionalProperties": { "type": "string" },
            },
            "example": { "categoryId": "electronics", "inStock": "true" },
        },
        "limit": {
            "name": "limit",
            "in": "query",
            "required": false,
            "description": "At most this many records. A directive unless the table has an attribute named `limit`; the function form `limit(n)` or `limit(start,end)` always is.",
            "schema": { "type": "integer", "minimum": 0 },
            "example": 20,
        },
        "offset": {
            "name": "offset",
            "in": "query",
            "required": false,
            "description": "Skip this many records first. A directive unless the table has an attribute named `offset` (see also `limit(start,end)`).",
            "schema": { "type": "integer", "minimum": 0 },
            "example": 40,
        },
        "sort": {
            "name": "sort",
            "in": "query",
            "required": false,
            "description": "Order by these attributes, comma-separated; a leading `-` sorts descending. A directive unless the table has an attribute named `sort`; the function form is `sort(+a,-b)`.",
            "schema": { "type": "string" },
            "example": "-price",
        },
        "select": {
            "name": "select",
            "in": "query",
            "required": false,
            "description": "Return only these attributes (comma-separated), including relationship attributes, which are then resolved. A directive unless the table has an attribute named `select`; the function forms are `select(a,b)` (objects), `select(a)` (bare values), `select([a,b])` (arrays) and `select(a,rel{b,c})` (nested).",
            "schema": { "type": "string" },
            "example": "name,price",
        },
        "ifNoneMatch": {
            "name": "If-None-Match",
            "in": "header",
            "required": false,
            "description": "An ETag from an earlier response: answered with 304 and no body while the record is unchanged.",
            "schema": { "type": "string" },
        },
    })
}

const CONDITIONS_DESCRIPTION: &str = "\
The query string is Harper's query language; OpenAPI cannot describe all of it, so this \
parameter stands for the conditions and the description for the rest.\n\n\
* Conditions `attr=value`: the value is read as the attribute's type \
(`price=80.18`, `inStock=false`); `attr==value` is the same; `attr!=value` is not-equal; \
`attr=null` matches a missing or null attribute.\n\
* FIQL comparators `attr=gt=value`, `=ge=`, `=lt=`, `=le=`, `=ne=`, `=sw=` (starts with), \
`=ew=` (ends with), `=ct=` (contains).\n\
* `&` is AND, `|` is OR; group with `(...)` or `[...]`: \
`inStock=true&(categoryId=books|categoryId=toys)`.\n\
* Conditions through a relationship: `category.name=Toys`.\n\
* Directives are function calls among the conditions: `limit(n)`, `limit(start,end)`, \
`sort(+a,-b)`, `select(a,b)`, `select(a)`, `select([a,b])`, `select(a,rel{b})`. \
`limit=`, `offset=`, `sort=` and `select=` are directives too when the table has no \
attribute of that name.\n\
* An unknown attribute, comparator or function, or a malformed query, is a 400 or 404 \
naming it.";

// ---- paths -------------------------------------------------------------------------------

/// Hands out unique operation ids.
#[derive(Default)]
struct OperationIds {
    used: BTreeSet<String>,
}

impl OperationIds {
    fn take(&mut self, id: String) -> String {
        let mut candidate = id.clone();
        let mut n = 2;
        while self.used.contains(&candidate) {
            candidate = format!("{id}_{n}");
            n += 1;
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

fn error_response(description: impl Into<String>) -> Value {
    json!({
        "description": description.into(),
        "content": { "application/json": { "schema": schema_ref(ERROR) } },
    })
}

/// The same schema under every readable media type; CSV is text.
fn read_content(schema: Value) -> Value {
    let mut content = Map::new();
    for ty in READ_TYPES {
        let s = if ty == "text/csv" {
            json!({
                "type": "string",
                "description": "A header row of attribute names, then one row per record; every value quoted.",
            })
        } else {
            schema.clone()
        };
        content.insert(ty.to_owned(), json!({ "schema": s }));
    }
    Value::Object(content)
}

/// Adds the Server-Sent Events subscription (`Accept: text/event-stream`) to a GET's content.
fn with_event_stream(mut content: Value, what: &str) -> Value {
    content["text/event-stream"] = json!({
        "schema": {
            "type": "string",
            "description": format!(
                "A subscription: {what}, one `data: <JSON>` event each \
                 (`{{\"id\",\"localTime\",\"value\",\"version\",\"type\":\"put\"|\"delete\"|\"unmatched\"|\"resync\",\"seq\"}}`), \
                 with `id: <seq>` on the last event of each transaction and a heartbeat comment \
                 every 15 s. Resume with `Last-Event-ID` or `since=<seq>`; the same stream is \
                 served over a WebSocket upgrade on this path."
            ),
        },
    });
    content
}

fn body_content(schema: Value) -> Value {
    let content: Map<String, Value> = BODY_TYPES
        .iter()
        .map(|ty| ((*ty).to_owned(), json!({ "schema": schema.clone() })))
        .collect();
    Value::Object(content)
}

fn etag_header() -> Value {
    json!({
        "description": "Opaque version of the record; changes on every write.",
        "schema": { "type": "string" },
    })
}

fn true_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {
            "application/json": {
                "schema": { "type": "boolean", "enum": [true] },
            },
        },
    })
}

fn options_response(allow: &str) -> Value {
    json!({
        "description": "The allowed methods.",
        "headers": {
            "Allow": {
                "description": "The methods this resource allows.",
                "schema": { "type": "string", "example": allow },
            },
        },
    })
}

/// The paths of one exported table.
struct TablePaths<'a> {
    def: &'static TableDef,
    schema: &'a str,
    segment: &'a str,
}

impl TablePaths<'_> {
    fn op(&self, ops: &mut OperationIds, verb: &str, suffix: &str) -> String {
        ops.take(format!("{verb}{}{suffix}", self.def.name))
    }

    fn has_attribute(&self, name: &str) -> bool {
        self.def.field(name).is_some() || self.def.relationship(name).is_some()
    }

    /// The conditions, then each directive whose name is not one of the table's attributes.
    fn query_parameters(&self) -> Vec<Value> {
        let mut params = vec![param_ref("conditions")];
        params.extend(
            DIRECTIVES
                .iter()
                .filter(|d| !self.has_attribute(d))
                .map(|d| param_ref(d)),
        );
        params
    }

    /// A query on the table's own attributes: a condition on the first indexed attribute
    /// other than the key, a sort on the key and a limit.
    fn example_query(&self) -> String {
        let def = self.def;
        let pk = def.primary_key().name;
        let condition = def
            .fields
            .iter()
            .enumerate()
            .find(|(i, f)| *i != def.primary_key && f.indexed && f.ty.scalar.is_indexable())
            .map(|(_, f)| {
                let value = match f.ty.scalar {
                    Scalar::Bool => "true",
                    Scalar::Int { .. } | Scalar::Float { .. } => "gt=10",
                    _ => "sw=a",
                };
                format!("{}={value}&", f.name)
            })
            .unwrap_or_default();
        format!("{condition}sort(-{pk})&limit(20)")
    }

    fn id_parameter(&self) -> Value {
        let pk = self.def.primary_key();
        let schema = match pk.ty.scalar {
            s @ Scalar::Int { .. } => Value::Object(scalar_schema(s)),
            _ => json!({ "type": "string" }),
        };
        json!({
            "name": "id",
            "in": "path",
            "required": true,
            "description": format!(
                "The record's primary key `{}`, percent-encoded (`/` as `%2F`, `.` may stay). \
                 A suffix `.json`, `.cbor`, `.msgpack` or `.csv` picks the response format when \
                 no record has the whole text as its id.",
                pk.name
            ),
            "schema": schema,
        })
    }

    fn collection(&self, ops: &mut OperationIds) -> Value {
        let (t, schema, segment) = (self.def.name, self.schema, self.segment);
        let list = json!({ "type": "array", "items": schema_ref(schema) });
        let create_note = match self.def.primary_key().ty.scalar {
            Scalar::Id | Scalar::String => format!(
                "When the body has no `{}`, a UUID v4 is generated.",
                self.def.primary_key().name
            ),
            _ => format!(
                "The body must hold the integer `{}`.",
                self.def.primary_key().name
            ),
        };
        let example = self.example_query();
        json!({
            "get": {
                "tags": [t],
                "operationId": self.op(ops, "list", ""),
                "summary": format!("Query {t} records"),
                "description": format!(
                    "Every {t} record matching the query (all of them without one), streamed as \
                     one array, in primary-key order unless the query sorts. The query \
                     string holds conditions (`attr=value`, FIQL comparators such as \
                     `attr=gt=value`, `&`, `|`, parentheses) and the directives `limit(n)`, \
                     `limit(start,end)`, `sort(+a,-b)` and `select(a,b)`, or `limit=`, \
                     `offset=`, `sort=`, `select=`; the `conditions` parameter describes them \
                     all. Example: `/{segment}/?{example}`."
                ),
                "parameters": self.query_parameters(),
                "responses": {
                    "200": {
                        "description": "The matching records. With `select(...)` each item has the \
                            selected shape: an object of those attributes, a bare value for \
                            `select(a)`, an array for `select([a,b])`.",
                        "content": with_event_stream(
                            read_content(list),
                            "every matching record first, then each put or delete of a matching \
                             record and `unmatched` when a record stops matching",
                        ),
                    },
                    "400": error_response("A malformed query, a condition or select on an attribute the table does not have, a value of the wrong type, an unknown comparator or function, or a query too expensive to run."),
                    "406": error_response("No acceptable media type in `Accept`."),
                },
            },
            "head": {
                "tags": [t],
                "operationId": self.op(ops, "head", "Collection"),
                "summary": format!("Check a query of {t} records"),
                "description": "As GET, without the body.",
                "parameters": self.query_parameters(),
                "responses": {
                    "200": { "description": "The query is valid." },
                    "400": error_response("A malformed query, or a condition on an attribute the table does not have."),
                    "406": error_response("No acceptable media type in `Accept`."),
                },
            },
            "post": {
                "tags": [t],
                "operationId": self.op(ops, "create", ""),
                "summary": format!("Create a {t} record"),
                "description": format!("Creates a new record. {create_note}"),
                "requestBody": {
                    "required": true,
                    "content": body_content(schema_ref(schema)),
                },
                "responses": {
                    "201": {
                        "description": "Created. The body is the new record's id as a JSON string.",
                        "headers": {
                            "Location": {
                                "description": "The new record's id, percent-encoded (the bare id, not a path, as Harper).",
                                "schema": { "type": "string" },
                            },
                        },
                        "content": {
                            "application/json": { "schema": { "type": "string" } },
                        },
                    },
                    "400": error_response("The body is not a valid record: not an object, a missing required attribute, a value of the wrong type, or an unknown attribute."),
                    "409": error_response("A record with this id already exists."),
                    "413": error_response("The body is over the size limit."),
                    "415": error_response("The `Content-Type` is not JSON, CBOR or MessagePack."),
                },
            },
            "delete": {
                "tags": [t],
                "operationId": self.op(ops, "deleteMatching", ""),
                "summary": format!("Delete the {t} records matching a query"),
                "description": "Deletes every record the query matches; **without a query, every record of the table**.",
                "parameters": [param_ref("conditions")],
                "responses": {
                    "200": true_response("Deleted (also when nothing matched)."),
                    "400": error_response("A malformed query, or a condition on an attribute the table does not have."),
                },
            },
            "options": {
                "tags": [t],
                "operationId": self.op(ops, "options", "Collection"),
                "summary": format!("Methods allowed on the {t} collection"),
                "responses": { "204": options_response("GET, HEAD, POST, DELETE, OPTIONS") },
            },
        })
    }

    fn record(&self, ops: &mut OperationIds) -> Value {
        let (t, schema) = (self.def.name, self.schema);
        let mut get_params = Vec::new();
        if !self.has_attribute("select") {
            get_params.push(param_ref("select"));
        }
        get_params.push(param_ref("ifNoneMatch"));
        let body_note = format!(
            "A `{}` in the body must equal the URL's id.",
            self.def.primary_key().name
        );
        json!({
            "parameters": [self.id_parameter()],
            "get": {
                "tags": [t],
                "operationId": self.op(ops, "get", ""),
                "summary": format!("Read a {t} record"),
                "description": "The record; with `select(a,b)` only those attributes (relationships resolved). A record URL takes no conditions, sort or limit.",
                "parameters": get_params,
                "responses": {
                    "200": {
                        "description": "The record.",
                        "headers": { "ETag": etag_header() },
                        "content": with_event_stream(
                            read_content(schema_ref(schema)),
                            "the record first (if it exists), then each put or delete of it",
                        ),
                    },
                    "304": { "description": "Not modified: `If-None-Match` names the current ETag." },
                    "400": error_response("An invalid id or query."),
                    "404": error_response("No record has this id."),
                    "406": error_response("No acceptable media type in `Accept`."),
                },
            },
            "head": {
                "tags": [t],
                "operationId": self.op(ops, "head", ""),
                "summary": format!("Check a {t} record"),
                "description": "As GET, without the body.",
                "parameters": [param_ref("ifNoneMatch")],
                "responses": {
                    "200": {
                        "description": "The record exists.",
                        "headers": { "ETag": etag_header() },
                    },
                    "304": { "description": "Not modified." },
                    "404": error_response("No record has this id."),
                },
            },
            "put": {
                "tags": [t],
                "operationId": self.op(ops, "put", ""),
                "summary": format!("Create or replace a {t} record"),
                "description": format!("Stores the body as the whole record under the URL's id. {body_note}"),
                "requestBody": {
                    "required": true,
                    "content": body_content(schema_ref(schema)),
                },
                "responses": {
                    "204": { "description": "Stored (created or replaced)." },
                    "400": error_response(format!("The body is not a valid record, or its id contradicts the URL's. {body_note}")),
                    "413": error_response("The body is over the size limit."),
                    "415": error_response("The `Content-Type` is not JSON, CBOR or MessagePack."),
                },
            },
            "patch": {
                "tags": [t],
                "operationId": self.op(ops, "patch", ""),
                "summary": format!("Change some attributes of a {t} record"),
                "description": format!("Merges the body into the stored record. {body_note}"),
                "requestBody": {
                    "required": true,
                    "content": body_content(schema_ref(&patch_name(schema))),
                },
                "responses": {
                    "204": { "description": "Merged." },
                    "400": error_response("A value of the wrong type, an unknown attribute, or an id that contradicts the URL's."),
                    "404": error_response("No record has this id (PATCH does not create)."),
                    "413": error_response("The body is over the size limit."),
                    "415": error_response("The `Content-Type` is not JSON, CBOR or MessagePack."),
                },
            },
            "delete": {
                "tags": [t],
                "operationId": self.op(ops, "delete", ""),
                "summary": format!("Delete a {t} record"),
                "responses": {
                    "200": true_response("Deleted (also when no record had this id)."),
                    "400": error_response("An invalid id."),
                },
            },
            "options": {
                "tags": [t],
                "operationId": self.op(ops, "options", ""),
                "summary": format!("Methods allowed on a {t} record"),
                "responses": { "204": options_response("GET, HEAD, PUT, PATCH, DELETE, OPTIONS") },
            },
        })
    }

    fn attribute(&self, ops: &mut OperationIds) -> Value {
        let t = self.def.name;
        let attributes: Vec<&str> = self
            .def
            .fields
            .iter()
            .map(|f| f.name)
            .chain(self.def.relationships.iter().map(|r| r.name))
            .collect();
        json!({
            "get": {
                "tags": [t],
                "operationId": self.op(ops, "get", "Attribute"),
                "summary": format!("Read one attribute of a {t} record"),
                "description": "The attribute's value alone (a relationship is resolved). Applies when no record has the whole `{id}.{attribute}` text as its id.",
                "parameters": [
                    self.id_parameter(),
                    {
                        "name": "attribute",
                        "in": "path",
                        "required": true,
                        "description": "An attribute of the table.",
                        "schema": { "type": "string", "enum": attributes },
                    },
                    param_ref("ifNoneMatch"),
                ],
                "responses": {
                    "200": {
                        "description": "The attribute's value (null when the record lacks it).",
                        "headers": { "ETag": etag_header() },
                        "content": read_content(json!({})),
                    },
                    "304": { "description": "Not modified." },
                    "400": error_response("An invalid id."),
                    "404": error_response("No record has this id."),
                    "406": error_response("No acceptable media type in `Accept`."),
                },
            },
        })
    }

    fn description(&self, ops: &mut OperationIds) -> Value {
        let (t, segment) = (self.def.name, self.segment);
        json!({
            "get": {
                "tags": [t],
                "operationId": self.op(ops, "describe", ""),
                "summary": format!("Describe the {t} table"),
                "description": format!(
                    "The table's name, primary key, record count and attributes (with type, \
                     index and relationship). With a query string, `/{segment}?...` is a \
                     collection query like `/{segment}/?...`."
                ),
                "responses": {
                    "200": {
                        "description": "The table's description.",
                        "content": {
                            "application/json": { "schema": table_description_schema() },
                        },
                    },
                },
            },
        })
    }
}

fn table_description_schema() -> Value {
    json!({
        "type": "object",
        "required": ["name", "attributes"],
        "properties": {
            "name": { "type": "string" },
            "records": { "type": "string", "description": "Where the records are: `./`." },
            "primaryKey": { "type": "string" },
            "recordCount": { "type": "integer", "minimum": 0 },
            "attributes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "type"],
                    "properties": {
                        "name": { "type": "string" },
                        "type": {
                            "type": "string",
                            "description": "ID, String, Boolean, Int, Long, Float, Any, or the related table's name.",
                        },
                        "indexed": { "type": "boolean" },
                        "nullable": { "type": "boolean" },
                        "list": { "type": "boolean" },
                        "isPrimaryKey": { "type": "boolean" },
                        "relationship": {
                            "type": "object",
                            "properties": {
                                "from": { "type": "string" },
                                "to": { "type": "string" },
                            },
                        },
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ExportDef, FieldType, RelationshipKind};

    const fn ty(scalar: Scalar, optional: bool, list: bool) -> FieldType {
        FieldType {
            scalar,
            optional,
            list,
        }
    }

    const fn field(name: &'static str, ty: FieldType, indexed: bool) -> FieldDef {
        FieldDef {
            name,
            rust_name: name,
            ty,
            indexed,
        }
    }

    static ITEM: TableDef = TableDef {
        name: "Item",
        export: Some(ExportDef {
            name: "items",
            access: crate::schema::Access::DEFAULT,
        }),
        fields: &[
            field("id", ty(Scalar::Id, false, false), true),
            field("name", ty(Scalar::String, false, false), true),
            field("note", ty(Scalar::String, true, false), false),
            field("price", ty(Scalar::Float { bits: 64 }, false, false), true),
            field("weight", ty(Scalar::Float { bits: 32 }, true, false), false),
            field(
                "qty",
                ty(
                    Scalar::Int {
                        signed: true,
                        bits: 32,
                    },
                    false,
                    false,
                ),
                false,
            ),
            field(
                "small",
                ty(
                    Scalar::Int {
                        signed: false,
                        bits: 8,
                    },
                    true,
                    false,
                ),
                false,
            ),
            field(
                "count",
                ty(
                    Scalar::Int {
                        signed: true,
                        bits: 64,
                    },
                    false,
                    false,
                ),
                false,
            ),
            field(
                "big",
                ty(
                    Scalar::Int {
                        signed: false,
                        bits: 64,
                    },
                    false,
                    false,
                ),
                false,
            ),
            field("active", ty(Scalar::Bool, false, false), false),
            field("tags", ty(Scalar::String, false, true), true),
            field(
                "ratings",
                ty(
                    Scalar::Int {
                        signed: false,
                        bits: 16,
                    },
                    true,
                    true,
                ),
                false,
            ),
            field("extra", ty(Scalar::Json, true, false), false),
            field("groupId", ty(Scalar::Id, false, false), true),
            field("makerIds", ty(Scalar::Id, true, true), true),
        ],
        primary_key: 0,
        relationships: &[
            RelationshipDef {
                name: "group",
                target: || &GROUP,
                kind: RelationshipKind::From { field: "groupId" },
            },
            RelationshipDef {
                name: "makers",
                target: || &MAKER,
                kind: RelationshipKind::From { field: "makerIds" },
            },
        ],
        compound_indexes: &[],
    };

    static GROUP: TableDef = TableDef {
        name: "Group",
        export: Some(ExportDef {
            name: "Group",
            access: crate::schema::Access::DEFAULT,
        }),
        fields: &[
            field("id", ty(Scalar::Id, false, false), true),
            field("name", ty(Scalar::String, false, false), true),
        ],
        primary_key: 0,
        relationships: &[RelationshipDef {
            name: "items",
            target: || &ITEM,
            kind: RelationshipKind::To {
                rust_field: "groupId",
            },
        }],
        compound_indexes: &[],
    };

    /// Not exported, but reachable from `Item.makers`.
    static MAKER: TableDef = TableDef {
        name: "Maker",
        export: None,
        fields: &[
            field(
                "id",
                ty(
                    Scalar::Int {
                        signed: false,
                        bits: 32,
                    },
                    false,
                    false,
                ),
                true,
            ),
            field("limit", ty(Scalar::String, false, false), false),
        ],
        primary_key: 0,
        relationships: &[],
        compound_indexes: &[],
    };

    /// Exported, with a name that clashes with the error schema and attributes that clash
    /// with the directives.
    static ERROR_TABLE: TableDef = TableDef {
        name: "Error",
        export: Some(ExportDef {
            name: "errors",
            access: crate::schema::Access::DEFAULT,
        }),
        fields: &[
            field(
                "id",
                ty(
                    Scalar::Int {
                        signed: true,
                        bits: 64,
                    },
                    false,
                    false,
                ),
                true,
            ),
            field(
                "limit",
                ty(
                    Scalar::Int {
                        signed: true,
                        bits: 16,
                    },
                    false,
                    false,
                ),
                false,
            ),
            field("select", ty(Scalar::String, true, false), false),
        ],
        primary_key: 0,
        relationships: &[],
        compound_indexes: &[],
    };

    fn doc() -> Value {
        document(
            &[&ITEM, &GROUP, &MAKER, &ERROR_TABLE],
            "http://localhost:9926/",
        )
    }

    fn prop<'a>(doc: &'a Value, schema: &str, name: &str) -> &'a Value {
        &doc["components"]["schemas"][schema]["properties"][name]
    }

    #[test]
    fn header_and_server() {
        let d = doc();
        assert_eq!(d["openapi"], "3.0.3");
        assert_eq!(d["info"]["title"], "harper-rs REST API");
        assert_eq!(d["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(d["servers"][0]["url"], "http://localhost:9926");
        assert_eq!(document(&[], "")["servers"][0]["url"], "/");
        assert_eq!(document(&[], "")["paths"], json!({}));
    }

    #[test]
    fn field_types() {
        let d = doc();
        assert_eq!(prop(&d, "Item", "id")["type"], "string");
        assert_eq!(
            prop(&d, "Item", "name"),
            &json!({"type": "string", "description": "Indexed: fast in conditions and sort(...)."})
        );
        assert_eq!(prop(&d, "Item", "price")["type"], "number");
        assert_eq!(prop(&d, "Item", "price")["format"], "double");
        assert_eq!(prop(&d, "Item", "weight")["format"], "float");
        assert_eq!(prop(&d, "Item", "active")["type"], "boolean");

        let qty = prop(&d, "Item", "qty");
        assert_eq!(qty["type"], "integer");
        assert_eq!(qty["format"], "int32");
        assert_eq!(qty["minimum"], json!(i32::MIN));
        assert_eq!(qty["maximum"], json!(i32::MAX));

        let small = prop(&d, "Item", "small");
        assert_eq!(
            (
                small["format"].as_str(),
                small["minimum"].as_i64(),
                small["maximum"].as_i64()
            ),
            (Some("int32"), Some(0), Some(255))
        );

        let count = prop(&d, "Item", "count");
        assert_eq!(count["format"], "int64");
        assert!(count.get("minimum").is_none() && count.get("maximum").is_none());

        let big = prop(&d, "Item", "big");
        assert!(big.get("format").is_none(), "u64 does not fit int64");
        assert_eq!(big["minimum"], json!(0));
        assert_eq!(big["maximum"], json!(u64::MAX));

        let maker_id = prop(&d, "Maker", "id");
        assert_eq!(
            (maker_id["format"].as_str(), maker_id["maximum"].as_u64()),
            (Some("int64"), Some(u32::MAX as u64))
        );

        let tags = prop(&d, "Item", "tags");
        assert_eq!(tags["type"], "array");
        assert_eq!(tags["items"], json!({"type": "string"}));
        assert!(tags.get("nullable").is_none());

        let ratings = prop(&d, "Item", "ratings");
        assert_eq!(ratings["type"], "array");
        assert_eq!(ratings["nullable"], true);
        assert_eq!(
            ratings["items"],
            json!({"type": "integer", "format": "int32", "minimum": 0, "maximum": 65535})
        );

        let extra = prop(&d, "Item", "extra");
        assert!(
            extra.get("type").is_none(),
            "JSON fields are free-form: {extra}"
        );
        assert_eq!(extra["nullable"], true);
    }

    #[test]
    fn nullable_and_required() {
        let d = doc();
        assert_eq!(prop(&d, "Item", "note")["nullable"], true);
        assert_eq!(prop(&d, "Item", "small")["nullable"], true);
        assert!(prop(&d, "Item", "name").get("nullable").is_none());
        let required = &d["components"]["schemas"]["Item"]["required"];
        assert_eq!(
            required,
            &json!([
                "name", "price", "qty", "count", "big", "active", "tags", "groupId"
            ]),
            "non-optional fields except the primary key"
        );
        // The patch schema has the same attributes, none required, relationships excluded.
        let patch = &d["components"]["schemas"]["Item.Patch"];
        assert!(patch.get("required").is_none());
        assert_eq!(patch["additionalProperties"], false);
        assert_eq!(
            patch["properties"].as_object().unwrap().len(),
            ITEM.fields.len()
        );
        assert!(patch["properties"].get("group").is_none());
    }

    #[test]
    fn relationships_are_read_only_references() {
        let d = doc();
        let group = prop(&d, "Item", "group");
        assert_eq!(
            group["allOf"],
            json!([{"$ref": "#/components/schemas/Group"}])
        );
        assert_eq!(group["readOnly"], true);
        let described = group["description"].as_str().unwrap();
        assert!(
            described.contains("`select(id,group{name})`"),
            "{described}"
        );

        let makers = prop(&d, "Item", "makers");
        assert_eq!(makers["type"], "array", "a list `from` field is to-many");
        assert_eq!(
            makers["items"],
            json!({"$ref": "#/components/schemas/Maker"})
        );
        assert_eq!(makers["readOnly"], true);

        let items = prop(&d, "Group", "items");
        assert_eq!(items["type"], "array");
        assert_eq!(items["items"], json!({"$ref": "#/components/schemas/Item"}));
        assert!(items["description"].as_str().unwrap().contains("`groupId`"));

        let required = d["components"]["schemas"]["Group"]["required"]
            .as_array()
            .unwrap();
        assert!(!required.contains(&json!("items")));
        // Maker is not exported, yet referenced: it has a schema but no paths.
        assert!(d["components"]["schemas"].get("Maker").is_some());
        assert!(
            d["paths"]
                .as_object()
                .unwrap()
                .keys()
                .all(|p| !p.contains("Maker"))
        );
    }

    #[test]
    fn every_ref_resolves() {
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let pointer = r.strip_prefix('#').expect("local ref");
                        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
                    }
                    m.values().for_each(|v| walk(v, doc));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, doc)),
                _ => {}
            }
        }
        let d = doc();
        walk(&d, &d);
    }

    #[test]
    fn error_schema_and_reserved_name() {
        let d = doc();
        let error = &d["components"]["schemas"]["Error"];
        assert_eq!(error["properties"]["error"]["type"], "string");
        assert_eq!(error["properties"]["message"]["type"], "string");
        assert_eq!(error["required"], json!(["error", "message"]));
        // The table named Error gets another schema name.
        assert!(
            d["components"]["schemas"]["Error.Record"]["properties"]
                .get("limit")
                .is_some()
        );
        assert_eq!(
            d["paths"]["/errors/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/Error.Record"
        );
    }

    #[test]
    fn paths_and_methods() {
        let d = doc();
        let paths = d["paths"].as_object().unwrap();
        let expected = [
            ("/items/", &["get", "head", "post", "delete", "options"][..]),
            (
                "/items/{id}",
                &["get", "head", "put", "patch", "delete", "options"],
            ),
            ("/items/{id}.{attribute}", &["get"]),
            ("/items", &["get"]),
            ("/Group/", &["get", "head", "post", "delete", "options"]),
            (
                "/Group/{id}",
                &["get", "head", "put", "patch", "delete", "options"],
            ),
            ("/Group/{id}.{attribute}", &["get"]),
            ("/Group", &["get"]),
            ("/errors/", &["get", "head", "post", "delete", "options"]),
            (
                "/errors/{id}",
                &["get", "head", "put", "patch", "delete", "options"],
            ),
            ("/errors/{id}.{attribute}", &["get"]),
            ("/errors", &["get"]),
        ];
        assert_eq!(
            paths.len(),
            expected.len(),
            "{:?}",
            paths.keys().collect::<Vec<_>>()
        );
        for (path, methods) in expected {
            let item = paths.get(path).unwrap_or_else(|| panic!("missing {path}"));
            for m in methods {
                assert!(item.get(*m).is_some(), "{m} {path}");
            }
        }
        let post = &d["paths"]["/items/"]["post"]["responses"];
        assert!(post["201"]["headers"].get("Location").is_some());
        assert_eq!(
            post["201"]["content"]["application/json"]["schema"],
            json!({"type": "string"})
        );
        for code in ["400", "409", "413", "415"] {
            assert!(post.get(code).is_some(), "POST {code}");
        }
        let list = &d["paths"]["/items/"]["get"]["responses"]["200"]["content"];
        for ty in READ_TYPES {
            assert!(list.get(ty).is_some(), "{ty}");
        }
        assert_eq!(
            list["application/json"]["schema"]["items"]["$ref"],
            "#/components/schemas/Item"
        );
        let get = &d["paths"]["/items/{id}"]["get"]["responses"];
        assert!(get["200"]["headers"].get("ETag").is_some());
        assert!(get.get("304").is_some() && get.get("404").is_some());
        assert!(
            d["paths"]["/items/{id}"]["patch"]["responses"]
                .get("404")
                .is_some()
        );
        assert_eq!(
            d["paths"]["/items/{id}"]["delete"]["responses"]["200"]["content"]["application/json"]
                ["schema"]["enum"],
            json!([true])
        );
        let id = &d["paths"]["/items/{id}"]["parameters"][0];
        assert_eq!(
            (
                id["name"].as_str(),
                id["in"].as_str(),
                id["required"].as_bool()
            ),
            (Some("id"), Some("path"), Some(true))
        );
        assert!(
            id["description"]
                .as_str()
                .unwrap()
                .contains("percent-encoded")
        );
        // An integer key is documented as an integer.
        assert_eq!(
            d["paths"]["/errors/{id}"]["parameters"][0]["schema"]["type"],
            "integer"
        );
        let attr = &d["paths"]["/items/{id}.{attribute}"]["get"]["parameters"][1]["schema"]["enum"];
        assert!(attr.as_array().unwrap().contains(&json!("group")));
    }

    #[test]
    fn directive_parameters_yield_to_attributes() {
        let d = doc();
        let names = |path: &str| -> Vec<String> {
            d["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p["$ref"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(
            names("/items/"),
            ["conditions", "limit", "offset", "sort", "select"]
        );
        assert_eq!(names("/errors/"), ["conditions", "offset", "sort"]);
        assert_eq!(names("/errors/{id}"), ["ifNoneMatch"]);
        let params = d["components"]["parameters"].as_object().unwrap();
        for p in [
            "conditions",
            "limit",
            "offset",
            "sort",
            "select",
            "ifNoneMatch",
        ] {
            assert!(params.contains_key(p), "{p}");
        }
        let conditions = params["conditions"]["description"].as_str().unwrap();
        for form in [
            "=gt=",
            "limit(n)",
            "sort(+a,-b)",
            "select(a,b)",
            "category.name=Toys",
        ] {
            assert!(conditions.contains(form), "{form}");
        }
    }

    #[test]
    fn operations_are_unique_tagged_and_errors_use_the_error_schema() {
        let d = doc();
        let mut ids = BTreeSet::new();
        let mut count = 0;
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                count += 1;
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "duplicate {id}");
                assert_eq!(op["tags"].as_array().unwrap().len(), 1, "{method} {path}");
                for (code, response) in op["responses"].as_object().unwrap() {
                    if code.starts_with('4') {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/Error",
                            "{method} {path} {code}"
                        );
                    }
                }
            }
        }
        assert_eq!(count, 3 * 13);
        for id in [
            "listItem",
            "getItem",
            "createItem",
            "putItem",
            "patchItem",
            "deleteItem",
            "describeGroup",
            "getGroupAttribute",
        ] {
            assert!(ids.contains(id), "{id}");
        }
        assert_eq!(d["paths"]["/Group/{id}"]["get"]["tags"], json!(["Group"]));
    }

    #[test]
    fn operation_ids_never_collide() {
        let mut ops = OperationIds::default();
        assert_eq!(ops.take("getA".into()), "getA");
        assert_eq!(ops.take("getA".into()), "getA_2");
        assert_eq!(ops.take("getA".into()), "getA_3");
    }

    #[test]
    fn duplicates_and_unexported_tables_are_skipped() {
        let d = document(&[&GROUP, &GROUP, &MAKER], "http://h");
        assert_eq!(d["paths"].as_object().unwrap().len(), 4);
        // Group reaches Item, which reaches Maker: all three have schemas.
        let schemas = d["components"]["schemas"].as_object().unwrap();
        for s in ["Error", "Group", "Item", "Maker", "Group.Patch"] {
            assert!(schemas.contains_key(s), "{s}");
        }
    }
}
