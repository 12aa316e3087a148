//! The physical frame allocator: a binary buddy allocator, as Xen's heap
//! allocator is, over a frame table with one entry per 4 KiB frame.
//!
//! Free blocks of 2^order frames are kept in per-order lists linked through
//! the frame table (not through the free memory itself), so the allocator
//! never touches the memory it manages and is testable on the host. Every
//! allocated frame is marked, so a double free or a free of memory that was
//! never handed out is refused instead of corrupting the lists; free frames
//! other than a block's first are left unmarked, which keeps giving memory
//! to the allocator proportional to the number of blocks, not frames.

use super::ranges::{PAGE_SIZE, Range, RangeSet};
use core::fmt;

/// Largest block: 2^18 frames = 1 GiB.
pub const MAX_ORDER: usize = 18;

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum State {
    /// Unmanaged, or free but not the first frame of its block.
    Plain = 0,
    /// First frame of a free block; `order` says its size.
    FreeHead = 1,
    Allocated = 2,
}

/// One frame-table entry (12 bytes per 4 KiB frame). All-zero bytes are a
/// valid, plain entry.
///
/// `next` and `prev` link free blocks. An allocated frame has no use for
/// them, so `next` counts its references instead (something besides its
/// owner refers to it: a grant mapping or copy, a registered vcpu_info),
/// and `flags` says whether its owner let go of it ([`RELEASED`]): it is
/// freed with its last reference then, as Xen's page reference counts do.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct FrameInfo {
    next: u32,
    prev: u32,
    order: u8,
    state: State,
    flags: u8,
    _reserved: u8,
}

impl FrameInfo {
    pub const PLAIN: FrameInfo = FrameInfo { next: 0, prev: 0, order: 0, state: State::Plain, flags: 0, _reserved: 0 };
}

/// The owner of a referenced frame gave it up.
const RELEASED: u8 = 1 << 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is outside the frame table or was never given to the
    /// allocator.
    NotManaged { pfn: u64 },
    /// The frame is already free.
    DoubleFree { pfn: u64 },
    /// Frames do not all belong to one earlier allocation.
    NotAllocated { pfn: u64 },
    /// A reference dropped that was never taken.
    NotReferenced { pfn: u64 },
    /// 2^32 references on one frame.
    TooManyRefs { pfn: u64 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotManaged { pfn } => write!(f, "frame {pfn:#x} is not managed by the allocator"),
            FrameError::DoubleFree { pfn } => write!(f, "frame {pfn:#x} freed twice"),
            FrameError::NotAllocated { pfn } => write!(f, "frame {pfn:#x} was not allocated"),
            FrameError::NotReferenced { pfn } => write!(f, "frame {pfn:#x} has no reference to drop"),
            FrameError::TooManyRefs { pfn } => write!(f, "frame {pfn:#x} has 2^32 references"),
        }
    }
}

/// Smallest order whose block holds `frames` frames.
pub fn order_for(frames: u64) -> usize {
    if frames <= 1 { 0 } else { (64 - (frames - 1).leading_zeros()) as usize }
}

pub struct FrameAllocator<'t> {
    /// Entry i describes frame `base_pfn + i`.
    table: &'t mut [FrameInfo],
    base_pfn: u64,
    heads: [u32; MAX_ORDER + 1],
    free_frames: u64,
    managed_frames: u64,
    /// What was given to the allocator (byte addresses).
    managed: RangeSet<256>,
}

