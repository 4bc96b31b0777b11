//! The storefront's own HTTP endpoints, tried before the generic REST API:
//!
//! - `POST /CartItem/` goes through [`shop::add_in`]: 201 with the cart item's id (a new one,
//!   or the existing one when the add merges), 409 when the stock does not cover it.
//! - `POST /Cart/<sessionId>/checkout` runs [`shop::checkout_in`]: 200 with the order.
//! - `GET /openapi` is the generated document plus the checkout operation.
//!
//! Every other request is rejected here (not answered), so it reaches the REST API.
//! Errors are the project's JSON shape `{"error": "<kind>", "message": "..."}`; stock errors
//! add `productId`, `requested` and `available`.

use futures::StreamExt;
use std::net::SocketAddr;

use harper::http::ApiError;
use harper::http::negotiate;
use harper::prelude::*;
use harper::schema::TableDef;
use harper::{Auth, Record};
use serde_json::{Map, Value, json};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;
use warp::{Buf, Filter, Rejection};

use crate::schema::CartItem;
use crate::shop::{self, AddToCart, ShopError};

/// Largest add-to-cart body accepted (a cart item is a few dozen bytes).
pub const CART_BODY_LIMIT: usize = 64 * 1024;
const CHECKOUT_ALLOW: &str = "POST, OPTIONS";

/// The storefront's server without its web page: the three tables, the stock rule, cart
/// ownership and the shop's own endpoints.
pub fn storefront_app(db: Database) -> harper::Result<App> {
    let app = App::new(db.clone())
        .table::<crate::schema::Product>()
        .table::<crate::schema::Category>()
        .table::<CartItem>()
        // The stock rules hold for cart items written through REST and GraphQL too.
        .validate::<CartItem>(shop::cart_item_rule)
        .owner::<CartItem>(shop::cart_owner);
    let auth = app.auth()?;
    Ok(app.route(routes(
        db,
        auth,
        vec![
            crate::schema::Product::DEF,
            crate::schema::Category::DEF,
            CartItem::DEF,
        ],
    )))
}

/// All of the storefront's own routes. `tables` are documented in `/openapi`.
pub fn routes(
    db: Database,
    auth: Auth,
    tables: Vec<&'static TableDef>,
) -> BoxedFilter<(Response,)> {
    add_to_cart(db.clone(), auth.clone())
        .or(checkout(db, auth))
        .unify()
        .or(openapi(tables))
        .unify()
        .boxed()
}

/// Passes requests whose path is exactly `path` (no trailing-slash leniency), rejects others.
fn exact_path(path: &'static str) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(move |p: warp::path::FullPath| async move {
            if p.as_str() == path {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// `POST /CartItem/` (only that: other methods and paths fall through to the REST API).
pub fn add_to_cart(db: Database, auth: Auth) -> BoxedFilter<(Response,)> {
    exact_path("/CartItem/")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(warp::body::stream())
        .then(move |headers: HeaderMap, peer: Option<SocketAddr>, body| {
            let db = db.clone();
            let auth = auth.clone();
            async move {
                let who = match caller(&auth, &headers, &Method::POST, peer).await {
                    Ok(who) => who,
                    Err(r) => return r,
                };
                match post_cart_item(db, who, headers, Box::pin(body)).await {
                    Ok(r) | Err(r) => r,
                }
            }
        })
        .boxed()
}

/// Who the request acts for; carts need a signed-in user or a guest session.
async fn caller(
    auth: &Auth,
    headers: &HeaderMap,
    method: &Method,
    peer: Option<SocketAddr>,
) -> Result<Principal, Response> {
    let who = auth
        .authenticate(headers, method, peer.map(|p| p.ip()))
        .await
        .map_err(|f| ApiError::from(f).into_response())?;
    if !who.is_authenticated() {
        return Err(ApiError::from(harper::Error::Denied {
            authenticated: false,
            message: "carts belong to a session: get one with POST /auth/session and send \
                      Authorization: Bearer <accessToken>"
                .into(),
        })
        .into_response());
    }
    Ok(who)
}

/// Refuses to act on another session's cart (admins may act on any).
fn own_session(who: &Principal, session: &str) -> Result<(), ApiError> {
    if who.is_admin() || who.id() == Some(session) {
        return Ok(());
    }
    Err(ApiError::from(harper::Error::Denied {
        authenticated: true,
        message: format!(
            "{} may not use the cart of session {session}: it belongs to another owner",
            who.describe()
        ),
    }))
}

async fn post_cart_item<S, B>(
    db: Database,
    who: Principal,
    headers: HeaderMap,
    body: S,
) -> Result<Response, Response>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = negotiate::request_format(content_type).map_err(|e| {
        error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            e.to_string(),
        )
    })?;
    let bytes = read_limited(&headers, body, CART_BODY_LIMIT).await?;
    let mut value = negotiate::decode_body(format, &bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))?;
    // The cart is the caller's own; admins name the session they fill.
    if let (Value::Object(map), Some(id)) = (&mut value, who.id())
        && !who.is_admin()
        && map.get("sessionId").is_none_or(Value::is_null)
    {
        map.insert("sessionId".into(), Value::String(id.to_owned()));
    }
    // The table checks the body whole: unknown attributes, types, required attributes.
    let record =
        Record::from_json(CartItem::DEF, value).map_err(|e| ApiError::from(e).into_response())?;
    let request = add_request(&record).map_err(ApiError::into_response)?;
    own_session(&who, &request.session_id).map_err(ApiError::into_response)?;
    let added = db
        .write_async(move |tx| shop::add_in(tx, &request))
        .await
        .map_err(|e| shop_error(e, Context::Add))?;
    Ok(created(added.item.id.as_str()))
}

