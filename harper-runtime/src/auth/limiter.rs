//! Rate limit on failed credential checks: a token bucket per user name and one per client
//! address. A failure takes a token; with the bucket empty, checks are refused (429) until it
//! refills, whether or not the next password would be right.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::AuthConfig;

/// `burst` failures at once, then one more per `refill`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub refill: Duration,
}

/// Tracked keys at most; beyond, full buckets are forgotten first.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub(super) struct Limiter {
    buckets: Mutex<HashMap<Key, Bucket>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Failures still allowed, as of `at`.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn level(&self, limit: RateLimit, now: Instant) -> f64 {
        let refilled =
            now.duration_since(self.at).as_secs_f64() / limit.refill.as_secs_f64().max(1e-3);
        (self.tokens + refilled).min(f64::from(limit.burst))
    }
}

fn keys(config: &AuthConfig, user: &str, peer: Option<IpAddr>) -> Vec<(Key, RateLimit)> {
    let mut keys = vec![(Key::User(user.to_owned()), config.per_user)];
    if let Some(ip) = peer {
        keys.push((Key::Address(ip), config.per_address));
    }
    keys
}

impl Limiter {
    /// `Err(wait)` when a bucket of this attempt is empty.
    pub fn check(
        &self,
        config: &AuthConfig,
        user: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), Duration> {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for (key, limit) in keys(config, user, peer) {
            if let Some(b) = buckets.get(&key) {
                let level = b.level(limit, now);
                if level < 1.0 {
                    wait = wait.max(limit.refill.mul_f64(1.0 - level));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Records a failed attempt.
    pub fn failed(&self, config: &AuthConfig, user: &str, peer: Option<IpAddr>) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS {
            let (pu, pa) = (config.per_user, config.per_address);
            buckets.retain(|k, b| {
                let limit = if matches!(k, Key::User(_)) { pu } else { pa };
                b.level(limit, now) < f64::from(limit.burst)
            });
        }
        for (key, limit) in keys(config, user, peer) {
            let b = buckets.entry(key).or_insert(Bucket {
                tokens: f64::from(limit.burst),
                at: now,
            });
            let level = b.level(limit, now);
            *b = Bucket {
                tokens: (level - 1.0).max(0.0),
                at: now,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_then_refilled() {
        let limit = RateLimit {
            burst: 3,
            refill: Duration::from_millis(50),
        };
        let c = AuthConfig {
            per_user: limit,
            per_address: limit,
            ..AuthConfig::default()
        };
        let l = Limiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(&c, "alice", Some(ip)).is_ok());
            l.failed(&c, "alice", Some(ip));
        }
        assert!(l.check(&c, "alice", Some(ip)).is_err());
        // Another user from the same address shares the address bucket.
        assert!(l.check(&c, "bob", Some(ip)).is_err());
        // Another address for another user is unaffected.
        assert!(
            l.check(&c, "bob", Some("10.0.0.1".parse().unwrap()))
                .is_ok()
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.check(&c, "alice", Some(ip)).is_ok());
    }
}
