//! A GraphQL schema generated at run time from the exported tables (async-graphql's dynamic
//! schema), served at `/graphql` by [`crate::http`]. Per table `T`:
//!
//! - a query field `T(<key>: .., <attr>: .., filter: "<REST query>", sort: ["-price"], limit, offset): [T!]!`
//!   (equality arguments per attribute, as Harper; the rest beyond Harper), run by the same
//!   query engine as REST;
//! - relationship fields both ways, read in batches (one query with an `in` set per
//!   relationship and nesting level, not one per parent);
//! - mutations `createT`, `updateT` (replace), `patchT`, `deleteT`, validated like REST and
//!   running the table's validators ([`crate::hooks`]);
//! - a subscription field `T(<key>:, filter:, since:)` yielding `TEvent { type id value seq }`
//!   from [`Database::subscribe_to`].
//!
//! A query text sent again (without variables or an operation name) that the executor
//! accepted, and that selects stored attributes of one table field with constant arguments,
//! is answered from a cached [`Plan`]: the same query and read permission, the body written
//! straight from the stored JSON (byte for byte the executor's answer; anything else, an
//! error included, goes back to the executor).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    Schema, SchemaError, Subscription as SubscriptionType, SubscriptionField,
    SubscriptionFieldFuture, TypeRef, ValueAccessor,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection,
};
use async_graphql::{ErrorExtensions, Name, Value as GqlValue};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::auth::{Access, Auth, Caller};
use crate::error::Error;
use crate::query::{Condition, Filter, Op, Operand, Query, parse_query};
use crate::realtime::Target;
use crate::record::Record;
use crate::schema::{FieldDef, RelationshipDef, RelationshipKind, Scalar as FieldScalar, TableDef};
use crate::storage::key::Atom;
use crate::storage::{Database, Reader, StoredRecord};

/// Queries whose `limit + offset` is at most this run on the request's thread; others (and
/// unlimited ones) on the blocking pool.
const INLINE_ROWS: usize = 100;

/// A record handed to field resolvers: its canonical JSON object.
#[derive(Clone)]
struct Row(Arc<Map<String, Value>>);

/// One subscription event (`{"type","id","value","seq"}`).
struct Event(Map<String, Value>);

/// What one request read: queries run (top-level and batched relationship loads) and rows
/// returned. Reported in the response's `extensions.harper` when the request carries the
/// `x-harper-stats` header.
#[derive(Default, Debug)]
pub struct RequestStats {
    pub queries: AtomicU64,
    pub rows: AtomicU64,
}

impl RequestStats {
    fn add(&self, rows: usize) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }
}

/// The GraphQL schema of a set of tables, plus what each request needs.
#[derive(Clone)]
pub struct GraphQl {
    pub schema: Schema,
    db: Database,
    /// Who a request acts for (its credentials).
    pub auth: Auth,
    tables: Arc<HashMap<&'static str, &'static TableDef>>,
    /// Parsed documents by query text: clients repeat a few queries, and parsing is a third
    /// of the cost of a small request.
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
    /// What is known of each query text seen without variables or an operation name: a
    /// [`Plan`] when it is valid and simple enough to answer directly, `None` when not.
    plans: Arc<Mutex<HashMap<String, Option<Arc<Plan>>>>>,
}

/// Documents kept in the parse cache (it is emptied when full).
const CACHED_DOCUMENTS: usize = 512;
/// Longer query texts are not cached.
const CACHED_QUERY_BYTES: usize = 8192;

impl GraphQl {
    /// Builds the schema of the exported tables among `tables`; `None` when none is exported.
    pub fn build(
        db: Database,
        auth: Auth,
        tables: &[&'static TableDef],
    ) -> Option<Result<GraphQl, SchemaError>> {
        let exported: Vec<&'static TableDef> = tables
            .iter()
            .copied()
            .filter(|d| d.export.is_some())
            .collect();
        if exported.is_empty() {
            return None;
        }
        Some(build_schema(db.clone(), &exported).map(|schema| GraphQl {
            schema,
            db,
            auth,
            tables: Arc::new(exported.iter().map(|d| (d.name, *d)).collect()),
            documents: Arc::new(Mutex::new(HashMap::new())),
            plans: Arc::new(Mutex::new(HashMap::new())),
        }))
    }

    /// A request ready to execute, with its own relationship batcher and read counters.
    pub fn prepare(
        &self,
        mut request: async_graphql::Request,
        caller: Caller,
    ) -> (async_graphql::Request, Arc<RequestStats>) {
        if request.query.len() <= CACHED_QUERY_BYTES {
            let cached = self
                .documents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&request.query)
                .cloned();
            match cached {
                Some(doc) => request.set_parsed_query(doc),
                None => {
                    if let Ok(doc) = request.parsed_query() {
                        let doc = doc.clone();
                        let mut docs = self.documents.lock().unwrap_or_else(|p| p.into_inner());
                        if docs.len() >= CACHED_DOCUMENTS {
                            docs.clear();
                        }
                        docs.insert(request.query.clone(), doc);
                    }
                }
            }
        }
        let stats = Arc::new(RequestStats::default());
        let loader = DataLoader::new(
            RelLoader {
                db: self.db.clone(),
                tables: self.tables.clone(),
                stats: stats.clone(),
            },
            tokio::spawn,
        );
        (request.data(loader).data(stats.clone()).data(caller), stats)
    }
}

