//! The query model: what Rust code builds and what the REST query string parses into.
//!
//! ```
//! use harper_runtime::query::{Query, attr};
//! let q = Query::new()
//!     .filter(attr("categoryId").eq("toys") & attr("price").lt(100.0))
//!     .sort_by("-price")
//!     .limit(20);
//! assert_eq!(q.limit, Some(20));
//! ```

use serde_json::Value;

/// A query on one table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub filter: Option<Filter>,
    /// Sort keys, most significant first. Empty: index order of the access path (primary-key
    /// order for scans).
    pub sort: Vec<Sort>,
    pub offset: usize,
    pub limit: Option<usize>,
    /// Which attributes to return (`query_json` and REST); `None` returns whole records.
    pub select: Option<Select>,
}

/// A boolean combination of conditions.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Condition(Condition),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// `attribute <op> value`. The attribute may go through relationships (`category.name`).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Attribute path: `["price"]`, or `["category", "name"]` through a relationship.
    pub path: Vec<String>,
    pub op: Op,
    pub value: Operand,
    /// Position of this condition in the query text, for error messages (parsed queries).
    pub position: Option<usize>,
}

/// Comparison operators. On list fields a condition holds when some element satisfies it
/// (`Ne` holds when no element equals the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    StartsWith,
    Contains,
    EndsWith,
}

impl Op {
    /// The REST comparator name (`eq`, `ne`, `lt`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::StartsWith => "sw",
            Op::Contains => "ct",
            Op::EndsWith => "ew",
        }
    }
}

/// A condition's value: typed JSON (from Rust) or text (from a URL), coerced to the
/// attribute's declared type when the query is planned.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Json(Value),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub attribute: String,
    pub descending: bool,
}

/// Which attributes to return, and in what shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub shape: SelectShape,
    pub items: Vec<SelectItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectShape {
    /// Objects with the selected attributes (`select(a,b)`).
    Objects,
    /// The bare value of the single selected attribute (`select(a)`).
    Values,
    /// Arrays of the selected values (`select([a,b])`).
    Arrays,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// Every stored attribute (`*`).
    All,
    /// One attribute; a relationship name embeds the related record(s) whole.
    Attribute(String),
    /// A relationship with a nested select (`category{name}`).
    Related { name: String, select: Select },
}

impl Query {
    pub fn new() -> Query {
        Query::default()
    }

    /// Adds a filter (ANDed with any existing one).
    pub fn filter(mut self, filter: Filter) -> Query {
        self.filter = Some(match self.filter.take() {
            Some(existing) => existing & filter,
            None => filter,
        });
        self
    }

    /// Adds a sort key: `"name"` ascending, `"-price"` descending (`"+name"` also ascending).
    pub fn sort_by(mut self, key: &str) -> Query {
        let (attribute, descending) = match key.strip_prefix('-') {
            Some(rest) => (rest, true),
            None => (key.strip_prefix('+').unwrap_or(key), false),
        };
        self.sort.push(Sort {
            attribute: attribute.to_owned(),
            descending,
        });
        self
    }

    pub fn offset(mut self, offset: usize) -> Query {
        self.offset = offset;
        self
    }

    pub fn limit(mut self, limit: usize) -> Query {
        self.limit = Some(limit);
        self
    }

    /// Selects attributes as objects (`["name", "price"]`).
    pub fn select<I: IntoIterator<Item = S>, S: Into<String>>(mut self, attributes: I) -> Query {
        self.select = Some(Select {
            shape: SelectShape::Objects,
            items: attributes
                .into_iter()
                .map(|a| SelectItem::Attribute(a.into()))
                .collect(),
        });
        self
    }

    pub fn select_with(mut self, select: Select) -> Query {
        self.select = Some(select);
        self
    }
}

/// Starts a condition on an attribute (`attr("price").lt(100.0)`, `attr("category.name")`).
pub fn attr(path: &str) -> Attr {
    Attr {
        path: path.split('.').map(str::to_owned).collect(),
    }
}

/// An attribute path waiting for its comparison.
#[derive(Debug, Clone)]
pub struct Attr {
    path: Vec<String>,
}

impl Attr {
    fn cond(self, op: Op, value: Value) -> Filter {
        Filter::Condition(Condition {
            path: self.path,
            op,
            value: Operand::Json(value),
            position: None,
        })
    }
    pub fn eq(self, v: impl Into<Value>) -> Filter {
        self.cond(Op::Eq, v.into())
    }
    pub fn ne(self, v: impl Into<Value>) -> Filter {
        self.cond(Op::Ne, v.into())
    }
    pub fn lt(self, v: impl Into<Value>) -> Filter {
        self.cond(Op::Lt, v.into())
    }
    pub fn le(self, v: impl Into<Value>) -> Filter {
        self.cond(Op::Le, v.into())
    }
    pub fn gt(self, v: impl Into<Value>) -> Filter {
        self.cond(Op::Gt, v.into())
    }
    pub fn ge(self, v: impl Into<Value>) -> Filter {
        self.cond(Op::Ge, v.into())
    }
    pub fn starts_with(self, v: &str) -> Filter {
        self.cond(Op::StartsWith, v.into())
    }
    pub fn contains(self, v: &str) -> Filter {
        self.cond(Op::Contains, v.into())
    }
    pub fn ends_with(self, v: &str) -> Filter {
        self.cond(Op::EndsWith, v.into())
    }
    /// The attribute is absent or null.
    pub fn is_null(self) -> Filter {
        self.cond(Op::Eq, Value::Null)
    }
    /// The attribute is present and not null.
    pub fn is_not_null(self) -> Filter {
        self.cond(Op::Ne, Value::Null)
    }
}

impl std::ops::BitAnd for Filter {
    type Output = Filter;
    fn bitand(self, rhs: Filter) -> Filter {
        match (self, rhs) {
            (Filter::And(mut a), Filter::And(b)) => {
                a.extend(b);
                Filter::And(a)
            }
            (Filter::And(mut a), f) => {
                a.push(f);
                Filter::And(a)
            }
            (f, Filter::And(mut b)) => {
                b.insert(0, f);
                Filter::And(b)
            }
            (a, b) => Filter::And(vec![a, b]),
        }
    }
}

impl std::ops::BitOr for Filter {
    type Output = Filter;
    fn bitor(self, rhs: Filter) -> Filter {
        match (self, rhs) {
            (Filter::Or(mut a), Filter::Or(b)) => {
                a.extend(b);
                Filter::Or(a)
            }
            (Filter::Or(mut a), f) => {
                a.push(f);
                Filter::Or(a)
            }
            (f, Filter::Or(mut b)) => {
                b.insert(0, f);
                Filter::Or(b)
            }
            (a, b) => Filter::Or(vec![a, b]),
        }
    }
}
