use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Vec<Id>,
}
fn main() {}
