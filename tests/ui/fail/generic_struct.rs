use harper::prelude::*;

#[table]
pub struct Product<T> {
    #[primary_key]
    pub id: Id,
    pub extra: T,
}
fn main() {}
