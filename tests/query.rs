//! The query engine through the Rust API: every comparator, nested AND/OR, sorting, paging,
//! select shapes, relationships both ways, and conditions through relationships.

mod common;

use common::*;
use harper::prelude::*;
use harper::query::{Select, SelectItem, SelectShape};
use harper::{Error, Reader};
use serde_json::json;

fn ids(db: &Database, q: &Query) -> Vec<String> {
    db.read(|tx| tx.query::<Product>(q))
        .unwrap()
        .into_iter()
        .map(|p| p.id.into_string())
        .collect()
}

fn catalog() -> Database {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    db
}

#[test]
fn each_comparator() {
    let db = catalog();
    let q = |f: Filter| ids(&db, &Query::new().filter(f));
    assert_eq!(q(attr("price").eq(7.0)), ["p07"]);
    assert_eq!(q(attr("price").lt(3.0)), ["p01", "p02"]);
    assert_eq!(q(attr("price").le(3.0)), ["p01", "p02", "p03"]);
    assert_eq!(q(attr("price").gt(28.0)), ["p29", "p30"]);
    assert_eq!(q(attr("price").ge(28.0)), ["p28", "p29", "p30"]);
    assert_eq!(q(attr("price").ne(1.0)).len(), 29);
    assert_eq!(q(attr("name").starts_with("Product p2")).len(), 10);
    assert_eq!(q(attr("name").ends_with("p15")), ["p15"]);
    assert_eq!(q(attr("description").contains("p1")).len(), 10, "p10..p19");
    assert_eq!(q(attr("id").eq("p05")), ["p05"]);
    assert_eq!(q(attr("id").gt("p28")), ["p29", "p30"]);
    // stockQuantity is not indexed: a scan, same answers.
    assert_eq!(q(attr("stockQuantity").eq(0)).len(), 7);
    // Integers compare with integers; a whole float is not silently an integer.
    let err = db
        .read(|tx| tx.query::<Product>(&Query::new().filter(attr("stockQuantity").eq(1.5))))
        .unwrap_err();
    assert!(err.to_string().contains("expecting Int"), "{err}");
}

#[test]
fn null_conditions() {
    let db = catalog();
    db.write(|tx| tx.patch::<Product>("p01", json!({"imageUrl": "/img/1.png"})))
        .unwrap();
    assert_eq!(
        ids(&db, &Query::new().filter(attr("imageUrl").is_not_null())),
        ["p01"]
    );
    assert_eq!(
        ids(&db, &Query::new().filter(attr("imageUrl").is_null())).len(),
        29
    );
    let err = db
        .read(|tx| {
            tx.query::<Product>(&Query::new().filter(attr("price").lt(serde_json::Value::Null)))
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidQuery { .. }), "{err}");
}

#[test]
fn nested_and_or_groups() {
    let db = catalog();
    // toys under 10, or books over 25 that are in stock
    let f = (attr("categoryId").eq("toys") & attr("price").lt(10.0))
        | (attr("categoryId").eq("books") & attr("price").gt(25.0) & attr("inStock").eq(true));
    let mut got = ids(&db, &Query::new().filter(f));
    got.sort();
    // toys: i % 3 == 0 -> 3, 6, 9; books: i % 3 == 1 -> 28 (stock 0), so none... 28%4=0 out of stock
    assert_eq!(got, ["p03", "p06", "p09"]);
    let f = attr("inStock").eq(false)
        & (attr("categoryId").eq("toys") | attr("categoryId").eq("garden"));
    let mut got = ids(&db, &Query::new().filter(f));
    got.sort();
    assert_eq!(got, ["p08", "p12", "p20", "p24"]);
}

#[test]
fn sorting_on_several_keys_with_paging() {
    let db = catalog();
    let q = Query::new()
        .sort_by("categoryId")
        .sort_by("-price")
        .limit(4);
    assert_eq!(
        ids(&db, &q),
        ["p28", "p25", "p22", "p19"],
        "books first, most expensive first"
    );
    let q = Query::new().sort_by("-price").offset(2).limit(3);
    assert_eq!(ids(&db, &q), ["p28", "p27", "p26"]);
    let q = Query::new()
        .filter(attr("categoryId").eq("garden"))
        .sort_by("-stockQuantity")
        .sort_by("id");
    let got = ids(&db, &q);
    assert_eq!(
        &got[..3],
        ["p11", "p23", "p02"],
        "stock 3 first (p11, p23), then stock 2"
    );
    let q = Query::new().sort_by("name").offset(28);
    assert_eq!(ids(&db, &q), ["p29", "p30"]);
    assert!(ids(&db, &Query::new().limit(0)).is_empty());
    let err = db
        .read(|tx| tx.query::<Product>(&Query::new().sort_by("nope")))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownAttribute { .. }), "{err}");
}

