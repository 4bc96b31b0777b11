use harper::prelude::*;

use serde::{Deserialize, Serialize};

#[table]
#[derive(Debug, Serialize, Deserialize)]
pub struct Product {
    #[primary_key]
    pub id: Id,
}

fn main() {}
