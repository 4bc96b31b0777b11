//! The storefront's business endpoints through real HTTP clients (add to cart, checkout,
//! concurrent checkouts), and its bulk import from files.

#[path = "../examples/storefront/api.rs"]
#[allow(dead_code)]
mod api;
mod common;
use common::schema;
#[path = "../examples/storefront/import.rs"]
#[allow(dead_code)]
mod import;
#[path = "../examples/storefront/shop.rs"]
#[allow(dead_code)]
mod shop;

use std::sync::Arc;

use harper::Server;
use harper::prelude::*;
use reqwest::StatusCode;
use schema::{CartItem, Product};
use serde_json::{Value, json};

fn product(id: &str, price: f64, stock: i32) -> Product {
    Product {
        id: id.into(),
        name: format!("Product {id}"),
        description: None,
        price,
        category_id: "toys".into(),
        in_stock: stock > 0,
        stock_quantity: stock,
        image_url: None,
        created_at: None,
        category: Link::new(),
    }
}

struct Fixture {
    server: Server,
    base: String,
    db: Database,
    http: reqwest::Client,
}

/// A server over products p1 (price 2.50, stock 5), p2 (10.00, 3) and p3 (1.00, 0).
async fn start() -> Fixture {
    let db = Database::temporary().unwrap();
    let app = common::with_admin(api::storefront_app(db.clone()).unwrap());
    db.write(|tx| {
        tx.put(&product("p1", 2.5, 5))?;
        tx.put(&product("p2", 10.0, 3))?;
        tx.put(&product("p3", 1.0, 0))
    })
    .unwrap();
    let server = app.bind("127.0.0.1:0").await.unwrap();
    Fixture {
        base: format!("http://{}", server.local_addr()),
        server,
        db,
        http: common::admin_client(),
    }
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
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
    async fn add(&self, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, "/CartItem/", &body.to_string())
            .await
    }
    async fn checkout(&self, session: &str) -> reqwest::Response {
        self.send(
            reqwest::Method::POST,
            &format!("/Cart/{session}/checkout"),
            "",
        )
        .await
    }
    async fn get_json(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }
    fn stock(&self, id: &str) -> (i32, bool) {
        let p = self.db.get::<Product>(id).unwrap().unwrap();
        (p.stock_quantity, p.in_stock)
    }
    fn cart(&self, session: &str) -> Vec<CartItem> {
        self.db
            .read(|tx| tx.query::<CartItem>(&Query::new().filter(attr("sessionId").eq(session))))
            .unwrap()
    }
}

/// Asserts an error answer: status, the JSON error shape, `kind`, and a message mentioning
/// every one of `needles`. Returns the body.
async fn assert_error(
    r: reqwest::Response,
    status: StatusCode,
    kind: &str,
    needles: &[&str],
) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], kind, "{v}");
    let message = v["message"].as_str().unwrap();
    for needle in needles {
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }
    v
}

/// A 201 answer's id (checked against its `Location`; ids here are UUIDs or plain words).
async fn created_id(r: reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["content-type"], "application/json");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let id: String = r.json().await.unwrap();
    // Percent-encoded as the REST API's POST encodes it (every byte but letters and digits).
    assert_eq!(location.replace("%2D", "-"), id);
    id
}

#[tokio::test]
async fn add_to_cart_creates_then_merges_repeated_adds() {
    let f = start().await;
    let first = created_id(
        f.add(json!({"productId": "p1", "sessionId": "s1", "quantity": 2}))
            .await,
    )
    .await;
    let again = created_id(
        f.add(json!({"productId": "p1", "sessionId": "s1", "quantity": 1}))
            .await,
    )
    .await;
    assert_eq!(
        again, first,
        "a repeated add answers with the existing item"
    );
    let item = f.get_json(&format!("/CartItem/{first}")).await;
    assert_eq!(
        (&item["productId"], &item["sessionId"], &item["quantity"]),
        (&json!("p1"), &json!("s1"), &json!(3))
    );
    let other = created_id(
        f.add(json!({"productId": "p1", "sessionId": "s2", "quantity": 1}))
            .await,
    )
    .await;
    assert_ne!(other, first, "another session gets its own item");
    // A client-chosen id is kept for a new item.
    let chosen = created_id(
        f.add(
            json!({"id": "mine", "productId": "p2", "sessionId": "s1", "quantity": 1,
                     "addedAt": "2026-11-24T10:00:00Z"}),
        )
        .await,
    )
    .await;
    assert_eq!(chosen, "mine");
    let items = f.cart("s1");
    assert_eq!(items.len(), 2);
    assert_eq!(
        f.db.get::<CartItem>("mine")
            .unwrap()
            .unwrap()
            .added_at
            .as_deref(),
        Some("2026-11-24T10:00:00Z")
    );
    assert_eq!(f.stock("p1"), (5, true), "adding takes no stock");
    f.server.shutdown().await;
}

