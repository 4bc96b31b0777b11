//! Records as the engine sees them: a JSON object checked against its table, held as one slot
//! per declared field, and stored as canonical JSON behind a small header so that reads can
//! serve the stored bytes without re-encoding.
//!
//! Stored value layout: `[FORMAT][version: u64 big-endian][canonical JSON object]`.
//! Canonical JSON lists the table's fields in declaration order and omits absent ones.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::schema::{FieldDef, FieldType, Scalar, TableDef};
use crate::storage::key::{self, Atom};

const FORMAT: u8 = 1;
const HEADER: usize = 9;

/// A record checked against its table: `slots[i]` is the value of `def.fields[i]`, `None` when
/// the attribute is absent. Invariant: every present value has the field's declared type.
#[derive(Debug, Clone)]
pub struct Record {
    pub(crate) def: &'static TableDef,
    pub(crate) slots: Vec<Option<Value>>,
}

impl Record {
    /// Checks a JSON object against `def`. The primary key may be absent (the caller decides
    /// whether to generate one); every other non-optional field must be present.
    pub fn from_object(def: &'static TableDef, object: Map<String, Value>) -> Result<Record> {
        let mut slots: Vec<Option<Value>> = vec![None; def.fields.len()];
        for (name, value) in object {
            let Some(i) = def.field_index(&name) else {
                let hint = if def.relationship(&name).is_some() {
                    " (it is a relationship: it is resolved, not stored)"
                } else {
                    ""
                };
                return Err(Error::invalid_record(
                    def.name,
                    name.clone(),
                    format!("unknown attribute {name}{hint}"),
                ));
            };
            check_value(def, &def.fields[i], &value)?;
            slots[i] = Some(value);
        }
        for (i, field) in def.fields.iter().enumerate() {
            if i != def.primary_key && !field.ty.optional && slots[i].is_none() {
                return Err(Error::invalid_record(
                    def.name,
                    field.name,
                    format!("missing required attribute {}", field.name),
                ));
            }
        }
        Ok(Record { def, slots })
    }

    /// Parses any JSON value that should be an object.
    pub fn from_json(def: &'static TableDef, value: Value) -> Result<Record> {
        match value {
            Value::Object(map) => Record::from_object(def, map),
            other => Err(Error::InvalidRecord {
                table: def.name,
                field: None,
                message: format!("a record must be a JSON object, not {}", json_kind(&other)),
            }),
        }
    }

    /// Reads a stored record (trusted bytes, written by this engine). Attributes the schema no
    /// longer declares are dropped; newly added optional fields are simply absent.
    pub fn from_stored_json(def: &'static TableDef, json: &[u8]) -> Result<Record> {
        let map: Map<String, Value> = serde_json::from_slice(json)
            .map_err(|e| Error::Corrupt(format!("{} record: {e}", def.name)))?;
        let mut slots: Vec<Option<Value>> = vec![None; def.fields.len()];
        for (name, value) in map {
            if let Some(i) = def.field_index(&name) {
                slots[i] = Some(value);
            }
        }
        Ok(Record { def, slots })
    }

    /// Reads only the fields marked in `wanted` from a stored record (the others stay absent):
    /// the rest of the JSON is skipped without building values. For query filters and sorts.
    pub(crate) fn from_stored_fields(
        def: &'static TableDef,
        json: &[u8],
        wanted: &[bool],
    ) -> Result<Record> {
        let mut rec = Record {
            def,
            slots: vec![None; def.fields.len()],
        };
        rec.refill_stored_fields(json, wanted)?;
        Ok(rec)
    }

    /// [`Record::from_stored_fields`] into this record's slots (every slot is reset first),
    /// so a scan reuses one record's allocation for all the records it reads.
    pub(crate) fn refill_stored_fields(&mut self, json: &[u8], wanted: &[bool]) -> Result<()> {
        use serde::de::DeserializeSeed;
        let def = self.def;
        self.slots.iter_mut().for_each(|s| *s = None);
        if fast_fields::read(def, json, wanted, &mut self.slots).is_some() {
            return Ok(());
        }
        self.slots.iter_mut().for_each(|s| *s = None);
        let mut de = serde_json::Deserializer::from_slice(json);
        partial::Fields {
            def,
            wanted,
            slots: &mut self.slots,
        }
        .deserialize(&mut de)
        .map_err(|e| Error::Corrupt(format!("{} record: {e}", def.name)))
    }

