//! The storefront's business rules, as ordinary Rust over the tables: adding to a cart and
//! checking a cart out. No HTTP here (see `api.rs`); the unit tests below run against a
//! temporary database.
//!
//! Both operations run inside one `db.write` transaction. Write transactions run one at a
//! time and each sees every commit before it, so the stock checks cannot race with another
//! add or checkout.

use std::collections::BTreeMap;
use std::fmt;

use harper::prelude::*;
use serde::Serialize;

use crate::schema::{CartItem, Product};

/// Why an add-to-cart or a checkout was refused.
#[derive(Debug)]
pub enum ShopError {
    /// Quantities are positive integers (and fit a cart item's 32-bit quantity).
    InvalidQuantity { quantity: i64 },
    /// A session id must not be empty.
    InvalidSession,
    /// No product has this id.
    UnknownProduct { product: String },
    /// The product has fewer units left than requested. `available` is what this session
    /// can still take (for an add: stock minus what its cart already holds).
    NotEnoughStock {
        product: String,
        requested: i64,
        available: i64,
    },
    /// The session has nothing in its cart (or never had a cart).
    EmptyCart { session: String },
    /// A cart item of the session holds a quantity that is not positive (written directly,
    /// bypassing [`add_to_cart`]).
    InvalidCartItem { item: String, quantity: i32 },
    /// The database refused or failed (including a client-chosen cart item id that is taken).
    Db(harper::Error),
}

impl fmt::Display for ShopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShopError::InvalidQuantity { quantity } => write!(
                f,
                "quantity must be a positive integer (at most {}), not {quantity}",
                i32::MAX
            ),
            ShopError::InvalidSession => f.write_str("sessionId must not be empty"),
            ShopError::UnknownProduct { product } => write!(f, "product {product} does not exist"),
            ShopError::NotEnoughStock {
                product,
                requested,
                available,
            } => write!(
                f,
                "not enough stock of {product}: requested {requested}, only {available} left"
            ),
            ShopError::EmptyCart { session } => write!(f, "the cart of session {session} is empty"),
            ShopError::InvalidCartItem { item, quantity } => write!(
                f,
                "cart item {item} holds quantity {quantity}; remove it or set a positive quantity"
            ),
            ShopError::Db(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ShopError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShopError::Db(e) => Some(e),
            _ => None,
        }
    }
}

impl From<harper::Error> for ShopError {
    fn from(e: harper::Error) -> ShopError {
        ShopError::Db(e)
    }
}

/// One add-to-cart request. `id` and `added_at` are used only when a new cart item is
/// created; an add merging into an existing item keeps that item's id and `addedAt`.
#[derive(Debug, Clone)]
pub struct AddToCart {
    pub session_id: String,
    pub product_id: String,
    pub quantity: i64,
    pub id: Option<Id>,
    pub added_at: Option<String>,
}

/// What an add did: the cart item now holding the product for the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    pub item: CartItem,
    /// Whether the quantity was added to an item the session already had.
    pub merged: bool,
}

/// Adds `quantity` units of `product` to the cart of `session`.
// The Rust API; the HTTP layer uses `add` (it takes ids and timestamps from the body).
#[allow(dead_code)]
pub fn add_to_cart(
    db: &Database,
    session: &str,
    product: &str,
    quantity: i64,
) -> Result<Added, ShopError> {
    add(
        db,
        AddToCart {
            session_id: session.to_owned(),
            product_id: product.to_owned(),
            quantity,
            id: None,
            added_at: None,
        },
    )
}

/// Adds to a cart in one write transaction; see [`add_in`]. Blocking: the HTTP layer runs
/// `add_in` through `Database::write_async`.
pub fn add(db: &Database, request: AddToCart) -> Result<Added, ShopError> {
    db.write(|tx| add_in(tx, &request))
}

