//! Who is calling, and what they may do.
//!
//! - **Principals**: anonymous callers, users (name, password hashed with argon2id, roles)
//!   and guest sessions (an id handed to a browser, for carts and the like). Users with the
//!   `admin` role may do everything.
//! - **Credentials**: HTTP Basic, or bearer tokens from `POST /auth/login` (access tokens
//!   expire; refresh tokens rotate on use) and `POST /auth/session` (guests). Tokens are
//!   random, shown once and stored only as SHA-256 digests. Browsers may send the access
//!   token as the `harper_token` cookie (HttpOnly, SameSite=Strict), honoured on GET and
//!   HEAD only, so a forged cross-site form cannot write.
//! - **Permissions** come from `#[export(read = .., write = ..)]` ([`crate::schema::Access`])
//!   and, for the `owner` alternative, a per-record rule registered with `App::owner`.
//!
//! Failed credential checks are rate-limited per user name and per client address; an
//! unknown user costs the same hashing work as a wrong password.

mod limiter;
mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use sha2::{Digest, Sha256};
use warp::http::{HeaderMap, Method, header};

use crate::error::{Error, Result};
use crate::schema::{Rule, Table, TableDef};
use crate::storage::Database;
pub use limiter::RateLimit;
use store::{Store, TokenKind, TokenRecord, UserRecord};

/// The role that is granted everything.
pub const ADMIN_ROLE: &str = "admin";
/// Cookie that carries an access token for browser reads (EventSource cannot send headers).
pub const TOKEN_COOKIE: &str = "harper_token";
/// Cookie that lets `POST /auth/session` resume a guest session.
pub const REFRESH_COOKIE: &str = "harper_refresh";
const GUEST_PREFIX: &str = "guest-";
const ACCESS_PREFIX: &str = "hat_";
const REFRESH_PREFIX: &str = "hrt_";

/// Who a request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    kind: PrincipalKind,
    id: Option<Arc<str>>,
    roles: Arc<[String]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    Anonymous,
    User,
    Guest,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            kind: PrincipalKind::Anonymous,
            id: None,
            roles: Arc::from(Vec::new()),
        }
    }

    pub fn user(name: &str, roles: &[String]) -> Principal {
        Principal {
            kind: PrincipalKind::User,
            id: Some(Arc::from(name)),
            roles: Arc::from(roles.to_vec()),
        }
    }

    fn guest(id: &str) -> Principal {
        Principal {
            kind: PrincipalKind::Guest,
            id: Some(Arc::from(id)),
            roles: Arc::from(Vec::new()),
        }
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// The user name or guest session id; `None` for anonymous callers. Owner rules compare
    /// records against this.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN_ROLE)
    }

    pub fn is_authenticated(&self) -> bool {
        self.kind != PrincipalKind::Anonymous
    }

    /// "user alice", "guest session guest-..", "an anonymous caller": for messages.
    pub fn describe(&self) -> String {
        match (&self.kind, self.id()) {
            (PrincipalKind::User, Some(id)) => format!("user {id}"),
            (PrincipalKind::Guest, Some(id)) => format!("guest session {id}"),
            _ => "an anonymous caller".into(),
        }
    }
}

/// What a rule grants a caller on a table, before looking at records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Every record.
    All,
    /// Only the records the table's owner rule accepts for the caller.
    Owned,
}

/// Checks `rule` for `op` ("read", "create", ..) on `def`: the grant, or a 401/403 naming
/// what the operation needs.
pub fn grant(def: &TableDef, op: &str, rule: &Rule, who: &Principal) -> Result<Grant> {
    if who.is_admin()
        || rule.public
        || (rule.authenticated && who.is_authenticated())
        || rule.roles.iter().any(|r| who.has_role(r))
    {
        return Ok(Grant::All);
    }
    if rule.owner && who.is_authenticated() {
        return Ok(Grant::Owned);
    }
    Err(denied(
        who,
        format!(
            "{} may not {op} {} records: that needs {rule}",
            who.describe(),
            def.name
        ),
    ))
}

pub(crate) fn denied(who: &Principal, message: String) -> Error {
    Error::Denied {
        authenticated: who.is_authenticated(),
        message: if who.is_authenticated() {
            message
        } else {
            format!("{message}; send credentials (Authorization: Basic or Bearer)")
        },
    }
}

/// Decides whether a caller owns a record (its stored JSON).
pub(crate) type OwnerRule = Arc<dyn Fn(&Principal, &[u8]) -> bool + Send + Sync>;