/// A select of the table's own attributes reads only those from each record; its rows must
/// equal the same attributes taken from the whole records, absent ones as null, names given
/// twice once, and strings with escapes or look-alike keys read right.
#[test]
fn select_of_own_attributes_matches_whole_records() {
    let db = catalog();
    db.write(|tx| {
        tx.patch::<Product>(
            "p01",
            json!({"imageUrl": "/img/\"a\".png", "name": "has \"price\": 1, inside"}),
        )
    })
    .unwrap();
    let names = ["imageUrl", "name", "price", "id", "name", "createdAt"];
    let whole = db
        .read(|tx| tx.query_json(Product::DEF, &Query::new()))
        .unwrap();
    let selected = db
        .read(|tx| tx.query_json(Product::DEF, &Query::new().select(names)))
        .unwrap();
    assert_eq!(whole.len(), 30);
    let expected: Vec<serde_json::Value> = whole
        .iter()
        .map(|rec| {
            let mut row = serde_json::Map::new();
            for n in names {
                row.entry(n)
                    .or_insert_with(|| rec.get(n).cloned().unwrap_or(serde_json::Value::Null));
            }
            serde_json::Value::Object(row)
        })
        .collect();
    assert_eq!(selected, expected);
    assert_eq!(
        selected[0]["name"],
        json!("has \"price\": 1, inside"),
        "a look-alike key inside a string is not the attribute"
    );
    assert_eq!(selected[0]["price"], json!(1.0));
}

#[test]
fn select_shapes_and_nested_relationships() {
    let db = catalog();
    let q = Query::new()
        .filter(attr("id").eq("p04"))
        .select(["name", "price"]);
    let rows = db.read(|tx| tx.query_json(Product::DEF, &q)).unwrap();
    assert_eq!(rows, [json!({"name": "Product p04", "price": 4.0})]);
    assert_eq!(
        serde_json::to_string(&rows[0]).unwrap(),
        r#"{"name":"Product p04","price":4.0}"#,
        "select order kept"
    );

    let values = Select {
        shape: SelectShape::Values,
        items: vec![SelectItem::Attribute("name".into())],
    };
    let q = Query::new()
        .filter(attr("price").lt(3.0))
        .select_with(values);
    assert_eq!(
        db.read(|tx| tx.query_json(Product::DEF, &q)).unwrap(),
        [json!("Product p01"), json!("Product p02")]
    );

    let arrays = Select {
        shape: SelectShape::Arrays,
        items: vec![
            SelectItem::Attribute("id".into()),
            SelectItem::Attribute("price".into()),
        ],
    };
    let q = Query::new()
        .filter(attr("price").lt(2.0))
        .select_with(arrays);
    assert_eq!(
        db.read(|tx| tx.query_json(Product::DEF, &q)).unwrap(),
        [json!(["p01", 1.0])]
    );

    let nested = Select {
        shape: SelectShape::Objects,
        items: vec![
            SelectItem::Attribute("name".into()),
            SelectItem::Related {
                name: "category".into(),
                select: Select {
                    shape: SelectShape::Objects,
                    items: vec![SelectItem::Attribute("name".into())],
                },
            },
        ],
    };
    let q = Query::new()
        .filter(attr("id").eq("p04"))
        .select_with(nested);
    assert_eq!(
        db.read(|tx| tx.query_json(Product::DEF, &q)).unwrap(),
        [json!({"name": "Product p04", "category": {"name": "Books"}})]
    );

    // One-to-many, embedded with a nested select, in the related table's key order.
    let nested = Select {
        shape: SelectShape::Objects,
        items: vec![
            SelectItem::Attribute("name".into()),
            SelectItem::Related {
                name: "products".into(),
                select: Select {
                    shape: SelectShape::Objects,
                    items: vec![SelectItem::Attribute("id".into())],
                },
            },
        ],
    };
    let q = Query::new()
        .filter(attr("id").eq("garden"))
        .select_with(nested);
    let rows = db.read(|tx| tx.query_json(Category::DEF, &q)).unwrap();
    assert_eq!(rows[0]["products"].as_array().unwrap().len(), 10);
    assert_eq!(rows[0]["products"][0], json!({"id": "p02"}));

    // A relationship named without a nested select embeds whole records.
    let q = Query::new()
        .filter(attr("id").eq("p04"))
        .select(["id", "category"]);
    let rows = db.read(|tx| tx.query_json(Product::DEF, &q)).unwrap();
    assert_eq!(
        rows[0]["category"],
        json!({"id": "books", "name": "Books", "description": null})
    );

    let err = db
        .read(|tx| tx.query_json(Product::DEF, &Query::new().select(["nope"])))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownAttribute { .. }), "{err}");
}