#[tokio::test]
async fn add_to_cart_refuses_what_the_stock_does_not_cover() {
    let f = start().await;
    f.add(json!({"productId": "p1", "sessionId": "s1", "quantity": 4}))
        .await;
    let v = assert_error(
        f.add(json!({"productId": "p1", "sessionId": "s1", "quantity": 2}))
            .await,
        StatusCode::CONFLICT,
        "not_enough_stock",
        &["p1", "only 1 left"],
    )
    .await;
    assert_eq!(
        (&v["productId"], &v["requested"], &v["available"]),
        (&json!("p1"), &json!(2), &json!(1))
    );
    assert_error(
        f.add(json!({"productId": "p3", "sessionId": "s1", "quantity": 1}))
            .await,
        StatusCode::CONFLICT,
        "not_enough_stock",
        &["p3", "only 0 left"],
    )
    .await;
    assert_eq!(f.cart("s1")[0].quantity, 4, "a refused add changes nothing");
    assert_eq!(f.cart("s1").len(), 1);
    f.server.shutdown().await;
}

#[tokio::test]
async fn add_to_cart_refuses_unknown_products_and_bad_bodies() {
    let f = start().await;
    assert_error(
        f.add(json!({"productId": "nope", "sessionId": "s1", "quantity": 1}))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_product",
        &["nope"],
    )
    .await;
    let bad: &[(&str, &str, &[&str])] = &[
        (
            r#"{"productId":"p1","sessionId":"s1","quantity":0}"#,
            "invalid_quantity",
            &["positive", "0"],
        ),
        (
            r#"{"productId":"p1","sessionId":"s1","quantity":-3}"#,
            "invalid_quantity",
            &["-3"],
        ),
        (
            r#"{"productId":"p1","sessionId":"s1","quantity":2.5}"#,
            "invalid_record",
            &["quantity"],
        ),
        (
            r#"{"productId":"p1","sessionId":"s1","quantity":"2"}"#,
            "invalid_record",
            &["quantity"],
        ),
        (
            r#"{"productId":"p1","sessionId":"s1","quantity":4294967296}"#,
            "invalid_record",
            &["quantity"],
        ),
        (
            r#"{"productId":"p1","quantity":1}"#,
            "invalid_record",
            &["sessionId"],
        ),
        (
            r#"{"productId":"p1","sessionId":"s1","quantity":1,"colour":"red"}"#,
            "invalid_record",
            &["colour"],
        ),
        (
            r#"{"productId":"p1","sessionId":"","quantity":1}"#,
            "invalid_session",
            &["sessionId"],
        ),
        (
            r#"[{"productId":"p1","sessionId":"s1","quantity":1}]"#,
            "invalid_record",
            &["object"],
        ),
        (
            r#"{"productId":"p1","sessionId":"s1","#,
            "invalid_body",
            &[],
        ),
        ("", "invalid_body", &["empty"]),
    ];
    for (body, kind, needles) in bad {
        let r = f.send(reqwest::Method::POST, "/CartItem/", body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_error(r, StatusCode::BAD_REQUEST, kind, needles).await;
    }
    let r = f
        .http
        .post(f.url("/CartItem/"))
        .header("content-type", "text/plain")
        .body("productId=p1")
        .send()
        .await
        .unwrap();
    assert_error(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        &["text/plain"],
    )
    .await;
    let r = f
        .send(
            reqwest::Method::POST,
            "/CartItem/",
            &"x".repeat(api::CART_BODY_LIMIT + 1),
        )
        .await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &[]).await;
    let all = f.db.read(|tx| tx.query::<CartItem>(&Query::new())).unwrap();
    assert!(all.is_empty(), "nothing stored: {all:?}");
    f.server.shutdown().await;
}

