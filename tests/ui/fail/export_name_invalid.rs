use harper::prelude::*;

#[table]
#[export(name = "")]
pub struct Product {
    #[primary_key]
    pub id: Id,
}
fn main() {}
