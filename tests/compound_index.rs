//! Compound indexes (`#[table(index(a, b))]`): kept exact through writes, and a sorted,
//! limited query over a large table reads about what it returns, even when its matches sort
//! after everything else.

use harper::Reader;
use harper::prelude::*;

#[table(index(category_id, name), index(category_id, in_stock, price))]
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    #[primary_key]
    pub id: Id,
    #[indexed]
    pub name: String,
    #[indexed]
    pub category_id: Id,
    #[indexed]
    pub in_stock: bool,
    pub price: f64,
    pub note: Option<String>,
}

const N: usize = 100_000;
const CATEGORIES: usize = 10;

fn item(i: usize) -> Item {
    let cat = i % CATEGORIES;
    Item {
        id: format!("i{i:06}").into(),
        // Category c9's names sort after every other category's.
        name: format!(
            "{} {i:06}",
            ["a", "b", "c", "d", "e", "f", "g", "h", "k", "zz"][cat]
        ),
        category_id: format!("c{cat}").into(),
        in_stock: !i.is_multiple_of(4),
        price: ((i * 7919) % 1000) as f64,
        note: None,
    }
}

fn catalog(n: usize) -> Database {
    let db = Database::temporary().unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        db.write(|tx| {
            for &i in chunk {
                tx.put(&item(i))?;
            }
            Ok::<_, harper::Error>(())
        })
        .unwrap();
    }
    db
}

fn ids(rows: &[harper::StoredRecord]) -> Vec<String> {
    rows.iter()
        .map(|r| r.decode::<Item>().unwrap().id.to_string())
        .collect()
}

/// The answer worked out from every record: filter, sort by `key` (then id), take `limit`.
fn expected(
    db: &Database,
    keep: impl Fn(&Item) -> bool,
    key: impl Fn(&Item) -> String,
    desc: bool,
    limit: usize,
) -> Vec<String> {
    let (all, _) = db
        .read(|tx| tx.query_with_stats(Item::DEF, &Query::new()))
        .unwrap();
    let mut items: Vec<Item> = all
        .iter()
        .map(|r| r.decode::<Item>().unwrap())
        .filter(|i| keep(i))
        .collect();
    items.sort_by(|a, b| {
        let o = key(a).cmp(&key(b));
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| a.id.to_string().cmp(&b.id.to_string()))
    });
    items
        .into_iter()
        .take(limit)
        .map(|i| i.id.to_string())
        .collect()
}

