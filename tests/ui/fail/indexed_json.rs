use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub attributes: std::collections::HashMap<String, String>,
}
fn main() {}
