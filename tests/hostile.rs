//! Hostile input: hundreds of malformed requests, sent with a hand-written HTTP/1.1 client
//! over raw TCP and with reqwest, against the storefront's tables and routes. Every one must
//! be refused with a 4xx or a closed connection (never a 5xx), nothing may panic (a panic
//! hook counts panics in this process, the server's tasks included), nothing may be stored
//! (the change log does not move), and the server answers normally afterwards.

#[path = "../examples/storefront/api.rs"]
#[allow(dead_code)]
mod api;
mod common;
use common::schema;
#[path = "../examples/storefront/shop.rs"]
#[allow(dead_code)]
mod shop;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harper::prelude::*;
use schema::{CartItem, Category, Product};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// What a hostile request must come to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// A 4xx, or the connection closed without an answer.
    Refused,
    /// Anything but a 5xx (requests some servers accept, such as a GET without `Host`).
    NoServerError,
}

#[derive(Debug)]
enum Reply {
    Status(u16),
    Closed,
}

struct Case {
    name: String,
    request: Vec<u8>,
    expect: Expect,
    /// After sending, wait this long before closing (a slow body).
    stall: Option<Duration>,
}

fn case(name: impl Into<String>, request: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        request,
        expect,
        stall: None,
    }
}

/// An HTTP/1.1 request with `Connection: close`, a `Content-Length` for the body, and the
/// extra header lines given.
fn request(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    // As the admin, so that bodies and queries are parsed rather than refused unread.
    let mut out = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: {}\r\n",
        common::admin_authorization()
    )
    .into_bytes();
    for h in headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn json_request(method: &str, target: &str, body: &[u8]) -> Vec<u8> {
    request(method, target, &["Content-Type: application/json"], body)
}

/// Sends raw bytes and reads until the status line has come (after a WebSocket handshake:
/// until the server closes or goes quiet) or the connection closes. A server that stays
/// silent for 2 s gets the write side closed, and must then answer or close within 2 s more.
async fn raw(addr: SocketAddr, c: &Case) -> Reply {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        panic!("{}: cannot connect to the server", c.name);
    };
    // The server may answer (413, 431) and close before reading everything: keep going.
    let _ = stream.write_all(&c.request).await;
    if let Some(stall) = c.stall {
        tokio::time::sleep(stall).await;
        drop(stream);
        return Reply::Closed;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let mut shut = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if status_of(&got).is_some_and(|s| s != 101) || got.len() > 1 << 20 {
                    break;
                }
            }
            Err(_) if status_of(&got) == Some(101) => break,
            Err(_) if !shut => {
                let _ = stream.shutdown().await;
                shut = true;
            }
            Err(_) => panic!("{}: no answer and no close", c.name),
        }
    }
    status_of(&got).map_or(Reply::Closed, Reply::Status)
}

fn status_of(bytes: &[u8]) -> Option<u16> {
    let head = std::str::from_utf8(bytes.get(..12)?).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.trim().parse().ok()
}

fn check(name: &str, expect: Expect, reply: &Reply, failures: &mut Vec<String>) {
    let ok = match (expect, reply) {
        (_, Reply::Closed) => true,
        (Expect::Refused, Reply::Status(s)) => (400..500).contains(s),
        (Expect::NoServerError, Reply::Status(s)) => *s < 500,
    };
    if !ok {
        failures.push(format!("{name}: {reply:?} (expected {expect:?})"));
    }
}

/// Nested arrays `depth` deep.
fn nested(depth: usize) -> Vec<u8> {
    let mut v = b"{\"name\":".to_vec();
    v.extend(std::iter::repeat_n(b'[', depth));
    v.extend(std::iter::repeat_n(b']', depth));
    v.push(b'}');
    v
}

