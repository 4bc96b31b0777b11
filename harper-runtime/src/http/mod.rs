//! The Harper-compatible REST API over warp.

pub mod negotiate;
pub mod openapi;
