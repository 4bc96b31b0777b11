// No prelude, no imports: the generated code must name everything by absolute path.
#![no_implicit_prelude]
#![deny(warnings)]

#[::harper::table]
#[::harper::export]
pub struct Product {
    #[primary_key]
    pub id: ::harper::Id,
    #[indexed]
    pub category_id: ::harper::Id,
    pub tags: ::std::vec::Vec<::std::string::String>,
    #[relationship(from = category_id)]
    pub category: ::harper::Link<Category>,
}

#[::harper::table]
pub struct Category {
    #[primary_key]
    pub id: ::harper::Id,
    #[relationship(to = category_id)]
    pub products: ::harper::Links<Product>,
}

fn main() {}