impl<'t> FrameAllocator<'t> {
    /// An allocator with an empty pool over frames `base_pfn ..
    /// base_pfn + table.len()`. The table must cover fewer than 2^32 frames.
    pub fn new(table: &'t mut [FrameInfo], base_pfn: u64) -> FrameAllocator<'t> {
        assert!(table.len() < NIL as usize, "frame table too large");
        table.fill(FrameInfo::PLAIN);
        FrameAllocator {
            table,
            base_pfn,
            heads: [NIL; MAX_ORDER + 1],
            free_frames: 0,
            managed_frames: 0,
            managed: RangeSet::new(),
        }
    }

    pub fn free_frames(&self) -> u64 {
        self.free_frames
    }

    pub fn managed_frames(&self) -> u64 {
        self.managed_frames
    }

    /// The highest frame number the allocator covers.
    pub fn highest_frame(&self) -> u64 {
        self.base_pfn + self.table.len() as u64 - 1
    }

    /// Free blocks in each order's list, for reports.
    pub fn free_blocks_by_order(&self) -> [u64; MAX_ORDER + 1] {
        let mut out = [0; MAX_ORDER + 1];
        for (o, slot) in out.iter_mut().enumerate() {
            let mut i = self.heads[o];
            while i != NIL {
                *slot += 1;
                i = self.table[i as usize].next;
            }
        }
        out
    }

    fn index(&self, pfn: u64) -> Option<usize> {
        let i = pfn.checked_sub(self.base_pfn)?;
        if i < self.table.len() as u64 { Some(i as usize) } else { None }
    }

    fn pfn(&self, index: u32) -> u64 {
        self.base_pfn + index as u64
    }

    fn is_managed(&self, pfn: u64) -> bool {
        pfn.checked_mul(PAGE_SIZE).is_some_and(|a| self.managed.contains(a))
    }

    /// Gives the whole pages of `range` to the allocator. Pages outside the
    /// frame table, and pages given before, are ignored; the number of
    /// frames added is returned.
    pub fn add_range(&mut self, range: Range) -> u64 {
        let pages = range.pages_inside();
        let first = (pages.start / PAGE_SIZE).max(self.base_pfn);
        let last = (pages.end / PAGE_SIZE).min(self.base_pfn + self.table.len() as u64);
        if first >= last {
            return 0;
        }
        // The part not given before.
        let mut fresh = RangeSet::<16>::new();
        let _ = fresh.add(Range::new(first * PAGE_SIZE, last * PAGE_SIZE));
        for m in self.managed.iter() {
            let _ = fresh.remove(m);
        }
        let mut added = 0;
        for r in fresh.iter() {
            if self.managed.add(r).is_err() {
                // No room to remember it: leave it out rather than risk
                // handing it out twice later.
                continue;
            }
            let (start, end) = (r.start / PAGE_SIZE, r.end / PAGE_SIZE);
            let mut p = start;
            while p < end {
                let order = self.largest_block_at(p, end);
                self.release(p, order);
                p += 1 << order;
            }
            added += end - start;
        }
        self.managed_frames += added;
        added
    }

    /// The largest order of an aligned block starting at `pfn` that ends at
    /// or before `limit`.
    fn largest_block_at(&self, pfn: u64, limit: u64) -> usize {
        let mut order = (pfn.trailing_zeros() as usize).min(MAX_ORDER);
        while order > 0 && pfn + (1u64 << order) > limit {
            order -= 1;
        }
        order
    }

    fn push(&mut self, index: u32, order: usize) {
        let head = self.heads[order];
        let e = &mut self.table[index as usize];
        e.next = head;
        e.prev = NIL;
        e.order = order as u8;
        e.state = State::FreeHead;
        if head != NIL {
            self.table[head as usize].prev = index;
        }
        self.heads[order] = index;
    }

    fn unlink(&mut self, index: u32, order: usize) {
        let (prev, next) = {
            let e = &self.table[index as usize];
            (e.prev, e.next)
        };
        if prev != NIL {
            self.table[prev as usize].next = next;
        } else {
            self.heads[order] = next;
        }
        if next != NIL {
            self.table[next as usize].prev = prev;
        }
        self.table[index as usize].state = State::Plain;
    }

    /// Puts a block whose frames are all plain on the free lists, merging
    /// with free buddies.
    fn release(&mut self, pfn: u64, order: usize) {
        let mut pfn = pfn;
        let mut order = order;
        self.free_frames += 1 << order;
        while order < MAX_ORDER {
            let buddy = pfn ^ (1 << order);
            let Some(bi) = self.index(buddy) else { break };
            let b = self.table[bi];
            if b.state != State::FreeHead || b.order as usize != order {
                break;
            }
            self.unlink(bi as u32, order);
            pfn = pfn.min(buddy);
            order += 1;
        }
        let idx = (pfn - self.base_pfn) as u32;
        self.push(idx, order);
    }

    fn mark(&mut self, pfn: u64, count: u64, state: State) {
        let i = (pfn - self.base_pfn) as usize;
        for e in &mut self.table[i..i + count as usize] {
            e.state = state;
            if state == State::Allocated {
                // No references yet (the links of a free block are gone).
                e.next = 0;
                e.flags = 0;
            }
        }
    }

    /// The entry of an allocated frame.
    fn allocated(&mut self, pfn: u64) -> Result<&mut FrameInfo, FrameError> {
        let i = self.index(pfn).ok_or(FrameError::NotManaged { pfn })?;
        let e = &mut self.table[i];
        if e.state != State::Allocated {
            return Err(FrameError::NotAllocated { pfn });
        }
        Ok(e)
    }

    /// Takes a reference on an allocated frame.
    pub fn get_ref(&mut self, pfn: u64) -> Result<(), FrameError> {
        let e = self.allocated(pfn)?;
        e.next = e.next.checked_add(1).ok_or(FrameError::TooManyRefs { pfn })?;
        Ok(())
    }

    /// Drops a reference, freeing the frame if it was the last and the
    /// owner let go of it. Returns whether it was freed.
    pub fn put_ref(&mut self, pfn: u64) -> Result<bool, FrameError> {
        let e = self.allocated(pfn)?;
        if e.next == 0 {
            return Err(FrameError::NotReferenced { pfn });
        }
        e.next -= 1;
        if e.next > 0 || e.flags & RELEASED == 0 {
            return Ok(false);
        }
        e.flags = 0;
        self.free(pfn, 1)?;
        Ok(true)
    }

    /// References an allocated frame holds.
    pub fn refs(&self, pfn: u64) -> u32 {
        self.index(pfn).map_or(0, |i| if self.table[i].state == State::Allocated { self.table[i].next } else { 0 })
    }

    /// The owner gives `count` allocated frames from `pfn` back: those
    /// without references are freed now, the others with their last one.
    pub fn release_referenced(&mut self, pfn: u64, count: u64) -> Result<(), FrameError> {
        let end = pfn.checked_add(count).ok_or(FrameError::NotManaged { pfn })?;
        for p in pfn..end {
            self.allocated(p)?;
        }
        let mut run = pfn;
        for p in pfn..=end {
            let held = p < end && self.refs(p) > 0;
            if p == end || held {
                if run < p {
                    self.free(run, p - run)?;
                }
                if held {
                    self.allocated(p)?.flags |= RELEASED;
                }
                run = p + 1;
            }
        }
        Ok(())
    }

    /// Allocates 2^order contiguous frames, aligned to their size. Returns
    /// the first frame number.
    pub fn alloc(&mut self, order: usize) -> Option<u64> {
        if order > MAX_ORDER {
            return None;
        }
        let found = (order..=MAX_ORDER).find(|&o| self.heads[o] != NIL)?;
        let index = self.heads[found];
        self.unlink(index, found);
        let pfn = self.pfn(index);
        // Split, giving back the upper halves.
        let mut o = found;
        while o > order {
            o -= 1;
            self.push(index + (1 << o), o);
        }
        self.mark(pfn, 1 << order, State::Allocated);
        self.free_frames -= 1 << order;
        Some(pfn)
    }

    /// Allocates `count` contiguous frames whose first frame is aligned to
    /// 2^`align_order` frames; the unused tail of the power-of-two block is
    /// given back at once.
    pub fn alloc_contiguous(&mut self, count: u64, align_order: usize) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let order = order_for(count).max(align_order);
        let pfn = self.alloc(order)?;
        let block_end = pfn + (1 << order);
        if pfn + count < block_end {
            // These frames were just allocated: freeing them cannot fail.
            let _ = self.free(pfn + count, block_end - pfn - count);
        }
        Some(pfn)
    }

