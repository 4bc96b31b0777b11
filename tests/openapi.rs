//! The OpenAPI document of the storefront (and of a table with every field shape) passes
//! `openapi-spec-validator`, the reference validator of OpenAPI 3.0 documents.
//!
//! Needs Python 3 with `openapi-spec-validator` installed
//! (`python3 -m pip install openapi-spec-validator`; `.ci/run` installs it).

#[path = "../examples/storefront/schema.rs"]
#[allow(dead_code)]
mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use harper::http::openapi::document;
use harper::prelude::*;
use harper::schema::TableDef;
use schema::{CartItem, Category, Product};
use serde_json::{Value, json};

/// Every field shape the macro supports, exported under another name.
#[table]
#[export(name = "gadgets")]
#[allow(dead_code)]
pub struct Gadget {
    #[primary_key]
    pub id: u32,
    #[indexed]
    pub tags: Vec<String>,
    pub small: u8,
    pub signed: Option<i16>,
    pub big: u64,
    pub long: i64,
    pub ratio: f32,
    pub ratings: Option<Vec<u16>>,
    pub extra: serde_json::Value,
    pub attributes: Option<BTreeMap<String, String>>,
    pub active: bool,
    pub product_id: Option<Id>,
    #[relationship(from = product_id)]
    pub product: Link<Product>,
}

const INSTALL: &str = "python3 -m pip install openapi-spec-validator";

/// Runs the validator on `doc`; panics with its output unless the document is valid.
fn validate(doc: &Value) {
    let check = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to validate the OpenAPI document ({e}); install Python 3, then run `{INSTALL}`"));
    assert!(
        check.status.success(),
        "the Python module openapi_spec_validator is missing: run `{INSTALL}`\n{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 ran a moment ago");
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document (exit {:?}):\n{}\n{}\ndocument:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        serde_json::to_string_pretty(doc).unwrap()
    );
}

fn storefront() -> Value {
    let tables: [&'static TableDef; 3] = [Product::DEF, Category::DEF, CartItem::DEF];
    document(&tables, "http://127.0.0.1:9926")
}

#[test]
fn storefront_document_is_valid_openapi_3_0() {
    validate(&storefront());
}

#[test]
fn every_field_shape_is_valid_openapi_3_0() {
    let tables: [&'static TableDef; 4] = [Gadget::DEF, Product::DEF, Category::DEF, CartItem::DEF];
    let doc = document(&tables, "http://localhost:8080/");
    validate(&doc);

    let gadget = &doc["components"]["schemas"]["Gadget"]["properties"];
    assert_eq!(
        gadget["tags"],
        json!({"type": "array", "items": {"type": "string"}, "description": "Indexed (per element): conditions match any element; fast in conditions and sort(...)."})
    );
    assert_eq!(gadget["small"]["maximum"], 255);
    assert_eq!(gadget["signed"]["minimum"], i16::MIN);
    assert_eq!(gadget["signed"]["nullable"], true);
    assert_eq!(gadget["big"]["maximum"], u64::MAX);
    assert_eq!(gadget["ratio"]["format"], "float");
    assert!(gadget["extra"].get("type").is_none());
    assert_eq!(
        gadget["product"]["allOf"][0]["$ref"],
        "#/components/schemas/Product"
    );
    assert!(doc["paths"].get("/gadgets/{id}").is_some());
    assert_eq!(
        doc["paths"]["/gadgets/{id}"]["parameters"][0]["schema"]["type"],
        "integer"
    );
}

#[test]
fn storefront_document_shape() {
    let doc = storefront();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["info"]["title"], "harper-rs REST API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let schemas = &doc["components"]["schemas"];
    let product = &schemas["Product"];
    assert_eq!(product["properties"]["price"]["type"], "number");
    assert_eq!(product["properties"]["inStock"]["type"], "boolean");
    let stock = &product["properties"]["stockQuantity"];
    assert_eq!(
        (
            stock["format"].as_str(),
            stock["minimum"].as_i64(),
            stock["maximum"].as_i64()
        ),
        (Some("int32"), Some(i32::MIN as i64), Some(i32::MAX as i64))
    );
    assert_eq!(product["properties"]["description"]["nullable"], true);
    let required: BTreeSet<&str> = product["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["name", "price", "categoryId", "inStock", "stockQuantity"])
    );
    assert_eq!(
        product["properties"]["category"]["allOf"][0]["$ref"],
        "#/components/schemas/Category"
    );
    assert_eq!(product["properties"]["category"]["readOnly"], true);
    assert_eq!(
        schemas["Category"]["properties"]["products"]["items"]["$ref"],
        "#/components/schemas/Product"
    );
    assert_eq!(
        schemas["CartItem"]["properties"]["product"]["allOf"][0]["$ref"],
        "#/components/schemas/Product"
    );
    assert_eq!(schemas["Error"]["required"], json!(["error", "message"]));

    let mut ids = BTreeSet::new();
    for t in ["Product", "Category", "CartItem"] {
        for path in [
            format!("/{t}/"),
            format!("/{t}/{{id}}"),
            format!("/{t}/{{id}}.{{attribute}}"),
            format!("/{t}"),
        ] {
            let item = doc["paths"][&path]
                .as_object()
                .unwrap_or_else(|| panic!("missing {path}"));
            for (method, op) in item {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                    "duplicate id at {method} {path}"
                );
                assert_eq!(op["tags"], json!([t]));
            }
        }
    }
    for id in [
        "listProduct",
        "createProduct",
        "getProduct",
        "putProduct",
        "patchProduct",
        "deleteProduct",
        "getCartItemAttribute",
        "describeCategory",
    ] {
        assert!(ids.contains(id), "{id}");
    }
}
