//! A CPU's software timers: at most one deadline (nanoseconds of system
//! time) per key, earliest first. Setting a key's timer again replaces its
//! deadline, so the queue holds no more entries than there are keys (a
//! guest re-arming its timer in a loop cannot grow it), and a timer can be
//! cancelled at once. The value rides along (a generation, say, that the
//! owner uses to tell an entry from another CPU's queue is out of date).

use alloc::collections::BTreeMap;

pub struct TimerQueue<K: Ord + Copy, V: Copy> {
    /// (deadline, order of setting) → key and value.
    by_time: BTreeMap<(u64, u64), (K, V)>,
    /// key → its place in `by_time`.
    by_key: BTreeMap<K, (u64, u64)>,
    seq: u64,
}

impl<K: Ord + Copy, V: Copy> Default for TimerQueue<K, V> {
    fn default() -> Self {
        TimerQueue::new()
    }
}

impl<K: Ord + Copy, V: Copy> TimerQueue<K, V> {
    pub const fn new() -> TimerQueue<K, V> {
        TimerQueue { by_time: BTreeMap::new(), by_key: BTreeMap::new(), seq: 0 }
    }

    /// Sets `key`'s timer to `deadline`, replacing the one it had; timers
    /// with equal deadlines fire in the order set.
    pub fn set(&mut self, deadline: u64, key: K, value: V) {
        self.cancel(key);
        self.seq += 1;
        self.by_time.insert((deadline, self.seq), (key, value));
        self.by_key.insert(key, (deadline, self.seq));
    }

    /// Removes `key`'s timer, if it has one.
    pub fn cancel(&mut self, key: K) {
        if let Some(at) = self.by_key.remove(&key) {
            self.by_time.remove(&at);
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.by_time.first_key_value().map(|(&(d, _), _)| d)
    }

    /// Removes and returns one timer due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, K, V)> {
        let (&(d, _), _) = self.by_time.first_key_value()?;
        if d > now {
            return None;
        }
        let ((d, _), (k, v)) = self.by_time.pop_first()?;
        self.by_key.remove(&k);
        Some((d, k, v))
    }

    /// Drops every timer whose key matches.
    pub fn remove_where(&mut self, mut f: impl FnMut(&K) -> bool) {
        self.by_time.retain(|_, (k, _)| !f(k));
        self.by_key.retain(|k, _| !f(k));
    }

    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_then_setting_order() {
        let mut q = TimerQueue::new();
        q.set(30, 'c', ());
        q.set(10, 'a', ());
        q.set(30, 'd', ());
        q.set(20, 'b', ());
        assert_eq!(q.next_deadline(), Some(10));
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(25), Some((10, 'a', ())));
        assert_eq!(q.pop_due(25), Some((20, 'b', ())));
        assert_eq!(q.pop_due(25), None);
        // 'd' was set after 'c' with the same deadline.
        assert_eq!(q.pop_due(100), Some((30, 'c', ())));
        assert_eq!(q.pop_due(100), Some((30, 'd', ())));
        assert!(q.is_empty());
    }

    #[test]
    fn a_key_holds_one_timer_however_often_it_is_set() {
        let mut q = TimerQueue::new();
        for i in 0..10_000u64 {
            q.set(u64::MAX - i, 7u32, i);
        }
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(u64::MAX - 9_999));
        q.set(5, 7, 1);
        q.set(9, 8, 2);
        assert_eq!(q.pop_due(10), Some((5, 7, 1)));
        assert_eq!(q.pop_due(10), Some((9, 8, 2)));
        assert!(q.is_empty());
        q.set(5, 7, 1);
        q.cancel(7);
        q.cancel(7);
        assert!(q.is_empty());
        assert_eq!(q.pop_due(u64::MAX), None);
    }

    #[test]
    fn removal_by_key() {
        let mut q = TimerQueue::new();
        for i in 0..10u32 {
            q.set(i as u64, i, ());
        }
        q.remove_where(|k| k % 2 == 0);
        assert_eq!(q.len(), 5);
        assert_eq!(q.pop_due(100), Some((1, 1, ())));
        // A removed key can be set again.
        q.set(0, 2, ());
        assert_eq!(q.pop_due(100), Some((0, 2, ())));
    }
}
