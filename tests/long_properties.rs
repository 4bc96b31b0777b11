//! Properties of the query parser and the key encoding over inputs larger and wilder than
//! the unit tests' (`query/parse.rs`, `storage/key.rs`): query strings up to and past the
//! length limit, deep nesting, control characters and NUL bytes; lists of atoms of every
//! kind encoded as composite keys; arbitrary bytes given to the decoder.
//!
//! Each property runs twice: a few cases in every `cargo test`, and as an `#[ignore]`d long
//! variant whose case count comes from `PROPTEST_CASES`:
//!
//! ```sh
//! PROPTEST_CASES=2000000 cargo test --release --test long_properties -- --ignored --nocapture
//! ```

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use harper::query::parse_query;
use harper::storage::key::{self, Atom};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The parser's limit on a query string's length (`query/parse.rs`).
const MAX_QUERY_LEN: usize = 64 * 1024;

/// Cases per property in an ordinary `cargo test`.
const QUICK_CASES: u32 = 64;

fn quick() -> Config {
    Config {
        cases: QUICK_CASES,
        failure_persistence: None,
        ..Config::default()
    }
}

/// `Config::default()` reads `PROPTEST_CASES` from the environment.
fn long() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

fn run<S: Strategy>(
    name: &str,
    config: Config,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let executed = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        executed.fetch_add(1, AtomicOrdering::Relaxed);
        test(value)
    });
    eprintln!(
        "{name}: {} executions (including shrinking)",
        executed.load(AtomicOrdering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

// ---- the query parser ------------------------------------------------------------------

/// Query strings: arbitrary text (control characters and NUL included), structural soup,
/// token soup, deep nesting, and lengths around the limit (with multi-byte characters
/// straddling it).
fn query_text() -> impl Strategy<Value = String> {
    let tokens = prop::collection::vec(
        prop::sample::select(vec![
            "a", "price", "name", "limit", "sort", "select", "offset", "=", "==", "!=", "=gt=",
            "=lt=", "=xx=", "gt=", "&", "|", "(", ")", "[", "]", "{", "}", ",", "-", "+", "*", "%",
            "%2", "%00", "%FF", "%C3", "%E2%82", "null", "5", "1e999", ".", "é", "€", "?", "\u{0}",
            " ", "limit(", "sort(", "select(", "([", "])",
        ]),
        0..400,
    )
    .prop_map(|t| t.concat());
    let nested = (
        0usize..20_000,
        prop::sample::select(vec!["(", "[", "select(", "a{"]),
    )
        .prop_map(|(n, open)| {
            let close = if open == "[" { "]" } else { ")" };
            format!("{}a=1{}", open.repeat(n), close.repeat(n))
        });
    let around_limit = (
        prop::sample::select(vec!["a", "é", "€", "𝄞", "a=1&", "(", "%E2"]),
        MAX_QUERY_LEN - 8..MAX_QUERY_LEN + 8,
    )
        .prop_map(|(unit, bytes)| {
            let mut s = unit.repeat(bytes / unit.len() + 1);
            let mut cut = bytes.min(s.len());
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s
        });
    prop_oneof![
        4 => "\\PC{0,2000}",
        4 => ".{0,300}",
        2 => "[\\x00-\\x7f]{0,500}",
        4 => "[a-z()\\[\\]{}=&|!,%+*.0-9A-F?é€ \\x00-]{0,1000}",
        4 => tokens,
        1 => nested,
        1 => around_limit,
    ]
}

fn parse_never_panics(raw: String) -> Result<(), TestCaseError> {
    let all = |_: &str| true;
    let none = |_: &str| false;
    let some = |n: &str| matches!(n, "a" | "price" | "name");
    let checks: [&dyn Fn(&str) -> bool; 3] = [&all, &none, &some];
    for is_attribute in checks {
        if let Err(e) = parse_query(&raw, is_attribute) {
            prop_assert!(
                e.position <= raw.len(),
                "position {} beyond the input ({} bytes): {}",
                e.position,
                raw.len(),
                e
            );
            prop_assert!(
                raw.is_char_boundary(e.position),
                "position {} is inside a character of the input: {}",
                e.position,
                e
            );
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

#[test]
fn query_parser_never_panics() {
    run("query_parser", quick(), query_text(), parse_never_panics);
}

#[test]
#[ignore = "long: PROPTEST_CASES=... cargo test --release --test long_properties -- --ignored"]
fn query_parser_never_panics_long() {
    run(
        "query_parser (long)",
        long(),
        query_text(),
        parse_never_panics,
    );
}

#[test]
fn an_overlong_query_error_points_at_a_character_boundary() {
    // 3-byte characters: byte MAX_QUERY_LEN falls inside one.
    let raw = "€".repeat(MAX_QUERY_LEN / 3 + 2);
    assert!(!raw.is_char_boundary(MAX_QUERY_LEN));
    let e = parse_query(&raw, &|_| true).unwrap_err();
    assert!(raw.is_char_boundary(e.position), "{e}");
    assert!(e.position <= MAX_QUERY_LEN, "{e}");
}

// ---- key encoding ----------------------------------------------------------------------

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(-0.0),
        Just(0.0),
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(-f64::MIN_POSITIVE),
        Just(f64::from_bits(1)),
        -1e3..1e3f64,
    ]
}

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        1 => Just(Atom::Null),
        1 => any::<bool>().prop_map(Atom::Bool),
        2 => any::<i64>().prop_map(Atom::Int),
        1 => prop_oneof![Just(i64::MIN), Just(-1i64), Just(0), Just(1), Just(i64::MAX)].prop_map(Atom::Int),
        2 => any::<u64>().prop_map(Atom::from_u64),
        1 => prop_oneof![Just(i64::MAX as u64 + 1), Just(u64::MAX)].prop_map(Atom::from_u64),
        2 => float().prop_map(Atom::Float),
        3 => "\\PC{0,12}".prop_map(Atom::Str),
        3 => "[\\x00\\x01\\xff\u{ff}ab]{0,6}".prop_map(Atom::Str),
        1 => ".{0,40}".prop_map(Atom::Str),
    ]
}

/// The atom a decoder gives back: -0.0 becomes 0.0 and every NaN one canonical NaN.
fn canonical(a: &Atom) -> Atom {
    match a {
        Atom::Float(x) if *x == 0.0 => Atom::Float(0.0),
        Atom::Float(x) if x.is_nan() => Atom::Float(f64::NAN),
        other => other.clone(),
    }
}

fn same(a: &Atom, b: &Atom) -> bool {
    match (a, b) {
        (Atom::Float(x), Atom::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn encode_list(atoms: &[Atom]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in atoms {
        key::encode(a, &mut out);
    }
    out
}

/// Lexicographic value order of two atom lists (a proper prefix first).
fn cmp_lists(a: &[Atom], b: &[Atom]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.cmp_value(y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

fn atom_lists() -> impl Strategy<Value = (Vec<Atom>, Vec<Atom>)> {
    prop_oneof![
        (
            prop::collection::vec(atom(), 0..6),
            prop::collection::vec(atom(), 0..6)
        ),
        // Lists sharing a prefix, so the order is decided deep inside.
        (
            prop::collection::vec(atom(), 0..4),
            prop::collection::vec(atom(), 0..3),
            prop::collection::vec(atom(), 0..3)
        )
            .prop_map(|(common, x, y)| {
                let mut a = common.clone();
                a.extend(x);
                let mut b = common;
                b.extend(y);
                (a, b)
            }),
    ]
}

fn keys_round_trip_and_keep_order((a, b): (Vec<Atom>, Vec<Atom>)) -> Result<(), TestCaseError> {
    for list in [&a, &b] {
        let bytes = encode_list(list);
        let mut at = 0;
        for expected in list.iter() {
            let len = key::component_len(&bytes[at..])
                .map_err(|e| TestCaseError::fail(format!("component_len at {at}: {e}")))?;
            let (back, used) = key::decode(&bytes[at..])
                .map_err(|e| TestCaseError::fail(format!("decode at {at}: {e}")))?;
            prop_assert_eq!(used, len);
            prop_assert!(
                same(&back, &canonical(expected)),
                "{:?} decoded as {:?}",
                expected,
                back
            );
            prop_assert_eq!(key::encode_one(&back), bytes[at..at + used].to_vec());
            at += used;
        }
        prop_assert_eq!(at, bytes.len());
    }
    let (ka, kb) = (encode_list(&a), encode_list(&b));
    prop_assert_eq!(
        ka.cmp(&kb),
        cmp_lists(&a, &b),
        "keys of {:?} and {:?}",
        a,
        b
    );
    Ok(())
}

#[test]
fn key_lists_round_trip_and_keep_order() {
    run(
        "key_lists",
        quick(),
        atom_lists(),
        keys_round_trip_and_keep_order,
    );
}

#[test]
#[ignore = "long: PROPTEST_CASES=... cargo test --release --test long_properties -- --ignored"]
fn key_lists_round_trip_and_keep_order_long() {
    run(
        "key_lists (long)",
        long(),
        atom_lists(),
        keys_round_trip_and_keep_order,
    );
}

/// Arbitrary bytes (and corrupted real keys): the decoder answers, never panics, and
/// whatever it accepts is a whole component it can re-encode.
fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (
            prop::collection::vec(atom(), 1..4),
            any::<prop::sample::Index>(),
            any::<u8>()
        )
            .prop_map(|(atoms, at, byte)| {
                let mut bytes = encode_list(&atoms);
                let i = at.index(bytes.len());
                bytes[i] = byte;
                bytes
            }),
        (
            prop::collection::vec(atom(), 1..4),
            any::<prop::sample::Index>()
        )
            .prop_map(|(atoms, at)| {
                let mut bytes = encode_list(&atoms);
                bytes.truncate(at.index(bytes.len()));
                bytes
            }),
    ]
}

fn decoding_garbage_is_safe(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let decoded = key::decode(&bytes);
    let len = key::component_len(&bytes);
    if let Ok((atom, used)) = decoded {
        prop_assert!(used >= 1 && used <= bytes.len());
        prop_assert_eq!(len.ok(), Some(used));
        // Decoding what it re-encodes gives the same atom back.
        let again = key::encode_one(&atom);
        let (back, n) = key::decode(&again)
            .map_err(|e| TestCaseError::fail(format!("re-encoded {atom:?}: {e}")))?;
        prop_assert_eq!(n, again.len());
        prop_assert!(same(&back, &canonical(&atom)), "{:?} vs {:?}", atom, back);
    }
    Ok(())
}

#[test]
fn decoding_garbage_never_panics() {
    run("key_decode", quick(), key_bytes(), decoding_garbage_is_safe);
}

#[test]
#[ignore = "long: PROPTEST_CASES=... cargo test --release --test long_properties -- --ignored"]
fn decoding_garbage_never_panics_long() {
    run(
        "key_decode (long)",
        long(),
        key_bytes(),
        decoding_garbage_is_safe,
    );
}
