use harper::prelude::*;

#[export]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