#[test]
fn listing_page_reads_what_it_returns_when_matches_sort_last() {
    let db = catalog(N);
    let run = |q: &Query| db.read(|tx| tx.query_with_stats(Item::DEF, q)).unwrap();
    let listing = Query::new()
        .filter(attr("categoryId").eq("c9") & attr("inStock").eq(true))
        .sort_by("name")
        .limit(24);
    let (rows, stats) = run(&listing);
    assert_eq!(
        ids(&rows),
        expected(
            &db,
            |i| i.category_id == "c9" && i.in_stock,
            |i| i.name.clone(),
            false,
            24
        )
    );
    assert!(
        stats.plan.contains("Item#categoryId+name"),
        "{}",
        stats.plan
    );
    // c9's 10,000 items sort after the other 90,000: an ordered scan of the name index, or
    // sorting c9's matches, would read thousands of entries or records.
    assert!(stats.records_read <= 40, "{stats:?}");
    assert!(stats.index_entries_read <= 24 + 16 + 2 * 256, "{stats:?}");
    // The second time the candidate's count is remembered.
    let (_, again) = run(&listing);
    assert!(again.index_entries_read <= 40, "{again:?}");

    // Descending, with an offset: the same index read backwards.
    let q = Query::new()
        .filter(attr("categoryId").eq("c9") & attr("inStock").eq(true))
        .sort_by("-name")
        .offset(5)
        .limit(10);
    let (rows, stats) = run(&q);
    let mut want = expected(
        &db,
        |i| i.category_id == "c9" && i.in_stock,
        |i| i.name.clone(),
        true,
        15,
    );
    want.drain(..5);
    assert_eq!(ids(&rows), want);
    assert!(stats.plan.contains("(reverse)"), "{}", stats.plan);
    assert!(stats.records_read <= 30, "{stats:?}");

    // A condition on the sort field narrows the compound index's range.
    let q = Query::new()
        .filter(attr("categoryId").eq("c9") & attr("name").ge("zz 050000"))
        .sort_by("name")
        .limit(5);
    let (rows, stats) = run(&q);
    assert_eq!(
        ids(&rows),
        expected(
            &db,
            |i| i.category_id == "c9" && i.name.as_str() >= "zz 050000",
            |i| i.name.clone(),
            false,
            5
        )
    );
    assert!(stats.records_read <= 5, "{stats:?}");

    // Every field of the second index fixed but the last, which has a range: no sort, a
    // limit, read straight from the index.
    let q = Query::new()
        .filter(attr("categoryId").eq("c3") & attr("inStock").eq(false) & attr("price").lt(20.0))
        .limit(1000);
    let (rows, stats) = run(&q);
    let want = expected(
        &db,
        |i| i.category_id == "c3" && !i.in_stock && i.price < 20.0,
        |_| String::new(),
        false,
        1000,
    );
    let mut got = ids(&rows);
    got.sort();
    assert_eq!(got, want);
    assert!(
        stats.plan.contains("Item#categoryId+inStock+price"),
        "{}",
        stats.plan
    );
    assert_eq!(stats.records_read as usize, want.len(), "{stats:?}");

    // A tiny candidate still wins over the ordered scan: sorted in memory.
    let q = Query::new()
        .filter(attr("categoryId").eq("c9") & attr("id").eq("i000019"))
        .sort_by("name")
        .limit(24);
    let (rows, stats) = run(&q);
    assert_eq!(ids(&rows), vec!["i000019".to_string()]);
    // One read to count the key range, one to fetch it.
    assert!(stats.records_read <= 2, "{stats:?}");

    // Sorted by the compound index's order with a rare residual condition: the scan narrows
    // to the residual candidate's keys, and the answer stays exact.
    let q = Query::new()
        .filter(attr("categoryId").eq("c9") & attr("name").ge("zz 090000"))
        .sort_by("-name")
        .limit(3);
    let (rows, _) = run(&q);
    assert_eq!(
        ids(&rows),
        expected(
            &db,
            |i| i.category_id == "c9" && i.name.as_str() >= "zz 090000",
            |i| i.name.clone(),
            true,
            3
        )
    );
}

#[test]
fn compound_index_follows_writes() {
    let db = catalog(2_000);
    db.check_integrity().unwrap();
    let listing = |cat: &str| {
        let q = Query::new()
            .filter(attr("categoryId").eq(cat) & attr("inStock").eq(true))
            .sort_by("name")
            .limit(3);
        let (rows, stats) = db.read(|tx| tx.query_with_stats(Item::DEF, &q)).unwrap();
        (ids(&rows), stats)
    };
    // Move the first c9 item to c1 and rename one so it sorts first in c9; delete another.
    db.write(|tx| {
        let mut a = item(9);
        a.category_id = "c1".into();
        tx.put(&a)?;
        let mut b = item(1999);
        b.name = "zz 000000".into();
        tx.put(&b)?;
        tx.delete::<Item>("i000019")?;
        Ok::<_, harper::Error>(())
    })
    .unwrap();
    db.check_integrity().unwrap();
    let (c9, stats) = listing("c9");
    assert!(
        stats.plan.contains("Item#categoryId+name"),
        "{}",
        stats.plan
    );
    assert_eq!(
        c9,
        expected(
            &db,
            |i| i.category_id == "c9" && i.in_stock,
            |i| i.name.clone(),
            false,
            3
        )
    );
    assert_eq!(c9[0], "i001999");
    let (c1, _) = listing("c1");
    assert_eq!(
        c1,
        expected(
            &db,
            |i| i.category_id == "c1" && i.in_stock,
            |i| i.name.clone(),
            false,
            3
        )
    );
}
