//! `/graphql` through real clients: reqwest for queries and mutations, tokio-tungstenite
//! speaking graphql-transport-ws for subscriptions. The storefront's tables and its stock
//! rule (registered with `App::validate`, as examples/storefront/main.rs does).

mod common;
use common::schema;
#[path = "../examples/storefront/shop.rs"]
#[allow(dead_code)]
mod shop;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use harper::prelude::*;
use harper::{App, Server};
use reqwest::StatusCode;
use schema::{CartItem, Category, Product};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn product(id: &str, category: &str, price: f64, stock: i32) -> Product {
    Product {
        id: id.into(),
        name: format!("Product {id}"),
        description: None,
        price,
        category_id: category.into(),
        in_stock: stock > 0,
        stock_quantity: stock,
        image_url: None,
        created_at: None,
        category: Link::new(),
    }
}

struct Fixture {
    server: Server,
    url: String,
    db: Database,
    http: reqwest::Client,
}

/// Categories toys and books; products t1..t3 (toys) and b1, b2 (books).
async fn start() -> Fixture {
    let db = Database::temporary().unwrap();
    let app = common::with_admin(
        App::new(db.clone())
            .table::<Product>()
            .table::<Category>()
            .table::<CartItem>()
            .validate::<CartItem>(shop::cart_item_rule)
            .owner::<CartItem>(shop::cart_owner),
    );
    db.write(|tx| {
        for (id, name) in [("toys", "Toys"), ("books", "Books")] {
            tx.put(&Category {
                id: id.into(),
                name: name.into(),
                description: None,
                products: Links::new(),
            })?;
        }
        tx.put(&product("t1", "toys", 5.0, 5))?;
        tx.put(&product("t2", "toys", 15.0, 0))?;
        tx.put(&product("t3", "toys", 25.0, 2))?;
        tx.put(&product("b1", "books", 8.0, 1))?;
        tx.put(&product("b2", "books", 12.0, 9))
    })
    .unwrap();
    let server = app.bind("127.0.0.1:0").await.unwrap();
    Fixture {
        url: format!("http://{}/graphql", server.local_addr()),
        server,
        db,
        http: common::admin_client(),
    }
}

impl Fixture {
    async fn post(&self, query: &str, variables: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(
            r.headers()["content-type"],
            "application/graphql-response+json; charset=utf-8"
        );
        (status, r.json().await.unwrap())
    }

