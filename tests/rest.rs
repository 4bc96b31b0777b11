//! The REST API through a real HTTP client against a server on an ephemeral loopback port.

mod common;

use common::*;
use harper::prelude::*;
use harper::{App, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Fixture {
    server: Server,
    base: String,
    db: Database,
    http: reqwest::Client,
}

async fn start_with(db: Database, body_limit: usize) -> Fixture {
    let app = common::with_admin(
        App::new(db.clone())
            .table::<Product>()
            .table::<Category>()
            .table::<CartItem>()
            .owner::<CartItem>(|item, who| who.id() == Some(item.session_id.as_str()))
            .body_limit(body_limit),
    );
    let server = app.bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", server.local_addr());
    Fixture {
        server,
        base,
        db,
        http: common::admin_client(),
    }
}

/// A database holding `n` cart items of session "s", with quantities from `quantity(i)`.
fn cart_items(n: i32, quantity: impl Fn(i32) -> i32) -> Database {
    let db = Database::temporary().unwrap();
    db.write(|tx| {
        for i in 0..n {
            tx.put(&cart_item(&format!("c{i:05}"), "p1", "s", quantity(i)))?;
        }
        Ok::<_, harper::Error>(())
    })
    .unwrap();
    db
}

async fn start() -> Fixture {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    start_with(db, 1 << 20).await
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }
    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.get(path).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn send(&self, method: reqwest::Method, path: &str, body: &str) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a client error: status, JSON object with `error` and a `message` containing `needle`.
async fn assert_error(r: reqwest::Response, status: StatusCode, needle: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string(), "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "message {message:?} should mention {needle:?}"
    );
    v
}

#[tokio::test]
async fn get_a_record_with_etag_and_conditional_get() {
    let f = start().await;
    let r = f.get("/Product/p01").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let tag = r.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["name"], "Product p01");
    assert_eq!(body["categoryId"], "books");

    let r = f
        .http
        .get(f.url("/Product/p01"))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    f.send(reqwest::Method::PATCH, "/Product/p01", r#"{"price": 2}"#)
        .await;
    let r = f
        .http
        .get(f.url("/Product/p01"))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a write changes the ETag");
    assert_ne!(r.headers()["etag"].to_str().unwrap(), tag);

    let r = f.http.head(f.url("/Product/p01")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("etag"));

    assert_error(f.get("/Product/nope").await, StatusCode::NOT_FOUND, "nope").await;
    assert_error(f.get("/Nope/1").await, StatusCode::NOT_FOUND, "Nope").await;
    f.server.shutdown().await;
}

/// Selects of a table's own attributes are written straight from the attributes read:
/// byte for byte what the general path gives (names once per object in select order,
/// absent attributes as null, arrays repeating what they name), and the same rows in CBOR.
#[tokio::test]
async fn own_attribute_selects_are_exact_json() {
    let f = start().await;
    for (select, body) in [
        (
            "select(imageUrl,name,price,name)",
            r#"[{"imageUrl":null,"name":"Product p01","price":1.0}]"#,
        ),
        (
            "select([name,name,id])",
            r#"[["Product p01","Product p01","p01"]]"#,
        ),
        ("select(stockQuantity)", r#"[1]"#),
        (
            "select=inStock,description",
            r#"[{"inStock":true,"description":"About p01"}]"#,
        ),
    ] {
        let path = format!("/Product/?id=p01&{select}");
        let r = f.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), body, "{path}");
        let r = f
            .http
            .get(f.url(&path))
            .header("accept", "application/cbor")
            .send()
            .await
            .unwrap();
        let cbor: Value = ciborium::from_reader(&r.bytes().await.unwrap()[..]).unwrap();
        assert_eq!(
            cbor,
            serde_json::from_str::<Value>(body).unwrap(),
            "{path} as CBOR"
        );
    }
    f.server.shutdown().await;
}