/// Owner rules by table name (`App::owner`).
#[derive(Default)]
pub(crate) struct OwnerRules {
    by_table: RwLock<HashMap<&'static str, OwnerRule>>,
}

impl OwnerRules {
    pub(crate) fn add<T: Table>(
        &self,
        rule: impl Fn(&T, &Principal) -> bool + Send + Sync + 'static,
    ) {
        let rule: OwnerRule = Arc::new(move |who: &Principal, json: &[u8]| {
            serde_json::from_slice::<T>(json).is_ok_and(|record| rule(&record, who))
        });
        let mut map = self.by_table.write().unwrap_or_else(|p| p.into_inner());
        map.insert(T::DEF.name, rule);
    }

    pub(crate) fn get(&self, def: &TableDef) -> Option<OwnerRule> {
        let map = self.by_table.read().unwrap_or_else(|p| p.into_inner());
        map.get(def.name).cloned()
    }
}

/// The caller of one request, with what it needs to check records of one table.
#[derive(Clone)]
pub struct Caller {
    pub who: Principal,
    owners: Arc<OwnerRules>,
}

impl Caller {
    pub(crate) fn new(who: Principal, owners: Arc<OwnerRules>) -> Caller {
        Caller { who, owners }
    }

    /// A caller with every right, for trusted code paths and tests.
    pub fn trusted() -> Caller {
        Caller {
            who: Principal::user("system", &[ADMIN_ROLE.to_owned()]),
            owners: Arc::default(),
        }
    }

    /// `grant`, with `Owned` turned into a checker for records.
    pub fn access(&self, def: &TableDef, op: &str, rule: &Rule) -> Result<Access> {
        match grant(def, op, rule, &self.who)? {
            Grant::All => Ok(Access::All),
            Grant::Owned => match self.owners.get(def) {
                Some(rule) => Ok(Access::Owned(OwnedCheck {
                    who: self.who.clone(),
                    rule,
                })),
                // `owner` was declared but no rule registered: nobody owns anything.
                None => Err(denied(
                    &self.who,
                    format!(
                        "{} may not {op} {} records: the table has no owner rule",
                        self.who.describe(),
                        def.name
                    ),
                )),
            },
        }
    }

    /// Checks a write of `def`: `old` is the stored record (None when creating), `new`
    /// what would be stored (None when deleting). Runs inside the write transaction.
    pub fn check_write(
        &self,
        def: &TableDef,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<()> {
        let Some(export) = def.export else {
            return Ok(());
        };
        let (op, rule) = match (old, new) {
            (None, _) => ("create", &export.access.create),
            (Some(_), Some(_)) => ("update", &export.access.update),
            (Some(_), None) => ("delete", &export.access.delete),
        };
        if let Access::Owned(check) = self.access(def, op, rule)? {
            for json in [old, new].into_iter().flatten() {
                if !check.owns(json) {
                    return Err(denied(
                        &self.who,
                        format!(
                            "{} may not {op} this {} record: it belongs to another owner",
                            self.who.describe(),
                            def.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a caller may see or change of a table.
#[derive(Clone)]
pub enum Access {
    All,
    Owned(OwnedCheck),
}

impl Access {
    /// Whether the record (stored JSON) is visible to the caller.
    pub fn allows(&self, json: &[u8]) -> bool {
        match self {
            Access::All => true,
            Access::Owned(check) => check.owns(json),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Access::All)
    }
}

#[derive(Clone)]
pub struct OwnedCheck {
    who: Principal,
    rule: OwnerRule,
}

impl OwnedCheck {
    pub fn owns(&self, json: &[u8]) -> bool {
        (self.rule)(&self.who, json)
    }
}

// ---- the credential store -----------------------------------------------------------------

/// Settings of authentication.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Lifetime of access tokens (default 1 hour).
    pub access_ttl: Duration,
    /// Lifetime of refresh tokens (default 30 days).
    pub refresh_ttl: Duration,
    /// Failed credential checks allowed per user name, and their refill.
    pub per_user: RateLimit,
    /// Failed credential checks allowed per client address.
    pub per_address: RateLimit,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            per_user: RateLimit {
                burst: 10,
                refill: Duration::from_secs(6),
            },
            per_address: RateLimit {
                burst: 30,
                refill: Duration::from_secs(2),
            },
        }
    }
}

/// A pair of tokens handed out by login, refresh and guest sessions.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
    #[serde(skip)]
    pub principal: Principal,
}

/// A user as listed to admins (never the password hash).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub roles: Vec<String>,
}

/// Users, tokens and the checks on them, kept in the data directory (keyspace `__auth`).
/// Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    store: Store,
    config: RwLock<AuthConfig>,
    /// Users by name, loaded at open and kept in step with every change.
    users: RwLock<HashMap<String, UserRecord>>,
    /// Basic credentials verified recently: keyed digest -> (user, generation, until). Saves
    /// an argon2 run (tens of milliseconds) per request.
    verified: Mutex<HashMap<[u8; 32], (String, u64, Instant)>>,
    /// Keys the `verified` digests; never stored.
    secret: [u8; 32],
    limiter: limiter::Limiter,
    owners: Arc<OwnerRules>,
    hasher: Argon2<'static>,
    /// Password checks running at once: each takes ~19 MiB and tens of milliseconds, so a
    /// burst of clients presenting the same (or wrong) credentials cannot exhaust memory.
    hashing: tokio::sync::Semaphore,
    password_checks: std::sync::atomic::AtomicU64,
    /// A hash to verify against when the user does not exist (same cost as a real check).
    dummy: String,
}

const VERIFIED_TTL: Duration = Duration::from_secs(300);
const HASHING_AT_ONCE: usize = 2;
const VERIFIED_MAX: usize = 10_000;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(buf)
}

/// A hash no password matches (random salt, random output) with the parameters of the
/// hashes `hasher` makes, to verify against when the user does not exist: the check costs
/// what a real one does. Written out rather than computed, so that opening the credential
/// store runs no argon2 (tens of milliseconds at every start-up).
fn dummy_hash(hasher: &Argon2<'_>) -> Result<String> {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    let p = hasher.params();
    let output = p.output_len().unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN);
    let mut hash = vec![0u8; output];
    getrandom::fill(&mut hash).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        p.m_cost(),
        p.t_cost(),
        p.p_cost(),
        STANDARD_NO_PAD.encode(random_bytes::<16>()?),
        STANDARD_NO_PAD.encode(&hash)
    ))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `name` may be a user name: 1 to 64 of letters, digits, `_`, `-`, `.`, `@`, not