#[test]
fn conditions_through_relationships_both_ways() {
    let db = catalog();
    let toys = ids(&db, &Query::new().filter(attr("category.name").eq("Toys")));
    assert_eq!(toys.len(), 10);
    let cheap_toys = ids(
        &db,
        &Query::new().filter(attr("category.name").eq("Toys") & attr("price").lt(10.0)),
    );
    assert_eq!(cheap_toys, ["p03", "p06", "p09"]);
    assert!(ids(&db, &Query::new().filter(attr("category.name").eq("Nope"))).is_empty());

    // Reverse (to-many): categories having a product over 29.
    let q = Query::new().filter(attr("products.price").gt(29.0));
    let cats: Vec<String> = db
        .read(|tx| tx.query::<Category>(&q))
        .unwrap()
        .into_iter()
        .map(|c| c.id.into_string())
        .collect();
    assert_eq!(cats, ["toys"], "p30 is a toy");

    let err = db
        .read(|tx| tx.query::<Product>(&Query::new().filter(attr("price.x").eq(1))))
        .unwrap_err();
    assert!(err.to_string().contains("not a relationship"), "{err}");
    let err = db
        .read(|tx| tx.query::<Product>(&Query::new().filter(attr("category.nope").eq(1))))
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownAttribute { ref table, .. } if table == "Category"),
        "{err}"
    );
}

#[test]
fn unknown_attributes_and_bad_values_are_named() {
    let db = catalog();
    let err = db
        .read(|tx| tx.query::<Product>(&Query::new().filter(attr("color").eq("red"))))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "color is not a defined attribute of Product"
    );
    let err = db
        .read(|tx| tx.query::<Product>(&Query::new().filter(attr("inStock").eq("yes"))))
        .unwrap_err();
    assert!(err.to_string().contains("inStock"), "{err}");
    let err = db
        .read(|tx| tx.query::<Product>(&Query::new().filter(attr("price").starts_with("1"))))
        .unwrap_err();
    assert!(err.to_string().contains("applies to strings"), "{err}");
}

#[test]
fn dynamic_records_by_table_definition() {
    let db = catalog();
    let def = db.table_def("Product").expect("registered on first use");
    let row = db
        .read(|tx| tx.get_stored(def, "p02".into()))
        .unwrap()
        .unwrap();
    assert_eq!(row.to_value().unwrap()["price"], 2.0);
    assert!(row.version() > 0);
    // Integer-keyed lookups of a string key still find it ("12345" vs 12345).
    db.write(|tx| tx.put(&category("12345", "Numeric")))
        .unwrap();
    assert!(db.get::<Category>(12345).unwrap().is_some());
}

mod many_to_many {
    use harper::Reader;
    use harper::prelude::*;
    use serde_json::json;

    #[table]
    pub struct Tag {
        #[primary_key]
        pub id: Id,
        #[indexed]
        pub label: String,
    }

    #[table]
    pub struct Post {
        #[primary_key]
        pub id: Id,
        pub title: String,
        #[indexed]
        pub tag_ids: Vec<Id>,
        #[relationship(from = tag_ids)]
        pub tags: Links<Tag>,
    }

    fn post(id: &str, tags: &[&str]) -> Post {
        Post {
            id: id.into(),
            title: format!("Post {id}"),
            tag_ids: tags.iter().map(|t| Id::from(*t)).collect(),
            tags: Links::new(),
        }
    }

    #[test]
    fn lists_of_ids_link_many_to_many() {
        let db = Database::temporary().unwrap();
        db.write(|tx| {
            for (id, label) in [("rust", "Rust"), ("db", "Databases"), ("web", "Web")] {
                tx.put(&Tag {
                    id: id.into(),
                    label: label.into(),
                })?;
            }
            tx.put(&post("p1", &["rust", "db"]))?;
            tx.put(&post("p2", &["web"]))?;
            tx.put(&post("p3", &[]))?;
            Ok::<_, harper::Error>(())
        })
        .unwrap();
        db.read(|tx| {
            let p1: Post = tx.get("p1")?.unwrap();
            let labels: Vec<String> = p1.tags(tx)?.into_iter().map(|t| t.label).collect();
            assert_eq!(labels, ["Rust", "Databases"]);
            // A list is indexed per element: equality means "contains".
            let with_db: Vec<Post> = tx.query(&Query::new().filter(attr("tagIds").eq("db")))?;
            assert_eq!(with_db.len(), 1);
            // Conditions through the relationship.
            let webby: Vec<Post> =
                tx.query(&Query::new().filter(attr("tags.label").starts_with("W")))?;
            assert_eq!(
                webby.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
                ["p2"]
            );
            // Selecting the relationship embeds an array; an empty list embeds [].
            let q = Query::new()
                .sort_by("id")
                .select_with(harper::query::Select {
                    shape: harper::query::SelectShape::Objects,
                    items: vec![
                        harper::query::SelectItem::Attribute("id".into()),
                        harper::query::SelectItem::Related {
                            name: "tags".into(),
                            select: harper::query::Select {
                                shape: harper::query::SelectShape::Values,
                                items: vec![harper::query::SelectItem::Attribute("label".into())],
                            },
                        },
                    ],
                });
            let rows = tx.query_json(Post::DEF, &q)?;
            assert_eq!(
                rows,
                [
                    json!({"id": "p1", "tags": ["Rust", "Databases"]}),
                    json!({"id": "p2", "tags": ["Web"]}),
                    json!({"id": "p3", "tags": []}),
                ]
            );
            Ok::<_, harper::Error>(())
        })
        .unwrap();
        db.check_integrity().unwrap();
    }
}
