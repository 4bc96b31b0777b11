//! Client-facing errors: every failure becomes a status code and a JSON object
//! `{"error": "<kind>", "message": "<what and where>"}`.

use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// For 405: the methods the resource allows.
    pub allow: Option<&'static str>,
    /// For 429: seconds until another attempt may succeed.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    pub fn bad_request(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, kind, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed(method: &str, what: &str, allow: &'static str) -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            kind: "method_not_allowed",
            message: format!("{method} is not allowed on {what}; allowed: {allow}"),
            allow: Some(allow),
            retry_after: None,
        }
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.kind, "message": self.message });
        let mut response = Response::new(body.to_string().into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"harper\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let message = e.to_string();
        match e {
            Error::InvalidRecord { .. } => ApiError::bad_request("invalid_record", message),
            Error::InvalidQuery { position, .. } => ApiError::bad_request(
                "invalid_query",
                match position {
                    Some(p) => format!("{message} (at position {p})"),
                    None => message,
                },
            ),
            Error::UnknownAttribute { .. } => ApiError::bad_request("unknown_attribute", message),
            Error::QueryTooExpensive { .. } => {
                ApiError::bad_request("query_too_expensive", message)
            }
            Error::UnknownTable(_) | Error::NotFound { .. } => ApiError::not_found(message),
            Error::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            Error::Denied {
                authenticated: false,
                ..
            } => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
            Error::Denied { .. } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            Error::Rejected(r) => ApiError::new(
                if r.conflict {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::BAD_REQUEST
                },
                r.code,
                r.message,
            ),
            Error::WritesUnavailable {
                disk_full: true, ..
            } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                message,
            ),
            Error::WritesUnavailable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                message,
            ),
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed to complete the request; see its log",
                )
            }
        }
    }
}
