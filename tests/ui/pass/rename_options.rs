#![deny(warnings)] // generated code must not warn

use harper::prelude::*;

#[table(name = "inventory_item", rename_all = "snake_case")]
pub struct InventoryItem {
    #[primary_key]
    pub item_id: u64,
    #[indexed]
    pub display_name: String,
    #[rename = "SKU"]
    #[indexed]
    pub sku: Option<String>,
}

#[table(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Screaming {
    #[primary_key]
    pub some_id: Id,
    pub other_value: Option<Vec<i32>>,
}

#[table(rename_all = "kebab-case", name = "Kebab")]
pub struct KebabTable {
    #[primary_key]
    pub some_id: Id,
}

#[table(rename_all = "PascalCase")]
pub struct Pascal {
    #[primary_key]
    pub some_id: Id,
}

#[table(rename_all = "lowercase")]
pub struct Lower {
    #[primary_key]
    pub some_id: Id,
}

#[table(rename_all = "camelCase")]
pub struct Camel {
    #[primary_key]
    pub some_id: Id,
}

fn main() {
    assert_eq!(InventoryItem::DEF.name, "inventory_item");
    assert_eq!(InventoryItem::DEF.fields[1].name, "display_name");
    assert_eq!(InventoryItem::DEF.fields[2].name, "SKU");
    assert_eq!(Screaming::DEF.fields[1].name, "OTHER_VALUE");
    assert_eq!(KebabTable::DEF.name, "Kebab");
    assert_eq!(KebabTable::DEF.fields[0].name, "some-id");
    assert_eq!(Pascal::DEF.fields[0].name, "SomeId");
    assert_eq!(Lower::DEF.fields[0].name, "some_id");
    assert_eq!(Camel::DEF.fields[0].name, "someId");
}
