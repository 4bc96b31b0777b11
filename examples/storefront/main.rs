//! The storefront from Harper's tutorial: products, categories and cart items.
//!
//! `cargo run --example storefront [-- --addr HOST:PORT --data DIR --no-seed]` opens (or
//! creates) the data directory, fills a demo catalog on first start (unless `--no-seed`), and
//! serves the three tables over Harper's REST API until Ctrl-C or SIGTERM.

mod schema;

use harper::App;
use harper::prelude::*;
use schema::{CartItem, Category, Product};

const CATEGORIES: &[(&str, &str)] = &[
    ("electronics", "Electronics"),
    ("books", "Books"),
    ("toys", "Toys"),
    ("home", "Home & Kitchen"),
    ("garden", "Garden"),
    ("sports", "Sports"),
    ("clothing", "Clothing"),
    ("beauty", "Beauty"),
    ("automotive", "Automotive"),
    ("grocery", "Grocery"),
];

const ADJECTIVES: &[&str] = &[
    "Deluxe", "Ultra", "Classic", "Compact", "Vintage", "Smart", "Eco", "Pro",
];
const NOUNS: &[&str] = &[
    "Headphones",
    "Puzzle",
    "Lamp",
    "Blender",
    "Backpack",
    "Notebook",
    "Kettle",
    "Drone",
];

fn seed(db: &Database) -> harper::Result<()> {
    db.write(|tx| {
        for (id, name) in CATEGORIES {
            tx.put(&Category {
                id: (*id).into(),
                name: (*name).into(),
                description: Some(format!("Everything in {name}")),
                products: Links::new(),
            })?;
        }
        for i in 1..=300usize {
            let stock = ((i * 37) % 60) as i32;
            tx.put(&Product {
                id: format!("prod-{i:05}").into(),
                name: format!(
                    "{} {} {i:05}",
                    ADJECTIVES[i % ADJECTIVES.len()],
                    NOUNS[(i / 3) % NOUNS.len()]
                ),
                description: Some("A demo product".into()),
                price: ((i * 7919) % 50_000) as f64 / 100.0 + 1.0,
                category_id: CATEGORIES[i % CATEGORIES.len()].0.into(),
                in_stock: stock > 0,
                stock_quantity: stock,
                image_url: Some(format!("/images/{i}.svg")),
                created_at: None,
                category: Link::new(),
            })?;
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
