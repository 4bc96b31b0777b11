use harper::prelude::*;

#[table]
pub struct Category {
    #[primary_key]
    pub id: Id,
}

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    pub category_id: Id,
    #[indexed]
    #[relationship(from = category_id)]
    pub category: Link<Category>,
}

fn main() {}
