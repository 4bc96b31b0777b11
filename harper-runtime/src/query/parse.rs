//! The REST query string parser: Harper's URL query language (plus the seed's `limit=20`
//! forms) into a [`Query`].
//!
//! The input is the raw query string (after `?`, *not* percent-decoded). It is split on
//! its structural characters first; each name and value is percent-decoded afterwards, so
//! `name=a%26b` is the single condition `name = "a&b"`. Names are decoded with `%XX` only;
//! condition values also turn `+` into a space (form encoding). A bad `%` escape or
//! decoded bytes that are not UTF-8 are errors pointing at the offending byte.
//!
//! # Grammar
//!
//! ```text
//! query     := ['?'] or
//! or        := and ('|' and)*
//! and       := [item] ('&' [item])*              empty items (`a=1&&b=2&`) are skipped
//! item      := '(' or ')' | '[' or ']'           grouping, nested up to 32 levels
//!            | function | condition | seed-directive
//! condition := path '=' value                    eq
//!            | path '==' value                   eq
//!            | path '!=' value                   ne
//!            | path '=' cmp '=' value            cmp: eq ne lt le gt ge sw ew ct
//!            | cmp '=' value                     chained range, see below
//! path      := name ('.' name)*                  `category.name` -> ["category", "name"]
//! function  := 'limit(' n ')' | 'limit(' start ',' end ')'
//!            | 'sort(' key (',' key)* ')'        key := ['+' | '-'] name (no sign: ascending)
//!            | 'select(' select-args ')'
//! select-args := items                           objects; a single item without a
//!                                                trailing comma gives bare values
//!            | '[' items ']'                     arrays
//! items     := sel (',' sel)* [',']
//! sel       := '*' | name | name '{' items '}'   `*` = all attributes; braces nest
//! seed-directive := 'limit=' n | 'offset=' n | 'sort=' key (',' key)* | 'select=' items
//! ```
//!
//! * **Precedence.** Harper rejects `&` and `|` mixed in one group; we accept it and let `&`
//!   bind tighter than `|` (as in most languages): `a=1&b=2|c=3` is `(a=1&b=2)|c=3`.
//!   Nested groups of the same kind are flattened (`a=1&(b=2&c=3)` is one `And` of three)
//!   and a group of one is just its member.
//! * **Values** run up to the next `&`, `|`, `)` or `]`; they may contain `=` after an
//!   operator (`name==a=b` is `name = "a=b"`), but in the plain form a second `=` makes the
//!   text in between a comparator (`name=xx=Toys`: `Unknown query comparator "xx"`, as in
//!   Harper). A raw `(` or `[` inside a value is an error (percent-encode it). Values stay
//!   text ([`Operand::Text`], `"null"` included); typing them is the planner's job.
//! * **Chained ranges.** A condition `cmp=value` whose name is a comparator (`lt=200`) and
//!   *not* an attribute of the table (`is_attribute` says no) applies to the attribute of
//!   the condition just before it in the text, whatever joins them: `price=gt=100&lt=200`
//!   is `price > 100 AND price < 200`, `price=lt=10|gt=100` an OR. Without a previous
//!   condition it is an error.
//! * **Directives** (`limit(..)`, `sort(..)`, `select(..)`) may appear anywhere among the
//!   conditions, also inside groups, but must be joined by `&`: next to a `|` they are an
//!   error. A later directive replaces an earlier one's setting (`limit(start,end)` sets
//!   both offset and limit). Other function names are errors (`unknown query function
//!   offset`). `limit(start,end)` means offset `start`, limit `end - start`; `end < start`
//!   and non-numbers are errors (Harper ignores `limit(abc)`; we do not).
//! * **Seed forms.** `limit=20`, `offset=40`, `sort=name,-price` and `select=name,price` are
//!   directives only when the word is not an attribute (`is_attribute` says no) and the
//!   operator is a plain `=`; otherwise they are ordinary conditions. `select=` always gives
//!   objects.
//! * A sort sign is structural: only a raw `+`/`-` counts (`%2D` is part of the name).
//! * **Errors** ([`ParseError`], with a byte offset into the raw string): empty attribute
//!   names (`=5`), empty path segments (`a..b=1`), bare words (`justtext`), unbalanced or
//!   mismatched brackets, empty groups `()`, unknown comparators and functions, bad numbers,
//!   inputs over 64 KiB and nesting deeper than 32. The parser never panics.
//! * Every [`Condition`] records `position`: the byte offset of its attribute (or, for a
//!   chained range, of its comparator word) in the raw string.

