//! The storefront from Harper's tutorial: products, categories and cart items.
//!
//! `cargo run --example storefront [-- --addr HOST:PORT --data DIR --no-seed]` opens (or
//! creates) the data directory, fills a demo catalog on first start (unless `--no-seed`), and
//! serves the three tables over Harper's REST API, with add-to-cart and checkout (`shop`,
//! `api`), until Ctrl-C or SIGTERM.
//!
//! `... -- [--data DIR] import FILE [--table T]` imports a JSON array or CSV file;
//! `... -- generate N FILE` writes N generated products to import (see `import`).

mod api;
mod catalog;
mod import;
mod schema;
mod shop;
mod web;

use std::path::{Path, PathBuf};
use std::time::Instant;

use harper::prelude::*;
use harper::schema::TableDef;
use schema::{CartItem, Category, Product};

/// Fills the demo catalog (see `catalog.rs`) in one transaction.
fn seed(db: &Database) -> harper::Result<()> {
    let (categories, products) = catalog::demo_catalog();
    db.write(|tx| {
        for c in &categories {
            tx.put(c)?;
        }
        for p in &products {
            tx.put(p)?;
        }
        Ok(())
    })
}

const USAGE: &str = "\
usage: storefront [--addr HOST:PORT] [--data DIR] [--no-seed]
           serve the storefront (env: HARPER_ADDR, HARPER_DATA, HARPER_ADMIN,
           HARPER_LOG_FORMAT=json, RUST_LOG)
       storefront [--data DIR] import FILE [--table Product|Category|CartItem]
           import a JSON array of records, or a CSV file with a header row of attribute
           names (chosen by extension, else by content), into a table (default Product).
           Every row is checked whole; bad rows are reported with their line and skipped.
           Rows replace records by id, so importing a file again (after an interruption,
           say) is safe. Stop the server first: one process at a time opens a data directory.
       storefront generate N FILE
           write N generated products (ids gen-0000000, ...) to FILE: CSV when its name
           ends in .csv, else a JSON array";

/// The tables the storefront serves (and documents in /openapi).
fn tables() -> Vec<&'static TableDef> {
    vec![Product::DEF, Category::DEF, CartItem::DEF]
}

#[derive(Debug, PartialEq)]
enum Command {
    Serve,
    Import { file: PathBuf, table: String },
    Generate { count: usize, file: PathBuf },
}

struct Options {
    addr: String,
    data: String,
    seed: bool,
    command: Command,
}

fn options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        addr: std::env::var("HARPER_ADDR").unwrap_or_else(|_| "127.0.0.1:9926".into()),
        data: std::env::var("HARPER_DATA").unwrap_or_else(|_| "data/storefront".into()),
        seed: true,
        command: Command::Serve,
    };
    let mut table = None;
    let mut words = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => o.addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--data" => o.data = args.next().ok_or("--data needs a directory")?,
            "--no-seed" => o.seed = false,
            "--table" => table = Some(args.next().ok_or("--table needs a table name")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown option {other}; see --help"));
            }
            _ => words.push(arg),
        }
    }
    o.command = match words.as_slice() {
        [] => Command::Serve,
        [cmd, file] if cmd == "import" => Command::Import {
            file: file.into(),
            table: table.take().unwrap_or_else(|| "Product".into()),
        },
        [cmd, count, file] if cmd == "generate" => Command::Generate {
            count: count
                .parse()
                .map_err(|_| format!("generate needs a count, not {count:?}"))?,
            file: file.into(),
        },
        _ => return Err(format!("unexpected arguments {words:?}; see --help")),
    };
    if table.is_some() {
        return Err("--table goes with import; see --help".into());
    }
    Ok(o)
}

fn main() -> harper::Result<()> {
    // Before the runtime's threads exist, so that they share malloc's arenas.
    harper::memory::tune_malloc();
    tokio::runtime::Runtime::new()?.block_on(serve())
}

