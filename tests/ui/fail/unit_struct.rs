use harper::prelude::*;

#[table]
pub struct Product;
fn main() {}