/// The add-to-cart request in a checked CartItem body.
fn add_request(record: &Record) -> Result<AddToCart, ApiError> {
    let text = |name: &str| record.get(name).and_then(Value::as_str).map(str::to_owned);
    let bad = |what: &str| ApiError::bad_request("invalid_record", what);
    let id = text("id");
    if id
        .as_ref()
        .is_some_and(|id| id.len() > harper::http::MAX_ID_BYTES)
    {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!(
                "record ids are limited to {} bytes",
                harper::http::MAX_ID_BYTES
            ),
        ));
    }
    Ok(AddToCart {
        product_id: text("productId").ok_or_else(|| bad("productId must be a string"))?,
        session_id: text("sessionId").ok_or_else(|| bad("sessionId must be a string"))?,
        quantity: record
            .get("quantity")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad("quantity must be an integer"))?,
        id: id.map(Id::from),
        added_at: text("addedAt"),
    })
}

/// `/Cart/<sessionId>/checkout`: POST checks out, OPTIONS lists the methods, others are 405.
pub fn checkout(db: Database, auth: Auth) -> BoxedFilter<(Response,)> {
    warp::path::full()
        .and_then(|p: warp::path::FullPath| async move {
            checkout_session(p.as_str())
                .map(str::to_owned)
                .ok_or_else(warp::reject::not_found)
        })
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .then(
            move |raw: String, method: Method, headers: HeaderMap, peer: Option<SocketAddr>| {
                let db = db.clone();
                let auth = auth.clone();
                async move {
                    match post_checkout(db, &auth, &raw, &method, &headers, peer).await {
                        Ok(r) | Err(r) => r,
                    }
                }
            },
        )
        .boxed()
}

/// The raw (still percent-encoded) session id of a checkout path.
fn checkout_session(path: &str) -> Option<&str> {
    let session = path.strip_prefix("/Cart/")?.strip_suffix("/checkout")?;
    (!session.is_empty() && !session.contains('/')).then_some(session)
}

async fn post_checkout(
    db: Database,
    auth: &Auth,
    raw: &str,
    method: &Method,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Response, Response> {
    match *method {
        Method::POST => {}
        Method::OPTIONS => {
            let mut r = Response::new(Vec::new().into());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(CHECKOUT_ALLOW));
            return Ok(r);
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                method.as_str(),
                "/Cart/<sessionId>/checkout",
                CHECKOUT_ALLOW,
            )
            .into_response());
        }
    }
    let session = harper::http::decode_path_segment(raw).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_session",
            "the session id is not valid UTF-8 once percent-decoded",
        )
    })?;
    let who = caller(auth, headers, method, peer).await?;
    own_session(&who, &session).map_err(ApiError::into_response)?;
    let order = db
        .write_async(move |tx| shop::checkout_in(tx, &session))
        .await
        .map_err(|e| shop_error(e, Context::Checkout))?;
    let body = serde_json::to_vec(&order)
        .map_err(|e| ApiError::from(harper::Error::Io(std::io::Error::other(e))).into_response())?;
    Ok(json_response(StatusCode::OK, body))
}

