//! The REST resources, Harper's URL layout:
//! - `/T/` collection: GET/HEAD (query), POST (create), DELETE (delete matches), OPTIONS;
//! - `/T/<id>` record: GET/HEAD, PUT (create or replace), PATCH (merge), DELETE, OPTIONS;
//! - `/T/<id>.<attr>` one property (GET/HEAD);
//! - `/T` the table's description (or a collection query when a query string is given).
//!
//! Handlers return responses, never rejections, so no request falls through to another
//! route. Reads of single records run inline (fjall point reads take microseconds); writes
//! and collection queries run on the blocking pool.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::error::ApiError;
use super::negotiate::{self, CollectionEncoder, Format};
use crate::auth::{Access, Caller};
use crate::error::Error;
use crate::query::{self, Query, Select, parse_query};
use crate::record::{Record, json_kind};
use crate::schema::{RelationshipKind, Scalar, TableDef};
use crate::storage::key::Atom;
use crate::storage::{Database, Reader, StoredRecord};

/// Longest primary key accepted in a URL or body, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// Index entries plus records a collection query may read on the request's thread.
const INLINE_READS: u64 = 1024;
/// Tables above this many records refuse a sort on a non-indexed attribute with no condition.
pub const SORT_SCAN_LIMIT: u64 = 10_000;

const COLLECTION_ALLOW: &str = "GET, HEAD, POST, DELETE, OPTIONS";
const RECORD_ALLOW: &str = "GET, HEAD, PUT, PATCH, DELETE, OPTIONS";
const TABLE_ALLOW: &str = "GET, HEAD, OPTIONS";

/// Shared by every request.
pub struct ApiState {
    pub db: Database,
    pub auth: crate::auth::Auth,
    /// Exported tables by URL segment.
    pub tables: crate::schema::NameMap<&'static TableDef>,
    pub body_limit: usize,
    pub realtime: super::realtime::RealtimeConfig,
    pub limits: super::Limits,
    /// Open WebSocket and SSE subscriptions (see [`super::Limits`]).
    pub(crate) subscriptions: Arc<super::limits::SubscriptionCount>,
    /// Becomes true when the server shuts down: subscriptions end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// What a request addresses.
pub(crate) enum Target<'a> {
    Description(&'static TableDef),
    Collection(&'static TableDef),
    Record(&'static TableDef, &'a str),
    OpenApi,
}

pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub peer: Option<std::net::IpAddr>,
}

pub async fn handle<S, B>(state: Arc<ApiState>, req: Request, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    match dispatch(&state, &req, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

pub(crate) fn route<'a>(state: &ApiState, path: &'a str) -> Result<Target<'a>, ApiError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest == "openapi" {
        return Ok(Target::OpenApi);
    }
    let (table, tail) = match rest.split_once('/') {
        Some((t, tail)) => (t, Some(tail)),
        None => (rest, None),
    };
    let def = state
        .tables
        .get(table)
        .copied()
        .ok_or_else(|| ApiError::not_found(format!("no table is exported at /{table}/")))?;
    match tail {
        None => Ok(Target::Description(def)),
        Some("") => Ok(Target::Collection(def)),
        Some(id) if !id.contains('/') => Ok(Target::Record(def, id)),
        Some(_) => Err(ApiError::not_found(format!(
            "no resource at {path}: a record id containing '/' must be sent percent-encoded (%2F)"
        ))),
    }
}