#[tokio::test]
async fn property_access_select_and_description() {
    let f = start().await;
    assert_eq!(
        f.json("/Product/p01.name").await,
        (StatusCode::OK, json!("Product p01"))
    );
    assert_eq!(f.json("/Product/p01.category").await.1["name"], "Books");
    assert_eq!(f.json("/Category/books.json").await.1["name"], "Books");
    let (s, v) = f.json("/Product/p01?select(name,price)").await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"name": "Product p01", "price": 1.0}))
    );

    let (s, d) = f.json("/Product").await;
    assert_eq!(s, 200);
    assert_eq!(d["name"], "Product");
    assert_eq!(d["primaryKey"], "id");
    let attrs = d["attributes"].as_array().unwrap();
    let price = attrs.iter().find(|a| a["name"] == "price").unwrap();
    assert_eq!(
        (price["type"].as_str(), price["indexed"].as_bool()),
        (Some("Float"), Some(true))
    );
    let cat = attrs.iter().find(|a| a["name"] == "category").unwrap();
    assert_eq!(cat["relationship"], json!({"from": "categoryId"}));
    // A query string on the no-slash form makes it a collection query.
    let (_, v) = f.json("/Category?id=toys").await;
    assert_eq!(ids(&v), ["toys"]);
}

#[tokio::test]
async fn the_seeds_two_queries_answer_with_the_right_rows() {
    let f = start().await;
    let (s, v) = f
        .json("/Product/?categoryId=toys&inStock=true&limit=20")
        .await;
    assert_eq!(s, 200);
    let got = ids(&v);
    assert!(!got.is_empty() && got.len() <= 20);
    for r in v.as_array().unwrap() {
        assert_eq!(
            (r["categoryId"].as_str(), r["inStock"].as_bool()),
            (Some("toys"), Some(true))
        );
    }
    assert_eq!(
        got,
        ["p03", "p06", "p09", "p15", "p18", "p21", "p27", "p30"]
    );

    let (s, v) = f.json("/Product/?price=lt=10&inStock=true&sort=name").await;
    assert_eq!(s, 200);
    assert_eq!(ids(&v), ["p01", "p02", "p03", "p05", "p06", "p07", "p09"]);
    // Harper's directive forms give the same answers.
    assert_eq!(
        f.json("/Product/?price=lt=10&inStock=true&sort(+name)")
            .await
            .1,
        v
    );
}