    /// Frees `count` frames starting at `pfn`, all of which must be
    /// allocated. Nothing is changed when any of them is not.
    pub fn free(&mut self, pfn: u64, count: u64) -> Result<(), FrameError> {
        let end = pfn.checked_add(count).ok_or(FrameError::NotManaged { pfn })?;
        for p in pfn..end {
            let i = self.index(p).ok_or(FrameError::NotManaged { pfn: p })?;
            if self.table[i].state != State::Allocated {
                return Err(if self.is_managed(p) {
                    FrameError::DoubleFree { pfn: p }
                } else {
                    FrameError::NotManaged { pfn: p }
                });
            }
        }
        self.mark(pfn, count, State::Plain);
        let mut p = pfn;
        while p < end {
            let o = self.largest_block_at(p, end);
            self.release(p, o);
            p += 1 << o;
        }
        Ok(())
    }

    /// Whether `pfn` is currently handed out.
    pub fn is_allocated(&self, pfn: u64) -> bool {
        self.index(pfn).is_some_and(|i| self.table[i].state == State::Allocated)
    }

    /// Takes a frame that is still free out of the pool (for example one
    /// that must stay untouched because firmware handed it over late).
    pub fn reserve(&mut self, pfn: u64) -> Result<(), FrameError> {
        let i = self.index(pfn).ok_or(FrameError::NotManaged { pfn })?;
        if self.table[i].state == State::Allocated {
            return Err(FrameError::NotAllocated { pfn });
        }
        // Blocks are aligned to their size: the block holding pfn starts at
        // pfn rounded down to some order.
        let (head, order) = (0..=MAX_ORDER)
            .map(|o| (pfn & !((1u64 << o) - 1), o))
            .find(|&(h, o)| {
                self.index(h)
                    .is_some_and(|hi| self.table[hi].state == State::FreeHead && self.table[hi].order as usize == o)
            })
            .ok_or(FrameError::NotManaged { pfn })?;
        let hi = (head - self.base_pfn) as u32;
        self.unlink(hi, order);
        self.mark(head, 1 << order, State::Allocated);
        self.free_frames -= 1 << order;
        // Give back everything but pfn.
        if head < pfn {
            let _ = self.free(head, pfn - head);
        }
        let end = head + (1 << order);
        if pfn + 1 < end {
            let _ = self.free(pfn + 1, end - pfn - 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn table(frames: usize) -> Vec<FrameInfo> {
        vec![FrameInfo::PLAIN; frames]
    }

    #[test]
    fn order_for_sizes() {
        assert_eq!(order_for(0), 0);
        assert_eq!(order_for(1), 0);
        assert_eq!(order_for(2), 1);
        assert_eq!(order_for(3), 2);
        assert_eq!(order_for(512), 9);
        assert_eq!(order_for(513), 10);
    }

    #[test]
    fn hands_out_every_frame_once_then_runs_dry() {
        let mut t = table(2048);
        let mut a = FrameAllocator::new(&mut t, 0);
        // Two unaligned ranges.
        assert_eq!(a.add_range(Range::new(3 * 4096, 700 * 4096)), 697);
        assert_eq!(a.add_range(Range::new(1000 * 4096 + 5, 2048 * 4096)), 1047);
        assert_eq!(a.free_frames(), 697 + 1047);
        let mut seen = HashSet::new();
        while let Some(p) = a.alloc(0) {
            assert!((3..700).contains(&p) || (1001..2048).contains(&p), "frame {p} outside the ranges");
            assert!(seen.insert(p), "frame {p} handed out twice");
        }
        assert_eq!(seen.len(), 697 + 1047);
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn freeing_everything_merges_back_to_maximal_blocks() {
        let mut t = table(1024);
        let mut a = FrameAllocator::new(&mut t, 0);
        a.add_range(Range::new(0, 1024 * 4096));
        let before = a.free_blocks_by_order();
        assert_eq!(before[10], 1);
        let frames: Vec<u64> = (0..1024).map(|_| a.alloc(0).unwrap()).collect();
        assert_eq!(a.alloc(0), None);
        // Free in a scrambled order.
        for (i, p) in frames.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let _ = i;
            a.free(*p, 1).unwrap();
        }
        for p in frames.iter().skip(1).step_by(2) {
            a.free(*p, 1).unwrap();
        }
        assert_eq!(a.free_blocks_by_order(), before);
        assert_eq!(a.alloc(10), Some(0));
    }

    #[test]
    fn blocks_are_aligned_to_their_size() {
        let mut t = table(4096);
        let mut a = FrameAllocator::new(&mut t, 0);
        a.add_range(Range::new(4096, 4096 * 4096)); // frame 0 missing
        for order in [0, 3, 9, 1, 5] {
            let p = a.alloc(order).unwrap();
            assert_eq!(p % (1 << order), 0, "order {order} block at {p}");
        }
    }

    #[test]
    fn contiguous_allocation_returns_the_tail() {
        let mut t = table(1024);
        let mut a = FrameAllocator::new(&mut t, 0);
        a.add_range(Range::new(0, 1024 * 4096));
        let p = a.alloc_contiguous(300, 0).unwrap();
        assert_eq!(a.free_frames(), 1024 - 300);
        for f in p..p + 300 {
            assert!(a.is_allocated(f));
        }
        assert!(!a.is_allocated(p + 300));
        let q = a.alloc_contiguous(5, 9).unwrap();
        assert_eq!(q % 512, 0);
        a.free(p, 300).unwrap();
        a.free(q, 5).unwrap();
        assert_eq!(a.free_frames(), 1024);
        assert_eq!(a.free_blocks_by_order()[10], 1);
    }

    #[test]
    fn double_free_and_foreign_frames_are_refused_without_damage() {
        let mut t = table(64);
        let mut a = FrameAllocator::new(&mut t, 0);
        a.add_range(Range::new(16 * 4096, 64 * 4096));
        let p = a.alloc(0).unwrap();
        a.free(p, 1).unwrap();
        assert_eq!(a.free(p, 1), Err(FrameError::DoubleFree { pfn: p }));
        assert_eq!(a.free(2, 1), Err(FrameError::NotManaged { pfn: 2 }));
        assert_eq!(a.free(1000, 1), Err(FrameError::NotManaged { pfn: 1000 }));
        // A range straddling an allocated and a free frame changes nothing.
        let q = a.alloc(1).unwrap();
        a.free(q + 1, 1).unwrap();
        assert!(a.free(q, 2).is_err());
        assert!(a.is_allocated(q));
        assert_eq!(a.free_frames(), 48 - 1);
        a.free(q, 1).unwrap();
        assert_eq!(a.free_frames(), 48);
        assert_eq!(a.free(u64::MAX, 2), Err(FrameError::NotManaged { pfn: u64::MAX }));
    }

    #[test]
    fn memory_above_4_gib_with_a_table_base() {
        // Frame table covering 4 GiB .. 4 GiB + 64 MiB only.
        let base = 4 * GIB / 4096;
        let mut t = table((64 * MIB / 4096) as usize);
        let mut a = FrameAllocator::new(&mut t, base);
        // Range partly below the table: only the part inside counts.
        let added = a.add_range(Range::new(4 * GIB - MIB, 4 * GIB + 64 * MIB));
        assert_eq!(added, 64 * MIB / 4096);
        let p = a.alloc(MAX_ORDER.min(14)).unwrap();
        assert!(p >= base);
        assert!(p * 4096 >= 4 * GIB);
    }

    #[test]
    fn adding_a_range_twice_does_not_duplicate_frames() {
        let mut t = table(64);
        let mut a = FrameAllocator::new(&mut t, 0);
        assert_eq!(a.add_range(Range::new(0, 32 * 4096)), 32);
        assert_eq!(a.add_range(Range::new(16 * 4096, 48 * 4096)), 16);
        assert_eq!(a.free_frames(), 48);
        let mut seen = HashSet::new();
        while let Some(p) = a.alloc(0) {
            assert!(seen.insert(p));
        }
        assert_eq!(seen.len(), 48);
    }

    #[test]
    fn oversized_requests_fail_cleanly() {
        let mut t = table(16);
        let mut a = FrameAllocator::new(&mut t, 0);
        a.add_range(Range::new(0, 16 * 4096));
        assert_eq!(a.alloc(5), None);
        assert_eq!(a.alloc(MAX_ORDER + 1), None);
        assert_eq!(a.alloc_contiguous(0, 0), None);
        assert_eq!(a.alloc_contiguous(17, 0), None);
        assert_eq!(a.free_frames(), 16);
    }

    #[test]
    fn reserve_takes_one_free_frame_out() {
        let mut t = table(64);
        let mut a = FrameAllocator::new(&mut t, 0);
        a.add_range(Range::new(0, 64 * 4096));
        a.reserve(37).unwrap();
        assert_eq!(a.free_frames(), 63);
        let mut seen = HashSet::new();
        while let Some(p) = a.alloc(0) {
            assert_ne!(p, 37);
            seen.insert(p);
        }
        assert_eq!(seen.len(), 63);
        assert!(a.reserve(37).is_err());
    }

    #[test]
    fn a_referenced_frame_given_back_is_freed_with_its_last_reference() {
        let mut t = table(64);
        let mut a = FrameAllocator::new(&mut t, 0);
        a.add_range(Range::new(0, 64 * 4096));
        let p = a.alloc(2).unwrap();
        a.get_ref(p + 1).unwrap();
        a.get_ref(p + 1).unwrap();
        a.get_ref(p + 3).unwrap();
        assert_eq!(a.refs(p + 1), 2);
        // Frames 0 and 2 go now; 1 and 3 wait for their references.
        a.release_referenced(p, 4).unwrap();
        assert_eq!(a.free_frames(), 62);
        assert!(a.is_allocated(p + 1) && a.is_allocated(p + 3));
        assert!(!a.is_allocated(p) && !a.is_allocated(p + 2));
        assert_eq!(a.put_ref(p + 1), Ok(false));
        assert_eq!(a.put_ref(p + 1), Ok(true));
        assert_eq!(a.put_ref(p + 3), Ok(true));
        assert_eq!(a.free_frames(), 64);
        // Nothing to drop on a freed frame or one never referenced.
        assert!(a.put_ref(p + 1).is_err());
        let q = a.alloc(0).unwrap();
        assert_eq!(a.put_ref(q), Err(FrameError::NotReferenced { pfn: q }));
        // A frame referenced and dropped while its owner keeps it stays.
        a.get_ref(q).unwrap();
        assert_eq!(a.put_ref(q), Ok(false));
        assert!(a.is_allocated(q));
    }

    #[test]
    fn a_frame_allocated_again_starts_with_no_references() {
        let mut t = table(16);
        let mut a = FrameAllocator::new(&mut t, 0);
        a.add_range(Range::new(0, 16 * 4096));
        let p = a.alloc(0).unwrap();
        a.get_ref(p).unwrap();
        a.release_referenced(p, 1).unwrap();
        assert_eq!(a.put_ref(p), Ok(true));
        // The block comes back (merged, then split again) clean.
        let all: Vec<u64> = (0..16).filter_map(|_| a.alloc(0)).collect();
        assert_eq!(all.len(), 16);
        assert!(all.iter().all(|&f| a.refs(f) == 0));
        assert!(a.get_ref(99).is_err());
    }
}
