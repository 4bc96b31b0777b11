//! Content negotiation and body codecs for the REST API.
//!
//! * [`response_format`] picks the response [`Format`] from an `Accept` header (q-values,
//!   media ranges, case-insensitive); [`wants_event_stream`] tells whether a client asked for
//!   Server-Sent Events.
//! * [`request_format`] maps a `Content-Type` to the body codec; [`decode_body`] turns a body
//!   into a [`serde_json::Value`] with errors that say what is wrong and where.
//! * [`encode_value`] encodes one value; [`CollectionEncoder`] streams a collection row by
//!   row (JSON, CBOR and CSV stay flat in memory; MessagePack needs its element count up
//!   front, so its rows are buffered until [`CollectionEncoder::finish`]).
//!
//! Everything goes through `serde_json::Value`, so the three binary/text formats carry
//! exactly what JSON can: CBOR/MessagePack bodies holding byte strings, extension values,
//! non-string map keys, NaN/infinite floats or integers beyond 64 bits are refused with a
//! message naming the value. Request bodies may nest arrays/maps at most [`MAX_NESTING`]
//! levels deep in every format (the same bound serde_json applies to JSON), so a hostile body
//! cannot exhaust the stack.

use std::fmt;
use std::io::ErrorKind;

use serde::de::{self, DeserializeSeed, IgnoredAny, VariantAccess, Visitor};
use serde_json::{Map, Value};

/// The deepest nesting of arrays/objects (CBOR tags count as a level) accepted in a request
/// body; one level more is refused. This is the bound serde_json enforces for JSON (its
/// "recursion limit of 128" refuses the 128th level), applied to CBOR and MessagePack too.
pub const MAX_NESTING: usize = 127;

/// Cap on capacity reserved up front from a length announced by a binary body: the announced
/// length is untrusted, so larger containers grow as their elements actually arrive.
const PREALLOCATE_MAX: usize = 1024;

/// How long a client-supplied header may be when quoted back in an error message.
const ECHO_MAX: usize = 200;

// ---- formats -------------------------------------------------------------------------------

/// A representation the REST API reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Cbor,
    MsgPack,
    Csv,
}

impl Format {
    /// Every format, in the order preferred when an `Accept` header ties.
    pub const ALL: [Format; 4] = [Format::Json, Format::Cbor, Format::MsgPack, Format::Csv];

    /// The `Content-Type` this format is served with.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Cbor => "application/cbor",
            Format::MsgPack => "application/x-msgpack",
            Format::Csv => "text/csv",
        }
    }

    /// The `(type, subtype)` pairs naming this format in an `Accept` header.
    const fn media_types(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Format::Json => &[("application", "json")],
            Format::Cbor => &[("application", "cbor")],
            Format::MsgPack => &[("application", "x-msgpack"), ("application", "msgpack")],
            Format::Csv => &[("text", "csv")],
        }
    }

    /// How specifically `range` names this format: 2 exact, 1 `type/*`, 0 `*/*`.
    fn specificity(self, range: &MediaRange<'_>) -> Option<u8> {
        if range.ty == "*" {
            return Some(0); // `*/*` (parse_entry refuses `*/x`)
        }
        for (ty, sub) in self.media_types() {
            if range.ty.eq_ignore_ascii_case(ty) {
                if range.sub == "*" {
                    return Some(1);
                }
                if range.sub.eq_ignore_ascii_case(sub) {
                    return Some(2);
                }
            }
        }
        None
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Cbor => "CBOR",
            Format::MsgPack => "MessagePack",
            Format::Csv => "CSV",
        })
    }
}

const RESPONSE_TYPES: &str =
    "application/json, application/cbor, application/x-msgpack (or application/msgpack), text/csv";
const REQUEST_TYPES: &str = "application/json (or any +json type), application/cbor, \
                             application/x-msgpack (or application/msgpack)";

/// No type in the `Accept` header can be produced (HTTP 406).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotAcceptable {
    /// Names the header and lists the supported types.
    pub message: String,
}

/// The request body's `Content-Type` cannot be read (HTTP 415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnsupportedMediaType {
    /// The media type as sent, without parameters (truncated if very long).
    pub media_type: String,
    /// Names the type and lists the accepted ones.
    pub message: String,
}

/// What is wrong with a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyErrorKind {
    /// No body (or, for JSON, only whitespace).
    Empty,
    /// A JSON body that is not UTF-8.
    InvalidUtf8,
    /// Not well-formed in its format: bad syntax, truncated, trailing data.
    Syntax,
    /// Nested deeper than [`MAX_NESTING`].
    TooDeep,
    /// Well-formed, but holds something JSON cannot (bytes, NaN, a non-string key, ...).
    Unrepresentable,
}

/// A request body that cannot be decoded; `message` says what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    pub kind: BodyErrorKind,
    pub message: String,
}

impl BodyError {
    fn new(kind: BodyErrorKind, message: impl Into<String>) -> BodyError {
        BodyError {
            kind,
            message: message.into(),
        }
    }
}

fn echo(s: &str) -> &str {
    if s.len() <= ECHO_MAX {
        return s;
    }
    let mut end = ECHO_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---- Accept ----------------------------------------------------------------------------------

/// One media range of an `Accept` header.
#[derive(Debug)]
struct MediaRange<'a> {
    ty: &'a str,
    sub: &'a str,
    q: f64,
}

enum Entry<'a> {
    /// An empty list element (`a,,b`): skipped, as RFC 9110 allows.
    Empty,
    /// Not a media range, or a bad q-value: ignored.
    Malformed,
    Range(MediaRange<'a>),
}

/// Splits at an ASCII separator outside double-quoted strings.
struct SplitUnquoted<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> SplitUnquoted<'a> {
    fn new(s: &'a str, sep: u8) -> Self {
        SplitUnquoted { rest: Some(s), sep }
    }
}

impl<'a> Iterator for SplitUnquoted<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, &b) in s.as_bytes().iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == self.sep && !quoted {
                // `sep` is ASCII, so `i` and `i + 1` are char boundaries.
                self.rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        self.rest = None;
        Some(s)
    }
}

/// An RFC 9110 token (the characters of a media type's type and subtype).
fn is_token(s: &str) -> bool {
    const PUNCTUATION: &[u8] = b"!#$%&'*+-.^_`|~";
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || PUNCTUATION.contains(&b))
}

/// A q-value: digits, at most one dot, within 0..=1 (`0.5`, `1`, `1.`, `0.125`).
fn parse_q(s: &str) -> Option<f64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let q: f64 = s.parse().ok()?;
    (0.0..=1.0).contains(&q).then_some(q)
}

fn parse_entry(raw: &str) -> Entry<'_> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Entry::Empty;
    }
    let mut parts = SplitUnquoted::new(raw, b';');
    let range = parts.next().unwrap_or_default().trim();
    let Some((ty, sub)) = range.split_once('/') else {
        return Entry::Malformed;
    };
    if !is_token(ty) || !is_token(sub) || (ty == "*" && sub != "*") {
        return Entry::Malformed;
    }
    let mut q = 1.0;
    for param in parts {
        // Parameters other than q (charset, level, accept-ext) do not change the choice.
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            match parse_q(value.trim()) {
                Some(v) => q = v,
                None => return Entry::Malformed,
            }
        }
    }
    Entry::Range(MediaRange { ty, sub, q })
}

/// The response format for an `Accept` header.
///
/// Absent, empty or all-empty-elements headers mean JSON. Each format takes the q-value of
/// the most specific range naming it (`application/cbor` over `application/*` over `*/*`;
/// among equally specific ranges the highest q). The format with the highest q > 0 wins;
/// ties go to the range listed first, then to the order JSON, CBOR, MessagePack, CSV.
/// Entries that are not media ranges or carry a malformed q-value are ignored; `q=0` excludes.
/// Both `application/x-msgpack` and `application/msgpack` select MessagePack.
pub fn response_format(accept: Option<&str>) -> Result<Format, NotAcceptable> {
    let Some(header) = accept else {
        return Ok(Format::Json);
    };
    // Per format: (specificity, q, position of the range that gave it).
    let mut best: [Option<(u8, f64, usize)>; 4] = [None; 4];
    let mut listed_any = false;
    for (pos, raw) in SplitUnquoted::new(header, b',').enumerate() {
        let range = match parse_entry(raw) {
            Entry::Empty => continue,
            Entry::Malformed => {
                listed_any = true;
                continue;
            }
            Entry::Range(r) => {
                listed_any = true;
                r
            }
        };
        for (slot, format) in best.iter_mut().zip(Format::ALL) {
            let Some(spec) = format.specificity(&range) else {
                continue;
            };
            let better = match *slot {
                None => true,
                Some((s, q, _)) => spec > s || (spec == s && range.q > q),
            };
            if better {
                *slot = Some((spec, range.q, pos));
            }
        }
    }
    if !listed_any {
        return Ok(Format::Json);
    }
    let mut chosen: Option<(Format, f64, usize)> = None;
    for (slot, format) in best.iter().zip(Format::ALL) {
        let Some((_, q, pos)) = *slot else { continue };
        if q <= 0.0 {
            continue;
        }
        let better = match chosen {
            None => true,
            Some((_, cq, cpos)) => q > cq || (q == cq && pos < cpos),
        };
        if better {
            chosen = Some((format, q, pos));
        }
    }
    chosen.map(|(format, _, _)| format).ok_or_else(|| NotAcceptable {
        message: format!(
            "none of the media types in the Accept header {:?} can be produced; supported types: {RESPONSE_TYPES}",
            echo(header)
        ),
    })
}

