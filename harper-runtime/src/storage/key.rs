//! Order-preserving key encoding.
//!
//! Invariant: for two atoms `a`, `b` of the same field type, `encode(a) < encode(b)` (bytewise)
//! exactly when `a < b` in value order, and every encoding is self-delimiting, so a composite
//! key `encode(value) ++ encode(pk)` sorts by value, then by primary key, and can be split back.
//!
//! Layout: one tag byte, then the payload.
//! - null: tag only. Sorts before every other atom (ascending sorts put missing values first).
//! - booleans: tag only (false < true).
//! - integers: i64 big-endian with the sign bit flipped; u64 values above i64::MAX use a
//!   higher tag with plain big-endian, so the whole u64 range stays ordered after i64.
//! - floats: the IEEE total-order transform. -0.0 is stored as 0.0 (they are equal values);
//!   every NaN is stored as one canonical NaN that sorts after +inf.
//! - strings: UTF-8 bytes (code point order) with 0x00 escaped as 0x00 0xFF, terminated by
//!   0x00. Every tag is below 0xFF, so a terminator followed by the next component's tag
//!   sorts before an escaped 0x00 of a longer string.
//!
//! Consequence used by range scans: all keys of a value `v` (followed by any primary key)
//! lie in `[encode(v), encode(v) ++ [0xFF])`.

use std::cmp::Ordering;

const TAG_NULL: u8 = 0x05;
const TAG_FALSE: u8 = 0x10;
const TAG_TRUE: u8 = 0x11;
const TAG_INT: u8 = 0x20;
const TAG_BIG_UINT: u8 = 0x21;
const TAG_FLOAT: u8 = 0x30;
const TAG_STR: u8 = 0x40;

/// Byte that no encoding starts a component with; `encode(v) ++ [VALUE_END]` bounds `v`'s keys.
pub const VALUE_END: u8 = 0xFF;

/// An indexable value: what index keys and primary keys are made of.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    Null,
    Bool(bool),
    Int(i64),
    /// An unsigned integer above `i64::MAX` (smaller ones are always `Int`).
    BigUint(u64),
    Float(f64),
    Str(String),
}

/// The kind of an atom; a field's index holds one kind plus nulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomKind {
    Bool,
    Int,
    Float,
    Str,
}

impl Atom {
    /// An integer from u64, normalised so equal values have one representation.
    pub fn from_u64(v: u64) -> Atom {
        match i64::try_from(v) {
            Ok(i) => Atom::Int(i),
            Err(_) => Atom::BigUint(v),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Atom::Null)
    }

    /// Value order within one kind; null first. Matches the order of the encodings.
    pub fn cmp_value(&self, other: &Atom) -> Ordering {
        use Atom::*;
        fn rank(a: &Atom) -> u8 {
            match a {
                Null => 0,
                Bool(_) => 1,
                Int(_) | BigUint(_) => 2,
                Float(_) => 3,
                Str(_) => 4,
            }
        }
        match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (BigUint(a), BigUint(b)) => a.cmp(b),
            (Int(_), BigUint(_)) => Ordering::Less,
            (BigUint(_), Int(_)) => Ordering::Greater,
            (Float(a), Float(b)) => float_bits(*a).cmp(&float_bits(*b)),
            (Str(a), Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }

    /// The JSON form of this atom.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Atom::Null => serde_json::Value::Null,
            Atom::Bool(b) => (*b).into(),
            Atom::Int(i) => (*i).into(),
            Atom::BigUint(u) => (*u).into(),
            Atom::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Atom::Str(s) => s.clone().into(),
        }
    }
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Atom::Null => f.write_str("null"),
            Atom::Bool(b) => write!(f, "{b}"),
            Atom::Int(i) => write!(f, "{i}"),
            Atom::BigUint(u) => write!(f, "{u}"),
            Atom::Float(x) => write!(f, "{x}"),
            Atom::Str(s) => f.write_str(s),
        }
    }
}

