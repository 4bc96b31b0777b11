//! Repeated GraphQL queries of the simplest shape (one table field, constant arguments,
//! stored attributes only) are answered from a cached plan instead of the executor. The
//! first sight of a query text always goes through the executor; so for every query here the
//! first answer (executor), the repeated answers (plan, when the shape allows one) and an
//! answer with `x-harper-stats` (always the executor) must hold the same bytes of `data`, and
//! permissions, errors and changed records must show exactly as they do through the executor.

mod common;

use std::collections::BTreeMap;

use common::schema::{CartItem, Category, Product};
use harper::prelude::*;
use harper::{App, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Field shapes a plan writes: lists, optional lists, JSON values, integers of every size,
/// floats, strings with escapes.
#[table]
#[export(read = "public", write = "admin")]
#[derive(Debug, Clone)]
pub struct Gadget {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub name: String,
    pub note: Option<String>,
    #[indexed]
    pub tags: Vec<String>,
    pub ratings: Option<Vec<i64>>,
    pub extra: serde_json::Value,
    pub attributes: Option<BTreeMap<String, String>>,
    #[indexed]
    pub weight: f64,
    pub ratio: f32,
    pub big: u64,
    pub long: i64,
    pub small: u8,
    #[indexed]
    pub active: bool,
}

fn gadget(id: &str, name: &str, weight: f64) -> Gadget {
    Gadget {
        id: id.into(),
        name: name.into(),
        note: None,
        tags: vec![],
        ratings: None,
        extra: Value::Null,
        attributes: None,
        weight,
        ratio: 0.5,
        big: 0,
        long: 0,
        small: 0,
        active: true,
    }
}

struct Fixture {
    server: Server,
    url: String,
    db: Database,
    anon: reqwest::Client,
    admin: reqwest::Client,
}

async fn start() -> Fixture {
    let db = Database::temporary().unwrap();
    let app = common::with_admin(
        App::new(db.clone())
            .table::<Product>()
            .table::<Category>()
            .table::<CartItem>()
            .table::<Gadget>()
            .owner::<CartItem>(|item: &CartItem, who: &Principal| {
                who.id() == Some(item.session_id.as_str())
            }),
    );
    common::small_catalog(&db);
    db.write(|tx| {
        let mut g = gadget(
            "g1",
            "Quote \" and \\ backslash\nnewline\ttab \u{1} ctl",
            1.0,
        );
        g.note = Some("Unicode: é 日本 🎉 \u{2028} \u{7f}".into());
        g.tags = vec!["a".into(), "b \"q\"".into()];
        g.ratings = Some(vec![-1, 0, i64::MAX, i64::MIN]);
        g.extra = json!({"z": 1, "a": [1.5, null, {"k": "v"}], "m": -0.0, "e": 1e-7, "big": 1e300});
        g.attributes = Some(BTreeMap::from([
            ("zeta".to_owned(), "last".to_owned()),
            ("alpha".to_owned(), "first".to_owned()),
        ]));
        g.ratio = 0.1;
        g.big = u64::MAX;
        g.long = i64::MIN;
        g.small = 255;
        tx.put(&g)?;
        let mut g = gadget("g2", "plain", 2.5);
        g.extra = json!("just a string");
        g.active = false;
        tx.put(&g)?;
        let mut g = gadget("g3", "plain", 1e21);
        g.extra = json!([1, 2, 3]);
        g.tags = vec!["a".into()];
        tx.put(&g)?;
        let mut g = gadget("g4", "", -0.000001);
        g.extra = json!(12345678901234567890u64);
        tx.put(&g)
    })
    .unwrap();
    let server = app.bind("127.0.0.1:0").await.unwrap();
    Fixture {
        url: format!("http://{}/graphql", server.local_addr()),
        server,
        db,
        anon: reqwest::Client::new(),
        admin: common::admin_client(),
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

async fn get(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    stats: bool,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = client.get(get_url(url, query));
    if stats {
        req = req.header("x-harper-stats", "1");
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    assert_eq!(
        r.headers()["content-type"],
        "application/graphql-response+json; charset=utf-8"
    );
    (status, r.text().await.unwrap())
}

/// The answer with `x-harper-stats` is the executor's with
/// `,"extensions":{"harper":{"queries":..,"rows":..}}` after `data`; this is that answer
/// without it.
fn without_stats(body: &str) -> String {
    let Some(start) = body.find(",\"extensions\":{\"harper\":{") else {
        return body.to_owned();
    };
    let end = start + body[start..].find("}}").expect("the stats object ends") + 2;
    format!("{}{}", &body[..start], &body[end..])
}

/// Sends `query` several times (with `token`) and checks every answer holds the same bytes;
/// returns the status and body.
async fn same_every_time(
    f: &Fixture,
    client: &reqwest::Client,
    query: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let first = get(client, &f.url, query, false, token).await;
    for _ in 0..3 {
        let again = get(client, &f.url, query, false, token).await;
        assert_eq!(again, first, "repeated answer differs for {query}");
    }
    let (status, body) = get(client, &f.url, query, true, token).await;
    assert_eq!(status, first.0, "{query}");
    assert_eq!(
        without_stats(&body),
        first.1,
        "executor answer differs for {query}"
    );
    first
}

#[tokio::test]
async fn repeated_queries_answer_exactly_as_the_executor() {
    let f = start().await;
    let all = "id name note tags ratings extra attributes weight ratio big long small active";
    let queries = [
        format!("{{ Gadget {{ {all} }} }}"),
        format!(r#"{{ Gadget(id: "g1") {{ {all} }} }}"#),
        r#"{ Gadget(id: "g1") { active small long big ratio weight attributes extra ratings tags note name id } }"#.to_owned(),
        r#"{ g: Gadget(name: "plain") { key: id w: weight extra n: note } }"#.to_owned(),
        r#"{ Gadget(tags: "a", sort: ["-weight"]) { id tags } }"#.to_owned(),
        r#"{ Gadget(filter: "weight=gt=1", sort: "id", limit: 2, offset: 1) { id weight } }"#.to_owned(),
        r#"{ Gadget(active: false) { id active } }"#.to_owned(),
        r#"{ Gadget(id: "missing") { id } }"#.to_owned(),
        r#"query Named { Gadget(weight: 2.5) { id weight } }"#.to_owned(),
        r#"{ Product(categoryId: "toys", inStock: true, limit: 3) { id name description price categoryId inStock stockQuantity imageUrl createdAt } }"#.to_owned(),
        r#"{ Product(id: "p01") { id price } }"#.to_owned(),
        r#"{ Product(sort: ["-price"], limit: 0) { id } }"#.to_owned(),
        // Shapes the plan leaves to the executor: they must still repeat exactly.
        r#"{ Product(id: "p01") { id category { name } } }"#.to_owned(),
        r#"{ Product(id: "p01") { __typename id } }"#.to_owned(),
        r#"{ Product(id: "p01") { id id } }"#.to_owned(),
        r#"{ Product(id: "p01") { id @include(if: true) } }"#.to_owned(),
        r#"{ Product(id: "p01") { ...F } } fragment F on Product { id }"#.to_owned(),
        r#"{ a: Product(id: "p01") { id } b: Product(id: "p02") { id } }"#.to_owned(),
        r#"{ Category(id: "toys") { products { id } } }"#.to_owned(),
    ];
    for q in &queries {
        let (status, body) = same_every_time(&f, &f.anon, q, None).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v.get("errors").is_none(), "{q}: {body}");
    }

    // POST (no variables) is planned the same way; with variables it is executed.
    for (body, expect) in [
        (
            json!({"query": r#"{ Gadget(id: "g2") { id extra active } }"#}),
            r#"{"data":{"Gadget":[{"id":"g2","extra":"just a string","active":false}]}}"#,
        ),
        (
            json!({"query": "query($id: ID) { Gadget(id: $id) { id weight } }", "variables": {"id": "g3"}}),
            r#"{"data":{"Gadget":[{"id":"g3","weight":1e+21}]}}"#,
        ),
    ] {
        for _ in 0..3 {
            let r = f.anon.post(&f.url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.text().await.unwrap(), expect);
        }
    }

    // `+` is a space in a query string, as everywhere in form encoding.
    let q = r#"{ Product(id: "p02") { id price } }"#;
    let plus = format!(
        "{}?query={}",
        f.url,
        q.replace(' ', "+").replace('"', "%22")
    );
    for _ in 0..3 {
        let r = f.anon.get(&plus).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"data":{"Product":[{"id":"p02","price":2.0}]}}"#
        );
    }

    // The values, not only their agreement.
    let (_, body) = get(
        &f.anon,
        &f.url,
        r#"{ Gadget(id: "g1") { name note tags ratings extra attributes ratio big long small } }"#,
        false,
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["Gadget"][0],
        json!({
            "name": "Quote \" and \\ backslash\nnewline\ttab \u{1} ctl",
            "note": "Unicode: é 日本 🎉 \u{2028} \u{7f}",
            "tags": ["a", "b \"q\""],
            "ratings": [-1, 0, i64::MAX, i64::MIN],
            "extra": {"z": 1, "a": [1.5, null, {"k": "v"}], "m": -0.0, "e": 1e-7, "big": 1e300},
            "attributes": {"alpha": "first", "zeta": "last"},
            "ratio": 0.1f32 as f64,
            "big": u64::MAX,
            "long": i64::MIN,
            "small": 255,
        })
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_plan_reads_current_records_not_earlier_answers() {
    let f = start().await;
    let q = r#"{ Product(id: "p01") { id price stockQuantity } }"#;
    let (_, before) = same_every_time(&f, &f.anon, q, None).await;
    assert!(before.contains("\"price\":1.0"), "{before}");
    f.db.write(|tx| tx.patch::<Product>("p01", json!({"price": 99.5, "stockQuantity": 7})))
        .unwrap();
    let (_, after) = same_every_time(&f, &f.anon, q, None).await;
    assert_eq!(
        after,
        r#"{"data":{"Product":[{"id":"p01","price":99.5,"stockQuantity":7}]}}"#
    );
    f.db.write(|tx| tx.delete::<Product>("p01").map(|_| ()))
        .unwrap();
    let (_, gone) = same_every_time(&f, &f.anon, q, None).await;
    assert_eq!(gone, r#"{"data":{"Product":[]}}"#);
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_plan_applies_each_callers_permissions() {
    let f = start().await;
    // Two guest sessions, each with an item in its cart.
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let r = f
            .anon
            .post(f.url.replace("/graphql", "/auth/session"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        sessions.push((
            v["principal"]["id"].as_str().unwrap().to_owned(),
            v["accessToken"].as_str().unwrap().to_owned(),
        ));
    }
    for (i, (id, _)) in sessions.iter().enumerate() {
        f.db.write(|tx| {
            tx.put(&common::cart_item(
                &format!("c{i}"),
                "p01",
                id,
                1 + i as i32,
            ))
        })
        .unwrap();
    }
    let q = "{ CartItem { id sessionId quantity } }";
    // Alice first (the executor), then again (the plan): her item only.
    let (alice, alice_token) = &sessions[0];
    let (status, body) = same_every_time(&f, &f.anon, q, Some(alice_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!(r#"{{"data":{{"CartItem":[{{"id":"c0","sessionId":"{alice}","quantity":1}}]}}}}"#)
    );
    // The same text for another session: its own item, not Alice's.
    let (bob, bob_token) = &sessions[1];
    let (_, body) = same_every_time(&f, &f.anon, q, Some(bob_token)).await;
    assert_eq!(
        body,
        format!(r#"{{"data":{{"CartItem":[{{"id":"c1","sessionId":"{bob}","quantity":2}}]}}}}"#)
    );
    // With an id that is not one's own: nothing.
    let q1 = r#"{ CartItem(id: "c0") { id } }"#;
    let (_, body) = same_every_time(&f, &f.anon, q1, Some(alice_token)).await;
    assert_eq!(body, r#"{"data":{"CartItem":[{"id":"c0"}]}}"#);
    let (_, body) = same_every_time(&f, &f.anon, q1, Some(bob_token)).await;
    assert_eq!(body, r#"{"data":{"CartItem":[]}}"#);
    // Without credentials: the executor's error, every time.
    let (status, body) = same_every_time(&f, &f.anon, q, None).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["CartItem"], Value::Null, "{body}");
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "unauthorized",
        "{body}"
    );
    // The admin reads every item.
    let (_, body) = same_every_time(&f, &f.admin, q, None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["CartItem"].as_array().map(Vec::len), Some(2));
    f.server.shutdown().await;
}

#[tokio::test]
async fn errors_repeat_as_the_executor_reports_them() {
    let f = start().await;
    for (q, status) in [
        ("{ Product(id: ", StatusCode::BAD_REQUEST),
        ("{ Product(nope: 1) { id } }", StatusCode::BAD_REQUEST),
        ("{ Product { nope } }", StatusCode::BAD_REQUEST),
        ("{ Product(limit: -1) { id } }", StatusCode::OK),
        (
            r#"{ Product(filter: "price=zz=1") { id } }"#,
            StatusCode::OK,
        ),
        (r#"{ Product(sort: ["nope"]) { id } }"#, StatusCode::OK),
    ] {
        let (got, body) = same_every_time(&f, &f.anon, q, None).await;
        assert_eq!(got, status, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{q}: {body}"
        );
    }
    f.server.shutdown().await;
}
