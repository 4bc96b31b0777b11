use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Option<Id>,
}
fn main() {}