    /// [`Record::refill_stored_fields`] for the attributes `keys` names: found by their key
    /// bytes when the record allows it (see [`FieldKeys`]), else by the walk.
    pub(crate) fn refill_from(&mut self, json: &[u8], keys: &FieldKeys) -> Result<()> {
        self.refill(json, keys, None).map(drop)
    }

    /// [`Record::refill_from`], except that `span_field`, when `json` holds it as a string
    /// without escapes, is not decoded: its slot stays empty and the span of the string's
    /// bytes (between the quotes) in `json` is returned instead. `None` when the value is
    /// anything else (absent, null, escaped, not a string): then its slot holds it as usual.
    /// The span's bytes are not checked as UTF-8 here (decoding would check them): callers
    /// compare them and answer with the stored bytes as they are.
    pub(crate) fn refill_with_span(
        &mut self,
        json: &[u8],
        keys: &FieldKeys,
        span_field: usize,
    ) -> Result<Option<(usize, usize)>> {
        self.refill(json, keys, Some(span_field))
    }

    fn refill(
        &mut self,
        json: &[u8],
        keys: &FieldKeys,
        span_field: Option<usize>,
    ) -> Result<Option<(usize, usize)>> {
        if let Some(finders) = &keys.finders {
            self.slots.iter_mut().for_each(|s| *s = None);
            let mut span = None;
            let slots = &mut self.slots;
            let found = fast_fields::find_raw(json, finders, |i, start, end| {
                if span_field == Some(i)
                    && let [b'"', inner @ .., b'"'] = &json[start..end]
                    && !inner.contains(&b'\\')
                {
                    span = Some((start + 1, end - 1));
                    return Some(());
                }
                *slots.get_mut(i)? = Some(fast_fields::value_of(&json[start..end])?);
                Some(())
            });
            if found.is_some() {
                return Ok(span);
            }
        }
        self.refill_stored_fields(json, &keys.wanted)?;
        Ok(None)
    }

    pub fn def(&self) -> &'static TableDef {
        self.def
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.def
            .field_index(field)
            .and_then(|i| self.slots[i].as_ref())
    }

    pub fn primary_key(&self) -> Option<&Value> {
        self.slots[self.def.primary_key].as_ref()
    }

    /// Sets the primary key (used when generating ids and for ids taken from URLs).
    pub fn set_primary_key(&mut self, key: Value) -> Result<()> {
        let field = self.def.primary_key();
        check_value(self.def, field, &key)?;
        self.slots[self.def.primary_key] = Some(key);
        Ok(())
    }

    /// The primary key as an atom; an error when it is absent.
    pub fn key_atom(&self) -> Result<Atom> {
        let pk = self.def.primary_key();
        match self.primary_key() {
            Some(v) => Ok(field_atom(pk, v)),
            None => Err(Error::invalid_record(
                self.def.name,
                pk.name,
                format!("missing primary key {}", pk.name),
            )),
        }
    }

    /// Applies a patch: the named attributes replace (or add to) the current ones. The
    /// primary key cannot change.
    pub fn patch(&mut self, patch: Map<String, Value>) -> Result<()> {
        let pk_index = self.def.primary_key;
        for (name, value) in patch {
            let Some(i) = self.def.field_index(&name) else {
                return Err(Error::invalid_record(
                    self.def.name,
                    name.clone(),
                    format!("unknown attribute {name}"),
                ));
            };
            let field = &self.def.fields[i];
            check_value(self.def, field, &value)?;
            if i == pk_index && self.slots[i].as_ref() != Some(&value) {
                return Err(Error::invalid_record(
                    self.def.name,
                    field.name,
                    format!(
                        "the primary key {} cannot be changed by a patch",
                        field.name
                    ),
                ));
            }
            self.slots[i] = Some(value);
        }
        Ok(())
    }

    /// The canonical JSON object.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (field, slot) in self.def.fields.iter().zip(&self.slots) {
            let Some(value) = slot else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, field.name);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, value);
        }
        out.push(b'}');
    }

    /// The stored form: header + canonical JSON.
    pub fn to_stored(&self, version: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 128);
        out.push(FORMAT);
        out.extend_from_slice(&version.to_be_bytes());
        self.write_json(&mut out);
        out
    }

    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        for (field, slot) in self.def.fields.iter().zip(&self.slots) {
            if let Some(v) = slot {
                map.insert(field.name.to_owned(), v.clone());
            }
        }
        Value::Object(map)
    }

    /// The atoms indexed for field `i`: one per distinct list element, the value itself, or
    /// null when absent or an empty list.
    pub fn atoms(&self, i: usize) -> Vec<Atom> {
        value_atoms(&self.def.fields[i], self.slots[i].as_ref())
    }
}

