//! A CPU's software timers: deadlines (nanoseconds of system time) with a
//! payload, earliest first. Cancelling is lazy: the owner keeps a
//! generation in the payload and ignores entries that are out of date.

use alloc::collections::BinaryHeap;
use core::cmp::Reverse;

pub struct TimerQueue<T: Ord + Copy> {
    heap: BinaryHeap<Reverse<(u64, u64, T)>>,
    seq: u64,
}

impl<T: Ord + Copy> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue::new()
    }
}

impl<T: Ord + Copy> TimerQueue<T> {
    pub const fn new() -> TimerQueue<T> {
        TimerQueue { heap: BinaryHeap::new(), seq: 0 }
    }

    /// Adds a timer; timers with equal deadlines fire in the order added.
    pub fn add(&mut self, deadline: u64, item: T) {
        self.seq += 1;
        self.heap.push(Reverse((deadline, self.seq, item)));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((d, _, _))| *d)
    }

    /// Removes and returns one timer due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, T)> {
        match self.heap.peek() {
            Some(Reverse((d, _, _))) if *d <= now => self.heap.pop().map(|Reverse((d, _, t))| (d, t)),
            _ => None,
        }
    }

    /// Drops every timer whose payload matches.
    pub fn remove_where(&mut self, mut f: impl FnMut(&T) -> bool) {
        self.heap.retain(|Reverse((_, _, t))| !f(t));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_then_insertion_order() {
        let mut q = TimerQueue::new();
        q.add(30, 'c');
        q.add(10, 'a');
        q.add(30, 'd');
        q.add(20, 'b');
        assert_eq!(q.next_deadline(), Some(10));
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(25), Some((10, 'a')));
        assert_eq!(q.pop_due(25), Some((20, 'b')));
        assert_eq!(q.pop_due(25), None);
        // 'd' was added after 'c' with the same deadline.
        assert_eq!(q.pop_due(100), Some((30, 'c')));
        assert_eq!(q.pop_due(100), Some((30, 'd')));
        assert!(q.is_empty());
    }

    #[test]
    fn removal_by_payload() {
        let mut q = TimerQueue::new();
        for i in 0..10u32 {
            q.add(i as u64, i);
        }
        q.remove_where(|t| t % 2 == 0);
        assert_eq!(q.len(), 5);
        assert_eq!(q.pop_due(100), Some((1, 1)));
    }
}
