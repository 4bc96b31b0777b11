//! Property: a client that applies a filtered subscription's messages to a map (put: insert,
//! delete / unmatched: remove, resync: clear) always ends up holding exactly the query's
//! answer, whatever the writes, however small its queue (forcing catch-ups from the change
//! log), across reconnects with `since`, and with a retention short enough to force resyncs.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use harper::prelude::*;
use harper::realtime::{Subscription, Target};
use proptest::prelude::*;
use serde_json::Value;

#[derive(Debug, Clone)]
enum Op {
    Put {
        id: u8,
        toys: bool,
        stock: i32,
    },
    Delete {
        id: u8,
    },
    /// Two products in one transaction.
    Pair {
        a: u8,
        b: u8,
        stock: i32,
    },
    /// Drop the subscription and come back with `since` = the last resume point.
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, any::<bool>(), 0i32..3).prop_map(|(id, toys, stock)| Op::Put { id, toys, stock }),
        2 => (0u8..8).prop_map(|id| Op::Delete { id }),
        1 => (0u8..8, 0u8..8, 0i32..3).prop_map(|(a, b, stock)| Op::Pair { a, b, stock }),
        1 => Just(Op::Reconnect),
    ]
}

const FILTER: &str = "categoryId=toys&inStock=true";

fn filter() -> Option<harper::query::Filter> {
    harper::query::parse_query(FILTER, &|_| true)
        .unwrap()
        .filter
}

struct Client {
    held: BTreeMap<String, Value>,
    resume: Option<u64>,
}

impl Client {
    fn apply(&mut self, data: &[u8], seq: u64, resume_point: bool) {
        let m: Value = serde_json::from_slice(data).unwrap();
        let id = m["id"].as_str().map(str::to_owned);
        match m["type"].as_str().unwrap() {
            "put" => {
                self.held.insert(id.unwrap(), m["value"].clone());
            }
            "delete" | "unmatched" => {
                self.held.remove(&id.unwrap());
            }
            "resync" => self.held.clear(),
            other => panic!("unknown message type {other}"),
        }
        if resume_point {
            self.resume = Some(seq);
        }
    }

    /// Applies messages until the marker write (which matches the filter) arrives.
    async fn sync(&mut self, sub: &mut Subscription, marker: &str) {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), sub.next())
                .await
                .expect("messages keep coming")
                .unwrap();
            self.apply(&m.data, m.seq, m.resume_point);
            let v: Value = serde_json::from_slice(&m.data).unwrap();
            if v["id"] == marker && v["value"]["name"] == marker {
                return;
            }
        }
    }
}

fn run(ops: Vec<Op>, queue: usize, retention: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path())
            .change_log_retention(retention)
            .open()
            .unwrap();
        db.register::<Product>().unwrap();
        let def = <Product as harper::Table>::DEF;
        let subscribe = |since| {
            db.subscribe_with(def, Target::Collection(filter()), since, queue)
                .unwrap()
        };
        let mut client = Client {
            held: BTreeMap::new(),
            resume: None,
        };
        let mut sub = subscribe(None);
        let put = |db: &Database, id: u8, toys: bool, stock: i32| {
            let cat = if toys { "toys" } else { "books" };
            db.write(|tx| tx.put(&product(&format!("p{id}"), cat, 1.0 + stock as f64, stock)))
                .unwrap();
        };
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put { id, toys, stock } => put(&db, id, toys, stock),
                Op::Delete { id } => {
                    db.write(|tx| tx.delete::<Product>(format!("p{id}")))
                        .unwrap();
                }
                Op::Pair { a, b, stock } => {
                    db.write(|tx| {
                        tx.put(&product(&format!("p{a}"), "toys", 2.0, stock))?;
                        tx.put(&product(&format!("p{b}"), "toys", 3.0, stock + 1))
                    })
                    .unwrap();
                }
                Op::Reconnect => {
                    // Catch up to a known point first, then leave and come back.
                    let marker = format!("m{step}");
                    let mut p = product(&marker, "toys", 1.0, 1);
                    p.name = marker.clone();
                    db.write(|tx| tx.put(&p)).unwrap();
                    client.sync(&mut sub, &marker).await;
                    drop(sub);
                    // Written while away.
                    put(&db, 7, true, 2);
                    sub = match client.resume {
                        Some(seq) => subscribe(Some(seq)),
                        None => {
                            client.held.clear();
                            subscribe(None)
                        }
                    };
                }
            }
        }
        let mut p = product("zz-end", "toys", 1.0, 1);
        p.name = "zz-end".into();
        db.write(|tx| tx.put(&p)).unwrap();
        client.sync(&mut sub, "zz-end").await;

        let query = harper::query::parse_query(FILTER, &|_| true).unwrap();
        let expected: BTreeMap<String, Value> = db
            .read(|tx| tx.query_json(def, &query))
            .unwrap()
            .into_iter()
            .map(|v| (v["id"].as_str().unwrap().to_owned(), v))
            .collect();
        assert_eq!(client.held, expected);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_filtered_subscription_mirrors_the_query(
        ops in prop::collection::vec(op(), 1..40),
        queue in 1usize..4,
        retention in prop_oneof![Just(3u64), Just(1000u64)],
    ) {
        run(ops, queue, retention);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_encoded_once_for_all_subscribers() {
    let db = Database::temporary().unwrap();
    small_catalog(&db);
    let def = <Product as harper::Table>::DEF;
    let mut a = db
        .subscribe_to(def, Target::Record("p01".into()), None)
        .unwrap();
    let mut b = db
        .subscribe_to(def, Target::Collection(None), None)
        .unwrap();
    // The current state first (encoded per subscription), then live events.
    a.next().await.unwrap();
    for _ in 0..30 {
        b.next().await.unwrap();
    }
    db.write(|tx| tx.put(&product("p01", "toys", 2.0, 1)))
        .unwrap();
    let (ma, mb) = (a.next().await.unwrap(), b.next().await.unwrap());
    assert_eq!(ma.data, mb.data);
    assert_eq!(ma.data.as_ptr(), mb.data.as_ptr(), "one shared buffer");
}

#[test]
fn retention_applies_to_an_existing_log_when_reopened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        for i in 0..20 {
            db.write(|tx| tx.put(&product(&format!("p{i}"), "toys", 1.0, 1)))
                .unwrap();
        }
        assert_eq!(db.oldest_seq(), 1);
    }
    let db = Database::builder(dir.path())
        .change_log_retention(4)
        .open()
        .unwrap();
    assert_eq!(db.last_seq(), 20);
    assert_eq!(db.oldest_seq(), 17);
    let kept: Vec<u64> = db.changes_since(0).map(|e| e.unwrap().0).collect();
    assert_eq!(kept, [17, 18, 19, 20]);
    db.write(|tx| tx.put(&product("x", "toys", 1.0, 1)))
        .unwrap();
    let kept: Vec<u64> = db.changes_since(0).map(|e| e.unwrap().0).collect();
    assert_eq!(kept, [18, 19, 20, 21]);
    assert_eq!(db.oldest_seq(), 18);
}

