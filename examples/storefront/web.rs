//! The storefront's web page and its images, served by the example itself:
//!
//! - `GET /` the page, `GET /app.js` and `GET /style.css` its script and styles (plain
//!   files under `web/`, compiled into the binary; no front-end build step);
//! - `GET /images/<category>.svg` a category's icon and `GET /images/<category>/<id>.svg`
//!   a product picture: the category's glyph on a background whose colours are derived from
//!   the product id, drawn on the fly so the page needs nothing from outside the server.
//!
//! Anything else is rejected here (not answered) and so reaches the REST API.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");

/// The page, its assets and the generated images.
pub fn routes() -> BoxedFilter<(Response,)> {
    let index = warp::path::end().map(|| asset(INDEX_HTML, "text/html; charset=utf-8"));
    let script = warp::path!("app.js").map(|| asset(APP_JS, "text/javascript; charset=utf-8"));
    let style = warp::path!("style.css").map(|| asset(STYLE_CSS, "text/css; charset=utf-8"));
    let category_icon = warp::path!("images" / String).and_then(|file: String| async move {
        let category = svg_stem(&file).ok_or_else(warp::reject::not_found)?;
        Ok::<_, warp::Rejection>(svg(category_svg(category)))
    });
    let product_image = warp::path!("images" / String / String).and_then(
        |category: String, file: String| async move {
            let id = svg_stem(&file).ok_or_else(warp::reject::not_found)?;
            if !is_token(&category) {
                return Err(warp::reject::not_found());
            }
            Ok(svg(product_svg(&category, id)))
        },
    );
    warp::get()
        .and(
            index
                .or(script)
                .unify()
                .or(style)
                .unify()
                .or(category_icon)
                .unify()
                .or(product_image)
                .unify(),
        )
        .boxed()
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files, changed with every build: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page loads only its own script and style; product images may live elsewhere.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: https:; script-src 'self'; \
             style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn svg(body: String) -> Response {
    let mut response = warp::reply::with_status(body, StatusCode::OK).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

/// `name.svg` -> `name` when `name` is a plain token; `None` otherwise.
fn svg_stem(file: &str) -> Option<&str> {
    file.strip_suffix(".svg").filter(|stem| is_token(stem))
}

/// Ids and category names used in image URLs: 1 to 64 ASCII letters, digits, `-` or `_`.
/// Nothing from the URL is written into the SVG; this only keeps junk URLs out.
fn is_token(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// FNV-1a: a small, stable hash, so a product keeps its colours across builds.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A stroke drawing on a 24x24 grid for each demo category; a price tag for any other.
fn glyph(category: &str) -> &'static str {
    match category {
        "electronics" => {
            r#"<path d="M5 14v-2a7 7 0 0 1 14 0v2"/><rect x="3.5" y="13.5" width="3.5" height="6" rx="1.2"/><rect x="17" y="13.5" width="3.5" height="6" rx="1.2"/>"#
        }
        "books" => {
            r#"<path d="M3 5h6a3 3 0 0 1 3 3v12a2.5 2.5 0 0 0-2.5-2.5H3z"/><path d="M21 5h-6a3 3 0 0 0-3 3v12a2.5 2.5 0 0 1 2.5-2.5H21z"/>"#
        }
        "toys" => {
            r#"<rect x="3.5" y="13" width="7" height="7" rx="1"/><rect x="13.5" y="13" width="7" height="7" rx="1"/><rect x="8.5" y="4" width="7" height="7" rx="1"/>"#
        }
        "home" => {
            r#"<path d="M3 11l9-7 9 7"/><path d="M5.5 9.5V20h13V9.5"/><path d="M10 20v-5.5h4V20"/>"#
        }
        "garden" => {
            r#"<path d="M5 19C5 10 11 5 20 5c0 9-5 14.5-14 14.5z"/><path d="M5 19.5l8.5-8.5"/>"#
        }
        "sports" => {
            r#"<circle cx="12" cy="12" r="8.5"/><path d="M3.5 12h17"/><path d="M12 3.5c3.2 3 3.2 14 0 17"/><path d="M12 3.5c-3.2 3-3.2 14 0 17"/>"#
        }
        "clothing" => {
            r#"<path d="M8.5 4L3 7.5l2 4 2.5-1V20h9V10.5l2.5 1 2-4L15.5 4c-.8 1.8-2 2.8-3.5 2.8S9.3 5.8 8.5 4z"/>"#
        }
        "beauty" => {
            r#"<path d="M12 3c4 5 6.5 8.3 6.5 11.5a6.5 6.5 0 0 1-13 0C5.5 11.3 8 8 12 3z"/><path d="M9 15a3 3 0 0 0 3 3"/>"#
        }
        "automotive" => {
            r#"<path d="M3.5 16.5V12l2.5-5h12l2.5 5v4.5z"/><path d="M3.5 12h17"/><circle cx="7.5" cy="16.5" r="2"/><circle cx="16.5" cy="16.5" r="2"/>"#
        }
        "grocery" => {
            r#"<path d="M12 7.5C9 5.5 4.5 6.5 4.5 12c0 5 3 9 5 9 1 0 1.8-.7 2.5-.7s1.5.7 2.5.7c2 0 5-4 5-9 0-5.5-4.5-6.5-7.5-4.5z"/><path d="M12 7.5c0-2 1-3.6 3-4.5"/>"#
        }
        _ => r#"<path d="M3.5 12.5V4h8.5l9 9-8.5 8.5z"/><circle cx="8" cy="8.5" r="1.6"/>"#,
    }
}

/// The base hue of each demo category (degrees); other categories get one from their name.
fn category_hue(category: &str) -> u64 {
    match category {
        "electronics" => 215,
        "books" => 25,
        "toys" => 340,
        "home" => 35,
        "garden" => 120,
        "sports" => 190,
        "clothing" => 265,
        "beauty" => 310,
        "automotive" => 0,
        "grocery" => 85,
        other => hash(other) % 360,
    }
}

fn category_svg(category: &str) -> String {
    let hue = category_hue(category);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 48 48" width="48" height="48"><rect width="48" height="48" rx="12" fill="hsl({hue},60%,45%)"/><g transform="translate(8 8) scale(1.3333)" fill="none" stroke="#fff" stroke-width="1.7" stroke-linecap="round" stroke-linejoin="round">{}</g></svg>"##,
        glyph(category)
    )
}

/// A 400x300 picture: a two-colour gradient near the category's hue (shifted per product),
/// two soft circles placed by the id's hash, and the category glyph in the middle.
fn product_svg(category: &str, id: &str) -> String {
    let h = hash(id);
    let hue = (category_hue(category) + (h % 50)) % 360;
    let hue2 = (hue + 25 + (h >> 8) % 40) % 360;
    let (cx1, cy1, r1) = (
        40 + (h >> 16) % 320,
        30 + (h >> 24) % 240,
        50 + (h >> 32) % 70,
    );
    let (cx2, cy2, r2) = (
        40 + (h >> 40) % 320,
        30 + (h >> 48) % 240,
        30 + (h >> 56) % 60,
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 300" width="400" height="300"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="hsl({hue},70%,62%)"/><stop offset="1" stop-color="hsl({hue2},65%,42%)"/></linearGradient></defs><rect width="400" height="300" fill="url(#g)"/><circle cx="{cx1}" cy="{cy1}" r="{r1}" fill="#fff" fill-opacity=".12"/><circle cx="{cx2}" cy="{cy2}" r="{r2}" fill="#000" fill-opacity=".08"/><g transform="translate(116 66) scale(7)" fill="none" stroke="#fff" stroke-width=".9" stroke-linecap="round" stroke-linejoin="round">{}</g></svg>"##,
        glyph(category)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // The routes themselves are exercised over HTTP by tests/browser.rs.

    #[test]
    fn image_names_are_plain_tokens() {
        assert_eq!(svg_stem("prod-00003.svg"), Some("prod-00003"));
        assert_eq!(svg_stem("toys.svg"), Some("toys"));
        for bad in [
            "prod.png",
            ".svg",
            "a b.svg",
            "../x.svg",
            "x.svg.svg",
            "é.svg",
        ] {
            assert_eq!(svg_stem(bad), None, "{bad}");
        }
        assert!(!is_token(&"a".repeat(65)));
    }

    #[test]
    fn pictures_are_stable_per_id_and_differ_between_ids() {
        let a = product_svg("toys", "prod-00003");
        assert!(a.starts_with("<svg") && a.ends_with("</svg>"));
        assert_eq!(a, product_svg("toys", "prod-00003"));
        assert_ne!(a, product_svg("toys", "prod-00013"));
        assert!(product_svg("unknown", "x").contains(glyph("unknown")));
        assert!(category_svg("books").contains(glyph("books")));
    }
}
