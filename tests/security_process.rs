//! Authentication of the real storefront binary, as an operator meets it:
//!
//! - at first start without `HARPER_ADMIN`, an admin `admin` is created with a generated
//!   password, printed once on stderr; it signs in (HTTP Basic and `POST /auth/login`
//!   bearer tokens), and neither that password (outside its one creation line), nor any
//!   token, nor the Basic credential, nor a wrong password tried, reaches stdout or stderr,
//!   even at `RUST_LOG=debug`; a restart on the same directory prints no new password and
//!   the first one still works;
//! - with `HARPER_ADMIN=user:password` the admin is the one given, the shared loader
//!   (`shared/harper-peer/load.py`) fills the catalog with `--auth`, and without it every
//!   write is refused and nothing changes.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CREATED_PREFIX: &str = "harper: created the first admin user `admin` with password `";
const CREATED_MARKER: &str = "created the first admin user";
const ADDRESS_MARKER: &str = "harper storefront on ";
const LOAD_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/harper-peer/load.py");

/// One run of the storefront binary, with everything it writes captured.
struct Storefront {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    base: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// Lines of stderr that announce a created admin, as they arrive.
    created: mpsc::Receiver<String>,
    readers: Vec<JoinHandle<()>>,
}

/// What a stopped run wrote.
struct Logs {
    stdout: String,
    stderr: String,
    status: ExitStatus,
}

impl Logs {
    fn both(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Reads `from` to its end into `into`, line by line (lossily: logs need not be UTF-8),
/// calling `each` with every line.
fn capture(
    from: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    each: impl Fn(&str) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    each(&line);
                    into.lock().expect("log buffer poisoned").push_str(&line);
                }
            }
        }
    })
}

