use harper::prelude::*;

#[table(rename_all = "camelcase")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
