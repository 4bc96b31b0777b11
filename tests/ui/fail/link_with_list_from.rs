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
    #[relationship(from = tag_ids)]
    pub tags: Link<Tag>,
}

fn main() {}
