//! The record cache under concurrent commits: every read transaction sees one commit's
//! state whole, whether its records come from the cache or from fjall, and point reads at
//! the latest commit never go back in time. A cache that served a version a snapshot does
//! not hold, or kept a version a commit replaced, fails these.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use harper::prelude::*;
use harper::query::Sort;

const IDS: [&str; 4] = ["p1", "p2", "p3", "p4"];

fn stock_of(db: &Database, id: &str) -> i32 {
    let stored = db
        .get_latest(Product::DEF, id.into())
        .unwrap()
        .expect("stored");
    stored.decode::<Product>().unwrap().stock_quantity
}

#[test]
fn snapshots_see_whole_commits_while_writes_replace_cached_records() {
    let db = Database::temporary().unwrap();
    db.write(|tx| {
        for id in IDS {
            tx.put(&product(id, "toys", 1.0, 0))?;
        }
        Ok::<_, harper::Error>(())
    })
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (db, done) = (db.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut last_latest = 0;
                while !done.load(Ordering::Relaxed) {
                    // Point reads, then a query reading the same records through an index.
                    let (points, queried) = db
                        .read(|tx| {
                            let points: Vec<i32> = IDS
                                .iter()
                                .map(|id| tx.get::<Product>(*id).map(|p| p.unwrap().stock_quantity))
                                .collect::<Result<_, _>>()?;
                            let q = Query::new().filter(attr("categoryId").eq("toys"));
                            let q = Query {
                                sort: vec![Sort {
                                    attribute: "price".into(),
                                    descending: r == 0,
                                }],
                                ..q
                            };
                            let queried: Vec<i32> = tx
                                .query::<Product>(&q)?
                                .iter()
                                .map(|p| p.stock_quantity)
                                .collect();
                            Ok::<_, harper::Error>((points, queried))
                        })
                        .unwrap();
                    assert!(
                        points.iter().all(|n| *n == points[0]),
                        "one commit's state: {points:?}"
                    );
                    assert_eq!(queried.len(), IDS.len());
                    assert!(
                        queried.iter().all(|n| *n == points[0]),
                        "{queried:?} vs {points:?}"
                    );
                    let latest = stock_of(&db, IDS[r]);
                    assert!(
                        latest >= last_latest,
                        "latest read went back: {latest} < {last_latest}"
                    );
                    last_latest = latest;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for n in 1..=3000 {
        db.write(|tx| {
            for id in IDS {
                tx.put(&product(id, "toys", f64::from(n % 7), n))?;
            }
            Ok::<_, harper::Error>(())
        })
        .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    // After the last commit every read, cached or not, sees it.
    for id in IDS {
        assert_eq!(stock_of(&db, id), 3000);
    }
    let last = db
        .read(|tx| tx.query::<Product>(&Query::new().filter(attr("categoryId").eq("toys"))))
        .unwrap();
    assert!(last.iter().all(|p| p.stock_quantity == 3000));
    assert!(
        db.storage_stats().record_cache_bytes > 0,
        "the cache was used"
    );
}

#[test]
fn deleted_records_are_not_served_from_the_cache() {
    let db = Database::temporary().unwrap();
    db.write(|tx| tx.put(&product("p1", "toys", 1.0, 5)))
        .unwrap();
    for _ in 0..3 {
        // Read twice: the second read is a cache hit.
        assert!(db.read(|tx| tx.get::<Product>("p1")).unwrap().is_some());
        assert!(db.read(|tx| tx.get::<Product>("p1")).unwrap().is_some());
    }
    let before = db.storage_stats().record_cache_bytes;
    assert!(before > 0);
    let old = db.read_at_seq().0;
    assert!(db.write(|tx| tx.delete::<Product>("p1")).unwrap());
    assert_eq!(db.read(|tx| tx.get::<Product>("p1")).unwrap(), None);
    assert!(db.get_latest(Product::DEF, "p1".into()).unwrap().is_none());
    assert_eq!(
        db.storage_stats().record_cache_bytes,
        0,
        "the commit removed it"
    );
    // A snapshot taken before the delete still reads the record (from fjall).
    assert!(old.get::<Product>("p1").unwrap().is_some());
    assert_eq!(
        db.read(|tx| tx.query::<Product>(&Query::new().filter(attr("categoryId").eq("toys"))))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn a_zero_budget_turns_the_cache_off() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path())
        .record_cache_size(0)
        .open()
        .unwrap();
    db.write(|tx| tx.put(&product("p1", "toys", 1.0, 5)))
        .unwrap();
    for _ in 0..3 {
        assert!(db.read(|tx| tx.get::<Product>("p1")).unwrap().is_some());
    }
    assert_eq!(db.storage_stats().record_cache_bytes, 0);
}