use std::fmt;

use super::model::{Condition, Filter, Op, Operand, Query, Select, SelectItem, SelectShape, Sort};

/// Longest query string accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 64 * 1024;
/// Deepest nesting of groups and select braces accepted.
pub const MAX_DEPTH: usize = 32;

/// A query string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the (raw, undecoded) query string.
    pub position: usize,
    pub message: String,
}

impl ParseError {
    fn new(position: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

impl std::error::Error for ParseError {}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses a raw query string (the part after `?`, not yet percent-decoded).
///
/// `is_attribute` tells whether a word names an attribute of the queried table; it decides
/// whether `limit=20` is a directive or a condition and whether `lt=200` continues a range.
pub fn parse_query(raw: &str, is_attribute: &dyn Fn(&str) -> bool) -> Result<Query> {
    if raw.len() > MAX_QUERY_LEN {
        return Err(ParseError::new(
            MAX_QUERY_LEN,
            format!("query string is longer than {MAX_QUERY_LEN} bytes"),
        ));
    }
    let mut parser = Parser {
        raw,
        bytes: raw.as_bytes(),
        pos: usize::from(raw.starts_with('?')),
        depth: 0,
        is_attribute,
        query: Query::default(),
        last_path: None,
    };
    let filter = parser.parse_or()?;
    if let Some(b) = parser.peek() {
        // `parse_or` only stops early at a closing bracket.
        return Err(ParseError::new(
            parser.pos,
            format!("unbalanced '{}': no group is open", b as char),
        ));
    }
    parser.query.filter = filter;
    Ok(parser.query)
}

/// The comparator named in FIQL form (`=gt=`) or as a chained range (`&lt=200`).
fn comparator(name: &str) -> Option<Op> {
    Some(match name {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "lt" => Op::Lt,
        "le" => Op::Le,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "sw" => Op::StartsWith,
        "ct" => Op::Contains,
        "ew" => Op::EndsWith,
        _ => return None,
    })
}

/// Ends a condition value (and a seed directive's argument).
fn is_value_stop(b: u8) -> bool {
    matches!(b, b'&' | b'|' | b'(' | b')' | b'[' | b']')
}

/// What one `&`-separated item turned out to be.
enum Item {
    Filter(Filter),
    /// A directive (its name, for messages); it has already been applied to the query.
    Directive(&'static str),
    /// A group holding no condition (`(limit(5))`, `(&)`).
    Nothing,
}

struct Parser<'a> {
    raw: &'a str,
    bytes: &'a [u8],
    /// Current byte offset; always on a char boundary (we only step over ASCII bytes one
    /// at a time, or scan to the next ASCII byte).
    pos: usize,
    depth: usize,
    is_attribute: &'a dyn Fn(&str) -> bool,
    query: Query,
    /// The path of the last condition parsed, for chained ranges.
    last_path: Option<Vec<String>>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// Advances while `keep` holds for the current byte. `keep` must be false for every byte
    /// it wants to stop at, which are all ASCII, so `pos` stays on a char boundary.
    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) {
        while let Some(b) = self.peek() {
            if !keep(b) {
                break;
            }
            self.pos += 1;
        }
    }

    /// An error at the current position describing the character found there.
    fn unexpected(&self, context: &str) -> ParseError {
        let found = self.raw.get(self.pos..).and_then(|s| s.chars().next());
        let message = match found {
            Some(c) => format!("unexpected '{c}' {context}"),
            None => format!("unexpected end of query {context}"),
        };
        ParseError::new(self.pos, message)
    }

    fn enter(&mut self, at: usize) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                at,
                format!("query nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Consumes `close` or fails: at `open` when the input ended, here otherwise.
    fn expect_close(&mut self, close: u8, open: usize, what: &str) -> Result<()> {
        match self.peek() {
            Some(b) if b == close => {
                self.pos += 1;
                Ok(())
            }
            None => Err(ParseError::new(open, format!("unclosed {what}"))),
            Some(_) => Err(self.unexpected(&format!("in {what} (expected '{}')", close as char))),
        }
    }

    // ---- boolean structure -------------------------------------------------------------

    fn parse_or(&mut self) -> Result<Option<Filter>> {
        let mut operands = Vec::new();
        let mut after_or = false;
        loop {
            let start = self.pos;
            let operand = self.parse_and(after_or)?;
            let or_follows = self.peek() == Some(b'|');
            match operand {
                Some(filter) => operands.push(filter),
                None if after_or => {
                    return Err(ParseError::new(start, "expected a condition after '|'"));
                }
                None if or_follows => {
                    return Err(ParseError::new(self.pos, "expected a condition before '|'"));
                }
                None => {}
            }
            if !or_follows {
                break;
            }
            self.pos += 1;
            after_or = true;
        }
        Ok(combine(operands, false))
    }

    fn parse_and(&mut self, after_or: bool) -> Result<Option<Filter>> {
        let mut terms = Vec::new();
        let mut first = true;
        loop {
            match self.peek() {
                None | Some(b'|' | b')' | b']') => break,
                Some(b'&') => {
                    self.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let start = self.pos;
            match self.parse_item()? {
                Item::Filter(filter) => terms.push(filter),
                Item::Directive(name) => {
                    if (first && after_or) || self.peek() == Some(b'|') {
                        return Err(ParseError::new(
                            start,
                            format!("query function {name} must be joined with '&', not '|'"),
                        ));
                    }
                }
                Item::Nothing => {}
            }
            first = false;
            match self.peek() {
                None | Some(b'&' | b'|' | b')' | b']') => {}
                Some(_) => return Err(self.unexpected("(expected '&' or '|')")),
            }
        }
        Ok(combine(terms, true))
    }

    fn parse_item(&mut self) -> Result<Item> {
        let start = self.pos;
        if let Some(open @ (b'(' | b'[')) = self.peek() {
            return self.parse_group(open);
        }
        self.skip_while(|b| !matches!(b, b'=' | b'&' | b'|' | b'(' | b')' | b'[' | b']' | b'!'));
        // `!` only ends a name as part of `!=`.
        while self.peek() == Some(b'!') && self.peek_at(1) != Some(b'=') {
            self.pos += 1;
            self.skip_while(|b| {
                !matches!(b, b'=' | b'&' | b'|' | b'(' | b')' | b'[' | b']' | b'!')
            });
        }
        let name_end = self.pos;
        match self.peek() {
            Some(b'(') => self.parse_function(start, name_end),
            Some(b'!') => {
                if start == name_end {
                    return Err(ParseError::new(start, "missing attribute name before '!='"));
                }
                self.pos += 2;
                let value = self.scan_value()?;
                self.condition(start, name_end, Op::Ne, value)
            }
            Some(b'=') => self.parse_after_equals(start, name_end),
            Some(b'[') => Err(self.unexpected("after an attribute name")),
            _ => Err(ParseError::new(
                start,
                format!(
                    "expected a condition (attribute=value) or a query function, found \"{}\"",
                    snippet(&self.raw[start..name_end])
                ),
            )),
        }
    }

    fn parse_group(&mut self, open_byte: u8) -> Result<Item> {
        let open = self.pos;
        self.enter(open)?;
        self.pos += 1;
        let filter = self.parse_or()?;
        let close = if open_byte == b'(' { b')' } else { b']' };
        match self.peek() {
            Some(b) if b == close => self.pos += 1,
            Some(b) => {
                return Err(ParseError::new(
                    self.pos,
                    format!(
                        "'{}' does not match the '{}' at position {open}",
                        b as char, open_byte as char
                    ),
                ));
            }
            None => {
                return Err(ParseError::new(
                    open,
                    format!("unclosed '{}'", open_byte as char),
                ));
            }
        }
        self.leave();
        match filter {
            Some(filter) => Ok(Item::Filter(filter)),
            None if self.pos == open + 2 => Err(ParseError::new(open, "empty group")),
            None => Ok(Item::Nothing),
        }
    }

    // ---- conditions --------------------------------------------------------------------

    /// At the `=` after a name (`start..name_end`, possibly empty).
    fn parse_after_equals(&mut self, start: usize, name_end: usize) -> Result<Item> {
        if start == name_end {
            return Err(ParseError::new(start, "missing attribute name before '='"));
        }
        self.pos += 1;
        let name = self.decode(start, name_end, false)?;
        if let Some(word) = seed_directive(&name) {
            if self.peek() != Some(b'=') && !(self.is_attribute)(&name) {
                return self.parse_seed_directive(word);
            }
        }
        let run_start = self.pos;
        self.skip_while(|b| b != b'=' && !is_value_stop(b));
        if self.peek() == Some(b'=') {
            // `==value` or `=cmp=value`.
            let op = if run_start == self.pos {
                Op::Eq
            } else {
                let cmp = self.decode(run_start, self.pos, false)?;
                comparator(&cmp).ok_or_else(|| {
                    ParseError::new(run_start, format!("Unknown query comparator \"{cmp}\""))
                })?
            };
            self.pos += 1;
            let value = self.scan_value()?;
            return self.condition(start, name_end, op, value);
        }
        self.check_value_end()?;
        let value = self.decode(run_start, self.pos, true)?;
        let dotted = self.raw[start..name_end].contains('.');
        if let Some(op) = comparator(&name).filter(|_| !dotted && !(self.is_attribute)(&name)) {
            // Chained range: `price=gt=100&lt=200`.
            let Some(path) = self.last_path.clone() else {
                return Err(ParseError::new(
                    start,
                    format!(
                        "\"{name}\" is not an attribute, and there is no condition before it \
                         for the comparator to continue"
                    ),
                ));
            };
            return Ok(Item::Filter(Filter::Condition(Condition {
                path,
                op,
                value: Operand::Text(value),
                position: Some(start),
            })));
        }
        self.condition(start, name_end, Op::Eq, value)
    }

    fn condition(&mut self, start: usize, name_end: usize, op: Op, value: String) -> Result<Item> {
        let path = self.parse_path(start, name_end)?;
        self.last_path = Some(path.clone());
        Ok(Item::Filter(Filter::Condition(Condition {
            path,
            op,
            value: Operand::Text(value),
            position: Some(start),
        })))
    }

    fn parse_path(&self, start: usize, end: usize) -> Result<Vec<String>> {
        let mut path = Vec::new();
        let mut seg_start = start;
        for (i, b) in self.bytes[start..end].iter().enumerate() {
            if *b == b'.' {
                path.push(self.path_segment(seg_start, start + i)?);
                seg_start = start + i + 1;
            }
        }
        path.push(self.path_segment(seg_start, end)?);
        Ok(path)
    }

    fn path_segment(&self, start: usize, end: usize) -> Result<String> {
        if start == end {
            return Err(ParseError::new(start, "empty segment in attribute path"));
        }
        self.decode(start, end, false)
    }

    /// A condition value: up to the next `&`, `|`, `)` or `]`.
    fn scan_value(&mut self) -> Result<String> {
        let start = self.pos;
        self.skip_while(|b| !is_value_stop(b));
        self.check_value_end()?;
        self.decode(start, self.pos, true)
    }

    fn check_value_end(&self) -> Result<()> {
        match self.peek() {
            Some(b @ (b'(' | b'[')) => Err(ParseError::new(
                self.pos,
                format!(
                    "unexpected '{}' in a value (percent-encode it as %{b:02X})",
                    b as char
                ),
            )),
            _ => Ok(()),
        }
    }

    // ---- directives --------------------------------------------------------------------

    /// At the `(` of `name(`.
    fn parse_function(&mut self, start: usize, name_end: usize) -> Result<Item> {
        let name = self.decode(start, name_end, false)?;
        match name.as_str() {
            "limit" => {
                let args = self.scan_args("limit()")?;
                match args[..] {
                    [n] => self.query.limit = Some(self.count(n, "limit")?),
                    [first, second] => {
                        let from = self.count(first, "limit start")?;
                        let to = self.count(second, "limit end")?;
                        if to < from {
                            return Err(ParseError::new(
                                second.0,
                                format!("limit({from},{to}): the end is before the start"),
                            ));
                        }
                        self.query.offset = from;
                        self.query.limit = Some(to - from);
                    }
                    _ => {
                        return Err(ParseError::new(
                            args[2].0,
                            "limit() takes one or two numbers: limit(n) or limit(start,end)",
                        ));
                    }
                }
                Ok(Item::Directive("limit"))
            }
            "sort" => {
                let args = self.scan_args("sort()")?;
                let mut keys = Vec::with_capacity(args.len());
                for (s, e) in args {
                    keys.push(self.sort_key(s, e)?);
                }
                self.query.sort = keys;
                Ok(Item::Directive("sort"))
            }
            "select" => {
                let open = self.pos;
                self.enter(open)?;
                self.pos += 1;
                let select = if self.peek() == Some(b'[') {
                    let bracket = self.pos;
                    self.pos += 1;
                    let (items, _) = self.parse_select_items()?;
                    self.expect_close(b']', bracket, "'[' in select()")?;
                    Select {
                        shape: SelectShape::Arrays,
                        items,
                    }
                } else {
                    let (items, trailing_comma) = self.parse_select_items()?;
                    let shape =
                        if items.len() == 1 && !trailing_comma && items[0] != SelectItem::All {
                            SelectShape::Values
                        } else {
                            SelectShape::Objects
                        };
                    Select { shape, items }
                };
                self.expect_close(b')', open, "select(")?;
                self.leave();
                self.query.select = Some(select);
                Ok(Item::Directive("select"))
            }
            _ => Err(ParseError::new(
                start,
                format!("unknown query function {name} (expected limit, sort or select)"),
            )),
        }
    }

    /// At the `(` of a function with plain comma-separated arguments; returns their spans
    /// (possibly empty) and stops after the `)`.
    fn scan_args(&mut self, what: &str) -> Result<Vec<(usize, usize)>> {
        let open = self.pos;
        self.pos += 1;
        let mut args = Vec::new();
        loop {
            let start = self.pos;
            self.skip_while(|b| !matches!(b, b',' | b')') && !is_value_stop(b));
            args.push((start, self.pos));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    return Ok(args);
                }
                None => return Err(ParseError::new(open, format!("unclosed {what}"))),
                Some(_) => return Err(self.unexpected(&format!("in {what}"))),
            }
        }
    }

    fn count(&self, (start, end): (usize, usize), what: &str) -> Result<usize> {
        let text = self.decode(start, end, false)?;
        text.parse().map_err(|_| {
            ParseError::new(
                start,
                format!(
                    "{what} must be a non-negative integer, found \"{}\"",
                    snippet(&text)
                ),
            )
        })
    }

    fn sort_key(&self, start: usize, end: usize) -> Result<Sort> {
        let (descending, name_start) = match self.bytes.get(start) {
            Some(b'-') if start < end => (true, start + 1),
            Some(b'+') if start < end => (false, start + 1),
            _ => (false, start),
        };
        if name_start == end {
            return Err(ParseError::new(start, "missing attribute name in sort"));
        }
        Ok(Sort {
            attribute: self.decode(name_start, end, false)?,
            descending,
        })
    }

    /// `sel (',' sel)* [',']`; returns the items and whether a trailing comma ended them.
    /// Leaves the terminator (`)`, `]`, `}`, `&`, ...) for the caller to check.
    fn parse_select_items(&mut self) -> Result<(Vec<SelectItem>, bool)> {
        let mut items = Vec::new();
        loop {
            let start = self.pos;
            self.skip_while(|b| !matches!(b, b',' | b'{' | b'}') && !is_value_stop(b));
            if start == self.pos {
                let terminator =
                    matches!(self.peek(), None | Some(b')' | b']' | b'}' | b'&' | b'|'));
                if !items.is_empty() && terminator {
                    return Ok((items, true));
                }
                return Err(ParseError::new(
                    start,
                    "expected an attribute name in select",
                ));
            }
            let name = self.decode(start, self.pos, false)?;
            if self.peek() == Some(b'{') {
                if name == "*" {
                    return Err(ParseError::new(start, "'*' cannot have a nested select"));
                }
                let brace = self.pos;
                self.enter(brace)?;
                self.pos += 1;
                let (nested, _) = self.parse_select_items()?;
                self.expect_close(b'}', brace, "'{' in select")?;
                self.leave();
                items.push(SelectItem::Related {
                    name,
                    select: Select {
                        shape: SelectShape::Objects,
                        items: nested,
                    },
                });
            } else if name == "*" {
                items.push(SelectItem::All);
            } else {
                items.push(SelectItem::Attribute(name));
            }
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                return Ok((items, false));
            }
        }
    }

    /// After the `=` of `limit=`, `offset=`, `sort=` or `select=`.
    fn parse_seed_directive(&mut self, word: &'static str) -> Result<Item> {
        match word {
            "limit" | "offset" => {
                let start = self.pos;
                self.skip_while(|b| !is_value_stop(b));
                let n = self.count((start, self.pos), word)?;
                if word == "limit" {
                    self.query.limit = Some(n);
                } else {
                    self.query.offset = n;
                }
            }
            "sort" => {
                let mut keys = Vec::new();
                loop {
                    let start = self.pos;
                    self.skip_while(|b| b != b',' && !is_value_stop(b));
                    keys.push(self.sort_key(start, self.pos)?);
                    if self.peek() != Some(b',') {
                        break;
                    }
                    self.pos += 1;
                }
                self.query.sort = keys;
            }
            _ => {
                let (items, _) = self.parse_select_items()?;
                self.query.select = Some(Select {
                    shape: SelectShape::Objects,
                    items,
                });
            }
        }
        Ok(Item::Directive(word))
    }

    // ---- decoding ----------------------------------------------------------------------

    /// Percent-decodes `raw[start..end]` (and `+` as a space when `plus_is_space`).
    fn decode(&self, start: usize, end: usize, plus_is_space: bool) -> Result<String> {
        let text = &self.raw[start..end];
        if !text
            .bytes()
            .any(|b| b == b'%' || (plus_is_space && b == b'+'))
        {
            return Ok(text.to_owned());
        }
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| Some((hex_digit(h[0])? << 4) | hex_digit(h[1])?));
                    let Some(byte) = hex else {
                        return Err(ParseError::new(
                            start + i,
                            "invalid percent-escape (expected '%' and two hex digits)",
                        ));
                    };
                    out.push(byte);
                    i += 3;
                }
                b'+' if plus_is_space => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|e| {
            let bad = e.utf8_error().valid_up_to();
            ParseError::new(
                start + raw_offset(bytes, bad),
                "percent-decoded text is not valid UTF-8",
            )
        })
    }
}

