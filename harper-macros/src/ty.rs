//! Syntactic classification of field types, by the last path segment: the macro cannot
//! see through type aliases, so `type Price = f64;` is stored as JSON (documented).

use syn::{GenericArgument, PathArguments, PathSegment, Type};

/// Mirrors `harper::schema::Scalar`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scalar {
    Id,
    String,
    Bool,
    Int {
        signed: bool,
        bits: u8,
    },
    Float {
        bits: u8,
    },
    /// Any other serde type.
    Json,
}

impl Scalar {
    pub fn is_indexable(self) -> bool {
        self != Scalar::Json
    }

    /// Whether a field of this scalar can hold primary keys (of this or another table).
    pub fn can_hold_keys(self) -> bool {
        matches!(self, Scalar::Id | Scalar::String | Scalar::Int { .. })
    }
}

/// Mirrors `harper::schema::FieldType`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FieldType {
    pub scalar: Scalar,
    pub optional: bool,
    pub list: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// `Link<T>`: at most one related record.
    Link,
    /// `Links<T>`: any number of related records.
    Links,
}

impl Marker {
    pub fn name(self) -> &'static str {
        match self {
            Marker::Link => "Link",
            Marker::Links => "Links",
        }
    }
}

pub enum TypeClass<'a> {
    /// A stored field.
    Stored(FieldType),
    /// `Link<T>` / `Links<T>`; `target` is `None` when the type argument is missing or malformed.
    Marker {
        marker: Marker,
        target: Option<&'a Type>,
    },
    /// `Option<Link<T>>`, `Vec<Links<T>>`, ...: a marker that is not the whole type.
    WrappedMarker(Marker),
}

pub fn classify(ty: &Type) -> TypeClass<'_> {
    let Some(segment) = last_segment(ty) else {
        return TypeClass::Stored(json(false));
    };
    if let Some(marker) = marker_of(segment) {
        return TypeClass::Marker {
            marker,
            target: single_type_arg(segment),
        };
    }
    if let Some(marker) = wrapped_marker(ty) {
        return TypeClass::WrappedMarker(marker);
    }
    if segment.ident == "Option"
        && let Some(inner) = single_type_arg(segment)
    {
        return TypeClass::Stored(match list_or_scalar(inner) {
            Some((scalar, list)) => FieldType {
                scalar,
                optional: true,
                list,
            },
            None => json(true),
        });
    }
    TypeClass::Stored(match list_or_scalar(ty) {
        Some((scalar, list)) => FieldType {
            scalar,
            optional: false,
            list,
        },
        None => json(false),
    })
}

fn json(optional: bool) -> FieldType {
    FieldType {
        scalar: Scalar::Json,
        optional,
        list: false,
    }
}

/// `X` or `Vec<X>` for a scalar `X`: `(X, is_list)`.
fn list_or_scalar(ty: &Type) -> Option<(Scalar, bool)> {
    let segment = last_segment(ty)?;
    if segment.ident == "Vec" {
        let inner = single_type_arg(segment)?;
        return scalar_of(last_segment(inner)?).map(|s| (s, true));
    }
    scalar_of(segment).map(|s| (s, false))
}

/// A marker inside `Option<..>`, `Vec<..>` or `Option<Vec<..>>`.
fn wrapped_marker(ty: &Type) -> Option<Marker> {
    let segment = last_segment(ty)?;
    if segment.ident != "Option" && segment.ident != "Vec" {
        return None;
    }
    let inner = last_segment(single_type_arg(segment)?)?;
    marker_of(inner).or_else(|| wrapped_marker(single_type_arg(segment)?))
}

fn marker_of(segment: &PathSegment) -> Option<Marker> {
    if segment.ident == "Link" {
        Some(Marker::Link)
    } else if segment.ident == "Links" {
        Some(Marker::Links)
    } else {
        None
    }
}

fn scalar_of(segment: &PathSegment) -> Option<Scalar> {
    if !matches!(segment.arguments, PathArguments::None) {
        return None;
    }
    let int = |signed, bits| Some(Scalar::Int { signed, bits });
    match segment.ident.to_string().as_str() {
        "Id" => Some(Scalar::Id),
        "String" => Some(Scalar::String),
        "bool" => Some(Scalar::Bool),
        "i8" => int(true, 8),
        "i16" => int(true, 16),
        "i32" => int(true, 32),
        "i64" | "isize" => int(true, 64),
        "u8" => int(false, 8),
        "u16" => int(false, 16),
        "u32" => int(false, 32),
        "u64" | "usize" => int(false, 64),
        "f32" => Some(Scalar::Float { bits: 32 }),
        "f64" => Some(Scalar::Float { bits: 64 }),
        _ => None,
    }
}