async fn serve() -> harper::Result<()> {
    // Logs go to stderr (stdout carries the address line); `HARPER_LOG_FORMAT=json` makes
    // them one JSON object per line for log collectors.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("HARPER_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    let o = match options(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match &o.command {
        Command::Serve => {}
        Command::Import { file, table } => std::process::exit(run_import(&o.data, file, table)?),
        Command::Generate { count, file } => std::process::exit(run_generate(*count, file)),
    }
    // Said plainly (a returned error would print as its Debug form): which directory, what
    // is wrong with it, what to do.
    let started = Instant::now();
    // Listen for Ctrl-C and SIGTERM before serving: one that came between the first request
    // served and a later registration would be lost (the process would not stop).
    let stop = shutdown_signal();
    let stage = |what: &str| {
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "start-up: {what} (since main)"
        )
    };
    stage("logging ready");
    let db = Database::open(&o.data).unwrap_or_else(|e| {
        eprintln!("storefront: cannot start: {e}");
        std::process::exit(1)
    });
    stage("database open");
    let app = api::storefront_app(db.clone())?.route(web::routes());
    stage("app built");
    if o.seed && db.get::<Category>("electronics")?.is_none() {
        seed(&db)?;
        tracing::info!(data = %o.data, "seeded a demo catalog (10 categories, 300 products)");
    }
    let server = app.bind(&o.addr).await?;
    stage("listening");
    let addr = server.local_addr();
    println!("harper storefront on http://{addr}/  (data: {})", o.data);
    println!("  curl 'http://{addr}/Product/?categoryId=electronics&inStock=true&limit=20'");
    println!("  curl 'http://{addr}/Product/?price=lt=100&inStock=true&sort=name'");
    println!(
        "  curl -X POST http://{addr}/auth/session    # a cart session: its accessToken is the Bearer below"
    );
    println!(
        "  curl -X POST http://{addr}/CartItem/ -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{{\"productId\":\"prod-00001\",\"quantity\":2}}'"
    );
    println!(
        "  curl -X POST http://{addr}/Cart/$SESSION/checkout -H \"authorization: Bearer $TOKEN\""
    );
    println!("  curl http://{addr}/openapi");
    stop.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// `import FILE [--table T]`: the exit code is 0 when every row was imported, 1 when some
/// were skipped or the import stopped, 2 for an unknown table.
fn run_import(data: &str, file: &Path, table: &str) -> harper::Result<i32> {
    let Some(def) = tables().into_iter().find(|d| d.name == table) else {
        let names: Vec<&str> = tables().iter().map(|d| d.name).collect();
        eprintln!("no table {table}; the tables are {}", names.join(", "));
        return Ok(2);
    };
    let db = Database::open(data)?;
    for def in tables() {
        db.register_def(def)?;
    }
    let progress = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {msg}",
    ) {
        progress.set_style(style.progress_chars("=> "));
    }
    let started = Instant::now();
    let result = import::import_file(&db, def, file, None, &progress);
    progress.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("import of {} stopped: {e}", file.display());
            return Ok(1);
        }
    };
    for bad in &report.skipped {
        eprintln!("{}: skipped {bad}", file.display());
    }
    db.persist()?;
    println!(
        "imported {} {} rows into {data} in {:.2?} ({} new, {} replaced); skipped {} bad rows",
        report.written(),
        def.name,
        started.elapsed(),
        report.created,
        report.replaced,
        report.skipped.len()
    );
    Ok(if report.skipped.is_empty() { 0 } else { 1 })
}

/// `generate N FILE`: the exit code.
fn run_generate(count: usize, file: &Path) -> i32 {
    let format = match file.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => import::Format::Csv,
        _ => import::Format::Json,
    };
    let written = std::fs::File::create(file).and_then(|f| {
        let mut out = std::io::BufWriter::new(f);
        import::write_products(&mut out, count, format)?;
        std::io::Write::flush(&mut out)
    });
    match written {
        Ok(()) => {
            println!("wrote {count} products to {}", file.display());
            0
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", file.display());
            1
        }
    }
}

/// Completes at Ctrl-C or SIGTERM; listens from the call on, not from the first poll.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn recv(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let term = recv(signal(SignalKind::terminate()).ok());
    let int = recv(signal(SignalKind::interrupt()).ok());
    async move {
        tokio::select! {
            _ = int => {},
            _ = term => {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_fills_ten_categories_and_three_hundred_products() {
        let db = Database::temporary().unwrap();
        seed(&db).unwrap();
        let (cats, products) = db
            .read(|tx| {
                Ok::<_, harper::Error>((
                    tx.query::<Category>(&Query::new())?.len(),
                    tx.query::<Product>(&Query::new())?.len(),
                ))
            })
            .unwrap();
        assert_eq!((cats, products), (10, 300));
        db.check_integrity().unwrap();
    }

    fn parse(args: &[&str]) -> Result<Options, String> {
        options(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn command_line() {
        let o = parse(&["--data", "/tmp/x", "import", "p.json"]).unwrap();
        assert_eq!(o.data, "/tmp/x");
        assert_eq!(
            o.command,
            Command::Import {
                file: "p.json".into(),
                table: "Product".into()
            }
        );
        let o = parse(&["import", "c.csv", "--table", "Category"]).unwrap();
        assert_eq!(
            o.command,
            Command::Import {
                file: "c.csv".into(),
                table: "Category".into()
            }
        );
        let o = parse(&["generate", "10", "out.csv"]).unwrap();
        assert_eq!(
            o.command,
            Command::Generate {
                count: 10,
                file: "out.csv".into()
            }
        );
        let o = parse(&["--no-seed", "--addr", "0.0.0.0:1"]).unwrap();
        assert_eq!(
            (o.command, o.seed, o.addr.as_str()),
            (Command::Serve, false, "0.0.0.0:1")
        );
        for bad in [
            &["import"][..],
            &["import", "a", "b"],
            &["generate", "x", "f"],
            &["--table", "Product"],
            &["--bogus"],
            &["serve"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
