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
