//! Compile-time behaviour of `#[table]` and `#[export]`: every error the macros report, one
//! case per file with its `.stderr` golden, and the schemas that must compile.
//!
//! Regenerate the goldens after an intended change with
//! `TRYBUILD=overwrite cargo test --test ui`, then read every changed `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
