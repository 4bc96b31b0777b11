//! Planning and running queries.
//!
//! 1. Compile: resolve attribute names against the table, coerce every value to its
//!    attribute's type, and turn conditions through relationships into key sets (by running
//!    the related table's part of the query first).
//! 2. Plan: pick the access path. Conditions on indexed attributes (or the primary key) of the
//!    top-level conjunction are candidates; each is costed by counting its index range up to
//!    a cap, and the cheapest wins. A sort whose first key is indexed is served by scanning
//!    that index in order, unless a candidate is small enough to sort in memory. A
//!    disjunction whose branches all have candidates is a union of index scans.
//! 3. Run: scan, fetch records, check the whole filter on each (index ranges only narrow the
//!    search; the filter is the truth), stop as soon as `offset + limit` rows are known.

use std::cell::Cell;
use std::collections::HashSet;
use std::ops::Bound;

use fjall::Slice;
use serde_json::{Map, Value};
use smallvec::SmallVec;

use super::model::{Condition, Filter, Op, Operand, Query, Select, SelectItem, SelectShape, Sort};
use crate::error::{Error, Result};
use crate::record::{FieldKeys, Record, field_atom, value_atoms};
use crate::schema::{FieldDef, RelationshipDef, RelationshipKind, Scalar, TableDef};
use crate::storage::key::{self, Atom, AtomKind};
use crate::storage::source::{KeyRange, Ks, Source};
use crate::storage::{Reader, StoredRecord, TableStore};

/// Below this many index entries a candidate counts as small: it is exact and cheap.
const PROBE: usize = 256;
/// The probe of a query that streams to a limit (no sort): costing is pure overhead there.
const EARLY_STOP_PROBE: usize = 32;
/// A sorted query sorts in memory when its best candidate has fewer matches than this;
/// otherwise it scans the sort index in order.
const SORT_IN_MEMORY_BELOW: usize = 4096;
/// An ordered scan of the sort index whose filter has a larger indexed candidate first
/// collects that candidate's record keys (index entries only, no records) when they are at
/// most this many, and fetches only the records among them.
const SEMI_JOIN_MAX: usize = 262_144;

/// What a query read, for tests, benches and `explain`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Index entries read (including those read to cost candidates).
    pub index_entries_read: u64,
    /// Records read.
    pub records_read: u64,
    /// The chosen access path, e.g. `index Product#categoryId` or `scan Product`.
    pub plan: String,
}

/// A compiled filter: attributes resolved to field positions, values typed.
#[derive(Debug, Clone)]
enum CFilter {
    True,
    False,
    Cond(CCond),
    And(Vec<CFilter>),
    Or(Vec<CFilter>),
}

#[derive(Debug, Clone)]
struct CCond {
    field: usize,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    /// Eq/Ne/Lt/Le/Gt/Ge against a non-null atom.
    Cmp(Op, Atom),
    /// StartsWith/Contains/EndsWith on strings.
    Text(Op, String),
    /// Some value is in the (sorted, distinct) set.
    In(Vec<Atom>),
    /// Absent or null (`false`: present and not null).
    Null(bool),
}

fn unknown(def: &TableDef, attribute: &str) -> Error {
    Error::UnknownAttribute {
        table: def.name.to_owned(),
        attribute: attribute.to_owned(),
    }
}

fn bad_value(def: &TableDef, cond: &Condition, message: String) -> Error {
    Error::InvalidQuery {
        table: def.name.to_owned(),
        position: cond.position,
        message,
    }
}

fn kind_of(field: &FieldDef) -> Option<AtomKind> {
    match field.ty.scalar {
        Scalar::Id | Scalar::String => Some(AtomKind::Str),
        Scalar::Bool => Some(AtomKind::Bool),
        Scalar::Int { .. } => Some(AtomKind::Int),
        Scalar::Float { .. } => Some(AtomKind::Float),
        Scalar::Json => None,
    }
}

/// The typed atom of a condition's value for `field`.
fn coerce(def: &TableDef, field: &FieldDef, cond: &Condition) -> Result<Atom> {
    let expecting = |shown: &str| {
        bad_value(
            def,
            cond,
            format!(
                "Invalid value for attribute {}: {shown}, expecting {}",
                field.name,
                field.ty.scalar.type_name()
            ),
        )
    };
    match &cond.value {
        Operand::Text(t) if t == "null" => Ok(Atom::Null),
        Operand::Text(t) => match field.ty.scalar {
            Scalar::Id | Scalar::String => Ok(Atom::Str(t.clone())),
            Scalar::Bool => match t.as_str() {
                "true" => Ok(Atom::Bool(true)),
                "false" => Ok(Atom::Bool(false)),
                _ => Err(expecting(&format!("{t:?}"))),
            },
            Scalar::Int { .. } => t
                .parse::<i64>()
                .map(Atom::Int)
                .or_else(|_| t.parse::<u64>().map(Atom::from_u64))
                .map_err(|_| expecting(&format!("{t:?}"))),
            Scalar::Float { .. } => match t.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Atom::Float(x)),
                _ => Err(expecting(&format!("{t:?}"))),
            },
            Scalar::Json => Err(not_queryable(def, field, cond)),
        },
        Operand::Json(v) => match (field.ty.scalar, v) {
            (_, Value::Null) => Ok(Atom::Null),
            (Scalar::Json, _) => Err(not_queryable(def, field, cond)),
            (Scalar::Id | Scalar::String, Value::String(s)) => Ok(Atom::Str(s.clone())),
            (Scalar::Bool, Value::Bool(b)) => Ok(Atom::Bool(*b)),
            (Scalar::Int { .. }, Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Ok(Atom::Int(i)),
                (None, Some(u)) => Ok(Atom::from_u64(u)),
                _ => Err(expecting(&n.to_string())),
            },
            (Scalar::Float { .. }, Value::Number(n)) => n
                .as_f64()
                .map(Atom::Float)
                .ok_or_else(|| expecting(&n.to_string())),
            (_, other) => Err(expecting(&other.to_string())),
        },
    }
}

fn not_queryable(def: &TableDef, field: &FieldDef, cond: &Condition) -> Error {
    bad_value(
        def,
        cond,
        format!(
            "{} holds free-form JSON and cannot be used in conditions",
            field.name
        ),
    )
}

/// Compiles a filter, running sub-queries for conditions through relationships.
fn compile_filter<R: Reader>(
    r: &R,
    def: &'static TableDef,
    filter: &Filter,
    stats: &mut QueryStats,
) -> Result<CFilter> {
    Ok(match filter {
        Filter::And(items) => {
            let mut out = Vec::with_capacity(items.len());
            for f in items {
                match compile_filter(r, def, f, stats)? {
                    CFilter::True => {}
                    CFilter::False => return Ok(CFilter::False),
                    c => out.push(c),
                }
            }
            match out.len() {
                0 => CFilter::True,
                1 => out.pop().unwrap_or(CFilter::True),
                _ => CFilter::And(out),
            }
        }
        Filter::Or(items) => {
            let mut out = Vec::with_capacity(items.len());
            for f in items {
                match compile_filter(r, def, f, stats)? {
                    CFilter::True => return Ok(CFilter::True),
                    CFilter::False => {}
                    c => out.push(c),
                }
            }
            match out.len() {
                0 => CFilter::False,
                1 => out.pop().unwrap_or(CFilter::False),
                _ => CFilter::Or(out),
            }
        }
        Filter::Condition(cond) => compile_condition(r, def, cond, stats)?,
    })
}

