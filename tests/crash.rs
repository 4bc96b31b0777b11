//! Crash recovery of the real storefront binary: concurrent HTTP clients write (PUT, PATCH,
//! DELETE, add to cart, checkout) while the server is killed with SIGKILL at a random
//! moment; then the data directory is opened here and checked:
//!
//! - every write acknowledged with a 2xx before the kill is there, with its value; a write
//!   in flight at the kill is there wholly or not at all (each client owns its records and
//!   sends one request at a time, so "last acknowledged value, or the in-flight one" is exact);
//! - no half of a checkout is visible: every session's cart is either whole or gone, and for
//!   every product, stock + units bought by the sessions whose cart is gone = initial stock;
//! - every index agrees with its records (`Database::check_integrity`);
//! - the change log has no gap (checked incrementally from the last cycle's end, or from its
//!   oldest kept entry), versions increase, and each record's last logged change equals the
//!   stored record (value and version); a record whose last change is a delete is absent.
//!
//! Then the server restarts on the same directory and the next cycle begins. Some cycles kill
//! it while it is still opening the directory. `CRASH_CYCLES` (default 24) sets the number of
//! cycles, `CRASH_SEED` replays a run (the seed is printed).

mod common;

use common::schema;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harper::prelude::*;
use schema::{CartItem, Category, Product};
use serde_json::{Map, Value, json};