impl Storefront {
    /// Starts the binary on a free port over `data`; `admin` is `HARPER_ADMIN` (removed from
    /// the environment when `None`). Returns once it listens.
    fn start(exe: &Path, data: &Path, admin: Option<&str>) -> Storefront {
        let mut cmd = Command::new(exe);
        cmd.args(["--addr", "127.0.0.1:0", "--no-seed", "--data"])
            .arg(data)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match admin {
            Some(spec) => cmd.env("HARPER_ADMIN", spec),
            None => cmd.env_remove("HARPER_ADMIN"),
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the storefront {}: {e}", exe.display()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let (created_tx, created) = mpsc::channel();
        let readers = vec![
            capture(
                child.stdout.take().expect("stdout is piped"),
                stdout.clone(),
                move |line| {
                    if let Some(at) = line.find(ADDRESS_MARKER) {
                        let addr = line[at + ADDRESS_MARKER.len()..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .trim_end_matches('/')
                            .to_owned();
                        let _ = addr_tx.send(addr);
                    }
                },
            ),
            capture(
                child.stderr.take().expect("stderr is piped"),
                stderr.clone(),
                move |line| {
                    if line.contains(CREATED_MARKER) {
                        let _ = created_tx.send(line.trim_end().to_owned());
                    }
                },
            ),
        ];
        let mut server = Storefront {
            child: Some(child),
            base: String::new(),
            stdout,
            stderr,
            created,
            readers,
        };
        match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => server.base = base,
            Err(_) => {
                let logs = server.stop_cleanly();
                panic!(
                    "the storefront did not print its address within 30 s ({}); output:\n{}",
                    logs.status,
                    logs.both()
                );
            }
        }
        server
    }

    /// Stops the process with SIGTERM (SIGKILL if it lingers past 10 s) and returns all it wrote.
    fn stop(&mut self) -> Logs {
        let mut child = self
            .child
            .take()
            .expect("the storefront was already stopped");
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            eprintln!("kill -TERM failed ({term:?}); killing the storefront");
            let _ = child.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match child.try_wait().expect("waiting for the storefront") {
                Some(status) => break status,
                None if Instant::now() > deadline => {
                    eprintln!("the storefront ignored SIGTERM for 10 s; killing it");
                    let _ = child.kill();
                    break child.wait().expect("waiting for the killed storefront");
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("a log reader thread panicked");
        }
        let take = |b: &Arc<Mutex<String>>| std::mem::take(&mut *b.lock().expect("log buffer"));
        Logs {
            stdout: take(&self.stdout),
            stderr: take(&self.stderr),
            status,
        }
    }

    /// [`Storefront::stop`], asserting a clean exit (SIGTERM shuts down gracefully).
    fn stop_cleanly(&mut self) -> Logs {
        let logs = self.stop();
        assert!(
            logs.status.success(),
            "the storefront did not exit cleanly on SIGTERM ({}); output:\n{}",
            logs.status,
            logs.both()
        );
        logs
    }
}

impl Drop for Storefront {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The text without ANSI escape sequences (log lines are coloured).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Panics when `secret` occurs in `text` (raw or with colours stripped).
fn assert_absent(text: &str, secret: &str, what: &str, stream: &str) {
    assert!(!secret.is_empty(), "{what} is empty");
    let plain = strip_ansi(text);
    for (hay, form) in [(text, "raw"), (plain.as_str(), "without colours")] {
        if let Some(at) = hay.find(secret) {
            let line_start = hay[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = hay[at..].find('\n').map_or(hay.len(), |i| at + i);
            panic!(
                "{what} appears in the server's {stream} ({form}), line: {:?}",
                &hay[line_start..line_end]
            );
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        // No idle connection may hold up the graceful shutdown.
        .pool_max_idle_per_host(0)
        .build()
        .expect("building the HTTP client")
}

fn product(id: &str, price: f64) -> Value {
    json!({
        "id": id, "name": format!("Product {id}"), "description": "for the security test",
        "price": price, "categoryId": "sec", "inStock": true, "stockQuantity": 5,
        "imageUrl": null, "createdAt": "2024-01-01T00:00:00Z",
    })
}

/// Sends `req`, returns the status and the body (as JSON when it is, else as a string).
async fn send(req: reqwest::RequestBuilder, what: &str) -> (u16, Value) {
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
    let status = r.status().as_u16();
    let text = r
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn token(body: &Value, field: &str, what: &str) -> String {
    body[field]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("{what}: no {field} in {body}"))
        .to_owned()
}

#[tokio::test]
async fn the_first_admin_is_generated_once_and_no_secret_reaches_the_logs() {
    let exe = common::storefront_executable();
    let data = tempfile::tempdir().expect("creating a temporary data directory");
    let db = data.path().join("db");
    let http = http();

    // ---- first start: the generated password ------------------------------------------
    let mut server = Storefront::start(&exe, &db, None);
    let base = server.base.clone();
    let created = server
        .created
        .recv_timeout(Duration::from_secs(10))
        .expect("no `created the first admin user` line on stderr at first start");
    let password = created
        .find(CREATED_PREFIX)
        .map(|at| &created[at + CREATED_PREFIX.len()..])
        .and_then(|rest| rest.split_once('`'))
        .map(|(pw, _)| pw.to_owned())
        .unwrap_or_else(|| panic!("unexpected creation line: {created:?}"));
    assert!(
        password.len() >= 16,
        "the generated password is short: {} characters",
        password.len()
    );
    assert!(
        created.contains("(shown once;"),
        "the creation line does not say it is shown once: {created:?}"
    );

    let mut secrets: Vec<(String, String)> = Vec::new(); // (what, value)
    let basic_ok = basic("admin", &password);
    secrets.push(("the Basic credential".into(), basic_ok.clone()));

    // Basic auth writes the catalog; reads are public.
    let (s, b) = send(
        http.put(format!("{base}/Product/sec-basic"))
            .header("authorization", format!("Basic {basic_ok}"))
            .json(&product("sec-basic", 12.5)),
        "PUT with Basic",
    )
    .await;
    assert_eq!(s, 204, "PUT /Product/sec-basic with Basic: {b}");
    let (s, b) = send(http.get(format!("{base}/Product/sec-basic")), "public GET").await;
    assert_eq!(s, 200, "GET /Product/sec-basic: {b}");
    assert_eq!(b["price"], json!(12.5), "{b}");

    // Anonymous writes are refused.
    let (s, b) = send(
        http.put(format!("{base}/Product/sec-anon"))
            .json(&product("sec-anon", 1.0)),
        "anonymous PUT",
    )
    .await;
    assert_eq!(s, 401, "anonymous PUT /Product/sec-anon: {b}");

    // Login -> bearer tokens.
    let (s, login) = send(
        http.post(format!("{base}/auth/login"))
            .json(&json!({"username": "admin", "password": password})),
        "login",
    )
    .await;
    assert_eq!(
        s, 200,
        "POST /auth/login with the generated password: {login}"
    );
    let access = token(&login, "accessToken", "login");
    let refresh = token(&login, "refreshToken", "login");
    secrets.push(("the access token".into(), access.clone()));
    secrets.push(("the refresh token".into(), refresh.clone()));

    let (s, me) = send(
        http.get(format!("{base}/auth/me")).bearer_auth(&access),
        "GET /auth/me",
    )
    .await;
    assert_eq!(s, 200, "GET /auth/me with the bearer token: {me}");
    assert!(
        me.to_string().contains("admin"),
        "/auth/me does not name the admin: {me}"
    );
    let (s, b) = send(
        http.put(format!("{base}/Product/sec-bearer"))
            .bearer_auth(&access)
            .json(&product("sec-bearer", 7.0)),
        "PUT with bearer",
    )
    .await;
    assert_eq!(s, 204, "PUT /Product/sec-bearer with the bearer token: {b}");

    // Refresh rotates the pair; the new ones are secrets too.
    let (s, renewed) = send(
        http.post(format!("{base}/auth/refresh"))
            .json(&json!({"refreshToken": refresh})),
        "refresh",
    )
    .await;
    assert_eq!(s, 200, "POST /auth/refresh: {renewed}");
    let access2 = token(&renewed, "accessToken", "refresh");
    secrets.push(("the refreshed access token".into(), access2.clone()));
    secrets.push((
        "the refreshed refresh token".into(),
        token(&renewed, "refreshToken", "refresh"),
    ));
    let (s, b) = send(
        http.delete(format!("{base}/Product/sec-bearer"))
            .bearer_auth(&access2),
        "DELETE with the refreshed token",
    )
    .await;
    assert!(
        s == 200 || s == 204,
        "DELETE /Product/sec-bearer with the refreshed token: {s} {b}"
    );

    // A guest session and its cart: more tokens that must not be logged.
    let (s, guest) = send(http.post(format!("{base}/auth/session")), "guest session").await;
    assert_eq!(s, 200, "POST /auth/session: {guest}");
    let guest_access = token(&guest, "accessToken", "guest session");
    secrets.push(("the guest access token".into(), guest_access.clone()));
    secrets.push((
        "the guest refresh token".into(),
        token(&guest, "refreshToken", "guest session"),
    ));
    let (s, b) = send(
        http.post(format!("{base}/CartItem/"))
            .bearer_auth(&guest_access)
            .json(&json!({"productId": "sec-basic", "quantity": 1})),
        "add to cart",
    )
    .await;
    assert_eq!(s, 201, "POST /CartItem/ as a guest: {b}");

    // Wrong passwords: 401, and they must not be logged either.
    let wrong = "wrong-password-Zq8x";
    secrets.push(("the wrong password".into(), wrong.into()));
    let (s, b) = send(
        http.post(format!("{base}/auth/login"))
            .json(&json!({"username": "admin", "password": wrong})),
        "login with a wrong password",
    )
    .await;
    assert_eq!(s, 401, "POST /auth/login with a wrong password: {b}");
    let basic_wrong = basic("admin", wrong);
    secrets.push(("the wrong Basic credential".into(), basic_wrong.clone()));
    let (s, b) = send(
        http.put(format!("{base}/Product/sec-wrong"))
            .header("authorization", format!("Basic {basic_wrong}"))
            .json(&product("sec-wrong", 1.0)),
        "PUT with a wrong Basic password",
    )
    .await;
    assert_eq!(s, 401, "PUT with a wrong Basic password: {b}");
    // A bad bearer token is refused too.
    let (s, b) = send(
        http.get(format!("{base}/auth/me"))
            .bearer_auth("hat_not-a-real-token"),
        "bad bearer",
    )
    .await;
    assert_eq!(s, 401, "GET /auth/me with an unknown bearer token: {b}");

    let logs = server.stop_cleanly();
    drop(server);
    assert!(
        logs.stdout.contains(ADDRESS_MARKER),
        "stdout misses the address line:\n{}",
        logs.stdout
    );
    assert!(
        logs.stderr.contains("DEBUG"),
        "RUST_LOG=debug produced no debug log lines; the leak check would prove little"
    );
    // The password: exactly once, in its creation line, and nowhere else.
    assert_eq!(
        logs.stderr.matches(CREATED_MARKER).count(),
        1,
        "the creation line should be printed exactly once; stderr:\n{}",
        logs.stderr
    );
    assert_eq!(
        logs.stderr.matches(password.as_str()).count(),
        1,
        "the generated password appears more than once in stderr:\n{}",
        logs.stderr
    );
    assert_absent(
        &logs.stderr.replace(&created, ""),
        &password,
        "the generated password (outside its creation line)",
        "stderr",
    );
    assert_absent(&logs.stdout, &password, "the generated password", "stdout");
    for (what, secret) in &secrets {
        assert_absent(&logs.stdout, secret, what, "stdout");
        assert_absent(&logs.stderr, secret, what, "stderr");
    }

    // ---- restart on the same directory: no new password, the old one works -----------
    let mut server = Storefront::start(&exe, &db, None);
    let base = server.base.clone();
    let (s, b) = send(
        http.post(format!("{base}/auth/login"))
            .json(&json!({"username": "admin", "password": password})),
        "login after restart",
    )
    .await;
    assert_eq!(
        s, 200,
        "the first password no longer signs in after a restart: {b}"
    );
    let access3 = token(&b, "accessToken", "login after restart");
    let (s, b) = send(
        http.put(format!("{base}/Product/sec-restart"))
            .header("authorization", format!("Basic {basic_ok}"))
            .json(&product("sec-restart", 3.0)),
        "PUT with Basic after restart",
    )
    .await;
    assert_eq!(s, 204, "PUT with Basic after a restart: {b}");
    let logs = server.stop_cleanly();
    drop(server);
    let all = logs.both();
    assert!(
        !all.contains(CREATED_MARKER),
        "a restart created another admin:\n{all}"
    );
    assert_absent(&all, &password, "the password", "output after restart");
    assert_absent(
        &all,
        &basic_ok,
        "the Basic credential",
        "output after restart",
    );
    assert_absent(&all, &access3, "the access token", "output after restart");
}

#[tokio::test]
async fn harper_admin_env_creates_the_admin_and_load_py_works_with_auth() {
    let load_py = PathBuf::from(LOAD_PY);
    if !load_py.exists() {
        eprintln!(
            "SKIPPED harper_admin_env_creates_the_admin_and_load_py_works_with_auth: {} does not exist",
            load_py.display()
        );
        return;
    }
    let exe = common::storefront_executable();
    let data = tempfile::tempdir().expect("creating a temporary data directory");
    let db = data.path().join("db");
    let http = http();
    let admin_basic = basic("admin", "s3cret-pw");

    let mut server = Storefront::start(&exe, &db, Some("admin:s3cret-pw"));
    let base = server.base.clone();
    let load = |args: &[&str]| {
        Command::new("python3")
            .arg(&load_py)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running python3 load.py (is python3 installed?)")
    };

    // With --auth: 10 categories, 20 products and 2 cart items, every PUT acknowledged
    // (load.py exits 1 if any PUT fails; its two cart items are for in-stock products, so
    // the stock rule accepts them). `--concurrency 1`: load.py PUTs products and cart
    // items from one parallel pool, so with several workers a cart item can arrive before
    // its product and the cart rule refuses it (400 unknown_product); one worker keeps
    // load.py's order (categories, products, then cart items).
    let out = load(&[
        &base,
        "20",
        "--auth",
        "admin:s3cret-pw",
        "--concurrency",
        "1",
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "load.py --auth failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let snapshot = |table: &'static str| {
        let http = http.clone();
        let url = format!("{base}/{table}/");
        let auth = format!("Basic {admin_basic}");
        async move {
            let (s, b) = send(http.get(url).header("authorization", auth), table).await;
            assert_eq!(s, 200, "GET /{table}/: {b}");
            let mut rows = b
                .as_array()
                .unwrap_or_else(|| panic!("GET /{table}/ is not an array: {b}"))
                .clone();
            rows.sort_by(|a, b| a["id"].to_string().cmp(&b["id"].to_string()));
            rows
        }
    };
    // Collections of the catalog are public: no credentials needed.
    let (s, products) = send(http.get(format!("{base}/Product/")), "public GET /Product/").await;
    assert_eq!(s, 200, "anonymous GET /Product/: {products}");
    let products = products
        .as_array()
        .unwrap_or_else(|| panic!("GET /Product/ is not an array: {products}"))
        .clone();
    assert_eq!(products.len(), 20, "products after load.py --auth");
    assert!(
        products
            .iter()
            .any(|p| p["id"] == "prod-00020" && p["categoryId"] == "automotive"),
        "prod-00020 is missing or wrong"
    );
    let before = (
        snapshot("Product").await,
        snapshot("Category").await,
        snapshot("CartItem").await,
    );
    assert_eq!(before.1.len(), 10, "categories after load.py --auth");
    assert_eq!(before.2.len(), 2, "cart items after load.py --auth");

    // Without --auth: every PUT is refused (401), load.py exits non-zero, nothing changes.
    // 30 products (and 3 cart items) so that new ids would show, not only overwrites.
    let out = load(&[&base, "30", "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "load.py without --auth succeeded: anonymous writes were accepted\n{stderr}"
    );
    assert!(
        stderr.contains("43 failed requests") && stderr.contains(", 401, "),
        "load.py without --auth should fail all 43 PUTs with 401:\n{stderr}"
    );
    let after = (
        snapshot("Product").await,
        snapshot("Category").await,
        snapshot("CartItem").await,
    );
    assert_eq!(after.0.len(), 20, "anonymous load.py stored products");
    assert!(before == after, "anonymous load.py changed stored records");

    let logs = server.stop_cleanly();
    drop(server);
    let all = logs.both();
    assert!(
        !all.contains(CREATED_MARKER),
        "HARPER_ADMIN given, yet a generated password was printed:\n{all}"
    );
    assert_absent(&all, "s3cret-pw", "the HARPER_ADMIN password", "output");
    assert_absent(&all, &admin_basic, "the Basic credential", "output");
}
