//! Seed 002's query caching: the vectors of recent query texts, one cache per model, so
//! a text asked again (a UI paging through results, a batch repeating a text) skips the
//! text encoder. Bounded in entries; the least recently used goes first.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

pub struct TextCache {
    entries: Mutex<LruCache<String, Arc<[f32]>>>,
}

impl TextCache {
    /// None when `capacity` is 0 (caching off).
    pub fn new(capacity: usize) -> Option<Self> {
        NonZeroUsize::new(capacity).map(|c| Self { entries: Mutex::new(LruCache::new(c)) })
    }

    pub fn get(&self, text: &str) -> Option<Arc<[f32]>> {
        self.entries.lock().ok()?.get(text).cloned()
    }

    pub fn put(&self, text: String, vector: Arc<[f32]>) {
        // A poisoned lock only means another query panicked mid-insert: skip caching.
        if let Ok(mut entries) = self.entries.lock() {
            entries.put(text, vector);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_used_within_its_bound() {
        let cache = TextCache::new(2).unwrap();
        cache.put("a".into(), Arc::from(vec![1.0]));
        cache.put("b".into(), Arc::from(vec![2.0]));
        assert!(cache.get("a").is_some()); // a is now the most recent
        cache.put("c".into(), Arc::from(vec![3.0]));
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert_eq!(cache.get("a").as_deref(), Some(&[1.0][..]));
        assert_eq!(cache.get("c").as_deref(), Some(&[3.0][..]));
        assert!(TextCache::new(0).is_none());
    }
}
