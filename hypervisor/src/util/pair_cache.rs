//! A cache of two entries that keeps the most recently used one: for
//! lookups that alternate between two keys, where a single entry would
//! miss every time (a guest's exits come from its own code and from its
//! hypercall page in turn).

/// Two key-value pairs, the most recently used first; a new pair pushes
/// out the other one.
#[derive(Debug, Clone, Copy)]
pub struct PairCache<K, V> {
    first: Option<(K, V)>,
    second: Option<(K, V)>,
}

impl<K: PartialEq + Copy, V: Copy> Default for PairCache<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: PartialEq + Copy, V: Copy> PairCache<K, V> {
    pub const fn new() -> Self {
        PairCache { first: None, second: None }
    }

    /// The value cached for `key`. A hit on the second pair moves it to
    /// the front, so a key looked up again and again costs one compare.
    #[inline]
    pub fn get(&mut self, key: &K) -> Option<V> {
        if let Some((k, v)) = &self.first
            && k == key
        {
            return Some(*v);
        }
        match self.second {
            Some((k, v)) if k == *key => {
                self.second = self.first;
                self.first = Some((k, v));
                Some(v)
            }
            _ => None,
        }
    }

    /// Caches `value` for `key` in front; the pair that was in front stays
    /// second unless it was `key`'s.
    pub fn put(&mut self, key: K, value: V) {
        if !matches!(&self.first, Some((k, _)) if *k == key) {
            self.second = self.first;
        }
        self.first = Some((key, value));
    }

    /// Forgets both pairs.
    pub fn clear(&mut self) {
        self.first = None;
        self.second = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_two_keys_and_replaces_the_older() {
        let mut c = PairCache::<u64, u64>::new();
        assert_eq!(c.get(&1), None);
        c.put(1, 10);
        c.put(2, 20);
        // Alternating between the two always hits.
        for _ in 0..3 {
            assert_eq!(c.get(&1), Some(10));
            assert_eq!(c.get(&2), Some(20));
        }
        // 1 was used before 2: a third key replaces it.
        assert_eq!(c.get(&1), Some(10));
        assert_eq!(c.get(&2), Some(20));
        c.put(3, 30);
        assert_eq!(c.get(&1), None);
        assert_eq!((c.get(&2), c.get(&3)), (Some(20), Some(30)));
        // A key already cached is updated in place.
        c.put(2, 21);
        assert_eq!((c.get(&2), c.get(&3)), (Some(21), Some(30)));
        // Putting the front key again keeps the other one.
        c.put(2, 22);
        assert_eq!((c.get(&3), c.get(&2)), (Some(30), Some(22)));
        c.clear();
        assert_eq!((c.get(&2), c.get(&3)), (None, None));
    }
}
