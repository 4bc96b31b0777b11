//! The seed's storefront tables, exactly as its `schema.graphql` declares them:
//! attribute names, types, indexes and relationships. Beyond the seed, who may do what:
//! the catalog is public to read and written by admins; a cart item is seen and changed
//! only by the session that owns it (`shop::cart_owner`) and by admins. Also beyond the
//! seed: one compound index, `(categoryId, name)`, for the listing page (a category's
//! products by name, a page at a time), which otherwise costs in proportion to the table.

use harper::prelude::*;

#[table(index(category_id, name))]
#[export(read = "public", write = "admin")]
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
    /// GraphQL `Int`: 32-bit, as in the seed.
    pub stock_quantity: i32,
    pub image_url: Option<String>,
    pub created_at: Option<String>,
    #[relationship(from = category_id)]
    pub category: Link<Category>,
}

#[table]
#[export(read = "public", write = "admin")]
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
#[export(read = "owner", write = "owner", delete = "owner")]
#[derive(Debug, Clone, PartialEq)]
pub struct CartItem {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub product_id: Id,
    #[indexed]
    pub session_id: String,
    pub quantity: i32,
    pub added_at: Option<String>,
    #[relationship(from = product_id)]
    pub product: Link<Product>,
}
