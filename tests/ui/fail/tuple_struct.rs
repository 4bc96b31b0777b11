use harper::prelude::*;

#[table]
pub struct Product(#[primary_key] pub Id, pub String);
fn main() {}