/// The byte offset in `raw` (undecoded) of decoded byte number `decoded`.
fn raw_offset(raw: &[u8], decoded: usize) -> usize {
    let mut i = 0;
    for _ in 0..decoded {
        i += if raw.get(i) == Some(&b'%') { 3 } else { 1 };
    }
    i.min(raw.len())
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The seed's `word=value` directives.
fn seed_directive(name: &str) -> Option<&'static str> {
    match name {
        "limit" => Some("limit"),
        "offset" => Some("offset"),
        "sort" => Some("sort"),
        "select" => Some("select"),
        _ => None,
    }
}

/// Joins terms with AND (`and`) or OR, flattening nested groups of the same kind.
fn combine(terms: Vec<Filter>, and: bool) -> Option<Filter> {
    if terms.len() <= 1 {
        return terms.into_iter().next();
    }
    let mut flat = Vec::with_capacity(terms.len());
    for term in terms {
        match term {
            Filter::And(inner) if and => flat.extend(inner),
            Filter::Or(inner) if !and => flat.extend(inner),
            other => flat.push(other),
        }
    }
    Some(if and {
        Filter::And(flat)
    } else {
        Filter::Or(flat)
    })
}

/// User text for a message, shortened to a readable length.
fn snippet(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX_CHARS).collect();
        short.push('…');
        short
    }
}
