use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    #[cfg(unix)]
    pub extra: String,
}

fn main() {}
