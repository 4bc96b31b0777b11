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

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
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
        Some(Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
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
    /// MessagePack rows awaiting their array header.
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
            Format::MsgPack => write_msgpack(&mut self.pending, v),
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
                msgpack_array_head(out, self.rows);
                out.append(&mut self.pending);
                self.pending.shrink_to_fit();
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