/// starting with the guest prefix.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(GUEST_PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
}

impl Auth {
    /// Opens the credential store of `db`.
    pub fn open(db: &Database, config: AuthConfig) -> Result<Auth> {
        let started = Instant::now();
        let store = Store::open(db)?;
        let users = store.load_users()?;
        store.sweep_expired(now_secs())?;
        let hasher = Argon2::default();
        let dummy = dummy_hash(&hasher)?;
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            "start-up: credential store opened"
        );
        Ok(Auth {
            inner: Arc::new(AuthInner {
                store,
                limiter: limiter::Limiter::default(),
                config: RwLock::new(config),
                users: RwLock::new(users),
                verified: Mutex::new(HashMap::new()),
                secret: random_bytes()?,
                owners: Arc::default(),
                hasher,
                hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
                password_checks: Default::default(),
                dummy,
            }),
        })
    }

    /// Password hashes verified since start (cached Basic checks do not count).
    pub fn password_checks(&self) -> u64 {
        self.inner
            .password_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn config(&self) -> AuthConfig {
        self.inner
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the settings (token lifetimes apply to tokens issued afterwards).
    pub fn set_config(&self, config: AuthConfig) {
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Registers the owner rule of `T` (see `App::owner`).
    pub fn owner<T: Table>(&self, rule: impl Fn(&T, &Principal) -> bool + Send + Sync + 'static) {
        self.inner.owners.add::<T>(rule);
    }

    /// Whether `T` has an owner rule.
    pub fn has_owner_rule(&self, def: &TableDef) -> bool {
        self.inner.owners.get(def).is_some()
    }

    /// The caller of a request, with the owner rules.
    pub fn caller(&self, who: Principal) -> Caller {
        Caller::new(who, self.inner.owners.clone())
    }

    // ---- users --------------------------------------------------------------------------

    pub fn user_count(&self) -> usize {
        self.read_users().len()
    }

    pub fn users(&self) -> Vec<UserInfo> {
        let mut list: Vec<UserInfo> = self
            .read_users()
            .values()
            .map(|u| UserInfo {
                username: u.username.clone(),
                roles: u.roles.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.username.cmp(&b.username));
        list
    }

    pub fn user(&self, name: &str) -> Option<UserInfo> {
        self.read_users().get(name).map(|u| UserInfo {
            username: u.username.clone(),
            roles: u.roles.clone(),
        })
    }

    /// Creates a user. Errors: an invalid name or role, an empty password (400), an existing
    /// name (409).
    pub fn create_user(&self, name: &str, password: &str, roles: &[String]) -> Result<()> {
        check_user_input(name, Some(password), roles)?;
        let hash = self.hash(password)?;
        let mut users = self.write_users();
        if users.contains_key(name) {
            return Err(Error::Conflict(format!("user {name} already exists")));
        }
        let record = UserRecord {
            username: name.to_owned(),
            hash,
            roles: roles.to_vec(),
            // Random, so that tokens of a deleted user never revive with a new one of the name.
            generation: u64::from_le_bytes(random_bytes()?) >> 1,
        };
        self.inner.store.put_user(&record)?;
        users.insert(name.to_owned(), record);
        Ok(())
    }

    /// Changes a user's password and/or roles. A password change ends every token and cached
    /// Basic check of the user; a role change applies to the next request.
    pub fn update_user(
        &self,
        name: &str,
        password: Option<&str>,
        roles: Option<&[String]>,
    ) -> Result<()> {
        check_user_input(name, password, roles.unwrap_or(&[]))?;
        let hash = password.map(|p| self.hash(p)).transpose()?;
        let mut users = self.write_users();
        let Some(old) = users.get(name) else {
            return Err(Error::NotFound {
                table: "user",
                id: name.to_owned(),
            });
        };
        let mut record = old.clone();
        if let Some(hash) = hash {
            record.hash = hash;
            record.generation += 1;
        }
        if let Some(roles) = roles {
            record.roles = roles.to_vec();
        }
        self.inner.store.put_user(&record)?;
        users.insert(name.to_owned(), record);
        Ok(())
    }

    /// Deletes a user; its tokens stop working at once.
    pub fn delete_user(&self, name: &str) -> Result<bool> {
        let mut users = self.write_users();
        if users.remove(name).is_none() {
            return Ok(false);
        }
        self.inner.store.delete_user(name)?;
        Ok(true)
    }

    /// At first start (no users at all) creates an admin from `spec` (`user:password`, as
    /// `HARPER_ADMIN` gives it), or with a generated password that is returned so the caller
    /// can show it once. `Ok(None)` when users already exist.
    pub fn bootstrap_admin(&self, spec: Option<&str>) -> Result<Option<(String, String)>> {
        if self.user_count() > 0 {
            return Ok(None);
        }
        let (name, password) = match spec {
            Some(spec) => match spec.split_once(':') {
                Some((n, p)) if !n.is_empty() && !p.is_empty() => (n.to_owned(), p.to_owned()),
                _ => {
                    return Err(Error::invalid_record(
                        "user",
                        "HARPER_ADMIN",
                        "expected USER:PASSWORD",
                    ));
                }
            },
            None => (
                "admin".to_owned(),
                URL_SAFE_NO_PAD.encode(random_bytes::<18>()?),
            ),
        };
        self.create_user(&name, &password, &[ADMIN_ROLE.to_owned()])?;
        Ok(Some((name, password)))
    }

    // ---- credentials --------------------------------------------------------------------

    /// The principal a request's credentials name: anonymous without any, an error (401)
    /// for wrong or expired ones, 429 when its address or user name failed too often.
    /// Cookies count only for `GET` and `HEAD`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        method: &Method,
        peer: Option<IpAddr>,
    ) -> std::result::Result<Principal, AuthFailure> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| AuthFailure::unauthorized("the Authorization header is not ASCII"))?;
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            let rest = rest.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                return self.principal_for_token(rest, TokenKind::Access);
            }
            if scheme.eq_ignore_ascii_case("basic") {
                let decoded = STANDARD
                    .decode(rest)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| AuthFailure::unauthorized("malformed Basic credentials"))?;
                let (name, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| AuthFailure::unauthorized("malformed Basic credentials"))?;
                return self.verify_password(name, password, peer).await;
            }
            return Err(AuthFailure::unauthorized(
                "unsupported Authorization scheme; use Basic or Bearer",
            ));
        }
        if matches!(*method, Method::GET | Method::HEAD)
            && let Some(token) = cookie(headers, TOKEN_COOKIE)
        {
            return self.principal_for_token(&token, TokenKind::Access);
        }
        Ok(Principal::anonymous())
    }

    /// Checks a user name and password (rate-limited; constant work for unknown users).
    pub async fn verify_password(
        &self,
        name: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> std::result::Result<Principal, AuthFailure> {
        let key = self.verified_key(name, password);
        if let Some(p) = self.cached_verification(&key) {
            return Ok(p);
        }
        let config = self.config();
        self.inner
            .limiter
            .check(&config, name, peer)
            .map_err(AuthFailure::too_many)?;
        let _permit = self
            .inner
            .hashing
            .acquire()
            .await
            .map_err(|_| AuthFailure::unauthorized("the server is shutting down"))?;
        // Clients that waited for the same credentials find them checked by the first.
        if let Some(p) = self.cached_verification(&key) {
            return Ok(p);
        }
        // Failures recorded while this one waited count too.
        self.inner
            .limiter
            .check(&config, name, peer)
            .map_err(AuthFailure::too_many)?;
        self.inner
            .password_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let record = self.read_users().get(name).cloned();
        let this = self.clone();
        let pw = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let stored = record
                .as_ref()
                .map_or(this.inner.dummy.as_str(), |r| r.hash.as_str());
            let verified = PasswordHash::new(stored)
                .is_ok_and(|h| this.inner.hasher.verify_password(pw.as_bytes(), &h).is_ok());
            verified.then_some(record).flatten()
        })
        .await
        .ok()
        .flatten();
        match ok {
            Some(user) => {
                let mut cache = self
                    .inner
                    .verified
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if cache.len() >= VERIFIED_MAX {
                    cache.clear();
                }
                cache.insert(
                    key,
                    (
                        user.username.clone(),
                        user.generation,
                        Instant::now() + VERIFIED_TTL,
                    ),
                );
                Ok(Principal::user(&user.username, &user.roles))
            }
            None => {
                self.inner.limiter.failed(&config, name, peer);
                Err(AuthFailure::unauthorized(
                    "Login failed: wrong user name or password",
                ))
            }
        }
    }

    fn verified_key(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.inner.secret);
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn cached_verification(&self, key: &[u8; 32]) -> Option<Principal> {
        let (name, generation) = {
            let cache = self
                .inner
                .verified
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let (name, generation, until) = cache.get(key)?;
            if *until < Instant::now() {
                return None;
            }
            (name.clone(), *generation)
        };
        let users = self.read_users();
        let user = users.get(&name).filter(|u| u.generation == generation)?;
        Some(Principal::user(&user.username, &user.roles))
    }

    fn principal_for_token(
        &self,
        token: &str,
        kind: TokenKind,
    ) -> std::result::Result<Principal, AuthFailure> {
        let record = self
            .token(token, kind)
            .map_err(|_| AuthFailure::unauthorized("invalid token"))?;
        self.principal_of(&record)
            .ok_or_else(|| AuthFailure::unauthorized("invalid token"))
    }

    /// The live record of a token of `kind`; expired ones are deleted on sight.
    fn token(&self, token: &str, kind: TokenKind) -> std::result::Result<TokenRecord, ()> {
        let prefix = match kind {
            TokenKind::Access => ACCESS_PREFIX,
            TokenKind::Refresh => REFRESH_PREFIX,
        };
        if !token.starts_with(prefix) || token.len() > 128 {
            return Err(());
        }
        let d = digest(token);
        let record = self.inner.store.get_token(&d).ok().flatten().ok_or(())?;
        if record.kind != kind {
            return Err(());
        }
        if record.expires <= now_secs() {
            let _ = self.inner.store.delete_token(&d);
            return Err(());
        }
        Ok(record)
    }

    fn principal_of(&self, record: &TokenRecord) -> Option<Principal> {
        if record.guest {
            return Some(Principal::guest(&record.subject));
        }
        let users = self.read_users();
        let user = users
            .get(&record.subject)
            .filter(|u| u.generation == record.generation)?;
        Some(Principal::user(&user.username, &user.roles))
    }

    /// Issues an access and a refresh token for `who` (a user or guest).
    fn issue(&self, who: &Principal) -> Result<Tokens> {
        let subject = who.id().unwrap_or_default().to_owned();
        let guest = who.kind() == PrincipalKind::Guest;
        let generation = if guest {
            0
        } else {
            self.read_users().get(&subject).map_or(0, |u| u.generation)
        };
        let now = now_secs();
        let cfg = self.config();
        let access = format!(
            "{ACCESS_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
        );
        let refresh = format!(
            "{REFRESH_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
        );
        let record = |kind, ttl: Duration| TokenRecord {
            kind,
            subject: subject.clone(),
            guest,
            generation,
            expires: now + ttl.as_secs().max(1),
        };
        self.inner.store.put_tokens(&[
            (digest(&access), record(TokenKind::Access, cfg.access_ttl)),
            (
                digest(&refresh),
                record(TokenKind::Refresh, cfg.refresh_ttl),
            ),
        ])?;
        Ok(Tokens {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: cfg.access_ttl.as_secs().max(1),
            refresh_expires_in: cfg.refresh_ttl.as_secs().max(1),
            principal: who.clone(),
        })
    }

    /// `POST /auth/login`: tokens for a user name and password.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> std::result::Result<Tokens, AuthFailure> {
        let who = self.verify_password(name, password, peer).await?;
        self.issue(&who).map_err(AuthFailure::internal)
    }

    /// Exchanges a refresh token for a new pair; the old refresh token stops working
    /// (rotation), so a stolen one is good for one use at most.
    pub fn refresh(&self, refresh_token: &str) -> std::result::Result<Tokens, AuthFailure> {
        let record = self
            .token(refresh_token, TokenKind::Refresh)
            .map_err(|_| AuthFailure::unauthorized("invalid or expired refresh token"))?;
        let who = self
            .principal_of(&record)
            .ok_or_else(|| AuthFailure::unauthorized("invalid or expired refresh token"))?;
        // Delete first: of two concurrent refreshes only one finds the token afterwards.
        let removed = self
            .inner
            .store
            .take_token(&digest(refresh_token))
            .map_err(AuthFailure::internal)?;
        if !removed {
            return Err(AuthFailure::unauthorized(
                "invalid or expired refresh token",
            ));
        }
        self.issue(&who).map_err(AuthFailure::internal)
    }

    /// Starts a guest session, or resumes the one `refresh_token` belongs to.
    pub fn guest_session(&self, refresh_token: Option<&str>) -> Result<Tokens> {
        if let Some(token) = refresh_token
            && let Ok(tokens) = self.refresh(token)
            && tokens.principal.kind() == PrincipalKind::Guest
        {
            return Ok(tokens);
        }
        let id = format!(
            "{GUEST_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<15>()?)
        );
        self.issue(&Principal::guest(&id))
    }

    /// Ends a token (access or refresh); unknown tokens are ignored.
    pub fn revoke(&self, token: &str) -> Result<()> {
        self.inner.store.take_token(&digest(token)).map(|_| ())
    }

    fn hash(&self, password: &str) -> Result<String> {
        self.inner
            .hasher
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))
    }

    fn read_users(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, UserRecord>> {
        self.inner.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_users(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, UserRecord>> {
        self.inner.users.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_user_input(name: &str, password: Option<&str>, roles: &[String]) -> Result<()> {
    if !valid_username(name) {
        return Err(Error::invalid_record(
            "user",
            "username",
            "user names are 1 to 64 letters, digits, '_', '-', '.' or '@', not starting with 'guest-'",
        ));
    }
    if password.is_some_and(|p| p.is_empty() || p.len() > 1024) {
        return Err(Error::invalid_record(
            "user",
            "password",
            "passwords are 1 to 1024 bytes",
        ));
    }
    if let Some(bad) = roles.iter().find(|r| {
        r.is_empty()
            || r.len() > 64
            || !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    }) {
        return Err(Error::invalid_record(
            "user",
            "roles",
            format!("invalid role name {bad:?}: use letters, digits, '_', '-' and '.'"),
        ));
    }
    Ok(())
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Why credentials were refused.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    /// 401, 429 or 500.
    pub status: u16,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl AuthFailure {
    fn unauthorized(message: &str) -> AuthFailure {
        AuthFailure {
            status: 401,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    fn too_many(retry_after: Duration) -> AuthFailure {
        let secs = retry_after.as_secs().max(1);
        AuthFailure {
            status: 429,
            message: format!("too many failed sign-in attempts; try again in {secs} s"),
            retry_after: Some(secs),
        }
    }

    fn internal(e: Error) -> AuthFailure {
        tracing::error!(error = %e, "credential store failure");
        AuthFailure {
            status: 500,
            message: "the credential store failed; see the server log".into(),
            retry_after: None,
        }
    }
}

impl From<AuthFailure> for crate::http::ApiError {
    fn from(f: AuthFailure) -> Self {
        use warp::http::StatusCode;
        let (status, kind) = match f.status {
            401 => (StatusCode::UNAUTHORIZED, "unauthorized"),
            429 => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let mut e = crate::http::ApiError::new(status, kind, f.message);
        e.retry_after = f.retry_after;
        e
    }
}

#[cfg(test)]
mod tests;
