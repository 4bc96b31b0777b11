use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key(auto_increment)]
    pub id: u64,
}
fn main() {}
