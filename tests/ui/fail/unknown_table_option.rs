use harper::prelude::*;

#[table(bogus)]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