/// Adds to a cart inside `tx`: checks the quantity, that the product exists and that its
/// stock covers what the session's cart already holds of it plus `quantity`; then raises
/// the session's cart item for that product, or creates one. Cart items of one session and
/// product written by other means are merged into one (the first by id keeps the total).
pub fn add_in(tx: &mut WriteTx, request: &AddToCart) -> Result<Added, ShopError> {
    if request.quantity <= 0 || request.quantity > i64::from(i32::MAX) {
        return Err(ShopError::InvalidQuantity {
            quantity: request.quantity,
        });
    }
    if request.session_id.is_empty() {
        return Err(ShopError::InvalidSession);
    }
    let product: Product =
        tx.get(request.product_id.as_str())?
            .ok_or_else(|| ShopError::UnknownProduct {
                product: request.product_id.clone(),
            })?;
    let held = session_items(tx, &request.session_id)?
        .into_iter()
        .filter(|item| item.product_id == product.id)
        .collect::<Vec<_>>();
    let held_quantity: i64 = held.iter().map(|i| i64::from(i.quantity.max(0))).sum();
    let available = (i64::from(product.stock_quantity) - held_quantity).max(0);
    if request.quantity > available {
        return Err(ShopError::NotEnoughStock {
            product: product.id.to_string(),
            requested: request.quantity,
            available,
        });
    }
    // Fits i32: the total is at most the product's stock, an i32.
    let total = i32::try_from(held_quantity + request.quantity).map_err(|_| {
        ShopError::InvalidQuantity {
            quantity: request.quantity,
        }
    })?;
    let mut held = held.into_iter();
    let Some(mut item) = held.next() else {
        let item = CartItem {
            id: request.id.clone().unwrap_or_else(Id::generate),
            product_id: product.id,
            session_id: request.session_id.clone(),
            quantity: total,
            added_at: request.added_at.clone(),
            product: Link::new(),
        };
        tx.insert(&item)?;
        return Ok(Added {
            item,
            merged: false,
        });
    };
    for duplicate in held {
        tx.delete::<CartItem>(&duplicate.id)?;
    }
    item.quantity = total;
    tx.put(&item)?;
    Ok(Added { item, merged: true })
}

/// Who owns a cart item: the session (guest or user) it belongs to.
pub fn cart_owner(item: &CartItem, who: &Principal) -> bool {
    who.id() == Some(item.session_id.as_str())
}

/// The stock rule for a cart item written directly (REST `PUT`/`PATCH`/`POST`, GraphQL
/// mutations), registered with `App::validate::<CartItem>(shop::cart_item_rule)`: a positive
/// quantity, a non-empty session, an existing product, and no more than the product's stock
/// minus what the session's other items already hold of it. `tx` shows the state before
/// `item` is written.
pub fn cart_item_rule(tx: &WriteTx, item: &CartItem) -> Result<(), harper::Rejection> {
    let refuse = |e: ShopError| {
        let code = match &e {
            ShopError::InvalidQuantity { .. } => "invalid_quantity",
            ShopError::InvalidSession => "invalid_session",
            ShopError::UnknownProduct { .. } => "unknown_product",
            ShopError::NotEnoughStock { .. } => {
                return harper::Rejection::conflict("not_enough_stock", e.to_string());
            }
            _ => "invalid_cart_item",
        };
        harper::Rejection::invalid(code, e.to_string())
    };
    if item.quantity <= 0 {
        return Err(refuse(ShopError::InvalidQuantity {
            quantity: i64::from(item.quantity),
        }));
    }
    if item.session_id.is_empty() {
        return Err(refuse(ShopError::InvalidSession));
    }
    let internal = |e: harper::Error| harper::Rejection::conflict("unavailable", e.to_string());
    let product: Product = tx
        .get(item.product_id.as_str())
        .map_err(internal)?
        .ok_or_else(|| {
            refuse(ShopError::UnknownProduct {
                product: item.product_id.to_string(),
            })
        })?;
    let held: i64 = session_items(tx, &item.session_id)
        .map_err(internal)?
        .iter()
        .filter(|other| other.product_id == item.product_id && other.id != item.id)
        .map(|other| i64::from(other.quantity.max(0)))
        .sum();
    let available = (i64::from(product.stock_quantity) - held).max(0);
    if i64::from(item.quantity) > available {
        return Err(refuse(ShopError::NotEnoughStock {
            product: product.id.to_string(),
            requested: i64::from(item.quantity),
            available,
        }));
    }
    Ok(())
}

/// The cart items of `session`, in id order.
#[allow(dead_code)] // the Rust API; used by tests
pub fn cart(db: &Database, session: &str) -> Result<Vec<CartItem>, harper::Error> {
    db.read(|tx| session_items(tx, session))
}

fn session_items(tx: &impl Reader, session: &str) -> Result<Vec<CartItem>, harper::Error> {
    tx.query(&Query::new().filter(attr("sessionId").eq(session)))
}

/// A completed checkout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub session_id: String,
    /// One line per product, in product-id order.
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals, rounded to cents.
    pub total: f64,
    /// Units bought (the sum of the line quantities).
    pub item_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: String,
    pub name: String,
    pub unit_price: f64,
    pub quantity: i32,
    /// `unit_price * quantity`, rounded to cents.
    pub line_total: f64,
}