/// Whether the `Accept` header lists `text/event-stream` explicitly with q > 0.
pub fn wants_event_stream(accept: Option<&str>) -> bool {
    let Some(header) = accept else { return false };
    SplitUnquoted::new(header, b',').any(|raw| match parse_entry(raw) {
        Entry::Range(r) => {
            r.q > 0.0
                && r.ty.eq_ignore_ascii_case("text")
                && r.sub.eq_ignore_ascii_case("event-stream")
        }
        _ => false,
    })
}

// ---- Content-Type ----------------------------------------------------------------------------

/// The codec for a request body with this `Content-Type`.
///
/// Absent (or empty) means JSON. JSON is `application/json` or any `+json` type (parameters
/// such as `charset` are ignored: the body must be UTF-8 either way); CBOR is
/// `application/cbor` or any `+cbor` type; MessagePack is `application/x-msgpack` or
/// `application/msgpack`. Everything else (`text/plain`, `text/csv`, forms, ...) is refused.
pub fn request_format(content_type: Option<&str>) -> Result<Format, UnsupportedMediaType> {
    let Some(header) = content_type else {
        return Ok(Format::Json);
    };
    let essence = SplitUnquoted::new(header, b';')
        .next()
        .unwrap_or_default()
        .trim();
    if essence.is_empty() {
        return Ok(Format::Json);
    }
    let refuse = |why: &str| {
        let media_type = echo(essence).to_owned();
        UnsupportedMediaType {
            message: format!(
                "{why} {media_type:?}; request bodies must be one of: {REQUEST_TYPES}"
            ),
            media_type,
        }
    };
    let Some((ty, sub)) = essence.split_once('/') else {
        return Err(refuse("the Content-Type is not a media type:"));
    };
    if !is_token(ty) || !is_token(sub) {
        return Err(refuse("the Content-Type is not a media type:"));
    }
    let has_suffix = |suffix: &str| {
        sub.len() > suffix.len()
            && sub.is_char_boundary(sub.len() - suffix.len())
            && sub[sub.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    if ty.eq_ignore_ascii_case("application") {
        if sub.eq_ignore_ascii_case("json") {
            return Ok(Format::Json);
        }
        if sub.eq_ignore_ascii_case("cbor") {
            return Ok(Format::Cbor);
        }
        if sub.eq_ignore_ascii_case("x-msgpack") || sub.eq_ignore_ascii_case("msgpack") {
            return Ok(Format::MsgPack);
        }
    }
    if has_suffix("+json") {
        return Ok(Format::Json);
    }
    if has_suffix("+cbor") {
        return Ok(Format::Cbor);
    }
    Err(refuse("unsupported Content-Type"))
}

// ---- decoding --------------------------------------------------------------------------------

/// Decodes a request body into a JSON value.
///
/// JSON: UTF-8 (a leading byte-order mark is skipped), exactly one value, positions as line
/// and column. CBOR and MessagePack: exactly one data item (trailing bytes are refused),
/// positions as byte offsets; CBOR tags are looked through (tag 1 epoch times stay numbers,
/// tag 0 date strings stay strings), `undefined` becomes null, bignums that fit 64 bits
/// become integers. Nesting is bounded by [`MAX_NESTING`] in all three formats.
pub fn decode_body(format: Format, bytes: &[u8]) -> Result<Value, BodyError> {
    if bytes.is_empty() {
        return Err(BodyError::new(
            BodyErrorKind::Empty,
            "the request body is empty",
        ));
    }
    match format {
        // CSV is never a request format (request_format refuses it); read it as JSON so a
        // caller that passes it anyway gets a clear syntax error rather than a panic.
        Format::Json | Format::Csv => decode_json(bytes),
        Format::Cbor => decode_cbor(bytes),
        Format::MsgPack => decode_msgpack(bytes),
    }
}

fn too_deep_message() -> String {
    format!("the request body nests arrays/objects more than {MAX_NESTING} levels deep")
}

fn decode_json(bytes: &[u8]) -> Result<Value, BodyError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(BodyError::new(
            BodyErrorKind::Empty,
            "the request body is empty",
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        BodyError::new(
            BodyErrorKind::InvalidUtf8,
            format!(
                "the request body is not valid UTF-8 (invalid byte at offset {}); JSON bodies must be UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    serde_json::from_str(text).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            BodyError::new(
                BodyErrorKind::TooDeep,
                format!(
                    "{} (at line {} column {})",
                    too_deep_message(),
                    e.line(),
                    e.column()
                ),
            )
        } else {
            BodyError::new(
                BodyErrorKind::Syntax,
                format!("the request body is not valid JSON: {e}"),
            )
        }
    })
}

// Errors raised by the value visitor travel through the codec's `de::Error::custom` as text;
// these prefixes mark them so the kind survives (no codec produces a control character at the
// start of its own messages).
const TOO_DEEP_TAG: &str = "\u{1}deep\u{1}";
const UNREPRESENTABLE_TAG: &str = "\u{1}json\u{1}";

fn too_deep<E: de::Error>() -> E {
    E::custom(format_args!("{TOO_DEEP_TAG}{}", too_deep_message()))
}

fn unrepresentable<E: de::Error>(what: impl fmt::Display) -> E {
    E::custom(format_args!("{UNREPRESENTABLE_TAG}{what}"))
}

/// Builds the error for a CBOR/MessagePack failure at byte `pos`.
fn binary_error(format: Format, message: &str, pos: usize) -> BodyError {
    if let Some(detail) = message.strip_prefix(TOO_DEEP_TAG) {
        BodyError::new(BodyErrorKind::TooDeep, format!("{detail} (at byte {pos})"))
    } else if let Some(detail) = message.strip_prefix(UNREPRESENTABLE_TAG) {
        BodyError::new(
            BodyErrorKind::Unrepresentable,
            format!(
                "the {format} request body cannot be converted to JSON: {detail} (at byte {pos})"
            ),
        )
    } else {
        BodyError::new(
            BodyErrorKind::Syntax,
            format!("the request body is not valid {format}: {message} (at byte {pos})"),
        )
    }
}

fn truncated(format: Format, len: usize) -> BodyError {
    BodyError::new(
        BodyErrorKind::Syntax,
        format!(
            "the request body is not valid {format}: it ends in the middle of a value (after {len} bytes)"
        ),
    )
}

fn trailing(format: Format, pos: usize) -> BodyError {
    BodyError::new(
        BodyErrorKind::Syntax,
        format!(
            "the request body is not valid {format}: unexpected data after the end of the value (at byte {pos})"
        ),
    )
}

fn decode_cbor(bytes: &[u8]) -> Result<Value, BodyError> {
    let mut rest = bytes;
    let result = ciborium::de::from_reader::<Root, _>(&mut rest);
    let pos = bytes.len() - rest.len();
    match result {
        Ok(Root(value)) if rest.is_empty() => Ok(value),
        Ok(_) => Err(trailing(Format::Cbor, pos)),
        Err(ciborium::de::Error::Io(e)) if e.kind() == ErrorKind::UnexpectedEof => {
            Err(truncated(Format::Cbor, bytes.len()))
        }
        Err(ciborium::de::Error::Io(e)) => Err(binary_error(Format::Cbor, &e.to_string(), pos)),
        Err(ciborium::de::Error::Syntax(offset)) => {
            Err(binary_error(Format::Cbor, "malformed data item", offset))
        }
        Err(ciborium::de::Error::Semantic(offset, message)) => {
            Err(binary_error(Format::Cbor, &message, offset.unwrap_or(pos)))
        }
        Err(ciborium::de::Error::RecursionLimitExceeded) => Err(BodyError::new(
            BodyErrorKind::TooDeep,
            format!("{} (at byte {pos})", too_deep_message()),
        )),
    }
}

fn decode_msgpack(bytes: &[u8]) -> Result<Value, BodyError> {
    use rmp_serde::decode::Error as E;
    let mut rest = bytes;
    let result = {
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        ValueSeed { depth: 0 }.deserialize(&mut de)
    };
    let pos = bytes.len() - rest.len();
    match result {
        Ok(value) if rest.is_empty() => Ok(value),
        Ok(_) => Err(trailing(Format::MsgPack, pos)),
        Err(E::InvalidMarkerRead(e) | E::InvalidDataRead(e))
            if e.kind() == ErrorKind::UnexpectedEof =>
        {
            Err(truncated(Format::MsgPack, bytes.len()))
        }
        Err(E::TypeMismatch(marker)) => Err(binary_error(
            Format::MsgPack,
            &format!("unexpected marker {marker:?}"),
            pos.saturating_sub(1),
        )),
        Err(E::Utf8Error(e)) => Err(binary_error(
            Format::MsgPack,
            &format!("a string is not valid UTF-8 ({e})"),
            pos,
        )),
        Err(E::DepthLimitExceeded) => Err(BodyError::new(
            BodyErrorKind::TooDeep,
            format!("{} (at byte {pos})", too_deep_message()),
        )),
        Err(E::Syntax(message)) => Err(binary_error(Format::MsgPack, &message, pos)),
        Err(other) => Err(binary_error(Format::MsgPack, &other.to_string(), pos)),
    }
}

/// The top-level value, for codecs that only take `DeserializeOwned` types.
struct Root(Value);

impl<'de> serde::Deserialize<'de> for Root {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Root, D::Error> {
        ValueSeed { depth: 0 }.deserialize(deserializer).map(Root)
    }
}

/// Deserializes a JSON-compatible value nested inside `depth` containers.
#[derive(Clone, Copy)]
struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor { depth: self.depth })
    }
}