/// Atoms of a field's value (see [`Record::atoms`]). Never empty: every record has at least
/// one entry in every index (an empty list is indexed as null), so an ordered scan of any
/// index visits every record.
pub(crate) fn value_atoms(field: &FieldDef, value: Option<&Value>) -> Vec<Atom> {
    match value {
        None | Some(Value::Null) => vec![Atom::Null],
        Some(Value::Array(items)) if field.ty.list && items.is_empty() => vec![Atom::Null],
        Some(Value::Array(items)) if field.ty.list => {
            let mut atoms: Vec<Atom> = Vec::with_capacity(items.len());
            for item in items {
                let atom = field_atom(field, item);
                if !atoms.iter().any(|a| a.cmp_value(&atom).is_eq()) {
                    atoms.push(atom);
                }
            }
            atoms
        }
        Some(v) => vec![field_atom(field, v)],
    }
}

/// Which attributes of a table's stored records a scan reads, prepared once per scan: a
/// searcher for each one's key bytes (`"name":`), so records without nested objects give
/// them up without a walk over the attributes before them.
pub(crate) struct FieldKeys {
    wanted: Vec<bool>,
    /// `None` when a wanted name would need escapes in JSON (the walk decides then).
    finders: Option<Vec<(usize, memchr::memmem::Finder<'static>)>>,
}

impl FieldKeys {
    pub(crate) fn new(def: &'static TableDef, wanted: &[bool]) -> FieldKeys {
        let finders = def
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| wanted.get(*i).copied().unwrap_or(false))
            .map(|(i, f)| {
                let name = f.name.as_bytes();
                fast_fields::plain_name(name).then(|| {
                    let needle = [b"\"", name, b"\":"].concat();
                    (i, memchr::memmem::Finder::new(&needle).into_owned())
                })
            })
            .collect();
        FieldKeys {
            wanted: wanted.to_vec(),
            finders,
        }
    }
}

impl FieldKeys {
    /// The stored JSON bytes of each wanted attribute `json` holds, found by key: `f` gets
    /// the field index and the value's span in `json` (absent attributes are not reported).
    /// `None` when the key search does not apply to this record (decode it instead).
    pub(crate) fn raw_values(
        &self,
        json: &[u8],
        f: impl FnMut(usize, usize, usize) -> Option<()>,
    ) -> Option<()> {
        fast_fields::find_raw(json, self.finders.as_deref()?, f)
    }
}

/// The atom of one (already type-checked) scalar value of `field`.
pub(crate) fn field_atom(field: &FieldDef, value: &Value) -> Atom {
    match (field.ty.scalar, value) {
        (_, Value::Null) => Atom::Null,
        (Scalar::Float { .. }, Value::Number(n)) => Atom::Float(n.as_f64().unwrap_or(f64::NAN)),
        (_, Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Atom::Int(i),
            (None, Some(u)) => Atom::from_u64(u),
            (None, None) => Atom::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        (_, Value::String(s)) => Atom::Str(s.clone()),
        (_, Value::Bool(b)) => Atom::Bool(*b),
        // Json fields are never indexed; keep a stable placeholder.
        (_, Value::Array(_) | Value::Object(_)) => Atom::Null,
    }
}

/// Splits a stored value into its version and JSON bytes.
pub fn split_stored(bytes: &[u8]) -> Result<(u64, &[u8])> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(Error::Corrupt("record header".into()));
    }
    let mut version = [0u8; 8];
    version.copy_from_slice(&bytes[1..HEADER]);
    Ok((u64::from_be_bytes(version), &bytes[HEADER..]))
}

/// The record key of a primary key atom.
pub fn record_key(pk: &Atom) -> Vec<u8> {
    key::encode_one(pk)
}

/// What kind of JSON value `v` is, for messages ("a string", "an object", ...).
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_value(def: &'static TableDef, field: &FieldDef, value: &Value) -> Result<()> {
    let ty = field.ty;
    if value.is_null() {
        if ty.optional {
            return Ok(());
        }
        return Err(Error::invalid_record(
            def.name,
            field.name,
            format!("{} must not be null (it is required)", field.name),
        ));
    }
    if ty.list {
        let Value::Array(items) = value else {
            return Err(Error::invalid_record(
                def.name,
                field.name,
                format!(
                    "Value {} in property {} must be an array",
                    short(value),
                    field.name
                ),
            ));
        };
        for item in items {
            check_scalar(def, field, ty, item)?;
        }
        return Ok(());
    }
    check_scalar(def, field, ty, value)
}

