use harper::prelude::*;

#[table]
pub enum Product {
    Book {
        #[primary_key]
        id: Id,
    },
}
fn main() {}