// ---- direct answers ----------------------------------------------------------------------

/// How the HTTP endpoint answers a request (see [`GraphQl::route`]).
pub enum Route {
    /// From a cached [`Plan`], without the general executor.
    Plan(Arc<Plan>),
    /// By the executor, then [`GraphQl::learn`] from its response (the first sight of this
    /// query text).
    Learn(String),
    /// By the executor.
    Execute,
}

/// A valid query of the commonest shape: one table field with constant arguments, selecting
/// stored attributes only (no relationships, fragments, directives, variables or
/// `__typename`). It runs the same query as the field's resolver, under the same read
/// permission, and writes the answer straight from the stored JSON, byte for byte what the
/// executor would write.
pub struct Plan {
    def: &'static TableDef,
    /// `"<response key>":` of the table field.
    key: Vec<u8>,
    query: Query,
    fields: Vec<PlanField>,
    /// The stored attributes the fields read, each once.
    attrs: Vec<&'static str>,
}

struct PlanField {
    /// `"<response key>":`.
    key: Vec<u8>,
    /// The stored attribute (its index in [`Plan::attrs`]).
    attr: usize,
    /// Whether the GraphQL type allows null (else a missing value is the executor's error).
    nullable: bool,
    /// A list type (the executor reports any other stored value as an error).
    list: bool,
}

impl GraphQl {
    /// Whether `request` may be answered from a plan. Only requests without variables or an
    /// operation name are planned, so that the query text alone decides.
    pub fn route(&self, request: &async_graphql::Request) -> Route {
        if request.query.len() > CACHED_QUERY_BYTES
            || request.operation_name.is_some()
            || !request.variables.is_empty()
            || !request.uploads.is_empty()
        {
            return Route::Execute;
        }
        let plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        match plans.get(&request.query) {
            Some(Some(plan)) => Route::Plan(plan.clone()),
            Some(None) => Route::Execute,
            None => Route::Learn(request.query.clone()),
        }
    }

    /// The plan of a query text sent alone (no variables, no operation name), if it has one.
    pub fn planned(&self, query: &str) -> Option<Arc<Plan>> {
        let plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        plans.get(query).cloned().flatten()
    }

    /// Keeps what the executor's `response` to `query` (a [`Route::Learn`]) shows: a query
    /// that passed parsing and validation gets a plan when its shape allows one.
    pub fn learn(&self, query: String, response: &async_graphql::Response) {
        // Errors without a path are the request's own (parse, validation): nothing to keep.
        if response.errors.iter().any(|e| e.path.is_empty()) {
            return;
        }
        let plan = async_graphql::parser::parse_query(&query)
            .ok()
            .and_then(|doc| self.plan(&doc))
            .map(Arc::new);
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if plans.len() >= CACHED_DOCUMENTS {
            plans.clear();
        }
        plans.insert(query, plan);
    }

    /// The plan of a validated document, when it has the shape [`Plan`] covers.
    fn plan(&self, doc: &ExecutableDocument) -> Option<Plan> {
        if !doc.fragments.is_empty() {
            return None;
        }
        let op = match &doc.operations {
            DocumentOperations::Single(op) => &op.node,
            DocumentOperations::Multiple(ops) if ops.len() == 1 => &ops.values().next()?.node,
            DocumentOperations::Multiple(_) => return None,
        };
        if op.ty != OperationType::Query
            || !op.variable_definitions.is_empty()
            || !op.directives.is_empty()
        {
            return None;
        }
        let [root] = op.selection_set.node.items.as_slice() else {
            return None;
        };
        let Selection::Field(root) = &root.node else {
            return None;
        };
        let root = &root.node;
        if !root.directives.is_empty() {
            return None;
        }
        let def = *self.tables.get(root.name.node.as_str())?;
        let mut args: HashMap<&str, GqlValue> = HashMap::new();
        for (name, value) in &root.arguments {
            args.insert(name.node.as_str(), value.node.clone().into_const()?);
        }
        let query = query_from_args(def, |name| args.get(name)).ok()?;
        let mut keys = HashSet::new();
        let mut fields = Vec::new();
        let mut attrs: Vec<&'static str> = Vec::new();
        for item in &root.selection_set.node.items {
            let Selection::Field(f) = &item.node else {
                return None;
            };
            let f = &f.node;
            if !f.directives.is_empty()
                || !f.arguments.is_empty()
                || !f.selection_set.node.items.is_empty()
            {
                return None;
            }
            let field = def.fields.iter().find(|d| d.name == f.name.node.as_str())?;
            let key = f.response_key().node.as_str();
            if !keys.insert(key) {
                return None;
            }
            let attr = match attrs.iter().position(|a| *a == field.name) {
                Some(i) => i,
                None => {
                    attrs.push(field.name);
                    attrs.len() - 1
                }
            };
            fields.push(PlanField {
                key: json_key(key)?,
                attr,
                nullable: !matches!(output_type(field), TypeRef::NonNull(_)),
                list: field.ty.list,
            });
        }
        Some(Plan {
            def,
            key: json_key(root.response_key().node.as_str())?,
            query,
            fields,
            attrs,
        })
    }

