use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: f64,
}
fn main() {}
