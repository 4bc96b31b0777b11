use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    #[indexed(unique)]
    pub sku: String,
}
fn main() {}