    /// The response body of `plan` for `caller`; `None` when the executor must answer
    /// instead (an error to report, or a stored value the plan does not write).
    pub async fn answer(&self, plan: &Plan, caller: &Caller) -> Option<Vec<u8>> {
        let access = caller
            .access(plan.def, "read", &plan.def.access().read)
            .ok()?;
        let rows = read_stored(&self.db, plan.def, &plan.query, access)
            .await
            .ok()?;
        let size: usize = rows.iter().map(|r| r.json().len() + 2).sum();
        let mut out = Vec::with_capacity(size + 64);
        out.extend_from_slice(b"{\"data\":{");
        out.extend_from_slice(&plan.key);
        out.push(b'[');
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // One UTF-8 check for the whole record; the values are then borrowed unchecked.
            let text = std::str::from_utf8(row.json()).ok()?;
            let mut de = serde_json::Deserializer::from_str(text);
            let values = Attrs(&plan.attrs).deserialize(&mut de).ok()?;
            de.end().ok()?;
            out.push(b'{');
            for (j, f) in plan.fields.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&f.key);
                write_stored_value(&mut out, values.get(f.attr).copied().flatten(), f)?;
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}}");
        Some(out)
    }
}

/// `"key":`.
fn json_key(key: &str) -> Option<Vec<u8>> {
    let mut out = serde_json::to_vec(key).ok()?;
    out.push(b':');
    Some(out)
}

/// Writes a stored attribute's value as the executor would (the serialization of the value
/// parsed from the stored JSON); `None` when the executor would report an error instead.
fn write_stored_value(out: &mut Vec<u8>, raw: Option<&RawValue>, f: &PlanField) -> Option<()> {
    let text = raw.map(|r| r.get().trim()).unwrap_or("null");
    let first = *text.as_bytes().first()?;
    if first == b'n' {
        if text != "null" || !f.nullable {
            return None;
        }
        out.extend_from_slice(b"null");
        return Some(());
    }
    if f.list && first != b'[' {
        return None;
    }
    match first {
        // Without escapes (or control characters, which serde_json escapes) the stored
        // text is what serializing the parsed string gives.
        b'"' if !text[1..].bytes().any(|b| b == b'\\' || b < 0x20) => {
            out.extend_from_slice(text.as_bytes());
        }
        b'"' => {
            let s: String = serde_json::from_str(text).ok()?;
            serde_json::to_writer(&mut *out, &s).ok()?;
        }
        b't' | b'f' => {
            let b: bool = serde_json::from_str(text).ok()?;
            out.extend_from_slice(if b { b"true" } else { b"false" });
        }
        b'-' | b'0'..=b'9' => {
            let n: serde_json::Number = serde_json::from_str(text).ok()?;
            serde_json::to_writer(&mut *out, &n).ok()?;
        }
        b'[' | b'{' => {
            let v: Value = serde_json::from_str(text).ok()?;
            serde_json::to_writer(&mut *out, &v).ok()?;
        }
        _ => return None,
    }
    Some(())
}

