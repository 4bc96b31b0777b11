use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    #[primary_key]
    pub sku: String,
}
fn main() {}
