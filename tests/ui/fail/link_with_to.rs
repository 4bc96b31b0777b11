use harper::prelude::*;

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    pub category_id: Id,
}

#[table]
pub struct Category {
    #[primary_key]
    pub id: Id,
    #[relationship(to = category_id)]
    pub product: Link<Product>,
}

fn main() {}
