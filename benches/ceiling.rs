//! Ceiling servers (issue 6): the fastest this machine serves the storefront's requests with
//! the same parts (warp, fjall) and none of our engine, so that `benches/compare/run.sh` can
//! say how far below the ceiling the storefront runs.
//!
//! - `ceiling bare`: warp answering `GET /Product/<id>` with one fixed product's JSON bytes
//!   from memory (no storage, no lookup).
//! - `ceiling get`: warp + fjall: `GET /Product/<id>` answers the stored bytes of a raw fjall
//!   keyspace (key = id, value = the JSON `load.py` sends), 404 when missing.
//! - `ceiling query`: warp + fjall: `GET /Product/?categoryId=C&inStock=true&limit=20` (also
//!   `limit(20)`) by a hand-written index scan: a `categoryId` index keyspace (`C 0x00 id`) read
//!   in key order, each record fetched, kept when its bytes hold `"inStock":true`, and the kept
//!   records' stored bytes spliced into a JSON array until the limit. `GET /Product/<id>` too.
//! - `ceiling durable`: warp + fjall: `POST /CartItem/` stores the body under a new id with one
//!   fdatasync per write (a batch committed with `PersistMode::SyncData`), then 201.
//! - `ceiling sync-app`: not a ceiling: our own `App` over the storefront's tables (its
//!   `schema.rs`, without its custom routes and stock rules) on a database opened with
//!   `Durability::Sync` (group commit), for the durable-POST comparison, since the storefront
//!   binary has no durability option. Writes need the admin: start it with
//!   `HARPER_ADMIN=user:password` and send those credentials.
//!
//! Flags: `--addr HOST:PORT` (default 127.0.0.1:9966), `--data DIR` (default: a temporary
//! directory), `--products N` (default 1000; the products `load.py` writes, generated here with
//! the same formulas).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use warp::Filter;
use warp::http::{StatusCode, header};
use warp::reply::Response;

#[allow(dead_code)]
#[path = "../examples/storefront/schema.rs"]
mod schema;

const USAGE: &str = "\
usage: ceiling bare|get|query|durable|sync-app [--addr 127.0.0.1:9966] [--data DIR] [--products 1000]
  bare      GET /Product/<id>: fixed product JSON bytes from memory
  get       GET /Product/<id>: the stored bytes from a raw fjall keyspace
  query     GET /Product/?categoryId=C&inStock=true&limit=20: hand-written index scan, spliced bytes
  durable   POST /CartItem/: one fdatasync per write (fjall batch, PersistMode::SyncData)
  sync-app  our App over the storefront's tables with Durability::Sync (not a ceiling)";

fn main() {
    // `cargo bench` passes `--bench`; alone, there is nothing to measure.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        None | Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(mode @ ("bare" | "get" | "query" | "durable" | "sync-app")) => {
            Options::parse(&args[1..]).and_then(|o| {
                tokio::runtime::Runtime::new()
                    .map_err(|e| e.to_string())?
                    .block_on(serve(mode, o))
            })
        }
        Some(other) => Err(format!("unknown mode {other:?}\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("ceiling: {e}");
        std::process::exit(2);
    }
}

