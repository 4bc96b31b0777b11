//! Reopening a data directory with a changed table definition: what is applied and what is
//! refused. Each version of the table is a struct mapped to the same table name.

use harper::prelude::*;
use harper::{Error, Reader};

mod v1 {
    use harper::prelude::*;
    #[table(name = "Item")]
    pub struct Item {
        #[primary_key]
        pub id: Id,
        pub name: String,
        #[indexed]
        pub size: i32,
    }
}

/// v1 plus: `name` indexed, `size` no longer indexed, a new optional field.
mod v2 {
    use harper::prelude::*;
    #[table(name = "Item")]
    pub struct Item {
        #[primary_key]
        pub id: Id,
        #[indexed]
        pub name: String,
        pub size: i32,
        pub color: Option<String>,
    }
}

/// A new required field.
mod v3_required {
    use harper::prelude::*;
    #[table(name = "Item")]
    pub struct Item {
        #[primary_key]
        pub id: Id,
        pub name: String,
        pub size: i32,
        pub weight: f64,
    }
}

/// `size` changes type from integer to string.
mod v3_retyped {
    use harper::prelude::*;
    #[table(name = "Item")]
    pub struct Item {
        #[primary_key]
        pub id: Id,
        pub name: String,
        pub size: String,
    }
}

/// `size` widens from i32 to i64: safe.
mod v3_widened {
    use harper::prelude::*;
    #[table(name = "Item")]
    pub struct Item {
        #[primary_key]
        pub id: Id,
        pub name: String,
        #[indexed]
        pub size: i64,
    }
}

fn fill_v1(dir: &std::path::Path) {
    let db = Database::open(dir).unwrap();
    db.write(|tx| {
        for i in 0..500 {
            tx.put(&v1::Item {
                id: format!("i{i:03}").into(),
                name: format!("item {}", i % 50),
                size: i,
            })?;
        }
        Ok::<_, Error>(())
    })
    .unwrap();
}

#[test]
fn adding_and_removing_indexes_and_optional_fields_just_works() {
    let dir = tempfile::tempdir().unwrap();
    fill_v1(dir.path());
    let db = Database::open(dir.path()).unwrap();
    db.register::<v2::Item>().unwrap();
    db.check_integrity().unwrap();

    // The new index on `name` was built from the existing records and serves queries.
    let q = Query::new().filter(attr("name").eq("item 7"));
    let (rows, stats) = db
        .read(|tx| tx.query_with_stats(v2::Item::DEF, &q))
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert!(stats.plan.contains("Item#name"), "{}", stats.plan);
    assert_eq!(stats.records_read, 10, "{stats:?}");

    // Old records read back with the new optional field absent.
    let item: v2::Item = db.get("i042").unwrap().unwrap();
    assert_eq!((item.size, item.color.as_deref()), (42, None));
    db.write(|tx| tx.patch::<v2::Item>("i042", serde_json::json!({"color": "red"})))
        .unwrap();

    // The dropped index is gone from disk: `size` is now answered by a scan.
    let q = Query::new().filter(attr("size").eq(42));
    let (rows, stats) = db
        .read(|tx| tx.query_with_stats(v2::Item::DEF, &q))
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(stats.plan.starts_with("scan"), "{}", stats.plan);
    drop(db);

    // And back: re-adding the index on `size` rebuilds it, including the patched record.
    let db = Database::open(dir.path()).unwrap();
    db.register::<v1::Item>().unwrap();
    db.check_integrity().unwrap();
    let q = Query::new().filter(attr("size").lt(3));
    assert_eq!(
        db.read(|tx| tx.query_stored(v1::Item::DEF, &q))
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn a_new_required_field_is_refused_naming_table_and_field() {
    let dir = tempfile::tempdir().unwrap();
    fill_v1(dir.path());
    let db = Database::open(dir.path()).unwrap();
    let err = db.register::<v3_required::Item>().unwrap_err();
    match &err {
        Error::IncompatibleSchema {
            table,
            field,
            message,
        } => {
            assert_eq!((table.as_str(), field.as_str()), ("Item", "weight"));
            assert!(message.contains("Option"), "{message}");
        }
        other => panic!("expected IncompatibleSchema, got {other:?}"),
    }
    // Nothing was destroyed: the old definition still opens and reads everything.
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    db.register::<v1::Item>().unwrap();
    assert_eq!(
        db.read(|tx| tx.query_stored(v1::Item::DEF, &Query::new()))
            .unwrap()
            .len(),
        500
    );
    db.check_integrity().unwrap();
}

#[test]
fn a_type_change_that_would_misread_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill_v1(dir.path());
    let db = Database::open(dir.path()).unwrap();
    let err = db.register::<v3_retyped::Item>().unwrap_err();
    assert!(
        matches!(&err, Error::IncompatibleSchema { field, .. } if field == "size"),
        "{err:?}"
    );
    assert!(err.to_string().contains("Item.size"), "{err}");
}

#[test]
fn widening_an_integer_keeps_data_and_rebuilds_its_index() {
    let dir = tempfile::tempdir().unwrap();
    fill_v1(dir.path());
    let db = Database::open(dir.path()).unwrap();
    db.register::<v3_widened::Item>().unwrap();
    db.check_integrity().unwrap();
    let q = Query::new().filter(attr("size").ge(498i64));
    let got: Vec<v3_widened::Item> = db.read(|tx| tx.query(&q)).unwrap();
    assert_eq!(got.iter().map(|i| i.size).collect::<Vec<_>>(), [498, 499]);
}

#[test]
fn a_new_table_in_an_existing_directory_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    fill_v1(dir.path());
    #[table]
    struct Fresh {
        #[primary_key]
        id: u64,
        #[indexed]
        tag: Option<String>,
    }
    let db = Database::open(dir.path()).unwrap();
    db.write(|tx| tx.put(&Fresh { id: 7, tag: None })).unwrap();
    let found: Vec<Fresh> = db
        .read(|tx| tx.query(&Query::new().filter(attr("tag").is_null())))
        .unwrap();
    assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), [7]);
    assert!(db.get::<Fresh>(7u64).unwrap().is_some());
    assert!(
        db.get::<Fresh>("7").unwrap().is_some(),
        "a numeric string finds an integer key"
    );
}
