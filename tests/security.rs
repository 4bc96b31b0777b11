//! Who may do what, through real clients: anonymous callers, wrong and forged credentials,
//! expired and rotated tokens, other owners' carts (read, write, subscribe, check out),
//! privilege escalation, rate limits, GraphQL, CORS and security headers.

mod common;

use std::time::Duration;

use common::{CartItem, Category, Product};
use futures::StreamExt;
use harper::http::Cors;
use harper::prelude::*;
use harper::{AuthConfig, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Fixture {
    server: Server,
    base: String,
    db: Database,
    /// No credentials.
    anon: reqwest::Client,
    admin: reqwest::Client,
}

fn owner(item: &CartItem, who: &Principal) -> bool {
    who.id() == Some(item.session_id.as_str())
}

async fn start_with(config: AuthConfig, cors: Option<Cors>) -> Fixture {
    let db = Database::temporary().unwrap();
    common::small_catalog(&db);
    let mut app = App::new(db.clone())
        .table::<Product>()
        .table::<Category>()
        .table::<CartItem>()
        .owner::<CartItem>(owner)
        .auth_config(config);
    if let Some(cors) = cors {
        app = app.cors(cors);
    }
    let server = common::with_admin(app).bind("127.0.0.1:0").await.unwrap();
    Fixture {
        base: format!("http://{}", server.local_addr()),
        server,
        db,
        anon: reqwest::Client::new(),
        admin: common::admin_client(),
    }
}

async fn start() -> Fixture {
    start_with(AuthConfig::default(), None).await
}

struct Session {
    id: String,
    token: String,
    refresh: String,
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn session(&self) -> Session {
        let r = self
            .anon
            .post(self.url("/auth/session"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        Session {
            id: v["principal"]["id"].as_str().unwrap().to_owned(),
            token: v["accessToken"].as_str().unwrap().to_owned(),
            refresh: v["refreshToken"].as_str().unwrap().to_owned(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.anon.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Puts cart item `id` (one unit of p01) into `owner`'s cart, as `owner`.
    async fn put_item(&self, owner: &Session, id: &str) {
        let path = format!("/CartItem/{id}");
        let body = Some(item(id, &owner.id, 1));
        let (st, answer) = self
            .call(reqwest::Method::PUT, &path, Some(&owner.token), body)
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{answer}");
    }

    fn cart_items(&self) -> usize {
        self.db
            .read(|tx| tx.query::<CartItem>(&Query::new()))
            .unwrap()
            .len()
    }
}

/// Appends what an event stream sends to `seen` until it holds `needle` (or 5 s pass).
async fn read_until(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    seen: &mut String,
    needle: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(needle) && tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), stream.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

fn item(id: &str, session: &str, quantity: i32) -> Value {
    json!({"id": id, "productId": "p01", "sessionId": session, "quantity": quantity})
}

#[tokio::test]
async fn anonymous_callers_read_the_catalog_and_nothing_else() {
    let f = start().await;
    let (s, _) = f
        .call(reqwest::Method::GET, "/Product/p01", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = f
        .call(
            reqwest::Method::GET,
            "/Product/?categoryId=toys",
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Writes to the catalog: 401 with a challenge, nothing stored.
    let r = f
        .anon
        .put(f.url("/Product/p01"))
        .json(&json!({"id":"p01","name":"x","price":1.0,"categoryId":"toys","inStock":true,"stockQuantity":1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(
        body["message"].as_str().unwrap().contains("update Product"),
        "{body}"
    );
    assert_eq!(
        f.db.get::<Product>("p01").unwrap().unwrap().name,
        "Product p01"
    );
    for (method, path) in [
        (reqwest::Method::DELETE, "/Product/p01"),
        (reqwest::Method::DELETE, "/Product/"),
        (reqwest::Method::DELETE, "/Product/?categoryId=toys"),
        (reqwest::Method::GET, "/CartItem/"),
        (reqwest::Method::GET, "/CartItem/c1"),
        (reqwest::Method::PATCH, "/Category/toys"),
    ] {
        let (s, body) = f.call(method.clone(), path, None, Some(json!({}))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
    }
    let (s, _) = f
        .call(
            reqwest::Method::POST,
            "/CartItem/",
            None,
            Some(item("c1", "s", 1)),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(f.cart_items(), 0);
    assert_eq!(
        f.db.read(|tx| tx.query::<Product>(&Query::new()))
            .unwrap()
            .len(),
        30
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn wrong_forged_and_malformed_credentials_get_401() {
    let f = start().await;
    let cases: Vec<(&str, String)> = vec![
        ("wrong password", format!("Basic {}", b64("admin:nope"))),
        (
            "unknown user",
            format!("Basic {}", b64("root:admin-test-password")),
        ),
        ("no colon", format!("Basic {}", b64("admin"))),
        ("not base64", "Basic %%%".into()),
        ("garbage bearer", "Bearer garbage".into()),
        ("forged token", format!("Bearer hat_{}", "A".repeat(43))),
        ("unknown scheme", "Digest username=admin".into()),
    ];
    for (name, header) in cases {
        let r = f
            .anon
            .get(f.url("/Product/p01"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
    // A real token with one character changed is forged too.
    let s = f.session().await;
    let mut forged = s.token.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let (st, _) = f
        .call(reqwest::Method::GET, "/Product/p01", Some(&forged), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A refresh token is not an access token.
    let (st, _) = f
        .call(reqwest::Method::GET, "/Product/p01", Some(&s.refresh), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Wrong login.
    let (st, body) = f
        .call(
            reqwest::Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "admin", "password": "nope"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    let (st, _) = f
        .call(
            reqwest::Method::POST,
            "/auth/login",
            None,
            Some(json!({"user": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    f.server.shutdown().await;
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited() {
    let config = AuthConfig {
        per_user: harper::auth::RateLimit {
            burst: 3,
            refill: Duration::from_secs(60),
        },
        ..AuthConfig::default()
    };
    let f = start_with(config, None).await;
    for _ in 0..3 {
        let (st, _) = f
            .call(
                reqwest::Method::POST,
                "/auth/login",
                None,
                Some(json!({"username": "admin", "password": "guess"})),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused for a while, with Retry-After.
    let r = f
        .anon
        .post(f.url("/auth/login"))
        .json(&json!({"username": "admin", "password": common::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Basic credentials count against the same limit.
    let r = f
        .anon
        .get(f.url("/Product/p01"))
        .basic_auth("admin", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    f.server.shutdown().await;
}

#[tokio::test]
async fn tokens_expire_refresh_rotates_and_logout_ends_them() {
    let config = AuthConfig {
        access_ttl: Duration::from_secs(1),
        ..AuthConfig::default()
    };
    let f = start_with(config, None).await;
    let (st, tokens) = f
        .call(
            reqwest::Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "admin", "password": common::ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tokens["principal"]["roles"], json!(["admin"]));
    let access = tokens["accessToken"].as_str().unwrap();
    let refresh = tokens["refreshToken"].as_str().unwrap();
    let (st, me) = f
        .call(reqwest::Method::GET, "/auth/me", Some(access), None)
        .await;
    assert_eq!((st, me["id"].clone()), (StatusCode::OK, json!("admin")));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, _) = f
        .call(reqwest::Method::GET, "/auth/me", Some(access), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "expired");
    let (st, next) = f
        .call(
            reqwest::Method::POST,
            "/auth/refresh",
            None,
            Some(json!({"refreshToken": refresh})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = f
        .call(
            reqwest::Method::POST,
            "/auth/refresh",
            None,
            Some(json!({"refreshToken": refresh})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a refresh token works once");
    let new_access = next["accessToken"].as_str().unwrap();
    let (st, _) = f
        .call(
            reqwest::Method::DELETE,
            "/Product/p02",
            Some(new_access),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = f
        .call(
            reqwest::Method::POST,
            "/auth/logout",
            Some(new_access),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = f
        .call(reqwest::Method::GET, "/auth/me", Some(new_access), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "logged out");
    f.server.shutdown().await;
}

#[tokio::test]
async fn another_owners_cart_cannot_be_read_changed_or_taken() {
    let f = start().await;
    let alice = f.session().await;
    let mallory = f.session().await;
    assert_ne!(alice.id, mallory.id);
    f.put_item(&alice, "a1").await;
    // Guests cannot write the catalog.
    let (st, _) = f
        .call(
            reqwest::Method::DELETE,
            "/Product/p01",
            Some(&mallory.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Read: the record is refused; collections show only one's own.
    let (st, body) = f
        .call(
            reqwest::Method::GET,
            "/CartItem/a1",
            Some(&mallory.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    let path = format!("/CartItem/?sessionId={}", alice.id);
    let (_, list) = f
        .call(reqwest::Method::GET, &path, Some(&mallory.token), None)
        .await;
    assert_eq!(list, json!([]));
    let (_, list) = f
        .call(reqwest::Method::GET, "/CartItem/", Some(&alice.token), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = f
        .call(
            reqwest::Method::GET,
            "/CartItem/a1.quantity",
            Some(&mallory.token),
            None,
        )
        .await;
    assert_ne!(
        list,
        json!(1),
        "a property of another's record is not readable either"
    );

    // Write: replace, patch, hand-over, delete, create in another's cart.
    let writes = [
        (
            reqwest::Method::PUT,
            "/CartItem/a1",
            Some(item("a1", &mallory.id, 5)),
        ),
        (
            reqwest::Method::PATCH,
            "/CartItem/a1",
            Some(json!({"quantity": 5})),
        ),
        (reqwest::Method::DELETE, "/CartItem/a1", None),
        (
            reqwest::Method::PUT,
            "/CartItem/m1",
            Some(item("m1", &alice.id, 1)),
        ),
        (
            reqwest::Method::POST,
            "/CartItem/",
            Some(item("m2", &alice.id, 1)),
        ),
        (
            reqwest::Method::DELETE,
            &format!("/CartItem/?sessionId={}", alice.id),
            None,
        ),
        (reqwest::Method::DELETE, "/CartItem/", None),
    ];
    for (method, path, body) in writes {
        let (st, answer) = f
            .call(method.clone(), path, Some(&mallory.token), body)
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
    }
    let a1 = f.db.get::<CartItem>("a1").unwrap().unwrap();
    assert_eq!(
        (a1.quantity, a1.session_id.as_str()),
        (1, alice.id.as_str())
    );
    assert_eq!(f.cart_items(), 1);

    // Alice may hand nothing over either: her item stays hers.
    let (st, _) = f
        .call(
            reqwest::Method::PATCH,
            "/CartItem/a1",
            Some(&alice.token),
            Some(json!({"sessionId": mallory.id})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Her own changes work, and deleting her own by query.
    let (st, _) = f
        .call(
            reqwest::Method::PATCH,
            "/CartItem/a1",
            Some(&alice.token),
            Some(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = f
        .call(
            reqwest::Method::DELETE,
            &format!("/CartItem/?sessionId={}", alice.id),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(f.cart_items(), 0);
    // The whole collection: admins only.
    let r = f.admin.delete(f.url("/CartItem/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    f.server.shutdown().await;
}

#[tokio::test]
async fn subscriptions_are_authorized_at_connect_and_filtered_per_record() {
    let f = start().await;
    let alice = f.session().await;
    let mallory = f.session().await;
    f.put_item(&alice, "a1").await;

    // SSE: anonymous is refused; Mallory's stream of the collection shows only hers.
    let r = f
        .anon
        .get(f.url("/CartItem/"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = f
        .anon
        .get(f.url("/CartItem/a1"))
        .header("accept", "text/event-stream")
        .bearer_auth(&mallory.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "another's record");
    let mut stream = f
        .anon
        .get(f.url("/CartItem/"))
        .header("accept", "text/event-stream")
        .bearer_auth(&mallory.token)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    // Alice writes twice, Mallory once: Mallory's stream carries only her own record.
    for (who, id, session) in [
        (&alice.token, "a2", &alice.id),
        (&mallory.token, "m1", &mallory.id),
        (&alice.token, "a3", &alice.id),
    ] {
        let (st, _) = f
            .call(
                reqwest::Method::PUT,
                &format!("/CartItem/{id}"),
                Some(who),
                Some(item(id, session, 1)),
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
    }
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "\"m1\"").await;
    assert!(seen.contains("\"m1\""), "{seen}");
    // A little longer, in case a later event slipped through.
    if let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_millis(300), stream.next()).await
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        !seen.contains("a1") && !seen.contains("a2") && !seen.contains("a3"),
        "{seen}"
    );
    assert!(!seen.contains(&alice.id), "{seen}");

    // WebSocket: bad credentials and another's record close with 1008 and the reason.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws_url = format!("ws://{}/CartItem/a1", f.server.local_addr());
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", mallory.token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match close {
        tokio_tungstenite::tungstenite::Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert!(frame.reason.contains("another owner"), "{}", frame.reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer hat_forged".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(close, tokio_tungstenite::tungstenite::Message::Close(Some(ref c)) if u16::from(c.code) == 1008),
        "{close:?}"
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_resuming_owner_learns_of_its_records_deleted_while_away() {
    let f = start().await;
    let alice = f.session().await;
    f.put_item(&alice, "a1").await;
    let since = f.db.last_seq();
    let (st, _) = f
        .call(
            reqwest::Method::DELETE,
            "/CartItem/a1",
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut stream = f
        .anon
        .get(f.url(&format!("/CartItem/?since={since}")))
        .header("accept", "text/event-stream")
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "\"delete\"").await;
    assert!(
        seen.contains("\"delete\"") && seen.contains("\"a1\""),
        "{seen}"
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn graphql_obeys_the_same_permissions() {
    let f = start().await;
    let alice = f.session().await;
    let mallory = f.session().await;
    f.put_item(&alice, "a1").await;
    let gql = |token: Option<&str>, query: &str| {
        let mut req = f
            .anon
            .post(f.url("/graphql"))
            .json(&json!({"query": query}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let r = gql(None, r#"mutation { deleteProduct(id: "p01") }"#).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "unauthorized", "{r}");
    assert!(f.db.get::<Product>("p01").unwrap().is_some());
    let r = gql(Some(&mallory.token), r#"{ CartItem { id sessionId } }"#).await;
    assert_eq!(r["data"]["CartItem"], json!([]), "{r}");
    let r = gql(Some(&alice.token), r#"{ CartItem { id } }"#).await;
    assert_eq!(r["data"]["CartItem"], json!([{"id": "a1"}]), "{r}");
    let r = gql(
        Some(&mallory.token),
        r#"mutation { patchCartItem(id: "a1", data: {quantity: 9}) { id } }"#,
    )
    .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "forbidden", "{r}");
    let r = gql(
        Some(&mallory.token),
        r#"mutation { deleteCartItem(id: "a1") }"#,
    )
    .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "forbidden", "{r}");
    assert_eq!(f.db.get::<CartItem>("a1").unwrap().unwrap().quantity, 1);
    let r = gql(None, r#"{ CartItem { id } }"#).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "unauthorized", "{r}");
    f.server.shutdown().await;
}

#[tokio::test]
async fn users_cannot_raise_their_own_privileges() {
    let f = start().await;
    let r = f
        .admin
        .post(f.url("/auth/users"))
        .json(&json!({"username": "carol", "password": "carol-pw", "roles": ["support"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let carol = reqwest::Client::new();
    let as_carol = |m: reqwest::Method, path: &str| {
        carol
            .request(m, f.url(path))
            .basic_auth("carol", Some("carol-pw"))
    };
    let r = as_carol(reqwest::Method::PATCH, "/auth/users/carol")
        .json(&json!({"roles": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = as_carol(reqwest::Method::POST, "/auth/users")
        .json(&json!({"username": "evil", "password": "x", "roles": ["admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = as_carol(reqwest::Method::PATCH, "/auth/users/admin")
        .json(&json!({"password": "taken-over"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = as_carol(reqwest::Method::GET, "/auth/users")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Unknown attributes are refused rather than ignored.
    let r = as_carol(reqwest::Method::PATCH, "/auth/users/carol")
        .json(&json!({"password": "new-pw", "isAdmin": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = as_carol(reqwest::Method::GET, "/auth/me")
        .send()
        .await
        .unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["roles"], json!(["support"]));
    // Her own password she may change; the old one stops working.
    let r = as_carol(reqwest::Method::PATCH, "/auth/users/carol")
        .json(&json!({"password": "new-pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = as_carol(reqwest::Method::GET, "/auth/me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // An admin grants roles; the listing never shows a hash.
    let r = f
        .admin
        .patch(f.url("/auth/users/carol"))
        .json(&json!({"roles": ["support", "admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let list = f
        .admin
        .get(f.url("/auth/users"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("carol") && !list.contains("argon2"), "{list}");
    f.server.shutdown().await;
}

#[tokio::test]
async fn cors_is_off_by_default_and_exact_when_configured() {
    let f = start().await;
    let r = f
        .anon
        .get(f.url("/Product/p01"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // Security headers on every response.
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    f.server.shutdown().await;

    let f = start_with(
        AuthConfig::default(),
        Some(Cors::allow_origins(["https://shop.example"])),
    )
    .await;
    let preflight = |origin: &'static str| {
        f.anon
            .request(reqwest::Method::OPTIONS, f.url("/Product/p01"))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .send()
    };
    let r = preflight("https://shop.example").await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Authorization")
    );
    let r = preflight("https://evil.example").await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = f
        .anon
        .get(f.url("/Product/p01"))
        .header("origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn an_owner_permission_without_an_owner_rule_refuses_to_start() {
    let db = Database::temporary().unwrap();
    let err = App::new(db)
        .table::<CartItem>()
        .bootstrap_admin(false)
        .bind("127.0.0.1:0")
        .await
        .err()
        .expect("bind must fail");
    assert!(err.to_string().contains("App::owner::<CartItem>"), "{err}");
}
