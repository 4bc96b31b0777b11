use harper::prelude::*;

#[export]
#[export(name = "products")]
#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
