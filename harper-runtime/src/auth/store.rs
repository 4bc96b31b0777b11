//! Users and tokens in the `__auth` keyspace:
//! - `u:<name>` -> user JSON (argon2id PHC hash, roles, generation);
//! - `t:<sha256 of the token>` -> token JSON (kind, subject, expiry).
//!
//! Every change is persisted (fsync) before it is acknowledged.

use std::collections::HashMap;
use std::sync::Mutex;

use fjall::{Keyspace, PersistMode};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Database;

const KEYSPACE: &str = "__auth";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct UserRecord {
    pub username: String,
    pub hash: String,
    pub roles: Vec<String>,
    /// Changes with the password: tokens and cached checks of older generations stop working.
    pub generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum TokenKind {
    Access,
    Refresh,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct TokenRecord {
    pub kind: TokenKind,
    /// User name or guest id.
    pub subject: String,
    pub guest: bool,
    pub generation: u64,
    /// Unix seconds.
    pub expires: u64,
}

pub(super) struct Store {
    db: fjall::Database,
    ks: Keyspace,
    /// Makes "delete if present" atomic (refresh-token rotation).
    take: Mutex<()>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{KEYSPACE} {what}: {e}"))
}

fn token_key(digest: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(34);
    k.extend_from_slice(b"t:");
    k.extend_from_slice(digest);
    k
}

impl Store {
    pub fn open(db: &Database) -> Result<Store> {
        let fjall = db.inner.fjall.clone();
        let ks = fjall.keyspace(KEYSPACE, crate::storage::keyspace_options)?;
        Ok(Store {
            db: fjall,
            ks,
            take: Mutex::new(()),
        })
    }

    fn persist(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    pub fn load_users(&self) -> Result<HashMap<String, UserRecord>> {
        let mut users = HashMap::new();
        for guard in self.ks.prefix(b"u:") {
            let (_, v) = guard.into_inner()?;
            let user: UserRecord = serde_json::from_slice(&v).map_err(|e| corrupt("user", e))?;
            users.insert(user.username.clone(), user);
        }
        Ok(users)
    }

    pub fn put_user(&self, user: &UserRecord) -> Result<()> {
        let v = serde_json::to_vec(user).map_err(|e| corrupt("user", e))?;
        self.ks.insert(format!("u:{}", user.username), v)?;
        self.persist()
    }

    pub fn delete_user(&self, name: &str) -> Result<()> {
        self.ks.remove(format!("u:{name}"))?;
        self.persist()
    }

    pub fn get_token(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>> {
        match self.ks.get(token_key(digest))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(&v).map_err(|e| corrupt("token", e))?,
            )),
            None => Ok(None),
        }
    }

    pub fn put_tokens(&self, tokens: &[([u8; 32], TokenRecord)]) -> Result<()> {
        let mut batch = self.db.batch();
        for (digest, record) in tokens {
            let v = serde_json::to_vec(record).map_err(|e| corrupt("token", e))?;
            batch.insert(&self.ks, token_key(digest), v);
        }
        batch.commit()?;
        self.persist()
    }

    pub fn delete_token(&self, digest: &[u8; 32]) -> Result<()> {
        self.ks.remove(token_key(digest))?;
        Ok(())
    }

    /// Deletes a token; whether it was there.
    pub fn take_token(&self, digest: &[u8; 32]) -> Result<bool> {
        let _one_at_a_time = self.take.lock().unwrap_or_else(|p| p.into_inner());
        let key = token_key(digest);
        if self.ks.get(&key)?.is_none() {
            return Ok(false);
        }
        self.ks.remove(key)?;
        self.persist()?;
        Ok(true)
    }

    /// Deletes expired tokens (at open).
    pub fn sweep_expired(&self, now: u64) -> Result<usize> {
        let mut expired = Vec::new();
        for guard in self.ks.prefix(b"t:") {
            let (k, v) = guard.into_inner()?;
            match serde_json::from_slice::<TokenRecord>(&v) {
                Ok(t) if t.expires > now => {}
                // Expired, or unreadable (a token that cannot be read cannot be honoured).
                _ => expired.push(k),
            }
        }
        let n = expired.len();
        if n > 0 {
            let mut batch = self.db.batch();
            for k in expired {
                batch.remove(&self.ks, k);
            }
            batch.commit()?;
        }
        Ok(n)
    }
}
