use harper::prelude::*;

#[table]
pub union Product {
    #[primary_key]
    pub id: u64,
    pub bits: f64,
}
fn main() {}