fn compile_condition<R: Reader>(
    r: &R,
    def: &'static TableDef,
    cond: &Condition,
    stats: &mut QueryStats,
) -> Result<CFilter> {
    let Some(first) = cond.path.first() else {
        return Err(bad_value(
            def,
            cond,
            "a condition needs an attribute".into(),
        ));
    };
    if cond.path.len() > 1 {
        let rel = def.relationship(first).ok_or_else(|| {
            if def.field(first).is_some() {
                bad_value(
                    def,
                    cond,
                    format!(
                        "{first} is not a relationship, so {first}.{} means nothing",
                        cond.path[1]
                    ),
                )
            } else {
                unknown(def, first)
            }
        })?;
        return compile_related(r, def, rel, cond, stats);
    }
    let i = def.field_index(first).ok_or_else(|| {
        if def.relationship(first).is_some() {
            bad_value(
                def,
                cond,
                format!(
                    "{first} is a relationship: compare one of its attributes, e.g. {first}.id"
                ),
            )
        } else {
            unknown(def, first)
        }
    })?;
    let field = &def.fields[i];
    let test = match cond.op {
        Op::StartsWith | Op::Contains | Op::EndsWith => {
            if kind_of(field) != Some(AtomKind::Str) {
                return Err(bad_value(
                    def,
                    cond,
                    format!(
                        "{} applies to strings, and {} is {}",
                        cond.op.name(),
                        field.name,
                        field.ty.scalar.type_name()
                    ),
                ));
            }
            let text = match &cond.value {
                Operand::Text(t) => t.clone(),
                Operand::Json(Value::String(s)) => s.clone(),
                Operand::Json(other) => {
                    return Err(bad_value(
                        def,
                        cond,
                        format!("{} needs a string, not {other}", cond.op.name()),
                    ));
                }
            };
            Test::Text(cond.op, text)
        }
        op => {
            let atom = coerce(def, field, cond)?;
            match (op, atom.is_null()) {
                (Op::Eq, true) => Test::Null(true),
                (Op::Ne, true) => Test::Null(false),
                (_, true) => {
                    return Err(bad_value(
                        def,
                        cond,
                        format!("{} cannot compare {} with null", op.name(), field.name),
                    ));
                }
                (_, false) => Test::Cmp(op, atom),
            }
        }
    };
    Ok(CFilter::Cond(CCond { field: i, test }))
}

/// `rel.rest <op> value`: find the related records first, then keep this table's records
/// linked to any of them.
fn compile_related<R: Reader>(
    r: &R,
    def: &'static TableDef,
    rel: &'static RelationshipDef,
    cond: &Condition,
    stats: &mut QueryStats,
) -> Result<CFilter> {
    let target = (rel.target)();
    let sub = Query {
        filter: Some(Filter::Condition(Condition {
            path: cond.path[1..].to_vec(),
            ..cond.clone()
        })),
        ..Query::default()
    };
    let (rows, sub_stats) = run(r, target, &sub)?;
    stats.index_entries_read += sub_stats.index_entries_read;
    stats.records_read += sub_stats.records_read;
    let mut atoms: Vec<Atom> = Vec::new();
    let field = match rel.kind {
        RelationshipKind::From { field } => {
            for row in &rows {
                atoms.push(row.key()?);
            }
            def.field_index(field).ok_or_else(|| unknown(def, field))?
        }
        RelationshipKind::To { rust_field } => {
            let tf_index = target
                .fields
                .iter()
                .position(|f| f.rust_name == rust_field)
                .ok_or_else(|| unknown(target, rust_field))?;
            for row in &rows {
                let rec = row.record(target)?;
                atoms.extend(rec.atoms(tf_index).into_iter().filter(|a| !a.is_null()));
            }
            def.primary_key
        }
    };
    atoms.sort_by(|a, b| a.cmp_value(b));
    atoms.dedup_by(|a, b| a.cmp_value(b).is_eq());
    if atoms.is_empty() {
        return Ok(CFilter::False);
    }
    Ok(CFilter::Cond(CCond {
        field,
        test: Test::In(atoms),
    }))
}

/// A filter checked against one record at a time, without reading anything else: for live
/// subscriptions, which test each changed record. Conditions through relationships are
/// refused (their answer depends on other tables, which change independently).
#[derive(Debug, Clone)]
pub(crate) struct Predicate(CFilter);

impl Predicate {
    pub(crate) fn compile<R: Reader>(
        r: &R,
        def: &'static TableDef,
        filter: &Filter,
    ) -> Result<Self> {
        fn local_only(def: &TableDef, f: &Filter) -> Result<()> {
            match f {
                Filter::And(items) | Filter::Or(items) => {
                    items.iter().try_for_each(|f| local_only(def, f))
                }
                Filter::Condition(c) if c.path.len() > 1 => Err(bad_value(
                    def,
                    c,
                    format!(
                        "a subscription filters on {}'s own attributes; {} goes through a relationship",
                        def.name,
                        c.path.join(".")
                    ),
                )),
                Filter::Condition(_) => Ok(()),
            }
        }
        local_only(def, filter)?;
        let mut stats = QueryStats::default();
        compile_filter(r, def, filter, &mut stats).map(Predicate)
    }

    pub(crate) fn matches(&self, rec: &Record) -> bool {
        eval(&self.0, rec)
    }
}

fn eval(filter: &CFilter, rec: &Record) -> bool {
    match filter {
        CFilter::True => true,
        CFilter::False => false,
        CFilter::And(items) => items.iter().all(|f| eval(f, rec)),
        CFilter::Or(items) => items.iter().any(|f| eval(f, rec)),
        CFilter::Cond(c) => eval_cond(c, rec),
    }
}

fn eval_cond(c: &CCond, rec: &Record) -> bool {
    let field = &rec.def.fields[c.field];
    let slot = rec.slots[c.field].as_ref();
    match (&c.test, slot) {
        (Test::Null(want_null), _) => slot.is_none_or(Value::is_null) == *want_null,
        (test, Some(Value::Array(_))) if field.ty.list => {
            let atoms = value_atoms(field, slot);
            match test {
                // A list differs from `a` when no element equals it.
                Test::Cmp(Op::Ne, a) => !atoms.iter().any(|x| x.cmp_value(a).is_eq()),
                test => atoms.iter().any(|x| test_one(test, One::Atom(x))),
            }
        }
        // One value: a string is compared where it lies, anything else as its atom.
        (test, Some(Value::String(s))) => test_one(test, One::Str(s)),
        (test, other) => {
            let atom = other.map_or(Atom::Null, |v| field_atom(field, v));
            test_one(test, One::Atom(&atom))
        }
    }
}

/// One scalar of a record, as [`field_atom`] would make it but with strings borrowed.
#[derive(Clone, Copy)]
enum One<'a> {
    Str(&'a str),
    Atom(&'a Atom),
}

impl One<'_> {
    /// [`Atom::cmp_value`] of this value's atom against `a` (strings sort after every other
    /// kind).
    fn cmp(self, a: &Atom) -> std::cmp::Ordering {
        match (self, a) {
            (One::Str(s), Atom::Str(t)) => s.as_bytes().cmp(t.as_bytes()),
            (One::Str(_), _) => std::cmp::Ordering::Greater,
            (One::Atom(x), a) => x.cmp_value(a),
        }
    }
}

/// Whether one value passes `test` (not [`Test::Null`], decided on the slot itself).
fn test_one(test: &Test, x: One<'_>) -> bool {
    match test {
        Test::Null(_) => false,
        Test::Cmp(Op::Ne, a) => !x.cmp(a).is_eq(),
        Test::Cmp(op, a) => {
            if matches!(x, One::Atom(Atom::Null)) {
                return false;
            }
            let o = x.cmp(a);
            match op {
                Op::Eq => o.is_eq(),
                Op::Lt => o.is_lt(),
                Op::Le => o.is_le(),
                Op::Gt => o.is_gt(),
                Op::Ge => o.is_ge(),
                _ => false,
            }
        }
        Test::Text(op, t) => {
            let s = match x {
                One::Str(s) => s,
                One::Atom(Atom::Str(s)) => s.as_str(),
                One::Atom(_) => return false,
            };
            match op {
                Op::StartsWith => s.starts_with(t.as_str()),
                Op::Contains => s.contains(t.as_str()),
                Op::EndsWith => s.ends_with(t.as_str()),
                _ => false,
            }
        }
        Test::In(set) => set.binary_search_by(|s| x.cmp(s).reverse()).is_ok(),
    }
}

#[cfg(test)]
mod shaper_tests {
    use super::*;
    use crate::record::tests::DEF;

