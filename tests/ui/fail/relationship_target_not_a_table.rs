use harper::prelude::*;

pub struct Category {
    pub id: Id,
}

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    pub category_id: Id,
    #[relationship(from = category_id)]
    pub category: Link<Category>,
}

fn main() {}
