use harper::prelude::*;

#[table]
#[serde(rename_all = "PascalCase")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