    /// `shape_json` copies stored values when the key search applies and re-encodes decoded
    /// ones when it does not (nested objects): either way, the bytes `shape` gives.
    #[test]
    fn json_rows_equal_shaped_values() {
        let rows = [
            r#"{"id":"x","a":[1,2.5,"s\"t"],"b c":null}"#,
            r#"{"id":"y","a":{"nested":{"id":"no"}},"naïve":true}"#,
            r#"{"a":"\u00e9\n","id":7}"#,
            r#"{"id":"z"}"#,
        ];
        let selects = [
            "select(a,id,a,naïve)",
            "select([id,a,id])",
            "select(a)",
            "select(id,q%22uote)",
        ];
        for query in selects {
            let select = crate::query::parse_query(query, &|_| true)
                .unwrap()
                .select
                .unwrap();
            let db = crate::storage::Database::temporary().unwrap();
            for json in rows {
                let rec = Record::from_stored_json(&DEF, json.as_bytes()).unwrap();
                let stored = rec.to_stored(1);
                let row = StoredRecord::from_stored(
                    Slice::from(&b"k"[..]),
                    Slice::from(stored.as_slice()),
                )
                .unwrap();
                let mut shaper = Shaper::new(&DEF, &select).unwrap();
                let want = db
                    .read(|r| shaper.shape(r, &DEF, &row))
                    .map(|v| serde_json::to_vec(&v).unwrap())
                    .unwrap();
                let got = shaper.shape_json(&row).unwrap().unwrap().to_vec();
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap(),
                    "{query} on {json}"
                );
            }
        }
    }
}

#[cfg(test)]
mod one_tests {
    use super::*;

    #[test]
    fn borrowed_strings_compare_as_their_atoms() {
        let atoms = [
            Atom::Null,
            Atom::Bool(false),
            Atom::Bool(true),
            Atom::Int(-3),
            Atom::Int(7),
            Atom::from_u64(u64::MAX),
            Atom::Float(0.5),
            Atom::Str(String::new()),
            Atom::Str("Deluxe".into()),
            Atom::Str("Deluxe Lamp".into()),
            Atom::Str("é".into()),
        ];
        for x in &atoms {
            for a in &atoms {
                let by_atom = One::Atom(x).cmp(a);
                assert_eq!(by_atom, x.cmp_value(a), "{x:?} vs {a:?}");
                if let Atom::Str(s) = x {
                    assert_eq!(One::Str(s).cmp(a), by_atom, "{s:?} vs {a:?}");
                }
            }
        }
        let set = vec![Atom::Int(1), Atom::Str("b".into()), Atom::Str("d".into())];
        let test = Test::In(set);
        assert!(test_one(&test, One::Str("d")));
        assert!(!test_one(&test, One::Str("c")));
        assert!(test_one(&test, One::Atom(&Atom::Int(1))));
        assert!(!test_one(
            &Test::Cmp(Op::Lt, Atom::Int(5)),
            One::Atom(&Atom::Null)
        ));
        assert!(test_one(
            &Test::Cmp(Op::Ne, Atom::Int(5)),
            One::Atom(&Atom::Null)
        ));
        assert!(test_one(
            &Test::Text(Op::StartsWith, "De".into()),
            One::Str("Deluxe")
        ));
    }
}

/// An index-servable set of ranges on one field.
#[derive(Debug, Clone)]
struct Candidate {
    /// The field whose order (then the primary key's) a scan of `ranges` yields.
    field: usize,
    ranges: Vec<KeyRange>,
    /// Static preference when counts cannot tell (lower is better).
    rank: u8,
    /// Ranges of a compound index rather than of `field`'s own index.
    compound: Option<CompoundPart>,
}

/// How a candidate uses a compound index: equality conditions fix its leading fields, and
/// `Candidate::field` is the next one (or the last fixed one when all are fixed).
#[derive(Debug, Clone)]
struct CompoundPart {
    /// Position in `def.compound_indexes`.
    index: usize,
    /// The fixed leading fields and their values.
    fixed: Vec<(usize, Atom)>,
}

impl Candidate {
    /// Whether the ranges are of the records themselves (primary key ranges).
    fn on_records(&self, def: &TableDef) -> bool {
        self.compound.is_none() && self.field == def.primary_key
    }
}

fn value_range(atom: &Atom) -> KeyRange {
    let enc = key::encode_one(atom);
    let end = key::after_value(&enc);
    KeyRange::half_open(enc, end)
}

fn intersect(a: &KeyRange, b: &KeyRange) -> KeyRange {
    fn max_start(a: &Bound<Vec<u8>>, b: &Bound<Vec<u8>>) -> Bound<Vec<u8>> {
        match (a, b) {
            (Bound::Unbounded, x) | (x, Bound::Unbounded) => x.clone(),
            (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.max(y).clone()),
            (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.max(y).clone()),
            (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
                if i > e {
                    Bound::Included(i.clone())
                } else {
                    Bound::Excluded(e.clone())
                }
            }
        }
    }
    fn min_end(a: &Bound<Vec<u8>>, b: &Bound<Vec<u8>>) -> Bound<Vec<u8>> {
        match (a, b) {
            (Bound::Unbounded, x) | (x, Bound::Unbounded) => x.clone(),
            (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.min(y).clone()),
            (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.min(y).clone()),
            (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
                if i < e {
                    Bound::Included(i.clone())
                } else {
                    Bound::Excluded(e.clone())
                }
            }
        }
    }
    KeyRange {
        start: max_start(&a.start, &b.start),
        end: min_end(&a.end, &b.end),
    }
}

/// The key ranges holding every record that can satisfy `test` (None: not index-servable).
fn test_ranges(field: &FieldDef, test: &Test) -> Option<(Vec<KeyRange>, u8)> {
    let kind = kind_of(field)?;
    let (kind_lo, kind_hi) = key::kind_range(kind);
    Some(match test {
        Test::Cmp(Op::Eq, a) => (
            vec![value_range(a)],
            if kind == AtomKind::Bool { 4 } else { 0 },
        ),
        Test::Cmp(op @ (Op::Lt | Op::Le | Op::Gt | Op::Ge), a) => {
            let enc = key::encode_one(a);
            let r = match op {
                Op::Lt => KeyRange::half_open(kind_lo, enc),
                Op::Le => KeyRange::half_open(kind_lo, key::after_value(&enc)),
                Op::Gt => KeyRange::half_open(key::after_value(&enc), kind_hi),
                _ => KeyRange::half_open(enc, kind_hi),
            };
            (vec![r], 2)
        }
        Test::Text(Op::StartsWith, p) => {
            let prefix = key::string_prefix(p);
            let end = key::prefix_successor(&prefix)?;
            (vec![KeyRange::half_open(prefix, end)], 2)
        }
        Test::In(set) => (set.iter().map(value_range).collect(), 1),
        Test::Null(true) => (vec![value_range(&Atom::Null)], 3),
        _ => return None,
    })
}

/// Index-servable candidates of a conjunction, one per field (conditions on one field merged).
fn candidates(store: &TableStore, conjuncts: &[&CFilter]) -> Vec<Candidate> {
    let def = store.def;
    let mut out: Vec<Candidate> = Vec::new();
    for c in conjuncts {
        let CFilter::Cond(cond) = c else { continue };
        let servable = cond.field == def.primary_key || store.indexes[cond.field].is_some();
        if !servable {
            continue;
        }
        let Some((ranges, rank)) = test_ranges(&def.fields[cond.field], &cond.test) else {
            continue;
        };
        match out.iter_mut().find(|c| c.field == cond.field) {
            Some(existing) => {
                let mut merged = Vec::new();
                for a in &existing.ranges {
                    for b in &ranges {
                        let r = intersect(a, b);
                        if !r.is_empty() {
                            merged.push(r);
                        }
                    }
                }
                existing.ranges = merged;
                existing.rank = existing.rank.min(rank);
            }
            None => out.push(Candidate {
                field: cond.field,
                ranges,
                rank,
                compound: None,
            }),
        }
    }
    out
}

