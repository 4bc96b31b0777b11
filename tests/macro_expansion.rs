//! What `#[table]` generates, checked at run time: the `TableDef` (names, types, indexes,
//! key, relationships, export), the serde mapping, and the relationship accessors.

use harper::prelude::*;
use harper::schema::{FieldType, RelationshipKind, Scalar, TableDef};
use harper::{ReadTx, WriteTx};
use serde_json::json;

#[table]
#[export]
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub name: String,
    pub description: Option<String>,
    #[indexed]
    pub price: f64,
    #[indexed]
    pub category_id: Id,
    #[indexed]
    pub tags: Vec<String>,
    #[rename = "SKU"]
    pub sku: Option<String>,
    pub extra: serde_json::Value,
    pub stock_quantity: i64,
    pub ratings: Option<Vec<u8>>,
    pub weights: Vec<Option<f32>>,
    pub attributes: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub in_stock: bool,
    #[relationship(from = category_id)]
    pub category: Link<Category>,
}

#[table]
#[export(name = "categories")]
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub name: String,
    #[relationship(to = category_id)]
    pub products: Links<Product>,
}

#[table(name = "Post", rename_all = "snake_case")]
#[derive(Debug, Clone, PartialEq)]
pub struct BlogPost {
    #[primary_key]
    pub post_id: u32,
    #[indexed]
    pub tag_ids: Vec<Id>,
    #[relationship(from = tag_ids)]
    pub tag_list: Links<Tag>,
}

#[table(rename_all = "PascalCase")]
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    #[primary_key]
    pub tag_id: Id,
    #[relationship(to = tag_ids)]
    pub blog_posts: Links<BlogPost>,
}

fn field_summary(def: &TableDef) -> Vec<(&str, &str, FieldType, bool)> {
    def.fields
        .iter()
        .map(|f| (f.name, f.rust_name, f.ty, f.indexed))
        .collect()
}

fn ty(scalar: Scalar, optional: bool, list: bool) -> FieldType {
    FieldType {
        scalar,
        optional,
        list,
    }
}

#[test]
fn product_definition() {
    let def = Product::DEF;
    assert_eq!(def.name, "Product");
    assert_eq!(def.export_name(), Some("Product"));
    assert_eq!(def.primary_key, 0);
    assert_eq!(def.primary_key().name, "id");
    let int64 = Scalar::Int {
        signed: true,
        bits: 64,
    };
    let uint8 = Scalar::Int {
        signed: false,
        bits: 8,
    };
    assert_eq!(
        field_summary(def),
        [
            ("id", "id", ty(Scalar::Id, false, false), true),
            ("name", "name", ty(Scalar::String, false, false), true),
            (
                "description",
                "description",
                ty(Scalar::String, true, false),
                false
            ),
            (
                "price",
                "price",
                ty(Scalar::Float { bits: 64 }, false, false),
                true
            ),
            (
                "categoryId",
                "category_id",
                ty(Scalar::Id, false, false),
                true
            ),
            ("tags", "tags", ty(Scalar::String, false, true), true),
            ("SKU", "sku", ty(Scalar::String, true, false), false),
            ("extra", "extra", ty(Scalar::Json, false, false), false),
            (
                "stockQuantity",
                "stock_quantity",
                ty(int64, false, false),
                false
            ),
            ("ratings", "ratings", ty(uint8, true, true), false),
            ("weights", "weights", ty(Scalar::Json, false, false), false),
            (
                "attributes",
                "attributes",
                ty(Scalar::Json, true, false),
                false
            ),
            ("inStock", "in_stock", ty(Scalar::Bool, false, false), false),
        ]
    );
    assert_eq!(def.relationships.len(), 1);
    let rel = &def.relationships[0];
    assert_eq!(rel.name, "category");
    assert_eq!(
        rel.kind,
        RelationshipKind::From {
            field: "categoryId"
        }
    );
    assert!(std::ptr::eq((rel.target)(), Category::DEF));
}

#[test]
fn category_definition() {
    let def = Category::DEF;
    assert_eq!(def.name, "Category");
    assert_eq!(def.export_name(), Some("categories"));
    assert_eq!(def.fields.len(), 2);
    let rel = def.relationship("products").expect("products relationship");
    assert_eq!(
        rel.kind,
        RelationshipKind::To {
            rust_field: "category_id"
        }
    );
    let target = (rel.target)();
    assert_eq!(target.name, "Product");
    assert_eq!(
        target.field_by_rust_name("category_id").map(|f| f.name),
        Some("categoryId")
    );
}

#[test]
fn renamed_tables() {
    let post = BlogPost::DEF;
    assert_eq!(post.name, "Post");
    assert!(post.export.is_none());
    assert_eq!(
        field_summary(post),
        [
            (
                "post_id",
                "post_id",
                ty(
                    Scalar::Int {
                        signed: false,
                        bits: 32
                    },
                    false,
                    false
                ),
                true
            ),
            ("tag_ids", "tag_ids", ty(Scalar::Id, false, true), true),
        ]
    );
    assert_eq!(post.relationships[0].name, "tag_list");
    assert_eq!(
        post.relationships[0].kind,
        RelationshipKind::From { field: "tag_ids" }
    );

    let tag = Tag::DEF;
    assert_eq!(tag.name, "Tag");
    assert_eq!(tag.fields[0].name, "TagId");
    assert_eq!(tag.relationships[0].name, "BlogPosts");
    assert_eq!(
        tag.relationships[0].kind,
        RelationshipKind::To {
            rust_field: "tag_ids"
        }
    );
}