async fn dispatch<S, B>(state: &Arc<ApiState>, req: &Request, body: S) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let target = route(state, &req.path)?;
    let who = state
        .auth
        .authenticate(&req.headers, &req.method, req.peer)
        .await?;
    let caller = state.auth.caller(who);
    let m = &req.method;
    if matches!(*m, Method::GET | Method::HEAD)
        && !matches!(target, Target::OpenApi)
        && negotiate::wants_event_stream(header_str(req, header::ACCEPT))
    {
        return super::realtime::sse(state, req, &caller);
    }
    match target {
        Target::OpenApi => match *m {
            Method::GET | Method::HEAD => {
                let mut defs: Vec<&'static TableDef> = state.tables.values().copied().collect();
                defs.sort_by_key(|d| d.name);
                let host = req
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1");
                let doc = super::openapi::document(&defs, &format!("http://{host}"));
                Ok(json_response(
                    StatusCode::OK,
                    doc.to_string().into_bytes(),
                    m,
                ))
            }
            _ => Err(ApiError::method_not_allowed(
                m.as_str(),
                "/openapi",
                TABLE_ALLOW,
            )),
        },
        Target::Description(def) => match *m {
            Method::GET | Method::HEAD if !req.query.is_empty() => {
                let access = caller.access(def, "read", &def.access().read)?;
                get_collection(state, def, req, access).await
            }
            Method::GET | Method::HEAD => {
                caller.access(def, "read", &def.access().read)?;
                Ok(json_response(
                    StatusCode::OK,
                    describe(state, def).to_string().into_bytes(),
                    m,
                ))
            }
            Method::OPTIONS => Ok(options(TABLE_ALLOW)),
            _ => Err(ApiError::method_not_allowed(
                m.as_str(),
                &format!("/{} (the table description)", export(def)),
                TABLE_ALLOW,
            )),
        },
        Target::Collection(def) => match *m {
            Method::GET | Method::HEAD => {
                let access = caller.access(def, "read", &def.access().read)?;
                get_collection(state, def, req, access).await
            }
            Method::POST => {
                caller.access(def, "create", &def.access().create)?;
                post(state, def, req, body, caller).await
            }
            Method::DELETE => delete_matching(state, def, req, caller).await,
            Method::OPTIONS => Ok(options(COLLECTION_ALLOW)),
            _ => Err(ApiError::method_not_allowed(
                m.as_str(),
                &format!(
                    "/{}/ (a collection; address a record as /{}/<id>)",
                    export(def),
                    export(def)
                ),
                COLLECTION_ALLOW,
            )),
        },
        Target::Record(def, raw_id) => {
            let id = decode_id(raw_id)?;
            match *m {
                Method::GET | Method::HEAD => {
                    let access = caller.access(def, "read", &def.access().read)?;
                    get_record(state, def, &id, req, &access, &caller)
                }
                Method::PUT => {
                    // Create or update: refuse early (before reading the body) only when
                    // neither is granted; the transaction decides which applies.
                    if caller.access(def, "create", &def.access().create).is_err() {
                        caller.access(def, "update", &def.access().update)?;
                    }
                    put(state, def, &id, req, body, caller).await
                }
                Method::PATCH => {
                    caller.access(def, "update", &def.access().update)?;
                    patch(state, def, &id, req, body, caller).await
                }
                Method::DELETE => {
                    caller.access(def, "delete", &def.access().delete)?;
                    delete_record(state, def, &id, caller).await
                }
                Method::OPTIONS => Ok(options(RECORD_ALLOW)),
                _ => Err(ApiError::method_not_allowed(
                    m.as_str(),
                    &format!("a record (create records with POST /{}/)", export(def)),
                    RECORD_ALLOW,
                )),
            }
        }
    }
}

fn export(def: &TableDef) -> &'static str {
    def.export_name().unwrap_or(def.name)
}

/// A URL id, percent-decoded (borrowed from `raw` when it holds no escapes).
pub(crate) fn decode_id(raw: &str) -> Result<std::borrow::Cow<'_, str>, ApiError> {
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_id",
                "the record id is not valid UTF-8 once percent-decoded",
            )
        })?;
    if id.len() > MAX_ID_BYTES {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!(
                "record ids are limited to {MAX_ID_BYTES} bytes; this one has {}",
                id.len()
            ),
        ));
    }
    Ok(id)
}

/// The primary-key value of a URL id, typed by the table's key.
pub(crate) fn key_value(def: &'static TableDef, id: &str) -> Result<Value, ApiError> {
    match def.primary_key().ty.scalar {
        Scalar::Int { .. } => {
            let n: Option<Value> = id
                .parse::<i64>()
                .ok()
                .map(Value::from)
                .or_else(|| id.parse::<u64>().ok().map(Value::from));
            n.ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_id",
                    format!("{} ids are integers; {id:?} is not one", def.name),
                )
            })
        }
        _ => Ok(Value::String(id.to_owned())),
    }
}

/// The primary key of a URL id, as the storage layer takes it.
pub(crate) fn key_atom(def: &'static TableDef, id: &str) -> Result<Atom, ApiError> {
    match def.primary_key().ty.scalar {
        Scalar::Int { .. } => Ok(json_atom(&key_value(def, id)?)),
        _ => Ok(Atom::Str(id.to_owned())),
    }
}

