use harper::prelude::*;

#[table]
pub struct Product {
    pub id: Id,
    pub name: String,
}
fn main() {}