#[tokio::test]
async fn the_query_language() {
    let f = start().await;
    let q = |path: &'static str| {
        let f = &f;
        async move {
            let (s, v) = f.json(path).await;
            assert_eq!(s, 200, "{path}: {v}");
            v
        }
    };
    assert_eq!(
        ids(&q("/Product/?price=gt=27&lt=30").await),
        ["p28", "p29"],
        "chained range"
    );
    assert_eq!(ids(&q("/Product/?price=ge=29").await), ["p29", "p30"]);
    assert_eq!(ids(&q("/Product/?id==p05").await), ["p05"]);
    assert_eq!(q("/Product/?id!=p05").await.as_array().unwrap().len(), 29);
    assert_eq!(
        q("/Product/?name=sw=Product%20p2")
            .await
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(ids(&q("/Product/?name=ew=p15").await), ["p15"]);
    assert_eq!(
        q("/Product/?description=ct=p1")
            .await
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(ids(&q("/Product/?id=p01|id=p02").await), ["p01", "p02"]);
    assert_eq!(
        ids(&q("/Product/?inStock=false&(categoryId=toys|categoryId=garden)&sort(id)").await),
        ["p08", "p12", "p20", "p24"]
    );
    assert_eq!(
        ids(&q("/Product/?[id=p01|id=p02]&price=gt=1").await),
        ["p02"]
    );
    assert_eq!(
        ids(&q("/Product/?sort(-price)&limit(2)").await),
        ["p30", "p29"]
    );
    assert_eq!(
        ids(&q("/Product/?sort(-price)&limit(2,4)").await),
        ["p28", "p27"],
        "limit(start,end)"
    );
    assert_eq!(
        ids(&q("/Product/?sort=-price&offset=1&limit=2").await),
        ["p29", "p28"]
    );
    assert_eq!(
        ids(&q("/Product/?sort(categoryId,-price)&limit(1)").await),
        ["p28"]
    );
    assert_eq!(
        q("/Product/?id=p01&select(name,price)").await,
        json!([{"name": "Product p01", "price": 1.0}])
    );
    assert_eq!(
        q("/Product/?id=p01&select=name,price").await,
        json!([{"name": "Product p01", "price": 1.0}])
    );
    assert_eq!(
        q("/Product/?id=p01&select(name)").await,
        json!(["Product p01"])
    );
    assert_eq!(
        q("/Product/?id=p01&select([id,price])").await,
        json!([["p01", 1.0]])
    );
    assert_eq!(
        q("/Product/?id=p01&select(name,category{name})").await,
        json!([{"name": "Product p01", "category": {"name": "Books"}}])
    );
    assert_eq!(
        q("/Product/?category.name=Toys")
            .await
            .as_array()
            .unwrap()
            .len(),
        10
    );
    let cats = q("/Category/?id=garden&select(name,products{id})").await;
    assert_eq!(cats[0]["products"].as_array().unwrap().len(), 10);
    assert_eq!(
        q("/Product/?imageUrl=null").await.as_array().unwrap().len(),
        30
    );
}

#[tokio::test]
async fn bad_queries_are_clear_client_errors() {
    let f = start().await;
    let bad = StatusCode::BAD_REQUEST;
    assert_error(
        f.get("/Product/?color=red").await,
        bad,
        "color is not a defined attribute",
    )
    .await;
    assert_error(f.get("/Product/?name=xx=Toys").await, bad, "xx").await;
    assert_error(f.get("/Product/?offset(5)").await, bad, "offset").await;
    assert_error(
        f.get("/Product/?stockQuantity=abc").await,
        bad,
        "expecting Int",
    )
    .await;
    assert_error(
        f.get("/Product/?price=gt=abc").await,
        bad,
        "expecting Float",
    )
    .await;
    assert_error(f.get("/Product/?(id=p01").await, bad, "position").await;
    assert_error(f.get("/Product/?justtext").await, bad, "justtext").await;
    assert_error(f.get("/Product/?sort(nope)").await, bad, "nope").await;
    assert_error(f.get("/Product/?select(nope)").await, bad, "nope").await;
    assert_error(f.get("/Product/p01?price=1").await, bad, "select").await;
}

#[tokio::test]
async fn a_sort_that_would_scan_a_large_table_is_refused_with_the_reason() {
    let db = cart_items(12_000, |i| i % 7);
    let f = start_with(db, 1 << 20).await;
    let v = assert_error(
        f.get("/CartItem/?sort(quantity)").await,
        StatusCode::BAD_REQUEST,
        "not indexed",
    )
    .await;
    assert_eq!(v["error"], "query_too_expensive");
    // With a condition on an indexed attribute it is fine.
    assert_eq!(
        f.get("/CartItem/?sessionId=s&sort(quantity)&limit(3)")
            .await
            .status(),
        200
    );
    // On an indexed attribute it is fine too.
    assert_eq!(
        f.get("/CartItem/?sort(-sessionId)&limit(3)").await.status(),
        200
    );
}

#[tokio::test]
async fn queries_answer_in_full_whether_they_run_inline_or_on_the_blocking_pool() {
    // Small queries run on the request's thread under a read budget; bigger ones give up
    // there and run on the blocking pool. Either way the answer is complete and ordered.
    let db = cart_items(3_000, |i| i % 7);
    let f = start_with(db, 1 << 20).await;
    // quantity is not indexed: 3000 records read for 428 matches (over the budget).
    let (status, v) = f.json("/CartItem/?quantity=6").await;
    assert_eq!(status, StatusCode::OK);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), (0..3_000).filter(|i| i % 7 == 6).count());
    assert!(
        rows.windows(2)
            .all(|w| w[0]["id"].as_str() < w[1]["id"].as_str())
    );
    assert!(rows.iter().all(|r| r["quantity"] == 6));
    // Stops at its limit after a few reads: inline.
    let (_, v) = f.json("/CartItem/?quantity=6&limit(2)").await;
    assert_eq!(v, json!([rows[0], rows[1]]));
    // A sorted page over the whole table (an ordered index scan) and a small full answer.
    let (_, v) = f.json("/CartItem/?sort(-sessionId,id)&limit(0,3)").await;
    assert_eq!(v.as_array().unwrap().len(), 3);
    let (_, v) = f.json("/CartItem/?id=lt=c00005&select(id)").await;
    assert_eq!(v, json!(["c00000", "c00001", "c00002", "c00003", "c00004"]));
}

