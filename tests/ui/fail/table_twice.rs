use harper::prelude::*;

#[table]
#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
