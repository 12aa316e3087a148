//! Sets of physical address ranges and the normalisation of a firmware
//! memory map into the RAM the hypervisor may hand out.
//!
//! Firmware maps can be unsorted, overlap (sometimes with different types),
//! contain zero-length entries and reach far above 4 GiB. The rule here is
//! conservative: a byte is usable only if some entry says RAM and no entry
//! says anything else, and it is not in a reservation (the image, the boot
//! information, modules, ACPI tables, the first MiB). Running out of room in
//! a fixed-size set can only ever lose usable memory, never make reserved
//! memory usable.

use core::fmt;

pub const PAGE_SIZE: u64 = 4096;
/// The start of the last page of the address space.
const LAST_PAGE: u64 = !(PAGE_SIZE - 1);

/// A half-open physical range `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    /// `[start, start + len)`, clamped at the top of the address space.
    pub const fn from_len(start: u64, len: u64) -> Range {
        Range { start, end: start.saturating_add(len) }
    }

    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub const fn overlaps(&self, o: &Range) -> bool {
        self.start < o.end && o.start < self.end
    }

    pub const fn contains_range(&self, o: &Range) -> bool {
        self.start <= o.start && o.end <= self.end
    }

    /// The whole pages inside this range.
    pub const fn pages_inside(&self) -> Range {
        let start = match self.start.checked_add(PAGE_SIZE - 1) {
            Some(s) => s & !(PAGE_SIZE - 1),
            None => LAST_PAGE,
        };
        let end = self.end & !(PAGE_SIZE - 1);
        Range { start, end }
    }

    /// The pages this range touches.
    pub const fn pages_around(&self) -> Range {
        let start = self.start & !(PAGE_SIZE - 1);
        let end = match self.end.checked_add(PAGE_SIZE - 1) {
            Some(e) => e & !(PAGE_SIZE - 1),
            None => LAST_PAGE,
        };
        Range { start, end }
    }
}

impl fmt::Debug for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