fn header_str(req: &Request, name: header::HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn response_format(req: &Request) -> Result<Format, ApiError> {
    negotiate::response_format(header_str(req, header::ACCEPT))
        .map_err(|e| ApiError::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", e.to_string()))
}

fn json_response(status: StatusCode, body: Vec<u8>, method: &Method) -> Response {
    bytes_response(status, Format::Json, body, method)
}

fn bytes_response(status: StatusCode, format: Format, body: Vec<u8>, method: &Method) -> Response {
    with_headers(status, body, method, Headers::Plain(format))
}

/// A `200` whose body is in `format`, chosen from the request's `Accept`: it says so
/// (`Vary: Accept`), and carries `tag` when it is one record.
fn negotiated_response(
    format: Format,
    body: Vec<u8>,
    method: &Method,
    tag: Option<&ETag>,
) -> Response {
    let mut r = with_headers(
        StatusCode::OK,
        body,
        method,
        Headers::Negotiated(format, tag.is_some()),
    );
    if let Some(tag) = tag {
        // Replaces the template's placeholder in place.
        r.headers_mut().insert(header::ETAG, tag.header());
    }
    r
}

/// Which headers a response with a body starts from.
#[derive(Clone, Copy)]
enum Headers {
    Plain(Format),
    /// With `Vary: Accept`, and (when true) an entity tag to replace.
    Negotiated(Format, bool),
}

fn with_headers(status: StatusCode, body: Vec<u8>, method: &Method, headers: Headers) -> Response {
    let len = body.len();
    let mut r = if *method == Method::HEAD {
        Response::new(Vec::new().into())
    } else {
        Response::new(body.into())
    };
    *r.status_mut() = status;
    *r.headers_mut() = template_headers(headers);
    if *method == Method::HEAD {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    r
}

/// A copy of the headers `headers` names: content type (and, for CSV, a download name), the
/// security headers, and for negotiated bodies `Vary: Accept` and perhaps an `ETag`
/// placeholder. Copied from maps built once: a copy costs less than inserting each header,
/// and it holds every header of the response, so none grows the map.
fn template_headers(headers: Headers) -> HeaderMap {
    fn build(format: Format, vary: bool, tag: bool) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(8);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        if format == Format::Csv {
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"data.csv\""),
            );
        }
        if vary {
            h.insert(header::VARY, HeaderValue::from_static("Accept"));
        }
        if tag {
            h.insert(header::ETAG, HeaderValue::from_static("\"0\""));
        }
        super::add_security_headers(&mut h);
        h
    }
    // [format][plain, negotiated, negotiated with a tag]
    static TEMPLATES: std::sync::LazyLock<[[HeaderMap; 3]; 4]> = std::sync::LazyLock::new(|| {
        Format::ALL.map(|f| {
            [
                build(f, false, false),
                build(f, true, false),
                build(f, true, true),
            ]
        })
    });
    let (format, kind) = match headers {
        Headers::Plain(f) => (f, 0),
        Headers::Negotiated(f, tag) => (f, 1 + usize::from(tag)),
    };
    let at = Format::ALL.iter().position(|f| *f == format).unwrap_or(0);
    TEMPLATES[at][kind].clone()
}

pub(crate) fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Vec::new().into());
    *r.status_mut() = status;
    r
}

fn options(allow: &'static str) -> Response {
    let mut r = empty(StatusCode::NO_CONTENT);
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// An entity tag: the record's version in lowercase hex, quoted. Written into a stack
/// buffer (this runs on every read).
struct ETag {
    buf: [u8; 18],
    len: usize,
}

impl ETag {
    fn new(version: u64) -> ETag {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digits = (16 - (version.leading_zeros() / 4) as usize).max(1);
        let mut buf = [b'"'; 18];
        for i in 0..digits {
            buf[digits - i] = HEX[((version >> (4 * i)) & 0xf) as usize];
        }
        ETag {
            buf,
            len: digits + 2,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn header(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.buf[..self.len]).unwrap_or(HeaderValue::from_static("\"0\""))
    }
}

fn not_modified(req: &Request, tag: &[u8]) -> bool {
    header_str(req, header::IF_NONE_MATCH).is_some_and(|v| {
        v.split(',').map(str::trim).any(|t| {
            t == "*" || t.as_bytes() == tag || t.strip_prefix("W/").map(str::as_bytes) == Some(tag)
        })
    })
}

// ---- reads -------------------------------------------------------------------------------

fn describe(state: &ApiState, def: &'static TableDef) -> Value {
    let mut attributes: Vec<Value> = def
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut a = json!({
                "name": f.name,
                "type": f.ty.scalar.type_name(),
                "indexed": f.indexed,
                "nullable": f.ty.optional,
                "list": f.ty.list,
            });
            if i == def.primary_key {
                a["isPrimaryKey"] = Value::Bool(true);
            }
            a
        })
        .collect();
    for rel in def.relationships {
        let target = (rel.target)();
        let relationship = match rel.kind {
            RelationshipKind::From { field } => json!({ "from": field }),
            RelationshipKind::To { rust_field } => {
                json!({ "to": target.field_by_rust_name(rust_field).map_or(rust_field, |f| f.name) })
            }
        };
        attributes
            .push(json!({ "name": rel.name, "type": target.name, "relationship": relationship }));
    }
    json!({
        "name": def.name,
        "records": "./",
        "primaryKey": def.primary_key().name,
        "recordCount": state.db.approximate_len(def).unwrap_or(0),
        "attributes": attributes,
    })
}

