use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    #[serde(skip)]
    pub cache: Option<String>,
}
fn main() {}
