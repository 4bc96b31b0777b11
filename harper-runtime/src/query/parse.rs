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
        // The first byte past the limit, moved back to the start of its character.
        let position = (0..=MAX_QUERY_LEN)
            .rev()
            .find(|&i| raw.is_char_boundary(i))
            .unwrap_or(0);
        return Err(ParseError::new(
            position,
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
        if let Some(word) = seed_directive(&name)
            && self.peek() != Some(b'=')
            && !(self.is_attribute)(&name)
        {
            return self.parse_seed_directive(word);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;

    /// The storefront's Product attributes.
    const PRODUCT: &[&str] = &[
        "id",
        "name",
        "price",
        "categoryId",
        "inStock",
        "description",
        "stockQuantity",
        "category",
    ];

    fn product(name: &str) -> bool {
        PRODUCT.contains(&name)
    }

    fn parse(raw: &str) -> Query {
        parse_query(raw, &product).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    fn filter(raw: &str) -> Filter {
        parse(raw)
            .filter
            .unwrap_or_else(|| panic!("{raw:?}: no filter"))
    }

    fn error(raw: &str) -> ParseError {
        match parse_query(raw, &product) {
            Ok(q) => panic!("{raw:?} parsed: {q:?}"),
            Err(e) => e,
        }
    }

    /// Asserts an error at `position` whose message contains `needle`.
    fn assert_error(raw: &str, position: usize, needle: &str) {
        let e = error(raw);
        assert_eq!(e.position, position, "{raw:?}: {e}");
        assert!(e.message.contains(needle), "{raw:?}: {e}");
    }

    fn c(path: &str, op: Op, value: &str, position: usize) -> Filter {
        Filter::Condition(Condition {
            path: path.split('.').map(str::to_owned).collect(),
            op,
            value: Operand::Text(value.to_owned()),
            position: Some(position),
        })
    }

    fn asc(attribute: &str) -> Sort {
        Sort {
            attribute: attribute.to_owned(),
            descending: false,
        }
    }

    fn desc(attribute: &str) -> Sort {
        Sort {
            attribute: attribute.to_owned(),
            descending: true,
        }
    }

    fn attribute(name: &str) -> SelectItem {
        SelectItem::Attribute(name.to_owned())
    }

    fn select(shape: SelectShape, items: Vec<SelectItem>) -> Option<Select> {
        Some(Select { shape, items })
    }

    fn related(name: &str, items: Vec<SelectItem>) -> SelectItem {
        SelectItem::Related {
            name: name.to_owned(),
            select: Select {
                shape: SelectShape::Objects,
                items,
            },
        }
    }

    // ---- basics ------------------------------------------------------------------------

    #[test]
    fn empty_query_and_bare_question_mark() {
        assert_eq!(parse(""), Query::default());
        assert_eq!(parse("?"), Query::default());
        assert_eq!(parse("&"), Query::default());
        assert_eq!(parse("&&&"), Query::default());
    }

    #[test]
    fn trailing_leading_and_doubled_ampersands() {
        assert_eq!(filter("name=Lamp&"), c("name", Op::Eq, "Lamp", 0));
        assert_eq!(filter("&name=Lamp"), c("name", Op::Eq, "Lamp", 1));
        assert_eq!(
            filter("name=Lamp&&price=3&"),
            Filter::And(vec![
                c("name", Op::Eq, "Lamp", 0),
                c("price", Op::Eq, "3", 11)
            ])
        );
    }

    #[test]
    fn leading_question_mark_is_skipped_but_positions_stay_raw() {
        assert_eq!(filter("?name=Lamp"), c("name", Op::Eq, "Lamp", 1));
    }

    #[test]
    fn equality_forms() {
        assert_eq!(filter("name=Toys"), c("name", Op::Eq, "Toys", 0));
        assert_eq!(filter("name==Toys"), c("name", Op::Eq, "Toys", 0));
        assert_eq!(filter("name=eq=Toys"), c("name", Op::Eq, "Toys", 0));
        assert_eq!(filter("id!=books"), c("id", Op::Ne, "books", 0));
        assert_eq!(filter("id=ne=books"), c("id", Op::Ne, "books", 0));
    }

    #[test]
    fn every_fiql_comparator() {
        for (name, op) in [
            ("eq", Op::Eq),
            ("ne", Op::Ne),
            ("lt", Op::Lt),
            ("le", Op::Le),
            ("gt", Op::Gt),
            ("ge", Op::Ge),
            ("sw", Op::StartsWith),
            ("ct", Op::Contains),
            ("ew", Op::EndsWith),
        ] {
            assert_eq!(op.name(), name);
            let raw = format!("price={name}=100");
            assert_eq!(filter(&raw), c("price", op, "100", 0), "{raw}");
        }
        assert_eq!(filter("name=sw=Ga"), c("name", Op::StartsWith, "Ga", 0));
        assert_eq!(
            filter("description=ct=toys"),
            c("description", Op::Contains, "toys", 0)
        );
        assert_eq!(filter("name=ew=ing"), c("name", Op::EndsWith, "ing", 0));
        assert_eq!(filter("id=gt=prod-00997"), c("id", Op::Gt, "prod-00997", 0));
    }

    #[test]
    fn values_may_be_empty_null_or_contain_equals_after_an_operator() {
        assert_eq!(filter("description="), c("description", Op::Eq, "", 0));
        assert_eq!(
            filter("description=null"),
            c("description", Op::Eq, "null", 0)
        );
        assert_eq!(filter("name=gt="), c("name", Op::Gt, "", 0));
        assert_eq!(filter("name==a=b"), c("name", Op::Eq, "a=b", 0));
        assert_eq!(filter("name=eq=a=b"), c("name", Op::Eq, "a=b", 0));
        assert_eq!(filter("name!=a=b"), c("name", Op::Ne, "a=b", 0));
        assert_eq!(filter("name=Gar*"), c("name", Op::Eq, "Gar*", 0));
        assert_eq!(
            filter("stockQuantity=number:37"),
            c("stockQuantity", Op::Eq, "number:37", 0)
        );
        assert_eq!(filter("name=a,b{c}!"), c("name", Op::Eq, "a,b{c}!", 0));
    }

    #[test]
    fn exclamation_mark_inside_a_name() {
        assert_eq!(filter("a!b=1"), c("a!b", Op::Eq, "1", 0));
        assert_eq!(filter("a!b!=1"), c("a!b", Op::Ne, "1", 0));
    }

    #[test]
    fn dotted_paths_go_through_relationships() {
        assert_eq!(
            filter("category.name=Toys"),
            c("category.name", Op::Eq, "Toys", 0)
        );
        assert_eq!(filter("a.b.c=gt=1"), c("a.b.c", Op::Gt, "1", 0));
        // An encoded dot is part of a segment.
        let Filter::Condition(cond) = filter("a%2Eb.c=1") else {
            panic!()
        };
        assert_eq!(cond.path, vec!["a.b".to_owned(), "c".to_owned()]);
    }

    #[test]
    fn condition_positions_point_at_the_attribute() {
        let raw = "categoryId=electronics&inStock=true&(price=lt=5|name!=x)";
        let Filter::And(terms) = filter(raw) else {
            panic!()
        };
        let mut positions = Vec::new();
        for term in &terms {
            match term {
                Filter::Condition(c) => positions.push(c.position.unwrap()),
                Filter::Or(inner) => {
                    for t in inner {
                        let Filter::Condition(c) = t else { panic!() };
                        positions.push(c.position.unwrap());
                    }
                }
                Filter::And(_) => panic!(),
            }
        }
        assert_eq!(positions, vec![0, 23, 37, 48]);
        assert!(raw[37..].starts_with("price"));
        assert!(raw[48..].starts_with("name"));
    }

    // ---- seed queries ------------------------------------------------------------------

    #[test]
    fn seed_query_category_in_stock_limit() {
        let q = parse("categoryId=electronics&inStock=true&limit=20");
        assert_eq!(
            q.filter,
            Some(Filter::And(vec![
                c("categoryId", Op::Eq, "electronics", 0),
                c("inStock", Op::Eq, "true", 23),
            ]))
        );
        assert_eq!(q.limit, Some(20));
        assert_eq!(q.offset, 0);
        assert!(q.sort.is_empty());
        assert_eq!(q.select, None);
    }

    #[test]
    fn seed_query_price_in_stock_sort() {
        let q = parse("price=lt=100&inStock=true&sort=name");
        assert_eq!(
            q.filter,
            Some(Filter::And(vec![
                c("price", Op::Lt, "100", 0),
                c("inStock", Op::Eq, "true", 13),
            ]))
        );
        assert_eq!(q.sort, vec![asc("name")]);
        assert_eq!(q.limit, None);
    }

    #[test]
    fn seed_directive_forms() {
        assert_eq!(parse("offset=40").offset, 40);
        assert_eq!(parse("offset=40&limit=20").limit, Some(20));
        assert_eq!(parse("sort=name").sort, vec![asc("name")]);
        assert_eq!(parse("sort=-price").sort, vec![desc("price")]);
        assert_eq!(parse("sort=+name").sort, vec![asc("name")]);
        assert_eq!(
            parse("sort=name,-price").sort,
            vec![asc("name"), desc("price")]
        );
        assert_eq!(
            parse("select=name,price").select,
            select(
                SelectShape::Objects,
                vec![attribute("name"), attribute("price")]
            )
        );
        assert_eq!(
            parse("select=name").select,
            select(SelectShape::Objects, vec![attribute("name")])
        );
        assert_eq!(
            parse("select=name,category{name}&inStock=true").select,
            select(
                SelectShape::Objects,
                vec![
                    attribute("name"),
                    related("category", vec![attribute("name")])
                ]
            )
        );
        let q = parse("limit=5&name=x&sort=-price&offset=10");
        assert_eq!(q.filter, Some(c("name", Op::Eq, "x", 8)));
        assert_eq!((q.offset, q.limit), (10, Some(5)));
        assert_eq!(q.sort, vec![desc("price")]);
    }

    #[test]
    fn seed_words_are_conditions_when_they_are_attributes() {
        let with_limit = |n: &str| n == "limit" || n == "sort" || product(n);
        let q = parse_query("limit=20&sort=name", &with_limit).unwrap();
        assert_eq!(
            q.filter,
            Some(Filter::And(vec![
                c("limit", Op::Eq, "20", 0),
                c("sort", Op::Eq, "name", 9)
            ]))
        );
        assert_eq!(q.limit, None);
        assert!(q.sort.is_empty());
        // Other operators keep the word a condition as well.
        assert_eq!(filter("limit==20"), c("limit", Op::Eq, "20", 0));
        assert_eq!(filter("limit!=20"), c("limit", Op::Ne, "20", 0));
        assert_eq!(filter("limit.x=20"), c("limit.x", Op::Eq, "20", 0));
    }

    #[test]
    fn seed_directive_errors() {
        assert_error("limit=abc", 6, "limit must be a non-negative integer");
        assert_error("limit=-1", 6, "non-negative integer");
        assert_error("limit=", 6, "non-negative integer");
        assert_error("offset=x", 7, "offset must be a non-negative integer");
        assert_error("limit=gt=5", 6, "non-negative integer");
        assert_error("sort=", 5, "missing attribute name in sort");
        assert_error("sort=a,,b", 7, "missing attribute name in sort");
        assert_error("sort=-", 5, "missing attribute name in sort");
        assert_error("select=", 7, "expected an attribute name in select");
        assert_error("limit=5(", 7, "unexpected '('");
    }

    // ---- chained ranges ----------------------------------------------------------------

    #[test]
    fn chained_range_continues_the_previous_attribute() {
        assert_eq!(
            filter("price=gt=100&lt=200"),
            Filter::And(vec![
                c("price", Op::Gt, "100", 0),
                c("price", Op::Lt, "200", 13)
            ])
        );
        assert_eq!(
            filter("price=ge=1&le=2&name=x&sw=a"),
            Filter::And(vec![
                c("price", Op::Ge, "1", 0),
                c("price", Op::Le, "2", 11),
                c("name", Op::Eq, "x", 16),
                c("name", Op::StartsWith, "a", 23),
            ])
        );
        assert_eq!(
            filter("price=lt=10|gt=100"),
            Filter::Or(vec![
                c("price", Op::Lt, "10", 0),
                c("price", Op::Gt, "100", 12)
            ])
        );
        assert_eq!(
            filter("category.name=gt=A&lt=M"),
            Filter::And(vec![
                c("category.name", Op::Gt, "A", 0),
                c("category.name", Op::Lt, "M", 19)
            ])
        );
        // Harper's own spelling of a range still works.
        assert_eq!(
            filter("price=gt=100&price=lt=101"),
            Filter::And(vec![
                c("price", Op::Gt, "100", 0),
                c("price", Op::Lt, "101", 13)
            ])
        );
    }

    #[test]
    fn comparator_words_that_are_attributes_are_conditions() {
        let with_lt = |n: &str| n == "lt" || product(n);
        assert_eq!(
            parse_query("price=gt=100&lt=200", &with_lt).unwrap().filter,
            Some(Filter::And(vec![
                c("price", Op::Gt, "100", 0),
                c("lt", Op::Eq, "200", 13)
            ]))
        );
        // Only the plain `cmp=value` form chains.
        assert_eq!(
            filter("price=1&lt==2"),
            Filter::And(vec![c("price", Op::Eq, "1", 0), c("lt", Op::Eq, "2", 8)])
        );
    }

    #[test]
    fn chained_range_without_a_previous_condition_is_an_error() {
        assert_error("lt=200", 0, "no condition before it");
        assert_error("limit(5)&gt=1", 9, "no condition before it");
    }

    // ---- boolean structure -------------------------------------------------------------

    #[test]
    fn or_and_and() {
        assert_eq!(
            filter("a=1|a=2"),
            Filter::Or(vec![c("a", Op::Eq, "1", 0), c("a", Op::Eq, "2", 4)])
        );
        assert_eq!(
            filter("(a=1|a=2)"),
            Filter::Or(vec![c("a", Op::Eq, "1", 1), c("a", Op::Eq, "2", 5)])
        );
        assert_eq!(
            filter("inStock=false&(categoryId=books|categoryId=toys)"),
            Filter::And(vec![
                c("inStock", Op::Eq, "false", 0),
                Filter::Or(vec![
                    c("categoryId", Op::Eq, "books", 15),
                    c("categoryId", Op::Eq, "toys", 32),
                ])
            ])
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        // Harper: "Can not mix operators within a condition grouping"; we use precedence.
        assert_eq!(
            filter("id=books&id=toys|id=home"),
            Filter::Or(vec![
                Filter::And(vec![
                    c("id", Op::Eq, "books", 0),
                    c("id", Op::Eq, "toys", 9)
                ]),
                c("id", Op::Eq, "home", 17),
            ])
        );
        assert_eq!(
            filter("a=1|b=2&c=3|d=4"),
            Filter::Or(vec![
                c("a", Op::Eq, "1", 0),
                Filter::And(vec![c("b", Op::Eq, "2", 4), c("c", Op::Eq, "3", 8)]),
                c("d", Op::Eq, "4", 12),
            ])
        );
    }

    #[test]
    fn brackets_group_like_parentheses_and_nest() {
        assert_eq!(filter("[a=1|b=2]"), filter("(a=1|b=2)"));
        assert_eq!(
            filter("a=1&[b=2|(c=3&[d=4|e=5])]"),
            Filter::And(vec![
                c("a", Op::Eq, "1", 0),
                Filter::Or(vec![
                    c("b", Op::Eq, "2", 5),
                    Filter::And(vec![
                        c("c", Op::Eq, "3", 10),
                        Filter::Or(vec![c("d", Op::Eq, "4", 15), c("e", Op::Eq, "5", 19)]),
                    ]),
                ]),
            ])
        );
    }

    #[test]
    fn groups_of_the_same_kind_flatten_and_singletons_collapse() {
        assert_eq!(
            filter("a=1&(b=2&c=3)"),
            Filter::And(vec![
                c("a", Op::Eq, "1", 0),
                c("b", Op::Eq, "2", 5),
                c("c", Op::Eq, "3", 9)
            ])
        );
        assert_eq!(
            filter("(a=1|b=2)|c=3"),
            Filter::Or(vec![
                c("a", Op::Eq, "1", 1),
                c("b", Op::Eq, "2", 5),
                c("c", Op::Eq, "3", 10)
            ])
        );
        assert_eq!(filter("((((a=1))))"), c("a", Op::Eq, "1", 4));
        assert_eq!(filter("(a=1&)"), c("a", Op::Eq, "1", 1));
    }

    #[test]
    fn group_errors() {
        assert_error("(a=1", 0, "unclosed '('");
        assert_error("a=1&[b=2", 4, "unclosed '['");
        assert_error("(id=books&select(id)", 0, "unclosed '('");
        assert_error("a=1)", 3, "unbalanced ')'");
        assert_error("a=1]", 3, "unbalanced ']'");
        assert_error("(a=1]", 4, "does not match the '(' at position 0");
        assert_error("[a=1)", 4, "does not match the '[' at position 0");
        assert_error("()", 0, "empty group");
        assert_error("a=1&[]", 4, "empty group");
        assert_error("(a=1)b=2", 5, "expected '&' or '|'");
        assert_error("(a=1)(b=2)", 5, "expected '&' or '|'");
    }

    #[test]
    fn or_operand_errors() {
        assert_error("|a=1", 0, "expected a condition before '|'");
        assert_error("a=1|", 4, "expected a condition after '|'");
        assert_error("a=1||b=2", 4, "expected a condition after '|'");
        // Empty `&` items are skipped everywhere, also next to `|`.
        let or = Filter::Or(vec![c("a", Op::Eq, "1", 0), c("b", Op::Eq, "2", 5)]);
        assert_eq!(filter("a=1|&b=2"), or);
        assert_eq!(filter("a=1&|b=2"), or);
        assert_error("(|a=1)", 1, "expected a condition before '|'");
        assert_error("(&)|a=1", 3, "expected a condition before '|'");
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("{}a=1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(filter(&ok), c("a", Op::Eq, "1", MAX_DEPTH));
        let deep = format!(
            "{}a=1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_error(&deep, MAX_DEPTH, "nested deeper than 32");
        let brackets = "[".repeat(10_000);
        assert_error(&brackets, MAX_DEPTH, "nested deeper");
        // Select braces count too.
        let mut sel = "select(".to_owned();
        for i in 0..MAX_DEPTH {
            write!(sel, "r{i}{{").unwrap();
        }
        sel.push('x');
        sel.push_str(&"}".repeat(MAX_DEPTH));
        sel.push(')');
        let e = error(&sel);
        assert!(e.message.contains("nested deeper"), "{e}");
    }

    #[test]
    fn length_limit() {
        let long = format!("name={}", "x".repeat(MAX_QUERY_LEN));
        assert_error(&long, MAX_QUERY_LEN, "longer than 65536 bytes");
        let fits = format!("name={}", "x".repeat(MAX_QUERY_LEN - 5));
        assert_eq!(
            filter(&fits),
            c("name", Op::Eq, &"x".repeat(MAX_QUERY_LEN - 5), 0)
        );
    }

    // ---- condition errors --------------------------------------------------------------

    #[test]
    fn unknown_comparator() {
        let e = error("name=xx=Toys");
        assert_eq!(e.message, "Unknown query comparator \"xx\"");
        assert_eq!(e.position, 5);
        assert_error("a=1&name=gte=5", 9, "Unknown query comparator \"gte\"");
        assert_error("name=GT=5", 5, "Unknown query comparator \"GT\"");
        // A base64 padding `=` must be encoded.
        assert_error("token=YWJj=", 6, "Unknown query comparator \"YWJj\"");
    }

    #[test]
    fn empty_attribute_names() {
        assert_error("=5", 0, "missing attribute name before '='");
        assert_error("a=1&=5", 4, "missing attribute name before '='");
        assert_error("!=5", 0, "missing attribute name before '!='");
        assert_error("==5", 0, "missing attribute name");
        assert_error("a..b=1", 2, "empty segment in attribute path");
        assert_error(".a=1", 0, "empty segment in attribute path");
        assert_error("a.=1", 2, "empty segment in attribute path");
    }

    #[test]
    fn bare_words() {
        assert_error("justtext", 0, "found \"justtext\"");
        assert_error("?justtext", 1, "found \"justtext\"");
        assert_error("a=1&justtext&b=2", 4, "found \"justtext\"");
        assert_error("(justtext)", 1, "found \"justtext\"");
        assert_error("a=1|b", 4, "found \"b\"");
        assert_error("a[0]=1", 1, "unexpected '['");
    }

    #[test]
    fn brackets_in_values_must_be_encoded() {
        assert_error("name=Lamp(red)", 9, "percent-encode it as %28");
        assert_error("name=eq=a[1]", 9, "percent-encode it as %5B");
        assert_error("name=a(", 6, "unexpected '('");
        assert_eq!(
            filter("name=Lamp%20%28red%29"),
            c("name", Op::Eq, "Lamp (red)", 0)
        );
        // A closing bracket ends the value and must close a group.
        assert_error("name=a)", 6, "unbalanced ')'");
    }

    // ---- percent decoding --------------------------------------------------------------

    #[test]
    fn percent_encoded_values_and_names() {
        assert_eq!(
            filter("name=Deluxe%20Lamp"),
            c("name", Op::Eq, "Deluxe Lamp", 0)
        );
        assert_eq!(filter("id=a%2Fb"), c("id", Op::Eq, "a/b", 0));
        assert_eq!(
            filter("name=Deluxe+Lamp"),
            c("name", Op::Eq, "Deluxe Lamp", 0)
        );
        assert_eq!(filter("name=a%2Bb"), c("name", Op::Eq, "a+b", 0));
        assert_eq!(
            filter("name=a%26b%7Cc%3Dd"),
            c("name", Op::Eq, "a&b|c=d", 0)
        );
        assert_eq!(filter("name=%e2%82%ac"), c("name", Op::Eq, "€", 0));
        assert_eq!(filter("name=caf%C3%A9"), c("name", Op::Eq, "café", 0));
        assert_eq!(filter("name=café"), c("name", Op::Eq, "café", 0));
        assert_eq!(filter("na%6De=x"), c("name", Op::Eq, "x", 0));
        // `+` is a space in values only.
        assert_eq!(filter("a+b=c+d"), c("a+b", Op::Eq, "c d", 0));
        assert_eq!(filter("price=gt=1%2E5"), c("price", Op::Gt, "1.5", 0));
    }

    #[test]
    fn percent_decoding_errors() {
        assert_error("name=abc%", 8, "invalid percent-escape");
        assert_error("name=abc%4", 8, "invalid percent-escape");
        assert_error("name=abc%G1", 8, "invalid percent-escape");
        assert_error("name=%%41", 5, "invalid percent-escape");
        assert_error("na%zme=1", 2, "invalid percent-escape");
        assert_error("name=ab%FF", 7, "not valid UTF-8");
        assert_error("name=%C3%A9%C3", 11, "not valid UTF-8");
        assert_error("name=x%E2%82y", 6, "not valid UTF-8");
        assert_error("name=%E2é", 5, "not valid UTF-8");
        assert_error("limit(%FF)", 6, "not valid UTF-8");
        assert_error("sort(-%C0)", 6, "not valid UTF-8");
    }

    // ---- directives --------------------------------------------------------------------

    #[test]
    fn limit_function() {
        assert_eq!(parse("limit(3)").limit, Some(3));
        assert_eq!(parse("limit(0)").limit, Some(0));
        let q = parse("limit(2,4)");
        assert_eq!((q.offset, q.limit), (2, Some(2)));
        let q = parse("limit(10,20)");
        assert_eq!((q.offset, q.limit), (10, Some(10)));
        let q = parse("limit(5,5)");
        assert_eq!((q.offset, q.limit), (5, Some(0)));
        let q = parse("categoryId=books&limit(2)");
        assert_eq!(q.filter, Some(c("categoryId", Op::Eq, "books", 0)));
        assert_eq!(q.limit, Some(2));
        // A later directive replaces an earlier one.
        let q = parse("limit(10,20)&limit(3)");
        assert_eq!((q.offset, q.limit), (10, Some(3)));
    }

    #[test]
    fn limit_errors() {
        assert_error(
            "limit(abc)",
            6,
            "limit must be a non-negative integer, found \"abc\"",
        );
        assert_error("limit()", 6, "limit must be a non-negative integer");
        assert_error("limit(-1)", 6, "non-negative integer");
        assert_error("limit(1.5)", 6, "non-negative integer");
        assert_error("limit(99999999999999999999999)", 6, "non-negative integer");
        assert_error("limit(4,2)", 8, "the end is before the start");
        assert_error("limit(1,x)", 8, "limit end must be");
        assert_error("limit(x,1)", 6, "limit start must be");
        assert_error("limit(1,2,3)", 10, "one or two numbers");
        assert_error("limit(5", 5, "unclosed limit()");
        assert_error("limit(5&a=1)", 7, "unexpected '&' in limit()");
        assert_error("limit(5)x", 8, "expected '&' or '|'");
    }

    #[test]
    fn sort_function() {
        assert_eq!(parse("sort(name)").sort, vec![asc("name")]);
        assert_eq!(parse("sort(+name)").sort, vec![asc("name")]);
        assert_eq!(parse("sort(-price)").sort, vec![desc("price")]);
        assert_eq!(
            parse("sort(+a,-b,c)").sort,
            vec![asc("a"), desc("b"), asc("c")]
        );
        // Only a raw sign is a sign.
        assert_eq!(parse("sort(%2Dx)").sort, vec![asc("-x")]);
        assert_eq!(parse("sort(-%2Dx)").sort, vec![desc("-x")]);
        let q = parse("price=lt=100&inStock=true&sort(+name)");
        assert_eq!(q.sort, vec![asc("name")]);
        assert_eq!(
            q.filter,
            Some(Filter::And(vec![
                c("price", Op::Lt, "100", 0),
                c("inStock", Op::Eq, "true", 13)
            ]))
        );
        let q = parse("stockQuantity=gt=195&sort(-stockQuantity)");
        assert_eq!(q.sort, vec![desc("stockQuantity")]);
        assert_eq!(
            parse("categoryId=books&sort(-a,+b)").sort,
            vec![desc("a"), asc("b")]
        );
    }

    #[test]
    fn sort_errors() {
        assert_error("sort()", 5, "missing attribute name in sort");
        assert_error("sort(-)", 5, "missing attribute name in sort");
        assert_error("sort(a,)", 7, "missing attribute name in sort");
        assert_error("sort(a", 4, "unclosed sort()");
        assert_error("sort(a(b))", 6, "unexpected '(' in sort()");
    }

    #[test]
    fn select_shapes() {
        assert_eq!(
            parse("select(name,price)").select,
            select(
                SelectShape::Objects,
                vec![attribute("name"), attribute("price")]
            )
        );
        assert_eq!(
            parse("select(name)").select,
            select(SelectShape::Values, vec![attribute("name")])
        );
        assert_eq!(
            parse("select(name,)").select,
            select(SelectShape::Objects, vec![attribute("name")])
        );
        assert_eq!(
            parse("select([name,price])").select,
            select(
                SelectShape::Arrays,
                vec![attribute("name"), attribute("price")]
            )
        );
        assert_eq!(
            parse("select([name])").select,
            select(SelectShape::Arrays, vec![attribute("name")])
        );
        assert_eq!(
            parse("select(*)").select,
            select(SelectShape::Objects, vec![SelectItem::All])
        );
        assert_eq!(
            parse("select(*,category{name})").select,
            select(
                SelectShape::Objects,
                vec![
                    SelectItem::All,
                    related("category", vec![attribute("name")])
                ]
            )
        );
        assert_eq!(
            parse("select(nope)").select,
            select(SelectShape::Values, vec![attribute("nope")])
        );
    }

    #[test]
    fn nested_select() {
        assert_eq!(
            parse("select(name,category{name})").select,
            select(
                SelectShape::Objects,
                vec![
                    attribute("name"),
                    related("category", vec![attribute("name")])
                ]
            )
        );
        assert_eq!(
            parse("select(name,category{name,id})").select,
            select(
                SelectShape::Objects,
                vec![
                    attribute("name"),
                    related("category", vec![attribute("name"), attribute("id")])
                ]
            )
        );
        assert_eq!(
            parse("select(name,category)").select,
            select(
                SelectShape::Objects,
                vec![attribute("name"), attribute("category")]
            )
        );
        assert_eq!(
            parse("select(name,products{id,name})").select,
            select(
                SelectShape::Objects,
                vec![
                    attribute("name"),
                    related("products", vec![attribute("id"), attribute("name")])
                ]
            )
        );
        assert_eq!(
            parse("select(id,quantity,product{name,price})").select,
            select(
                SelectShape::Objects,
                vec![
                    attribute("id"),
                    attribute("quantity"),
                    related("product", vec![attribute("name"), attribute("price")])
                ]
            )
        );
        assert_eq!(
            parse("select(a{b{c{d,*},e},},x)").select,
            select(
                SelectShape::Objects,
                vec![
                    related(
                        "a",
                        vec![related(
                            "b",
                            vec![
                                related("c", vec![attribute("d"), SelectItem::All]),
                                attribute("e")
                            ]
                        )]
                    ),
                    attribute("x")
                ]
            )
        );
        // A single related item without a trailing comma gives bare values.
        assert_eq!(
            parse("select(category{name})").select,
            select(
                SelectShape::Values,
                vec![related("category", vec![attribute("name")])]
            )
        );
        assert_eq!(
            parse("select([name,category{name}])").select,
            select(
                SelectShape::Arrays,
                vec![
                    attribute("name"),
                    related("category", vec![attribute("name")])
                ]
            )
        );
        assert_eq!(
            parse("select(na%6De,caf%C3%A9)").select,
            select(
                SelectShape::Objects,
                vec![attribute("name"), attribute("café")]
            )
        );
    }

    #[test]
    fn select_errors() {
        assert_error("select()", 7, "expected an attribute name in select");
        assert_error("select([])", 8, "expected an attribute name in select");
        assert_error("select(a,,b)", 9, "expected an attribute name in select");
        assert_error("select(,a)", 7, "expected an attribute name in select");
        assert_error("select(a{})", 9, "expected an attribute name in select");
        assert_error("select(a", 6, "unclosed select(");
        assert_error("select(a{b)", 10, "unexpected ')' in '{' in select");
        assert_error("select(a{b", 8, "unclosed '{' in select");
        assert_error(
            "select([a,b)",
            11,
            "unexpected ')' in '[' in select() (expected ']')",
        );
        assert_error("select([a,b", 7, "unclosed '[' in select()");
        assert_error("select([a,b],c)", 12, "unexpected ',' in select(");
        assert_error("select(*{a})", 7, "'*' cannot have a nested select");
        assert_error("select(a(b))", 8, "unexpected '(' in select(");
        assert_error("select(a}", 8, "unexpected '}' in select(");
    }

    #[test]
    fn unknown_functions() {
        let e = error("offset(5)");
        assert_eq!(e.position, 0);
        assert!(
            e.message.starts_with("unknown query function offset"),
            "{e}"
        );
        assert_error("categoryId=books&foo(1)", 17, "unknown query function foo");
        assert_error("Limit(5)", 0, "unknown query function Limit");
        assert_error("a=1&(b=2&count(x))", 9, "unknown query function count");
    }

    #[test]
    fn directives_anywhere_among_conditions() {
        let q = parse("limit(5)&a=1&sort(name)&b=2&select(a,b)");
        assert_eq!(
            q.filter,
            Some(Filter::And(vec![
                c("a", Op::Eq, "1", 9),
                c("b", Op::Eq, "2", 24)
            ]))
        );
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.sort, vec![asc("name")]);
        assert_eq!(
            q.select,
            select(SelectShape::Objects, vec![attribute("a"), attribute("b")])
        );
        // Inside groups, joined by `&`.
        let q = parse("x=1|(a=1&limit(5))");
        assert_eq!(
            q.filter,
            Some(Filter::Or(vec![
                c("x", Op::Eq, "1", 0),
                c("a", Op::Eq, "1", 5)
            ]))
        );
        assert_eq!(q.limit, Some(5));
        let q = parse("(limit(5))&a=1");
        assert_eq!(q.filter, Some(c("a", Op::Eq, "1", 11)));
        assert_eq!(q.limit, Some(5));
        let q = parse("select(name)&sort(-price)&limit(1,3)");
        assert_eq!(q.filter, None);
        assert_eq!((q.offset, q.limit), (1, Some(2)));
        // A directive ends a chained range's context only by position: the previous
        // condition in the text is still the one continued.
        assert_eq!(
            filter("price=gt=1&limit(2)&lt=5"),
            Filter::And(vec![
                c("price", Op::Gt, "1", 0),
                c("price", Op::Lt, "5", 20)
            ])
        );
    }

    #[test]
    fn directives_next_to_or_are_errors() {
        assert_error(
            "a=1|limit(5)",
            4,
            "query function limit must be joined with '&'",
        );
        assert_error(
            "limit(5)|a=1",
            0,
            "query function limit must be joined with '&'",
        );
        assert_error(
            "a=1&sort(x)|b=2",
            4,
            "query function sort must be joined with '&'",
        );
        assert_error("a=1|select(a)&b=2", 4, "query function select");
        assert_error("a=1|limit=5", 4, "query function limit");
        assert_error("a=1|&limit(5)", 5, "query function limit");
    }

    #[test]
    fn harper_table_forms() {
        let q = parse("categoryId=electronics&inStock=true&limit(20)");
        assert_eq!(q.limit, Some(20));
        assert_eq!(
            q.filter,
            Some(Filter::And(vec![
                c("categoryId", Op::Eq, "electronics", 0),
                c("inStock", Op::Eq, "true", 23)
            ]))
        );
        let q = parse("price=lt=100&inStock=true");
        assert_eq!(q.sort, vec![]);
        assert_eq!(filter("id=prod-00002"), c("id", Op::Eq, "prod-00002", 0));
        assert_eq!(
            filter("inStock=boolean:false"),
            c("inStock", Op::Eq, "boolean:false", 0)
        );
        assert_eq!(filter("nope=1"), c("nope", Op::Eq, "1", 0));
    }

    #[test]
    fn error_display() {
        let e = error("name=xx=Toys");
        assert_eq!(
            e.to_string(),
            "Unknown query comparator \"xx\" at position 5"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().contains("position 5"));
    }

    #[test]
    fn long_bare_words_are_shortened_in_messages() {
        let word = "w".repeat(100);
        let e = error(&word);
        assert!(e.message.contains('…'), "{e}");
        assert!(e.message.len() < 150, "{e}");
    }

    // ---- properties --------------------------------------------------------------------

    fn assert_no_panic(raw: &str) -> std::result::Result<(), TestCaseError> {
        let all = |_: &str| true;
        let none = |_: &str| false;
        let even = |n: &str| n.len().is_multiple_of(2);
        let checks: [&dyn Fn(&str) -> bool; 4] = [&all, &none, &even, &product];
        for is_attribute in checks {
            if let Err(e) = parse_query(raw, is_attribute) {
                prop_assert!(e.position <= raw.len(), "{raw:?}: {e}");
                prop_assert!(raw.is_char_boundary(e.position), "{raw:?}: {e}");
                prop_assert!(!e.message.is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(raw in "\\PC{0,80}") {
            assert_no_panic(&raw)?;
        }

        #[test]
        fn never_panics_on_any_chars(raw in ".{0,40}") {
            assert_no_panic(&raw)?;
        }

        #[test]
        fn never_panics_on_structural_soup(
            raw in "[a-z()\\[\\]{}=&|!,%+*.0-9A-F?é€ -]{0,64}"
        ) {
            assert_no_panic(&raw)?;
        }

        #[test]
        fn never_panics_on_query_like_tokens(
            tokens in prop::collection::vec(
                prop::sample::select(vec![
                    "a", "price", "lt", "gt", "limit", "sort", "select", "offset", "=", "==",
                    "!=", "=gt=", "=xx=", "&", "|", "(", ")", "[", "]", "{", "}", ",", "-",
                    "+", "*", "%", "%2", "%41", "%FF", "%C3", "5", ".", "é", "?", "(", ")",
                ]),
                0..40,
            )
        ) {
            assert_no_panic(&tokens.concat())?;
        }
    }

    // ---- round trip: print a generated Query, parse it back ----------------------------

    /// Words the round trip's `is_attribute` reports as not attributes; generated names
    /// avoid them so the seed forms and chained ranges cannot capture a condition.
    const RESERVED: &[&str] = &[
        "limit", "offset", "sort", "select", "eq", "ne", "lt", "le", "gt", "ge", "sw", "ct", "ew",
    ];

    fn not_reserved(name: &str) -> bool {
        !RESERVED.contains(&name)
    }

    /// Percent-encodes everything but ASCII letters, digits and `_` (spaces as `+` when
    /// `plus`).
    fn encode(text: &str, plus: bool) -> String {
        let mut out = String::new();
        for b in text.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' {
                out.push(b as char);
            } else if b == b' ' && plus {
                out.push('+');
            } else {
                write!(out, "%{b:02X}").unwrap();
            }
        }
        out
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-zA-Z_][a-zA-Z0-9_]{0,7}",
            1 => "\\PC{1,6}",
        ]
        .prop_filter("reserved word", |n| not_reserved(n) && n != "*")
    }

    fn condition_strategy() -> impl Strategy<Value = Filter> {
        let op = prop::sample::select(vec![
            Op::Eq,
            Op::Ne,
            Op::Lt,
            Op::Le,
            Op::Gt,
            Op::Ge,
            Op::StartsWith,
            Op::Contains,
            Op::EndsWith,
        ]);
        let value = prop_oneof!["[a-zA-Z0-9 ._-]{0,8}", "\\PC{0,8}", Just("null".to_owned())];
        (prop::collection::vec(name_strategy(), 1..=3), op, value).prop_map(|(path, op, v)| {
            Filter::Condition(Condition {
                path,
                op,
                value: Operand::Text(v),
                position: None,
            })
        })
    }

    /// Flattens same-kind nesting, as the parser does.
    fn normalize(filter: Filter) -> Filter {
        match filter {
            Filter::And(terms) => {
                combine(terms.into_iter().map(normalize).collect(), true).unwrap()
            }
            Filter::Or(terms) => {
                combine(terms.into_iter().map(normalize).collect(), false).unwrap()
            }
            condition => condition,
        }
    }

    fn filter_strategy() -> impl Strategy<Value = Filter> {
        condition_strategy()
            .prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
                    prop::collection::vec(inner, 2..4).prop_map(Filter::Or),
                ]
            })
            .prop_map(normalize)
    }

    fn select_item_strategy() -> impl Strategy<Value = SelectItem> {
        let leaf = prop_oneof![
            4 => name_strategy().prop_map(SelectItem::Attribute),
            1 => Just(SelectItem::All),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            (name_strategy(), prop::collection::vec(inner, 1..4)).prop_map(|(name, items)| {
                SelectItem::Related {
                    name,
                    select: Select {
                        shape: SelectShape::Objects,
                        items,
                    },
                }
            })
        })
    }

    fn select_strategy() -> impl Strategy<Value = Select> {
        prop_oneof![
            prop::collection::vec(select_item_strategy(), 1..4).prop_map(|items| Select {
                shape: SelectShape::Objects,
                items
            }),
            select_item_strategy()
                .prop_filter("bare values of *", |i| *i != SelectItem::All)
                .prop_map(|item| Select {
                    shape: SelectShape::Values,
                    items: vec![item]
                }),
            prop::collection::vec(select_item_strategy(), 1..4).prop_map(|items| Select {
                shape: SelectShape::Arrays,
                items
            }),
        ]
    }

    fn query_strategy() -> impl Strategy<Value = Query> {
        let sort = prop::collection::vec(
            (name_strategy(), any::<bool>()).prop_map(|(attribute, descending)| Sort {
                attribute,
                descending,
            }),
            0..3,
        );
        (
            prop::option::weighted(0.9, filter_strategy()),
            sort,
            prop_oneof![Just(0usize), 0..1000usize],
            prop::option::of(0..1000usize),
            prop::option::of(select_strategy()),
        )
            .prop_map(|(filter, sort, offset, limit, select)| Query {
                filter,
                sort,
                offset,
                limit,
                select,
            })
    }

    /// How to spell a query; every style must parse back to the same [`Query`].
    #[derive(Debug, Clone)]
    struct Style {
        /// `[ ]` instead of `( )` for groups.
        brackets: bool,
        /// Also parenthesize AND groups inside OR (precedence makes it optional).
        extra_parens: bool,
        /// The seed's `limit=`/`offset=`/`sort=`/`select=` forms where possible.
        seed: bool,
        /// Where the directives go among the top-level terms.
        directive_slot: usize,
        /// Picks among equivalent operator spellings.
        variant: usize,
        trailing_ampersand: bool,
        leading_question_mark: bool,
    }

    fn style_strategy() -> impl Strategy<Value = Style> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0..8usize,
            0..6usize,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(brackets, extra_parens, seed, directive_slot, variant, trailing, question)| {
                    Style {
                        brackets,
                        extra_parens,
                        seed,
                        directive_slot,
                        variant,
                        trailing_ampersand: trailing,
                        leading_question_mark: question,
                    }
                },
            )
    }

    struct Printer<'s> {
        style: &'s Style,
        counter: usize,
    }

    impl Printer<'_> {
        fn next(&mut self) -> usize {
            self.counter += 1;
            self.counter + self.style.variant
        }

        fn group(&mut self, filter: &Filter) -> String {
            let inner = self.filter(filter);
            if self.style.brackets {
                format!("[{inner}]")
            } else {
                format!("({inner})")
            }
        }

        fn filter(&mut self, filter: &Filter) -> String {
            match filter {
                Filter::Condition(c) => self.condition(c),
                Filter::And(terms) => {
                    let parts: Vec<String> = terms
                        .iter()
                        .map(|t| match t {
                            Filter::Or(_) => self.group(t),
                            _ => self.filter(t),
                        })
                        .collect();
                    parts.join("&")
                }
                Filter::Or(terms) => {
                    let parts: Vec<String> = terms
                        .iter()
                        .map(|t| match t {
                            Filter::And(_) if self.style.extra_parens => self.group(t),
                            _ => self.filter(t),
                        })
                        .collect();
                    parts.join("|")
                }
            }
        }

        fn condition(&mut self, c: &Condition) -> String {
            let path: Vec<String> = c.path.iter().map(|s| encode(s, false)).collect();
            let n = self.next();
            let op = match c.op {
                Op::Eq => ["=", "==", "=eq="][n % 3].to_owned(),
                Op::Ne => ["!=", "=ne="][n % 2].to_owned(),
                other => format!("={}=", other.name()),
            };
            let Operand::Text(value) = &c.value else {
                unreachable!()
            };
            format!(
                "{}{op}{}",
                path.join("."),
                encode(value, n.is_multiple_of(2))
            )
        }

        fn sort_key(&mut self, sort: &Sort) -> String {
            let sign = if sort.descending {
                "-"
            } else if self.next().is_multiple_of(2) {
                "+"
            } else {
                ""
            };
            format!("{sign}{}", encode(&sort.attribute, false))
        }

        fn select_items(&mut self, items: &[SelectItem]) -> String {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    SelectItem::All => "*".to_owned(),
                    SelectItem::Attribute(name) => encode(name, false),
                    SelectItem::Related { name, select } => {
                        format!(
                            "{}{{{}}}",
                            encode(name, false),
                            self.select_items(&select.items)
                        )
                    }
                })
                .collect();
            parts.join(",")
        }

        fn directives(&mut self, q: &Query) -> Vec<String> {
            let mut out = Vec::new();
            match (q.offset, q.limit) {
                (0, None) => {}
                (offset, None) => out.push(format!("offset={offset}")),
                (0, Some(limit)) if self.style.seed => out.push(format!("limit={limit}")),
                (0, Some(limit)) => out.push(format!("limit({limit})")),
                (offset, Some(limit)) if self.style.seed => {
                    out.push(format!("offset={offset}"));
                    out.push(format!("limit={limit}"));
                }
                (offset, Some(limit)) => out.push(format!("limit({offset},{})", offset + limit)),
            }
            if !q.sort.is_empty() {
                let keys: Vec<String> = q.sort.iter().map(|s| self.sort_key(s)).collect();
                if self.style.seed {
                    out.push(format!("sort={}", keys.join(",")));
                } else {
                    out.push(format!("sort({})", keys.join(",")));
                }
            }
            if let Some(select) = &q.select {
                let items = self.select_items(&select.items);
                let single_object = select.items.len() == 1 && select.items[0] != SelectItem::All;
                out.push(match select.shape {
                    SelectShape::Objects if self.style.seed => format!("select={items}"),
                    SelectShape::Objects if single_object => format!("select({items},)"),
                    SelectShape::Objects | SelectShape::Values => format!("select({items})"),
                    SelectShape::Arrays => format!("select([{items}])"),
                });
            }
            out
        }

        fn query(&mut self, q: &Query) -> String {
            let directives = self.directives(q);
            let mut parts: Vec<String> = match &q.filter {
                None => Vec::new(),
                Some(Filter::And(terms)) => terms
                    .iter()
                    .map(|t| match t {
                        Filter::Or(_) => self.group(t),
                        _ => self.filter(t),
                    })
                    .collect(),
                // Directives may not sit next to `|`.
                Some(f @ Filter::Or(_)) if !directives.is_empty() => vec![self.group(f)],
                Some(f) => vec![self.filter(f)],
            };
            let slot = self.style.directive_slot % (parts.len() + 1);
            parts.splice(slot..slot, directives);
            let mut raw = parts.join("&");
            if self.style.trailing_ampersand {
                raw.push('&');
            }
            if self.style.leading_question_mark {
                raw.insert(0, '?');
            }
            raw
        }
    }

    fn strip_positions(filter: &mut Filter, out: &mut Vec<(usize, String)>) {
        match filter {
            Filter::Condition(c) => {
                out.push((c.position.take().unwrap(), c.path[0].clone()));
            }
            Filter::And(terms) | Filter::Or(terms) => {
                for t in terms {
                    strip_positions(t, out);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn printed_queries_parse_back(query in query_strategy(), style in style_strategy()) {
            let raw = Printer { style: &style, counter: 0 }.query(&query);
            let mut parsed = parse_query(&raw, &not_reserved)
                .map_err(|e| TestCaseError::fail(format!("{raw:?}: {e}")))?;
            let mut positions = Vec::new();
            if let Some(f) = &mut parsed.filter {
                strip_positions(f, &mut positions);
            }
            prop_assert_eq!(&parsed, &query, "raw: {}", raw);
            for (position, first) in positions {
                let spelled = encode(&first, false);
                prop_assert!(
                    raw[position..].starts_with(&spelled),
                    "position {} in {:?} is not at {:?}", position, raw, spelled
                );
            }
        }
    }
}
