//! Records through the typed API on a real fjall directory: CRUD, validation, atomic
//! transactions, persistence across reopen, relationships and the change feed.

mod common;

use common::*;
use harper::prelude::*;
use harper::{ChangeKind, Error};
use serde_json::json;

#[test]
fn put_get_replace_and_delete() {
    let db = Database::temporary().unwrap();
    db.write(|tx| tx.put(&product("p1", "toys", 9.5, 3)))
        .unwrap();
    let p: Product = db.get("p1").unwrap().expect("stored");
    assert_eq!(p, product("p1", "toys", 9.5, 3));

    let mut changed = p.clone();
    changed.price = 12.0;
    db.write(|tx| tx.put(&changed)).unwrap();
    assert_eq!(db.get::<Product>("p1").unwrap().unwrap().price, 12.0);

    assert!(db.write(|tx| tx.delete::<Product>("p1")).unwrap());
    assert!(
        !db.write(|tx| tx.delete::<Product>("p1")).unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(db.get::<Product>("p1").unwrap(), None);
    db.check_integrity().unwrap();
}

#[test]
fn stored_json_uses_camel_case_names_in_declaration_order() {
    let db = Database::temporary().unwrap();
    db.write(|tx| tx.put(&product("p1", "toys", 9.5, 3)))
        .unwrap();
    let stored = db
        .read(|tx| tx.get_stored(Product::DEF, "p1".into()))
        .unwrap()
        .unwrap();
    let text = std::str::from_utf8(stored.json()).unwrap();
    assert!(
        text.starts_with(r#"{"id":"p1","name":"Product p1","description":"About p1","price":9.5,"categoryId":"toys","inStock":true,"stockQuantity":3"#),
        "{text}"
    );
    assert!(
        !text.contains("category\":"),
        "relationships are not stored: {text}"
    );
}

#[test]
fn insert_refuses_an_existing_key_and_patch_needs_one() {
    let db = Database::temporary().unwrap();
    db.write(|tx| tx.insert(&category("toys", "Toys"))).unwrap();
    let err = db
        .write(|tx| tx.insert(&category("toys", "Other")))
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(
        db.get::<Category>("toys").unwrap().unwrap().name,
        "Toys",
        "nothing replaced"
    );

    let err = db
        .write(|tx| tx.patch::<Category>("nope", json!({"name": "x"})))
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(
        db.get::<Category>("nope").unwrap(),
        None,
        "a failed patch creates nothing"
    );
}

#[test]
fn patch_merges_named_fields_and_keeps_the_rest() {
    let db = Database::temporary().unwrap();
    db.write(|tx| tx.put(&product("p1", "toys", 9.5, 3)))
        .unwrap();
    let merged: Product = db
        .write(|tx| {
            tx.patch::<Product>(
                "p1",
                json!({"price": 14.25, "inStock": false, "description": null}),
            )
        })
        .unwrap();
    assert_eq!(merged.price, 14.25);
    assert!(!merged.in_stock);
    assert_eq!(merged.description, None);
    assert_eq!(merged.name, "Product p1");
    assert_eq!(db.get::<Product>("p1").unwrap().unwrap(), merged);
    // The index follows the patch.
    let cheap = db
        .read(|tx| tx.query::<Product>(&Query::new().filter(attr("price").lt(15.0))))
        .unwrap();
    assert_eq!(cheap.len(), 1);
    db.check_integrity().unwrap();
}

#[test]
fn patch_with_bad_values_is_refused_naming_the_field() {
    let db = Database::temporary().unwrap();
    db.write(|tx| tx.put(&product("p1", "toys", 9.5, 3)))
        .unwrap();
    let cases = [
        (json!({"price": "abc"}), "price"),
        (json!({"stockQuantity": 1.5}), "stockQuantity"),
        (json!({"stockQuantity": 3_000_000_000i64}), "stockQuantity"),
        (json!({"inStock": "yes"}), "inStock"),
        (json!({"name": 42}), "name"),
        (json!({"name": null}), "name"),
        (json!({"color": "red"}), "color"),
        (json!({"category": {"id": "x"}}), "category"),
        (json!({"id": "p2"}), "id"),
    ];
    for (patch, field) in cases {
        let err = db
            .write(|tx| tx.patch::<Product>("p1", patch.clone()))
            .unwrap_err();
        match &err {
            Error::InvalidRecord {
                field: Some(f),
                message,
                ..
            } => {
                assert_eq!(f, field, "{patch} -> {message}");
                assert!(message.contains(field), "{message}");
            }
            other => panic!("{patch}: expected InvalidRecord, got {other:?}"),
        }
    }
    assert_eq!(
        db.get::<Product>("p1").unwrap().unwrap(),
        product("p1", "toys", 9.5, 3),
        "nothing changed"
    );
}

#[test]
fn a_failing_transaction_leaves_nothing_behind() {
    let db = Database::temporary().unwrap();
    db.write(|tx| tx.put(&product("p1", "toys", 9.5, 3)))
        .unwrap();
    let seq_before = db.last_seq();
    let result: Result<(), Error> = db.write(|tx| {
        tx.put(&product("p2", "toys", 1.0, 1))?;
        tx.put(&category("toys", "Toys"))?;
        tx.delete::<Product>("p1")?;
        tx.patch::<Product>("missing", json!({"price": 1}))?; // fails: NotFound
        Ok(())
    });
    assert!(matches!(result, Err(Error::NotFound { .. })));
    assert_eq!(db.get::<Product>("p2").unwrap(), None);
    assert_eq!(db.get::<Category>("toys").unwrap(), None);
    assert!(db.get::<Product>("p1").unwrap().is_some());
    assert_eq!(db.last_seq(), seq_before, "no change-log entry");
    let q = Query::new().filter(attr("categoryId").eq("toys"));
    assert_eq!(
        db.read(|tx| tx.query::<Product>(&q)).unwrap().len(),
        1,
        "no stray index entry"
    );
    db.check_integrity().unwrap();
}

#[test]
fn a_business_error_type_rolls_back_too() {
    #[derive(Debug)]
    enum ShopError {
        OutOfStock,
        #[allow(dead_code)] // carried for the caller's Debug output
        Db(Error),
    }
    impl From<Error> for ShopError {
        fn from(e: Error) -> Self {
            ShopError::Db(e)
        }
    }
    let db = Database::temporary().unwrap();
    db.write(|tx| tx.put(&product("p1", "toys", 9.5, 1)))
        .unwrap();
    let r = db.write(|tx| -> Result<(), ShopError> {
        tx.update::<Product>("p1", |p| p.stock_quantity -= 1)?;
        let p: Product = tx.get("p1")?.expect("exists");
        assert_eq!(
            p.stock_quantity, 0,
            "reads see the transaction's own writes"
        );
        Err(ShopError::OutOfStock)
    });
    assert!(matches!(r, Err(ShopError::OutOfStock)));
    assert_eq!(db.get::<Product>("p1").unwrap().unwrap().stock_quantity, 1);
}

#[test]
fn transactions_read_their_own_writes_in_queries() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    db.write(|tx| {
        tx.put(&product("new", "toys", 0.5, 1))?;
        tx.delete::<Product>("p03")?; // a toy (3 % 3 == 0)
        let toys = tx.query::<Product>(
            &Query::new()
                .filter(attr("categoryId").eq("toys"))
                .sort_by("price"),
        )?;
        assert_eq!(toys.first().map(|p| p.id.as_str()), Some("new"));
        assert!(toys.iter().all(|p| p.id != "p03"));
        Ok::<_, Error>(())
    })
    .unwrap();
    db.check_integrity().unwrap();
}

#[test]
fn everything_survives_reopening_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        small_catalog(&db);
        db.write(|tx| tx.delete::<Product>("p01")).unwrap();
    }
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.get::<Product>("p01").unwrap(), None);
    assert_eq!(db.get::<Product>("p02").unwrap().unwrap().price, 2.0);
    let q = Query::new().filter(attr("price").ge(29.0));
    let ids: Vec<String> = db
        .read(|tx| tx.query::<Product>(&q))
        .unwrap()
        .into_iter()
        .map(|p| p.id.into_string())
        .collect();
    assert_eq!(ids, ["p29", "p30"]);
    assert!(db.last_seq() >= 2, "the change log survives too");
    db.check_integrity().unwrap();
}