fn lamp() -> Product {
    Product {
        id: "p1".into(),
        name: "Lamp".into(),
        description: None,
        price: 19.5,
        category_id: "c1".into(),
        tags: vec!["light".into(), "home".into()],
        sku: Some("L-1".into()),
        extra: json!({"watts": 40}),
        stock_quantity: 3,
        ratings: Some(vec![4, 5]),
        weights: vec![Some(1.5), None],
        attributes: None,
        in_stock: true,
        category: Link::new(),
    }
}

#[test]
fn serde_uses_json_names_and_skips_relationships() {
    let value = serde_json::to_value(lamp()).unwrap();
    assert_eq!(
        value,
        json!({
            "id": "p1",
            "name": "Lamp",
            "description": null,
            "price": 19.5,
            "categoryId": "c1",
            "tags": ["light", "home"],
            "SKU": "L-1",
            "extra": {"watts": 40},
            "stockQuantity": 3,
            "ratings": [4, 5],
            "weights": [1.5, null],
            "attributes": null,
            "inStock": true,
        })
    );
    let back: Product = serde_json::from_value(value).unwrap();
    assert_eq!(back, lamp());

    // Missing options are `None`, `#[serde(default)]` passes through, and a relationship
    // attribute in the input is not a field.
    let minimal: Product = serde_json::from_value(json!({
        "id": "p2", "name": "Desk", "price": 99.0, "categoryId": "c1", "tags": [],
        "extra": null, "stockQuantity": 0, "weights": [], "category": {"id": "c1"}
    }))
    .unwrap();
    assert_eq!(minimal.sku, None);
    assert!(!minimal.in_stock);

    let post = BlogPost {
        post_id: 7,
        tag_ids: vec!["t1".into()],
        tag_list: Links::new(),
    };
    assert_eq!(
        serde_json::to_value(&post).unwrap(),
        json!({"post_id": 7, "tag_ids": ["t1"]})
    );
    let tag = Tag {
        tag_id: "t1".into(),
        blog_posts: Links::default(),
    };
    assert_eq!(serde_json::to_value(&tag).unwrap(), json!({"TagId": "t1"}));
}

#[test]
fn accessor_signatures() {
    let _: fn(&Product, &ReadTx) -> harper::Result<Option<Category>> = Product::category;
    let _: fn(&Category, &ReadTx) -> harper::Result<Vec<Product>> = Category::products;
    let _: fn(&BlogPost, &ReadTx) -> harper::Result<Vec<Tag>> = BlogPost::tag_list;
    let _: fn(&Tag, &ReadTx) -> harper::Result<Vec<BlogPost>> = Tag::blog_posts;
}

#[test]
fn accessors_follow_relationships() -> harper::Result<()> {
    let db = Database::temporary()?;
    let toys = Category {
        id: "c1".into(),
        name: "Toys".into(),
        products: Links::new(),
    };
    let desk = Product {
        id: "p2".into(),
        name: "Desk".into(),
        category_id: "c2".into(),
        ..lamp()
    };
    db.write(|tx: &mut WriteTx| {
        tx.put(&toys)?;
        tx.put(&lamp())?;
        tx.put(&desk)?;
        // Accessors take any reader, a write transaction too.
        let _: Option<Category> = lamp().category(tx)?;
        let _: Vec<Product> = toys.products(tx)?;
        Ok::<(), harper::Error>(())
    })?;
    db.read(|tx| {
        assert_eq!(lamp().category(tx)?, Some(toys.clone()));
        assert_eq!(desk.category(tx)?, None);
        let products = toys.products(tx)?;
        assert_eq!(products, vec![lamp()]);
        Ok(())
    })
}

#[test]
fn many_to_many_accessors() -> harper::Result<()> {
    let db = Database::temporary()?;
    let tag = |id: &str| Tag {
        tag_id: id.into(),
        blog_posts: Links::new(),
    };
    let post = BlogPost {
        post_id: 1,
        tag_ids: vec!["t1".into(), "t2".into()],
        tag_list: Links::new(),
    };
    db.write(|tx| {
        tx.put(&tag("t1"))?;
        tx.put(&tag("t2"))?;
        tx.put(&tag("t3"))?;
        tx.put(&post)
    })?;
    db.read(|tx| {
        let mut tags: Vec<_> = post.tag_list(tx)?.into_iter().map(|t| t.tag_id).collect();
        tags.sort();
        assert_eq!(tags, ["t1", "t2"]);
        assert_eq!(tag("t2").blog_posts(tx)?, vec![post.clone()]);
        assert!(tag("t3").blog_posts(tx)?.is_empty());
        Ok(())
    })
}
