use harper::prelude::*;

#[table(name = "ProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProductProduct")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