#[tokio::test]
async fn other_cart_item_requests_reach_the_rest_api() {
    let f = start().await;
    let id = created_id(
        f.add(json!({"productId": "p1", "sessionId": "s1", "quantity": 1}))
            .await,
    )
    .await;
    let list = f
        .get_json("/CartItem/?sessionId=s1&select(quantity,product{name})")
        .await;
    assert_eq!(
        list,
        json!([{"quantity": 1, "product": {"name": "Product p1"}}])
    );
    let r = f
        .send(
            reqwest::Method::PUT,
            "/CartItem/direct",
            r#"{"productId":"p2","sessionId":"s9","quantity":7}"#,
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "PUT is the REST API's, with the stock rule"
    );
    let r = f
        .send(
            reqwest::Method::PUT,
            "/CartItem/direct",
            r#"{"productId":"p2","sessionId":"s9","quantity":3}"#,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = f
        .send(
            reqwest::Method::PATCH,
            &format!("/CartItem/{id}"),
            r#"{"quantity":2}"#,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.db.get::<CartItem>(id.as_str()).unwrap().unwrap().quantity,
        2
    );
    let r = f.send(reqwest::Method::POST, "/CartItem", "{}").await;
    assert_eq!(
        r.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "no slash: the table description"
    );
    let r = f
        .http
        .request(reqwest::Method::OPTIONS, f.url("/CartItem/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
    let r = f
        .send(reqwest::Method::DELETE, "/CartItem/direct", "")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "true");
    let description = f.get_json("/CartItem").await;
    assert!(description.is_object());

    // A chunked body (no Content-Length) is still the business endpoint's.
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok(r#"{"productId":"p1","#.into()),
        Ok(r#""sessionId":"s1","quantity":9}"#.into()),
    ];
    let r = f
        .http
        .post(f.url("/CartItem/"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_error(
        r,
        StatusCode::CONFLICT,
        "not_enough_stock",
        &["p1", "only 3 left"],
    )
    .await;
    f.server.shutdown().await;
}

#[tokio::test]
async fn checkout_sells_the_cart_and_empties_it() {
    let f = start().await;
    for (product, quantity) in [("p1", 2), ("p2", 3), ("p1", 1)] {
        created_id(
            f.add(json!({"productId": product, "sessionId": "s1", "quantity": quantity}))
                .await,
        )
        .await;
    }
    f.add(json!({"productId": "p1", "sessionId": "s2", "quantity": 1}))
        .await;
    let r = f.checkout("s1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let order: Value = r.json().await.unwrap();
    assert_eq!(
        order,
        json!({
            "sessionId": "s1",
            "lines": [
                {"productId": "p1", "name": "Product p1", "unitPrice": 2.5, "quantity": 3, "lineTotal": 7.5},
                {"productId": "p2", "name": "Product p2", "unitPrice": 10.0, "quantity": 3, "lineTotal": 30.0},
            ],
            "total": 37.5,
            "itemCount": 6,
        })
    );
    assert_eq!(f.stock("p1"), (2, true));
    assert_eq!(f.stock("p2"), (0, false));
    let product = f.get_json("/Product/p2").await;
    assert_eq!(
        (&product["stockQuantity"], &product["inStock"]),
        (&json!(0), &json!(false))
    );
    assert_eq!(f.get_json("/CartItem/?sessionId=s1").await, json!([]));
    assert_eq!(f.cart("s2").len(), 1, "other carts stay");

    assert_error(
        f.checkout("s1").await,
        StatusCode::NOT_FOUND,
        "empty_cart",
        &["s1"],
    )
    .await;
    assert_error(
        f.checkout("nobody").await,
        StatusCode::NOT_FOUND,
        "empty_cart",
        &["nobody"],
    )
    .await;
    assert_eq!(f.stock("p1"), (2, true));
    f.db.check_integrity().unwrap();
    f.server.shutdown().await;
}

#[tokio::test]
async fn checkout_short_of_stock_changes_nothing() {
    let f = start().await;
    f.add(json!({"productId": "p1", "sessionId": "s1", "quantity": 2}))
        .await;
    f.add(json!({"productId": "p2", "sessionId": "s1", "quantity": 3}))
        .await;
    f.add(json!({"productId": "p2", "sessionId": "s2", "quantity": 2}))
        .await;
    assert_eq!(f.checkout("s2").await.status(), StatusCode::OK);
    let before = f.cart("s1");
    let v = assert_error(
        f.checkout("s1").await,
        StatusCode::CONFLICT,
        "not_enough_stock",
        &["p2", "requested 3", "only 1 left"],
    )
    .await;
    assert_eq!(
        (&v["productId"], &v["available"]),
        (&json!("p2"), &json!(1))
    );
    assert_eq!(
        f.stock("p1"),
        (5, true),
        "the line with stock is not sold either"
    );
    assert_eq!(f.stock("p2"), (1, true));
    assert_eq!(f.cart("s1"), before, "the cart is kept");

    // A cart naming a product deleted since is the cart's fault: 409, nothing sold.
    f.send(reqwest::Method::DELETE, "/Product/p2", "").await;
    assert_error(
        f.checkout("s1").await,
        StatusCode::CONFLICT,
        "unknown_product",
        &["p2"],
    )
    .await;
    assert_eq!(f.stock("p1"), (5, true));
    f.db.check_integrity().unwrap();
    f.server.shutdown().await;
}

#[tokio::test]
async fn checkout_path_methods_and_session_encoding() {
    let f = start().await;
    let r = f.http.get(f.url("/Cart/s1/checkout")).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "POST, OPTIONS");
    assert_error(
        r,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &["GET"],
    )
    .await;
    let r = f
        .send(reqwest::Method::PUT, "/Cart/s1/checkout", "{}")
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = f
        .http
        .request(reqwest::Method::OPTIONS, f.url("/Cart/s1/checkout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["allow"], "POST, OPTIONS");

    // Session ids are percent-decoded.
    f.add(json!({"productId": "p1", "sessionId": "a b/ü", "quantity": 1}))
        .await;
    let r = f.checkout("a%20b%2F%C3%BC").await;
    assert_eq!(r.status(), StatusCode::OK);
    let order: Value = r.json().await.unwrap();
    assert_eq!(order["sessionId"], "a b/ü");
    assert_error(
        f.checkout("%FF").await,
        StatusCode::BAD_REQUEST,
        "invalid_session",
        &[],
    )
    .await;
    // Not a checkout path: the REST API answers.
    let r = f
        .send(reqwest::Method::POST, "/Cart/s1/checkout/x", "")
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checkouts_never_oversell() {
    const BUYERS: usize = 20;
    const UNITS: i32 = 5;
    let f = start().await;
    f.db.write(|tx| tx.put(&product("last", 99.0, UNITS)))
        .unwrap();
    for b in 0..BUYERS {
        created_id(
            f.add(json!({"productId": "last", "sessionId": format!("buyer{b}"), "quantity": 1}))
                .await,
        )
        .await;
    }
    let start = Arc::new(tokio::sync::Barrier::new(BUYERS));
    let buyers: Vec<_> = (0..BUYERS)
        .map(|b| {
            let url = f.url(&format!("/Cart/buyer{b}/checkout"));
            let start = start.clone();
            tokio::spawn(async move {
                // A client (and connection) of its own per buyer.
                let http = common::admin_client();
                start.wait().await;
                let r = http.post(url).send().await.unwrap();
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                (b, status, body)
            })
        })
        .collect();
    let mut sold = Vec::new();
    let mut refused = 0;
    for buyer in buyers {
        let (b, status, body) = buyer.await.unwrap();
        match status {
            StatusCode::OK => {
                assert_eq!(body["itemCount"], 1);
                sold.push(b);
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"], "not_enough_stock", "{body}");
                assert_eq!(body["available"], 0, "{body}");
                refused += 1;
                assert_eq!(
                    f.cart(&format!("buyer{b}")).len(),
                    1,
                    "a refused buyer keeps the cart"
                );
            }
            other => panic!("buyer {b}: unexpected {other}: {body}"),
        }
    }
    assert_eq!(sold.len(), UNITS as usize, "sold to {sold:?}");
    assert_eq!(refused, BUYERS - UNITS as usize);
    assert_eq!(f.stock("last"), (0, false));
    for b in sold {
        assert!(f.cart(&format!("buyer{b}")).is_empty());
    }
    f.db.check_integrity().unwrap();
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_of_one_product_merge_into_one_item() {
    let f = start().await;
    f.db.write(|tx| tx.put(&product("many", 1.0, 100))).unwrap();
    let adds: Vec<_> = (0..12)
        .map(|_| {
            let url = f.url("/CartItem/");
            tokio::spawn(async move {
                let r = common::admin_client()
                    .post(url)
                    .json(&json!({"productId": "many", "sessionId": "s1", "quantity": 2}))
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut ids = Vec::new();
    for add in adds {
        let (status, id) = add.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{id}");
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "every add answered with the same item: {ids:?}"
    );
    let items = f.cart("s1");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].quantity, 24);
    f.server.shutdown().await;
}

#[tokio::test]
async fn openapi_documents_the_checkout() {
    let f = start().await;
    let doc = f.get_json("/openapi").await;
    let op = &doc["paths"]["/Cart/{sessionId}/checkout"]["post"];
    assert_eq!(op["operationId"], "checkoutCart");
    for status in ["200", "404", "409"] {
        assert!(op["responses"][status].is_object(), "{status}");
    }
    assert!(doc["components"]["schemas"]["Order"].is_object());
    assert!(
        doc["paths"]["/Product/{id}"]["get"].is_object(),
        "the tables are documented too"
    );
    assert_eq!(doc["servers"][0]["url"], f.base);
    f.server.shutdown().await;
}

#[test]
fn import_files_skip_bad_rows_and_reimport_idempotently() {
    let db = Database::temporary().unwrap();
    db.register::<Product>().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("products.json");
    std::fs::write(
        &json_path,
        r#"[
{"id":"j1","name":"J1","price":1.25,"categoryId":"toys","inStock":true,"stockQuantity":4},
{"id":"j2","name":"J2","price":"free","categoryId":"toys","inStock":true,"stockQuantity":4},
{"id":"j3","name":"J3","price":3,"categoryId":"books","inStock":false,"stockQuantity":0}
]"#,
    )
    .unwrap();
    let csv_path = dir.path().join("products.csv");
    std::fs::write(
        &csv_path,
        "id,name,price,categoryId,inStock,stockQuantity\n\
         c1,C1,5,toys,true,2\n\
         c2,C2,6,toys,true,-\n\
         c3,\"C3, the third\",7.5,garden,false,0\n",
    )
    .unwrap();
    let hidden = indicatif::ProgressBar::hidden();
    for round in 0..2 {
        let json = import::import_file(&db, Product::DEF, &json_path, None, &hidden).unwrap();
        let csv = import::import_file(&db, Product::DEF, &csv_path, None, &hidden).unwrap();
        let (new, replaced) = if round == 0 { (2, 0) } else { (0, 2) };
        assert_eq!(
            (json.created, json.replaced),
            (new, replaced),
            "round {round}"
        );
        assert_eq!(
            (csv.created, csv.replaced),
            (new, replaced),
            "round {round}"
        );
        assert_eq!(json.skipped.len(), 1);
        assert_eq!((json.skipped[0].line, json.skipped[0].record), (3, 2));
        assert!(
            json.skipped[0].reason.contains("price"),
            "{}",
            json.skipped[0]
        );
        assert_eq!(csv.skipped.len(), 1);
        assert_eq!((csv.skipped[0].line, csv.skipped[0].record), (3, 2));
        assert!(
            csv.skipped[0].reason.contains("stockQuantity"),
            "{}",
            csv.skipped[0]
        );
    }
    let all: Vec<Product> = db.read(|tx| tx.query(&Query::new())).unwrap();
    let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c3", "j1", "j3"]);
    assert_eq!(all[1].name, "C3, the third");
    assert_eq!(all[2].price, 1.25);
    db.check_integrity().unwrap();
}
