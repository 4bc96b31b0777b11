//! Queries: the model (built in Rust or parsed from a URL), the planner and the executor.

mod exec;
mod model;

pub use exec::QueryStats;
pub(crate) use exec::{
    Predicate, Shaper, budgetable, check_select, project, related_records, run, run_bounded,
    run_each,
};
pub use model::{
    Attr, Condition, Filter, Op, Operand, Query, Select, SelectItem, SelectShape, Sort, attr,
};
mod parse;

pub use parse::{ParseError, parse_query};