/// Splits `/T/<id>.<suffix>` when the whole id names no record: a property, or a format.
enum RecordPath {
    Whole,
    Property(String, String),
    Formatted(String, Format),
}

fn split_suffix(def: &'static TableDef, id: &str) -> Option<RecordPath> {
    let (base, suffix) = id.rsplit_once('.')?;
    if def.field(suffix).is_some() || def.relationship(suffix).is_some() {
        return Some(RecordPath::Property(base.to_owned(), suffix.to_owned()));
    }
    let format = match suffix {
        "json" => Format::Json,
        "cbor" => Format::Cbor,
        "msgpack" => Format::MsgPack,
        "csv" => Format::Csv,
        _ => return None,
    };
    Some(RecordPath::Formatted(base.to_owned(), format))
}

pub(crate) fn parse(def: &'static TableDef, raw: &str) -> Result<Query, ApiError> {
    let is_attribute = |name: &str| def.field(name).is_some() || def.relationship(name).is_some();
    parse_query(raw, &is_attribute)
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}

fn get_record(
    state: &ApiState,
    def: &'static TableDef,
    id: &str,
    req: &Request,
    access: &Access,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let mut format = response_format(req)?;
    let query = if req.query.is_empty() {
        Query::default()
    } else {
        parse(def, &req.query)?
    };
    if query.filter.is_some() || !query.sort.is_empty() || query.limit.is_some() || query.offset > 0
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "a record URL takes only select(...); query the collection /{}/?... instead",
                export(def)
            ),
        ));
    }
    let db = &state.db;
    // An id that is no key of this table may still be `<id>.<property>` or `<id>.<format>`.
    let (found, bad_key) = match key_atom(def, id) {
        Ok(k) => (db.get_latest(def, k)?, None),
        Err(e) => (None, Some(e)),
    };
    let (row, path) = match found {
        Some(row) => (row, RecordPath::Whole),
        None => {
            let Some(path) = split_suffix(def, id) else {
                if let Some(e) = bad_key {
                    return Err(e);
                }
                return Err(ApiError::not_found(format!(
                    "{} {id} does not exist",
                    def.name
                )));
            };
            let base = match &path {
                RecordPath::Property(b, _) | RecordPath::Formatted(b, _) => b.clone(),
                RecordPath::Whole => id.to_owned(),
            };
            match db.get_latest(def, key_atom(def, &base)?)? {
                Some(row) => (row, path),
                None => {
                    return Err(ApiError::not_found(format!(
                        "{} {base} does not exist",
                        def.name
                    )));
                }
            }
        }
    };
    if !access.allows(row.json()) {
        return Err(crate::auth::denied(
            &caller.who,
            format!(
                "{} may not read this {} record: it belongs to another owner",
                caller.who.describe(),
                def.name
            ),
        )
        .into());
    }
    let tag = ETag::new(row.version());
    if not_modified(req, tag.as_bytes()) {
        return Ok(empty(StatusCode::NOT_MODIFIED));
    }
    let body = match (&path, &query.select) {
        (RecordPath::Property(_, attr), _) => {
            let sel = Select {
                shape: query::SelectShape::Values,
                items: vec![query::SelectItem::Attribute(attr.clone())],
            };
            let v =
                db.read(|tx| tx.query_json_rows(def, std::slice::from_ref(&row), Some(&sel)))?;
            negotiate::encode_value(format, v.first().unwrap_or(&Value::Null))
        }
        (_, Some(select)) => {
            if let RecordPath::Formatted(_, f) = path {
                format = f;
            }
            let v =
                db.read(|tx| tx.query_json_rows(def, std::slice::from_ref(&row), Some(select)))?;
            negotiate::encode_value(format, v.first().unwrap_or(&Value::Null))
        }
        (_, None) => {
            if let RecordPath::Formatted(_, f) = path {
                format = f;
            }
            match format {
                Format::Json => row.json().to_vec(),
                other => negotiate::encode_value(other, &row.to_value()?),
            }
        }
    };
    Ok(negotiated_response(format, body, &req.method, Some(&tag)))
}