struct Options {
    addr: SocketAddr,
    data: Option<String>,
    products: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            addr: "127.0.0.1:9966".parse().expect("a valid address"),
            data: None,
            products: 1000,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--addr" => o.addr = value.parse().map_err(|e| format!("--addr: {e}"))?,
                "--data" => o.data = Some(value.clone()),
                "--products" => {
                    o.products = value.parse().map_err(|e| format!("--products: {e}"))?
                }
                _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

const CATEGORIES: [&str; 10] = [
    "electronics",
    "books",
    "clothing",
    "home",
    "garden",
    "sports",
    "toys",
    "beauty",
    "grocery",
    "automotive",
];
const NOUNS: [&str; 10] = [
    "Headphones",
    "Novel",
    "Jacket",
    "Lamp",
    "Shovel",
    "Racket",
    "Puzzle",
    "Serum",
    "Granola",
    "Wiper",
];
const ADJ: [&str; 8] = [
    "Classic", "Deluxe", "Compact", "Premium", "Eco", "Smart", "Vintage", "Ultra",
];

/// Product `i` (1-based) exactly as `load.py` builds it, in its attribute order.
fn product(i: usize) -> (String, Vec<u8>) {
    let c = (i - 1) % CATEGORIES.len();
    let in_stock = !i.is_multiple_of(4);
    let price = ((((i * 7919) % 100_000) as f64 / 100.0 + 0.99) * 100.0).round() / 100.0;
    // 2024-01-01T00:00:00Z plus i hours.
    let hours = i as u64;
    let (days, hour) = (hours / 24, hours % 24);
    let (y, m, d) = civil_from_days(19_723 + days as i64); // 19723 = days to 2024-01-01
    let id = format!("prod-{i:05}");
    let record = serde_json::json!({
        "id": id,
        "name": format!("{} {} {i:05}", ADJ[i % ADJ.len()], NOUNS[c]),
        "description": format!("Deterministic seed product number {i} in category {}.", CATEGORIES[c]),
        "price": price,
        "categoryId": CATEGORIES[c],
        "inStock": in_stock,
        "stockQuantity": if in_stock { (i * 37) % 200 } else { 0 },
        "imageUrl": format!("https://img.example.com/products/{i:05}.jpg"),
        "createdAt": format!("{y:04}-{m:02}-{d:02}T{hour:02}:00:00Z"),
    });
    (id, serde_json::to_vec(&record).expect("JSON"))
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

struct Store {
    _db: Database,
    products: Keyspace,
    by_category: Keyspace,
}

/// Opens a fresh raw fjall database and loads the products and their `categoryId` index.
fn load(data: &std::path::Path, n: usize) -> Result<Store, String> {
    let e = |e: fjall::Error| e.to_string();
    let db = Database::builder(data).open().map_err(e)?;
    let products = db
        .keyspace("Product", KeyspaceCreateOptions::default)
        .map_err(e)?;
    let by_category = db
        .keyspace("Product#categoryId", KeyspaceCreateOptions::default)
        .map_err(e)?;
    for start in (1..=n).step_by(1000) {
        let mut batch = db.batch();
        for i in start..=(start + 999).min(n) {
            let (id, bytes) = product(i);
            let category = CATEGORIES[(i - 1) % CATEGORIES.len()];
            batch.insert(&by_category, format!("{category}\0{id}"), "");
            batch.insert(&products, id, bytes);
        }
        batch.commit().map_err(e)?;
    }
    Ok(Store {
        _db: db,
        products,
        by_category,
    })
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let body: Bytes = body.into();
    warp::http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("a valid response")
}

fn not_found() -> Response {
    json(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#)
}

/// `categoryId`, `inStock` and the limit (`limit=20` or `limit(20)`) of a query string.
fn parse_query(q: &str) -> (Option<&str>, Option<bool>, usize) {
    let (mut category, mut in_stock, mut limit) = (None, None, usize::MAX);
    for part in q.split('&') {
        if let Some(v) = part.strip_prefix("categoryId=") {
            category = Some(v);
        } else if let Some(v) = part.strip_prefix("inStock=") {
            in_stock = Some(v == "true");
        } else if let Some(v) = part.strip_prefix("limit=").or_else(|| {
            part.strip_prefix("limit(")
                .and_then(|p| p.strip_suffix(')'))
        }) {
            limit = v.parse().unwrap_or(usize::MAX);
        }
    }
    (category, in_stock, limit)
}

/// The seed's categoryId query by a scan of the `categoryId` index, spliced stored bytes.
fn category_query(store: &Store, q: &str) -> Result<Response, fjall::Error> {
    let (Some(category), in_stock, limit) = parse_query(q) else {
        return Ok(json(StatusCode::BAD_REQUEST, r#"{"error":"categoryId"}"#));
    };
    let mut out = Vec::with_capacity(8 * 1024);
    out.push(b'[');
    let mut count = 0;
    let mut prefix = Vec::with_capacity(category.len() + 1);
    prefix.extend_from_slice(category.as_bytes());
    prefix.push(0);
    for guard in store.by_category.prefix(&prefix) {
        if count >= limit {
            break;
        }
        let key = guard.key()?;
        let Some(record) = store.products.get(&key[prefix.len()..])? else {
            continue;
        };
        if let Some(want) = in_stock {
            let has = memfind(&record, br#""inStock":true"#);
            if has != want {
                continue;
            }
        }
        if count > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&record);
        count += 1;
    }
    out.push(b']');
    Ok(json(StatusCode::OK, out))
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn serve(mode: &str, o: Options) -> Result<(), String> {
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = o
        .data
        .clone()
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    if mode == "sync-app" {
        return sync_app(&data, o.addr).await;
    }
    let t0 = std::time::Instant::now();
    let store = if matches!(mode, "get" | "query") {
        Some(Arc::new(load(&data, o.products)?))
    } else {
        None
    };
    if store.is_some() {
        eprintln!(
            "ceiling {mode}: loaded {} products into fjall in {:.2?}",
            o.products,
            t0.elapsed()
        );
    }
    let get_id = warp::get().and(warp::path!("Product" / String));
    let routes = match mode {
        "bare" => {
            let fixed = Bytes::from(product(1).1);
            get_id
                .map(move |_id: String| json(StatusCode::OK, fixed.clone()))
                .boxed()
        }
        "get" | "query" => {
            let store = store.expect("loaded");
            let by_id = {
                let store = store.clone();
                get_id.map(move |id: String| match store.products.get(&id) {
                    Ok(Some(bytes)) => json(StatusCode::OK, Bytes::from(bytes.to_vec())),
                    Ok(None) => not_found(),
                    Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                })
            };
            let query = warp::get()
                .and(warp::path!("Product" / ..))
                .and(warp::path::end())
                .and(warp::query::raw())
                .map(move |q: String| {
                    category_query(&store, &q)
                        .unwrap_or_else(|e| json(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                });
            if mode == "get" {
                by_id.boxed()
            } else {
                by_id.or(query).unify().boxed()
            }
        }
        "durable" => durable(&data)?,
        _ => unreachable!("modes are checked in main"),
    };
    let routes = routes.or(warp::any().map(not_found)).unify();
    eprintln!("ceiling {mode} on http://{}/", o.addr);
    warp::serve(routes).run(o.addr).await;
    Ok(())
}

/// `POST /CartItem/`: the body stored under a new id, one fdatasync per write.
fn durable(data: &std::path::Path) -> Result<warp::filters::BoxedFilter<(Response,)>, String> {
    let e = |e: fjall::Error| e.to_string();
    let db = Database::builder(data).open().map_err(e)?;
    let items = db
        .keyspace("CartItem", KeyspaceCreateOptions::default)
        .map_err(e)?;
    let next = Arc::new(AtomicU64::new(1));
    Ok(warp::post()
        .and(warp::path!("CartItem" / ..))
        .and(warp::path::end())
        .and(warp::body::bytes())
        .then(move |body: Bytes| {
            let (db, items, next) = (db.clone(), items.clone(), next.clone());
            async move {
                let Some(rest) = body.strip_prefix(b"{") else {
                    return json(StatusCode::BAD_REQUEST, r#"{"error":"not an object"}"#);
                };
                let id = format!("ci-{:012}", next.fetch_add(1, Relaxed));
                let mut record = Vec::with_capacity(body.len() + id.len() + 8);
                record.extend_from_slice(format!(r#"{{"id":"{id}","#).as_bytes());
                record.extend_from_slice(rest);
                let key = id.clone();
                let stored = tokio::task::spawn_blocking(move || {
                    let mut batch = db.batch().durability(Some(PersistMode::SyncData));
                    batch.insert(&items, key, record);
                    batch.commit()
                })
                .await;
                match stored {
                    Ok(Ok(())) => {
                        let mut r = json(StatusCode::CREATED, format!("\"{id}\""));
                        r.headers_mut().insert(
                            header::LOCATION,
                            header::HeaderValue::from_str(&id).expect("an ASCII id"),
                        );
                        r
                    }
                    Ok(Err(e)) => json(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
        })
        .boxed())
}

/// Our `App` over the storefront's tables, every commit fdatasync'ed (group commit).
async fn sync_app(data: &std::path::Path, addr: SocketAddr) -> Result<(), String> {
    use harper::{App, Database, Durability};
    let db = Database::builder(data)
        .durability(Durability::Sync)
        .open()
        .map_err(|e| e.to_string())?;
    eprintln!("ceiling sync-app on http://{addr}/");
    App::new(db)
        .table::<schema::Product>()
        .table::<schema::Category>()
        .table::<schema::CartItem>()
        // The schema makes cart items private to an owner; here no caller owns one, and the
        // bench writes as the admin (HARPER_ADMIN), who passes every rule.
        .owner::<schema::CartItem>(|_, _| false)
        .serve(&addr.to_string())
        .await
        .map_err(|e| e.to_string())
}