/// The journals of a data directory: (name, length).
fn journals(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jnl"))
        .map(|e| {
            let len = e.metadata().unwrap().len();
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_clean_close_leaves_an_empty_journal_and_later_writes_still_win() {
    // A clean close flushes everything to tables and replaces the journal with an empty one
    // (the next open reads no journal). Writes after such a reopen must still take the
    // place of the versions in tables (fjall's sequence numbers carry on from the tables).
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        small_catalog(&db);
        assert!(journals(dir.path())[0].1 > 0, "written to the journal");
    }
    let after_first = journals(dir.path());
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    assert_eq!(after_first[0].1, 0, "an empty journal: {after_first:?}");
    for round in 1..=3 {
        let db = Database::open(dir.path()).unwrap();
        assert_eq!(
            db.get::<Product>("p02").unwrap().unwrap().price,
            if round == 1 {
                2.0
            } else {
                100.0 + f64::from(round - 1)
            }
        );
        let mut p = db.get::<Product>("p02").unwrap().unwrap();
        p.price = 100.0 + f64::from(round);
        db.write(|tx| tx.put(&p)).unwrap();
        db.write(|tx| tx.delete::<Product>(&format!("p1{round}")))
            .unwrap();
        assert_eq!(db.get::<Product>("p02").unwrap().unwrap().price, p.price);
        db.check_integrity().unwrap();
        drop(db);
        let now = journals(dir.path());
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(now[0].1, 0, "{now:?}");
    }
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.get::<Product>("p02").unwrap().unwrap().price, 103.0);
    for gone in ["p11", "p12", "p13"] {
        assert_eq!(db.get::<Product>(gone).unwrap(), None, "{gone}");
    }
    assert_eq!(db.get::<Product>("p14").unwrap().unwrap().price, 14.0);
    let seq = db.last_seq();
    db.write(|tx| tx.put(&category("more", "More"))).unwrap();
    assert_eq!(db.last_seq(), seq + 1, "the change log carries on");
    db.check_integrity().unwrap();
}

#[test]
fn a_second_open_of_the_same_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _db = Database::open(dir.path()).unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
}

