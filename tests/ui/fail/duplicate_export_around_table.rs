use harper::prelude::*;

#[export]
#[table]
#[export(name = "products")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