/// The last segment of a plain path type (`std::option::Option<T>` -> `Option<T>`).
fn last_segment(ty: &Type) -> Option<&PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// `T` in `Name<T>`, when that is the only generic argument.
fn single_type_arg(segment: &PathSegment) -> Option<&Type> {
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    if args.args.len() != 1 {
        return None;
    }
    match args.args.first() {
        Some(GenericArgument::Type(ty)) => Some(ty),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn stored(ty: Type) -> FieldType {
        match classify(&ty) {
            TypeClass::Stored(ft) => ft,
            _ => panic!("not a stored type"),
        }
    }

    fn ft(scalar: Scalar, optional: bool, list: bool) -> FieldType {
        FieldType {
            scalar,
            optional,
            list,
        }
    }

    #[test]
    fn scalars() {
        use Scalar::*;
        assert_eq!(stored(parse_quote!(Id)), ft(Id, false, false));
        assert_eq!(stored(parse_quote!(harper::Id)), ft(Id, false, false));
        assert_eq!(stored(parse_quote!(String)), ft(String, false, false));
        assert_eq!(
            stored(parse_quote!(std::string::String)),
            ft(String, false, false)
        );
        assert_eq!(stored(parse_quote!(bool)), ft(Bool, false, false));
        let int = |signed, bits| ft(Int { signed, bits }, false, false);
        assert_eq!(stored(parse_quote!(i8)), int(true, 8));
        assert_eq!(stored(parse_quote!(i16)), int(true, 16));
        assert_eq!(stored(parse_quote!(i32)), int(true, 32));
        assert_eq!(stored(parse_quote!(i64)), int(true, 64));
        assert_eq!(stored(parse_quote!(isize)), int(true, 64));
        assert_eq!(stored(parse_quote!(u8)), int(false, 8));
        assert_eq!(stored(parse_quote!(u64)), int(false, 64));
        assert_eq!(stored(parse_quote!(usize)), int(false, 64));
        assert_eq!(
            stored(parse_quote!(f32)),
            ft(Float { bits: 32 }, false, false)
        );
        assert_eq!(
            stored(parse_quote!(f64)),
            ft(Float { bits: 64 }, false, false)
        );
    }

    #[test]
    fn containers() {
        use Scalar::*;
        assert_eq!(
            stored(parse_quote!(Option<String>)),
            ft(String, true, false)
        );
        assert_eq!(
            stored(parse_quote!(std::option::Option<u32>)),
            ft(
                Int {
                    signed: false,
                    bits: 32
                },
                true,
                false
            )
        );
        assert_eq!(stored(parse_quote!(Vec<String>)), ft(String, false, true));
        assert_eq!(stored(parse_quote!(Option<Vec<Id>>)), ft(Id, true, true));
        // Nested containers and everything else are JSON.
        assert_eq!(
            stored(parse_quote!(Option<Option<String>>)),
            ft(Json, true, false)
        );
        assert_eq!(
            stored(parse_quote!(Vec<Vec<String>>)),
            ft(Json, false, false)
        );
        assert_eq!(
            stored(parse_quote!(Vec<Option<String>>)),
            ft(Json, false, false)
        );
        assert_eq!(
            stored(parse_quote!(Option<HashMap<String, i64>>)),
            ft(Json, true, false)
        );
        assert_eq!(
            stored(parse_quote!(serde_json::Value)),
            ft(Json, false, false)
        );
        assert_eq!(
            stored(parse_quote!(Vec<serde_json::Value>)),
            ft(Json, false, false)
        );
        assert_eq!(stored(parse_quote!(i128)), ft(Json, false, false));
        assert_eq!(stored(parse_quote!((i32, i32))), ft(Json, false, false));
        assert_eq!(stored(parse_quote!([u8; 4])), ft(Json, false, false));
        assert_eq!(
            stored(parse_quote!(<T as Trait>::Id)),
            ft(Json, false, false)
        );
        assert_eq!(stored(parse_quote!(Option)), ft(Json, false, false));
    }

    #[test]
    fn markers() {
        let ty: Type = parse_quote!(Link<Category>);
        match classify(&ty) {
            TypeClass::Marker {
                marker: Marker::Link,
                target: Some(target),
            } => assert_eq!(quote::quote!(#target).to_string(), "Category"),
            _ => panic!("Link not recognised"),
        }
        let ty: Type = parse_quote!(harper::Links<crate::Product>);
        assert!(matches!(
            classify(&ty),
            TypeClass::Marker {
                marker: Marker::Links,
                target: Some(_)
            }
        ));
        let ty: Type = parse_quote!(Link);
        assert!(matches!(
            classify(&ty),
            TypeClass::Marker {
                marker: Marker::Link,
                target: None
            }
        ));
        for ty in [
            parse_quote!(Option<Link<Category>>),
            parse_quote!(Vec<Link<Category>>),
            parse_quote!(Option<Vec<Link<Category>>>),
        ] {
            let ty: Type = ty;
            assert!(matches!(
                classify(&ty),
                TypeClass::WrappedMarker(Marker::Link)
            ));
        }
    }
}