pub(crate) fn json_atom(v: &Value) -> Atom {
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

/// Refuses sorts that would read and sort a whole large table in memory.
fn check_sort_cost(state: &ApiState, def: &'static TableDef, q: &Query) -> Result<(), ApiError> {
    let Some(first) = q.sort.first() else {
        return Ok(());
    };
    let Some(field) = def.field(&first.attribute) else {
        return Ok(());
    };
    if field.indexed || q.filter.is_some() {
        return Ok(());
    }
    let len = state.db.approximate_len(def)?;
    if len > SORT_SCAN_LIMIT {
        return Err(ApiError::bad_request(
            "query_too_expensive",
            format!(
                "sorting {} ({len} records) by {} would read and sort every record: {} is not indexed. \
                 Add a condition on an indexed attribute, sort by an indexed attribute, or declare {} #[indexed]",
                def.name, field.name, field.name, field.name
            ),
        ));
    }
    Ok(())
}

enum Chunk {
    Data(Bytes),
    Fail(ApiError),
}

/// Size at which a streaming response hands a chunk to the connection.
const CHUNK: usize = 32 * 1024;

async fn get_collection(
    state: &Arc<ApiState>,
    def: &'static TableDef,
    req: &Request,
    access: Access,
) -> Result<Response, ApiError> {
    let format = response_format(req)?;
    let query = parse(def, &req.query)?;
    if let Some(sel) = &query.select {
        query::check_select(def, sel)?;
    }
    check_sort_cost(state, def, &query)?;
    if req.method == Method::HEAD {
        return Ok(negotiated_response(format, Vec::new(), &req.method, None));
    }
    // With `max_rows`, a query that may return more is run buffered with one row over the
    // cap, and refused when that row shows up (before anything is sent).
    let capped = state
        .limits
        .max_rows
        .filter(|&max| query.limit.is_none_or(|l| l > max));
    let watch = super::limits::RowWatch::new(&state.limits, capped);
    if let Access::Owned(check) = access {
        return owned_collection(state, def, query, format, check, watch).await;
    }
    if let Some(max) = capped {
        let query = Query {
            limit: Some(max.saturating_add(1)),
            ..query
        };
        return buffered_collection(state, def, query, format, watch).await;
    }
    if query::budgetable(&query)
        && let Some(body) = small_collection(state, def, &query, format, watch.clone())?
    {
        return Ok(negotiated_response(format, body, &Method::GET, None));
    }
    if query
        .limit
        .is_some_and(|l| l.saturating_add(query.offset) <= BUFFERED_ROWS)
    {
        return buffered_collection(state, def, query, format, watch).await;
    }
    let mut watch = watch;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let db = state.db.clone();
    tokio::task::spawn_blocking(move || {
        let failed = tx.clone();
        let outcome = db.read(|rtx| {
            let mut encoder = CollectionEncoder::new(format);
            let mut buf = Vec::with_capacity(CHUNK + 4096);
            encoder.begin(&mut buf);
            let mut shaper = query
                .select
                .as_ref()
                .map(|s| query::Shaper::new(def, s))
                .transpose()?;
            let mut gone = false;
            rtx.query_each(def, &query, &mut |row: StoredRecord| {
                if !watch.admit() {
                    return Ok(false);
                }
                encode_row(rtx, def, shaper.as_mut(), &row, &mut encoder, &mut buf)?;
                if buf.len() >= CHUNK {
                    let chunk = Bytes::from(std::mem::replace(
                        &mut buf,
                        Vec::with_capacity(CHUNK + 4096),
                    ));
                    if tx.blocking_send(Chunk::Data(chunk)).is_err() {
                        gone = true; // the client went away: stop reading
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            if let Some(e) = watch.error() {
                // Before the first chunk: a 400. After it: the body is aborted, so the
                // client sees it incomplete.
                let _ = failed.blocking_send(Chunk::Fail(e));
            } else if !gone {
                encoder.finish(&mut buf);
                let _ = tx.blocking_send(Chunk::Data(Bytes::from(buf)));
            }
            Ok::<_, Error>(())
        });
        if let Err(e) = outcome {
            let _ = failed.blocking_send(Chunk::Fail(e.into()));
        }
    });
    // Errors found before the first chunk (planning, unknown attributes) get a proper status.
    let first = match rx.recv().await {
        Some(Chunk::Data(b)) => b,
        Some(Chunk::Fail(e)) => return Err(e),
        None => {
            return Err(ApiError::from(Error::Corrupt(
                "query task ended without output".into(),
            )));
        }
    };
    let body = ChunkStream {
        first: Some(first),
        rx,
    };
    let mut r = warp::reply::Reply::into_response(warp::reply::stream(body));
    *r.status_mut() = StatusCode::OK;
    *r.headers_mut() = template_headers(Headers::Negotiated(format, false));
    Ok(r)
}

/// Appends one result row: the stored JSON as is, or its `select` shape.
fn encode_row(
    rtx: &crate::storage::ReadTx,
    def: &'static TableDef,
    select: Option<&mut query::Shaper<'_>>,
    row: &StoredRecord,
    encoder: &mut CollectionEncoder,
    buf: &mut Vec<u8>,
) -> crate::Result<()> {
    match select {
        None => encoder.push_json_bytes(row.json(), buf),
        Some(shaper) => {
            if encoder.format() == Format::Json
                && let Some(json) = shaper.shape_json(row)?
            {
                encoder.push_json_bytes(json, buf);
                return Ok(());
            }
            let v = shaper.shape(rtx, def, row)?;
            encoder.push_value(&v, buf);
        }
    }
    Ok(())
}

/// Pages of at most this many rows are answered with one buffered body (no streaming).
const BUFFERED_ROWS: usize = 1000;

/// A small page: encoded whole on the blocking pool, sent with a Content-Length.
/// Answers a query on the request's own thread when it needs at most [`INLINE_READS`] index
/// entries and records (in-memory fjall reads take microseconds; a hop to the blocking pool
/// costs more than such a query). `None` when it needs more: it then runs on the pool.
fn small_collection(
    state: &ApiState,
    def: &'static TableDef,
    query: &Query,
    format: Format,
    mut watch: super::limits::RowWatch,
) -> Result<Option<Vec<u8>>, ApiError> {
    let body = state
        .db
        .read(|rtx| encode_collection(rtx, def, query, format, Some(INLINE_READS), &mut watch))?;
    match watch.error() {
        Some(e) => Err(e),
        None => Ok(body),
    }
}

async fn buffered_collection(
    state: &Arc<ApiState>,
    def: &'static TableDef,
    query: Query,
    format: Format,
    mut watch: super::limits::RowWatch,
) -> Result<Response, ApiError> {
    let db = state.db.clone();
    let (body, watch) = tokio::task::spawn_blocking(move || {
        let body = db.read(|rtx| encode_collection(rtx, def, &query, format, None, &mut watch));
        (body, watch)
    })
    .await
    .map_err(|e| ApiError::from(Error::Io(std::io::Error::other(e.to_string()))))?;
    if let Some(e) = watch.error() {
        return Err(e);
    }
    let body = body?.unwrap_or_default();
    Ok(negotiated_response(format, body, &Method::GET, None))
}

/// A query on a table the caller reads only its own records of: the matches it owns, with
/// offset and limit applied to those (buffered; such tables hold per-owner data).
async fn owned_collection(
    state: &Arc<ApiState>,
    def: &'static TableDef,
    query: Query,
    format: Format,
    check: crate::auth::OwnedCheck,
    mut watch: super::limits::RowWatch,
) -> Result<Response, ApiError> {
    let db = state.db.clone();
    let (body, watch) = tokio::task::spawn_blocking(move || {
        let body = db.read(|rtx| {
            let unbounded = Query {
                limit: None,
                offset: 0,
                ..query.clone()
            };
            let mut encoder = CollectionEncoder::new(format);
            let mut buf = Vec::with_capacity(8 * 1024);
            encoder.begin(&mut buf);
            let mut shaper = query
                .select
                .as_ref()
                .map(|s| query::Shaper::new(def, s))
                .transpose()?;
            let (mut skip, mut left) = (query.offset, query.limit.unwrap_or(usize::MAX));
            rtx.query_each(def, &unbounded, &mut |row: StoredRecord| {
                if left == 0 {
                    return Ok(false);
                }
                if Instant::now() >= watch.deadline {
                    watch.stopped = Some(super::limits::Stop::Timeout);
                    return Ok(false);
                }
                if !check.owns(row.json()) {
                    return Ok(true);
                }
                if skip > 0 {
                    skip -= 1;
                    return Ok(true);
                }
                if !watch.admit() {
                    return Ok(false);
                }
                left -= 1;
                encode_row(rtx, def, shaper.as_mut(), &row, &mut encoder, &mut buf)?;
                Ok(true)
            })?;
            encoder.finish(&mut buf);
            Ok::<_, Error>(buf)
        });
        (body, watch)
    })
    .await
    .map_err(|e| ApiError::from(Error::Io(std::io::Error::other(e.to_string()))))?;
    if let Some(e) = watch.error() {
        return Err(e);
    }
    let body = body?;
    Ok(negotiated_response(format, body, &Method::GET, None))
}

/// The whole answer as one body; `None` when it needs more than `budget` reads.
fn encode_collection(
    rtx: &crate::storage::ReadTx,
    def: &'static TableDef,
    query: &Query,
    format: Format,
    budget: Option<u64>,
    watch: &mut super::limits::RowWatch,
) -> crate::Result<Option<Vec<u8>>> {
    let mut encoder = CollectionEncoder::new(format);
    // Room for a page of ~100 records without regrowing (copying) the buffer.
    let mut buf = Vec::with_capacity(32 * 1024);
    encoder.begin(&mut buf);
    let mut shaper = query
        .select
        .as_ref()
        .map(|s| query::Shaper::new(def, s))
        .transpose()?;
    let (_, over_budget) = query::run_bounded(rtx, def, query, budget, &mut |row| {
        if !watch.admit() {
            return Ok(false);
        }
        encode_row(rtx, def, shaper.as_mut(), &row, &mut encoder, &mut buf)?;
        Ok(true)
    })?;
    if over_budget {
        return Ok(None);
    }
    encoder.finish(&mut buf);
    Ok(Some(buf))
}

/// The response body of a streamed collection: the first chunk, then whatever the query task
/// sends. A failure after the headers left aborts the body, so the client sees it incomplete.
struct ChunkStream {
    first: Option<Bytes>,
    rx: tokio::sync::mpsc::Receiver<Chunk>,
}

impl Stream for ChunkStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Chunk::Data(b))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(Some(Chunk::Fail(e))) => {
                Poll::Ready(Some(Err(std::io::Error::other(e.message))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

// ---- writes ------------------------------------------------------------------------------

async fn read_body<S, B>(state: &ApiState, req: &Request, mut body: S) -> Result<Value, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is over the limit of {} bytes",
                state.body_limit
            ),
        )
    };
    let format = negotiate::request_format(header_str(req, header::CONTENT_TYPE)).map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            e.to_string(),
        )
    })?;
    if let Some(len) = header_str(req, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok())
        && len > state.body_limit as u64
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::bad_request("invalid_body", format!("reading the body failed: {e}"))
        })?;
        if bytes.len() + chunk.remaining() > state.body_limit {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            bytes.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    negotiate::decode_body(format, &bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
}

fn into_object(def: &'static TableDef, v: Value) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::bad_request(
            "invalid_record",
            format!(
                "a {} record must be a JSON object, not {}",
                def.name,
                json_kind(&other)
            ),
        )),
    }
}