    async fn data(&self, query: &str) -> Value {
        let (status, body) = self.post(query, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }
}

/// `url?query=<query>`, percent-encoded.
fn get_url(url: &str, query: &str) -> String {
    let mut out = format!("{url}?query=");
    for b in query.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn harpers_query_shape_by_key_and_by_attribute() {
    let f = start().await;
    let d = f.data(r#"{ Product(id: "t1") { id name price } }"#).await;
    assert_eq!(
        d,
        json!({"Product": [{"id": "t1", "name": "Product t1", "price": 5.0}]})
    );
    let d = f
        .data(r#"{ Product(categoryId: "toys") { id inStock } }"#)
        .await;
    assert_eq!(
        d["Product"],
        json!([
            {"id": "t1", "inStock": true},
            {"id": "t2", "inStock": false},
            {"id": "t3", "inStock": true}
        ])
    );
    // Several equality arguments are a conjunction; none matching is an empty list.
    let d = f
        .data(r#"{ Product(categoryId: "toys", inStock: false) { id } }"#)
        .await;
    assert_eq!(d["Product"], json!([{"id": "t2"}]));
    let d = f.data(r#"{ Product(id: "nope") { id } }"#).await;
    assert_eq!(d["Product"], json!([]));

    // GET ?query= works too.
    let r = f
        .http
        .get(get_url(&f.url, r#"{ Category(id: "books") { name } }"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"data": {"Category": [{"name": "Books"}]}}));
    f.server.shutdown().await;
}

#[tokio::test]
async fn filter_sort_limit_offset_and_variables() {
    let f = start().await;
    let d = f
        .data(r#"{ Product(filter: "price=gt=6&price=lt=20", sort: ["-price"]) { id price } }"#)
        .await;
    assert_eq!(
        d["Product"],
        json!([{"id": "t2", "price": 15.0}, {"id": "b2", "price": 12.0}, {"id": "b1", "price": 8.0}])
    );
    let d = f
        .data(r#"{ Product(sort: "price", limit: 2, offset: 1) { id } }"#)
        .await;
    assert_eq!(d["Product"], json!([{"id": "b1"}, {"id": "b2"}]));
    // Relationship conditions in the filter, combined with an equality argument.
    let d = f
        .data(r#"{ Product(filter: "category.name=Books", inStock: true, sort: "id") { id } }"#)
        .await;
    assert_eq!(d["Product"], json!([{"id": "b1"}, {"id": "b2"}]));
    let (status, body) = f
        .post(
            "query($c: ID) { Product(categoryId: $c, limit: 1) { id } }",
            json!({"c": "books"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["Product"], json!([{"id": "b1"}]));
    f.server.shutdown().await;
}

#[tokio::test]
async fn relationships_resolve_both_ways_in_bounded_batches() {
    let f = start().await;
    let d = f
        .data(r#"{ Product(id: "b1") { name category { name } } }"#)
        .await;
    assert_eq!(
        d["Product"],
        json!([{"name": "Product b1", "category": {"name": "Books"}}])
    );
    let d = f
        .data(r#"{ Category(sort: "id") { id products { id price } } }"#)
        .await;
    assert_eq!(
        d["Category"],
        json!([
            {"id": "books", "products": [{"id": "b1", "price": 8.0}, {"id": "b2", "price": 12.0}]},
            {"id": "toys", "products": [
                {"id": "t1", "price": 5.0}, {"id": "t2", "price": 15.0}, {"id": "t3", "price": 25.0}
            ]}
        ])
    );

    // Three levels over every product: one query for the products, then one per
    // relationship level (category, then the categories' products), not one per parent.
    let r = f
        .http
        .post(&f.url)
        .header("x-harper-stats", "1")
        .json(&json!({"query": "{ Product { id category { name products { id } } } }"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    let products = body["data"]["Product"].as_array().unwrap();
    assert_eq!(products.len(), 5);
    assert!(
        products
            .iter()
            .all(|p| !p["category"]["products"].as_array().unwrap().is_empty())
    );
    let stats = &body["extensions"]["harper"];
    assert_eq!(stats["queries"], 3, "{stats}");
    // 5 products + 2 categories + 5 products of those categories.
    assert_eq!(stats["rows"], 12, "{stats}");

    // Same through the reverse direction: 2 categories, one batched load of their products.
    let r = f
        .http
        .post(&f.url)
        .header("x-harper-stats", "1")
        .json(&json!({"query": "{ Category { products { name category { id } } } }"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["extensions"]["harper"]["queries"], 3, "{body}");
    f.server.shutdown().await;
}

#[tokio::test]
async fn mutations_create_update_patch_delete() {
    let f = start().await;
    let (status, body) = f
        .post(
            r#"mutation { createCategory(data: {id: "games", name: "Games"}) { id name } }"#,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["createCategory"],
        json!({"id": "games", "name": "Games"})
    );
    assert_eq!(
        f.db.get::<Category>("games").unwrap().map(|c| c.name),
        Some("Games".to_owned())
    );
    // Creating it again is refused with a code.
    let (_, body) = f
        .post(
            r#"mutation { createCategory(data: {id: "games", name: "Again"}) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "conflict",
        "{body}"
    );
    assert_eq!(body["errors"][0]["path"], json!(["createCategory"]));

    // An id is generated when absent.
    let (_, body) = f
        .post(
            r#"mutation($d: CategoryInput!) { createCategory(data: $d) { id name } }"#,
            json!({"d": {"name": "Garden"}}),
        )
        .await;
    let id = body["data"]["createCategory"]["id"].as_str().unwrap();
    assert!(!id.is_empty());

    let (_, body) = f
        .post(
            r#"mutation { updateCategory(id: "games", data: {name: "Board games", description: "d"}) { id name description } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["updateCategory"],
        json!({"id": "games", "name": "Board games", "description": "d"})
    );
    let (_, body) = f
        .post(
            r#"mutation { patchProduct(id: "t1", data: {price: 6.5}) { id name price } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["patchProduct"],
        json!({"id": "t1", "name": "Product t1", "price": 6.5})
    );
    assert_eq!(
        f.db.get::<Product>("t1").unwrap().map(|p| p.price),
        Some(6.5)
    );
    // Validation as REST: a wrong type is refused, nothing stored.
    let (_, body) = f
        .post(
            r#"mutation { patchProduct(id: "t1", data: {stockQuantity: 1e20}) { id } }"#,
            json!({}),
        )
        .await;
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    let (_, body) = f
        .post(
            r#"mutation { patchProduct(id: "nope", data: {price: 1}) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "not_found",
        "{body}"
    );
    // A create missing a required attribute.
    let (_, body) = f
        .post(
            r#"mutation { createProduct(data: {id: "x", name: "x"}) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "invalid_record",
        "{body}"
    );
    assert!(f.db.get::<Product>("x").unwrap().is_none());

    let (_, body) = f
        .post(r#"mutation { deleteCategory(id: "games") }"#, json!({}))
        .await;
    assert_eq!(body["data"]["deleteCategory"], true);
    let (_, body) = f
        .post(r#"mutation { deleteCategory(id: "games") }"#, json!({}))
        .await;
    assert_eq!(body["data"]["deleteCategory"], false);

    // Mutations are not sent with GET.
    let r = f
        .http
        .get(get_url(&f.url, r#"mutation { deleteProduct(id: "t1") }"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(f.db.get::<Product>("t1").unwrap().is_some());
    f.server.shutdown().await;
}

#[tokio::test]
async fn the_stock_rule_holds_through_graphql_and_rest() {
    let f = start().await;
    let create = r#"mutation($d: CartItemInput!) { createCartItem(data: $d) { id quantity product { name } } }"#;
    // t3 has 2 in stock.
    let (_, body) = f
        .post(
            create,
            json!({"d": {"id": "c1", "productId": "t3", "sessionId": "s1", "quantity": 2}}),
        )
        .await;
    assert_eq!(
        body["data"]["createCartItem"],
        json!({"id": "c1", "quantity": 2, "product": {"name": "Product t3"}}),
        "{body}"
    );
    // Over the stock (the session already holds 2): refused, with the code and message.
    let (status, body) = f
        .post(
            create,
            json!({"d": {"id": "c2", "productId": "t3", "sessionId": "s1", "quantity": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], json!({"createCartItem": null}));
    let err = &body["errors"][0];
    assert_eq!(err["extensions"]["code"], "not_enough_stock", "{body}");
    assert_eq!(
        err["message"],
        "not enough stock of t3: requested 1, only 0 left"
    );
    assert!(f.db.get::<CartItem>("c2").unwrap().is_none());
    // Another session may take none either way: stock 2 for s2 is fine, 3 is not.
    let (_, body) = f
        .post(
            create,
            json!({"d": {"id": "c3", "productId": "t3", "sessionId": "s2", "quantity": 3}}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "not_enough_stock");
    // Raising an item over the stock by patch or update is refused too.
    let (_, body) = f
        .post(
            r#"mutation { patchCartItem(id: "c1", data: {quantity: 3}) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "not_enough_stock");
    // Unknown products and bad quantities.
    let (_, body) = f
        .post(
            create,
            json!({"d": {"productId": "nope", "sessionId": "s1", "quantity": 1}}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "unknown_product");
    let (_, body) = f
        .post(
            create,
            json!({"d": {"productId": "t1", "sessionId": "s1", "quantity": 0}}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "invalid_quantity");
    assert_eq!(f.db.get::<CartItem>("c1").unwrap().unwrap().quantity, 2);

    // The same rule through REST's generic writes: 409 / 400 with the code.
    let rest = f.url.replace("/graphql", "/CartItem/");
    let r = f
        .http
        .post(&rest)
        .json(&json!({"productId": "b1", "sessionId": "s1", "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_enough_stock");
    let r = f
        .http
        .put(format!("{rest}c1"))
        .json(&json!({"productId": "t3", "sessionId": "s1", "quantity": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = f
        .http
        .patch(format!("{rest}c1"))
        .json(&json!({"quantity": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = f
        .http
        .patch(format!("{rest}c1"))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.db.get::<CartItem>("c1").unwrap().unwrap().quantity, 1);
    f.server.shutdown().await;
}

#[tokio::test]
async fn errors_follow_the_spec_and_never_500() {
    let f = start().await;
    // Syntax error: 400 with locations.
    let (status, body) = f.post("{ Product(id: ", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["message"].is_string());
    assert!(
        body["errors"][0]["locations"][0]["line"].is_number(),
        "{body}"
    );
    // Unknown field and unknown argument: 400 naming them.
    let (status, body) = f.post("{ Nope { id } }", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Nope"),
        "{body}"
    );
    let (status, body) = f
        .post("{ Product(colour: \"red\") { id } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    // A bad filter: a field error with its path and code, data null for that field.
    let (status, body) = f
        .post("{ Product(filter: \"price=zz=1\") { id } }", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["Product"]), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "invalid_query");
    let (_, body) = f.post("{ Product(limit: -1) { id } }", json!({})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limit")
    );
    // Not JSON, and a wrong method.
    let r = f.http.post(&f.url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string());
    let r = f.http.delete(&f.url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, POST, OPTIONS");
    f.server.shutdown().await;
}

#[tokio::test]
async fn introspection_and_the_explorer_page() {
    let f = start().await;
    let d = f
        .data(r#"{ __type(name: "Product") { fields { name } } __schema { mutationType { name } subscriptionType { name } } }"#)
        .await;
    let names: Vec<&str> = d["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    for n in ["id", "name", "price", "categoryId", "inStock", "category"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert_eq!(d["__schema"]["mutationType"]["name"], "Mutation");
    assert_eq!(d["__schema"]["subscriptionType"]["name"], "Subscription");
    let r = f
        .http
        .get(&f.url)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("graphiql"), "{html}");
    // The REST API is untouched beside it.
    let rest = f.url.replace("/graphql", "/Product/t1");
    let p: Value = f.http.get(rest).send().await.unwrap().json().await.unwrap();
    assert_eq!(p["id"], "t1");
    f.server.shutdown().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn recv(ws: &mut Socket) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("the socket open")
            .unwrap();
        if let Ws::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn subscriptions_over_graphql_transport_ws() {
    let f = start().await;
    let mut request = f
        .url
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    ws.send(Ws::text(json!({"type": "connection_init"}).to_string()))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    ws.send(Ws::text(
        json!({"id": "1", "type": "subscribe", "payload": {
            "query": r#"subscription { Product(categoryId: "books") { type id seq value { name price } } }"#
        }})
        .to_string(),
    ))
    .await
    .unwrap();
    ws.send(Ws::text(
        json!({"id": "2", "type": "subscribe", "payload": {
            "query": r#"subscription { Product(id: "t1") { type id value { price } } }"#
        }})
        .to_string(),
    ))
    .await
    .unwrap();
    // The current state first: b1, b2 on "1", t1 on "2".
    let mut first = Vec::new();
    for _ in 0..3 {
        let m = recv(&mut ws).await;
        assert_eq!(m["type"], "next", "{m}");
        first.push((
            m["id"].as_str().unwrap().to_owned(),
            m["payload"]["data"]["Product"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        ));
    }
    first.sort();
    assert_eq!(
        first,
        [
            ("1".into(), "b1".into()),
            ("1".into(), "b2".into()),
            ("2".into(), "t1".into())
        ] as [(String, String); 3]
    );
    // A write through a GraphQL mutation reaches the subscribers.
    let (_, body) = f
        .post(
            r#"mutation { patchProduct(id: "b2", data: {price: 11.0}) { id } }"#,
            json!({}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    let m = recv(&mut ws).await;
    assert_eq!(m["id"], "1");
    let event = &m["payload"]["data"]["Product"];
    assert_eq!(event["type"], "put");
    assert_eq!(event["id"], "b2");
    assert_eq!(event["value"], json!({"name": "Product b2", "price": 11.0}));
    assert!(event["seq"].as_u64().unwrap() > 0);
    // complete ends subscription "1"; "2" still gets t1's delete. (Messages are handled in
    // order: once "4" answers, "1" is complete.)
    ws.send(Ws::text(json!({"id": "1", "type": "complete"}).to_string()))
        .await
        .unwrap();
    ws.send(Ws::text(
        json!({"id": "4", "type": "subscribe", "payload": {
            "query": r#"subscription { Category(id: "toys") { id } }"#
        }})
        .to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(recv(&mut ws).await, json!({"type": "complete", "id": "1"}));
    let m = recv(&mut ws).await;
    assert_eq!(m["id"], "4", "{m}");
    f.db.write(|tx| {
        tx.delete::<Product>("b1")?;
        tx.delete::<Product>("t1")
    })
    .unwrap();
    let m = recv(&mut ws).await;
    assert_eq!(m["id"], "2", "{m}");
    assert_eq!(m["payload"]["data"]["Product"]["type"], "delete");
    assert_eq!(m["payload"]["data"]["Product"]["value"], Value::Null);
    // A bad subscription gets the validation error for its id (async-graphql sends it as a
    // `next` payload with `errors`, then `complete`).
    ws.send(Ws::text(
        json!({"id": "3", "type": "subscribe", "payload": {"query": "subscription { Nope { id } }"}})
            .to_string(),
    ))
    .await
    .unwrap();
    let m = recv(&mut ws).await;
    assert_eq!(m["id"], "3", "{m}");
    let message = m["payload"]["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("Nope"), "{m}");
    // Shutting down closes the socket with 1001.
    f.server.shutdown().await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = ws.next().await {
            if let Ok(Ws::Close(Some(frame))) = m {
                return Some(u16::from(frame.code));
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1001));
}
