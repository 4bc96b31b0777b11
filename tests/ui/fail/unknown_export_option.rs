use harper::prelude::*;

#[table]
#[export(path = "/products")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
