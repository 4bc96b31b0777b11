//! The storefront's web page in a real browser: headless Chromium, driven over the Chrome
//! DevTools Protocol (CDP), against the storefront example binary on a free port.
//!
//! One shopper (tab A) loads the page, filters (toys, up to $50, in stock, dearest first),
//! is refused an add beyond the stock, adds two of a product, opens the cart and checks out.
//! A second shopper (tab B, its own browser context, so its own localStorage and session)
//! has the toys on screen and sees that product's stock drop without reloading. Then the
//! page is checked at phone width (360 px, no horizontal scrolling) and screenshots are
//! saved under `target/browser/`.
//!
//! Needs `chromium` (Debian's package; `.ci/run` installs it). Without it the test fails when
//! `CI` is set and is skipped, loudly, otherwise. `CHROMIUM=/path/to/chrome` picks another
//! binary.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use cdp::Browser;

/// How long any one condition on the page may take to come true.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_page_filters_adds_checks_out_and_follows_live_stock() {
    let Some(chromium) = find_chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed, and CI is set: .ci/run should have installed it");
        }
        eprintln!();
        eprintln!("==================================================================");
        eprintln!("  SKIPPED tests/browser.rs: chromium is not installed.");
        eprintln!("  Install it (apt-get install -y chromium) or set CHROMIUM=<path>.");
        eprintln!("==================================================================");
        eprintln!();
        return;
    };

    let data = tempfile::tempdir().unwrap();
    let (_server, base) = start_storefront(data.path());
    let http = reqwest::Client::new();
    let profile = tempfile::tempdir().unwrap();
    let (_chromium, ws_url) = launch_chromium(&chromium, profile.path());
    let browser = Browser::connect(&ws_url).await;

    // ---- Tab A: load, filter ------------------------------------------------------------
    let a = browser.new_page(None).await;
    a.viewport(1280, 900, false).await;
    a.navigate(&format!("{base}/")).await;
    a.wait_for(
        "categories and products are listed",
        "document.querySelectorAll('#categories .chip').length === 11 \
         && document.querySelectorAll('#products .product').length > 0",
    )
    .await;

    a.eval(
        "{ document.querySelector('.chip[data-category=\"toys\"]').click();
         const max = document.getElementById('max-price');
         max.value = '50';
         max.dispatchEvent(new Event('input'));
         document.getElementById('in-stock').click();
         const sort = document.getElementById('sort');
         sort.value = '-price';
         sort.dispatchEvent(new Event('change')); }",
    )
    .await;
    // The grid shows exactly what the REST API answers for the same query, in its order.
    let expected: Vec<Value> = http
        .get(format!(
            "{base}/Product/?categoryId=toys&price=le=50&inStock=true&sort(-price)&select(id)"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        expected.len() >= 5,
        "the demo catalog has cheap toys in stock: {expected:?}"
    );
    let expected_ids = Value::from(expected.iter().take(60).cloned().collect::<Vec<_>>());
    a.wait_for(
        "the grid shows the filtered toys, dearest first",
        &format!(
            "(() => {{
                const grid = document.getElementById('products');
                if (grid.getAttribute('aria-busy') !== 'false') return false;
                const cards = [...grid.querySelectorAll('.product')];
                return JSON.stringify(cards.map(c => c.dataset.id)) === JSON.stringify({expected_ids})
                    && cards.every(c => c.dataset.category === 'toys'
                        && Number(c.dataset.price) <= 50 && Number(c.dataset.stock) > 0);
            }})()"
        ),
    )
    .await;

    // The product both shoppers will watch: the first card on A's screen.
    let product = a
        .eval("document.querySelector('#products .product').dataset.id")
        .await;
    let product = product.as_str().unwrap().to_owned();
    let stock_before = product_stock(&http, &base, &product).await;
    assert!(stock_before >= 2, "{product} has {stock_before} left");

    // ---- Tab B: another shopper (own browser context) watching the toys -----------------
    let b = browser.new_page(Some(browser.new_context().await)).await;
    b.viewport(1024, 800, false).await;
    b.navigate(&format!("{base}/")).await;
    b.wait_for(
        "tab B lists products",
        "document.querySelectorAll('.chip').length === 11 && document.querySelector('#products .product') !== null",
    )
    .await;
    b.eval("document.querySelector('.chip[data-category=\"toys\"]').click()")
        .await;
    let card_b = format!("document.querySelector('#products .product[data-id=\"{product}\"]')");
    b.wait_for(
        "tab B shows the product with its stock",
        &format!("{card_b} !== null && {card_b}.dataset.stock === '{stock_before}'"),
    )
    .await;
    b.wait_for(
        "tab B's live updates are connected",
        "document.getElementById('live').dataset.state === 'live'",
    )
    .await;
    // Anything that reloads the page would lose this.
    b.eval("window.__noReload = 'still here'").await;
    let b_session = b.eval("document.body.dataset.session").await;
    let a_session = a.eval("document.body.dataset.session").await;
    assert_ne!(a_session, b_session, "two contexts, two sessions");

    // ---- Tab A: an add beyond the stock is refused with the server's message -------------
    let card_a = format!("document.querySelector('#products .product[data-id=\"{product}\"]')");
    a.eval(&format!(
        "{card_a}.querySelector('.qty').value = '{}'; {card_a}.querySelector('.add').click();",
        stock_before + 1
    ))
    .await;
    a.wait_for(
        "a toast explains the stock is short",
        "[...document.querySelectorAll('.toast.error')].some(t => /stock/i.test(t.textContent))",
    )
    .await;
    assert_eq!(
        a.eval("document.getElementById('cart-count').textContent")
            .await,
        json!("0")
    );

    // ---- Tab A: add two, see the cart, check out -----------------------------------------
    a.eval(&format!(
        "{card_a}.querySelector('.qty').value = '2'; {card_a}.querySelector('.add').click();"
    ))
    .await;
    a.wait_for(
        "the cart badge counts two",
        "document.getElementById('cart-count').textContent === '2'",
    )
    .await;
    a.eval("document.getElementById('cart-button').click()")
        .await;
    a.wait_for(
        "the cart lists the product with its total",
        &format!(
            "(() => {{
                const items = [...document.querySelectorAll('#cart-items li')];
                const price = Number({card_a}.dataset.price);
                const total = new Intl.NumberFormat('en-US', {{style: 'currency', currency: 'USD'}}).format(2 * price);
                return document.getElementById('cart').classList.contains('open')
                    && items.length === 1 && items[0].dataset.productId === '{product}'
                    && document.getElementById('cart-total').textContent === total;
            }})()"
        ),
    )
    .await;
    a.eval("document.getElementById('checkout').click()").await;
    a.wait_for(
        "the receipt shows the order and the cart is empty",
        "(() => {
            const r = document.getElementById('checkout-result');
            return !r.hidden && /Order placed/.test(r.textContent) && /2 items/.test(r.textContent)
                && document.getElementById('cart-count').textContent === '0';
        })()",
    )
    .await;
    assert_eq!(
        product_stock(&http, &base, &product).await,
        stock_before - 2,
        "the checkout took two from the stock"
    );

    // ---- Tab B sees the new stock without reloading ----------------------------------------
    b.wait_for(
        "tab B shows the stock after A's checkout",
        &format!("{card_b}.dataset.stock === '{}'", stock_before - 2),
    )
    .await;
    assert_eq!(b.eval("window.__noReload").await, json!("still here"));

    // ---- Screenshots: A with its receipt; B at phone width ---------------------------------
    let dir = screenshot_dir();
    let desktop = dir.join("storefront.png");
    std::fs::write(&desktop, a.screenshot().await).unwrap();
    assert_png(&desktop);

    b.viewport(360, 780, true).await;
    b.wait_for(
        "at 360 px the page does not scroll sideways and the grid has two columns",
        "(() => {
            const grid = document.getElementById('products');
            const columns = getComputedStyle(grid).gridTemplateColumns.split(' ').length;
            return document.documentElement.scrollWidth <= 360 && columns === 2;
        })()",
    )
    .await;
    let phone = dir.join("storefront-phone.png");
    std::fs::write(&phone, b.screenshot().await).unwrap();
    assert_png(&phone);

    browser.close().await;
}

