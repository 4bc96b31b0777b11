//! Engine operations side by side with the raw fjall operations they are built on.
//!
//! `cargo bench --bench storage` runs 100k records; `HARPER_BENCH_1M=1 cargo bench --bench
//! storage` adds the 1M-record query benches (the data takes a minute to load).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fjall::{KeyspaceCreateOptions, Readable};
use harper::Reader;
use harper::prelude::*;

#[path = "../examples/storefront/schema.rs"]
#[allow(dead_code)]
mod schema;
use schema::Product;

fn product(i: usize) -> Product {
    Product {
        id: format!("p{i:07}").into(),
        name: format!("Product {i}"),
        description: Some(format!("A fine product, number {i}, for the benches")),
        price: ((i * 7919) % 100_000) as f64 / 100.0,
        category_id: format!("c{:03}", i % 1000).into(),
        in_stock: !i.is_multiple_of(10),
        stock_quantity: (i % 50) as i32,
        image_url: Some(format!("/img/{i}.jpg")),
        created_at: None,
        category: Link::new(),
    }
}

fn load(db: &Database, n: usize) {
    for start in (0..n).step_by(20_000) {
        db.write(|tx| {
            for i in start..(start + 20_000).min(n) {
                tx.put(&product(i))?;
            }
            Ok::<_, harper::Error>(())
        })
        .expect("load");
    }
}

/// The raw baseline: one fjall keyspace of the same JSON records and one index keyspace.
struct Raw {
    _db: fjall::Database,
    records: fjall::Keyspace,
    by_category: fjall::Keyspace,
    by_price: fjall::Keyspace,
    _dir: tempfile::TempDir,
}

fn raw(n: usize) -> Raw {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fjall::Database::builder(dir.path())
        .cache_size(64 << 20)
        .open()
        .expect("open");
    let records = db
        .keyspace("r", KeyspaceCreateOptions::default)
        .expect("ks");
    let by_category = db
        .keyspace("c", KeyspaceCreateOptions::default)
        .expect("ks");
    let by_price = db
        .keyspace("p", KeyspaceCreateOptions::default)
        .expect("ks");
    for start in (0..n).step_by(20_000) {
        let mut b = db.batch();
        for i in start..(start + 20_000).min(n) {
            let p = product(i);
            let json = serde_json::to_vec(&p).expect("json");
            b.insert(&records, p.id.as_bytes(), json);
            let mut ck = p.category_id.as_bytes().to_vec();
            ck.push(0);
            ck.extend_from_slice(p.id.as_bytes());
            b.insert(&by_category, ck, []);
            let mut pk = (p.price.to_bits() | (1 << 63)).to_be_bytes().to_vec();
            pk.extend_from_slice(p.id.as_bytes());
            b.insert(&by_price, pk, []);
        }
        b.commit().expect("commit");
    }
    Raw {
        _db: db,
        records,
        by_category,
        by_price,
        _dir: dir,
    }
}

fn point_ops(c: &mut Criterion) {
    let n = 100_000;
    let db = Database::temporary().expect("db");
    load(&db, n);
    let raw = raw(n);
    let mut g = c.benchmark_group("point");
    let mut i = 0usize;
    g.bench_function("harper get by id (typed)", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            let p: Option<Product> = db.get(format!("p{i:07}").as_str()).expect("get");
            black_box(p)
        })
    });
    g.bench_function("harper get by id (stored bytes)", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            let r = db
                .read(|tx| tx.get_stored(Product::DEF, format!("p{i:07}").into()))
                .expect("get");
            black_box(r)
        })
    });
    g.bench_function("raw fjall get + JSON decode", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            let v = raw
                .records
                .get(format!("p{i:07}"))
                .expect("get")
                .expect("present");
            let p: Product = serde_json::from_slice(&v).expect("decode");
            black_box(p)
        })
    });
    let mut j = n;
    g.bench_function("harper put (replace, indexes, change log)", |b| {
        b.iter(|| {
            j += 1;
            let p = product(j % (2 * n));
            db.write(|tx| tx.put(&p)).expect("put");
        })
    });
    g.bench_function("raw fjall insert of the JSON", |b| {
        b.iter(|| {
            j += 1;
            let p = product(j % (2 * n));
            raw.records
                .insert(p.id.as_bytes(), serde_json::to_vec(&p).expect("json"))
                .expect("insert");
        })
    });
    g.finish();
}

fn query_ops_at(c: &mut Criterion, n: usize) {
    let db = Database::temporary().expect("db");
    load(&db, n);
    let raw = raw(n);
    let label = format!("{}k", n / 1000);
    let mut g = c.benchmark_group("query");
    let eq = Query::new().filter(attr("categoryId").eq("c042")).limit(20);
    g.bench_with_input(
        BenchmarkId::new("harper indexed eq, 20 rows", &label),
        &eq,
        |b, q| {
            b.iter(|| {
                black_box(
                    db.read(|tx| tx.query_stored(Product::DEF, q))
                        .expect("query"),
                )
            })
        },
    );
    g.bench_function(
        BenchmarkId::new("raw fjall prefix scan + 20 gets", &label),
        |b| {
            b.iter(|| {
                let snap = raw._db.snapshot();
                let mut out = Vec::with_capacity(20);
                for g in snap.prefix(&raw.by_category, b"c042\0").take(20) {
                    let k = g.key().expect("key");
                    let pk = &k[5..];
                    out.push(snap.get(&raw.records, pk).expect("get"));
                }
                black_box(out)
            })
        },
    );
    let range = Query::new()
        .filter(attr("price").gt(500.0))
        .sort_by("price")
        .limit(20);
    g.bench_with_input(
        BenchmarkId::new("harper range + sort + limit 20", &label),
        &range,
        |b, q| {
            b.iter(|| {
                black_box(
                    db.read(|tx| tx.query_stored(Product::DEF, q))
                        .expect("query"),
                )
            })
        },
    );
    g.bench_function(
        BenchmarkId::new("raw fjall range scan + 20 gets", &label),
        |b| {
            let start = (500.0f64.to_bits() | (1 << 63)).to_be_bytes().to_vec();
            b.iter(|| {
                let snap = raw._db.snapshot();
                let mut out = Vec::with_capacity(20);
                for g in snap.range(&raw.by_price, start.clone()..).skip(1).take(20) {
                    let k = g.key().expect("key");
                    out.push(snap.get(&raw.records, &k[8..]).expect("get"));
                }
                black_box(out)
            })
        },
    );
    g.finish();
}

fn query_ops(c: &mut Criterion) {
    query_ops_at(c, 100_000);
    if std::env::var_os("HARPER_BENCH_1M").is_some() {
        query_ops_at(c, 1_000_000);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = point_ops, query_ops
}
criterion_main!(benches);
