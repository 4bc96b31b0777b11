//! The storefront from Harper's tutorial: products, categories and cart items.
//!
//! `cargo run --example storefront [-- --data DIR]` opens (or creates) the data directory,
//! fills a demo catalog on first start, and runs the seed's two queries through the engine.
//! The REST server arrives with the REST API.

mod schema;

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

fn main() -> harper::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut data = std::env::var("HARPER_DATA").unwrap_or_else(|_| "data/storefront".into());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = args.next().unwrap_or(data),
            other => {
                eprintln!("unknown argument {other}; usage: storefront [--data DIR]");
                std::process::exit(2);
            }
        }
    }
    let db = Database::open(&data)?;
    db.register::<Product>()?;
    db.register::<Category>()?;
    db.register::<CartItem>()?;
    if db.get::<Category>("electronics")?.is_none() {
        seed(&db)?;
        println!("seeded a demo catalog into {data}");
    }

    let first = Query::new()
        .filter(attr("categoryId").eq("electronics") & attr("inStock").eq(true))
        .limit(20);
    let second = Query::new()
        .filter(attr("price").lt(100.0) & attr("inStock").eq(true))
        .sort_by("name");
    db.read(|tx| {
        let (rows, stats) = tx.query_with_stats(Product::DEF, &first)?;
        println!(
            "categoryId=electronics&inStock=true&limit=20 -> {} products ({})",
            rows.len(),
            stats.plan
        );
        let cheap: Vec<Product> = tx.query(&second)?;
        println!(
            "price=lt=100&inStock=true&sort=name -> {} products",
            cheap.len()
        );
        for p in cheap.iter().take(5) {
            let category = p.category(tx)?.map(|c| c.name).unwrap_or_default();
            println!("  {:<28} {:>8.2}  {}", p.name, p.price, category);
        }
        Ok::<_, harper::Error>(())
    })?;
    println!("data directory: {data} (the REST server arrives with the REST API)");
    Ok(())
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
