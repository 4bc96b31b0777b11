use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: serde_json::Value,
}
fn main() {}