/// Reads the values of some attributes from a stored JSON object, borrowed from its text:
/// one slot per name, holding the last value of that name (as a parsed map keeps).
struct Attrs<'p>(&'p [&'static str]);

impl<'de> DeserializeSeed<'de> for Attrs<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Attrs<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let names = self.0;
        let mut out = vec![None; names.len()];
        // Records usually hold the attributes in the order selected: try the next one first.
        let mut next = 0;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            let found = if names.get(next) == Some(&&*k) {
                Some(next)
            } else {
                names.iter().position(|n| *n == k)
            };
            match found {
                Some(i) => {
                    out[i] = Some(map.next_value::<&'de RawValue>()?);
                    next = i + 1;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// An attribute name, borrowed unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

// ---- schema ------------------------------------------------------------------------------

fn scalar_name(s: FieldScalar) -> &'static str {
    match s {
        FieldScalar::Id => "ID",
        FieldScalar::String => "String",
        FieldScalar::Bool => "Boolean",
        FieldScalar::Int { bits: 64, .. }
        | FieldScalar::Int {
            signed: false,
            bits: 32,
        } => "Long",
        FieldScalar::Int { .. } => "Int",
        FieldScalar::Float { .. } => "Float",
        FieldScalar::Json => "Any",
    }
}

fn output_type(f: &FieldDef) -> TypeRef {
    let name = scalar_name(f.ty.scalar);
    match (f.ty.list, f.ty.optional) {
        (true, true) => TypeRef::named_list(name),
        (true, false) => TypeRef::named_list_nn(name),
        (false, true) => TypeRef::named(name),
        (false, false) if f.ty.scalar == FieldScalar::Json => TypeRef::named(name),
        (false, false) => TypeRef::named_nn(name),
    }
}

fn input_type(f: &FieldDef) -> TypeRef {
    let name = scalar_name(f.ty.scalar);
    if f.ty.list {
        TypeRef::named_list(name)
    } else {
        TypeRef::named(name)
    }
}

fn build_schema(db: Database, tables: &[&'static TableDef]) -> Result<Schema, SchemaError> {
    let names: HashSet<&str> = tables.iter().map(|d| d.name).collect();
    let mut query = Object::new("Query");
    let mut mutation = Object::new("Mutation");
    let mut subscription = SubscriptionType::new("Subscription");
    let mut builder = Schema::build("Query", Some("Mutation"), Some("Subscription"))
        .register(Scalar::new("Long").description("A 64-bit integer"))
        .register(Scalar::new("Any").description("Any JSON value"))
        .limit_depth(24);
    for &def in tables {
        builder = builder
            .register(object_type(def, &names))
            .register(input_object(def))
            .register(event_type(def));
        query = query.field(query_field(db.clone(), def));
        for field in mutation_fields(db.clone(), def) {
            mutation = mutation.field(field);
        }
        subscription = subscription.field(subscription_field(db.clone(), def));
    }
    builder
        .register(query)
        .register(mutation)
        .register(subscription)
        .finish()
}

fn object_type(def: &'static TableDef, tables: &HashSet<&str>) -> Object {
    let mut obj = Object::new(def.name);
    for f in def.fields {
        let name = f.name;
        obj = obj.field(Field::new(name, output_type(f), move |ctx| {
            let v = ctx
                .parent_value
                .downcast_ref::<Row>()
                .and_then(|row| row.0.get(name))
                .filter(|v| !v.is_null())
                .map(to_gql);
            FieldFuture::from_value(v)
        }));
    }
    for rel in def.relationships {
        let target = (rel.target)();
        if !tables.contains(target.name) {
            continue;
        }
        let ty = match rel.kind {
            RelationshipKind::From { field } => match local_field(def, field) {
                Some(f) if f.ty.list => TypeRef::named_nn_list(target.name),
                Some(_) => TypeRef::named(target.name),
                None => continue,
            },
            RelationshipKind::To { .. } => TypeRef::named_nn_list_nn(target.name),
        };
        obj = obj.field(Field::new(rel.name, ty, move |ctx| {
            FieldFuture::new(async move {
                let result = resolve_relationship(&ctx, def, rel).await;
                Ok(reported(&ctx, result))
            })
        }));
    }
    obj
}

/// The field a many-to-one relationship reads (named by its JSON or Rust name).
fn local_field(def: &'static TableDef, name: &str) -> Option<&'static FieldDef> {
    def.field(name).or_else(|| def.field_by_rust_name(name))
}

fn input_object(def: &'static TableDef) -> InputObject {
    let mut input = InputObject::new(format!("{}Input", def.name));
    for f in def.fields {
        input = input.field(InputValue::new(f.name, input_type(f)));
    }
    input
}

fn event_type(def: &'static TableDef) -> Object {
    Object::new(format!("{}Event", def.name))
        .description("A change: put, delete, unmatched (stopped matching the filter) or resync")
        .field(event_field("type", TypeRef::named_nn("String")))
        .field(event_field(
            "id",
            TypeRef::named(scalar_name(def.primary_key().ty.scalar)),
        ))
        .field(event_field("seq", TypeRef::named("Long")))
        .field(event_field("version", TypeRef::named("Float")))
        .field(event_field("message", TypeRef::named("String")))
        .field(Field::new("value", TypeRef::named(def.name), |ctx| {
            let row =
                ctx.parent_value
                    .downcast_ref::<Event>()
                    .and_then(|e| match e.0.get("value") {
                        Some(Value::Object(m)) => {
                            Some(FieldValue::owned_any(Row(Arc::new(m.clone()))))
                        }
                        _ => None,
                    });
            FieldFuture::new(async move { Ok(row) })
        }))
}

fn event_field(name: &'static str, ty: TypeRef) -> Field {
    Field::new(name, ty, move |ctx| {
        let v = ctx
            .parent_value
            .downcast_ref::<Event>()
            .and_then(|e| e.0.get(name))
            .filter(|v| !v.is_null())
            .map(to_gql);
        FieldFuture::from_value(v)
    })
}

fn query_field(db: Database, def: &'static TableDef) -> Field {
    let mut field = Field::new(def.name, TypeRef::named_nn_list(def.name), move |ctx| {
        let db = db.clone();
        FieldFuture::new(async move {
            let result: async_graphql::Result<Option<FieldValue>> = async {
                let query = args_query(def, &ctx)?;
                let stats = ctx.data::<Arc<RequestStats>>().ok().cloned();
                let access = read_access(&ctx, def)?;
                let rows = run_query(&db, def, &query, access).await?;
                if let Some(s) = stats {
                    s.add(rows.len());
                }
                Ok(Some(FieldValue::list(
                    rows.into_iter().map(FieldValue::owned_any),
                )))
            }
            .await;
            Ok(reported(&ctx, result))
        })
    });
    field = field.description(format!(
        "{} records: equality arguments per attribute, `filter` in the REST query language \
         (`price=lt=100&inStock=true`), `sort` (`[\"-price\", \"name\"]`), `limit`, `offset`",
        def.name
    ));
    for f in def.fields {
        if f.ty.scalar.is_indexable() {
            field = field.argument(InputValue::new(
                f.name,
                TypeRef::named(scalar_name(f.ty.scalar)),
            ));
        }
    }
    for (name, ty) in [
        ("filter", TypeRef::named("String")),
        ("sort", TypeRef::named_nn_list("String")),
        ("limit", TypeRef::named("Int")),
        ("offset", TypeRef::named("Int")),
    ] {
        if def.field(name).is_none() {
            field = field.argument(InputValue::new(name, ty));
        }
    }
    field
}

fn mutation_fields(db: Database, def: &'static TableDef) -> Vec<Field> {
    let input = format!("{}Input", def.name);
    let key_ty = scalar_name(def.primary_key().ty.scalar);
    let create = {
        let db = db.clone();
        Field::new(
            format!("create{}", def.name),
            TypeRef::named(def.name),
            move |ctx| {
                let db = db.clone();
                FieldFuture::new(async move {
                    let result: async_graphql::Result<Option<FieldValue>> = async {
                        let mut object = input_data(&ctx)?;
                        let pk = def.primary_key();
                        if object.get(pk.name).is_none_or(Value::is_null) {
                            if !matches!(pk.ty.scalar, FieldScalar::Id | FieldScalar::String) {
                                return Err(gql_error(
                                    &format!("{} needs its integer {} in data", def.name, pk.name),
                                    "invalid_record",
                                ));
                            }
                            object.insert(
                                pk.name.to_owned(),
                                Value::String(crate::types::Id::generate().into_string()),
                            );
                        }
                        let record = Record::from_object(def, object).map_err(error)?;
                        let row = record_row(&record);
                        let caller = caller(&ctx)?;
                        write(&db, move |tx| tx.insert_checked(&caller, record)).await?;
                        Ok(Some(FieldValue::owned_any(row)))
                    }
                    .await;
                    Ok(reported(&ctx, result))
                })
            },
        )
        .argument(InputValue::new("data", TypeRef::named_nn(input.clone())))
        .description(format!(
            "Creates a {} (an id is generated when absent); an error when the id is taken",
            def.name
        ))
    };
    let update = {
        let db = db.clone();
        Field::new(
            format!("update{}", def.name),
            TypeRef::named(def.name),
            move |ctx| {
                let db = db.clone();
                FieldFuture::new(async move {
                    let result: async_graphql::Result<Option<FieldValue>> = async {
                        let key = key_arg(&ctx, "id")?;
                        let mut object = input_data(&ctx)?;
                        let pk = def.primary_key().name;
                        if let Some(given) = object.get(pk).filter(|v| !v.is_null())
                            && json_atom(given) != json_atom(&key)
                        {
                            return Err(gql_error(
                                &format!("data.{pk} contradicts the id argument"),
                                "invalid_record",
                            ));
                        }
                        object.insert(pk.to_owned(), key);
                        let record = Record::from_object(def, object).map_err(error)?;
                        let row = record_row(&record);
                        let caller = caller(&ctx)?;
                        write(&db, move |tx| tx.put_checked(&caller, record)).await?;
                        Ok(Some(FieldValue::owned_any(row)))
                    }
                    .await;
                    Ok(reported(&ctx, result))
                })
            },
        )
        .argument(InputValue::new("id", TypeRef::named_nn(key_ty)))
        .argument(InputValue::new("data", TypeRef::named_nn(input.clone())))
        .description(format!("Creates or replaces the {} with this id", def.name))
    };
    let patch = {
        let db = db.clone();
        Field::new(
            format!("patch{}", def.name),
            TypeRef::named(def.name),
            move |ctx| {
                let db = db.clone();
                FieldFuture::new(async move {
                    let result: async_graphql::Result<Option<FieldValue>> = async {
                        let key = key_arg(&ctx, "id")?;
                        let object = input_data(&ctx)?;
                        if let Some(given) = object.get(def.primary_key().name)
                            && json_atom(given) != json_atom(&key)
                        {
                            return Err(gql_error(
                                "a patch cannot change the primary key",
                                "invalid_record",
                            ));
                        }
                        let atom = json_atom(&key);
                        let caller = caller(&ctx)?;
                        let record =
                            write(&db, move |tx| tx.patch_checked(&caller, def, atom, object))
                                .await?;
                        Ok(Some(FieldValue::owned_any(record_row(&record))))
                    }
                    .await;
                    Ok(reported(&ctx, result))
                })
            },
        )
        .argument(InputValue::new("id", TypeRef::named_nn(key_ty)))
        .argument(InputValue::new("data", TypeRef::named_nn(input)))
        .description(format!(
            "Merges the given attributes into an existing {}",
            def.name
        ))
    };
    let delete = Field::new(
        format!("delete{}", def.name),
        TypeRef::named("Boolean"),
        move |ctx| {
            let db = db.clone();
            FieldFuture::new(async move {
                let result: async_graphql::Result<Option<FieldValue>> = async {
                    let atom = json_atom(&key_arg(&ctx, "id")?);
                    let caller = caller(&ctx)?;
                    let existed =
                        write(&db, move |tx| tx.delete_checked(&caller, def, atom)).await?;
                    Ok(Some(FieldValue::value(existed)))
                }
                .await;
                Ok(reported(&ctx, result))
            })
        },
    )
    .argument(InputValue::new("id", TypeRef::named_nn(key_ty)))
    .description(format!("Deletes a {}; whether it existed", def.name));
    vec![create, update, patch, delete]
}

fn subscription_field(db: Database, def: &'static TableDef) -> SubscriptionField {
    let event = format!("{}Event", def.name);
    let mut field = SubscriptionField::new(def.name, TypeRef::named_nn(event), move |ctx| {
        let db = db.clone();
        SubscriptionFieldFuture::new(async move {
            let pk = def.primary_key().name;
            let since = match ctx.args.get("since") {
                Some(v) if !v.is_null() => Some(v.u64().map_err(|_| {
                    gql_error(
                        "since is a change-log sequence number (>= 0)",
                        "invalid_query",
                    )
                })?),
                _ => None,
            };
            let target = match ctx.args.get(pk).filter(|v| !v.is_null()) {
                Some(v) => Target::Record(json_atom(&accessor_json(&v))),
                None => Target::Collection(args_query(def, &ctx)?.filter),
            };
            let caller = caller(&ctx)?;
            let read = def.access().read;
            let access = caller.access(def, "subscribe to", &read).map_err(error)?;
            let sub = db.subscribe_to(def, target, since).map_err(error)?;
            let feed = crate::http::realtime::Feed::new(sub, access, since.is_some());
            let stream = futures::stream::unfold(
                (Some(feed), std::collections::VecDeque::new()),
                move |(state, mut pending)| async move {
                    let mut feed = state?;
                    if pending.is_empty() {
                        match feed.next().await {
                            Ok(batch) => pending.extend(batch),
                            Err(e) => return Some((Err(error(e)), (None, pending))),
                        }
                    }
                    let m: crate::realtime::Message = pending.pop_front()?;
                    match serde_json::from_slice::<Map<String, Value>>(&m.data) {
                        Ok(map) => {
                            Some((Ok(FieldValue::owned_any(Event(map))), (Some(feed), pending)))
                        }
                        Err(e) => {
                            Some((Err(gql_error(&e.to_string(), "internal")), (None, pending)))
                        }
                    }
                },
            );
            Ok(stream)
        })
    });
    field = field.description(format!(
        "Changes of {} records: of one record (by its key), or of those matching equality \
         arguments and `filter`; the current state first, or the changes after `since`",
        def.name
    ));
    for f in def.fields {
        if f.ty.scalar.is_indexable() {
            field = field.argument(InputValue::new(
                f.name,
                TypeRef::named(scalar_name(f.ty.scalar)),
            ));
        }
    }
    if def.field("filter").is_none() {
        field = field.argument(InputValue::new("filter", TypeRef::named("String")));
    }
    if def.field("since").is_none() {
        field = field.argument(InputValue::new("since", TypeRef::named("Long")));
    }
    field
}

// ---- resolvers ---------------------------------------------------------------------------

/// The query the arguments of a table field describe.
fn args_query(def: &'static TableDef, ctx: &ResolverContext) -> async_graphql::Result<Query> {
    query_from_args(def, |name| ctx.args.get(name).map(|v| v.as_value()))
}

/// The query the arguments of a table field describe, given each argument's value by name
/// (as the resolver sees it, or as a cached plan holds it).
fn query_from_args<'v>(
    def: &'static TableDef,
    arg: impl Fn(&str) -> Option<&'v GqlValue>,
) -> async_graphql::Result<Query> {
    let mut query = match arg("filter").filter(|_| def.field("filter").is_none()) {
        Some(v) if *v != GqlValue::Null => {
            let text = arg_string(v)?;
            let is_attribute =
                |name: &str| def.field(name).is_some() || def.relationship(name).is_some();
            let mut q = parse_query(text, &is_attribute)
                .map_err(|e| gql_error(&format!("filter: {e}"), "invalid_query"))?;
            q.select = None;
            q
        }
        _ => Query::new(),
    };
    for f in def.fields {
        if let Some(v) = arg(f.name).filter(|_| f.ty.scalar.is_indexable()) {
            query = query.filter(Filter::Condition(Condition {
                path: vec![f.name.to_owned()],
                op: Op::Eq,
                value: Operand::Json(gql_json(v)),
                position: None,
            }));
        }
    }
    if def.field("sort").is_none()
        && let Some(v) = arg("sort").filter(|v| **v != GqlValue::Null)
    {
        query.sort.clear();
        match v {
            GqlValue::String(key) => query = query.sort_by(key),
            GqlValue::List(keys) => {
                for key in keys {
                    query = query.sort_by(arg_string(key)?);
                }
            }
            _ => return Err(async_graphql::Error::new("internal: not a list")),
        }
    }
    for name in ["limit", "offset"] {
        if def.field(name).is_some() {
            continue;
        }
        if let Some(v) = arg(name).filter(|v| **v != GqlValue::Null) {
            let n = match v {
                GqlValue::Number(n) => n.as_i64(),
                _ => None,
            }
            .ok_or_else(|| async_graphql::Error::new("internal: not an signed integer"))?;
            let n = usize::try_from(n)
                .map_err(|_| gql_error(&format!("{name} must not be negative"), "invalid_query"))?;
            if name == "limit" {
                query.limit = Some(n);
            } else {
                query.offset = n;
            }
        }
    }
    Ok(query)
}

fn arg_string(v: &GqlValue) -> async_graphql::Result<&str> {
    match v {
        GqlValue::String(s) => Ok(s),
        _ => Err(async_graphql::Error::new("internal: not a string")),
    }
}

async fn run_query(
    db: &Database,
    def: &'static TableDef,
    query: &Query,
    access: Access,
) -> async_graphql::Result<Vec<Row>> {
    read_stored(db, def, query, access)
        .await?
        .iter()
        .map(stored_row)
        .collect()
}

/// The records `query` selects that `access` lets the caller read, in order.
async fn read_stored(
    db: &Database,
    def: &'static TableDef,
    query: &Query,
    access: Access,
) -> async_graphql::Result<Vec<StoredRecord>> {
    if let Access::Owned(check) = access {
        // Only the caller's own records count, so offset and limit apply after the check.
        let unbounded = Query {
            limit: None,
            offset: 0,
            ..query.clone()
        };
        let db = db.clone();
        let rows =
            tokio::task::spawn_blocking(move || db.read(|tx| tx.query_stored(def, &unbounded)))
                .await
                .map_err(|e| error(Error::Io(std::io::Error::other(e.to_string()))))?
                .map_err(error)?;
        return Ok(rows
            .into_iter()
            .filter(|r| check.owns(r.json()))
            .skip(query.offset)
            .take(query.limit.unwrap_or(usize::MAX))
            .collect());
    }
    // A lookup by primary key alone is a point read.
    if let (Some(Filter::Condition(c)), true) = (&query.filter, query.sort.is_empty())
        && c.op == Op::Eq
        && c.path.len() == 1
        && c.path[0] == def.primary_key().name
        && let Operand::Json(v) = &c.value
        && query.offset == 0
        && query.limit != Some(0)
    {
        let found = db
            .read(|tx| tx.get_stored(def, json_atom(v)))
            .map_err(error)?;
        return Ok(found.into_iter().collect());
    }
    let inline = query
        .limit
        .is_some_and(|l| l.saturating_add(query.offset) <= INLINE_ROWS);
    if inline {
        db.read(|tx| tx.query_stored(def, query))
    } else {
        let db = db.clone();
        let query = query.clone();
        tokio::task::spawn_blocking(move || db.read(|tx| tx.query_stored(def, &query)))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
            .and_then(|r| r)
    }
    .map_err(error)
}

fn stored_row(r: &StoredRecord) -> async_graphql::Result<Row> {
    serde_json::from_slice(r.json())
        .map(|m| Row(Arc::new(m)))
        .map_err(|e| error(Error::Corrupt(format!("record: {e}"))))
}

fn record_row(r: &Record) -> Row {
    match r.to_value() {
        Value::Object(m) => Row(Arc::new(m)),
        _ => Row(Arc::new(Map::new())),
    }
}

async fn write<T: Send + 'static>(
    db: &Database,
    f: impl FnOnce(&mut crate::storage::WriteTx) -> crate::Result<T> + Send + 'static,
) -> async_graphql::Result<T> {
    db.write_async(f).await.map_err(error)
}

fn input_data(ctx: &ResolverContext) -> async_graphql::Result<Map<String, Value>> {
    let data = ctx.args.try_get("data")?.object()?;
    let mut out = Map::new();
    for (name, v) in data.iter() {
        out.insert(name.to_string(), accessor_json(&v));
    }
    Ok(out)
}

fn key_arg(ctx: &ResolverContext, name: &str) -> async_graphql::Result<Value> {
    Ok(accessor_json(&ctx.args.try_get(name)?))
}

/// The related rows of one parent, loaded in batches across parents.
async fn resolve_relationship<'a>(
    ctx: &ResolverContext<'a>,
    def: &'static TableDef,
    rel: &'static RelationshipDef,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    let Some(row) = ctx.parent_value.downcast_ref::<Row>() else {
        return Ok(None);
    };
    let loader = ctx.data::<DataLoader<RelLoader>>()?;
    // Related records are read under the target table's own permission.
    let access = read_access(ctx, (rel.target)())?;
    let visible = move |r: &Row| match &access {
        Access::All => true,
        Access::Owned(check) => serde_json::to_vec(&*r.0).is_ok_and(|json| check.owns(&json)),
    };
    match rel.kind {
        RelationshipKind::From { field } => {
            let Some(f) = local_field(def, field) else {
                return Ok(None);
            };
            let values: Vec<&Value> = match row.0.get(f.name) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(Value::Null) | None => Vec::new(),
                Some(v) => vec![v],
            };
            let keys: Vec<RelKey> = values
                .iter()
                .map(|v| RelKey {
                    table: def.name,
                    rel: rel.name,
                    key: v.to_string(),
                })
                .collect();
            let found = loader.load_many(keys.iter().cloned()).await?;
            let rows = keys
                .iter()
                .filter_map(|k| found.get(k))
                .flat_map(|rows| rows.iter().cloned())
                .filter(|r| visible(r));
            if f.ty.list {
                Ok(Some(FieldValue::list(rows.map(FieldValue::owned_any))))
            } else {
                Ok(rows.into_iter().next().map(FieldValue::owned_any))
            }
        }
        RelationshipKind::To { .. } => {
            let Some(key) = row.0.get(def.primary_key().name) else {
                return Ok(Some(FieldValue::list(Vec::<FieldValue>::new())));
            };
            let rows = loader
                .load_one(RelKey {
                    table: def.name,
                    rel: rel.name,
                    key: key.to_string(),
                })
                .await?
                .unwrap_or_default();
            Ok(Some(FieldValue::list(
                rows.into_iter()
                    .filter(|r| visible(r))
                    .map(FieldValue::owned_any),
            )))
        }
    }
}

