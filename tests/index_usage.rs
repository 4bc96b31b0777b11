//! Plans use indexes, shown by what the engine reads over 100k records.

mod common;

use common::*;
use harper::Reader;
use harper::prelude::*;

const N: usize = 100_000;

/// 100k products: 100 categories of 1000, prices spread 0..1000, every 10th out of stock.
fn big_catalog() -> Database {
    let db = Database::temporary().unwrap();
    for chunk in 0..(N / 10_000) {
        db.write(|tx| {
            for i in chunk * 10_000..(chunk + 1) * 10_000 {
                let mut p = product(
                    &format!("p{i:06}"),
                    &format!("c{:03}", i % 100),
                    ((i * 7919) % 100_000) as f64 / 100.0,
                    5,
                );
                p.in_stock = i % 10 != 0;
                tx.put(&p)?;
            }
            Ok::<_, harper::Error>(())
        })
        .unwrap();
    }
    db
}

#[test]
fn plans_read_what_they_return_not_the_table() {
    let db = big_catalog();
    let run = |q: &Query| db.read(|tx| tx.query_with_stats(Product::DEF, q)).unwrap();

    // Equality on an indexed field with a limit: reads about what it returns.
    let (rows, stats) = run(&Query::new().filter(attr("categoryId").eq("c042")).limit(20));
    assert_eq!(rows.len(), 20);
    assert!(stats.plan.contains("Product#categoryId"), "{}", stats.plan);
    assert!(stats.records_read <= 20, "{stats:?}");
    assert!(stats.index_entries_read <= 20 + 256, "{stats:?}");

    // The seed's first query: a conjunction of two indexed equalities plus a limit.
    let q = Query::new()
        .filter(attr("categoryId").eq("c007") & attr("inStock").eq(true))
        .limit(20);
    let (rows, stats) = run(&q);
    assert_eq!(rows.len(), 20);
    assert!(
        stats.plan.contains("categoryId"),
        "starts from the more selective condition: {}",
        stats.plan
    );
    assert!(stats.records_read <= 25, "{stats:?}");

    // A conjunction starts from the most selective indexed condition: price < 0.5 matches
    // ~50 records, categoryId ~1000, inStock ~90k.
    let q = Query::new()
        .filter(attr("inStock").eq(true) & attr("categoryId").eq("c003") & attr("price").lt(0.5));
    let (rows, stats) = run(&q);
    assert!(stats.plan.contains("Product#price"), "{}", stats.plan);
    assert!(stats.records_read <= 60, "{stats:?}");
    assert!(
        rows.iter()
            .all(|r| r.decode::<Product>().unwrap().category_id == "c003")
    );

    // Range + sort + limit on the same indexed field: reads only what it returns.
    let q = Query::new()
        .filter(attr("price").gt(500.0))
        .sort_by("price")
        .limit(20);
    let (rows, stats) = run(&q);
    assert_eq!(rows.len(), 20);
    assert!(stats.records_read <= 20, "{stats:?}");
    let prices: Vec<f64> = rows
        .iter()
        .map(|r| r.decode::<Product>().unwrap().price)
        .collect();
    assert!(
        prices.windows(2).all(|w| w[0] <= w[1]) && prices[0] > 500.0,
        "{prices:?}"
    );

    // Sort on an indexed field with a limit and no filter: an ordered index scan.
    let (rows, stats) = run(&Query::new().sort_by("-price").limit(10));
    assert_eq!(rows.len(), 10);
    assert!(stats.plan.contains("(reverse)"), "{}", stats.plan);
    assert!(stats.records_read <= 12, "{stats:?}");

    // Sort on an indexed field, filter on another, with a limit: ordered scan, filter as it goes.
    let q = Query::new()
        .filter(attr("inStock").eq(true))
        .sort_by("name")
        .limit(20);
    let (rows, stats) = run(&q);
    assert_eq!(rows.len(), 20);
    assert!(stats.records_read <= 30, "{stats:?}");

    // Sorted by one index, filtered by a large condition on another whose matches come
    // late in the sort order: after a few pages of entries, the scan narrows itself to the
    // condition's keys (read from its index) and stops reading records it would discard.
    let q = Query::new()
        .filter(attr("id").ge("p090000") & attr("inStock").eq(true))
        .sort_by("name")
        .limit(20);
    let (rows, stats) = run(&q);
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.decode::<Product>().unwrap().id.to_string())
        .collect();
    let expected: Vec<String> = (90_000..)
        .filter(|i| i % 10 != 0)
        .take(20)
        .map(|i| format!("p{i:06}"))
        .collect();
    assert_eq!(ids, expected);
    assert!(stats.plan.contains("within Product#id"), "{}", stats.plan);
    // 10,000 of these are the costing's count of the key range; without narrowing, the
    // scan alone would read the 90,000 records that sort first.
    assert!(stats.records_read <= 10_700, "{stats:?}");

    // The same through a secondary index: its keys are collected once, from the index.
    let q = Query::new()
        .filter(attr("price").ge(950.0))
        .sort_by("name")
        .limit(20);
    let (rows, stats) = run(&q);
    assert!(
        stats.plan.contains("within Product#price"),
        "{}",
        stats.plan
    );
    assert!(stats.records_read <= 400, "{stats:?}");
    let (all, _) = run(&Query::new().filter(attr("price").ge(950.0)));
    let mut names: Vec<String> = all
        .iter()
        .map(|r| r.decode::<Product>().unwrap().name)
        .collect();
    names.sort();
    let got: Vec<String> = rows
        .iter()
        .map(|r| r.decode::<Product>().unwrap().name)
        .collect();
    assert_eq!(got, names[..20]);

    // A primary-key range reads the record keyspace directly.
    let (rows, stats) = run(&Query::new().filter(attr("id").ge("p099990")));
    assert_eq!(rows.len(), 10);
    assert_eq!(stats.records_read, 10, "{stats:?}");

    // A condition on a non-indexed field reads everything (the baseline the above avoid).
    let (_, stats) = run(&Query::new().filter(attr("stockQuantity").eq(4)).limit(20));
    assert_eq!(stats.records_read as usize, N, "{stats:?}");
}

#[test]
fn plans_reuse_range_counts_until_the_table_changes() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    let q = Query::new()
        .filter(attr("categoryId").eq("toys") & attr("inStock").eq(true))
        .sort_by("name");
    let run = || db.read(|tx| tx.query_with_stats(Product::DEF, &q)).unwrap();
    let (first_rows, first) = run();
    let (rows, again) = run();
    assert_eq!(rows.len(), first_rows.len());
    assert_eq!(again.plan, first.plan);
    // The first plan counted both candidates' index ranges; the second remembers them.
    assert!(
        again.index_entries_read < first.index_entries_read,
        "{first:?} then {again:?}"
    );
    // After enough writes to the table, ranges are counted afresh.
    for i in 0..100 {
        db.write(|tx| tx.put(&product(&format!("x{i:03}"), "books", 1.0, 1)))
            .unwrap();
    }
    let (_, fresh) = run();
    assert_eq!(fresh.index_entries_read, first.index_entries_read);
}