#[tokio::test]
async fn writes_with_harpers_status_codes() {
    let f = start().await;
    use reqwest::Method as M;
    // POST without an id: 201, a generated UUID as a JSON string, Location relative to the collection.
    let r = f
        .send(
            M::POST,
            "/CartItem/",
            r#"{"productId":"p01","sessionId":"s1","quantity":2}"#,
        )
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let id: String = r.json().await.unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(location, id, "a UUID needs no escaping");
    assert_eq!(f.json(&format!("/CartItem/{id}")).await.1["quantity"], 2);

    // POST with an existing id: 409.
    let body = r#"{"id":"c1","productId":"p01","sessionId":"s1","quantity":1}"#;
    assert_eq!(f.send(M::POST, "/CartItem/", body).await.status(), 201);
    assert_error(
        f.send(M::POST, "/CartItem/", body).await,
        StatusCode::CONFLICT,
        "c1",
    )
    .await;

    // PUT creates or replaces: 204, id taken from the URL.
    let r = f.send(M::PUT, "/Category/new", r#"{"name":"New"}"#).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        f.json("/Category/new").await.1,
        json!({"id": "new", "name": "New"})
    );
    assert_eq!(
        f.send(M::PUT, "/Category/new", r#"{"id":"new","name":"Renamed"}"#)
            .await
            .status(),
        204
    );
    assert_error(
        f.send(M::PUT, "/Category/new", r#"{"id":"other","name":"x"}"#)
            .await,
        StatusCode::BAD_REQUEST,
        "contradicts",
    )
    .await;
    assert_eq!(f.json("/Category/other").await.0, 404, "nothing stored");

    // PATCH merges: 204; missing id: 404 and nothing created.
    assert_eq!(
        f.send(
            M::PATCH,
            "/Product/p02",
            r#"{"price":14.25,"inStock":false}"#
        )
        .await
        .status(),
        204
    );
    let p = f.json("/Product/p02").await.1;
    assert_eq!(
        (
            p["price"].as_f64(),
            p["inStock"].as_bool(),
            p["name"].as_str()
        ),
        (Some(14.25), Some(false), Some("Product p02"))
    );
    assert_error(
        f.send(M::PATCH, "/Product/ghost", r#"{"price":1}"#).await,
        StatusCode::NOT_FOUND,
        "ghost",
    )
    .await;
    assert_eq!(f.json("/Product/ghost").await.0, 404);

    // DELETE: 200 true, idempotent.
    let r = f.send(M::DELETE, "/Product/p03", "").await;
    assert_eq!(
        (r.status(), r.text().await.unwrap()),
        (StatusCode::OK, "true".to_owned())
    );
    assert_eq!(f.send(M::DELETE, "/Product/p03", "").await.status(), 200);
    assert_eq!(f.json("/Product/p03").await.0, 404);

    // DELETE with a query deletes the matches only.
    assert_eq!(
        f.send(M::DELETE, "/CartItem/?sessionId=s1", "")
            .await
            .status(),
        200
    );
    assert_eq!(f.json("/CartItem/").await.1, json!([]));
    // A query string without a condition would delete everything: refused, nothing deleted.
    for q in ["?&&&", "?limit(5)", "?select(name)"] {
        let r = f.send(M::DELETE, &format!("/Product/{q}"), "").await;
        assert_eq!(r.status(), 400, "{q}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["message"].as_str().unwrap().contains("every record"),
            "{q}: {v}"
        );
    }
    let r = f
        .send(M::DELETE, "/Product/?categoryId=none&select(nope)", "")
        .await;
    assert_eq!(r.status(), 400, "select is checked");
    assert_eq!(
        f.json("/Product/?categoryId=toys")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        9
    );
    f.db.check_integrity().unwrap();
}

#[tokio::test]
async fn methods_options_and_405_with_allow() {
    let f = start().await;
    use reqwest::Method as M;
    let r = f.send(M::POST, "/CartItem/c1", "{}").await;
    assert_eq!(r.status(), 405);
    assert!(r.headers()["allow"].to_str().unwrap().contains("PUT"));
    let r = f.send(M::PUT, "/CartItem/", "{}").await;
    assert_eq!(r.status(), 405);
    assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
    let r = f
        .http
        .request(M::OPTIONS, f.url("/Category/books"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["allow"].to_str().unwrap().contains("PATCH"));
    assert_eq!(f.send(M::DELETE, "/CartItem", "").await.status(), 405);
}

#[tokio::test]
async fn every_bad_body_is_a_4xx_naming_the_problem_and_stores_nothing() {
    let f = start().await;
    use reqwest::Method as M;
    let before = f.json("/Product/p01").await.1;
    let cases: &[(M, &str, &str, StatusCode, &str)] = &[
        (
            M::PUT,
            "/Product/p01",
            "{not json",
            StatusCode::BAD_REQUEST,
            "line 1",
        ),
        (
            M::PUT,
            "/Product/p01",
            r#"{"a":"#,
            StatusCode::BAD_REQUEST,
            "EOF",
        ),
        (M::PUT, "/Product/p01", "", StatusCode::BAD_REQUEST, "empty"),
        (M::POST, "/Product/", "", StatusCode::BAD_REQUEST, "empty"),
        (
            M::PUT,
            "/Product/p01",
            "\"hello\"",
            StatusCode::BAD_REQUEST,
            "not a string",
        ),
        (
            M::PUT,
            "/Product/p01",
            "[1,2]",
            StatusCode::BAD_REQUEST,
            "not an array",
        ),
        (
            M::POST,
            "/CartItem/",
            "[1,2]",
            StatusCode::BAD_REQUEST,
            "not an array",
        ),
        (
            M::PATCH,
            "/Product/p01",
            r#"{"price":"abc"}"#,
            StatusCode::BAD_REQUEST,
            "price",
        ),
        (
            M::PATCH,
            "/Product/p01",
            r#"{"price":"12.5"}"#,
            StatusCode::BAD_REQUEST,
            "price",
        ),
        (
            M::PATCH,
            "/Product/p01",
            r#"{"stockQuantity":1.5}"#,
            StatusCode::BAD_REQUEST,
            "stockQuantity",
        ),
        (
            M::PATCH,
            "/Product/p01",
            r#"{"inStock":"yes"}"#,
            StatusCode::BAD_REQUEST,
            "inStock",
        ),
        (
            M::PATCH,
            "/Product/p01",
            r#"{"name":42}"#,
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            M::PATCH,
            "/Product/p01",
            r#"{"color":"red"}"#,
            StatusCode::BAD_REQUEST,
            "color",
        ),
        (
            M::PUT,
            "/Product/p01",
            r#"{"name":"only a name"}"#,
            StatusCode::BAD_REQUEST,
            "missing required attribute",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let r = f.send(method.clone(), path, body).await;
        assert_eq!(r.status(), *status, "{method} {path} {body}");
        let v: Value = r.json().await.unwrap();
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{method} {path} {body}: {message:?} should mention {needle:?}"
        );
    }
    let r = f
        .http
        .put(f.url("/Product/p01"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = f
        .http
        .put(f.url("/Product/p01"))
        .header("content-type", "application/json")
        .body(vec![b'{', 0xff, b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "invalid UTF-8");
    assert_eq!(f.json("/Product/p01").await.1, before, "nothing stored");
    assert_eq!(f.json("/Product/").await.1.as_array().unwrap().len(), 30);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_before_it_is_read() {
    let db = Database::temporary().unwrap();
    let f = start_with(db, 1000).await;
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(5000));
    let r = f.send(reqwest::Method::PUT, "/Category/big", &big).await;
    assert_eq!(r.status(), 413);
    // A chunked body (no Content-Length) is counted as it arrives.
    let chunks = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 500])));
    let r = f
        .http
        .put(f.url("/Category/big"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(f.json("/Category/big").await.0, 404);
}

#[tokio::test]
async fn ids_percent_encoded_unicode_and_too_long() {
    let f = start().await;
    use reqwest::Method as M;
    assert_eq!(
        f.send(M::PUT, "/Category/a%2Fb", r#"{"name":"slash"}"#)
            .await
            .status(),
        204
    );
    assert_eq!(f.json("/Category/a%2Fb").await.1["id"], "a/b");
    assert_eq!(
        f.get("/Category/a/b").await.status(),
        404,
        "an unencoded / is a path separator"
    );
    assert_eq!(
        f.send(
            M::PUT,
            "/Category/%E6%97%A5%E6%9C%AC",
            r#"{"name":"Japan"}"#
        )
        .await
        .status(),
        204
    );
    assert_eq!(f.json("/Category/%E6%97%A5%E6%9C%AC").await.1["id"], "日本");
    assert_eq!(
        f.json("/Product/p%30%31").await.1["id"],
        "p01",
        "any byte may be encoded"
    );
    let long = "x".repeat(10_000);
    let r = f
        .send(M::PUT, &format!("/Category/{long}"), r#"{"name":"long"}"#)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "1024 bytes").await;
    assert_eq!(f.get(&format!("/Category/{long}")).await.status(), 400);
    assert_eq!(f.get("/Category/%FF").await.status(), 400, "not UTF-8");
}

#[tokio::test]
async fn content_negotiation_for_records_and_collections() {
    let f = start().await;
    let get = |accept: &'static str, path: &'static str| {
        let f = &f;
        async move {
            f.http
                .get(f.url(path))
                .header("accept", accept)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get("application/cbor", "/Product/p01").await;
    assert_eq!(r.headers()["content-type"], "application/cbor");
    let v: Value = ciborium::from_reader(&r.bytes().await.unwrap()[..]).unwrap();
    assert_eq!(v["name"], "Product p01");
    let r = get("application/x-msgpack", "/Product/?categoryId=toys").await;
    let v: Vec<Value> = rmp_serde::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v.len(), 10);
    let r = get("application/cbor", "/Product/?categoryId=toys").await;
    let v: Vec<Value> = ciborium::from_reader(&r.bytes().await.unwrap()[..]).unwrap();
    assert_eq!(v.len(), 10);
    let r = get(
        "text/csv",
        "/Product/?id=p01&select(id,name,category{name})",
    )
    .await;
    assert_eq!(r.headers()["content-type"], "text/csv");
    let text = r.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,name,category.name"));
    assert_eq!(lines.next(), Some("p01,Product p01,Books"));
    assert_eq!(
        get("text/csv;q=0.5, application/json", "/Product/p01")
            .await
            .headers()["content-type"],
        "application/json"
    );
    assert_error(
        get("text/html", "/Product/p01").await,
        StatusCode::NOT_ACCEPTABLE,
        "application/json",
    )
    .await;
    // CBOR request bodies are accepted too.
    let mut body = Vec::new();
    ciborium::into_writer(&json!({"name": "From CBOR"}), &mut body).unwrap();
    let r = f
        .http
        .put(f.url("/Category/cbor"))
        .header("content-type", "application/cbor")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(f.json("/Category/cbor").await.1["name"], "From CBOR");
}

#[tokio::test]
async fn collections_stream_as_chunked_json() {
    let db = cart_items(20_000, |_| 1);
    let f = start_with(db, 1 << 20).await;
    let mut r = f.get("/CartItem/").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    let mut chunks = 0;
    let mut body = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        chunks += 1;
        body.extend_from_slice(&c);
    }
    assert!(chunks > 1, "arrived in {chunks} chunk(s)");
    let v: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(v.len(), 20_000);
}

#[tokio::test]
async fn openapi_document_is_served() {
    let f = start().await;
    let (s, doc) = f.json("/openapi").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("/Product/"))
    );
}

#[tokio::test]
async fn shutdown_drains_in_flight_responses_then_refuses_connections() {
    let db = cart_items(20_000, |_| 1);
    let f = start_with(db, 1 << 20).await;
    let mut r = f.get("/CartItem/").await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().expect("a first chunk");
    // Shut down while the body is still streaming.
    let url = f.url("/CartItem/c00001");
    let shutdown = tokio::spawn(f.server.shutdown());
    let mut body = first.to_vec();
    while let Some(c) = r.chunk().await.unwrap() {
        body.extend_from_slice(&c);
    }
    let rows: Vec<Value> = serde_json::from_slice(&body).expect("the in-flight response completed");
    assert_eq!(rows.len(), 20_000);
    shutdown.await.unwrap();
    assert!(
        reqwest::Client::new().get(url).send().await.is_err(),
        "no new connections after shutdown"
    );
}

/// Exported tables own their read paths: a custom route that answers everything sees every
/// other request (writes to tables included), never a GET or HEAD of a table.
#[tokio::test]
async fn table_reads_are_answered_before_custom_routes_and_nothing_else_is() {
    use warp::Filter;
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    let catch_all = warp::any().and_then(|| async {
        let mut r = warp::reply::Response::new("custom".into());
        r.headers_mut()
            .insert("x-custom", warp::http::HeaderValue::from_static("1"));
        Ok::<_, warp::Rejection>(r)
    });
    let server = common::with_admin(
        App::new(db)
            .table::<Product>()
            .table::<Category>()
            .route(catch_all),
    )
    .bind("127.0.0.1:0")
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = common::admin_client();
    for path in [
        "/Product/p01",
        "/Product/",
        "/Product",
        "/Product/?categoryId=toys",
        "/Product/p01.name",
        "/Product/nope",
        "/Product/a/b",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(r.headers().get("x-custom").is_none(), "GET {path}");
        // All three security headers, on answers with a record and on errors alike.
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(r.headers()[name], value, "GET {path}: {name}");
        }
        let r = http.head(format!("{base}{path}")).send().await.unwrap();
        assert!(r.headers().get("x-custom").is_none(), "HEAD {path}");
    }
    let r = http
        .get(format!("{base}/Product/p01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], "p01");
    // Everything else reaches the custom route first.
    for (method, path) in [
        ("POST", "/Product/"),
        ("PUT", "/Product/p01"),
        ("DELETE", "/Product/p01"),
        ("OPTIONS", "/Product/p01"),
        ("GET", "/"),
        ("GET", "/elsewhere"),
        ("GET", "/Productx/p01"),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("x-custom").map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "{method} {path}"
        );
        assert_eq!(
            r.headers()["x-content-type-options"],
            "nosniff",
            "{method} {path}"
        );
    }
    // Nothing was written: the custom route answered the writes.
    let r = http
        .get(format!("{base}/Product/p01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown().await;
}
