//! Shared fixtures: the storefront schema and record builders.
#![allow(dead_code)]

#[path = "../../examples/storefront/schema.rs"]
pub mod schema;

pub use schema::{CartItem, Category, Product};

use harper::prelude::*;

pub fn product(id: &str, category: &str, price: f64, stock: i32) -> Product {
    Product {
        id: id.into(),
        name: format!("Product {id}"),
        description: Some(format!("About {id}")),
        price,
        category_id: category.into(),
        in_stock: stock > 0,
        stock_quantity: stock,
        image_url: None,
        created_at: None,
        category: Link::new(),
    }
}

pub fn category(id: &str, name: &str) -> Category {
    Category {
        id: id.into(),
        name: name.into(),
        description: None,
        products: Links::new(),
    }
}

pub fn cart_item(id: &str, product: &str, session: &str, quantity: i32) -> CartItem {
    CartItem {
        id: id.into(),
        product_id: product.into(),
        session_id: session.into(),
        quantity,
        added_at: None,
        product: Link::new(),
    }
}

/// A small catalog: 3 categories, 30 products (10 per category), prices 1..=30.
pub fn small_catalog(db: &Database) {
    db.write(|tx| {
        tx.put(&category("toys", "Toys"))?;
        tx.put(&category("books", "Books"))?;
        tx.put(&category("garden", "Garden"))?;
        for i in 1..=30 {
            let cat = ["toys", "books", "garden"][i % 3];
            let stock = (i % 4) as i32; // every fourth is out of stock
            tx.put(&product(&format!("p{i:02}"), cat, i as f64, stock))?;
        }
        Ok::<_, harper::Error>(())
    })
    .unwrap();
}

/// The storefront example's binary: builds it (a no-op when `cargo test` already did) and
/// returns the path cargo reports, for tests that run the real process.
pub fn storefront_executable() -> std::path::PathBuf {
    use std::process::{Command, Stdio};
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .args([
            "build",
            "--example",
            "storefront",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "cargo build --example storefront failed"
    );
    String::from_utf8_lossy(&build.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "storefront")
        .find_map(|m| m["executable"].as_str().map(std::path::PathBuf::from))
        .expect("cargo reported no storefront executable")
}

/// The admin that in-process test servers are given (see [`with_admin`]).
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-test-password";

/// `Authorization` value of the test admin (HTTP Basic).
pub fn admin_authorization() -> String {
    use base64::Engine;
    let creds = format!("{ADMIN_USER}:{ADMIN_PASSWORD}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    )
}

/// Creates the test admin in `app`'s credential store (no generated admin is printed).
pub fn with_admin(app: harper::App) -> harper::App {
    app.auth()
        .unwrap()
        .create_user(ADMIN_USER, ADMIN_PASSWORD, &["admin".to_owned()])
        .unwrap();
    app
}

/// An HTTP client that sends the test admin's credentials with every request.
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        admin_authorization().parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}
