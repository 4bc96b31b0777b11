use harper::prelude::*;

// `Product` has one mistake (no primary key). Code using it, and a table related to it,
// must not add errors of their own.
#[table]
pub struct Product {
    pub id: Id,
    pub category_id: Id,
    #[relationship(from = category_id)]
    pub category: Link<Category>,
}

#[table]
pub struct Category {
    #[primary_key]
    pub id: Id,
    #[relationship(to = category_id)]
    pub products: Links<Product>,
}

fn use_it(db: &Database, product: &Product) -> harper::Result<Option<Category>> {
    db.write(|tx| tx.put(product))?;
    let _: Vec<Product> = db.read(|tx| Category { id: "c".into(), products: Links::new() }.products(tx))?;
    db.read(|tx| product.category(tx))
}

fn main() {
    let _ = use_it;
}