/// A map key: any value is read (bounded like the rest), then only strings are kept.
struct KeySeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        match deserializer.deserialize_any(ValueVisitor { depth: self.depth })? {
            Value::String(s) => Ok(s),
            other => Err(unrepresentable(format_args!(
                "map keys must be strings, found {}",
                describe(&other)
            ))),
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "a map".to_owned(),
    }
}

/// Builds a `serde_json::Value`, refusing what JSON cannot hold and nesting beyond
/// [`MAX_NESTING`]. The check happens before descending, so the stack stays bounded whatever
/// the input.
struct ValueVisitor {
    depth: usize,
}

impl ValueVisitor {
    /// The depth of the elements of a container opened here.
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        let inner = self.depth + 1;
        if inner > MAX_NESTING {
            Err(too_deep())
        } else {
            Ok(inner)
        }
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value JSON can represent")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        if let Ok(i) = i64::try_from(v) {
            Ok(Value::from(i))
        } else if let Ok(u) = u64::try_from(v) {
            Ok(Value::from(u))
        } else {
            Err(unrepresentable(format_args!(
                "the integer {v} does not fit in 64 bits"
            )))
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(u) => Ok(Value::from(u)),
            Err(_) => Err(unrepresentable(format_args!(
                "the integer {v} does not fit in 64 bits"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(unrepresentable(format_args!(
                "the number {v} is not finite (JSON has no NaN or infinity)"
            ))),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Err(unrepresentable(format_args!(
            "a byte string ({} bytes) has no JSON equivalent; send text instead",
            v.len()
        )))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        ValueSeed { depth: self.depth }.deserialize(deserializer)
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        _deserializer: D,
    ) -> Result<Value, D::Error> {
        // Only rmp-serde calls this, for extension values (timestamps, application types).
        Err(unrepresentable(
            "an extension value (such as a timestamp) has no JSON equivalent",
        ))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PREALLOCATE_MAX));
        while let Some(item) = seq.next_element_seed(ValueSeed { depth })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let mut object = Map::with_capacity(map.size_hint().unwrap_or(0).min(PREALLOCATE_MAX));
        while let Some(key) = map.next_key_seed(KeySeed { depth })? {
            let value = map.next_value_seed(ValueSeed { depth })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    /// ciborium presents a CBOR tag as an enum; the tag is dropped and the tagged value kept.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let (IgnoredAny, variant) = data.variant()?;
        variant.newtype_variant_seed(ValueSeed { depth })
    }
}

// ---- encoding --------------------------------------------------------------------------------

/// Encodes one value (a record, a property, an id) in `format`.
///
/// CSV: an object is a header row plus one row (nested objects flattened to dotted columns),
/// an array is one row under columns `0,1,..`, another scalar is a single cell, null is empty.
pub fn encode_value(format: Format, v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        Format::Json => write_json(&mut out, v),
        Format::Cbor => write_cbor(&mut out, v),
        Format::MsgPack => write_msgpack(&mut out, v),
        Format::Csv => match v {
            Value::Null => {}
            Value::Object(_) | Value::Array(_) => {
                let columns = columns_of(v);
                write_csv_header(&mut out, &columns);
                write_csv_row(&mut out, &columns, v);
            }
            scalar => {
                write_csv_cell(&mut out, Some(scalar));
                out.extend_from_slice(CRLF);
            }
        },
    }
    out
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // A Value always has string keys and finite numbers, and a Vec never fails to grow.
    serde_json::to_writer(&mut *out, v).expect("serializing a serde_json::Value into a Vec");
}

fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    if n < 24 {
        out.push(major | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[major | 24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(major | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(major | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The value as `f32` when that is exact, so floats take the shorter encoding losslessly.
fn exact_f32(f: f64) -> Option<f32> {
    let narrow = f as f32;
    (f64::from(narrow) == f).then_some(narrow)
}

fn write_cbor(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                cbor_head(out, 0, u);
            } else if let Some(i) = n.as_i64() {
                // Negative: CBOR stores -1 - i, which is !i in two's complement.
                cbor_head(out, 1, !i as u64);
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                match exact_f32(f) {
                    Some(narrow) => {
                        out.push(0xfa);
                        out.extend_from_slice(&narrow.to_be_bytes());
                    }
                    None => {
                        out.push(0xfb);
                        out.extend_from_slice(&f.to_be_bytes());
                    }
                }
            }
        }
        Value::String(s) => {
            cbor_head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            cbor_head(out, 4, items.len() as u64);
            for item in items {
                write_cbor(out, item);
            }
        }
        Value::Object(map) => {
            cbor_head(out, 5, map.len() as u64);
            for (k, item) in map {
                cbor_head(out, 3, k.len() as u64);
                out.extend_from_slice(k.as_bytes());
                write_cbor(out, item);
            }
        }
    }
}

/// MessagePack lengths are at most 32 bits; nothing this server holds comes near 4 GiB.
fn len32(n: usize) -> u32 {
    debug_assert!(u32::try_from(n).is_ok(), "MessagePack length over 32 bits");
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Writes a MessagePack length with the fix form below `fix_limit`, then 8/16/32-bit forms.
fn msgpack_len(out: &mut Vec<u8>, n: usize, fix: u8, fix_limit: usize, wide: [Option<u8>; 3]) {
    let n = len32(n);
    let [m8, m16, m32] = wide;
    if (n as usize) < fix_limit {
        out.push(fix | n as u8);
    } else if let (Some(m), Ok(n)) = (m8, u8::try_from(n)) {
        out.extend_from_slice(&[m, n]);
    } else if let (Some(m), Ok(n)) = (m16, u16::try_from(n)) {
        out.push(m);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(m32.unwrap_or(0xc1));
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn msgpack_str(out: &mut Vec<u8>, s: &str) {
    msgpack_len(out, s.len(), 0xa0, 32, [Some(0xd9), Some(0xda), Some(0xdb)]);
    out.extend_from_slice(s.as_bytes());
}

fn msgpack_array_head(out: &mut Vec<u8>, n: usize) {
    msgpack_len(out, n, 0x90, 16, [None, Some(0xdc), Some(0xdd)]);
}

fn write_msgpack(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u < 128 {
                    out.push(u as u8);
                } else if let Ok(u) = u8::try_from(u) {
                    out.extend_from_slice(&[0xcc, u]);
                } else if let Ok(u) = u16::try_from(u) {
                    out.push(0xcd);
                    out.extend_from_slice(&u.to_be_bytes());
                } else if let Ok(u) = u32::try_from(u) {
                    out.push(0xce);
                    out.extend_from_slice(&u.to_be_bytes());
                } else {
                    out.push(0xcf);
                    out.extend_from_slice(&u.to_be_bytes());
                }
            } else if let Some(i) = n.as_i64() {
                // Negative (non-negative integers took the branch above).
                if i >= -32 {
                    out.push(i as u8); // negative fixint 0xe0..=0xff
                } else if let Ok(i) = i8::try_from(i) {
                    out.extend_from_slice(&[0xd0, i as u8]);
                } else if let Ok(i) = i16::try_from(i) {
                    out.push(0xd1);
                    out.extend_from_slice(&i.to_be_bytes());
                } else if let Ok(i) = i32::try_from(i) {
                    out.push(0xd2);
                    out.extend_from_slice(&i.to_be_bytes());
                } else {
                    out.push(0xd3);
                    out.extend_from_slice(&i.to_be_bytes());
                }
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                match exact_f32(f) {
                    Some(narrow) => {
                        out.push(0xca);
                        out.extend_from_slice(&narrow.to_be_bytes());
                    }
                    None => {
                        out.push(0xcb);
                        out.extend_from_slice(&f.to_be_bytes());
                    }
                }
            }
        }
        Value::String(s) => msgpack_str(out, s),
        Value::Array(items) => {
            msgpack_array_head(out, items.len());
            for item in items {
                write_msgpack(out, item);
            }
        }
        Value::Object(map) => {
            msgpack_len(out, map.len(), 0x80, 16, [None, Some(0xde), Some(0xdf)]);
            for (k, item) in map {
                msgpack_str(out, k);
                write_msgpack(out, item);
            }
        }
    }
}

// ---- CSV -------------------------------------------------------------------------------------

const CRLF: &[u8] = b"\r\n";

/// The columns a row implies: an object's keys in order, nested objects (at any depth)
/// flattened to dotted names; `0..n` for an array; `value` for anything else.
fn columns_of(row: &Value) -> Vec<String> {
    match row {
        Value::Object(map) => {
            let mut columns = Vec::new();
            flatten_columns(map, &mut String::new(), &mut columns);
            columns
        }
        Value::Array(items) => (0..items.len()).map(|i| i.to_string()).collect(),
        _ => vec!["value".to_owned()],
    }
}

fn flatten_columns(map: &Map<String, Value>, prefix: &mut String, columns: &mut Vec<String>) {
    for (key, value) in map {
        let len = prefix.len();
        if len > 0 {
            prefix.push('.');
        }
        prefix.push_str(key);
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten_columns(inner, prefix, columns),
            _ => columns.push(prefix.clone()),
        }
        prefix.truncate(len);
    }
}

/// Finds a dotted column in an object: an exact key first, else a key before some dot whose
/// object holds the rest (so keys that themselves contain dots still resolve).
fn resolve<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    if let Some(v) = map.get(name) {
        return Some(v);
    }
    for (i, _) in name.match_indices('.') {
        if let Some(Value::Object(inner)) = map.get(&name[..i])
            && let Some(v) = resolve(inner, &name[i + 1..])
        {
            return Some(v);
        }
    }
    None
}