#[test]
fn relationships_are_followed_both_ways() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    db.read(|tx| {
        let p: Product = tx.get("p04")?.expect("exists");
        let cat = p.category(tx)?.expect("linked");
        assert_eq!(cat.name, "Books");
        let books = cat.products(tx)?;
        assert_eq!(books.len(), 10);
        assert!(books.iter().all(|b| b.category_id == "books"));
        Ok::<_, Error>(())
    })
    .unwrap();
    db.write(|tx| {
        tx.put(&cart_item("c1", "p04", "s1", 2))?;
        let item: CartItem = tx.get("c1")?.expect("exists");
        assert_eq!(
            item.product(&*tx)?.map(|p| p.id.into_string()).as_deref(),
            Some("p04")
        );
        Ok::<_, Error>(())
    })
    .unwrap();
}

#[test]
fn commits_are_published_in_order_with_every_record_written() {
    let db = Database::temporary().unwrap();
    let mut feed = db.subscribe();
    db.write(|tx| {
        tx.put(&category("toys", "Toys"))?;
        tx.put(&product("p1", "toys", 1.0, 1))?;
        Ok::<_, Error>(())
    })
    .unwrap();
    db.write(|tx| tx.patch::<Product>("p1", json!({"price": 2.0})))
        .unwrap();
    db.write(|tx| tx.delete::<Product>("p1")).unwrap();

    let first = feed.try_recv().unwrap();
    assert_eq!(first.changes.len(), 2);
    assert_eq!(first.changes[1].table.name, "Product");
    let second = feed.try_recv().unwrap();
    assert_eq!(second.seq, first.seq + 1);
    assert!(second.version > first.version);
    assert_eq!(second.changes[0].kind, ChangeKind::Put);
    let merged: serde_json::Value =
        serde_json::from_slice(second.changes[0].json().unwrap()).unwrap();
    assert_eq!(
        merged["price"], 2.0,
        "a patch is published as the full merged record"
    );
    assert_eq!(merged["name"], "Product p1");
    let third = feed.try_recv().unwrap();
    assert_eq!(third.changes[0].kind, ChangeKind::Delete);
    assert!(feed.try_recv().is_err(), "nothing else");

    let logged: Vec<u64> = db.changes_since(0).map(|e| e.unwrap().0).collect();
    assert_eq!(logged, [first.seq, second.seq, third.seq]);
    let entry: serde_json::Value =
        serde_json::from_slice(&db.changes_since(second.seq).next().unwrap().unwrap().1).unwrap();
    assert_eq!(entry["changes"][0]["type"], "delete");
    assert_eq!(entry["changes"][0]["id"], "p1");
}

