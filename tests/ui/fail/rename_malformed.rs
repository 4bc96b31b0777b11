use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    #[rename("SKU")]
    pub sku: String,
}
fn main() {}