fn check_scalar(
    def: &'static TableDef,
    field: &FieldDef,
    ty: FieldType,
    value: &Value,
) -> Result<()> {
    let fail = |expect: String| {
        Err(Error::invalid_record(
            def.name,
            field.name,
            format!(
                "Value {} in property {} must be {expect}",
                short(value),
                field.name
            ),
        ))
    };
    match (ty.scalar, value) {
        (Scalar::Json, _) => Ok(()),
        (Scalar::Id | Scalar::String, Value::String(_)) => Ok(()),
        (Scalar::Id | Scalar::String, _) => fail("a string".into()),
        (Scalar::Bool, Value::Bool(_)) => Ok(()),
        (Scalar::Bool, _) => fail("a boolean".into()),
        (Scalar::Float { bits }, Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::INFINITY);
            if bits == 32 && x.is_finite() && x.abs() > f32::MAX as f64 {
                return fail("a number within the range of f32".into());
            }
            Ok(())
        }
        (Scalar::Float { .. }, _) => fail("a number".into()),
        (s @ Scalar::Int { .. }, Value::Number(n)) => {
            let (min, max) = s
                .int_range()
                .unwrap_or((i64::MIN as i128, u64::MAX as i128));
            let v = n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from));
            match v {
                Some(v) if v >= min && v <= max => Ok(()),
                _ => fail(format!("an integer (from {min} to {max})")),
            }
        }
        (Scalar::Int { .. }, _) => fail("an integer".into()),
    }
}