/// A relationship of a table and one key value (JSON text) it is followed from.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RelKey {
    table: &'static str,
    rel: &'static str,
    key: String,
}

struct RelLoader {
    db: Database,
    tables: Arc<HashMap<&'static str, &'static TableDef>>,
    stats: Arc<RequestStats>,
}

impl Loader<RelKey> for RelLoader {
    type Value = Vec<Row>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[RelKey]) -> Result<HashMap<RelKey, Vec<Row>>, Self::Error> {
        let mut groups: HashMap<(&'static str, &'static str), Vec<RelKey>> = HashMap::new();
        for k in keys {
            groups.entry((k.table, k.rel)).or_default().push(k.clone());
        }
        let mut out = HashMap::new();
        for ((table, rel), keys) in groups {
            let Some(rel) = self.tables.get(table).and_then(|d| d.relationship(rel)) else {
                continue;
            };
            let target = (rel.target)();
            // The attribute of the target that holds the keys.
            let attr = match rel.kind {
                RelationshipKind::From { .. } => target.primary_key(),
                RelationshipKind::To { rust_field } => {
                    match target.field_by_rust_name(rust_field) {
                        Some(f) => f,
                        None => continue,
                    }
                }
            };
            let values: Vec<Value> = keys
                .iter()
                .filter_map(|k| serde_json::from_str(&k.key).ok())
                .collect();
            let filter = values
                .into_iter()
                .map(|v| {
                    Filter::Condition(Condition {
                        path: vec![attr.name.to_owned()],
                        op: Op::Eq,
                        value: Operand::Json(v),
                        position: None,
                    })
                })
                .reduce(|a, b| a | b);
            let Some(filter) = filter else { continue };
            let query = Query::new().filter(filter);
            let db = self.db.clone();
            let stored =
                tokio::task::spawn_blocking(move || db.read(|tx| tx.query_stored(target, &query)))
                    .await
                    .map_err(|e| error(Error::Io(std::io::Error::other(e.to_string()))))?
                    .map_err(error)?;
            self.stats.add(stored.len());
            let mut by_key: HashMap<String, Vec<Row>> = HashMap::new();
            for r in &stored {
                let row = stored_row(r)?;
                match row.0.get(attr.name) {
                    Some(Value::Array(items)) => {
                        for item in items {
                            by_key
                                .entry(item.to_string())
                                .or_default()
                                .push(row.clone());
                        }
                    }
                    Some(v) => by_key.entry(v.to_string()).or_default().push(row.clone()),
                    None => {}
                }
            }
            for k in keys {
                let rows = by_key.get(&k.key).cloned().unwrap_or_default();
                out.insert(k, rows);
            }
        }
        Ok(out)
    }
}

