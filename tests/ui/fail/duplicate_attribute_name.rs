use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    pub category_id: Id,
    #[rename = "categoryId"]
    pub category_key: Id,
}
fn main() {}
