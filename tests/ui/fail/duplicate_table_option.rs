use harper::prelude::*;

#[table(name = "Product", name = "Item")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