/// Products every shopper buys from, and their stock at the start.
const SHOP_PRODUCTS: usize = 6;
const INITIAL_STOCK: i64 = 1_000_000;
const WRITERS: usize = 2;
const SHOPPERS: usize = 3;
/// Records each writer owns (half categories, half products).
const OWNED: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_whole_and_consistent() {
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test: {cycles} cycles, CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let exe = common::storefront_executable();
    let data = tempfile::tempdir().unwrap();
    let mut admin = reqwest::header::HeaderMap::new();
    admin.insert(
        reqwest::header::AUTHORIZATION,
        common::admin_authorization().parse().unwrap(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(admin)
        .build()
        .unwrap();

    let mut world = World::new();
    // The shop's products, acknowledged before any crash.
    {
        let server = Storefront::start(&exe, data.path());
        let base = server.wait_ready();
        for i in 0..SHOP_PRODUCTS {
            let r = http
                .put(format!("{base}/Product/{}", shop_id(i)))
                .json(&json!({
                    "id": shop_id(i), "name": format!("Shop {i}"), "price": 1.5,
                    "categoryId": "shop", "inStock": true, "stockQuantity": INITIAL_STOCK,
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
        }
    }

    let started = Instant::now();
    let (mut writes, mut early_kills) = (0u64, 0usize);
    for cycle in 0..cycles {
        let server = Storefront::start(&exe, data.path());
        if rng.below(6) == 0 {
            // Killed while opening the directory (or just after).
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
            drop(server);
            early_kills += 1;
        } else {
            let base = server.wait_ready();
            let mut tasks = Vec::new();
            for (i, w) in world.writers.drain(..).enumerate() {
                let (http, base, seed) = (http.clone(), base.clone(), rng.next());
                let shop_owner = i == 0;
                tasks.push(tokio::spawn(async move {
                    Client::Writer(run_writer(w, &http, &base, seed, shop_owner).await)
                }));
            }
            for t in 0..SHOPPERS {
                let (http, base, seed) = (http.clone(), base.clone(), rng.next());
                let prefix = format!("s{cycle}-{t}-");
                tasks.push(tokio::spawn(async move {
                    Client::Shopper(run_shopper(&http, &base, seed, &prefix).await)
                }));
            }
            tokio::time::sleep(Duration::from_millis(50 + rng.below(700))).await;
            drop(server); // SIGKILL, and waits for the process to be gone
            for task in tasks {
                match task.await.unwrap() {
                    Client::Writer(Ok((w, n))) => {
                        writes += n;
                        world.writers.push(w);
                    }
                    Client::Shopper(Ok((sessions, n))) => {
                        writes += n;
                        world.sessions.extend(sessions);
                    }
                    Client::Writer(Err(e)) | Client::Shopper(Err(e)) => {
                        panic!("cycle {cycle} (CRASH_SEED={seed}): {e}")
                    }
                }
            }
        }
        if let Err(e) = world.check(data.path()) {
            panic!("after the kill of cycle {cycle} (CRASH_SEED={seed}): {e}");
        }
    }
    eprintln!(
        "crash test: {cycles} kills ({early_kills} while starting), {writes} acknowledged writes, \
         {} checkouts, {} change-log entries, in {:.1?}",
        world
            .sessions
            .iter()
            .filter(|s| s.checked_out && !s.cart.is_empty())
            .count(),
        world.verified_seq,
        started.elapsed()
    );
    assert!(writes > 0, "no write was acknowledged in {cycles} cycles");
}

enum Client {
    Writer(Result<(Writer, u64), String>),
    Shopper(Result<(Vec<Session>, u64), String>),
}

fn shop_id(i: usize) -> String {
    format!("shop-{i}")
}

// ---- the model ---------------------------------------------------------------------------

/// A record one writer owns: what it was last acknowledged as (`None`: absent), and what the
/// request in flight would make it.
#[derive(Debug, Clone)]
struct Owned {
    table: &'static str,
    id: String,
    /// Compare only this attribute (a shop product's price; checkouts change its stock).
    only: Option<&'static str>,
    acked: Option<Value>,
    in_flight: Option<Option<Value>>,
}

#[derive(Debug)]
struct Writer {
    records: Vec<Owned>,
    counter: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Pending {
    None,
    Add(String, i64),
    Checkout,
}

#[derive(Debug, Clone)]
struct Session {
    id: String,
    /// Units per product, as acknowledged.
    cart: BTreeMap<String, i64>,
    checked_out: bool,
    pending: Pending,
}

struct World {
    writers: Vec<Writer>,
    sessions: Vec<Session>,
    /// The change log is verified up to here.
    verified_seq: u64,
    last_version: u64,
    /// Each record's last logged change: `Some(value)` for a put, `None` for a delete.
    last_logged: HashMap<(String, String), (Option<Value>, u64)>,
    log_pruned: bool,
}

impl World {
    fn new() -> World {
        let writers = (0..WRITERS)
            .map(|w| {
                let mut records = Vec::new();
                for k in 0..OWNED {
                    let table = if k % 2 == 0 { "Category" } else { "Product" };
                    records.push(Owned {
                        table,
                        id: format!("w{w}-{k}"),
                        only: None,
                        acked: None,
                        in_flight: None,
                    });
                }
                if w == 0 {
                    for i in 0..SHOP_PRODUCTS {
                        records.push(Owned {
                            table: "Product",
                            id: shop_id(i),
                            only: Some("price"),
                            acked: Some(json!({ "price": 1.5 })),
                            in_flight: None,
                        });
                    }
                }
                Writer {
                    records,
                    counter: 0,
                }
            })
            .collect();
        World {
            writers,
            sessions: Vec::new(),
            verified_seq: 0,
            last_version: 0,
            last_logged: HashMap::new(),
            log_pruned: false,
        }
    }

    /// Opens the directory of the killed server and checks everything; settles what was in
    /// flight to what was found.
    fn check(&mut self, dir: &Path) -> Result<(), String> {
        let db = Database::open(dir).map_err(|e| format!("reopening: {e}"))?;
        for def in [Product::DEF, Category::DEF, CartItem::DEF] {
            db.register_def(def).map_err(|e| format!("register: {e}"))?;
        }
        db.check_integrity()
            .map_err(|e| format!("integrity check: {e}"))?;
        let stored = read_all(&db)?;

        // Owned records: the last acknowledged value, or the one in flight.
        for w in &mut self.writers {
            for r in &mut w.records {
                let found = stored
                    .get(&(r.table.to_owned(), r.id.clone()))
                    .map(|(v, _)| project(v, r.only));
                let acked = r.acked.as_ref().map(|v| project(v, r.only));
                let flying = r
                    .in_flight
                    .as_ref()
                    .map(|f| f.as_ref().map(|v| project(v, r.only)));
                if found != acked && Some(&found) != flying.as_ref() {
                    return Err(format!(
                        "{} {}: found {found:?}; last acknowledged {acked:?}, in flight {flying:?}",
                        r.table, r.id
                    ));
                }
                r.acked = stored
                    .get(&(r.table.to_owned(), r.id.clone()))
                    .map(|(v, _)| v.clone());
                r.in_flight = None;
            }
        }
        let owned: std::collections::HashSet<(String, String)> = self
            .writers
            .iter()
            .flat_map(|w| w.records.iter().map(|r| (r.table.to_owned(), r.id.clone())))
            .collect();
        for (table, id) in stored.keys() {
            if table != "CartItem" && !owned.contains(&(table.clone(), id.clone())) {
                return Err(format!("{table} {id} exists, but no client ever wrote it"));
            }
        }

        // Carts: whole or gone.
        let mut carts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for ((table, id), (v, _)) in &stored {
            if table == "CartItem" {
                let session = v["sessionId"].as_str().ok_or(format!("cart item {id}"))?;
                let product = v["productId"].as_str().ok_or(format!("cart item {id}"))?;
                let q = v["quantity"].as_i64().ok_or(format!("cart item {id}"))?;
                *carts
                    .entry(session.to_owned())
                    .or_default()
                    .entry(product.to_owned())
                    .or_default() += q;
            }
        }
        let empty = BTreeMap::new();
        for s in &mut self.sessions {
            let found = carts.remove(&s.id).unwrap_or_default();
            let ok = match &s.pending {
                _ if s.checked_out => found.is_empty(),
                Pending::None => found == s.cart,
                Pending::Add(p, q) => {
                    let mut with = s.cart.clone();
                    *with.entry(p.clone()).or_default() += q;
                    found == s.cart || found == with
                }
                Pending::Checkout => found == s.cart || found == empty,
            };
            if !ok {
                return Err(format!(
                    "session {}: cart {found:?}; acknowledged {:?}, checked out {}, in flight {:?}",
                    s.id, s.cart, s.checked_out, s.pending
                ));
            }
            if s.pending == Pending::Checkout && found.is_empty() {
                s.checked_out = true;
            }
            if !s.checked_out {
                s.cart = found;
            }
            s.pending = Pending::None;
        }
        if let Some((session, cart)) = carts.into_iter().next() {
            return Err(format!(
                "cart items {cart:?} of session {session}, which never added them"
            ));
        }

        // Stock + units bought = initial stock, for every product.
        for i in 0..SHOP_PRODUCTS {
            let id = shop_id(i);
            let sold: i64 = self
                .sessions
                .iter()
                .filter(|s| s.checked_out)
                .filter_map(|s| s.cart.get(&id))
                .sum();
            let (p, _) = stored
                .get(&("Product".to_owned(), id.clone()))
                .ok_or(format!("{id} is gone"))?;
            let stock = p["stockQuantity"].as_i64().unwrap_or(-1);
            if stock + sold != INITIAL_STOCK || p["inStock"] != json!(stock > 0) {
                return Err(format!(
                    "{id}: stock {stock} (inStock {}) + {sold} bought by checked-out sessions != {INITIAL_STOCK}",
                    p["inStock"]
                ));
            }
        }

        self.check_log(&db, &stored)
    }

    fn check_log(&mut self, db: &Database, stored: &Stored) -> Result<(), String> {
        let oldest = db.oldest_seq();
        let last = db.last_seq();
        if last < self.verified_seq {
            return Err(format!(
                "the change log ends at {last}, before {} seen earlier",
                self.verified_seq
            ));
        }
        if oldest > 1 {
            self.log_pruned = true;
        }
        if self.verified_seq >= oldest {
            // The last verified entry is still there.
            let first = db.changes_since(self.verified_seq - 1).next();
            match first {
                Some(Ok((seq, _))) if seq == self.verified_seq => {}
                other => {
                    return Err(format!(
                        "change-log entry {} is gone: {:?}",
                        self.verified_seq,
                        other.map(|r| r.map(|(s, _)| s))
                    ));
                }
            }
        }
        let start = self.verified_seq.max(oldest - 1);
        let mut expected = start + 1;
        for entry in db.changes_since(start) {
            let (seq, bytes) = entry.map_err(|e| format!("reading the change log: {e}"))?;
            if seq != expected {
                return Err(format!("change log: entry {seq} follows {}", expected - 1));
            }
            expected += 1;
            let e: Value = serde_json::from_slice(&bytes)
                .map_err(|err| format!("change-log entry {seq} is not JSON: {err}"))?;
            let version = e["version"]
                .as_u64()
                .ok_or(format!("entry {seq}: version"))?;
            if e["seq"] != json!(seq) || version <= self.last_version {
                return Err(format!(
                    "change-log entry {seq}: {e} (previous version {})",
                    self.last_version
                ));
            }
            self.last_version = version;
            let changes = e["changes"]
                .as_array()
                .filter(|c| !c.is_empty())
                .ok_or(format!("entry {seq} has no changes"))?;
            for c in changes {
                let table = c["table"].as_str().ok_or(format!("entry {seq}: table"))?;
                let id = match &c["id"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let value = match c["type"].as_str() {
                    Some("put") => Some(c["value"].clone()),
                    Some("delete") => None,
                    _ => return Err(format!("entry {seq}: change {c}")),
                };
                self.last_logged
                    .insert((table.to_owned(), id), (value, version));
            }
        }
        let end = expected - 1;
        if end != last {
            return Err(format!(
                "the change log ends at {end}, the database says {last}"
            ));
        }
        self.verified_seq = end;
        for (key, (value, version)) in &self.last_logged {
            match (value, stored.get(key)) {
                (Some(v), Some((s, sv))) if v == s && version == sv => {}
                (None, None) => {}
                (logged, found) => {
                    return Err(format!(
                        "{} {}: last logged {logged:?} at version {version}, stored {found:?}",
                        key.0, key.1
                    ));
                }
            }
        }
        if !self.log_pruned {
            for key in stored.keys() {
                if !self.last_logged.contains_key(key) {
                    return Err(format!(
                        "{} {} is stored but was never logged",
                        key.0, key.1
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Every record of the three tables: (table, id) -> (JSON, version).
type Stored = BTreeMap<(String, String), (Value, u64)>;

fn read_all(db: &Database) -> Result<Stored, String> {
    let mut out = BTreeMap::new();
    for def in [Product::DEF, Category::DEF, CartItem::DEF] {
        let rows = db
            .read(|tx| tx.query_stored(def, &Query::new()))
            .map_err(|e| format!("reading {}: {e}", def.name))?;
        for r in rows {
            let id = r.key().map_err(|e| e.to_string())?.to_string();
            let v = r.to_value().map_err(|e| e.to_string())?;
            out.insert((def.name.to_owned(), id), (v, r.version()));
        }
    }
    Ok(out)
}

/// The attributes compared: `only` one, else all that are not null; numbers as floats.
fn project(v: &Value, only: Option<&str>) -> Value {
    let mut out = Map::new();
    if let Some(obj) = v.as_object() {
        for (k, v) in obj {
            if v.is_null() || only.is_some_and(|o| o != k) {
                continue;
            }
            let v = match v.as_f64() {
                Some(f) => json!(f),
                None => v.clone(),
            };
            out.insert(k.clone(), v);
        }
    }
    Value::Object(out)
}

// ---- the clients -------------------------------------------------------------------------

/// What a request came to: acknowledged, refused (a test failure) or cut off by the kill.
enum Outcome {
    Acked(Value),
    Cut,
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Outcome, String> {
    let mut req = http.request(method.clone(), url);
    if let Some(b) = body {
        req = req.json(b);
    }
    let response = match req.send().await {
        Ok(r) => r,
        Err(_) => return Ok(Outcome::Cut),
    };
    let status = response.status();
    let text = match response.text().await {
        Ok(t) => t,
        // The status line arrived but the body did not: the server died answering. A 2xx
        // status was sent after the commit, so the write is acknowledged.
        Err(_) if status.is_success() => return Ok(Outcome::Acked(Value::Null)),
        Err(_) => return Ok(Outcome::Cut),
    };
    if !status.is_success() {
        return Err(format!("{method} {url} {body:?}: {status} {text}"));
    }
    Ok(Outcome::Acked(
        serde_json::from_str(&text).unwrap_or(Value::Null),
    ))
}

async fn run_writer(
    mut w: Writer,
    http: &reqwest::Client,
    base: &str,
    seed: u64,
    shop_owner: bool,
) -> Result<(Writer, u64), String> {
    let mut rng = Rng::new(seed);
    let mut acked = 0;
    loop {
        let n = if shop_owner { w.records.len() } else { OWNED };
        let i = rng.below(n as u64) as usize;
        w.counter += 1;
        let c = w.counter;
        let r = &mut w.records[i];
        let url = format!("{base}/{}/{}", r.table, r.id);
        let (method, body, next) = match (&r.acked, r.only, rng.below(4)) {
            (Some(old), Some(_), _) => {
                let price = (c % 400) as f64 / 4.0;
                let mut next = old.clone();
                next["price"] = json!(price);
                (
                    reqwest::Method::PATCH,
                    Some(json!({ "price": price })),
                    Some(next),
                )
            }
            (Some(_), None, 0) => (reqwest::Method::DELETE, None, None),
            (Some(old), None, 1) => {
                let patch = if r.table == "Category" {
                    json!({ "description": format!("patched {c}") })
                } else {
                    json!({ "price": (c % 64) as f64 / 8.0, "inStock": !c.is_multiple_of(3) })
                };
                let mut next = old.clone();
                for (k, v) in patch.as_object().unwrap() {
                    next[k] = v.clone();
                }
                (reqwest::Method::PATCH, Some(patch), Some(next))
            }
            _ => {
                let body = if r.table == "Category" {
                    json!({ "id": r.id, "name": format!("name {}", c % 7), "description": format!("put {c}") })
                } else {
                    json!({
                        "id": r.id, "name": format!("product {}", c % 5), "price": (c % 80) as f64 / 4.0,
                        "categoryId": format!("w{}", c % 3), "inStock": c.is_multiple_of(2),
                        "stockQuantity": (c % 50) as i64,
                    })
                };
                (reqwest::Method::PUT, Some(body.clone()), Some(body))
            }
        };
        r.in_flight = Some(next.clone());
        match send(http, method, &url, body.as_ref()).await? {
            Outcome::Acked(_) => {
                r.acked = next;
                r.in_flight = None;
                acked += 1;
            }
            Outcome::Cut => return Ok((w, acked)),
        }
    }
}

async fn run_shopper(
    http: &reqwest::Client,
    base: &str,
    seed: u64,
    prefix: &str,
) -> Result<(Vec<Session>, u64), String> {
    let mut rng = Rng::new(seed);
    let mut sessions = Vec::new();
    let mut acked = 0;
    for n in 0u64.. {
        let mut s = Session {
            id: format!("{prefix}{n}"),
            cart: BTreeMap::new(),
            checked_out: false,
            pending: Pending::None,
        };
        for _ in 0..1 + rng.below(3) {
            let product = shop_id(rng.below(SHOP_PRODUCTS as u64) as usize);
            let quantity = 1 + rng.below(3) as i64;
            s.pending = Pending::Add(product.clone(), quantity);
            let body = json!({ "productId": product, "sessionId": s.id, "quantity": quantity });
            match send(
                http,
                reqwest::Method::POST,
                &format!("{base}/CartItem/"),
                Some(&body),
            )
            .await?
            {
                Outcome::Acked(_) => {
                    *s.cart.entry(product).or_default() += quantity;
                    s.pending = Pending::None;
                    acked += 1;
                }
                Outcome::Cut => {
                    sessions.push(s);
                    return Ok((sessions, acked));
                }
            }
        }
        s.pending = Pending::Checkout;
        let url = format!("{base}/Cart/{}/checkout", s.id);
        match send(http, reqwest::Method::POST, &url, None).await? {
            Outcome::Acked(order) => {
                let units: i64 = s.cart.values().sum();
                if !order.is_null() && order["itemCount"] != json!(units) {
                    return Err(format!("checkout of {}: {order}, cart {:?}", s.id, s.cart));
                }
                s.checked_out = true;
                s.pending = Pending::None;
                acked += 1;
                sessions.push(s);
            }
            Outcome::Cut => {
                sessions.push(s);
                return Ok((sessions, acked));
            }
        }
    }
    unreachable!()
}

// ---- the server process --------------------------------------------------------------------

/// A running storefront; dropping it kills it with SIGKILL and waits until it is gone.
struct Storefront {
    child: Child,
    address: mpsc::Receiver<String>,
}

impl Storefront {
    fn start(exe: &Path, data: &Path) -> Storefront {
        let mut child = Command::new(exe)
            .args(["--addr", "127.0.0.1:0", "--no-seed", "--data"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .env(
                "HARPER_ADMIN",
                format!("{}:{}", common::ADMIN_USER, common::ADMIN_PASSWORD),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, address) = mpsc::channel();
        std::thread::spawn(move || {
            let marker = "harper storefront on ";
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(marker) {
                    let addr = line[at + marker.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .trim_end_matches('/')
                        .to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        Storefront { child, address }
    }

    /// The base URL once the server listens.
    fn wait_ready(&self) -> String {
        self.address
            .recv_timeout(Duration::from_secs(60))
            .expect("the storefront did not start within 60 s")
    }
}

impl Drop for Storefront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
