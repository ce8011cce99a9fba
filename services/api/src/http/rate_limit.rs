//! Requests per minute per client: a token bucket per API key name (bounded by the
//! number of keys) and per client address for anonymous callers (bounded by
//! `MAX_ADDRESSES`, so a flood of addresses cannot grow memory without limit).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Anonymous client addresses tracked at once; beyond, buckets that have refilled are
/// dropped, and a new address is refused while none can be.
const MAX_ADDRESSES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Key(String),
    Address(IpAddr),
}

pub struct RateLimiter {
    per_minute: f64,
    keys: Mutex<HashMap<String, Bucket>>,
    addresses: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// None when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            per_minute: f64::from(per_minute),
            keys: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one request from the client's budget, or says how long until one is free.
    pub fn check(&self, client: &Client) -> Result<(), Duration> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: &Client, now: Instant) -> Result<(), Duration> {
        match client {
            Client::Key(name) => self.take(&self.keys, name, now, usize::MAX),
            Client::Address(ip) => self.take(&self.addresses, ip, now, MAX_ADDRESSES),
        }
    }

    fn take<K: Eq + Hash + Clone>(
        &self,
        map: &Mutex<HashMap<K, Bucket>>,
        key: &K,
        now: Instant,
        max_entries: usize,
    ) -> Result<(), Duration> {
        // A panic elsewhere while holding the lock leaves the counts usable.
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(key) && map.len() >= max_entries {
            map.retain(|_, b| self.refilled(*b, now) < self.per_minute);
            if map.len() >= max_entries {
                return Err(Duration::from_secs(60));
            }
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket { tokens: self.per_minute, at: now });
        let tokens = self.refilled(*bucket, now);
        if tokens >= 1.0 {
            *bucket = Bucket { tokens: tokens - 1.0, at: now };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            let per_sec = self.per_minute / 60.0;
            Err(Duration::from_secs_f64((1.0 - tokens) / per_sec))
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_full_budget_then_one_request_per_refill() {
        assert!(RateLimiter::new(0).is_none());
        let limiter = RateLimiter::new(3).unwrap();
        let t0 = Instant::now();
        let a = Client::Key("a".into());
        for _ in 0..3 {
            limiter.check_at(&a, t0).unwrap();
        }
        let wait = limiter.check_at(&a, t0).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20), "{wait:?}");
        // Another client has its own budget.
        limiter.check_at(&Client::Address("127.0.0.1".parse().unwrap()), t0).unwrap();
        // 20 s later one request is free again, not more.
        let t1 = t0 + Duration::from_secs(20);
        limiter.check_at(&a, t1).unwrap();
        assert!(limiter.check_at(&a, t1).is_err());
    }
}