#[test]
fn durable_mode_group_commits_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path())
        .durability(harper::Durability::Sync)
        .open()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..50 {
                    db.write(|tx| tx.put(&cart_item(&format!("c{t}-{i}"), "p1", "s", 1)))
                        .unwrap();
                }
            });
        }
    });
    let all = db.read(|tx| tx.query::<CartItem>(&Query::new())).unwrap();
    assert_eq!(all.len(), 200);
    assert_eq!(db.last_seq(), 200);
    db.check_integrity().unwrap();
}

#[test]
fn computed_floats_index_exactly_what_is_stored() {
    // Values like x/100 + 0.99 must read back bit for bit from the stored JSON, or index
    // entries (built from the value in memory) would disagree with their records.
    let db = Database::temporary().unwrap();
    let prices: Vec<f64> = (0..2000).map(|i| i as f64 / 100.0 + 0.99).collect();
    db.write(|tx| {
        for (i, price) in prices.iter().enumerate() {
            tx.put(&product(&format!("f{i:04}"), "toys", *price, 1))?;
        }
        Ok::<_, Error>(())
    })
    .unwrap();
    db.check_integrity().unwrap();
    for (i, price) in prices.iter().enumerate().step_by(97) {
        let found = db
            .read(|tx| tx.query::<Product>(&Query::new().filter(attr("price").eq(*price))))
            .unwrap();
        assert_eq!(found.len(), 1, "price {price}");
        assert_eq!(found[0].id.as_str(), format!("f{i:04}"));
        assert_eq!(found[0].price.to_bits(), price.to_bits());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_durable_writes_answer_each_caller_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path())
        .durability(harper::Durability::Sync)
        .open()
        .unwrap();
    let writes = (0..200).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            let id = format!("c{i:03}");
            db.write_async(move |tx| {
                tx.put(&cart_item(&id, "p1", "s", 1))?;
                Ok::<_, Error>(i)
            })
            .await
        })
    });
    let answers = futures::future::join_all(writes).await;
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(
            a.unwrap().unwrap(),
            i,
            "each caller gets its own closure's answer"
        );
    }
    assert_eq!(db.last_seq(), 200);
    let all = db.read(|tx| tx.query::<CartItem>(&Query::new())).unwrap();
    assert_eq!(all.len(), 200);
    // Durable answers wait for fdatasyncs, at most one per commit (how many commits share
    // one depends on the disk's speed: that is for the benches).
    let (fsyncs, _) = db.fsync_stats();
    assert!(
        (1..=200).contains(&fsyncs),
        "200 durable writes took {fsyncs} fsyncs"
    );
    db.check_integrity().unwrap();
}

#[tokio::test]
async fn async_write_errors_and_panics_commit_nothing() {
    let db = Database::temporary().unwrap();
    let refused: Result<(), Error> = db
        .write_async(|tx| {
            tx.put(&cart_item("kept-out", "p1", "s", 1))?;
            Err(Error::Conflict("refused by the closure".into()))
        })
        .await;
    assert!(matches!(refused, Err(Error::Conflict(_))));
    let panicked: Result<(), Error> = db
        .write_async(|tx| {
            tx.put(&cart_item("half", "p1", "s", 1))?;
            panic!("a bug inside a write closure");
        })
        .await;
    let message = panicked.unwrap_err().to_string();
    assert!(message.contains("panicked"), "{message}");
    // The writer thread outlives the panic, and neither write left anything behind.
    db.write_async(|tx| tx.put(&cart_item("after", "p1", "s", 1)))
        .await
        .unwrap();
    let ids: Vec<String> = db
        .read(|tx| tx.query::<CartItem>(&Query::new()))
        .unwrap()
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(ids, ["after"]);
    assert_eq!(db.last_seq(), 1);
}