/// Checks out the cart of `session` in one write transaction; see [`checkout_in`].
// The blocking Rust API; the HTTP layer runs `checkout_in` through `Database::write_async`.
#[allow(dead_code)]
pub fn checkout(db: &Database, session: &str) -> Result<Order, ShopError> {
    db.write(|tx| checkout_in(tx, session))
}

/// Checks out inside `tx`: every product of the cart must exist and have the stock for its
/// line; then each product's stock goes down (and `inStock` turns false at 0) and the
/// session's cart items are deleted. On any error nothing is written: the caller's
/// transaction is dropped, so stock and cart stay as they were.
pub fn checkout_in(tx: &mut WriteTx, session: &str) -> Result<Order, ShopError> {
    let items = session_items(tx, session)?;
    if items.is_empty() {
        return Err(ShopError::EmptyCart {
            session: session.to_owned(),
        });
    }
    // Several items of one product (written by other means than add_to_cart) form one line.
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for item in &items {
        if item.quantity <= 0 {
            return Err(ShopError::InvalidCartItem {
                item: item.id.to_string(),
                quantity: item.quantity,
            });
        }
        *wanted.entry(item.product_id.as_str()).or_default() += i64::from(item.quantity);
    }

    // Check every line before writing anything.
    let mut lines = Vec::with_capacity(wanted.len());
    let mut products = Vec::with_capacity(wanted.len());
    for (&product_id, &quantity) in &wanted {
        let product: Product = tx
            .get(product_id)?
            .ok_or_else(|| ShopError::UnknownProduct {
                product: product_id.to_owned(),
            })?;
        let stock = i64::from(product.stock_quantity);
        if quantity > stock {
            return Err(ShopError::NotEnoughStock {
                product: product_id.to_owned(),
                requested: quantity,
                available: stock.max(0),
            });
        }
        // quantity <= stock, an i32.
        let quantity =
            i32::try_from(quantity).map_err(|_| ShopError::InvalidQuantity { quantity })?;
        lines.push(OrderLine {
            product_id: product_id.to_owned(),
            name: product.name.clone(),
            unit_price: product.price,
            quantity,
            line_total: cents(product.price * f64::from(quantity)),
        });
        products.push((product, quantity));
    }

    for (mut product, quantity) in products {
        product.stock_quantity -= quantity;
        if product.stock_quantity <= 0 {
            product.in_stock = false;
        }
        tx.put(&product)?;
    }
    for item in &items {
        tx.delete::<CartItem>(&item.id)?;
    }
    Ok(Order {
        session_id: session.to_owned(),
        total: cents(lines.iter().map(|l| l.line_total).sum()),
        item_count: lines.iter().map(|l| i64::from(l.quantity)).sum(),
        lines,
    })
}

fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Category;

    fn product(id: &str, price: f64, stock: i32) -> Product {
        Product {
            id: id.into(),
            name: format!("Product {id}"),
            description: None,
            price,
            category_id: "toys".into(),
            in_stock: stock > 0,
            stock_quantity: stock,
            image_url: None,
            created_at: None,
            category: Link::new(),
        }
    }

    fn item(id: &str, product: &str, session: &str, quantity: i32) -> CartItem {
        CartItem {
            id: id.into(),
            product_id: product.into(),
            session_id: session.into(),
            quantity,
            added_at: None,
            product: Link::new(),
        }
    }

    /// A database with products p1 (price 2.50, stock 5), p2 (10.00, 3), p3 (1.10, 0).
    fn shop() -> Database {
        let db = Database::temporary().unwrap();
        db.register::<Product>().unwrap();
        db.register::<Category>().unwrap();
        db.register::<CartItem>().unwrap();
        db.write(|tx| {
            tx.put(&product("p1", 2.5, 5))?;
            tx.put(&product("p2", 10.0, 3))?;
            tx.put(&product("p3", 1.1, 0))
        })
        .unwrap();
        db
    }

    fn stock(db: &Database, id: &str) -> (i32, bool) {
        let p = db.get::<Product>(id).unwrap().unwrap();
        (p.stock_quantity, p.in_stock)
    }

    #[test]
    fn add_creates_one_item_per_session_and_product() {
        let db = shop();
        let added = add_to_cart(&db, "s1", "p1", 2).unwrap();
        assert!(!added.merged);
        assert_eq!(added.item.quantity, 2);
        let other = add_to_cart(&db, "s2", "p1", 1).unwrap();
        assert_ne!(other.item.id, added.item.id);
        let cart1 = cart(&db, "s1").unwrap();
        assert_eq!(cart1, vec![added.item]);
        assert_eq!(cart1[0].product_id.as_str(), "p1");
        assert_eq!(cart1[0].session_id, "s1");
        assert_eq!(cart(&db, "s2").unwrap().len(), 1);
        // Adding reserves nothing: stock only moves at checkout.
        assert_eq!(stock(&db, "p1"), (5, true));
    }

    #[test]
    fn repeated_adds_merge_into_one_item() {
        let db = shop();
        let first = add_to_cart(&db, "s1", "p1", 2).unwrap();
        let second = add_to_cart(&db, "s1", "p1", 3).unwrap();
        assert!(second.merged);
        assert_eq!(second.item.id, first.item.id);
        assert_eq!(second.item.quantity, 5);
        let items = cart(&db, "s1").unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].quantity, 5);
        add_to_cart(&db, "s1", "p2", 1).unwrap();
        assert_eq!(cart(&db, "s1").unwrap().len(), 2);
    }

    #[test]
    fn duplicates_written_directly_are_merged_by_the_next_add() {
        let db = shop();
        db.write(|tx| {
            tx.put(&item("a", "p1", "s1", 1))?;
            tx.put(&item("b", "p1", "s1", 2))
        })
        .unwrap();
        let added = add_to_cart(&db, "s1", "p1", 1).unwrap();
        assert!(added.merged);
        assert_eq!(added.item.id.as_str(), "a");
        assert_eq!(cart(&db, "s1").unwrap(), vec![item("a", "p1", "s1", 4)]);
    }

    #[test]
    fn add_refuses_more_than_stock_minus_what_the_cart_holds() {
        let db = shop();
        match add_to_cart(&db, "s1", "p1", 6) {
            Err(ShopError::NotEnoughStock {
                product,
                requested,
                available,
            }) => assert_eq!((product.as_str(), requested, available), ("p1", 6, 5)),
            other => panic!("expected NotEnoughStock, got {other:?}"),
        }
        add_to_cart(&db, "s1", "p1", 4).unwrap();
        match add_to_cart(&db, "s1", "p1", 2) {
            Err(ShopError::NotEnoughStock { available, .. }) => assert_eq!(available, 1),
            other => panic!("expected NotEnoughStock, got {other:?}"),
        }
        // Another session's cart does not count against this one.
        add_to_cart(&db, "s2", "p1", 5).unwrap();
        assert_eq!(add_to_cart(&db, "s1", "p1", 1).unwrap().item.quantity, 5);
        assert!(matches!(
            add_to_cart(&db, "s3", "p3", 1),
            Err(ShopError::NotEnoughStock { available: 0, .. })
        ));
        assert_eq!(cart(&db, "s1").unwrap()[0].quantity, 5);
        assert!(cart(&db, "s3").unwrap().is_empty());
    }

    #[test]
    fn add_refuses_unknown_products_bad_quantities_and_empty_sessions() {
        let db = shop();
        assert!(matches!(
            add_to_cart(&db, "s1", "nope", 1),
            Err(ShopError::UnknownProduct { product }) if product == "nope"
        ));
        for q in [0, -1, i64::from(i32::MAX) + 1, i64::MIN] {
            assert!(
                matches!(add_to_cart(&db, "s1", "p1", q), Err(ShopError::InvalidQuantity { quantity }) if quantity == q),
                "{q}"
            );
        }
        assert!(matches!(
            add_to_cart(&db, "", "p1", 1),
            Err(ShopError::InvalidSession)
        ));
        assert!(cart(&db, "s1").unwrap().is_empty());
        assert!(cart(&db, "").unwrap().is_empty());
    }

    #[test]
    fn add_with_a_taken_item_id_is_a_conflict() {
        let db = shop();
        db.write(|tx| tx.put(&item("taken", "p2", "s9", 1)))
            .unwrap();
        let request = AddToCart {
            session_id: "s1".into(),
            product_id: "p1".into(),
            quantity: 1,
            id: Some("taken".into()),
            added_at: Some("2026-01-01T00:00:00Z".into()),
        };
        assert!(matches!(
            add(&db, request.clone()),
            Err(ShopError::Db(harper::Error::Conflict(_)))
        ));
        let request = AddToCart {
            id: Some("mine".into()),
            ..request
        };
        let added = add(&db, request).unwrap();
        assert_eq!(added.item.id.as_str(), "mine");
        assert_eq!(added.item.added_at.as_deref(), Some("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn checkout_decrements_stock_empties_the_cart_and_sums_the_order() {
        let db = shop();
        add_to_cart(&db, "s1", "p2", 3).unwrap();
        add_to_cart(&db, "s1", "p1", 2).unwrap();
        add_to_cart(&db, "s1", "p1", 1).unwrap();
        add_to_cart(&db, "s2", "p1", 1).unwrap();
        let order = checkout(&db, "s1").unwrap();
        assert_eq!(
            order,
            Order {
                session_id: "s1".into(),
                lines: vec![
                    OrderLine {
                        product_id: "p1".into(),
                        name: "Product p1".into(),
                        unit_price: 2.5,
                        quantity: 3,
                        line_total: 7.5,
                    },
                    OrderLine {
                        product_id: "p2".into(),
                        name: "Product p2".into(),
                        unit_price: 10.0,
                        quantity: 3,
                        line_total: 30.0,
                    },
                ],
                total: 37.5,
                item_count: 6,
            }
        );
        assert_eq!(stock(&db, "p1"), (2, true));
        assert_eq!(stock(&db, "p2"), (0, false), "inStock turns false at 0");
        assert!(cart(&db, "s1").unwrap().is_empty());
        assert_eq!(cart(&db, "s2").unwrap().len(), 1, "other carts stay");
        db.check_integrity().unwrap();
    }

    #[test]
    fn checkout_rounds_money_to_cents() {
        let db = shop();
        db.write(|tx| tx.put(&product("p4", 0.1, 10))).unwrap();
        add_to_cart(&db, "s1", "p4", 3).unwrap();
        add_to_cart(&db, "s1", "p1", 1).unwrap();
        let order = checkout(&db, "s1").unwrap();
        assert_eq!(order.lines[1].line_total, 0.3);
        assert_eq!(order.total, 2.8);
    }

    #[test]
    fn checkout_is_all_or_nothing() {
        let db = shop();
        add_to_cart(&db, "s1", "p1", 2).unwrap();
        add_to_cart(&db, "s1", "p2", 3).unwrap();
        // Someone else buys one p2 after s1 filled its cart.
        add_to_cart(&db, "s2", "p2", 1).unwrap();
        checkout(&db, "s2").unwrap();
        assert_eq!(stock(&db, "p2"), (2, true));
        let before = cart(&db, "s1").unwrap();
        match checkout(&db, "s1") {
            Err(ShopError::NotEnoughStock {
                product,
                requested,
                available,
            }) => assert_eq!((product.as_str(), requested, available), ("p2", 3, 2)),
            other => panic!("expected NotEnoughStock, got {other:?}"),
        }
        assert_eq!(
            stock(&db, "p1"),
            (5, true),
            "the line with stock is untouched"
        );
        assert_eq!(stock(&db, "p2"), (2, true));
        assert_eq!(cart(&db, "s1").unwrap(), before, "the cart is kept");
        db.check_integrity().unwrap();
    }

    #[test]
    fn checkout_of_an_empty_or_unknown_cart_is_refused() {
        let db = shop();
        assert!(matches!(
            checkout(&db, "nobody"),
            Err(ShopError::EmptyCart { session }) if session == "nobody"
        ));
        add_to_cart(&db, "s1", "p1", 1).unwrap();
        checkout(&db, "s1").unwrap();
        assert!(matches!(
            checkout(&db, "s1"),
            Err(ShopError::EmptyCart { .. })
        ));
        assert_eq!(
            stock(&db, "p1"),
            (4, true),
            "a second checkout takes nothing"
        );
    }

    #[test]
    fn checkout_refuses_carts_naming_missing_products_or_bad_quantities() {
        let db = shop();
        db.write(|tx| {
            tx.put(&item("a", "p1", "s1", 1))?;
            tx.put(&item("b", "gone", "s1", 1))?;
            tx.put(&item("c", "p1", "s2", 0))
        })
        .unwrap();
        assert!(matches!(
            checkout(&db, "s1"),
            Err(ShopError::UnknownProduct { product }) if product == "gone"
        ));
        assert!(matches!(
            checkout(&db, "s2"),
            Err(ShopError::InvalidCartItem { item, quantity: 0 }) if item == "c"
        ));
        assert_eq!(stock(&db, "p1"), (5, true));
        assert_eq!(cart(&db, "s1").unwrap().len(), 2);
    }

    #[test]
    fn errors_name_the_product_and_what_is_left() {
        let e = ShopError::NotEnoughStock {
            product: "p1".into(),
            requested: 3,
            available: 1,
        };
        assert_eq!(
            e.to_string(),
            "not enough stock of p1: requested 3, only 1 left"
        );
    }
}
