// The storefront schema of harper-peer/storefront/schema.graphql, as Rust tables.
#![deny(warnings)] // generated code must not warn

use harper::prelude::*;

#[table]
#[export]
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub name: String,
    pub description: Option<String>,
    #[indexed]
    pub price: f64,
    #[indexed]
    pub category_id: Id,
    #[indexed]
    pub in_stock: bool,
    pub stock_quantity: i64,
    pub image_url: Option<String>,
    pub created_at: Option<String>,
    #[relationship(from = category_id)]
    pub category: Link<Category>,
}

#[table]
#[export]
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub name: String,
    pub description: Option<String>,
    #[relationship(to = category_id)]
    pub products: Links<Product>,
}

#[table]
#[export]
#[derive(Debug, Clone, PartialEq)]
pub struct CartItem {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub product_id: Id,
    #[indexed]
    pub session_id: String,
    pub quantity: i64,
    pub added_at: Option<String>,
    #[relationship(from = product_id)]
    pub product: Link<Product>,
}

fn main() {
    assert_eq!(Product::DEF.name, "Product");
    assert_eq!(Category::DEF.export_name(), Some("Category"));
    assert_eq!(CartItem::DEF.field("productId").map(|f| f.rust_name), Some("product_id"));
    let _ = Product {
        id: "p1".into(),
        name: "Lamp".into(),
        description: None,
        price: 19.5,
        category_id: "c1".into(),
        in_stock: true,
        stock_quantity: 3,
        image_url: None,
        created_at: None,
        category: Link::new(),
    };
}
