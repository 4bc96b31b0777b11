//! OpenAPI document generated from table definitions (being written).