/// `GET /openapi`: the document the REST API serves, plus the storefront's operations.
pub fn openapi(tables: Vec<&'static TableDef>) -> BoxedFilter<(Response,)> {
    let mut tables = tables;
    tables.sort_by_key(|d| d.name);
    exact_path("/openapi")
        .and(warp::get().or(warp::head()).unify())
        .and(warp::header::optional::<String>("host"))
        .map(move |host: Option<String>| {
            let server = format!("http://{}", host.as_deref().unwrap_or("127.0.0.1"));
            let doc = openapi_document(&tables, &server);
            json_response(StatusCode::OK, doc.to_string().into_bytes())
        })
        .boxed()
}

/// The generated OpenAPI document with the checkout path, its schemas, and what
/// `POST /CartItem/` answers beyond a plain create.
pub fn openapi_document(tables: &[&'static TableDef], server_url: &str) -> Value {
    let mut doc = harper::http::openapi::document(tables, server_url);
    let error_ref = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
        })
    };
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("Order".into(), order_schema());
        schemas.insert("OrderLine".into(), order_line_schema());
    }
    if let Some(post) = doc
        .pointer_mut("/paths/~1CartItem~1/post")
        .and_then(Value::as_object_mut)
    {
        post.insert("summary".into(), json!("Add a product to a session's cart"));
        post.insert(
            "description".into(),
            json!(
                "Adds `quantity` units of `productId` to the cart of `sessionId`. The product must \
                 exist and its `stockQuantity`, minus what this session's cart already holds of \
                 it, must cover `quantity` (a positive integer). A repeated add of the same \
                 product in the same session raises the existing item's quantity and answers \
                 with that item's id. Stock is only taken at checkout."
            ),
        );
        if let Some(responses) = post.get_mut("responses").and_then(Value::as_object_mut) {
            responses.insert(
                "400".into(),
                error_ref(
                    "The body is not a valid cart item (not an object, a missing or unknown attribute, a wrong type), or the quantity is not a positive integer.",
                ),
            );
            responses.insert("404".into(), error_ref("No product has this `productId`."));
            responses.insert(
                "409".into(),
                error_ref(
                    "Not enough stock (`not_enough_stock`, with `productId`, `requested` and `available`), or a cart item with the body's `id` exists.",
                ),
            );
        }
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        paths.insert(
            "/Cart/{sessionId}/checkout".into(),
            checkout_path(error_ref),
        );
    }
    doc
}

fn checkout_path(error_ref: impl Fn(&str) -> Value) -> Value {
    json!({
        "parameters": [{
            "name": "sessionId",
            "in": "path",
            "required": true,
            "description": "The session whose cart items (`CartItem.sessionId`) are bought.",
            "schema": { "type": "string" },
        }],
        "post": {
            "tags": ["CartItem"],
            "operationId": "checkoutCart",
            "summary": "Check out a session's cart",
            "description": "In one transaction: checks that every product of the cart has the stock for its line, \
                decrements each product's `stockQuantity` (setting `inStock` to false at 0) and deletes the \
                session's cart items. All or nothing: when any line lacks stock, nothing changes.",
            "responses": {
                "200": {
                    "description": "The order.",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Order" } } },
                },
                "404": error_ref("The session's cart is empty (or the session never had one)."),
                "409": error_ref("A product lacks stock for its line (`not_enough_stock`, with `productId`, `requested` and `available`), no longer exists, or a cart item holds a quantity that is not positive. Nothing changed."),
            },
        },
        "options": {
            "tags": ["CartItem"],
            "operationId": "optionsCheckout",
            "summary": "Methods allowed on a checkout",
            "responses": { "204": { "description": "The `Allow` header lists POST and OPTIONS." } },
        },
    })
}

fn order_schema() -> Value {
    json!({
        "type": "object",
        "required": ["sessionId", "lines", "total", "itemCount"],
        "properties": {
            "sessionId": { "type": "string" },
            "lines": {
                "type": "array",
                "description": "One line per product, in product-id order.",
                "items": { "$ref": "#/components/schemas/OrderLine" },
            },
            "total": { "type": "number", "description": "Sum of the line totals, rounded to cents." },
            "itemCount": { "type": "integer", "description": "Units bought (sum of the line quantities)." },
        },
    })
}