/// One field, quoted per RFC 4180 when it holds a comma, a quote or a line break. The empty
/// string is written `""` so it stays distinct from a missing or null value (an empty field).
fn write_csv_field(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.extend_from_slice(b"\"\"");
    } else if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        out.push(b'"');
        for part in s.split_inclusive('"') {
            out.extend_from_slice(part.as_bytes());
            if part.ends_with('"') {
                out.push(b'"');
            }
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn write_csv_cell(out: &mut Vec<u8>, v: Option<&Value>) {
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => write_csv_field(out, s),
        Some(Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Value::Number(n)) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{n}");
        }
        Some(nested) => {
            // Arrays (and objects where the header expected a scalar) become JSON text.
            let mut json = Vec::new();
            write_json(&mut json, nested);
            write_csv_field(out, &String::from_utf8_lossy(&json));
        }
    }
}

fn write_csv_header(out: &mut Vec<u8>, columns: &[String]) {
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_csv_field(out, column);
    }
    out.extend_from_slice(CRLF);
}

/// A row under `columns`: objects by (dotted) name, arrays by index, a bare value in the
/// first column. Keys not in the header are left out; missing ones are empty fields.
fn write_csv_row(out: &mut Vec<u8>, columns: &[String], row: &Value) {
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let cell = match row {
            Value::Object(map) => resolve(map, column),
            Value::Array(items) => column.parse::<usize>().ok().and_then(|i| items.get(i)),
            scalar => (i == 0).then_some(scalar),
        };
        write_csv_cell(out, cell);
    }
    if columns.is_empty() {
        // A row of an empty object under an empty header: keep one line per row.
        out.extend_from_slice(b"\"\"");
    }
    out.extend_from_slice(CRLF);
}

// ---- collections -----------------------------------------------------------------------------

/// The longest MessagePack array header (`0xdd` and a 32-bit length).
const MSGPACK_HEAD_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    New,
    Open,
    Finished,
}

/// Encodes a collection row by row into caller-owned buffers, so a response can stream.
///
/// Call [`begin`](Self::begin), then [`push_value`](Self::push_value) /
/// [`push_json_bytes`](Self::push_json_bytes) per row, then [`finish`](Self::finish); the
/// caller may drain `out` between calls. (`begin` is implied by the first push or by `finish`,
/// so every sequence yields a complete document.)
///
/// * JSON: `[` rows joined by `,` `]`; `push_json_bytes` copies the row verbatim.
/// * CBOR: an indefinite-length array (`0x9f` .. `0xff`), so nothing is held back.
/// * MessagePack: arrays carry their length up front, so rows are **buffered** inside the
///   encoder and everything is written by `finish`: MessagePack collections are not streamed.
/// * CSV (RFC 4180 quoting, CRLF line ends): a header row, then one line per row. The columns
///   come from [`with_columns`](Self::with_columns) (header written by `begin`, even for no
///   rows) or else from the first row: its keys in order with nested objects flattened to
///   dotted names (`category.name`, at any depth); `value` for bare values; `0,1,..` for
///   arrays. Arrays inside rows become a JSON text cell; missing keys and nulls are empty
///   fields; keys outside the header are left out. No rows and no columns: empty output.
pub struct CollectionEncoder {
    format: Format,
    stage: Stage,
    rows: usize,
    /// MessagePack rows awaiting their array header, after [`MSGPACK_HEAD_MAX`] bytes kept
    /// free for it.
    pending: Vec<u8>,
    /// CSV header; `None` until given or taken from the first row.
    columns: Option<Vec<String>>,
}

impl CollectionEncoder {
    pub fn new(format: Format) -> CollectionEncoder {
        CollectionEncoder {
            format,
            stage: Stage::New,
            rows: 0,
            pending: Vec::new(),
            columns: None,
        }
    }

    /// For CSV, fixes the header (dotted names reach into nested objects). Other formats
    /// ignore the columns.
    pub fn with_columns(format: Format, columns: Vec<String>) -> CollectionEncoder {
        CollectionEncoder {
            columns: Some(columns),
            ..CollectionEncoder::new(format)
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if self.stage != Stage::New {
            return;
        }
        self.stage = Stage::Open;
        match self.format {
            Format::Json => out.push(b'['),
            Format::Cbor => out.push(0x9f),
            Format::MsgPack => {}
            Format::Csv => {
                if let Some(columns) = &self.columns {
                    write_csv_header(out, columns);
                }
            }
        }
    }

    /// Pushes a row that is already JSON text (as stored). JSON copies it verbatim; other
    /// formats parse it first. Text that does not parse becomes a null row (and is logged).
    pub fn push_json_bytes(&mut self, json: &[u8], out: &mut Vec<u8>) {
        if self.format == Format::Json {
            if !self.open_row(out) {
                return;
            }
            out.extend_from_slice(json);
            return;
        }
        match serde_json::from_slice::<Value>(json) {
            Ok(v) => self.push_value(&v, out),
            Err(e) => {
                tracing::error!(error = %e, "a stored row is not valid JSON; encoding it as null");
                self.push_value(&Value::Null, out);
            }
        }
    }

    pub fn push_value(&mut self, v: &Value, out: &mut Vec<u8>) {
        if !self.open_row(out) {
            return;
        }
        match self.format {
            Format::Json => write_json(out, v),
            Format::Cbor => write_cbor(out, v),
            Format::MsgPack => {
                if self.pending.is_empty() {
                    self.pending.resize(MSGPACK_HEAD_MAX, 0);
                }
                write_msgpack(&mut self.pending, v);
            }
            Format::Csv => {
                let columns = self.columns.get_or_insert_with(|| {
                    let columns = columns_of(v);
                    write_csv_header(out, &columns);
                    columns
                });
                write_csv_row(out, columns, v);
            }
        }
    }

    /// Ends the collection. Further pushes are ignored.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.begin(out);
        if self.stage == Stage::Finished {
            return;
        }
        self.stage = Stage::Finished;
        match self.format {
            Format::Json => out.push(b']'),
            Format::Cbor => out.push(0xff),
            Format::MsgPack => {
                let mut head = Vec::with_capacity(MSGPACK_HEAD_MAX);
                msgpack_array_head(&mut head, self.rows);
                let mut rows = std::mem::take(&mut self.pending);
                if rows.is_empty() {
                    out.extend_from_slice(&head);
                    return;
                }
                // The header goes into the space kept free before the rows, so the usual
                // case (an empty `out`) hands the buffer over without copying it.
                let start = MSGPACK_HEAD_MAX - head.len();
                rows[start..MSGPACK_HEAD_MAX].copy_from_slice(&head);
                if out.is_empty() {
                    rows.drain(..start);
                    *out = rows;
                } else {
                    out.extend_from_slice(&rows[start..]);
                }
            }
            Format::Csv => {}
        }
    }

