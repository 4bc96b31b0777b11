//! The storefront from Harper's tutorial: products, categories and cart items.
//!
//! `cargo run --example storefront [-- --addr HOST:PORT --data DIR --no-seed]` opens (or
//! creates) the data directory, fills a demo catalog on first start (unless `--no-seed`), and
//! serves the three tables over Harper's REST API until Ctrl-C or SIGTERM.

mod catalog;
mod schema;

use harper::App;
use harper::prelude::*;
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

struct Options {
    addr: String,
    data: String,
    seed: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        addr: std::env::var("HARPER_ADDR").unwrap_or_else(|_| "127.0.0.1:9926".into()),
        data: std::env::var("HARPER_DATA").unwrap_or_else(|_| "data/storefront".into()),
        seed: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => o.addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--data" => o.data = args.next().ok_or("--data needs a directory")?,
            "--no-seed" => o.seed = false,
            "-h" | "--help" => {
                println!(
                    "usage: storefront [--addr HOST:PORT] [--data DIR] [--no-seed]\n(env: HARPER_ADDR, HARPER_DATA)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> harper::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .init();
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let db = Database::open(&o.data)?;
    let app = App::new(db.clone())
        .table::<Product>()
        .table::<Category>()
        .table::<CartItem>();
    if o.seed && db.get::<Category>("electronics")?.is_none() {
        seed(&db)?;
        tracing::info!(data = %o.data, "seeded a demo catalog (10 categories, 300 products)");
    }
    let server = app.bind(&o.addr).await?;
    let addr = server.local_addr();
    println!("harper storefront on http://{addr}/  (data: {})", o.data);
    println!("  curl 'http://{addr}/Product/?categoryId=electronics&inStock=true&limit=20'");
    println!("  curl 'http://{addr}/Product/?price=lt=100&inStock=true&sort=name'");
    println!("  curl http://{addr}/openapi");
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
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
}