/// A value for an error message, shortened so that huge inputs do not make huge errors.
pub(crate) fn short(value: &Value) -> String {
    let s = value.to_string();
    if s.len() > 60 {
        let mut end = 57;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

mod fast_fields {
    //! Reads wanted top-level attributes of a stored record by walking its bytes: keys are
    //! compared in place and unwanted values skipped by bracket and quote matching, with no
    //! visitor machinery. Stored records are compact JSON written by this engine; anything
    //! unexpected (an escaped key, a malformed byte) returns `None` and the caller falls back
    //! to serde, so this only ever decides speed, never the answer. Stored records name
    //! each attribute once (the canonical writer, [`super::Record::to_json_bytes`]), so the
    //! walk stops once every wanted attribute is found.
    use serde_json::Value;

    use crate::schema::TableDef;

    pub(super) fn read(
        def: &'static TableDef,
        json: &[u8],
        wanted: &[bool],
        slots: &mut [Option<Value>],
    ) -> Option<()> {
        let mut at = skip_ws(json, 0);
        if json.get(at) != Some(&b'{') {
            return None;
        }
        at = skip_ws(json, at + 1);
        let mut missing = wanted.iter().filter(|w| **w).count();
        if json.get(at) == Some(&b'}') || missing == 0 {
            return Some(());
        }
        // The canonical writer names attributes in schema order: each key is looked for
        // from just past the previous one first.
        let mut next = 0;
        loop {
            if json.get(at) != Some(&b'"') {
                return None;
            }
            let body = &json[at + 1..];
            // The next schema field's name, compared in place (when it needs no escapes and
            // a quote follows it, it is this key); otherwise the key is found by its quote.
            let guess = def.fields.get(next).map(|f| f.name.as_bytes()).filter(|n| {
                body.get(n.len()) == Some(&b'"') && body.starts_with(n) && plain_name(n)
            });
            let (field, key_end) = match guess {
                Some(n) => (Some(next), at + 1 + n.len()),
                None => {
                    let key_end = at + 1 + memchr::memchr2(b'"', b'\\', body)?;
                    if json[key_end] != b'"' {
                        return None; // an escaped key: serde decides
                    }
                    let key = &json[at + 1..key_end];
                    let field = def.fields.iter().position(|f| f.name.as_bytes() == key);
                    (field, key_end)
                }
            };
            if let Some(i) = field {
                next = i + 1;
            }
            at = skip_ws(json, key_end + 1);
            if json.get(at) != Some(&b':') {
                return None;
            }
            let start = skip_ws(json, at + 1);
            let end = skip_value(json, start)?;
            if let Some(i) = field
                && wanted.get(i).copied().unwrap_or(false)
                && slots[i].is_none()
            {
                slots[i] = Some(value_of(&json[start..end])?);
                missing -= 1;
                if missing == 0 {
                    return Some(());
                }
            }
            at = skip_ws(json, end);
            match json.get(at) {
                Some(b',') => at = skip_ws(json, at + 1),
                Some(b'}') => return Some(()),
                _ => return None,
            }
        }
    }

    /// Finds the wanted attributes by searching for their keys (`finders`: field index and
    /// a searcher for `"name":`), handing each one found to `f` as its field index and the
    /// span of its value's bytes in `json`. Only for a record with no `{` past its first
    /// byte (not even inside a string): with no nested object, a string followed by a colon
    /// is a top-level key, and no string holds a key's bytes since every quote inside one is
    /// escaped. So a key found nowhere is an absent attribute (`f` is not called for it).
    /// `None` (the walk decides) for any other record.
    pub(super) fn find_raw(
        json: &[u8],
        finders: &[(usize, memchr::memmem::Finder<'static>)],
        mut f: impl FnMut(usize, usize, usize) -> Option<()>,
    ) -> Option<()> {
        if json.first() != Some(&b'{') || memchr::memchr(b'{', &json[1..]).is_some() {
            return None;
        }
        // Finders come in schema order, the order the canonical writer uses: each key is
        // looked for past the previous value first, then in the whole record.
        let mut from = 0;
        for (i, finder) in finders {
            let found = finder.find(&json[from..]).map(|at| from + at);
            let Some(at) = found.or_else(|| finder.find(&json[..from])) else {
                continue;
            };
            let start = skip_ws(json, at + finder.needle().len());
            let end = skip_value(json, start)?;
            f(*i, start, end)?;
            from = end;
        }
        Some(())
    }

    /// Whether a name is written in JSON as it is (no quote, backslash or control byte),
    /// so its bytes can be looked for in place.
    pub(super) fn plain_name(name: &[u8]) -> bool {
        !name.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20)
    }

    /// A value's JSON bytes as a value (scalars without serde).
    pub(super) fn value_of(raw: &[u8]) -> Option<Value> {
        Some(match raw {
            b"true" => Value::Bool(true),
            b"false" => Value::Bool(false),
            b"null" => Value::Null,
            // A string without escapes is its bytes.
            [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
                Value::String(std::str::from_utf8(inner).ok()?.to_owned())
            }
            raw => serde_json::from_slice(raw).ok()?,
        })
    }

    fn skip_ws(json: &[u8], mut at: usize) -> usize {
        while matches!(json.get(at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            at += 1;
        }
        at
    }

    /// The end of the string whose opening quote is at `at`.
    fn skip_string(json: &[u8], mut at: usize) -> Option<usize> {
        at += 1;
        loop {
            at += memchr::memchr2(b'"', b'\\', json.get(at..)?)?;
            if json[at] == b'"' {
                return Some(at + 1);
            }
            at += 2; // the backslash and the character it escapes
        }
    }

    /// The end of the value starting at `at` (not validated beyond its extent).
    fn skip_value(json: &[u8], at: usize) -> Option<usize> {
        match json.get(at)? {
            b'"' => skip_string(json, at),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut i = at;
                loop {
                    match json.get(i)? {
                        b'"' => {
                            i = skip_string(json, i)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(i + 1);
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {
                let len = json[at..]
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                    .unwrap_or(json.len() - at);
                (len > 0).then_some(at + len)
            }
        }
    }
}

mod partial {
    //! A serde visitor that fills only the wanted slots of a record.
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use serde_json::Value;

    use crate::schema::TableDef;

    pub(super) struct Fields<'a> {
        pub def: &'static TableDef,
        pub wanted: &'a [bool],
        pub slots: &'a mut Vec<Option<Value>>,
    }

    impl<'de> DeserializeSeed<'de> for Fields<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Fields<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a record object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(index) = map.next_key_seed(FieldIndex(self.def))? {
                match index {
                    Some(i) if self.wanted.get(i).copied().unwrap_or(false) => {
                        self.slots[i] = Some(map.next_value()?)
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }

    /// Maps a key to its field position without allocating.
    struct FieldIndex(&'static TableDef);

    impl<'de> DeserializeSeed<'de> for FieldIndex {
        type Value = Option<usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for FieldIndex {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an attribute name")
        }
        fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
            Ok(self.0.field_index(v))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::{FieldKeys, Record};
    use crate::schema::{FieldDef, FieldType, Scalar, TableDef};

    const fn json_field(name: &'static str) -> FieldDef {
        FieldDef {
            name,
            rust_name: name,
            ty: FieldType {
                scalar: Scalar::Json,
                optional: true,
                list: false,
            },
            indexed: false,
        }
    }

    /// Five free-form JSON attributes, two of them named with characters JSON escapes or
    /// that are not ASCII.
    pub(crate) static DEF: TableDef = TableDef {
        name: "T",
        export: None,
        fields: &[
            json_field("id"),
            json_field("a"),
            json_field("b c"),
            json_field("naïve"),
            json_field("q\"uote"),
        ],
        primary_key: 0,
        relationships: &[],
        compound_indexes: &[],
    };

    /// Every attribute, as serde reads the whole object.
    fn by_serde(json: &[u8]) -> Vec<Option<Value>> {
        Record::from_stored_json(&DEF, json).unwrap().slots
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[\"\\\\{}\\[\\],: a-zé\\n\\u{1}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("id".to_owned()),
            Just("a".to_owned()),
            Just("b c".to_owned()),
            Just("naïve".to_owned()),
            Just("q\"uote".to_owned()),
            "[a-z\"\\\\]{0,4}",
        ]
    }

    proptest! {
        /// Reading only some attributes gives exactly what serde gives for them, nested
        /// look-alike keys, escapes and all.
        #[test]
        fn wanted_fields_read_as_serde_reads_them(
            pairs in prop::collection::vec((key(), value()), 0..8),
            wanted in prop::collection::vec(any::<bool>(), 5),
        ) {
            let object: Map<String, Value> = pairs.into_iter().collect();
            let json = serde_json::to_vec(&Value::Object(object)).unwrap();
            let all = by_serde(&json);
            let some = Record::from_stored_fields(&DEF, &json, &wanted).unwrap().slots;
            let keys = FieldKeys::new(&DEF, &wanted);
            let mut found = Record::from_stored_fields(&DEF, b"{}", &wanted).unwrap();
            found.refill_from(&json, &keys).unwrap();
            for i in 0..DEF.fields.len() {
                let expected = if wanted[i] { all[i].clone() } else { None };
                prop_assert_eq!(&some[i], &expected, "field {}", DEF.fields[i].name);
                prop_assert_eq!(&found.slots[i], &expected, "field {} by key", DEF.fields[i].name);
            }
        }
    }

    #[test]
    fn unusual_layouts_still_read_correctly() {
        let wanted = [true; 5];
        for raw in [
            "{}",
            " { \"a\" : 1 , \"id\" :\"x\" } ",
            "{\"a\":{\"a\":2,\"id\":[\"}\"]},\"id\":\"\\\"}\"}",
            "{\"q\\\"uote\":true,\"a\":-1.5e3}",
            "{\"a\":[[],{},\"\\\\\"],\"b c\":null}",
            // No nested object: keys are searched for; look-alikes sit inside strings.
            "{\"id\":\"\\\"a\\\":1,\",\"a\":\"x\\\"a\\\":\",\"b c\":[\"a\",\"a\"],\"naïve\":2}",
            "{\"id\":\"\\\\\",\"a\":[true,null]}",
        ] {
            let some = Record::from_stored_fields(&DEF, raw.as_bytes(), &wanted)
                .unwrap()
                .slots;
            assert_eq!(some, by_serde(raw.as_bytes()), "{raw}");
            // Names that need no escapes are searched for by key.
            let plain = [true, true, true, true, false];
            let mut found = Record::from_stored_fields(&DEF, b"{}", &plain).unwrap();
            found
                .refill_from(raw.as_bytes(), &FieldKeys::new(&DEF, &plain))
                .unwrap();
            assert_eq!(found.slots[..4], some[..4], "{raw} by key");
            assert_eq!(found.slots[4], None);
        }
        assert_eq!(
            Record::from_stored_fields(&DEF, br#"{"a":{"x":1}}"#, &wanted)
                .unwrap()
                .slots[1],
            Some(json!({"x": 1}))
        );
        // Damage is reported, not guessed around.
        for bad in ["{\"a\":1", "[1]", "{\"a\" 1}", ""] {
            assert!(
                Record::from_stored_fields(&DEF, bad.as_bytes(), &wanted).is_err(),
                "{bad}"
            );
        }
    }
}