// ---- values and errors -------------------------------------------------------------------

fn to_gql(v: &Value) -> GqlValue {
    match v {
        Value::Null => GqlValue::Null,
        Value::Bool(b) => GqlValue::Boolean(*b),
        Value::Number(n) => GqlValue::Number(n.clone()),
        Value::String(s) => GqlValue::String(s.clone()),
        Value::Array(items) => GqlValue::List(items.iter().map(to_gql).collect()),
        Value::Object(m) => {
            GqlValue::Object(m.iter().map(|(k, v)| (Name::new(k), to_gql(v))).collect())
        }
    }
}

fn accessor_json(v: &ValueAccessor) -> Value {
    gql_json(v.as_value())
}

fn gql_json(v: &GqlValue) -> Value {
    v.clone().into_json().unwrap_or(Value::Null)
}

fn json_atom(v: &Value) -> Atom {
    match v {
        Value::String(s) => Atom::Str(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map(Atom::Int)
            .or_else(|| n.as_u64().map(Atom::from_u64))
            .unwrap_or(Atom::Null),
        _ => Atom::Null,
    }
}

/// A resolver's outcome: an error is reported with its path (the dynamic schema leaves
/// resolver errors without one) and the field becomes null.
fn reported<'a>(
    ctx: &ResolverContext,
    result: async_graphql::Result<Option<FieldValue<'a>>>,
) -> Option<FieldValue<'a>> {
    match result {
        Ok(v) => v,
        Err(e) => {
            ctx.add_error(ctx.set_error_path(e.into_server_error(ctx.item.pos)));
            None
        }
    }
}

