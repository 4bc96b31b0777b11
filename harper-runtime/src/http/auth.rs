//! `/auth/...`: sign-in, tokens, guest sessions and user management.
//!
//! - `POST /auth/login` `{"username","password"}` -> tokens (also set as HttpOnly cookies);
//! - `POST /auth/refresh` `{"refreshToken"}` (or the refresh cookie) -> a new pair;
//! - `POST /auth/logout` ends the bearer token and the refresh token given;
//! - `POST /auth/session` -> a guest session (resumed from the refresh cookie when valid);
//! - `GET /auth/me` -> who the credentials name;
//! - `GET|POST /auth/users`, `GET|PATCH|DELETE /auth/users/<name>`: admins manage users;
//!   a user may change its own password, never its roles.

use std::net::SocketAddr;

use bytes::Buf;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::ApiError;
use crate::auth::{Auth, Principal, REFRESH_COOKIE, TOKEN_COOKIE, Tokens};
use crate::error::Error;

/// Bodies of these endpoints are small; larger ones are refused unread.
const AUTH_BODY_LIMIT: usize = 64 * 1024;

pub fn filter(auth: Auth, body_limit: usize) -> BoxedFilter<(Response,)> {
    let limit = body_limit.min(AUTH_BODY_LIMIT);
    warp::path("auth")
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(crate::http::limits::remote_addr())
        .and(warp::body::stream())
        .then(
            move |tail: warp::path::Tail,
                  method: Method,
                  headers: HeaderMap,
                  peer: Option<SocketAddr>,
                  body| {
                let auth = auth.clone();
                let tail = tail.as_str().to_owned();
                async move {
                    let req = AuthRequest {
                        auth: &auth,
                        method,
                        headers,
                        peer,
                        limit,
                    };
                    match req.handle(&tail, Box::pin(body)).await {
                        Ok(r) => r,
                        Err(e) => e.into_response(),
                    }
                }
            },
        )
        .boxed()
}

struct AuthRequest<'a> {
    auth: &'a Auth,
    method: Method,
    headers: HeaderMap,
    peer: Option<SocketAddr>,
    limit: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefreshBody {
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    password: Option<String>,
    roles: Option<Vec<String>>,
}