/// The set was full and some usable memory had to be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A sorted set of disjoint, non-adjacent ranges with a fixed capacity (it is
/// used before the heap exists).
#[derive(Clone)]
pub struct RangeSet<const N: usize> {
    ranges: [Range; N],
    len: usize,
}

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for RangeSet<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<const N: usize> RangeSet<N> {
    pub const fn new() -> Self {
        RangeSet { ranges: [Range::new(0, 0); N], len: 0 }
    }

    pub fn iter(&self) -> impl Iterator<Item = Range> + '_ {
        self.ranges[..self.len].iter().copied()
    }

    pub fn as_slice(&self) -> &[Range] {
        &self.ranges[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn total(&self) -> u64 {
        self.iter().map(|r| r.len()).sum()
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.iter().any(|r| r.start <= addr && addr < r.end)
    }

    pub fn contains_range(&self, range: Range) -> bool {
        self.iter().any(|r| r.contains_range(&range))
    }

    fn insert_at(&mut self, i: usize, r: Range) -> Result<(), Overflow> {
        if self.len == N {
            return Err(Overflow);
        }
        self.ranges.copy_within(i..self.len, i + 1);
        self.ranges[i] = r;
        self.len += 1;
        Ok(())
    }

    fn remove_at(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    /// Adds `r` to the set, merging with what it touches. If the set is full
    /// and `r` touches nothing, `r` is not added and `Overflow` is returned.
    pub fn add(&mut self, r: Range) -> Result<(), Overflow> {
        if r.is_empty() {
            return Ok(());
        }
        // First range whose end reaches r.start (adjacent ranges merge).
        let mut i = 0;
        while i < self.len && self.ranges[i].end < r.start {
            i += 1;
        }
        if i == self.len || self.ranges[i].start > r.end {
            return self.insert_at(i, r);
        }
        let mut merged = Range::new(self.ranges[i].start.min(r.start), self.ranges[i].end.max(r.end));
        while i + 1 < self.len && self.ranges[i + 1].start <= merged.end {
            merged.end = merged.end.max(self.ranges[i + 1].end);
            self.remove_at(i + 1);
        }
        self.ranges[i] = merged;
        Ok(())
    }

    /// Removes `r` from the set. If a range must be split and the set is
    /// full, the smaller piece is dropped (never wrongly kept) and `Overflow`
    /// is returned.
    pub fn remove(&mut self, r: Range) -> Result<(), Overflow> {
        if r.is_empty() {
            return Ok(());
        }
        let mut result = Ok(());
        let mut i = 0;
        while i < self.len {
            let cur = self.ranges[i];
            if !cur.overlaps(&r) {
                i += 1;
                continue;
            }
            let left = Range::new(cur.start, r.start.max(cur.start));
            let right = Range::new(r.end.min(cur.end), cur.end);
            match (left.is_empty(), right.is_empty()) {
                (true, true) => self.remove_at(i),
                (false, true) => {
                    self.ranges[i] = left;
                    i += 1;
                }
                (true, false) => {
                    self.ranges[i] = right;
                    i += 1;
                }
                (false, false) => {
                    self.ranges[i] = left;
                    if self.insert_at(i + 1, right).is_err() {
                        if right.len() > left.len() {
                            self.ranges[i] = right;
                        }
                        result = Err(Overflow);
                    }
                    i += 2;
                }
            }
        }
        result
    }

    /// Keeps only the whole pages of every range.
    pub fn trim_to_pages(&mut self) {
        let mut i = 0;
        while i < self.len {
            let p = self.ranges[i].pages_inside();
            if p.is_empty() {
                self.remove_at(i);
            } else {
                self.ranges[i] = p;
                i += 1;
            }
        }
    }

    /// Takes `pages` contiguous pages aligned to `align` bytes from the highest
    /// range that has them, at or below `below`, and removes them from the
    /// set.
    pub fn take_top(&mut self, pages: u64, align: u64, below: u64) -> Option<u64> {
        let size = pages.checked_mul(PAGE_SIZE)?;
        let align = align.max(PAGE_SIZE);
        for i in (0..self.len).rev() {
            let r = self.ranges[i];
            let end = r.end.min(below);
            if end <= r.start || end - r.start < size {
                continue;
            }
            let start = (end - size) & !(align - 1);
            if start < r.start {
                continue;
            }
            // Removing a range at the top or an aligned piece inside may split;
            // a split that cannot be stored drops memory, which is safe.
            let _ = self.remove(Range::new(start, start + size));
            return Some(start);
        }
        None
    }
}

/// What a memory-map entry says a range is. Types follow E820 / Multiboot2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    Ram,
    AcpiReclaimable,
    AcpiNvs,
    Reserved,
    Defective,
    /// Persistent memory and anything else we do not know.
    Other(u32),
}

impl MemoryKind {
    /// From an E820 / Multiboot2 memory-map type.
    pub fn from_e820(t: u32) -> MemoryKind {
        match t {
            1 => MemoryKind::Ram,
            2 => MemoryKind::Reserved,
            3 => MemoryKind::AcpiReclaimable,
            4 => MemoryKind::AcpiNvs,
            5 => MemoryKind::Defective,
            t => MemoryKind::Other(t),
        }
    }

    /// From a UEFI memory type, as seen after ExitBootServices (GRUB exits
    /// boot services before entering a Multiboot2 kernel that did not ask to
    /// keep them).
    pub fn from_efi(t: u32) -> MemoryKind {
        match t {
            // Loader code/data, boot-services code/data, conventional.
            1..=4 | 7 => MemoryKind::Ram,
            9 => MemoryKind::AcpiReclaimable,
            10 => MemoryKind::AcpiNvs,
            8 => MemoryKind::Defective,
            // Reserved, runtime services, MMIO, PAL code, persistent, ...
            0 | 5 | 6 | 11 | 12 | 13 => MemoryKind::Reserved,
            t => MemoryKind::Other(t),
        }
    }

    /// Memory (as opposed to a hole or device space): mapped write-back.
    pub fn is_memory(self) -> bool {
        matches!(self, MemoryKind::Ram | MemoryKind::AcpiReclaimable | MemoryKind::AcpiNvs)
    }

    /// The type number as the memory map gave it (E820 numbering).
    pub fn code(self) -> u32 {
        match self {
            MemoryKind::Ram => 1,
            MemoryKind::Reserved => 2,
            MemoryKind::AcpiReclaimable => 3,
            MemoryKind::AcpiNvs => 4,
            MemoryKind::Defective => 5,
            MemoryKind::Other(t) => t,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MemoryKind::Ram => "RAM",
            MemoryKind::AcpiReclaimable => "ACPI data",
            MemoryKind::AcpiNvs => "ACPI NVS",
            MemoryKind::Reserved => "reserved",
            MemoryKind::Defective => "defective",
            MemoryKind::Other(_) => "other",
        }
    }
}

/// One memory-map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    pub range: Range,
    pub kind: MemoryKind,
}

