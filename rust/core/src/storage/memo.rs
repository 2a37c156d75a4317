//! Bytes of objects kept in memory between requests, under a byte limit (the oldest go
//! first): what several reads of one object would otherwise fetch again, such as the first
//! pages of an image chunk that a shuffled stream reads sparsely for one batch after another.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub struct Memo<K> {
    max_bytes: usize,
    inner: Mutex<Entries<K>>,
}

struct Entries<K> {
    map: HashMap<K, Arc<[u8]>>,
    /// Keys in the order they were put (a removed key stays until its turn comes).
    order: VecDeque<K>,
    bytes: usize,
}

impl<K: Hash + Eq + Clone> Memo<K> {
    pub fn new(max_bytes: usize) -> Self {
        Memo {
            max_bytes,
            inner: Mutex::new(Entries {
                map: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    pub fn get(&self, key: &K) -> Option<Arc<[u8]>> {
        self.lock().map.get(key).cloned()
    }

    /// Keeps `bytes` for `key` (replacing what was there), dropping the oldest entries past
    /// the limit; bytes over the limit alone are not kept.
    pub fn put(&self, key: K, bytes: Arc<[u8]>) {
        if bytes.len() > self.max_bytes {
            return;
        }
        let mut e = self.lock();
        e.bytes += bytes.len();
        match e.map.insert(key.clone(), bytes) {
            Some(old) => e.bytes -= old.len(),
            None => e.order.push_back(key),
        }
        while e.bytes > self.max_bytes {
            let Some(oldest) = e.order.pop_front() else {
                break;
            };
            if let Some(old) = e.map.remove(&oldest) {
                e.bytes -= old.len();
            }
        }
    }

    pub fn remove(&self, key: &K) {
        let mut e = self.lock();
        if let Some(old) = e.map.remove(key) {
            e.bytes -= old.len();
        }
        if e.order.len() > 2 * e.map.len() + 64 {
            // Mostly removed keys: forget them.
            let Entries { map, order, .. } = &mut *e;
            order.retain(|k| map.contains_key(k));
        }
    }

    /// Removes every entry whose key `drop` picks.
    pub fn remove_if(&self, drop: impl Fn(&K) -> bool) {
        let mut e = self.lock();
        let Entries { map, order, bytes } = &mut *e;
        map.retain(|k, v| {
            let keep = !drop(k);
            if !keep {
                *bytes -= v.len();
            }
            keep
        });
        order.retain(|k| map.contains_key(k));
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_under_the_limit() {
        let m = Memo::new(10);
        m.put(1, Arc::from(&[0u8; 4][..]));
        m.put(2, Arc::from(&[0u8; 4][..]));
        m.put(1, Arc::from(&[1u8; 4][..])); // replaced, still the oldest
        assert_eq!(m.bytes(), 8);
        m.put(3, Arc::from(&[0u8; 4][..]));
        assert!(m.get(&1).is_none() && m.get(&2).is_some() && m.get(&3).is_some());
        m.remove(&2);
        assert_eq!(m.bytes(), 4);
        m.put(5, Arc::from(&[0u8; 2][..]));
        m.remove_if(|&k| k == 5);
        assert_eq!(m.bytes(), 4);
        m.put(4, Arc::from(&[0u8; 11][..])); // over the limit alone
        assert!(m.get(&4).is_none() && m.get(&3).is_some());
    }
}