/// The bytes of the change-log entries kept, read back through the public API.
fn log_bytes(db: &Database) -> (Vec<u64>, usize) {
    let entries: Vec<(u64, Vec<u8>)> = db
        .changes_since(0)
        .map(|e| {
            let (seq, bytes) = e.unwrap();
            (seq, bytes.to_vec())
        })
        .collect();
    let bytes = entries.iter().map(|(_, b)| b.len()).sum();
    (entries.into_iter().map(|(s, _)| s).collect(), bytes)
}

/// A transaction of `rows` products with long descriptions: a large change-log entry.
fn import(db: &Database, batch: usize, rows: usize) {
    db.write(|tx| {
        for i in 0..rows {
            let mut p = product(&format!("b{batch}-{i}"), "toys", 1.0, 1);
            p.description = Some("x".repeat(1000));
            tx.put(&p)?;
        }
        Ok::<_, harper::Error>(())
    })
    .unwrap();
}

#[test]
fn the_change_log_keeps_the_newest_entries_within_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 50_000u64;
    {
        let db = Database::builder(dir.path())
            .change_log_bytes(budget)
            .open()
            .unwrap();
        // Each import entry is about 10 KB: the log keeps the last four or five.
        for b in 0..30 {
            import(&db, b, 10);
            let (seqs, bytes) = log_bytes(&db);
            assert!(
                bytes as u64 <= budget,
                "{bytes} bytes kept after import {b}"
            );
            // Contiguous, ending at the last commit, starting at oldest_seq.
            let expected: Vec<u64> = (db.oldest_seq()..=db.last_seq()).collect();
            assert_eq!(seqs, expected);
        }
        let (seqs, bytes) = log_bytes(&db);
        assert!(seqs.len() >= 4, "{} entries, {bytes} bytes", seqs.len());
        assert!(
            bytes as u64 > budget - 11_000,
            "the budget is used: {bytes}"
        );
        // Small commits (about 260 bytes each) are kept by the hundred within the same
        // budget, once the imports' entries have given way.
        let last_import = db.last_seq();
        for i in 0..200 {
            db.write(|tx| tx.put(&product(&format!("s{i}"), "toys", 1.0, 1)))
                .unwrap();
        }
        let (seqs, bytes) = log_bytes(&db);
        assert!(bytes as u64 <= budget, "{bytes}");
        assert!(
            seqs[0] > last_import && seqs.len() > 150,
            "{} entries",
            seqs.len()
        );
    }
    // Reopened with a smaller budget: the log is cut at open, from its stored sizes.
    let db = Database::builder(dir.path())
        .change_log_bytes(5_000)
        .open()
        .unwrap();
    let (seqs, bytes) = log_bytes(&db);
    assert!(bytes <= 5_000, "{bytes}");
    assert_eq!(*seqs.last().unwrap(), db.last_seq());
    assert_eq!(seqs[0], db.oldest_seq());
    assert!(seqs.len() > 10, "{}", seqs.len());
    // One entry over the whole budget is still kept: the log ends at the last commit.
    import(&db, 99, 10);
    let (seqs, _) = log_bytes(&db);
    assert_eq!(seqs, [db.last_seq()]);
    assert_eq!(db.oldest_seq(), db.last_seq());
}