/// Candidates on compound indexes whose leading fields have equality conditions: their
/// ranges hold the records matching those conditions (and any on the next field), ordered by
/// the next field. Made when they narrow more than one field's index could, or serve the sort.
fn compound_candidates(
    store: &TableStore,
    conjuncts: &[&CFilter],
    sort_first: Option<usize>,
) -> Vec<Candidate> {
    let def = store.def;
    let mut out = Vec::new();
    for (index, ci) in def.compound_indexes.iter().enumerate() {
        let mut fixed: Vec<(usize, Atom)> = Vec::new();
        for &f in ci.fields {
            let eq = conjuncts.iter().find_map(|c| match c {
                CFilter::Cond(CCond {
                    field,
                    test: Test::Cmp(Op::Eq, a),
                }) if *field == f => Some(a.clone()),
                _ => None,
            });
            match eq {
                Some(a) => fixed.push((f, a)),
                None => break,
            }
        }
        if fixed.is_empty() {
            continue;
        }
        let mut prefix = Vec::new();
        for (_, a) in &fixed {
            key::encode(a, &mut prefix);
        }
        let whole = KeyRange::half_open(prefix.clone(), key::after_value(&prefix));
        let (field, ranges, conditioned) = match ci.fields.get(fixed.len()) {
            None => (fixed[fixed.len() - 1].0, vec![whole], false),
            Some(&next) => {
                // Conditions on the next field narrow the ranges, as on its own index.
                let mut ranges = vec![KeyRange::all()];
                let mut conditioned = false;
                for c in conjuncts {
                    let CFilter::Cond(cond) = c else { continue };
                    if cond.field != next {
                        continue;
                    }
                    let Some((rs, _)) = test_ranges(&def.fields[next], &cond.test) else {
                        continue;
                    };
                    conditioned = true;
                    let mut merged = Vec::new();
                    for a in &ranges {
                        for b in &rs {
                            let r = intersect(a, b);
                            if !r.is_empty() {
                                merged.push(r);
                            }
                        }
                    }
                    ranges = merged;
                }
                let prefixed = |b: &Bound<Vec<u8>>, start: bool| match b {
                    Bound::Included(v) => Bound::Included([prefix.as_slice(), v].concat()),
                    Bound::Excluded(v) => Bound::Excluded([prefix.as_slice(), v].concat()),
                    Bound::Unbounded if start => whole.start.clone(),
                    Bound::Unbounded => whole.end.clone(),
                };
                let ranges = ranges
                    .iter()
                    .map(|r| KeyRange {
                        start: prefixed(&r.start, true),
                        end: prefixed(&r.end, false),
                    })
                    .collect();
                (next, ranges, conditioned)
            }
        };
        let first_indexed = store.indexes[fixed[0].0].is_some() || fixed[0].0 == def.primary_key;
        if fixed.len() >= 2 || conditioned || sort_first == Some(field) || !first_indexed {
            out.push(Candidate {
                field,
                ranges,
                rank: 0,
                compound: Some(CompoundPart { index, fixed }),
            });
        }
    }
    out
}

fn ks_for<'s>(store: &'s TableStore, cand: &Candidate) -> &'s Ks {
    if let Some(c) = &cand.compound {
        &store.compound[c.index]
    } else if cand.field == store.def.primary_key {
        &store.records
    } else {
        // Only called for fields that are indexed (checked when building candidates).
        store.indexes[cand.field].as_ref().unwrap_or(&store.records)
    }
}

/// Where the record key starts in an entry of `cand`'s index (0: the records themselves).
fn record_key_at(store: &TableStore, cand: &Candidate, entry: &[u8]) -> Result<usize> {
    let components = match &cand.compound {
        Some(c) => store.def.compound_indexes[c.index].fields.len(),
        None if cand.field == store.def.primary_key => 0,
        None => 1,
    };
    let mut at = 0;
    for _ in 0..components {
        at += key::component_len(&entry[at..])
            .map_err(|_| Error::Corrupt(format!("index of {}", store.def.name)))?;
    }
    Ok(at)
}

/// How a plan names a candidate's index: `Product#categoryId+name`.
fn index_name(def: &TableDef, cand: &Candidate) -> String {
    match &cand.compound {
        Some(c) => format!(
            "{}#{}",
            def.name,
            crate::storage::compound_label(def, &def.compound_indexes[c.index])
        ),
        None => format!("{}#{}", def.name, def.fields[cand.field].name),
    }
}

/// Counts the entries of a candidate's ranges, stopping at `cap`.
/// How many index entries (or records) a candidate's ranges hold, counting at most `cap`.
/// Counts are remembered per table for later plans (see `PlannerStats`).
fn count(view: &dyn Source, store: &TableStore, cand: &Candidate, cap: usize) -> Result<usize> {
    let key = stats_key(cand);
    if let Some(n) = store.planner.count(&key, cap) {
        return Ok(n);
    }
    let ks = ks_for(store, cand);
    let mut n = 0;
    'ranges: for r in &cand.ranges {
        for item in view.scan(ks, r, false) {
            item?;
            n += 1;
            if n >= cap {
                break 'ranges;
            }
        }
    }
    store.planner.remember(key, n, cap);
    Ok(n)
}

/// A candidate's field and ranges as bytes (the planner statistics' key).
fn stats_key(cand: &Candidate) -> Vec<u8> {
    let tag = match &cand.compound {
        // Compound ranges are told apart from any field's.
        Some(c) => 0x8000_0000 | c.index as u32,
        None => cand.field as u32,
    };
    let mut key = tag.to_be_bytes().to_vec();
    let mut bound = |b: &Bound<Vec<u8>>| match b {
        Bound::Included(v) | Bound::Excluded(v) => {
            key.push(if matches!(b, Bound::Included(_)) {
                1
            } else {
                2
            });
            key.extend_from_slice(&(v.len() as u32).to_be_bytes());
            key.extend_from_slice(v);
        }
        Bound::Unbounded => key.push(0),
    };
    for r in &cand.ranges {
        bound(&r.start);
        bound(&r.end);
    }
    key
}

/// Chooses the best candidate. Returns it with its (possibly capped) count.
///
/// With `cap`, no count goes past it: the caller only needs to know which candidates hold
/// fewer than `cap` entries (when none does, the best-ranked one is returned with `cap`).
/// Without, a query that needs every match counts the large candidates against each other.
fn choose(
    view: &dyn Source,
    store: &TableStore,
    mut cands: Vec<Candidate>,
    early_stop: bool,
    cap: Option<usize>,
) -> Result<Option<(Candidate, usize)>> {
    if cands.is_empty() {
        return Ok(None);
    }
    if cands.len() == 1 && cap.is_none() {
        // Nothing to compare: no costing. The count is unknown, reported as "at least PROBE".
        return Ok(cands.pop().map(|c| (c, PROBE)));
    }
    cands.sort_by_key(|c| c.rank);
    // Probe in rank order, each capped by the smallest count so far: once a candidate is
    // known to hold n entries, no other needs counting past n. A query that stops at its
    // limit gains little from exact counts, so it probes less.
    let probe = if early_stop { EARLY_STOP_PROBE } else { PROBE };
    let probe = cap.map_or(probe, |c| probe.min(c));
    let mut best: Option<(usize, usize)> = None; // (index, exact count below `probe`)
    for (i, c) in cands.iter().enumerate() {
        let cap = best.map_or(probe, |(_, n)| n);
        let n = count(view, store, c, cap)?;
        if n < cap {
            best = Some((i, n));
        }
    }
    if let Some((i, n)) = best {
        return Ok(Some((cands.swap_remove(i), n)));
    }
    if early_stop {
        // Streaming with a limit stops early on any of them: prefer the most selective kind.
        return Ok(Some((cands.swap_remove(0), probe)));
    }
    // Every candidate is large. Count further, each capped by the best so far (and by
    // `cap`), so costing never reads more than running the best plan would.
    let limit = cap.unwrap_or(usize::MAX);
    let mut best = 0;
    let mut best_n = count(view, store, &cands[0], limit)?;
    for (i, c) in cands.iter().enumerate().skip(1) {
        let n = count(view, store, c, best_n)?;
        if n < best_n {
            best = i;
            best_n = n;
        }
    }
    Ok(Some((cands.swap_remove(best), best_n)))
}

/// How rows are found.
enum Access {
    Scan { reverse: bool },
    Index { cand: Candidate, reverse: bool },
    Union(Vec<Candidate>),
}