fn float_bits(x: f64) -> u64 {
    let x = if x == 0.0 {
        0.0 // folds -0.0 into 0.0
    } else if x.is_nan() {
        f64::NAN
    } else {
        x
    };
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn float_from_bits(enc: u64) -> f64 {
    let bits = if enc >> 63 == 1 {
        enc & !(1 << 63)
    } else {
        !enc
    };
    f64::from_bits(bits)
}

/// Appends the encoding of `atom` to `out`.
pub fn encode(atom: &Atom, out: &mut Vec<u8>) {
    match atom {
        Atom::Null => out.push(TAG_NULL),
        Atom::Bool(false) => out.push(TAG_FALSE),
        Atom::Bool(true) => out.push(TAG_TRUE),
        Atom::Int(i) => {
            out.push(TAG_INT);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Atom::BigUint(u) => {
            out.push(TAG_BIG_UINT);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Atom::Float(x) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&float_bits(*x).to_be_bytes());
        }
        Atom::Str(s) => {
            out.push(TAG_STR);
            escape_str(s, out);
            out.push(0x00);
        }
    }
}

fn escape_str(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0x00 {
            out.push(0xFF);
        }
    }
}

/// The encoding of one atom as a fresh buffer.
pub fn encode_one(atom: &Atom) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode(atom, &mut out);
    out
}

/// Encoded prefix shared by every string that starts with `prefix` (for starts-with scans).
pub fn string_prefix(prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 1);
    out.push(TAG_STR);
    escape_str(prefix, &mut out);
    out
}

/// `[start, end)` of the encodings of every non-null atom of `kind`.
pub fn kind_range(kind: AtomKind) -> (Vec<u8>, Vec<u8>) {
    let (lo, hi) = match kind {
        AtomKind::Bool => (TAG_FALSE, TAG_TRUE + 1),
        AtomKind::Int => (TAG_INT, TAG_BIG_UINT + 1),
        AtomKind::Float => (TAG_FLOAT, TAG_FLOAT + 1),
        AtomKind::Str => (TAG_STR, TAG_STR + 1),
    };
    (vec![lo], vec![hi])
}

/// Why a key could not be decoded (only ever from damaged data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError;

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed key encoding")
    }
}

/// Decodes the first atom of `bytes`; returns it and the number of bytes it used.
pub fn decode(bytes: &[u8]) -> Result<(Atom, usize), DecodeError> {
    let (&tag, rest) = bytes.split_first().ok_or(DecodeError)?;
    let fixed = |rest: &[u8]| -> Result<u64, DecodeError> {
        let arr: [u8; 8] = rest
            .get(..8)
            .ok_or(DecodeError)?
            .try_into()
            .map_err(|_| DecodeError)?;
        Ok(u64::from_be_bytes(arr))
    };
    match tag {
        TAG_NULL => Ok((Atom::Null, 1)),
        TAG_FALSE => Ok((Atom::Bool(false), 1)),
        TAG_TRUE => Ok((Atom::Bool(true), 1)),
        TAG_INT => Ok((Atom::Int((fixed(rest)? ^ (1 << 63)) as i64), 9)),
        TAG_BIG_UINT => Ok((Atom::BigUint(fixed(rest)?), 9)),
        TAG_FLOAT => Ok((Atom::Float(float_from_bits(fixed(rest)?)), 9)),
        TAG_STR => {
            let mut s = Vec::new();
            let mut i = 0;
            loop {
                let b = *rest.get(i).ok_or(DecodeError)?;
                if b == 0x00 {
                    if rest.get(i + 1) == Some(&0xFF) {
                        s.push(0x00);
                        i += 2;
                        continue;
                    }
                    let s = String::from_utf8(s).map_err(|_| DecodeError)?;
                    return Ok((Atom::Str(s), i + 2));
                }
                s.push(b);
                i += 1;
            }
        }
        _ => Err(DecodeError),
    }
}