/// Checks that a body's primary key (if any) agrees with the URL's.
fn check_body_key(
    def: &'static TableDef,
    body: &Map<String, Value>,
    url_key: &Value,
) -> Result<(), ApiError> {
    let pk = def.primary_key().name;
    match body.get(pk) {
        None => Ok(()),
        Some(v) if v == url_key => Ok(()),
        Some(Value::String(s)) if url_key.as_str() == Some(s) => Ok(()),
        Some(v) => Err(ApiError::bad_request(
            "invalid_record",
            format!("the body's {pk} {v} contradicts the URL's {pk} {url_key}"),
        )),
    }
}

async fn blocking_write<T: Send + 'static>(
    db: &Database,
    f: impl FnOnce(&mut crate::storage::WriteTx) -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    db.write_async(f).await.map_err(ApiError::from)
}

async fn put<S, B>(
    state: &ApiState,
    def: &'static TableDef,
    id: &str,
    req: &Request,
    body: S,
    caller: Caller,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let key = key_value(def, id)?;
    let mut object = into_object(def, read_body(state, req, body).await?)?;
    check_body_key(def, &object, &key)?;
    object.insert(def.primary_key().name.to_owned(), key);
    let record = Record::from_object(def, object)?;
    blocking_write(&state.db, move |tx| tx.put_checked(&caller, record)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn patch<S, B>(
    state: &ApiState,
    def: &'static TableDef,
    id: &str,
    req: &Request,
    body: S,
    caller: Caller,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let key = key_value(def, id)?;
    let object = into_object(def, read_body(state, req, body).await?)?;
    check_body_key(def, &object, &key)?;
    let atom = json_atom(&key);
    blocking_write(&state.db, move |tx| {
        tx.patch_checked(&caller, def, atom, object).map(|_| ())
    })
    .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn post<S, B>(
    state: &ApiState,
    def: &'static TableDef,
    req: &Request,
    body: S,
    caller: Caller,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let mut object = into_object(def, read_body(state, req, body).await?)?;
    let pk = def.primary_key();
    if object.get(pk.name).is_none_or(Value::is_null) {
        match pk.ty.scalar {
            Scalar::Id | Scalar::String => {
                object.insert(
                    pk.name.to_owned(),
                    Value::String(crate::types::Id::generate().into_string()),
                );
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_record",
                    format!("{} needs its integer {} in the body", def.name, pk.name),
                ));
            }
        }
    }
    let record = Record::from_object(def, object)?;
    let id = record.key_atom()?.to_string();
    if id.len() > MAX_ID_BYTES {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!("record ids are limited to {MAX_ID_BYTES} bytes"),
        ));
    }
    blocking_write(&state.db, move |tx| tx.insert_checked(&caller, record)).await?;
    let body = serde_json::to_vec(&id).unwrap_or_default();
    let mut r = json_response(StatusCode::CREATED, body, &req.method);
    let location = super::encode_path_segment(&id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

async fn delete_record(
    state: &ApiState,
    def: &'static TableDef,
    id: &str,
    caller: Caller,
) -> Result<Response, ApiError> {
    let atom = match key_value(def, id) {
        Ok(k) => json_atom(&k),
        // An integer table has no record under a non-integer id: deleting it is a no-op.
        Err(_) => {
            return Ok(json_response(
                StatusCode::OK,
                b"true".to_vec(),
                &Method::DELETE,
            ));
        }
    };
    blocking_write(&state.db, move |tx| tx.delete_checked(&caller, def, atom)).await?;
    Ok(json_response(
        StatusCode::OK,
        b"true".to_vec(),
        &Method::DELETE,
    ))
}

async fn delete_matching(
    state: &ApiState,
    def: &'static TableDef,
    req: &Request,
    caller: Caller,
) -> Result<Response, ApiError> {
    if req.query.is_empty() && !caller.who.is_admin() {
        return Err(crate::auth::denied(
            &caller.who,
            format!(
                "{} may not delete every {} record: that needs admin",
                caller.who.describe(),
                def.name
            ),
        )
        .into());
    }
    caller.access(def, "delete", &def.access().delete)?;
    let query = parse(def, &req.query)?;
    // A query string that names no condition (`?&&&`, `?limit(5)`) is almost surely a mistake;
    // deleting every record takes the bare collection URL.
    if !req.query.is_empty() && query.filter.is_none() {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "this query names no condition, so it would delete every record; \
                 send DELETE /{}/ without a query string to do that",
                export(def)
            ),
        ));
    }
    if let Some(sel) = &query.select {
        query::check_select(def, sel)?;
    }
    let query = Query {
        select: None,
        ..query
    };
    blocking_write(&state.db, move |tx| {
        tx.delete_where_checked(&caller, def, &query)
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        b"true".to_vec(),
        &Method::DELETE,
    ))
}

#[cfg(test)]
mod tests {
    use super::ETag;

    #[test]
    fn etags_are_quoted_lowercase_hex() {
        for v in [0u64, 1, 0xf, 0x10, 0x6610b8518f89a, u64::MAX] {
            let tag = ETag::new(v);
            assert_eq!(tag.as_bytes(), format!("\"{v:x}\"").as_bytes());
            assert_eq!(tag.header().as_bytes(), tag.as_bytes());
        }
    }
}
