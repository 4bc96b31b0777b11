#![deny(warnings)] // generated code must not warn

use harper::prelude::*;

// `#[export]` above `#[table]` runs first and hands its options to `#[table]`.
#[export(name = "products")]
#[table(name = "Product")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}

#[export]
#[table]
pub struct Category {
    #[primary_key]
    pub id: Id,
}

#[export]
#[table(rename_all = "snake_case",)]
pub struct Trailing {
    #[primary_key]
    pub the_id: Id,
}

// And below, the usual place.
#[table]
#[export(name = "tags")]
pub struct Tag {
    #[primary_key]
    pub id: Id,
}

#[table]
pub struct Private {
    #[primary_key]
    pub id: Id,
}

fn main() {
    assert_eq!(Product::DEF.export_name(), Some("products"));
    assert_eq!(Category::DEF.export_name(), Some("Category"));
    assert_eq!(Trailing::DEF.export_name(), Some("Trailing"));
    assert_eq!(Trailing::DEF.fields[0].name, "the_id");
    assert_eq!(Tag::DEF.export_name(), Some("tags"));
    assert_eq!(Private::DEF.export_name(), None);
    qualified::check();
}

mod qualified {
    // Both macros recognise each other through the crate path too.
    #[harper::export(name = "q")]
    #[harper::table]
    pub struct Qualified {
        #[primary_key]
        pub id: harper::Id,
    }

    #[harper::table]
    #[harper::export]
    pub struct Below {
        #[primary_key]
        pub id: harper::Id,
    }

    pub fn check() {
        use harper::Table;
        assert_eq!(Qualified::DEF.export_name(), Some("q"));
        assert_eq!(Below::DEF.export_name(), Some("Below"));
    }
}