/// Everything below 1 MiB stays with firmware and real-mode trampolines.
pub const LOW_MEMORY_END: u64 = 1 << 20;

/// Usable RAM from a firmware map: RAM entries minus every non-RAM entry,
/// minus `reserved`, minus the first MiB, minus anything at or above
/// `mem_limit`, cut to whole pages. Returns whether anything had to be
/// dropped for lack of room.
pub fn usable_ram<const N: usize>(
    map: &[MemoryRegion],
    reserved: &[Range],
    mem_limit: Option<u64>,
    out: &mut RangeSet<N>,
) -> Result<(), Overflow> {
    let mut result = Ok(());
    let mut note = |r: Result<(), Overflow>| {
        if r.is_err() {
            result = Err(Overflow);
        }
    };
    for e in map.iter().filter(|e| e.kind == MemoryKind::Ram) {
        note(out.add(e.range));
    }
    for e in map.iter().filter(|e| e.kind != MemoryKind::Ram) {
        note(out.remove(e.range.pages_around()));
    }
    for r in reserved {
        note(out.remove(r.pages_around()));
    }
    note(out.remove(Range::new(0, LOW_MEMORY_END)));
    if let Some(limit) = mem_limit {
        note(out.remove(Range::new(limit, u64::MAX)));
    }
    out.trim_to_pages();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn ram(start: u64, len: u64) -> MemoryRegion {
        MemoryRegion { range: Range::from_len(start, len), kind: MemoryKind::Ram }
    }
    fn resv(start: u64, len: u64) -> MemoryRegion {
        MemoryRegion { range: Range::from_len(start, len), kind: MemoryKind::Reserved }
    }
    fn set<const N: usize>(s: &RangeSet<N>) -> Vec<(u64, u64)> {
        s.iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn add_merges_overlapping_and_adjacent() {
        let mut s = RangeSet::<8>::new();
        s.add(Range::new(10, 20)).unwrap();
        s.add(Range::new(30, 40)).unwrap();
        s.add(Range::new(20, 25)).unwrap(); // adjacent to the first
        assert_eq!(set(&s), vec![(10, 25), (30, 40)]);
        s.add(Range::new(5, 35)).unwrap(); // swallows both
        assert_eq!(set(&s), vec![(5, 40)]);
        s.add(Range::new(0, 0)).unwrap(); // empty: no-op
        assert_eq!(set(&s), vec![(5, 40)]);
    }

    #[test]
    fn remove_splits_and_trims() {
        let mut s = RangeSet::<8>::new();
        s.add(Range::new(0, 100)).unwrap();
        s.remove(Range::new(10, 20)).unwrap();
        s.remove(Range::new(90, 200)).unwrap();
        s.remove(Range::new(0, 5)).unwrap();
        assert_eq!(set(&s), vec![(5, 10), (20, 90)]);
        s.remove(Range::new(0, 1000)).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn remove_on_a_full_set_drops_the_smaller_piece() {
        let mut s = RangeSet::<2>::new();
        s.add(Range::new(0, 100)).unwrap();
        s.add(Range::new(200, 300)).unwrap();
        assert_eq!(s.remove(Range::new(10, 20)), Err(Overflow));
        // Never keeps 10..20; keeps the larger piece 20..100.
        assert_eq!(set(&s), vec![(20, 100), (200, 300)]);
    }

    #[test]
    fn add_on_a_full_set_reports_overflow() {
        let mut s = RangeSet::<1>::new();
        s.add(Range::new(0, 10)).unwrap();
        assert_eq!(s.add(Range::new(20, 30)), Err(Overflow));
        assert_eq!(set(&s), vec![(0, 10)]);
        s.add(Range::new(5, 15)).unwrap(); // merging needs no room
        assert_eq!(set(&s), vec![(0, 15)]);
    }

    #[test]
    fn unsorted_overlapping_zero_length_and_high_entries() {
        let map = [
            ram(0x100000000, 4 * GIB), // above 4 GiB, listed first
            ram(0, 640 << 10),         // low memory
            ram(0x100000, 0),          // zero-length
            ram(16 * MIB, 100 * MIB),  // overlaps the next
            ram(MIB, 64 * MIB),
            resv(0xF0000, 0x10000),
            resv(32 * MIB + 123, 10), // unaligned reserved hole inside RAM
            ram(3 * GIB, GIB),        // 3..4 GiB RAM ...
            resv(0xFEC00000, 0x1000), // ... except an overlapping reserved page
        ];
        let mut out = RangeSet::<32>::new();
        usable_ram(&map, &[], None, &mut out).unwrap();
        assert_eq!(
            set(&out),
            vec![(MIB, 32 * MIB), (32 * MIB + 4096, 116 * MIB), (3 * GIB, 0xFEC00000), (0xFEC01000, 8 * GIB),]
        );
    }

    #[test]
    fn reservations_low_memory_and_mem_limit_are_excluded() {
        let map = [ram(0, 512 * MIB), ram(4 * GIB, GIB)];
        let image = Range::from_len(2 * MIB, 3 * MIB + 5);
        let module = Range::from_len(100 * MIB + 7, 1000);
        let mut out = RangeSet::<32>::new();
        usable_ram(&map, &[image, module], Some(4 * GIB + 256 * MIB), &mut out).unwrap();
        assert_eq!(
            set(&out),
            vec![
                (MIB, 2 * MIB),
                (5 * MIB + 4096, 100 * MIB),
                (100 * MIB + 4096, 512 * MIB),
                (4 * GIB, 4 * GIB + 256 * MIB),
            ]
        );
    }

    #[test]
    fn entry_reaching_the_top_of_the_address_space_does_not_overflow() {
        let map = [ram(u64::MAX - 8191, u64::MAX)];
        let mut out = RangeSet::<4>::new();
        usable_ram(&map, &[], None, &mut out).unwrap();
        assert_eq!(set(&out), vec![(u64::MAX - 8191, !4095u64)]);
    }

    #[test]
    fn non_ram_types_win_over_ram() {
        let map = [
            ram(0, GIB),
            MemoryRegion { range: Range::from_len(256 * MIB, MIB), kind: MemoryKind::AcpiReclaimable },
            MemoryRegion { range: Range::from_len(300 * MIB, MIB), kind: MemoryKind::Defective },
            MemoryRegion { range: Range::from_len(400 * MIB, MIB), kind: MemoryKind::Other(7) },
        ];
        let mut out = RangeSet::<32>::new();
        usable_ram(&map, &[], None, &mut out).unwrap();
        assert_eq!(out.total(), GIB - MIB - 3 * MIB);
        assert!(!out.contains(256 * MIB));
        assert!(!out.contains(300 * MIB));
        assert!(!out.contains(400 * MIB));
    }

    #[test]
    fn take_top_is_aligned_bounded_and_removed() {
        let mut s = RangeSet::<8>::new();
        s.add(Range::new(MIB, 10 * MIB)).unwrap();
        s.add(Range::new(5 * GIB, 5 * GIB + 3 * 4096)).unwrap();
        let a = s.take_top(1, 4096, u64::MAX).unwrap();
        assert_eq!(a, 5 * GIB + 2 * 4096);
        let b = s.take_top(4, 2 * MIB, 4 * GIB).unwrap();
        assert_eq!(b, 8 * MIB);
        assert!(!s.contains(b) && !s.contains(a));
        assert_eq!(s.take_top(1793, 4096, u64::MAX), None, "1792 pages are left");
        assert!(s.take_top(1792, 4096, u64::MAX).is_some());
    }

    #[test]
    fn efi_types() {
        assert_eq!(MemoryKind::from_efi(7), MemoryKind::Ram);
        assert_eq!(MemoryKind::from_efi(3), MemoryKind::Ram);
        assert_eq!(MemoryKind::from_efi(5), MemoryKind::Reserved);
        assert_eq!(MemoryKind::from_efi(9), MemoryKind::AcpiReclaimable);
        assert_eq!(MemoryKind::from_efi(10), MemoryKind::AcpiNvs);
        assert_eq!(MemoryKind::from_efi(42), MemoryKind::Other(42));
    }
}
