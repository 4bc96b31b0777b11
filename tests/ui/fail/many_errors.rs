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

// Every mistake of the struct is reported in one compile.
#[table(bogus)]
pub struct Product {
    #[indexed]
    pub extra: serde_json::Value,
    #[relationship(from = nope)]
    pub category: Link<Category>,
    pub tags: Links<Tag>,
}
fn main() {}