/// Length of the first encoded atom in `bytes` (to split `value ++ pk` index keys).
pub fn component_len(bytes: &[u8]) -> Result<usize, DecodeError> {
    let (&tag, rest) = bytes.split_first().ok_or(DecodeError)?;
    match tag {
        TAG_NULL | TAG_FALSE | TAG_TRUE => Ok(1),
        TAG_INT | TAG_BIG_UINT | TAG_FLOAT if rest.len() >= 8 => Ok(9),
        TAG_STR => {
            let mut i = 0;
            while i < rest.len() {
                if rest[i] == 0x00 {
                    if rest.get(i + 1) == Some(&0xFF) {
                        i += 2;
                        continue;
                    }
                    return Ok(i + 2);
                }
                i += 1;
            }
            Err(DecodeError)
        }
        _ => Err(DecodeError),
    }
}

/// `encode(v) ++ [VALUE_END]`: the exclusive upper bound of every key whose value is `v`.
pub fn after_value(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + 1);
    out.extend_from_slice(encoded);
    out.push(VALUE_END);
    out
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// when there is none (the prefix is all 0xFF).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(a: &Atom) -> Vec<u8> {
        encode_one(a)
    }

    #[test]
    fn integers_keep_order_at_the_extremes() {
        let values = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        for w in values.windows(2) {
            assert!(enc(&Atom::Int(w[0])) < enc(&Atom::Int(w[1])), "{w:?}");
        }
        assert!(enc(&Atom::Int(i64::MAX)) < enc(&Atom::from_u64(i64::MAX as u64 + 1)));
        assert!(enc(&Atom::from_u64(u64::MAX - 1)) < enc(&Atom::from_u64(u64::MAX)));
        assert_eq!(Atom::from_u64(5), Atom::Int(5));
    }

    #[test]
    fn floats_order_negative_zero_and_nan_deliberately() {
        let values = [
            f64::NEG_INFINITY,
            f64::MIN,
            -1.5,
            -f64::MIN_POSITIVE,
            0.0,
            f64::MIN_POSITIVE,
            1.5,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ];
        for w in values.windows(2) {
            assert!(enc(&Atom::Float(w[0])) < enc(&Atom::Float(w[1])), "{w:?}");
        }
        // -0.0 equals 0.0, and every NaN is one value.
        assert_eq!(enc(&Atom::Float(-0.0)), enc(&Atom::Float(0.0)));
        assert_eq!(
            enc(&Atom::Float(f64::NAN)),
            enc(&Atom::Float(-f64::NAN)),
            "negative NaN folds into the canonical NaN"
        );
        let (back, _) = decode(&enc(&Atom::Float(-0.0))).unwrap();
        assert_eq!(back, Atom::Float(0.0));
    }

    #[test]
    fn strings_with_nul_bytes_and_prefixes_keep_order() {
        let values = [
            "",
            "\0",
            "\0\0",
            "a",
            "a\0",
            "a\0b",
            "a\u{1}",
            "ab",
            "é",
            "日本",
            "\u{10FFFF}",
        ];
        for w in values.windows(2) {
            assert!(w[0] < w[1]);
            assert!(
                enc(&Atom::Str(w[0].into())) < enc(&Atom::Str(w[1].into())),
                "{w:?}"
            );
        }
    }

    #[test]
    fn composite_keys_sort_by_value_then_key_and_split_back() {
        let mut a = enc(&Atom::Str("a".into()));
        a.extend(enc(&Atom::Str("zzz".into())));
        let mut b = enc(&Atom::Str("a\0".into()));
        b.extend(enc(&Atom::Str("aaa".into())));
        assert!(a < b, "value order wins over primary key order");
        assert!(a < after_value(&enc(&Atom::Str("a".into()))));
        assert!(b > after_value(&enc(&Atom::Str("a".into()))));
        let n = component_len(&b).unwrap();
        assert_eq!(decode(&b[n..]).unwrap().0, Atom::Str("aaa".into()));
    }

    #[test]
    fn null_sorts_first_and_kinds_do_not_overlap() {
        let null = enc(&Atom::Null);
        for a in [
            Atom::Bool(false),
            Atom::Int(i64::MIN),
            Atom::Float(f64::NEG_INFINITY),
            Atom::Str(String::new()),
        ] {
            assert!(null < enc(&a));
        }
        let (lo, hi) = kind_range(AtomKind::Int);
        assert!(lo <= enc(&Atom::Int(i64::MIN)) && enc(&Atom::from_u64(u64::MAX)) < hi);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0x77]).is_err());
        assert!(decode(&[TAG_INT, 1, 2]).is_err());
        assert!(decode(&[TAG_STR, b'a']).is_err());
        assert!(decode(&[TAG_STR, 0xC3, 0x00]).is_err(), "invalid UTF-8");
    }

    #[test]
    fn prefix_successor_carries() {
        assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(-0.0),
            Just(0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            -1e6..1e6f64,
        ]
    }

    fn atom() -> impl Strategy<Value = Atom> {
        prop_oneof![
            Just(Atom::Null),
            any::<bool>().prop_map(Atom::Bool),
            any::<i64>().prop_map(Atom::Int),
            any::<u64>().prop_map(Atom::from_u64),
            float().prop_map(Atom::Float),
            "[\\x00ab]{0,4}".prop_map(Atom::Str),
        ]
    }

    fn total_cmp_canonical(a: f64, b: f64) -> Ordering {
        let canon = |x: f64| {
            if x == 0.0 {
                0.0
            } else if x.is_nan() {
                f64::NAN
            } else {
                x
            }
        };
        canon(a).total_cmp(&canon(b))
    }

    proptest! {
        #[test]
        fn cmp_value_agrees_with_encoding(a in atom(), b in atom()) {
            prop_assert_eq!(a.cmp_value(&b), enc(&a).cmp(&enc(&b)));
        }

        #[test]
        fn int_order_matches(a: i64, b: i64) {
            prop_assert_eq!(enc(&Atom::Int(a)).cmp(&enc(&Atom::Int(b))), a.cmp(&b));
        }

        #[test]
        fn uint_order_matches(a: u64, b: u64) {
            prop_assert_eq!(enc(&Atom::from_u64(a)).cmp(&enc(&Atom::from_u64(b))), a.cmp(&b));
        }

        #[test]
        fn float_order_matches(a in float(), b in float()) {
            prop_assert_eq!(enc(&Atom::Float(a)).cmp(&enc(&Atom::Float(b))), total_cmp_canonical(a, b));
        }

        #[test]
        fn string_order_matches(a in "\\PC*|[\\x00-\\x02a]{0,6}", b in "\\PC*|[\\x00-\\x02a]{0,6}") {
            prop_assert_eq!(enc(&Atom::Str(a.clone())).cmp(&enc(&Atom::Str(b.clone()))), a.cmp(&b));
        }

        #[test]
        fn composite_order_is_lexicographic(a in "[\\x00ab]{0,4}", x: i64, b in "[\\x00ab]{0,4}", y: i64) {
            let key = |s: &str, n: i64| { let mut k = enc(&Atom::Str(s.into())); k.extend(enc(&Atom::Int(n))); k };
            prop_assert_eq!(key(&a, x).cmp(&key(&b, y)), (a.as_str(), x).cmp(&(b.as_str(), y)));
        }

        #[test]
        fn starts_with_prefix_matches(s in "[\\x00ab]{0,5}", p in "[\\x00ab]{0,3}") {
            let k = enc(&Atom::Str(s.clone()));
            prop_assert_eq!(k.starts_with(&string_prefix(&p)), s.starts_with(&p));
        }

        #[test]
        fn round_trip(s in "\\PC*", i: i64, u: u64, f in float(), b: bool) {
            for atom in [Atom::Str(s.clone()), Atom::Int(i), Atom::from_u64(u), Atom::Bool(b), Atom::Null] {
                let mut bytes = enc(&atom);
                let len = bytes.len();
                bytes.extend_from_slice(&[TAG_INT, 9, 9]);
                prop_assert_eq!(decode(&bytes).unwrap(), (atom, len));
                prop_assert_eq!(component_len(&bytes).unwrap(), len);
            }
            let (back, _) = decode(&enc(&Atom::Float(f))).unwrap();
            prop_assert_eq!(total_cmp_canonical(match back { Atom::Float(x) => x, _ => unreachable!() }, f), Ordering::Equal);
        }
    }
}