/// Streams candidate rows (records that may match) from an access path, deduplicated.
/// A candidate of the filter that an index scan may narrow itself to, once it has read
/// `after` index entries without finishing: from then on, entries of records outside the
/// candidate's key set are passed over without reading the record.
struct Within<'a> {
    cand: &'a Candidate,
    after: u64,
    /// `Some(None)`: built and found too large to keep (over [`SEMI_JOIN_MAX`]).
    keys: Option<Option<HashSet<Slice>>>,
    /// Whether entries were passed over this way.
    narrowed: bool,
}

/// With `within`, see [`Within`].
fn for_each_row(
    view: &dyn Source,
    store: &TableStore,
    access: &Access,
    mut within: Option<&mut Within<'_>>,
    mut f: impl FnMut(Slice, Slice) -> Result<bool>,
) -> Result<()> {
    let def = store.def;
    let mut seen: Option<HashSet<Slice>> = None;
    let mut entries = 0u64;
    let mut visit = |view: &dyn Source,
                     cand: &Candidate,
                     reverse: bool,
                     dedupe: bool,
                     seen: &mut Option<HashSet<Slice>>|
     -> Result<bool> {
        let is_pk = cand.on_records(def);
        let ks = ks_for(store, cand);
        let ranges: Box<dyn Iterator<Item = &KeyRange>> = if reverse {
            Box::new(cand.ranges.iter().rev())
        } else {
            Box::new(cand.ranges.iter())
        };
        for r in ranges {
            for item in view.scan(ks, r, reverse) {
                let (k, v) = item?;
                let (pk, bytes) = if is_pk {
                    (k, v)
                } else {
                    let n = record_key_at(store, cand, &k)?;
                    let pk = Slice::from(&k[n..]);
                    entries += 1;
                    if let Some(w) = within.as_deref_mut() {
                        // A key range needs no set: the key itself says.
                        if w.cand.on_records(def) {
                            if entries > w.after && !w.cand.ranges.iter().any(|r| r.contains(&pk)) {
                                w.narrowed = true;
                                continue;
                            }
                        } else if w.keys.is_none() && entries > w.after {
                            w.keys = Some(key_set(view, store, w.cand, SEMI_JOIN_MAX)?);
                        }
                        if let Some(Some(keys)) = &w.keys
                            && !keys.contains(&pk)
                        {
                            w.narrowed = true;
                            continue;
                        }
                    }
                    match view.get(&store.records, &pk)? {
                        Some(bytes) => (pk, bytes),
                        None => {
                            return Err(Error::Corrupt(format!(
                                "{} index entry without a record",
                                def.name
                            )));
                        }
                    }
                };
                if dedupe && !seen.get_or_insert_with(HashSet::new).insert(pk.clone()) {
                    continue;
                }
                if !f(pk, bytes)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    match access {
        Access::Scan { reverse } => {
            for item in view.scan(&store.records, &KeyRange::all(), *reverse) {
                let (k, v) = item?;
                if !f(k, v)? {
                    break;
                }
            }
            Ok(())
        }
        Access::Index { cand, reverse } => {
            let dedupe = def.fields[cand.field].ty.list;
            visit(view, cand, *reverse, dedupe, &mut seen).map(|_| ())
        }
        Access::Union(cands) => {
            for cand in cands {
                if !visit(view, cand, false, true, &mut seen)? {
                    break;
                }
            }
            Ok(())
        }
    }
}

/// The record keys in `cand`'s index ranges; `None` once there are more than `cap`.
fn key_set(
    view: &dyn Source,
    store: &TableStore,
    cand: &Candidate,
    cap: usize,
) -> Result<Option<HashSet<Slice>>> {
    let is_pk = cand.on_records(store.def);
    let ks = ks_for(store, cand);
    let mut keys = HashSet::new();
    for r in &cand.ranges {
        for item in view.scan(ks, r, false) {
            let (k, _) = item?;
            let pk = if is_pk {
                k
            } else {
                let n = record_key_at(store, cand, &k)?;
                Slice::from(&k[n..])
            };
            keys.insert(pk);
            if keys.len() > cap {
                return Ok(None);
            }
        }
    }
    Ok(Some(keys))
}

fn mark_fields(filter: &CFilter, needed: &mut [bool]) {
    match filter {
        CFilter::True | CFilter::False => {}
        CFilter::Cond(c) => needed[c.field] = true,
        CFilter::And(items) | CFilter::Or(items) => {
            items.iter().for_each(|f| mark_fields(f, needed))
        }
    }
}

/// Whether a condition on `field` holds exactly for the keys in its index ranges.
fn implied_by_ranges(field: &FieldDef, test: &Test) -> bool {
    match test {
        Test::Cmp(Op::Eq | Op::Lt | Op::Le | Op::Gt | Op::Ge, _)
        | Test::Text(Op::StartsWith, _)
        | Test::In(_) => true,
        // An empty list is indexed as null but is not null.
        Test::Null(true) => !field.ty.list,
        _ => false,
    }
}

/// The part of a top-level conjunction that scanning `field`'s ranges does not guarantee.
fn residual_filter(filter: &CFilter, def: &TableDef, cand: &Candidate) -> CFilter {
    let field = cand.field;
    let fixed: &[(usize, Atom)] = cand.compound.as_ref().map_or(&[], |c| &c.fixed);
    let implied = |f: &CFilter| match f {
        CFilter::Cond(c) if fixed.iter().any(|(f, _)| *f == c.field) => {
            // A fixed leading field of a compound index: only its equality is implied.
            matches!(&c.test, Test::Cmp(Op::Eq, a)
                if fixed.iter().any(|(f, v)| *f == c.field && v.cmp_value(a).is_eq()))
        }
        CFilter::Cond(c) => c.field == field && implied_by_ranges(&def.fields[field], &c.test),
        _ => false,
    };
    match filter {
        CFilter::And(items) => {
            let rest: Vec<CFilter> = items.iter().filter(|f| !implied(f)).cloned().collect();
            match rest.len() {
                0 => CFilter::True,
                1 => rest.into_iter().next().unwrap_or(CFilter::True),
                _ => CFilter::And(rest),
            }
        }
        f if implied(f) => CFilter::True,
        f => f.clone(),
    }
}

/// Resolved sort keys: field positions and directions.
fn compile_sort(def: &'static TableDef, sort: &[Sort]) -> Result<Vec<(usize, bool)>> {
    sort.iter()
        .map(|s| {
            let i = def.field_index(&s.attribute).ok_or_else(|| {
                if def.relationship(&s.attribute).is_some() {
                    Error::invalid_query(
                        def.name,
                        format!("cannot sort by the relationship {}", s.attribute),
                    )
                } else {
                    unknown(def, &s.attribute)
                }
            })?;
            if def.fields[i].ty.scalar == Scalar::Json {
                return Err(Error::invalid_query(
                    def.name,
                    format!("cannot sort by {}: it holds free-form JSON", s.attribute),
                ));
            }
            Ok((i, s.descending))
        })
        // A later key that sorts by the same atom as an earlier one never changes the
        // order: dropped, so a scalar field is read once (see `sort_atom`). A list sorts
        // by its smallest element ascending and its largest descending, so a list field
        // keeps one key per direction.
        .try_fold(Vec::new(), |mut keys: Vec<(usize, bool)>, key| {
            let key = key?;
            let list = def.fields[key.0].ty.list;
            if !keys.iter().any(|k| k.0 == key.0 && (!list || k.1 == key.1)) {
                keys.push(key);
            }
            Ok(keys)
        })
}

/// The atom a record sorts by on `field`: the smallest element ascending, the largest
/// descending (lists), null when absent. Matches the order of an index scan. Takes a
/// scalar's value out of `rec` (each field is sorted by once: see `compile_sort`).
fn sort_atom(rec: &mut Record, field: usize, descending: bool) -> Atom {
    let def = &rec.def.fields[field];
    if !def.ty.list {
        // One value, moved out of the record (it is not read again): no list, no copy.
        return match rec.slots[field].take() {
            Some(Value::String(s)) => Atom::Str(s),
            Some(v) => field_atom(def, &v),
            None => Atom::Null,
        };
    }
    let atoms = value_atoms(def, rec.slots[field].as_ref());
    let pick = if descending {
        atoms.into_iter().max_by(|a, b| a.cmp_value(b))
    } else {
        atoms.into_iter().min_by(|a, b| a.cmp_value(b))
    };
    pick.unwrap_or(Atom::Null)
}

struct Row {
    stored: StoredRecord,
    /// The sort keys, except a first key held as `span`.
    sort_keys: SmallVec<[Atom; 1]>,
    /// The first sort key when it is a string stored without escapes: its bytes' span in
    /// the stored JSON (compared in place, never copied out).
    span: Option<(u32, u32)>,
}

impl Row {
    fn span_bytes(&self) -> Option<&[u8]> {
        let (start, end) = self.span?;
        self.stored.json().get(start as usize..end as usize)
    }
}

/// The first sort keys of two rows, each a stored string's bytes or an atom, in atom order
/// (strings compare by their bytes, as [`Atom::cmp_value`] compares `Atom::Str`).
fn cmp_first_keys(a: &Row, b: &Row) -> std::cmp::Ordering {
    const NULL: &Atom = &Atom::Null;
    let str_vs_atom = |s: &[u8], atom: &Atom| match atom {
        Atom::Str(t) => s.cmp(t.as_bytes()),
        // Across kinds only the kind decides; an empty string stands for any string.
        other => Atom::Str(String::new()).cmp_value(other),
    };
    let (ka, kb) = (a.sort_keys.first(), b.sort_keys.first());
    match (a.span_bytes(), b.span_bytes()) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(x), None) => str_vs_atom(x, kb.unwrap_or(NULL)),
        (None, Some(y)) => str_vs_atom(y, ka.unwrap_or(NULL)).reverse(),
        (None, None) => ka.unwrap_or(NULL).cmp_value(kb.unwrap_or(NULL)),
    }
}

fn cmp_rows(a: &Row, b: &Row, keys: &[(usize, bool)]) -> std::cmp::Ordering {
    for (i, (_, desc)) in keys.iter().enumerate() {
        let o = if i == 0 {
            cmp_first_keys(a, b)
        } else {
            a.sort_keys[i].cmp_value(&b.sort_keys[i])
        };
        let o = if *desc { o.reverse() } else { o };
        if o.is_ne() {
            return o;
        }
    }
    a.stored.key.as_ref().cmp(b.stored.key.as_ref())
}

/// Runs `query` on `def`, returning the matching records in order, and what it read.
pub(crate) fn run<R: Reader>(
    r: &R,
    def: &'static TableDef,
    query: &Query,
) -> Result<(Vec<StoredRecord>, QueryStats)> {
    let mut out = Vec::new();
    let stats = run_each(r, def, query, &mut |row| {
        out.push(row);
        Ok(true)
    })?;
    Ok((out, stats))
}

/// Runs `query`, handing each result row to `sink` in order (`sink` returns false to stop).
/// Rows stream as they are found unless the query needs an in-memory sort.
pub(crate) fn run_each<R: Reader>(
    r: &R,
    def: &'static TableDef,
    query: &Query,
    sink: &mut dyn FnMut(StoredRecord) -> Result<bool>,
) -> Result<QueryStats> {
    run_bounded(r, def, query, None, sink).map(|(stats, _)| stats)
}

/// Whether a query can run under a read budget: every read it makes goes through the
/// executor's counted source (no conditions or selects through relationships, which read
/// other tables directly).
pub(crate) fn budgetable(query: &Query) -> bool {
    fn local(f: &Filter) -> bool {
        match f {
            Filter::And(items) | Filter::Or(items) => items.iter().all(local),
            Filter::Condition(c) => c.path.len() == 1,
        }
    }
    fn flat(s: &Select) -> bool {
        s.items
            .iter()
            .all(|i| matches!(i, SelectItem::All | SelectItem::Attribute(_)))
    }
    query.filter.as_ref().is_none_or(local) && query.select.as_ref().is_none_or(flat)
}

/// [`run_each`] that gives up once it has read more than `budget` index entries and records:
/// the flag is then true, and what reached `sink` must be discarded.
pub(crate) fn run_bounded<R: Reader>(
    r: &R,
    def: &'static TableDef,
    query: &Query,
    budget: Option<u64>,
    sink: &mut dyn FnMut(StoredRecord) -> Result<bool>,
) -> Result<(QueryStats, bool)> {
    let store = r.store(def)?;
    let mut stats = QueryStats::default();
    let filter = match &query.filter {
        Some(f) => compile_filter(r, def, f, &mut stats)?,
        None => CFilter::True,
    };
    let sort = compile_sort(def, &query.sort)?;
    let wanted = query.limit.map(|l| l.saturating_add(query.offset));
    if query.limit == Some(0) || matches!(filter, CFilter::False) {
        stats.plan = "nothing (empty result)".into();
        return Ok((stats, false));
    }

    let view = r.view();
    let counters = crate::storage::source::Counters {
        budget,
        ..Default::default()
    };
    let records_id = store.records.id;
    let is_record = move |id: u32| id == records_id;
    let source = crate::storage::source::Counting {
        inner: &view,
        counters: &counters,
        is_record_ks: &is_record,
    };
    let src: &dyn Source = &source;

    let conjuncts: Vec<&CFilter> = match &filter {
        CFilter::And(items) => items.iter().collect(),
        CFilter::True => Vec::new(),
        other => vec![other],
    };
    let needs_sort = !sort.is_empty();
    let mut cands = candidates(&store, &conjuncts);
    // The sort key's own candidate (conditions on the sort field), for an ordered scan.
    let sort_key_cand = sort
        .first()
        .and_then(|&(field, _)| cands.iter().find(|c| c.field == field).cloned());
    let compound = match &filter {
        CFilter::Or(_) => Vec::new(),
        _ => compound_candidates(&store, &conjuncts, sort.first().map(|s| s.0)),
    };
    // A compound index whose fixed fields leave it ordered by the first sort key: the best
    // ordered scan (its ranges hold only records matching those fields), read in order.
    let compound_sort = sort.first().and_then(|&(field, descending)| {
        compound
            .iter()
            .filter(|c| c.field == field && !def.fields[field].ty.list)
            .max_by_key(|c| c.compound.as_ref().map_or(0, |p| p.fixed.len()))
            .map(|c| (c.clone(), descending))
    });

    // An ordered scan of the first sort key's index, when it is indexed (or the primary key).
    let sort_access = sort.first().and_then(|&(field, descending)| {
        let servable = field == def.primary_key || store.indexes[field].is_some();
        // A list sorts by its smallest (largest) element, but a scan of part of its index
        // meets a record at its first element inside the range: lists sort in memory.
        if !servable || def.fields[field].ty.list {
            return None;
        }
        let cand = sort_key_cand.unwrap_or_else(|| Candidate {
            field,
            // Every entry, nulls included (they sort first).
            ranges: vec![KeyRange::all()],
            rank: 5,
            compound: None,
        });
        Some(Access::Index {
            cand,
            reverse: descending,
        })
    });

    // A large indexed candidate that loses to an ordered scan of the sort index.
    let mut semi_join: Option<Candidate> = None;
    let access = if let CFilter::Or(branches) = &filter {
        // A union of index scans when every branch has a candidate.
        let mut parts = Vec::new();
        for b in branches {
            let conj: Vec<&CFilter> = match b {
                CFilter::And(items) => items.iter().collect(),
                other => vec![other],
            };
            match choose(src, &store, candidates(&store, &conj), false, None)? {
                Some((c, _)) => parts.push(c),
                None => {
                    parts.clear();
                    break;
                }
            }
        }
        match (parts.is_empty(), sort_access) {
            (false, _) => Access::Union(parts),
            (true, Some(sa)) => sa,
            (true, None) => Access::Scan { reverse: false },
        }
    } else if let Some((ordered, reverse)) = compound_sort {
        // Other candidates compete only when small: a scan in order reads about `wanted`
        // entries when matches are common, and narrows itself to a large candidate's keys
        // when they are not (see `Within`). Candidates on the fixed fields or on the sort
        // field hold at least what the ordered scan reads.
        let fixed = ordered.compound.as_ref().map_or(&[][..], |p| &p.fixed[..]);
        cands.retain(|c| c.field != ordered.field && !fixed.iter().any(|(f, _)| *f == c.field));
        // Without a limit the ordered scan reads all of its ranges: sort a candidate's
        // matches in memory only if they are fewer (so costing reads at most that much).
        let small = match wanted {
            Some(_) => PROBE,
            None => count(src, &store, &ordered, SORT_IN_MEMORY_BELOW)?,
        };
        let chosen = match small {
            0 => None,
            _ => choose(src, &store, cands, false, Some(small))?,
        };
        match chosen {
            Some((c, n)) if n < small => Access::Index {
                cand: c,
                reverse: false,
            },
            other => {
                semi_join = other.map(|(c, _)| c);
                Access::Index {
                    cand: ordered,
                    reverse,
                }
            }
        }
    } else {
        // Compound candidates narrow by several fields at once: tried first.
        let cands: Vec<Candidate> = compound.into_iter().chain(cands).collect();
        // With an ordered scan to fall back on, counts only need to say which candidates
        // are small enough to sort in memory.
        let cap = sort_access.as_ref().map(|_| SORT_IN_MEMORY_BELOW);
        let chosen = choose(src, &store, cands, !needs_sort && wanted.is_some(), cap)?;
        let on_sort_key = |c: &Candidate| sort.first().is_some_and(|s| s.0 == c.field);
        let chosen = match chosen {
            // The ordered scan of the sort key uses this very candidate's ranges: no contest.
            Some((c, _)) if on_sort_key(&c) && c.compound.is_none() => Some((c, usize::MAX)),
            other => other,
        };
        match (chosen, sort_access) {
            (Some((c, n)), Some(_)) if n < SORT_IN_MEMORY_BELOW => Access::Index {
                cand: c,
                reverse: false,
            },
            (chosen, Some(sa)) => {
                if let (Some((c, _)), Access::Index { cand, .. }) = (chosen, &sa)
                    && (c.field != cand.field || c.compound.is_some())
                {
                    semi_join = Some(c);
                }
                sa
            }
            (Some((c, _)), None) => Access::Index {
                cand: c,
                reverse: false,
            },
            (None, None) => Access::Scan { reverse: false },
        }
    };
    stats.plan = match &access {
        Access::Scan { .. } => format!("scan {}", def.name),
        Access::Index { cand, reverse } => format!(
            "{} {}{}",
            if cand.on_records(def) {
                "key range"
            } else {
                "index"
            },
            index_name(def, cand),
            if *reverse { " (reverse)" } else { "" }
        ),
        Access::Union(parts) => format!(
            "union of {}",
            parts
                .iter()
                .map(|c| index_name(def, c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };

    // Conditions exactly implied by the scanned ranges need no re-check on the record.
    let residual = match &access {
        Access::Index { cand, .. } => residual_filter(&filter, def, cand),
        _ => filter.clone(),
    };

    // Only the attributes the residual filter and the sort read are decoded from each record.
    let mut needed = vec![false; def.fields.len()];
    mark_fields(&residual, &mut needed);
    let filter_reads_sort_key = sort.first().is_some_and(|&(f, _)| needed[f]);
    for &(f, _) in &sort {
        needed[f] = true;
    }

    // Rows come out of an ordered scan already sorted by the first key.
    // (Never for lists: see `sort_access`.)
    let ordered_by_first_key = matches!(&access, Access::Index { cand, .. }
        if sort.first().is_some_and(|s| s.0 == cand.field) && !def.fields[cand.field].ty.list);
    // Ties are broken by ascending primary key, which only an ascending scan yields as is.
    let sorted_output = !needs_sort || (ordered_by_first_key && sort.len() == 1 && !sort[0].1);
    // One sort key, on a field the filter does not read, for rows sorted in memory: a
    // string value is kept as its span in the stored bytes, not decoded into an atom.
    let span_sort = match sort.as_slice() {
        [(f, _)]
            if !sorted_output
                && !ordered_by_first_key
                && !filter_reads_sort_key
                && !def.fields[*f].ty.list =>
        {
            Some(*f)
        }
        _ => None,
    };
    let mut rows: Vec<Row> = Vec::new();
    let stop_at = Cell::new(None::<usize>);
    let (mut skipped, mut emitted) = (0usize, 0usize);
    let mut within = semi_join.as_ref().map(|cand| Within {
        cand,
        // Past a few pages' worth of entries, the scan is not finding matches fast.
        after: 256 + 4 * wanted.unwrap_or(0) as u64,
        keys: None,
        narrowed: false,
    });
    // The record each candidate row is decoded into (its allocation reused).
    let mut scratch = Record::from_stored_fields(def, b"{}", &needed)?;
    let field_keys = FieldKeys::new(def, &needed);
    for_each_row(src, &store, &access, within.as_mut(), |k, bytes| {
        let stored = StoredRecord::from_stored(k, bytes)?;
        let mut span = None;
        let sort_keys: SmallVec<[Atom; 1]> = if matches!(residual, CFilter::True) && sorted_output {
            // Nothing to check and nothing to sort: the record is not even parsed.
            SmallVec::new()
        } else {
            match span_sort {
                Some(f) => {
                    let taken = scratch.refill_with_span(stored.json(), &field_keys, f)?;
                    span = taken
                        .and_then(|(s, e)| Some((u32::try_from(s).ok()?, u32::try_from(e).ok()?)));
                    if taken.is_some() && span.is_none() {
                        // Past 4 GiB (never, in practice): decoded like any other value.
                        scratch.refill_from(stored.json(), &field_keys)?;
                    }
                }
                None => scratch.refill_from(stored.json(), &field_keys)?,
            }
            if !eval(&residual, &scratch) {
                return Ok(true);
            }
            if span.is_some() {
                SmallVec::new()
            } else {
                sort.iter()
                    .map(|&(f, d)| sort_atom(&mut scratch, f, d))
                    .collect()
            }
        };
        if sorted_output {
            // Already in order: stream it (after the offset), stop at the limit.
            if skipped < query.offset {
                skipped += 1;
                return Ok(true);
            }
            emitted += 1;
            let more = sink(stored)?;
            return Ok(more && query.limit.is_none_or(|l| emitted < l));
        }
        if let Some(w) = wanted
            && ordered_by_first_key
            && !sorted_output
        {
            // Keep reading until the first key changes after `w` rows (ties may reorder).
            if let Some(stop_len) = stop_at.get() {
                let last = &rows[stop_len - 1];
                if last.sort_keys[0].cmp_value(&sort_keys[0]).is_ne() {
                    return Ok(false);
                }
            } else if rows.len() + 1 >= w {
                stop_at.set(Some(w));
            }
        }
        rows.push(Row {
            stored,
            sort_keys,
            span,
        });
        Ok(true)
    })?;
    if let Some(Within {
        cand,
        narrowed: true,
        ..
    }) = &within
    {
        stats.plan = format!("{} within {}", stats.plan, index_name(def, cand));
    }
    if !sorted_output {
        // Rows never compare equal (ties fall to the primary key): unstable is exact.
        rows.sort_unstable_by(|a, b| cmp_rows(a, b, &sort));
        let page = rows
            .into_iter()
            .skip(query.offset)
            .take(query.limit.unwrap_or(usize::MAX));
        for row in page {
            if !sink(row.stored)? {
                break;
            }
        }
    }
    stats.index_entries_read += counters.index_entries.get();
    stats.records_read += counters.records.get();
    Ok((stats, counters.exceeded.get()))
}

/// The records `rel` of `rec` points to.
pub(crate) fn related_records<R: Reader>(
    r: &R,
    def: &'static TableDef,
    rel: &'static RelationshipDef,
    rec: &Record,
) -> Result<Vec<StoredRecord>> {
    let target = (rel.target)();
    match rel.kind {
        RelationshipKind::From { field } => {
            let i = def.field_index(field).ok_or_else(|| unknown(def, field))?;
            let mut out = Vec::new();
            for atom in rec.atoms(i) {
                if atom.is_null() {
                    continue;
                }
                if let Some(row) = r.get_stored(target, atom)? {
                    out.push(row);
                }
            }
            Ok(out)
        }
        RelationshipKind::To { rust_field } => {
            let tf = target
                .field_by_rust_name(rust_field)
                .ok_or_else(|| unknown(target, rust_field))?;
            let Some(pk) = rec.primary_key() else {
                return Ok(Vec::new());
            };
            let q = Query::new().filter(Filter::Condition(Condition {
                path: vec![tf.name.to_owned()],
                op: Op::Eq,
                value: Operand::Json(pk.clone()),
                position: None,
            }));
            Ok(run(r, target, &q)?.0)
        }
    }
}

/// Shapes rows by `select` (whole records when `None`), resolving relationships.
pub(crate) fn project<R: Reader>(
    r: &R,
    def: &'static TableDef,
    rows: &[StoredRecord],
    select: Option<&Select>,
) -> Result<Vec<Value>> {
    let Some(select) = select else {
        return rows.iter().map(StoredRecord::to_value).collect();
    };
    check_select(def, select)?;
    let mut shaper = Shaper::new(def, select)?;
    rows.iter().map(|row| shaper.shape(r, def, row)).collect()
}

pub(crate) fn check_select(def: &'static TableDef, select: &Select) -> Result<()> {
    if select.shape == SelectShape::Values && select.items.len() != 1 {
        return Err(Error::invalid_query(
            def.name,
            "a bare-value select names exactly one attribute",
        ));
    }
    for item in &select.items {
        match item {
            SelectItem::All => {}
            SelectItem::Attribute(name) => {
                if def.field(name).is_none() && def.relationship(name).is_none() {
                    return Err(unknown(def, name));
                }
            }
            SelectItem::Related { name, select } => {
                let rel = def.relationship(name).ok_or_else(|| {
                    if def.field(name).is_some() {
                        Error::invalid_query(
                            def.name,
                            format!(
                                "{name} is not a relationship, so {name}{{...}} selects nothing"
                            ),
                        )
                    } else {
                        unknown(def, name)
                    }
                })?;
                check_select((rel.target)(), select)?;
            }
        }
    }
    Ok(())
}

fn is_to_many(def: &TableDef, rel: &RelationshipDef) -> bool {
    match rel.kind {
        RelationshipKind::To { .. } => true,
        RelationshipKind::From { field } => def.field(field).is_some_and(|f| f.ty.list),
    }
}

fn related_value<R: Reader>(
    r: &R,
    def: &'static TableDef,
    rec: &Record,
    rel: &'static RelationshipDef,
    select: Option<&Select>,
) -> Result<Value> {
    let target = (rel.target)();
    let rows = related_records(r, def, rel, rec)?;
    let mut values = project(r, target, &rows, select)?;
    if is_to_many(def, rel) {
        Ok(Value::Array(values))
    } else {
        Ok(values.pop().unwrap_or(Value::Null))
    }
}

/// Shapes stored rows by a select. A select of this table's own attributes only reads just
/// those from each row (found by key, into one reused record) instead of decoding it whole.
pub(crate) struct Shaper<'s> {
    select: &'s Select,
    own: Option<OwnAttributes>,
}

/// A select of the table's own attributes only: what each row reads, and how it is written.
struct OwnAttributes {
    /// The row's attributes are read into this record (its allocation reused).
    rec: Record,
    keys: FieldKeys,
    /// The fields written out, in select order: for objects each name once, with its key
    /// (`"name":`) ready to copy.
    out: Vec<(usize, Vec<u8>)>,
    /// Per field, the span of its value in the current row's stored bytes.
    spans: Vec<Option<(usize, usize)>>,
    json: Vec<u8>,
}

/// Writing a value into a `Vec` fails only if the value cannot be JSON (never for a `Value`).
fn encoding(e: serde_json::Error) -> Error {
    Error::Corrupt(format!("encoding a row: {e}"))
}

impl<'s> Shaper<'s> {
    pub(crate) fn new(def: &'static TableDef, select: &'s Select) -> Result<Shaper<'s>> {
        let mut wanted = vec![false; def.fields.len()];
        let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut own = true;
        for item in &select.items {
            match item {
                // `shape` reads a name as a relationship first.
                SelectItem::Attribute(name) if def.relationship(name).is_none() => {
                    match def.field_index(name) {
                        Some(i) => {
                            wanted[i] = true;
                            // An object names an attribute once; arrays repeat it.
                            if select.shape != SelectShape::Objects
                                || !out.iter().any(|(f, _)| *f == i)
                            {
                                let mut key = serde_json::to_vec(name).map_err(encoding)?;
                                key.push(b':');
                                out.push((i, key));
                            }
                        }
                        None => own = false,
                    }
                }
                _ => own = false,
            }
        }
        let own = match own {
            true => Some(OwnAttributes {
                rec: Record::from_stored_fields(def, b"{}", &wanted)?,
                keys: FieldKeys::new(def, &wanted),
                out,
                spans: vec![None; def.fields.len()],
                json: Vec::new(),
            }),
            false => None,
        };
        Ok(Shaper { select, own })
    }

    pub(crate) fn shape<R: Reader>(
        &mut self,
        r: &R,
        def: &'static TableDef,
        row: &StoredRecord,
    ) -> Result<Value> {
        match &mut self.own {
            Some(own) => {
                own.rec.refill_from(row.json(), &own.keys)?;
                shape(r, def, &own.rec, self.select)
            }
            None => shape(r, def, &row.record(def)?, self.select),
        }
    }

    /// The row shaped as JSON, written straight from the attributes read (no intermediate
    /// object): the same bytes `shape` then serializing would give. `None` when the select
    /// reaches beyond the table's own attributes.
    pub(crate) fn shape_json(&mut self, row: &StoredRecord) -> Result<Option<&[u8]>> {
        let Some(own) = &mut self.own else {
            return Ok(None);
        };
        let stored = row.json();
        // Stored values are JSON as this engine writes it: copied as they are when the key
        // search finds them, else decoded and written again.
        own.spans.iter_mut().for_each(|s| *s = None);
        let spans = &mut own.spans;
        let raw = own
            .keys
            .raw_values(stored, |i, start, end| {
                *spans.get_mut(i)? = Some((start, end));
                Some(())
            })
            .is_some();
        if !raw {
            own.rec.refill_from(stored, &own.keys)?;
        }
        let json = &mut own.json;
        json.clear();
        let (open, close) = match self.select.shape {
            SelectShape::Objects => (Some(b'{'), Some(b'}')),
            SelectShape::Arrays => (Some(b'['), Some(b']')),
            SelectShape::Values => (None, None),
        };
        json.extend(open);
        for (n, (field, key)) in own.out.iter().enumerate() {
            if n > 0 {
                json.push(b',');
            }
            if self.select.shape == SelectShape::Objects {
                json.extend_from_slice(key);
            }
            match (raw, own.spans[*field], &own.rec.slots[*field]) {
                (true, Some((start, end)), _) => json.extend_from_slice(&stored[start..end]),
                (false, _, Some(v)) => serde_json::to_writer(&mut *json, v).map_err(encoding)?,
                _ => json.extend_from_slice(b"null"),
            }
        }
        json.extend(close);
        Ok(Some(json))
    }
}

pub(crate) fn shape<R: Reader>(
    r: &R,
    def: &'static TableDef,
    rec: &Record,
    select: &Select,
) -> Result<Value> {
    let mut pairs: Vec<(String, Value)> = Vec::with_capacity(select.items.len());
    for item in &select.items {
        match item {
            SelectItem::All => {
                for (f, slot) in def.fields.iter().zip(&rec.slots) {
                    if let Some(v) = slot {
                        pairs.push((f.name.to_owned(), v.clone()));
                    }
                }
            }
            SelectItem::Attribute(name) => {
                let v = if let Some(rel) = def.relationship(name) {
                    related_value(r, def, rec, rel, None)?
                } else {
                    rec.get(name).cloned().unwrap_or(Value::Null)
                };
                pairs.push((name.clone(), v));
            }
            SelectItem::Related { name, select } => {
                let rel = def.relationship(name).ok_or_else(|| unknown(def, name))?;
                pairs.push((name.clone(), related_value(r, def, rec, rel, Some(select))?));
            }
        }
    }
    Ok(match select.shape {
        SelectShape::Values => pairs.pop().map(|(_, v)| v).unwrap_or(Value::Null),
        SelectShape::Arrays => Value::Array(pairs.into_iter().map(|(_, v)| v).collect()),
        SelectShape::Objects => {
            let mut map = Map::new();
            for (k, v) in pairs {
                map.insert(k, v);
            }
            Value::Object(map)
        }
    })
}
