#![deny(warnings)] // generated code must not warn

use harper::prelude::*;

/// Docs and derives may come before `#[table]` as well as after it.
#[derive(Debug, Clone, PartialEq, Default)]
#[table]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The key.
    #[primary_key]
    pub id: Id,
    #[indexed]
    #[serde(default)]
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

mod nested {
    use harper::prelude::*;

    #[table]
    pub(crate) struct Private {
        #[primary_key]
        pub(crate) id: i32,
        pub(crate) note_id: Id,
        #[relationship(from = note_id)]
        pub(crate) note: Link<super::Note>,
    }
}

fn main() {
    let note = Note { id: "n1".into(), ..Default::default() };
    let json = harper::__private::serde_json::to_string(&note).unwrap();
    assert_eq!(json, r#"{"id":"n1","title":""}"#);
    assert_eq!(nested::Private::DEF.relationships[0].name, "note");
}
