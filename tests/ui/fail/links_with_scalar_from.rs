use harper::prelude::*;

#[table]
pub struct Category {
    #[primary_key]
    pub id: Id,
}

#[table]
pub struct Tag {
    #[primary_key]
    pub id: Id,
}

#[table]
pub struct Product {
    #[primary_key]
    pub id: Id,
    pub category_id: Id,
    pub tag_ids: Vec<Id>,
    pub price: f64,
    #[relationship(from = category_id)]
    pub category: Links<Category>,
}

fn main() {}