/// The caller of the request (set by `GraphQl::prepare`).
fn caller(ctx: &ResolverContext) -> async_graphql::Result<Caller> {
    ctx.data::<Caller>()
        .cloned()
        .map_err(|_| gql_error("the request carries no caller", "internal"))
}

/// What the caller may read of `def`: an error (`unauthorized` / `forbidden`) when nothing.
fn read_access(ctx: &ResolverContext, def: &'static TableDef) -> async_graphql::Result<Access> {
    let read = def.access().read;
    caller(ctx)?.access(def, "read", &read).map_err(error)
}

fn gql_error(message: &str, code: &'static str) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// A runtime error as a GraphQL error with `extensions.code`; server faults are logged and
/// reported without detail.
fn error(e: Error) -> async_graphql::Error {
    let code = match &e {
        Error::Rejected(r) => r.code,
        Error::InvalidRecord { .. } => "invalid_record",
        Error::InvalidQuery { .. } | Error::QueryTooExpensive { .. } => "invalid_query",
        Error::UnknownAttribute { .. } => "unknown_attribute",
        Error::UnknownTable(_) | Error::NotFound { .. } => "not_found",
        Error::Conflict(_) => "conflict",
        Error::Denied {
            authenticated: false,
            ..
        } => "unauthorized",
        Error::Denied { .. } => "forbidden",
        other => {
            tracing::error!(error = %other, "GraphQL request failed");
            return gql_error(
                "the server failed to complete the request; see its log",
                "internal",
            );
        }
    };
    let message = match &e {
        Error::InvalidQuery {
            position: Some(p), ..
        } => format!("{e} (at position {p})"),
        _ => e.to_string(),
    };
    gql_error(&message, code)
}