impl AuthRequest<'_> {
    async fn handle<S, B>(&self, tail: &str, body: S) -> Result<Response, ApiError>
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
        B: Buf,
    {
        let m = &self.method;
        match tail {
            "login" => {
                self.only(&[Method::POST], "POST")?;
                let login: Login = self.body(body, "{\"username\", \"password\"}").await?;
                let tokens = self
                    .auth
                    .login(&login.username, &login.password, self.ip())
                    .await?;
                Ok(self.tokens_response(&tokens))
            }
            "refresh" => {
                self.only(&[Method::POST], "POST")?;
                let given: RefreshBody = self.optional_body(body).await?;
                let token = given
                    .refresh_token
                    .or_else(|| crate::auth::cookie(&self.headers, REFRESH_COOKIE))
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "send {\"refreshToken\": ...} or the refresh cookie",
                        )
                    })?;
                let tokens = self.auth.refresh(&token)?;
                Ok(self.tokens_response(&tokens))
            }
            "session" => {
                self.only(&[Method::POST], "POST")?;
                let given: RefreshBody = self.optional_body(body).await?;
                let resume = given
                    .refresh_token
                    .or_else(|| crate::auth::cookie(&self.headers, REFRESH_COOKIE));
                let tokens = self.auth.guest_session(resume.as_deref())?;
                Ok(self.tokens_response(&tokens))
            }
            "logout" => {
                self.only(&[Method::POST], "POST")?;
                let given: RefreshBody = self.optional_body(body).await?;
                if let Some(v) = self.headers.get(header::AUTHORIZATION)
                    && let Ok(v) = v.to_str()
                    && let Some(token) = v.strip_prefix("Bearer ")
                {
                    self.auth.revoke(token.trim())?;
                }
                for token in [
                    given.refresh_token,
                    crate::auth::cookie(&self.headers, REFRESH_COOKIE),
                    crate::auth::cookie(&self.headers, TOKEN_COOKIE),
                ]
                .into_iter()
                .flatten()
                {
                    self.auth.revoke(&token)?;
                }
                let mut r = json_response(StatusCode::OK, &json!(true));
                self.set_cookie(&mut r, TOKEN_COOKIE, "", "/", 0);
                self.set_cookie(&mut r, REFRESH_COOKIE, "", "/auth", 0);
                Ok(r)
            }
            "me" => {
                self.only(&[Method::GET, Method::HEAD], "GET, HEAD")?;
                let who = self.principal().await?;
                Ok(json_response(StatusCode::OK, &principal_json(&who)))
            }
            "users" | "users/" => {
                let who = self.principal().await?;
                self.require_admin(&who)?;
                match *m {
                    Method::GET | Method::HEAD => {
                        Ok(json_response(StatusCode::OK, &json!(self.auth.users())))
                    }
                    Method::POST => {
                        let new: NewUser = self
                            .body(body, "{\"username\", \"password\", \"roles\": [..]}")
                            .await?;
                        self.blocking_auth(move |auth| {
                            auth.create_user(&new.username, &new.password, &new.roles)
                                .map(|_| new.username)
                        })
                        .await
                        .map(|name| {
                            let mut r = json_response(StatusCode::CREATED, &json!(name));
                            let location =
                                format!("/auth/users/{}", super::encode_path_segment(&name));
                            if let Ok(v) = HeaderValue::from_str(&location) {
                                r.headers_mut().insert(header::LOCATION, v);
                            }
                            r
                        })
                    }
                    _ => Err(ApiError::method_not_allowed(
                        m.as_str(),
                        "/auth/users",
                        "GET, HEAD, POST",
                    )),
                }
            }
            _ => {
                let Some(raw) = tail.strip_prefix("users/") else {
                    return Err(ApiError::not_found(format!("no resource at /auth/{tail}")));
                };
                let name = super::decode_path_segment(raw).ok_or_else(|| {
                    ApiError::bad_request("invalid_id", "the user name is not UTF-8")
                })?;
                let who = self.principal().await?;
                let own = who.kind() == crate::auth::PrincipalKind::User
                    && who.id() == Some(name.as_str());
                match *m {
                    Method::GET | Method::HEAD => {
                        if !own {
                            self.require_admin(&who)?;
                        }
                        let user = self.auth.user(&name).ok_or_else(|| {
                            ApiError::not_found(format!("user {name} does not exist"))
                        })?;
                        Ok(json_response(StatusCode::OK, &json!(user)))
                    }
                    Method::PATCH => {
                        if !own {
                            self.require_admin(&who)?;
                        }
                        let change: UserChange = self
                            .body(body, "{\"password\"} (and, for admins, \"roles\")")
                            .await?;
                        if change.roles.is_some() && !who.is_admin() {
                            return Err(Error::Denied {
                                authenticated: true,
                                message: "only admins change roles".into(),
                            }
                            .into());
                        }
                        self.blocking_auth(move |auth| {
                            auth.update_user(
                                &name,
                                change.password.as_deref(),
                                change.roles.as_deref(),
                            )
                        })
                        .await?;
                        Ok(super::rest::empty(StatusCode::NO_CONTENT))
                    }
                    Method::DELETE => {
                        self.require_admin(&who)?;
                        let existed = self.auth.delete_user(&name)?;
                        Ok(json_response(StatusCode::OK, &json!(existed)))
                    }
                    _ => Err(ApiError::method_not_allowed(
                        m.as_str(),
                        "a user",
                        "GET, HEAD, PATCH, DELETE",
                    )),
                }
            }
        }
    }

    fn only(&self, allowed: &[Method], allow: &'static str) -> Result<(), ApiError> {
        if allowed.contains(&self.method) {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(
                self.method.as_str(),
                "this endpoint",
                allow,
            ))
        }
    }

    fn ip(&self) -> Option<std::net::IpAddr> {
        self.peer.map(|p| p.ip())
    }

    async fn principal(&self) -> Result<Principal, ApiError> {
        Ok(self
            .auth
            .authenticate(&self.headers, &self.method, self.ip())
            .await?)
    }

    fn require_admin(&self, who: &Principal) -> Result<(), ApiError> {
        if who.is_admin() {
            return Ok(());
        }
        Err(crate::auth::denied(
            who,
            format!("{} may not manage users: that needs admin", who.describe()),
        )
        .into())
    }

    /// Password hashing takes tens of milliseconds: off the async threads.
    async fn blocking_auth<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Auth) -> crate::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let auth = self.auth.clone();
        tokio::task::spawn_blocking(move || f(&auth))
            .await
            .map_err(|e| ApiError::from(Error::Io(std::io::Error::other(e.to_string()))))?
            .map_err(ApiError::from)
    }

    async fn read<S, B>(&self, mut body: S) -> Result<Vec<u8>, ApiError>
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
        B: Buf,
    {
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            let mut chunk =
                chunk.map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
            if buf.len() + chunk.remaining() > self.limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "bodies of /auth endpoints are limited to {} bytes",
                        self.limit
                    ),
                ));
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                buf.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(buf)
    }

    async fn body<T: serde::de::DeserializeOwned, S, B>(
        &self,
        body: S,
        expected: &str,
    ) -> Result<T, ApiError>
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
        B: Buf,
    {
        let bytes = self.read(body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("expected a JSON object {expected}: {e}"),
            )
        })
    }

    /// An optional JSON body (empty is fine).
    async fn optional_body<T: serde::de::DeserializeOwned + Default, S, B>(
        &self,
        body: S,
    ) -> Result<T, ApiError>
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
        B: Buf,
    {
        let bytes = self.read(body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("expected {{\"refreshToken\": ..}}: {e}"),
            )
        })
    }

    fn tokens_response(&self, tokens: &Tokens) -> Response {
        let mut body = serde_json::to_value(tokens).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut body {
            map.insert("principal".into(), principal_json(&tokens.principal));
        }
        let mut r = json_response(StatusCode::OK, &body);
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.set_cookie(
            &mut r,
            TOKEN_COOKIE,
            &tokens.access_token,
            "/",
            tokens.expires_in,
        );
        self.set_cookie(
            &mut r,
            REFRESH_COOKIE,
            &tokens.refresh_token,
            "/auth",
            tokens.refresh_expires_in,
        );
        r
    }

    fn set_cookie(&self, r: &mut Response, name: &str, value: &str, path: &str, max_age: u64) {
        // `Secure` only when the client reached us over TLS (through a proxy that says so):
        // browsers drop Secure cookies on plain-http origins other than localhost.
        let secure = self
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        let cookie = format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if secure { "; Secure" } else { "" }
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

fn principal_json(who: &Principal) -> Value {
    json!({ "id": who.id(), "kind": who.kind(), "roles": who.roles() })
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(body.to_string().into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