fn corpus() -> Vec<Case> {
    use Expect::*;
    let mut cases = Vec::new();
    let writes = [
        ("PUT", "/Product/p1"),
        ("PATCH", "/Product/p1"),
        ("POST", "/Product/"),
        ("POST", "/CartItem/"),
        ("PUT", "/CartItem/c1"),
    ];

    // ---- bodies ------------------------------------------------------------------------
    let mut deep_object = Vec::new();
    for _ in 0..10_000 {
        deep_object.extend_from_slice(b"{\"a\":");
    }
    deep_object.push(b'1');
    deep_object.extend(std::iter::repeat_n(b'}', 10_000));
    let bad_json: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("open brace", b"{".to_vec()),
        ("unterminated", b"{\"name\":".to_vec()),
        ("trailing comma", b"{\"name\":\"x\",}".to_vec()),
        ("single quotes", b"{'name':'x'}".to_vec()),
        ("NaN", b"{\"price\":NaN}".to_vec()),
        ("Infinity", b"{\"price\":Infinity}".to_vec()),
        ("overflowing number", b"{\"price\":1e999}".to_vec()),
        ("null", b"null".to_vec()),
        ("array", b"[1,2,3]".to_vec()),
        ("number", b"123".to_vec()),
        ("string", b"\"p1\"".to_vec()),
        ("true", b"true".to_vec()),
        ("two documents", b"{} {}".to_vec()),
        ("name is a number", b"{\"id\":\"p1\",\"name\":5}".to_vec()),
        (
            "price is text",
            b"{\"id\":\"p1\",\"price\":\"abc\"}".to_vec(),
        ),
        ("stock is fractional", b"{\"stockQuantity\":1.5}".to_vec()),
        (
            "stock overflows i32",
            b"{\"stockQuantity\":99999999999}".to_vec(),
        ),
        (
            "quantity overflows",
            b"{\"productId\":\"p1\",\"sessionId\":\"s\",\"quantity\":1e300}".to_vec(),
        ),
        ("inStock is text", b"{\"inStock\":\"yes\"}".to_vec()),
        ("categoryId is an object", b"{\"categoryId\":{}}".to_vec()),
        ("id is an array", b"{\"id\":[1]}".to_vec()),
        ("id is null", b"{\"id\":null,\"name\":\"x\"}".to_vec()),
        ("unknown attribute", b"{\"bogus\":1}".to_vec()),
        ("invalid UTF-8", b"{\"name\":\"\xff\xfe\"}".to_vec()),
        ("lone surrogate", b"{\"name\":\"\\ud800\"}".to_vec()),
        ("NUL in text", b"{\"name\":\"a\x00b\"}".to_vec()),
        ("raw control character", b"{\"name\":\"a\x01b\"}".to_vec()),
        ("BOM", b"\xef\xbb\xbf{\"name\":1}".to_vec()),
        ("10k nested arrays", nested(10_000)),
        ("10k nested objects", deep_object),
        (
            "duplicate keys",
            b"{\"name\":1,\"name\":\"x\",\"price\":\"y\"}".to_vec(),
        ),
    ];
    // (A negative quantity is refused by POST /CartItem/, the shop's add; a plain PUT of a
    // cart item stores it, and checkout refuses such a cart.)
    for (method, path) in writes {
        let negative = b"{\"productId\":\"p1\",\"sessionId\":\"s\",\"quantity\":-1}";
        if method == "POST" && path == "/CartItem/" {
            cases.push(case(
                "POST /CartItem/ negative quantity",
                json_request(method, path, negative),
                Refused,
            ));
        }
        for (what, body) in &bad_json {
            cases.push(case(
                format!("{method} {path} {what}"),
                json_request(method, path, body),
                Refused,
            ));
        }
    }
    // CBOR and MessagePack garbage.
    let cbor: Vec<(&str, Vec<u8>)> = vec![
        ("break byte", vec![0xff]),
        ("truncated map", vec![0xa2, 0x61, b'a']),
        ("byte string of 2^63 bytes", {
            let mut v = vec![0x5b];
            v.extend_from_slice(&(1u64 << 63).to_be_bytes());
            v
        }),
        ("array of 2^32 items", vec![0x9a, 0xff, 0xff, 0xff, 0xff]),
        ("map of 2^63 entries", {
            let mut v = vec![0xbb];
            v.extend_from_slice(&(1u64 << 63).to_be_bytes());
            v
        }),
        ("tagged garbage", vec![0xd9, 0xd9, 0xf7, 0xff, 0x00]),
        ("10k nested arrays", vec![0x81; 10_000]),
        ("indefinite nesting", vec![0x9f; 10_000]),
        ("map with an integer key", vec![0xa1, 0x01, 0x02]),
        ("text", b"hello".to_vec()),
    ];
    let msgpack: Vec<(&str, Vec<u8>)> = vec![
        ("reserved byte", vec![0xc1]),
        ("bin32 of 4 GB", vec![0xc6, 0xff, 0xff, 0xff, 0xff, 0x00]),
        ("str32 of 4 GB", vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a']),
        ("array32 of 2^32 items", vec![0xdd, 0xff, 0xff, 0xff, 0xff]),
        ("map32 of 2^32 entries", vec![0xdf, 0xff, 0xff, 0xff, 0xff]),
        ("ext of 4 GB", vec![0xc9, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ("10k nested arrays", vec![0x91; 10_000]),
        ("truncated map", vec![0x82, 0xa1, b'a']),
        ("map with a bin key", vec![0x81, 0xc4, 0x01, 0x00, 0x01]),
        (
            "invalid UTF-8 text",
            vec![0x81, 0xa4, b'n', b'a', b'm', b'e', 0xa2, 0xff, 0xfe],
        ),
    ];
    for (method, path) in writes {
        for (what, body) in &cbor {
            cases.push(case(
                format!("{method} {path} CBOR {what}"),
                request(method, path, &["Content-Type: application/cbor"], body),
                Refused,
            ));
        }
        for (what, body) in &msgpack {
            cases.push(case(
                format!("{method} {path} MessagePack {what}"),
                request(method, path, &["Content-Type: application/x-msgpack"], body),
                Refused,
            ));
        }
    }
    // Over the body limit (1 MB here): declared, and chunked without a length.
    let big = vec![b' '; 1 << 21];
    cases.push(case(
        "PUT 2 MB",
        json_request("PUT", "/Product/p1", &big),
        Refused,
    ));
    cases.push(case(
        "POST /CartItem/ 2 MB",
        json_request("POST", "/CartItem/", &big),
        Refused,
    ));
    let mut chunked =
        b"PUT /Product/p1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend(std::iter::repeat_n(b' ', 0x10000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    cases.push(case("PUT chunked 2.6 MB", chunked, Refused));
    cases.push(case(
        "PUT bad chunk size",
        b"PUT /Product/p1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
        Refused,
    ));

    // ---- headers -----------------------------------------------------------------------
    let body =
        br#"{"id":"p1","name":"x","price":1,"categoryId":"toys","inStock":true,"stockQuantity":1}"#;
    for ct in [
        "application/xml",
        "text/plain",
        "x;;;",
        "application/",
        "/json",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/csv",
        "application/json; charset=\u{1}",
    ] {
        for (method, path) in writes {
            cases.push(case(
                format!("{method} {path} Content-Type {ct:?}"),
                request(method, path, &[&format!("Content-Type: {ct}")], body),
                Refused,
            ));
        }
    }
    let many_types = "x/y,".repeat(5_000);
    for accept in [
        "application/x-nothing",
        "text/html",
        "image/*",
        "*/*;q=0",
        "application/json;q=0",
        "text/csv;q=0, application/json;q=0, */*;q=0",
        many_types.as_str(),
    ] {
        // (`GET /Product`, the table description, is JSON whatever the Accept header says.)
        for path in ["/Product/p1", "/Product/", "/Product/?limit(2)"] {
            cases.push(case(
                format!("GET {path} Accept {:.40}", accept),
                request("GET", path, &[&format!("Accept: {accept}")], b""),
                Refused,
            ));
        }
    }
    let huge = format!("X-Huge: {}", "a".repeat(1_000_000));
    let mut many = Vec::new();
    for i in 0..2_000 {
        many.push(format!("X-H{i}: v"));
    }
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for (name, req) in [
        ("huge header", request("GET", "/Product/p1", &[&huge], b"")),
        ("2000 headers", request("GET", "/Product/p1", &many, b"")),
        (
            "NUL in a header",
            b"GET /Product/p1 HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".to_vec(),
        ),
        (
            "header without a colon",
            b"GET /Product/p1 HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n".to_vec(),
        ),
        (
            "Content-Length abc",
            b"PUT /Product/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}".to_vec(),
        ),
        (
            "Content-Length -1",
            b"PUT /Product/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}".to_vec(),
        ),
        (
            "two different Content-Lengths",
            b"PUT /Product/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}".to_vec(),
        ),
        (
            "Content-Length and chunked",
            b"PUT /Product/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "Transfer-Encoding gzip",
            b"PUT /Product/p1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}".to_vec(),
        ),
        (
            "Content-Length beyond the body",
            b"PUT /Product/p1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{}".to_vec(),
        ),
        (
            "Content-Encoding gzip",
            request("PUT", "/Product/p1", &["Content-Type: application/json", "Content-Encoding: gzip"], b"\x1f\x8b\x08garbage"),
        ),
    ] {
        cases.push(case(name, req, Refused));
    }

    // ---- query strings -----------------------------------------------------------------
    let long_query = format!("name={}", "x".repeat(70_000));
    let deep_query = format!("{}name=a{}", "(".repeat(10_000), ")".repeat(10_000));
    let queries = [
        "(((",
        "name=a)",
        "[name=a)",
        "foo(1)",
        "limit(abc)",
        "limit(1,2,3)",
        "limit(-1)",
        "limit(99999999999999999999999)",
        "sort()",
        "sort(+nonexistent)",
        "select()",
        "select(name{{{",
        "price=xx=5",
        "price=lt=abc",
        "stockQuantity=lt=1.5.5",
        "bogus=1",
        "category.bogus=1",
        "category.name.more=1",
        "%ZZ",
        "name=%FF",
        "%FF=1",
        "name=%",
        "name=%0",
        "|||",
        "=",
        "==",
        long_query.as_str(),
        deep_query.as_str(),
        "\0",
    ];
    // Accepted on purpose: empty terms are skipped (so `&&&` is the empty query; a DELETE
    // with a query naming no condition is refused, see tests/rest.rs), and a NUL is data.
    for q in [
        "&&&",
        "name=a&|price=1",
        "name=a%00b",
        "sort(-description)&select(nonexistent)",
    ] {
        cases.push(case(
            format!("GET /Product/?{q}"),
            request("GET", &format!("/Product/?{q}"), &[], b""),
            NoServerError,
        ));
    }
    for q in queries {
        let target = |base: &str| -> String {
            let mut t = format!("{base}?");
            for b in q.bytes() {
                // The request line cannot carry raw NUL or spaces: percent-encode those.
                if b == 0 || b == b' ' {
                    t.push_str(&format!("%{b:02X}"));
                } else {
                    t.push(b as char);
                }
            }
            t
        };
        for (method, base, headers) in [
            ("GET", "/Product/", &[][..]),
            ("DELETE", "/Product/", &[][..]),
            ("GET", "/Product", &[][..]),
            ("GET", "/Product/", &["Accept: text/event-stream"][..]),
        ] {
            cases.push(case(
                format!("{method} {base}?{:.40} {headers:?}", q.escape_debug()),
                request(method, &target(base), headers, b""),
                Refused,
            ));
        }
    }
    // A raw NUL and raw spaces in the request line.
    cases.push(case(
        "NUL in the request line",
        b"GET /Product/?name=a\x00b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        Refused,
    ));
    cases.push(case(
        "space in the request line",
        b"GET /Product/?name=a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        Refused,
    ));

    // ---- ids ---------------------------------------------------------------------------
    let long_id = "x".repeat(2_000);
    for id in [
        long_id.as_str(),
        "%FF",
        "%C3%28",
        "%ED%A0%80",
        "a/b",
        "a%2Fb%2F..%2F..",
        "..",
        "%2E%2E",
        "../../etc/passwd",
        "%00",
        "p1%00",
        "%",
        "p1.",
        "p1.bogus",
        "p1.name.more",
    ] {
        for (method, expect) in [
            ("GET", Refused),
            ("PATCH", Refused),
            ("DELETE", NoServerError),
        ] {
            let body: &[u8] = if method == "PATCH" {
                b"{\"price\":1}"
            } else {
                b""
            };
            cases.push(case(
                format!("{method} /Product/{:.40}", id),
                json_request(method, &format!("/Product/{id}"), body),
                expect,
            ));
        }
        cases.push(case(
            format!("PUT /Product/{:.40} (body id p1)", id),
            json_request("PUT", &format!("/Product/{id}"), body),
            Refused,
        ));
        cases.push(case(
            format!("POST /Cart/{:.40}/checkout", id),
            json_request("POST", &format!("/Cart/{id}/checkout"), b""),
            Refused,
        ));
    }

    // ---- methods and request lines -------------------------------------------------------
    for (method, target) in [
        ("FOO", "/Product/"),
        ("TRACE", "/Product/"),
        ("TRACE", "/Product/p1"),
        ("CONNECT", "localhost:443"),
        ("CONNECT", "/Product/"),
        ("PROPFIND", "/Product/p1"),
        ("get", "/Product/p1"),
        ("PUT", "/Product"),
        ("POST", "/Product/p1"),
        ("PATCH", "/Product/"),
        ("PUT", "/openapi"),
        ("DELETE", "/Cart/s1/checkout"),
        ("GET", "/Cart/s1/checkout"),
        ("GET", "/NoSuchTable/"),
        ("POST", "/NoSuchTable/"),
    ] {
        cases.push(case(
            format!("{method} {target}"),
            json_request(method, target, b"{}"),
            Refused,
        ));
    }
    let long_method = "A".repeat(10_000);
    for (name, req) in [
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "HTTP/9.9",
            b"GET /Product/p1 HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "method with @",
            b"G@T /Product/p1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "10k-letter method",
            format!("{long_method} /Product/ HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        ),
        ("binary junk", (0..=255u8).cycle().take(4096).collect()),
        (
            "TLS client hello",
            vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        (
            "absolute URI of another host",
            b"GET http://evil.example/Product/p1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "asterisk target",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ] {
        cases.push(case(name, req, NoServerError));
    }
    cases.push(case(
        "GET without Host",
        b"GET /Product/p1 HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        NoServerError,
    ));

    // ---- slow bodies ---------------------------------------------------------------------
    for (method, path) in writes {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        .into_bytes();
        req.extend_from_slice(b"{\"id\":\"p1\",\"name\":\"half");
        cases.push(Case {
            name: format!("{method} {path} half a body, then close"),
            request: req,
            expect: Refused,
            stall: Some(Duration::from_millis(300)),
        });
    }
    cases.push(Case {
        name: "half the headers, then close".into(),
        request: b"GET /Product/p1 HTTP/1.1\r\nHost: x\r\nAccept: appl".to_vec(),
        expect: Refused,
        stall: Some(Duration::from_millis(300)),
    });

    // ---- WebSocket upgrades with garbage ---------------------------------------------------
    let upgrade = |path: &str, key: &str, version: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n"
        )
        .into_bytes()
    };
    let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
    for (name, req, expect) in [
        (
            "upgrade with version 99",
            upgrade("/Product/", good_key, "99"),
            NoServerError,
        ),
        (
            "upgrade with an empty key",
            upgrade("/Product/", "", "13"),
            NoServerError,
        ),
        (
            "upgrade with a junk key",
            upgrade("/Product/", "\u{1}\u{2}", "13"),
            NoServerError,
        ),
        (
            "upgrade of an unknown table",
            upgrade("/Nope/", good_key, "13"),
            NoServerError,
        ),
        (
            "upgrade with a bad query",
            upgrade("/Product/?(((", good_key, "13"),
            NoServerError,
        ),
        (
            "upgrade with sort",
            upgrade("/Product/?sort(name)", good_key, "13"),
            NoServerError,
        ),
        (
            "upgrade with %FF id",
            upgrade("/Product/%FF", good_key, "13"),
            NoServerError,
        ),
    ] {
        cases.push(case(name, req, expect));
    }
    // A good handshake, then garbage frames.
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..200u8).map(|i| i.wrapping_mul(37)).collect(),
        ),
        ("unmasked text frame", vec![0x81, 0x02, b'h', b'i']),
        ("frame of 2^63 bytes", {
            let mut v = vec![0x82, 0xff];
            v.extend_from_slice(&(1u64 << 63).to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 0]);
            v
        }),
        ("reserved opcode", vec![0x83, 0x80, 0, 0, 0, 0]),
        ("fragmented control frame", vec![0x09, 0x80, 0, 0, 0, 0]),
        (
            "invalid UTF-8 text",
            vec![0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe],
        ),
        (
            "close with a bad code",
            vec![0x88, 0x82, 0, 0, 0, 0, 0x00, 0x01],
        ),
        ("RSV bits set", vec![0xf1, 0x80, 0, 0, 0, 0]),
    ];
    for (what, frame) in frames {
        for path in ["/Product/", "/Product/p1"] {
            let mut req = upgrade(path, good_key, "13");
            req.extend_from_slice(&frame);
            cases.push(case(
                format!("WebSocket {path} then {what}"),
                req,
                NoServerError,
            ));
        }
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_without_server_errors_or_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let db = Database::temporary().unwrap();
    let app = common::with_admin(api::storefront_app(db.clone()).unwrap().body_limit(1 << 20));
    db.write(|tx| {
        tx.put(&Category {
            id: "toys".into(),
            name: "Toys".into(),
            description: None,
            products: Links::new(),
        })?;
        tx.put(&Product {
            id: "p1".into(),
            name: "Kite".into(),
            description: None,
            price: 5.0,
            category_id: "toys".into(),
            in_stock: true,
            stock_quantity: 3,
            image_url: None,
            created_at: None,
            category: Link::new(),
        })?;
        tx.put(&CartItem {
            id: "c1".into(),
            product_id: "p1".into(),
            session_id: "s1".into(),
            quantity: 1,
            added_at: None,
            product: Link::new(),
        })
    })
    .unwrap();
    let seq_before = db.last_seq();
    let server = app.bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr();
    let base = format!("http://{addr}");
    let http = common::admin_client();

    let cases = corpus();
    let mut failures = Vec::new();
    let (mut refused, mut closed) = (0, 0);
    let mut seq = seq_before;
    for c in &cases {
        let panics = PANICS.load(Ordering::SeqCst);
        let reply = raw(addr, c).await;
        if PANICS.load(Ordering::SeqCst) != panics {
            failures.push(format!("{}: the server panicked", c.name));
        }
        if db.last_seq() != seq {
            failures.push(format!(
                "{}: {reply:?}, and it wrote to the database",
                c.name
            ));
            seq = db.last_seq();
        }
        match reply {
            Reply::Closed => closed += 1,
            Reply::Status(_) => refused += 1,
        }
        check(&c.name, c.expect, &reply, &mut failures);
    }

    for f in &failures {
        eprintln!("hostile: {f}");
    }

    // The same kind of requests through reqwest (it percent-encodes what it must).
    let mut through_reqwest = 0;
    let bodies: [(&str, &[u8]); 6] = [
        ("application/json", b"{\"price\":"),
        ("application/json", b"{\"price\":\"abc\"}"),
        ("application/cbor", &[0xff, 0x00]),
        ("application/x-msgpack", &[0xc1]),
        ("application/msgpack", &[0xdd, 0xff, 0xff, 0xff, 0xff]),
        ("text/plain", b"hello"),
    ];
    for (ct, body) in bodies {
        for (method, path) in [
            (reqwest::Method::PUT, "/Product/p1"),
            (reqwest::Method::PATCH, "/Product/p1"),
            (reqwest::Method::POST, "/Product/"),
            (reqwest::Method::POST, "/CartItem/"),
        ] {
            let reply = match http
                .request(method.clone(), format!("{base}{path}"))
                .header("content-type", ct)
                .body(body.to_vec())
                .send()
                .await
            {
                Ok(r) => Reply::Status(r.status().as_u16()),
                Err(_) => Reply::Closed,
            };
            through_reqwest += 1;
            check(
                &format!("reqwest {method} {path} {ct}"),
                Expect::Refused,
                &reply,
                &mut failures,
            );
        }
    }
    for query in ["(((", "foo(1)", "limit(x)", "name=%FF", "sort(+nope)"] {
        for accept in [
            "application/json",
            "text/event-stream",
            "application/x-nope",
        ] {
            let reply = match http
                .get(format!("{base}/Product/?{query}"))
                .header("accept", accept)
                .send()
                .await
            {
                Ok(r) => Reply::Status(r.status().as_u16()),
                Err(_) => Reply::Closed,
            };
            through_reqwest += 1;
            check(
                &format!("reqwest GET /Product/?{query} Accept {accept}"),
                Expect::Refused,
                &reply,
                &mut failures,
            );
        }
    }

    // Healthy afterwards: ordinary requests work and nothing was written.
    let r = http.get(format!("{base}/Product/p1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (p["name"].as_str(), p["stockQuantity"].as_i64()),
        (Some("Kite"), Some(3))
    );
    let all: Vec<serde_json::Value> = http
        .get(format!("{base}/Product/?categoryId=toys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    db.check_integrity().unwrap();

    eprintln!(
        "hostile: {} raw requests ({refused} answered, {closed} closed), {through_reqwest} through reqwest, {} panics",
        cases.len(),
        PANICS.load(Ordering::SeqCst)
    );
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were not refused:\n{}",
        failures.len(),
        cases.len() + through_reqwest,
        failures.join("\n")
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "panics while serving");
    assert_eq!(db.last_seq(), seq_before, "a hostile request was stored");
    assert!(cases.len() + through_reqwest >= 200);
    server.shutdown().await;
}
