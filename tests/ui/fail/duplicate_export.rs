use harper::prelude::*;

#[table]
#[export]
#[export(name = "products")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