    /// Starts a row: opens the collection if needed and writes the JSON separator. False
    /// once finished.
    fn open_row(&mut self, out: &mut Vec<u8>) -> bool {
        self.begin(out);
        if self.stage == Stage::Finished {
            debug_assert!(false, "row pushed after finish");
            return false;
        }
        if self.format == Format::Json && self.rows > 0 {
            out.push(b',');
        }
        self.rows += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn accept(h: &str) -> Result<Format, NotAcceptable> {
        response_format(Some(h))
    }

    fn record() -> Value {
        json!({
            "id": "prod-00001",
            "name": "Lamp, \"deluxe\"\nedition",
            "price": 80.18,
            "half": 0.5,
            "stock": -3,
            "big": u64::MAX,
            "small": i64::MIN,
            "inStock": true,
            "note": null,
            "tags": ["a", "b", 1],
            "category": {"id": "home", "name": "Home", "meta": {"depth": 2, "list": [1, {"x": 1.5}]}},
            "empty": {},
            "unicode": "héllo ✓ 𝄞"
        })
    }

    fn cbor_of(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    fn cbor_decode(bytes: &[u8]) -> Value {
        ciborium::from_reader(bytes).unwrap()
    }

    fn msgpack_decode(bytes: &[u8]) -> Value {
        rmp_serde::from_slice(bytes).unwrap()
    }

    fn err(format: Format, bytes: &[u8]) -> BodyError {
        match decode_body(format, bytes) {
            Ok(v) => panic!("{format} body {bytes:02x?} decoded to {v}"),
            Err(e) => e,
        }
    }

    fn collection(format: Format, rows: &[Value], json_bytes: bool) -> Vec<u8> {
        let mut encoder = CollectionEncoder::new(format);
        let mut all = Vec::new();
        let mut out = Vec::new();
        encoder.begin(&mut out);
        for row in rows {
            if json_bytes {
                encoder.push_json_bytes(&serde_json::to_vec(row).unwrap(), &mut out);
            } else {
                encoder.push_value(row, &mut out);
            }
            all.append(&mut out); // the caller drains between rows
        }
        encoder.finish(&mut out);
        all.append(&mut out);
        all
    }

    fn csv_text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    // ---- Accept ----

    #[test]
    fn content_types() {
        assert_eq!(Format::Json.content_type(), "application/json");
        assert_eq!(Format::Cbor.content_type(), "application/cbor");
        assert_eq!(Format::MsgPack.content_type(), "application/x-msgpack");
        assert_eq!(Format::Csv.content_type(), "text/csv");
    }

    #[test]
    fn accept_examples_observed_on_harper() {
        assert_eq!(accept("text/csv;q=0.5, application/json"), Ok(Format::Json));
        assert_eq!(accept("*/*"), Ok(Format::Json));
        assert_eq!(response_format(None), Ok(Format::Json));
        assert_eq!(accept("text/csv"), Ok(Format::Csv));
        assert_eq!(accept("application/cbor"), Ok(Format::Cbor));
        assert_eq!(accept("application/x-msgpack"), Ok(Format::MsgPack));
        for refused in ["text/html", "image/png", "text/plain", "text/yaml"] {
            let e = accept(refused).unwrap_err();
            assert!(e.message.contains(refused), "{e}");
            for listed in [
                "application/json",
                "application/cbor",
                "application/x-msgpack",
                "text/csv",
            ] {
                assert!(e.message.contains(listed), "{e}");
            }
        }
    }

    #[test]
    fn accept_is_better_than_harper_for_msgpack() {
        assert_eq!(accept("application/msgpack"), Ok(Format::MsgPack));
    }

    #[test]
    fn accept_absent_or_empty_is_json() {
        assert_eq!(accept(""), Ok(Format::Json));
        assert_eq!(accept("   "), Ok(Format::Json));
        assert_eq!(accept(" , ,"), Ok(Format::Json));
    }

    #[test]
    fn accept_ranges_and_case() {
        assert_eq!(accept("application/*"), Ok(Format::Json));
        assert_eq!(accept("text/*"), Ok(Format::Csv));
        assert_eq!(accept("APPLICATION/CBOR"), Ok(Format::Cbor));
        assert_eq!(accept("Text/CSV; Q=1"), Ok(Format::Csv));
        assert_eq!(accept("text/html, */*;q=0.1"), Ok(Format::Json));
        assert_eq!(accept("application/json; charset=utf-8"), Ok(Format::Json));
        assert_eq!(
            accept("application/json;q=0.9;charset=utf-8, text/csv"),
            Ok(Format::Csv)
        );
        // The more specific range decides, whichever order they come in.
        assert_eq!(
            accept("application/*;q=0, application/cbor"),
            Ok(Format::Cbor)
        );
        assert_eq!(
            accept("application/cbor, application/*;q=0"),
            Ok(Format::Cbor)
        );
        assert_eq!(accept("*/*;q=0.1, text/*;q=0"), Ok(Format::Json));
        assert_eq!(accept("text/*;q=0, */*"), Ok(Format::Json));
        assert_eq!(accept("application/*;q=0, */*"), Ok(Format::Csv));
    }

    #[test]
    fn accept_q_values() {
        assert_eq!(
            accept("application/json;q=0.2, application/cbor;q=0.8"),
            Ok(Format::Cbor)
        );
        assert_eq!(accept("application/json;q=0, */*"), Ok(Format::Cbor));
        assert_eq!(accept("text/csv;q=0.001"), Ok(Format::Csv));
        assert_eq!(accept("text/csv;q=1."), Ok(Format::Csv));
        assert_eq!(accept("text/csv;q=1.000"), Ok(Format::Csv));
        assert!(accept("application/json;q=0").is_err());
        assert!(accept("*/*;q=0").is_err());
        assert!(accept("application/json;q=0.000").is_err());
    }

    #[test]
    fn accept_ties_go_to_header_order_then_json() {
        assert_eq!(accept("text/csv, application/json"), Ok(Format::Csv));
        assert_eq!(
            accept("application/cbor;q=0.5, text/csv;q=0.5"),
            Ok(Format::Cbor)
        );
        assert_eq!(
            accept("text/csv;q=0.5, application/cbor;q=0.5"),
            Ok(Format::Csv)
        );
        assert_eq!(
            accept("application/x-msgpack, application/json"),
            Ok(Format::MsgPack)
        );
        // One range matching several formats: JSON first, then CBOR, MessagePack, CSV.
        assert_eq!(accept("application/*"), Ok(Format::Json));
        assert_eq!(
            accept("application/json;q=0, application/*"),
            Ok(Format::Cbor)
        );
        assert_eq!(
            accept("application/json;q=0, application/cbor;q=0, application/*"),
            Ok(Format::MsgPack)
        );
    }

    #[test]
    fn accept_malformed_entries_are_ignored() {
        assert_eq!(
            accept("application/cbor;q=abc, text/csv;q=0.1"),
            Ok(Format::Csv)
        );
        assert!(accept("application/cbor;q=abc").is_err());
        assert!(accept("application/cbor;q=1.5").is_err());
        assert!(accept("application/cbor;q=-0").is_err());
        assert!(accept("application/cbor;q=.5").is_err());
        assert!(accept("application/cbor;q=0x1").is_err());
        assert!(accept("application/cbor;q=NaN").is_err());
        assert!(accept("application/cbor;q=").is_err());
        assert!(accept("garbage").is_err());
        assert!(accept("*/json").is_err());
        assert!(accept("application/").is_err());
        assert!(accept("/json").is_err());
        assert!(accept("application /json").is_err());
        assert_eq!(accept("garbage, text/csv"), Ok(Format::Csv));
        assert_eq!(accept("text/csv;level"), Ok(Format::Csv)); // a parameter without a value
    }

    #[test]
    fn accept_quoted_parameters_may_hold_separators() {
        assert_eq!(
            accept(r#"text/csv;foo="a,b;q=0", application/cbor;q=0.5"#),
            Ok(Format::Csv)
        );
        assert_eq!(
            accept(r#"text/html;x="\",", application/cbor"#),
            Ok(Format::Cbor)
        );
    }

    #[test]
    fn not_acceptable_message_is_bounded() {
        let header = "x/y,".repeat(1000);
        let e = accept(&header).unwrap_err();
        assert!(e.message.len() < 600, "{}", e.message.len());
        let e = accept(&"é".repeat(300)).unwrap_err();
        assert!(e.message.contains("supported types"));
    }

    #[test]
    fn event_stream() {
        assert!(wants_event_stream(Some("text/event-stream")));
        assert!(wants_event_stream(Some(
            "application/json, TEXT/Event-Stream;q=0.2"
        )));
        assert!(!wants_event_stream(Some("text/event-stream;q=0")));
        assert!(!wants_event_stream(Some("*/*")));
        assert!(!wants_event_stream(Some("text/*")));
        assert!(!wants_event_stream(Some("text/event-stream;q=x")));
        assert!(!wants_event_stream(None));
        assert!(!wants_event_stream(Some("")));
        // Alone, it is not a body format.
        assert!(accept("text/event-stream").is_err());
    }

    // ---- Content-Type ----

    #[test]
    fn request_formats() {
        assert_eq!(request_format(None), Ok(Format::Json));
        assert_eq!(request_format(Some("")), Ok(Format::Json));
        assert_eq!(request_format(Some("application/json")), Ok(Format::Json));
        assert_eq!(
            request_format(Some("application/json; charset=UTF-8")),
            Ok(Format::Json)
        );
        assert_eq!(
            request_format(Some("Application/JSON;charset=latin1")),
            Ok(Format::Json)
        );
        assert_eq!(
            request_format(Some("application/merge-patch+json")),
            Ok(Format::Json)
        );
        assert_eq!(
            request_format(Some("application/vnd.api+JSON")),
            Ok(Format::Json)
        );
        assert_eq!(request_format(Some("application/cbor")), Ok(Format::Cbor));
        assert_eq!(
            request_format(Some("application/x-msgpack")),
            Ok(Format::MsgPack)
        );
        assert_eq!(
            request_format(Some("application/msgpack")),
            Ok(Format::MsgPack)
        );
    }

    #[test]
    fn request_formats_refused() {
        for refused in [
            "text/plain",
            "text/csv",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/x-foo",
            "application/+json",
            "text/html",
        ] {
            let e = request_format(Some(refused)).unwrap_err();
            let essence = refused.split(';').next().unwrap();
            assert_eq!(e.media_type, essence);
            assert!(e.message.contains(essence), "{e}");
            assert!(e.message.contains("application/json"), "{e}");
            assert!(e.message.contains("application/cbor"), "{e}");
            assert!(e.message.contains("application/x-msgpack"), "{e}");
        }
        let e = request_format(Some("nonsense")).unwrap_err();
        assert!(e.message.contains("not a media type"), "{e}");
    }

    // ---- decoding: JSON ----

    #[test]
    fn empty_bodies() {
        for format in Format::ALL {
            let e = err(format, b"");
            assert_eq!(e.kind, BodyErrorKind::Empty);
            assert_eq!(e.message, "the request body is empty");
        }
        assert_eq!(err(Format::Json, b" \r\n\t").kind, BodyErrorKind::Empty);
        assert_eq!(
            err(Format::Json, b"\xEF\xBB\xBF").kind,
            BodyErrorKind::Empty
        );
    }

    #[test]
    fn json_bodies() {
        let v = decode_body(
            Format::Json,
            br#"{"b":1,"a":[true,null,"x"],"c":{"d":2.5}}"#,
        )
        .unwrap();
        assert_eq!(v, json!({"b":1,"a":[true,null,"x"],"c":{"d":2.5}}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "a", "c"], "attribute order is kept");
        assert_eq!(
            decode_body(Format::Json, b"\xEF\xBB\xBF[1]").unwrap(),
            json!([1])
        );
        assert_eq!(
            decode_body(Format::Json, b" \"hello\" ").unwrap(),
            json!("hello")
        );
    }

    #[test]
    fn json_invalid_utf8_names_the_offset() {
        let e = err(Format::Json, b"{\"a\":\"\xff\"}");
        assert_eq!(e.kind, BodyErrorKind::InvalidUtf8);
        assert!(e.message.contains("offset 6"), "{e}");
    }

    #[test]
    fn json_syntax_errors_name_line_and_column() {
        let e = err(Format::Json, b"{not json");
        assert_eq!(e.kind, BodyErrorKind::Syntax);
        assert!(e.message.contains("not valid JSON"), "{e}");
        assert!(e.message.contains("line 1 column 2"), "{e}");
        let e = err(Format::Json, b"{\n  \"a\": x\n}");
        assert!(e.message.contains("line 2 column 8"), "{e}");
        let e = err(Format::Json, br#"{"a":"#);
        assert!(e.message.contains("EOF"), "{e}");
        let e = err(Format::Json, b"{} x");
        assert!(e.message.contains("trailing"), "{e}");
    }

    // ---- decoding: CBOR ----

    #[test]
    fn cbor_round_trip_of_a_nested_record() {
        let v = record();
        assert_eq!(decode_body(Format::Cbor, &cbor_of(&v)).unwrap(), v);
        let ours = encode_value(Format::Cbor, &v);
        assert_eq!(cbor_decode(&ours), v);
        assert_eq!(decode_body(Format::Cbor, &ours).unwrap(), v);
        let keys: Vec<String> = decode_body(Format::Cbor, &ours)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let expected: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn cbor_forms() {
        let d = |b: &[u8]| decode_body(Format::Cbor, b).unwrap();
        assert_eq!(d(&[0x9f, 0x01, 0x02, 0xff]), json!([1, 2])); // indefinite array
        assert_eq!(d(&[0xbf, 0x61, b'a', 0x01, 0xff]), json!({"a": 1})); // indefinite map
        assert_eq!(d(&[0x7f, 0x61, b'a', 0x61, b'b', 0xff]), json!("ab")); // chunked text
        assert_eq!(d(&[0xf7]), Value::Null); // undefined
        assert_eq!(d(&[0xf9, 0x3e, 0x00]), json!(1.5)); // half float
        assert_eq!(
            d(&[0xc1, 0x1a, 0x5f, 0x5e, 0x10, 0x00]),
            json!(1_600_000_000u64)
        ); // tag 1
        assert_eq!(d(&[0xc0, 0x61, b'x']), json!("x")); // tag 0
        assert_eq!(d(&[0xc2, 0x41, 0x05]), json!(5)); // small bignum
        assert_eq!(
            d(&[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            json!(i64::MIN)
        );
    }

    #[test]
    fn cbor_values_json_cannot_hold() {
        let cases: [(&[u8], &str); 7] = [
            (&[0x43, 1, 2, 3], "byte string (3 bytes)"),
            (&[0xa1, 0x61, b'a', 0x43, 1, 2, 3], "byte string"),
            (&[0xf9, 0x7e, 0x00], "NaN"),
            (&[0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0], "not finite"),
            (
                &[0xa1, 0x01, 0x61, b'a'],
                "map keys must be strings, found the number 1",
            ),
            (
                &[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                "does not fit in 64 bits",
            ),
            (
                &[0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                "does not fit in 64 bits",
            ),
        ];
        for (bytes, expected) in cases {
            let e = err(Format::Cbor, bytes);
            assert_eq!(e.kind, BodyErrorKind::Unrepresentable, "{e}");
            assert!(e.message.contains(expected), "{e}");
            assert!(e.message.contains("CBOR"), "{e}");
            assert!(e.message.contains("at byte"), "{e}");
        }
    }

    #[test]
    fn cbor_syntax_errors() {
        let e = err(Format::Cbor, &[0x82, 0x01]);
        assert_eq!(e.kind, BodyErrorKind::Syntax);
        assert!(e.message.contains("ends in the middle"), "{e}");
        let e = err(Format::Cbor, &[0x01, 0x02]);
        assert!(
            e.message.contains("after the end of the value (at byte 1)"),
            "{e}"
        );
        let e = err(Format::Cbor, &[0x62, 0xff, 0xfe]);
        assert_eq!(e.kind, BodyErrorKind::Syntax, "{e}");
        let e = err(Format::Cbor, &[0xff]);
        assert_eq!(e.kind, BodyErrorKind::Syntax, "{e}");
        let e = err(Format::Cbor, &[0x1c]); // reserved additional information
        assert_eq!(e.kind, BodyErrorKind::Syntax, "{e}");
        assert!(e.message.contains("not valid CBOR"), "{e}");
    }

    // ---- decoding: MessagePack ----

    #[test]
    fn msgpack_round_trip_of_a_nested_record() {
        let v = record();
        assert_eq!(
            decode_body(Format::MsgPack, &rmp_serde::to_vec(&v).unwrap()).unwrap(),
            v
        );
        let ours = encode_value(Format::MsgPack, &v);
        assert_eq!(msgpack_decode(&ours), v);
        assert_eq!(decode_body(Format::MsgPack, &ours).unwrap(), v);
    }

    #[test]
    fn msgpack_forms() {
        let d = |b: &[u8]| decode_body(Format::MsgPack, b).unwrap();
        assert_eq!(d(&[0xca, 0x3f, 0xc0, 0x00, 0x00]), json!(1.5)); // float 32
        assert_eq!(d(&[0xc0]), Value::Null);
        assert_eq!(
            d(&[0x82, 0xa1, b'b', 0x01, 0xa1, b'a', 0xe0]),
            json!({"b": 1, "a": -32})
        );
        assert_eq!(
            d(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            json!(u64::MAX)
        );
    }

    #[test]
    fn msgpack_values_json_cannot_hold() {
        let mut nan = vec![0xcb];
        nan.extend_from_slice(&f64::NAN.to_be_bytes());
        let cases: [(&[u8], &str); 5] = [
            (&[0xc4, 0x03, 1, 2, 3], "byte string (3 bytes)"),
            (&nan, "NaN"),
            (
                &[0x81, 0x01, 0xa1, b'a'],
                "map keys must be strings, found the number 1",
            ),
            (
                &[0x81, 0x90, 0xa1, b'a'],
                "map keys must be strings, found an array",
            ),
            (&[0xd6, 0xff, 0, 0, 0, 1], "extension value"),
        ];
        for (bytes, expected) in cases {
            let e = err(Format::MsgPack, bytes);
            assert_eq!(e.kind, BodyErrorKind::Unrepresentable, "{e}");
            assert!(e.message.contains(expected), "{e}");
            assert!(e.message.contains("MessagePack"), "{e}");
        }
    }

    #[test]
    fn msgpack_syntax_errors() {
        let e = err(Format::MsgPack, &[0x92, 0x01]);
        assert_eq!(e.kind, BodyErrorKind::Syntax);
        assert!(e.message.contains("ends in the middle"), "{e}");
        let e = err(Format::MsgPack, &[0x01, 0x02]);
        assert!(
            e.message.contains("after the end of the value (at byte 1)"),
            "{e}"
        );
        let e = err(Format::MsgPack, &[0x91, 0xc1]);
        assert_eq!(e.kind, BodyErrorKind::Syntax, "{e}");
        assert!(e.message.contains("at byte 1"), "{e}");
        let e = err(Format::MsgPack, &[0xa2, 0xff, 0xfe]);
        assert_eq!(e.kind, BodyErrorKind::Syntax, "{e}");
        assert!(e.message.contains("UTF-8"), "{e}");
        let e = err(Format::MsgPack, &[0xdd, 0xff, 0xff, 0xff, 0xff]); // huge announced array
        assert!(e.message.contains("ends in the middle"), "{e}");
    }

    // ---- nesting ----

    fn nested(format: Format, levels: usize) -> Vec<u8> {
        match format {
            Format::Json => {
                format!("{}null{}", "[".repeat(levels), "]".repeat(levels)).into_bytes()
            }
            Format::Cbor => [vec![0x81; levels], vec![0xf6]].concat(),
            Format::MsgPack => [vec![0x91; levels], vec![0xc0]].concat(),
            Format::Csv => unreachable!(),
        }
    }

    #[test]
    fn nesting_limit_is_the_same_for_every_format() {
        for format in [Format::Json, Format::Cbor, Format::MsgPack] {
            let ok = decode_body(format, &nested(format, MAX_NESTING)).unwrap();
            let mut depth = 0;
            let mut cur = &ok;
            while let Value::Array(items) = cur {
                depth += 1;
                cur = &items[0];
            }
            assert_eq!(depth, MAX_NESTING);
            let e = err(format, &nested(format, MAX_NESTING + 1));
            assert_eq!(e.kind, BodyErrorKind::TooDeep, "{format}: {e}");
            assert!(e.message.contains("more than 127 levels deep"), "{e}");
        }
        assert!(
            err(Format::Json, &nested(Format::Json, 128))
                .message
                .contains("line 1 column 128")
        );
        assert!(
            err(Format::Cbor, &nested(Format::Cbor, 128))
                .message
                .contains("at byte 128")
        );
        assert!(
            err(Format::MsgPack, &nested(Format::MsgPack, 128))
                .message
                .contains("at byte 128")
        );
    }

    #[test]
    fn hostile_nesting_is_refused_without_a_crash() {
        const N: usize = 100_000;
        let bodies: Vec<(Format, Vec<u8>)> = vec![
            (Format::Json, vec![b'['; N]),
            (Format::Json, b"{\"a\":".repeat(N)),
            (Format::Cbor, vec![0x81; N]),
            (Format::Cbor, vec![0x9f; N]),
            (Format::Cbor, [0xa1, 0x61, b'a'].repeat(N)),
            (Format::Cbor, vec![0xc6; N]), // tags
            (Format::Cbor, [vec![0xa1], vec![0x81; N]].concat()), // inside a map key
            (Format::Cbor, vec![0x81; 1 << 20]),
            (Format::MsgPack, vec![0x91; N]),
            (Format::MsgPack, [0x81, 0xa1, b'a'].repeat(N)),
            (Format::MsgPack, [vec![0x81], vec![0x91; N]].concat()), // inside a map key
            (Format::MsgPack, vec![0xdc; N]),
            (Format::MsgPack, vec![0x91; 1 << 20]),
        ];
        for (format, body) in bodies {
            let e = err(format, &body);
            assert_eq!(e.kind, BodyErrorKind::TooDeep, "{format}: {e}");
        }
    }

    // ---- encoding single values ----

    #[test]
    fn encode_json() {
        let v = record();
        assert_eq!(
            encode_value(Format::Json, &v),
            serde_json::to_vec(&v).unwrap()
        );
    }

    #[test]
    fn cbor_encodings_are_compact() {
        let e = |v: Value| encode_value(Format::Cbor, &v);
        assert_eq!(e(json!(0)), [0x00]);
        assert_eq!(e(json!(-1)), [0x20]);
        assert_eq!(e(json!(500)), [0x19, 0x01, 0xf4]);
        assert_eq!(e(json!(1.5)), [0xfa, 0x3f, 0xc0, 0x00, 0x00]);
        assert_eq!(e(json!(0.1))[0], 0xfb);
        assert_eq!(e(json!("a")), [0x61, b'a']);
        assert_eq!(e(json!({"a": null})), [0xa1, 0x61, b'a', 0xf6]);
        assert_eq!(e(json!([true, false])), [0x82, 0xf5, 0xf4]);
    }

    #[test]
    fn msgpack_encodings_are_compact() {
        let e = |v: Value| encode_value(Format::MsgPack, &v);
        assert_eq!(e(json!(5)), [0x05]);
        assert_eq!(e(json!(-1)), [0xff]);
        assert_eq!(e(json!(-33)), [0xd0, 0xdf]);
        assert_eq!(e(json!(200)), [0xcc, 0xc8]);
        assert_eq!(e(json!(1.5)), [0xca, 0x3f, 0xc0, 0x00, 0x00]);
        assert_eq!(e(json!(0.1))[0], 0xcb);
        assert_eq!(e(json!("x".repeat(40)))[..2], [0xd9, 40]);
        assert_eq!(e(json!({"a": null})), [0x81, 0xa1, b'a', 0xc0]);
        let wide = Value::Array(vec![Value::Null; 16]);
        assert_eq!(e(wide)[..3], [0xdc, 0x00, 0x10]);
        for n in [
            0u64,
            127,
            128,
            255,
            256,
            65535,
            65536,
            u32::MAX as u64,
            u32::MAX as u64 + 1,
            u64::MAX,
        ] {
            assert_eq!(msgpack_decode(&e(json!(n))), json!(n));
            assert_eq!(
                cbor_decode(&encode_value(Format::Cbor, &json!(n))),
                json!(n)
            );
        }
        for n in [
            -1i64,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            i32::MIN as i64,
            i32::MIN as i64 - 1,
            i64::MIN,
        ] {
            assert_eq!(msgpack_decode(&e(json!(n))), json!(n));
            assert_eq!(
                cbor_decode(&encode_value(Format::Cbor, &json!(n))),
                json!(n)
            );
        }
        for len in [0usize, 31, 32, 255, 256, 65535, 65536] {
            let s = json!("é".repeat(len / 2) + &"a".repeat(len % 2));
            assert_eq!(msgpack_decode(&e(s.clone())), s);
            assert_eq!(cbor_decode(&encode_value(Format::Cbor, &s)), s);
        }
        for len in [15usize, 16, 65535, 65536] {
            let a = Value::Array(vec![json!(1); len]);
            let m = Value::Object((0..len).map(|i| (i.to_string(), json!(i))).collect());
            for v in [a, m] {
                assert_eq!(msgpack_decode(&e(v.clone())), v);
                assert_eq!(cbor_decode(&encode_value(Format::Cbor, &v)), v);
            }
        }
    }

    #[test]
    fn csv_single_values() {
        let v = json!({"id": "a", "category": {"name": "Toys"}, "tags": [1, 2]});
        assert_eq!(
            csv_text(encode_value(Format::Csv, &v)),
            "id,category.name,tags\r\na,Toys,\"[1,2]\"\r\n"
        );
        assert_eq!(
            csv_text(encode_value(Format::Csv, &json!("Deluxe, Headphones"))),
            "\"Deluxe, Headphones\"\r\n"
        );
        assert_eq!(
            csv_text(encode_value(Format::Csv, &json!(80.18))),
            "80.18\r\n"
        );
        assert_eq!(
            csv_text(encode_value(Format::Csv, &json!(true))),
            "true\r\n"
        );
        assert_eq!(
            csv_text(encode_value(Format::Csv, &json!([1, "x"]))),
            "0,1\r\n1,x\r\n"
        );
        assert_eq!(encode_value(Format::Csv, &Value::Null), b"");
    }

    // ---- collections ----

    #[test]
    fn json_collection_streams() {
        let mut encoder = CollectionEncoder::new(Format::Json);
        let mut out = Vec::new();
        encoder.begin(&mut out);
        assert_eq!(out, b"[");
        out.clear();
        encoder.push_json_bytes(br#"{"a":1}"#, &mut out);
        assert_eq!(out, br#"{"a":1}"#);
        out.clear();
        encoder.push_value(&json!({"b": [2]}), &mut out);
        assert_eq!(out, br#",{"b":[2]}"#);
        out.clear();
        encoder.finish(&mut out);
        assert_eq!(out, b"]");
        assert_eq!(encoder.rows(), 2);
        assert_eq!(collection(Format::Json, &[], false), b"[]");
        // finish alone still makes a document
        let mut out = Vec::new();
        CollectionEncoder::new(Format::Json).finish(&mut out);
        assert_eq!(out, b"[]");
    }

    #[test]
    fn cbor_collection_streams() {
        let mut encoder = CollectionEncoder::new(Format::Cbor);
        let mut out = Vec::new();
        encoder.begin(&mut out);
        assert_eq!(out, [0x9f]);
        out.clear();
        encoder.push_json_bytes(br#"{"a":1}"#, &mut out);
        assert_eq!(out, [0xa1, 0x61, b'a', 0x01]);
        out.clear();
        encoder.finish(&mut out);
        assert_eq!(out, [0xff]);
        let rows = vec![record(), json!(1), json!("x")];
        let bytes = collection(Format::Cbor, &rows, true);
        assert_eq!(cbor_decode(&bytes), Value::Array(rows.clone()));
        assert_eq!(
            decode_body(Format::Cbor, &bytes).unwrap(),
            Value::Array(rows)
        );
        assert_eq!(
            cbor_decode(&collection(Format::Cbor, &[], false)),
            json!([])
        );
    }

    #[test]
    fn msgpack_collection_is_written_by_finish() {
        let mut encoder = CollectionEncoder::new(Format::MsgPack);
        let mut out = Vec::new();
        encoder.begin(&mut out);
        encoder.push_value(&json!(1), &mut out);
        encoder.push_json_bytes(b"[2]", &mut out);
        assert!(out.is_empty(), "MessagePack rows are buffered");
        encoder.finish(&mut out);
        assert_eq!(out, [0x92, 0x01, 0x91, 0x02]);
        let rows = vec![record(); 20];
        let bytes = collection(Format::MsgPack, &rows, false);
        assert_eq!(bytes[..3], [0xdc, 0x00, 20]);
        assert_eq!(msgpack_decode(&bytes), Value::Array(rows));
        assert_eq!(collection(Format::MsgPack, &[], false), [0x90]);
        // finish appends after whatever the caller still holds
        let mut encoder = CollectionEncoder::new(Format::MsgPack);
        let mut out = b"held".to_vec();
        encoder.push_value(&json!("a"), &mut out);
        encoder.finish(&mut out);
        assert_eq!(out, b"held\x91\xa1a");
    }

    #[test]
    fn csv_collection_header_from_the_first_row() {
        let rows = [
            json!({"id": "automotive", "name": "Automotive", "description": "Car care, and \"accessories\""}),
            json!({"id": "books", "description": "line1\nline2", "extra": 1}),
            json!({"name": "", "id": null}),
        ];
        let text = csv_text(collection(Format::Csv, &rows, false));
        assert_eq!(
            text,
            "id,name,description\r\n\
             automotive,Automotive,\"Car care, and \"\"accessories\"\"\"\r\n\
             books,,\"line1\nline2\"\r\n\
             ,\"\",\r\n"
        );
        assert_eq!(text, csv_text(collection(Format::Csv, &rows, true)));
        // A standard reader sees the same fields.
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&records[0][2], "Car care, and \"accessories\"");
        assert_eq!(&records[1][2], "line1\nline2");
    }

    #[test]
    fn csv_streams_row_by_row() {
        let mut encoder = CollectionEncoder::new(Format::Csv);
        let mut out = Vec::new();
        encoder.begin(&mut out);
        assert!(out.is_empty());
        encoder.push_value(&json!({"a": 1}), &mut out);
        assert_eq!(out, b"a\r\n1\r\n");
        out.clear();
        encoder.push_value(&json!({"a": 2}), &mut out);
        assert_eq!(out, b"2\r\n");
        out.clear();
        encoder.finish(&mut out);
        assert!(out.is_empty());
        assert_eq!(collection(Format::Csv, &[], false), b"");
    }

    #[test]
    fn csv_flattens_nested_objects() {
        let rows = [
            json!({"name": "Puzzle", "category": {"name": "Toys", "meta": {"a": {"b": 1}}}, "tags": ["x", "y,z"], "e": {}}),
            json!({"name": "Lamp", "category": {"meta": {"a": {"b": 2}}}, "tags": []}),
            json!({"name": "Odd", "category": "not an object", "e": {"k": 1}}),
        ];
        assert_eq!(
            csv_text(collection(Format::Csv, &rows, false)),
            "name,category.name,category.meta.a.b,tags,e\r\n\
             Puzzle,Toys,1,\"[\"\"x\"\",\"\"y,z\"\"]\",{}\r\n\
             Lamp,,2,[],\r\n\
             Odd,,,,\"{\"\"k\"\":1}\"\r\n"
        );
    }

    #[test]
    fn csv_keys_with_dots_and_explicit_columns() {
        let rows = [json!({"a.b": 1, "a": {"b": 2, "c": 3}})];
        assert_eq!(
            csv_text(collection(Format::Csv, &rows, false)),
            "a.b,a.b,a.c\r\n1,1,3\r\n"
        );

        let mut encoder = CollectionEncoder::with_columns(
            Format::Csv,
            vec!["name".into(), "category.name".into(), "missing".into()],
        );
        let mut out = Vec::new();
        encoder.begin(&mut out);
        assert_eq!(
            out, b"name,category.name,missing\r\n",
            "header even before any row"
        );
        encoder.push_value(
            &json!({"category": {"name": "Toys"}, "name": "P", "other": 1}),
            &mut out,
        );
        encoder.push_value(&json!("bare"), &mut out);
        encoder.finish(&mut out);
        assert_eq!(
            csv_text(out),
            "name,category.name,missing\r\nP,Toys,\r\nbare,,\r\n"
        );

        let mut out = Vec::new();
        let mut encoder = CollectionEncoder::with_columns(Format::Csv, vec!["x".into()]);
        encoder.finish(&mut out);
        assert_eq!(out, b"x\r\n");
    }

    #[test]
    fn csv_bare_values_and_arrays() {
        let values = [
            json!("Ultra Puzzle 00007"),
            json!(null),
            json!(3),
            json!("a\"b"),
        ];
        assert_eq!(
            csv_text(collection(Format::Csv, &values, false)),
            "value\r\nUltra Puzzle 00007\r\n\r\n3\r\n\"a\"\"b\"\r\n"
        );
        let arrays = [
            json!(["Puzzle", 555.32]),
            json!(["Lamp"]),
            json!(["x", 1, "dropped"]),
        ];
        assert_eq!(
            csv_text(collection(Format::Csv, &arrays, false)),
            "0,1\r\nPuzzle,555.32\r\nLamp,\r\nx,1\r\n"
        );
    }

    #[test]
    fn pushes_after_finish_are_ignored_in_release() {
        if cfg!(debug_assertions) {
            return; // debug builds assert instead
        }
        let mut encoder = CollectionEncoder::new(Format::Json);
        let mut out = Vec::new();
        encoder.finish(&mut out);
        encoder.push_value(&json!(1), &mut out);
        encoder.finish(&mut out);
        assert_eq!(out, b"[]");
    }

    #[test]
    fn invalid_stored_json_becomes_null_for_other_formats() {
        let mut encoder = CollectionEncoder::new(Format::Cbor);
        let mut out = Vec::new();
        encoder.push_json_bytes(b"{oops", &mut out);
        encoder.finish(&mut out);
        assert_eq!(cbor_decode(&out), json!([null]));
    }

    // ---- properties ----

    fn json_float() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 100.0),
            any::<f64>().prop_filter("finite and exact through JSON text", |f| {
                f.is_finite()
                    && serde_json::from_str::<f64>(&serde_json::to_string(f).unwrap()).ok()
                        == Some(*f)
            }),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            json_float().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[a-z.]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z.]{0,3}|\\PC{0,8}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            for format in Format::ALL {
                let _ = decode_body(format, &bytes);
            }
        }

        #[test]
        fn decode_never_panics_on_damaged_encodings(
            v in json_value(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            for format in [Format::Json, Format::Cbor, Format::MsgPack] {
                let bytes = encode_value(format, &v);
                let truncated = &bytes[..cut.index(bytes.len())];
                if !truncated.is_empty() {
                    // A proper prefix of one value is never a whole value, except for JSON
                    // numbers, which are complete at any digit.
                    let result = decode_body(format, truncated);
                    if format != Format::Json {
                        prop_assert!(result.is_err());
                    }
                }
                let mut damaged = bytes.clone();
                let at = flip.index(damaged.len());
                damaged[at] = byte;
                let _ = decode_body(format, &damaged);
            }
        }

        #[test]
        fn single_values_round_trip(v in json_value()) {
            for format in [Format::Json, Format::Cbor, Format::MsgPack] {
                prop_assert_eq!(&decode_body(format, &encode_value(format, &v)).unwrap(), &v);
            }
            prop_assert_eq!(&cbor_decode(&encode_value(Format::Cbor, &v)), &v);
            prop_assert_eq!(&msgpack_decode(&encode_value(Format::MsgPack, &v)), &v);
        }

        #[test]
        fn collections_round_trip(rows in prop::collection::vec(json_value(), 0..6), json_bytes in any::<bool>()) {
            let expected = Value::Array(rows.clone());
            let json = collection(Format::Json, &rows, json_bytes);
            prop_assert_eq!(&serde_json::from_slice::<Value>(&json).unwrap(), &expected);
            prop_assert_eq!(&decode_body(Format::Json, &json).unwrap(), &expected);
            let cbor = collection(Format::Cbor, &rows, json_bytes);
            prop_assert_eq!(&cbor_decode(&cbor), &expected);
            prop_assert_eq!(&decode_body(Format::Cbor, &cbor).unwrap(), &expected);
            let msgpack = collection(Format::MsgPack, &rows, json_bytes);
            prop_assert_eq!(&msgpack_decode(&msgpack), &expected);
            prop_assert_eq!(&decode_body(Format::MsgPack, &msgpack).unwrap(), &expected);
        }

        #[test]
        fn csv_fields_survive_a_standard_reader(
            rows in prop::collection::vec(prop::collection::vec(any::<String>(), 3), 1..6),
        ) {
            let values: Vec<Value> = rows
                .iter()
                .map(|r| json!({"a": r[0], "b": {"c": r[1]}, "d": r[2]}))
                .collect();
            let bytes = collection(Format::Csv, &values, false);
            let mut reader = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
            let header = reader.headers().unwrap().clone();
            prop_assert_eq!(header.iter().collect::<Vec<_>>(), vec!["a", "b.c", "d"]);
            let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            prop_assert_eq!(records.len(), rows.len());
            for (record, row) in records.iter().zip(&rows) {
                prop_assert_eq!(record.iter().collect::<Vec<_>>(), row.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }

        #[test]
        fn accept_parsing_never_panics(header in "\\PC{0,80}") {
            let _ = response_format(Some(&header));
            let _ = wants_event_stream(Some(&header));
            let _ = request_format(Some(&header));
        }
    }
}