fn order_line_schema() -> Value {
    json!({
        "type": "object",
        "required": ["productId", "name", "unitPrice", "quantity", "lineTotal"],
        "properties": {
            "productId": { "type": "string" },
            "name": { "type": "string" },
            "unitPrice": { "type": "number" },
            "quantity": { "type": "integer", "format": "int32" },
            "lineTotal": { "type": "number", "description": "unitPrice × quantity, rounded to cents." },
        },
    })
}

// ---- helpers -----------------------------------------------------------------------------

/// Reads a body of at most `limit` bytes (413 beyond, checked before reading when the
/// length is declared, and while reading when it is chunked).
async fn read_limited<S, B>(
    headers: &HeaderMap,
    mut body: S,
    limit: usize,
) -> Result<Vec<u8>, Response>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("reading the body failed: {e}"),
            )
        })?;
        if bytes.len() + chunk.remaining() > limit {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            bytes.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(bytes)
}

#[derive(Clone, Copy)]
enum Context {
    Add,
    Checkout,
}

fn shop_error(e: ShopError, context: Context) -> Response {
    let message = e.to_string();
    match e {
        ShopError::InvalidQuantity { .. } => {
            error(StatusCode::BAD_REQUEST, "invalid_quantity", message)
        }
        ShopError::InvalidSession => error(StatusCode::BAD_REQUEST, "invalid_session", message),
        ShopError::UnknownProduct { .. } => match context {
            Context::Add => error(StatusCode::NOT_FOUND, "unknown_product", message),
            // The cart names a product deleted since: the cart, not the request, is at fault.
            Context::Checkout => error(
                StatusCode::CONFLICT,
                "unknown_product",
                format!("{message}; remove it from the cart (DELETE /CartItem/<id>)"),
            ),
        },
        ShopError::NotEnoughStock {
            product,
            requested,
            available,
        } => {
            let mut extra = Map::new();
            extra.insert("productId".into(), json!(product));
            extra.insert("requested".into(), json!(requested));
            extra.insert("available".into(), json!(available));
            error_with(StatusCode::CONFLICT, "not_enough_stock", message, extra)
        }
        ShopError::EmptyCart { .. } => error(StatusCode::NOT_FOUND, "empty_cart", message),
        ShopError::InvalidCartItem { .. } => {
            error(StatusCode::CONFLICT, "invalid_cart_item", message)
        }
        ShopError::Db(e) => ApiError::from(e).into_response(),
    }
}

fn error(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Response {
    ApiError::new(status, kind, message).into_response()
}

/// The error shape with extra attributes after `error` and `message`.
fn error_with(
    status: StatusCode,
    kind: &'static str,
    message: String,
    extra: Map<String, Value>,
) -> Response {
    let mut body = Map::new();
    body.insert("error".into(), json!(kind));
    body.insert("message".into(), json!(message));
    body.extend(extra);
    json_response(status, Value::Object(body).to_string().into_bytes())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// 201 with the id as a JSON string and `Location: <percent-encoded id>`, as the REST API's POST.
fn created(id: &str) -> Response {
    let mut r = json_response(StatusCode::CREATED, json!(id).to_string().into_bytes());
    if let Ok(v) = HeaderValue::from_str(&harper::http::encode_path_segment(id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_paths() {
        assert_eq!(checkout_session("/Cart/s1/checkout"), Some("s1"));
        assert_eq!(checkout_session("/Cart/a%2Fb/checkout"), Some("a%2Fb"));
        assert_eq!(checkout_session("/Cart//checkout"), None);
        assert_eq!(checkout_session("/Cart/a/b/checkout"), None);
        assert_eq!(checkout_session("/Cart/s1/checkout/"), None);
        assert_eq!(checkout_session("/Cart/s1"), None);
    }

    #[test]
    fn the_openapi_document_has_the_checkout_operation() {
        let doc = openapi_document(
            &[
                crate::schema::CartItem::DEF,
                crate::schema::Product::DEF,
                crate::schema::Category::DEF,
            ],
            "http://localhost",
        );
        let op = &doc["paths"]["/Cart/{sessionId}/checkout"]["post"];
        assert_eq!(op["operationId"], "checkoutCart");
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Order"
        );
        assert!(doc["components"]["schemas"]["OrderLine"]["properties"]["lineTotal"].is_object());
        assert!(doc["paths"]["/CartItem/"]["post"]["responses"]["409"].is_object());
        assert!(doc["paths"]["/Product/{id}"]["get"].is_object());
    }
}
