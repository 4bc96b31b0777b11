use harper::prelude::*;

#[table]
pub struct Counter {
    #[primary_key]
    pub id: u64,
}

#[table]
pub struct Reading {
    #[primary_key]
    pub id: Id,
    pub counter_id: Id,
    #[relationship(from = counter_id)]
    pub counter: Link<Counter>,
}

fn main() {}
