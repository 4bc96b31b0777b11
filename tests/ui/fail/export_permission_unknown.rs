use harper::prelude::*;

#[table]
#[export(read = "public", write = "owners")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