async fn product_stock(http: &reqwest::Client, base: &str, id: &str) -> i64 {
    let record: Value = http
        .get(format!("{base}/Product/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    record["stockQuantity"].as_i64().unwrap()
}

fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp: the screenshots go beside it, in <target>/browser.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG image ({} bytes)",
        path.display(),
        bytes.len()
    );
    println!("screenshot: {} ({} bytes)", path.display(), bytes.len());
}

// ---- processes ---------------------------------------------------------------------------

/// Kills its process group (the process and anything it started) when dropped, on every
/// exit path including a failed assertion.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        // The child leads its own process group (see `own_group`): kill the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn own_group(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Builds the storefront example (a no-op when `cargo test` already did), starts it on a
/// free port over `data`, and returns it with its base URL once it listens.
fn start_storefront(data: &Path) -> (Killed, String) {
    let executable = common::storefront_executable();

    let mut child = own_group(
        Command::new(executable)
            .args(["--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Killed(child);
    let base = first_line_after(stdout, "harper storefront on ", "storefront address")
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    (server, base)
}

/// Starts headless Chromium with a DevTools port chosen by itself; returns it with the
/// browser's WebSocket URL.
fn launch_chromium(binary: &Path, profile: &Path) -> (Killed, String) {
    let mut child = own_group(
        Command::new(binary)
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--hide-scrollbars",
                "--mute-audio",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let chromium = Killed(child);
    let url = first_line_after(stderr, "DevTools listening on ", "the DevTools URL")
        .trim()
        .to_owned();
    (chromium, url)
}

/// Reads `stream` on a thread until a line contains `marker`; returns what follows it. The
/// thread then keeps draining the stream, so the child never blocks on a full pipe.
fn first_line_after(
    stream: impl std::io::Read + Send + 'static,
    marker: &str,
    what: &str,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_owned();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find(&marker)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line[at + marker.len()..].to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no {what} within 60 s"))
}

/// A small Chrome DevTools Protocol client: one WebSocket to the browser, pages attached
/// with flattened sessions (each command names its page's `sessionId`), replies matched to
/// commands by id. Events are not needed here and are dropped.
mod cdp {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use futures::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio::sync::{mpsc, oneshot};
    use tokio_tungstenite::tungstenite::Message;

    type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

    pub struct Browser {
        outgoing: mpsc::UnboundedSender<Message>,
        pending: Pending,
        next_id: AtomicU64,
    }

    impl Browser {
        pub async fn connect(url: &str) -> Browser {
            let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let (mut sink, mut stream) = socket.split();
            let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
            tokio::spawn(async move {
                while let Some(message) = queue.recv().await {
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
            });
            let pending: Pending = Arc::default();
            let replies = pending.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = reply["id"].as_u64()
                        && let Some(waiter) = replies.lock().unwrap().remove(&id)
                    {
                        let _ = waiter.send(reply);
                    }
                }
            });
            Browser {
                outgoing,
                pending,
                next_id: AtomicU64::new(1),
            }
        }

        /// Sends one command (to a page when `session` is given) and returns its `result`;
        /// panics on a protocol error or after 30 s without a reply.
        pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut command = json!({"id": id, "method": method, "params": params});
            if let Some(session) = session {
                command["sessionId"] = json!(session);
            }
            let (tx, rx) = oneshot::channel();
            self.pending.lock().unwrap().insert(id, tx);
            self.outgoing
                .send(Message::Text(command.to_string().into()))
                .expect("the DevTools connection is closed");
            let reply = tokio::time::timeout(Duration::from_secs(30), rx)
                .await
                .unwrap_or_else(|_| panic!("no reply to {method} within 30 s"))
                .unwrap_or_else(|_| panic!("the DevTools connection closed during {method}"));
            if let Some(error) = reply.get("error") {
                panic!("{method} failed: {error}");
            }
            reply["result"].clone()
        }

        /// A fresh browser context: its own cookies and storage, like a second browser.
        pub async fn new_context(&self) -> String {
            let reply = self
                .call(None, "Target.createBrowserContext", json!({}))
                .await;
            reply["browserContextId"].as_str().unwrap().to_owned()
        }

        /// Opens a tab (in `context`, or the default one) and attaches to it.
        pub async fn new_page(&self, context: Option<String>) -> Page<'_> {
            let mut params = json!({"url": "about:blank"});
            if let Some(context) = context {
                params["browserContextId"] = json!(context);
            }
            let target = self.call(None, "Target.createTarget", params).await;
            let attached = self
                .call(
                    None,
                    "Target.attachToTarget",
                    json!({"targetId": target["targetId"], "flatten": true}),
                )
                .await;
            let page = Page {
                browser: self,
                session: attached["sessionId"].as_str().unwrap().to_owned(),
            };
            page.call("Page.enable", json!({})).await;
            page.call("Runtime.enable", json!({})).await;
            page
        }

        pub async fn close(&self) {
            // The browser may drop the connection before it replies; the guard kills it anyway.
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let close = json!({"id": id, "method": "Browser.close"});
            let _ = self.outgoing.send(Message::Text(close.to_string().into()));
        }
    }

    pub struct Page<'a> {
        browser: &'a Browser,
        session: String,
    }

    impl Page<'_> {
        pub async fn call(&self, method: &str, params: Value) -> Value {
            self.browser.call(Some(&self.session), method, params).await
        }

        pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
            self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
        }

        /// Navigates and waits until the document has loaded.
        pub async fn navigate(&self, url: &str) {
            let reply = self.call("Page.navigate", json!({"url": url})).await;
            assert!(
                reply.get("errorText").is_none(),
                "navigating to {url}: {reply}"
            );
            self.wait_for(
                &format!("{url} loads"),
                &format!(
                    "location.href === {} && document.readyState === 'complete'",
                    json!(url)
                ),
            )
            .await;
        }

        /// Evaluates `expression` in the page (awaiting a promise) and returns its value;
        /// panics when it throws.
        pub async fn eval(&self, expression: &str) -> Value {
            let reply = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
                )
                .await;
            if let Some(exception) = reply.get("exceptionDetails") {
                panic!("{expression}\nthrew {exception}");
            }
            reply["result"]["value"].clone()
        }

        /// Polls `condition` (a JavaScript expression) until it is `true`; panics with `what`
        /// and the page's messages after [`super::WAIT`].
        pub async fn wait_for(&self, what: &str, condition: &str) {
            let deadline = Instant::now() + super::WAIT;
            let guarded = format!(
                "(() => {{ try {{ return ({condition}) === true; }} catch (e) {{ return false; }} }})()"
            );
            loop {
                if self.eval(&guarded).await == json!(true) {
                    return;
                }
                if Instant::now() > deadline {
                    let toasts = self
                        .eval("[...document.querySelectorAll('.toast')].map(t => t.textContent).join(' | ')")
                        .await;
                    panic!(
                        "waited {:?} for: {what}\ncondition: {condition}\npage messages: {toasts}",
                        super::WAIT
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        /// A PNG of the viewport.
        pub async fn screenshot(&self) -> Vec<u8> {
            let shot = self
                .call("Page.captureScreenshot", json!({"format": "png"}))
                .await;
            base64_decode(shot["data"].as_str().unwrap())
        }
    }

    /// Standard base64 (CDP's encoding of binary data), without a dependency for it.
    fn base64_decode(text: &str) -> Vec<u8> {
        fn value(c: u8) -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                _ => panic!("not base64: {c:?}"),
            }
        }
        let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
        let mut out = Vec::with_capacity(digits.len() * 3 / 4);
        for chunk in digits.chunks(4) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
            let bytes = n.to_be_bytes();
            out.extend_from_slice(&bytes[1..chunk.len()]);
        }
        out
    }
}
