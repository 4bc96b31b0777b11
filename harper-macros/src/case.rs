//! `rename_all` rules: how a Rust field name (`category_id`) becomes its JSON attribute
//! name (`categoryId`).

use std::fmt::{self, Display};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum RenameRule {
    /// `category_id` -> `categoryId` (the default, as in Harper's GraphQL schemas).
    #[default]
    Camel,
    /// Keep the Rust name.
    Snake,
    /// `category_id` -> `CategoryId`.
    Pascal,
    /// `category_id` -> `category-id`.
    Kebab,
    /// `category_id` -> `CATEGORY_ID`.
    ScreamingSnake,
    /// `category_id` -> `category_id` (lower-cased as written).
    Lower,
}

static RULES: &[(&str, RenameRule)] = &[
    ("camelCase", RenameRule::Camel),
    ("snake_case", RenameRule::Snake),
    ("PascalCase", RenameRule::Pascal),
    ("kebab-case", RenameRule::Kebab),
    ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
    ("lowercase", RenameRule::Lower),
];

impl RenameRule {
    pub fn parse(value: &str) -> Result<Self, UnknownRule<'_>> {
        RULES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, rule)| *rule)
            .ok_or(UnknownRule(value))
    }

    /// Applies the rule to a snake_case Rust field name.
    pub fn apply_to_field(self, field: &str) -> String {
        match self {
            RenameRule::Snake => field.to_owned(),
            RenameRule::Lower => field.to_ascii_lowercase(),
            RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Kebab => field.replace('_', "-"),
            RenameRule::Pascal => pascal(field),
            RenameRule::Camel => {
                let pascal = pascal(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_lowercase().chain(chars).collect(),
                    None => String::new(),
                }
            }
        }
    }
}

/// Upper-cases the first letter of every `_`-separated word and drops the underscores.
fn pascal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut capitalize = true;
    for ch in field.chars() {
        if ch == '_' {
            capitalize = true;
        } else if capitalize {
            out.extend(ch.to_uppercase());
            capitalize = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// A `rename_all` value that is not one of the supported rules.
pub struct UnknownRule<'a>(&'a str);

impl Display for UnknownRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "unknown rename rule `rename_all = {:?}`; expected one of ",
            self.0
        )?;
        for (i, (name, _)) in RULES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RenameRule::{self, *};

    #[test]
    fn field_names() {
        let cases: &[(&str, [&str; 6])] = &[
            (
                "category_id",
                [
                    "categoryId",
                    "category_id",
                    "CategoryId",
                    "category-id",
                    "CATEGORY_ID",
                    "category_id",
                ],
            ),
            ("id", ["id", "id", "Id", "id", "ID", "id"]),
            (
                "image_2x",
                [
                    "image2x", "image_2x", "Image2x", "image-2x", "IMAGE_2X", "image_2x",
                ],
            ),
            (
                "_hidden",
                [
                    "hidden", "_hidden", "Hidden", "-hidden", "_HIDDEN", "_hidden",
                ],
            ),
            ("sku", ["sku", "sku", "Sku", "sku", "SKU", "sku"]),
        ];
        let rules = [Camel, Snake, Pascal, Kebab, ScreamingSnake, Lower];
        for (field, expected) in cases {
            for (rule, expected) in rules.iter().zip(expected) {
                assert_eq!(rule.apply_to_field(field), *expected, "{rule:?} of {field}");
            }
        }
    }

    #[test]
    fn parse_rules() {
        assert_eq!(RenameRule::parse("camelCase").ok(), Some(Camel));
        assert_eq!(RenameRule::parse("kebab-case").ok(), Some(Kebab));
        let err = RenameRule::parse("camelcase").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "unknown rename rule `rename_all = \"camelcase\"`; expected one of \"camelCase\", \
                 \"snake_case\", \"PascalCase\", \"kebab-case\", \"SCREAMING_SNAKE_CASE\", \"lowercase\""
            )
        );
    }
}
