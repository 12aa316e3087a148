//! Builder for x86-64 4-level page tables: the hypervisor's own address
//! space, and guests' nested page tables (AMD's NPT has the same format;
//! `hvm::npt` gives Intel's EPT its own flags over the same walk).
//!
//! The builder owns no memory: a [`TableMemory`] gives it zeroed table pages
//! and access to them by physical address, so the same code runs on the host
//! in tests (tables in a hash map) and at boot (tables in RAM reached through
//! the direct map).

use alloc::vec::Vec;
use bitflags::bitflags;
use core::fmt;

/// A breach of W^X that [`PageTable::check_wx`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WxFault {
    /// A page mapped writable and executable.
    WritableAndExecutable { virt: u64 },
    /// Frame `phys`, executable at `code`, also mapped writable at `virt`.
    WritableAlias { virt: u64, phys: u64, code: u64 },
}

impl fmt::Display for WxFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WxFault::WritableAndExecutable { virt } => write!(f, "{virt:#x} is mapped writable and executable"),
            WxFault::WritableAlias { virt, phys, code } => {
                write!(f, "frame {phys:#x}, executable at {code:#x}, is also mapped writable at {virt:#x}")
            }
        }
    }
}

bitflags! {
    /// Page-table entry bits (Intel SDM vol. 3 §4.5).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PteFlags: u64 {
        const PRESENT = 1 << 0;
        const WRITABLE = 1 << 1;
        const USER = 1 << 2;
        const WRITE_THROUGH = 1 << 3;
        const CACHE_DISABLE = 1 << 4;
        const ACCESSED = 1 << 5;
        const DIRTY = 1 << 6;
        /// PS: a 2 MiB or 1 GiB leaf in a directory or PDPT entry.
        const HUGE = 1 << 7;
        const GLOBAL = 1 << 8;
        /// Bits 9-11 are ignored by the MMU: p2m code keeps the page type
        /// there.
        const SW0 = 1 << 9;
        const SW1 = 1 << 10;
        const SW2 = 1 << 11;
        const NO_EXECUTE = 1 << 63;
    }
}

impl PteFlags {
    /// Strong uncacheable with the power-on PAT (PAT index 3).
    pub const UNCACHED: PteFlags = PteFlags::WRITE_THROUGH.union(PteFlags::CACHE_DISABLE);
}

pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// Level of the table that holds a leaf of this size (1 = page table).
    const fn leaf_level(self) -> usize {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }
}

/// Where table pages come from and how to reach them.
pub trait TableMemory {
    /// A zeroed 4 KiB page for a new table, by physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    /// The table at physical address `phys` (page aligned).
    fn table(&mut self, phys: u64) -> &mut [u64; 512];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Virtual or physical address or length not 4 KiB aligned.
    Unaligned,
    /// Virtual address not canonical, or the range wraps.
    BadAddress,
    /// Something is already mapped at this virtual address.
    AlreadyMapped { virt: u64 },
    /// No memory for a table page.
    OutOfMemory,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Unaligned => f.write_str("address or length not page aligned"),
            MapError::BadAddress => f.write_str("virtual range not canonical"),
            MapError::AlreadyMapped { virt } => write!(f, "{virt:#x} is already mapped"),
            MapError::OutOfMemory => f.write_str("out of memory for page tables"),
        }
    }
}

/// A resolved virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub phys: u64,
    /// Leaf flags, with HUGE removed.
    pub flags: PteFlags,
    pub size: PageSize,
}

pub fn is_canonical(virt: u64) -> bool {
    let top = virt >> 47;
    top == 0 || top == 0x1ffff
}

fn index(virt: u64, level: usize) -> usize {
    ((virt >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

pub struct PageTable<'m, M: TableMemory> {
    root: u64,
    mem: &'m mut M,
    /// Flags of entries that point to lower tables. Permissions are decided
    /// at the leaf, so these are the most permissive the format needs.
    table_flags: PteFlags,
    /// Bits a leaf may carry (NO_EXECUTE is dropped when the CPU has no NX).
    leaf_mask: PteFlags,
}

impl<'m, M: TableMemory> PageTable<'m, M> {
    /// A new, empty address space.
    pub fn new(mem: &'m mut M, table_flags: PteFlags, leaf_mask: PteFlags) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
        Ok(PageTable { root, mem, table_flags, leaf_mask })
    }

    /// An existing address space rooted at `root`.
    pub fn from_root(root: u64, mem: &'m mut M, table_flags: PteFlags, leaf_mask: PteFlags) -> Self {
        PageTable { root, mem, table_flags, leaf_mask }
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `[virt, virt + len)` to `[phys, phys + len)` with `flags`
    /// (PRESENT is implied), using pages up to `largest` where both
    /// addresses are aligned for them. Nothing may be mapped there yet.
    pub fn map(&mut self, virt: u64, phys: u64, len: u64, flags: PteFlags, largest: PageSize) -> Result<(), MapError> {
        if (virt | phys | len) & 0xfff != 0 {
            return Err(MapError::Unaligned);
        }
        let end = virt.checked_add(len).ok_or(MapError::BadAddress)?;
        phys.checked_add(len).ok_or(MapError::BadAddress)?;
        if len > 0 && (!is_canonical(virt) || !is_canonical(end - 1) || (virt >> 63) != ((end - 1) >> 63)) {
            return Err(MapError::BadAddress);
        }
        let leaf = (flags | PteFlags::PRESENT) & self.leaf_mask & !PteFlags::HUGE;
        let mut off = 0;
        while off < len {
            let v = virt + off;
            let p = phys + off;
            let size = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
                .into_iter()
                .find(|s| *s <= largest && (v | p).is_multiple_of(s.bytes()) && len - off >= s.bytes())
                .unwrap_or(PageSize::Size4K);
            self.map_one(v, p, size, leaf)?;
            off += size.bytes();
        }
        Ok(())
    }

    fn map_one(&mut self, virt: u64, phys: u64, size: PageSize, leaf: PteFlags) -> Result<(), MapError> {
        let mut table = self.root;
        let leaf_level = size.leaf_level();
        for level in (leaf_level + 1..=4).rev() {
            let i = index(virt, level);
            let entry = self.mem.table(table)[i];
            if entry & PteFlags::PRESENT.bits() == 0 {
                let new = self.mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                self.mem.table(table)[i] = new | (self.table_flags | PteFlags::PRESENT).bits();
                table = new;
            } else if entry & PteFlags::HUGE.bits() != 0 {
                return Err(MapError::AlreadyMapped { virt });
            } else {
                table = entry & ADDR_MASK;
            }
        }
        let i = index(virt, leaf_level);
        let slot = &mut self.mem.table(table)[i];
        if *slot & PteFlags::PRESENT.bits() != 0 {
            return Err(MapError::AlreadyMapped { virt });
        }
        let huge = if size == PageSize::Size4K { PteFlags::empty() } else { PteFlags::HUGE };
        *slot = phys | (leaf | huge).bits();
        Ok(())
    }

    /// Removes the 4 KiB mapping at `virt`, returning what it pointed to.
    /// Large pages are not split: unmapping inside one returns `None`.
    pub fn unmap_4k(&mut self, virt: u64) -> Option<u64> {
        let mut table = self.root;
        for level in (2..=4).rev() {
            let entry = self.mem.table(table)[index(virt, level)];
            if entry & PteFlags::PRESENT.bits() == 0 || entry & PteFlags::HUGE.bits() != 0 {
                return None;
            }
            table = entry & ADDR_MASK;
        }
        let slot = &mut self.mem.table(table)[index(virt, 1)];
        if *slot & PteFlags::PRESENT.bits() == 0 {
            return None;
        }
        let phys = *slot & ADDR_MASK;
        *slot = 0;
        Some(phys)
    }

    /// Maps the 4 KiB page at `virt` to `phys` with `flags`, replacing
    /// whatever was there. A large page covering `virt` is first split into
    /// smaller ones that keep its mapping. Returns the previous 4 KiB entry
    /// (0 if none).
    pub fn remap_4k(&mut self, virt: u64, phys: u64, flags: PteFlags) -> Result<u64, MapError> {
        if phys & 0xfff != 0 {
            return Err(MapError::Unaligned);
        }
        let leaf = phys | ((flags | PteFlags::PRESENT) & self.leaf_mask & !PteFlags::HUGE).bits();
        self.set_4k_entry(virt, leaf)
    }

    /// Stores the raw 4 KiB entry `entry` for `virt` (0 unmaps), splitting a
    /// large page that covers it. Returns the previous entry.
    pub fn set_4k_entry(&mut self, virt: u64, entry: u64) -> Result<u64, MapError> {
        if virt & 0xfff != 0 {
            return Err(MapError::Unaligned);
        }
        if !is_canonical(virt) {
            return Err(MapError::BadAddress);
        }
        let mut table = self.root;
        for level in (2..=4).rev() {
            let i = index(virt, level);
            let entry = self.mem.table(table)[i];
            if entry & PteFlags::PRESENT.bits() == 0 {
                let new = self.mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                self.mem.table(table)[i] = new | (self.table_flags | PteFlags::PRESENT).bits();
                table = new;
            } else if level <= 3 && entry & PteFlags::HUGE.bits() != 0 {
                table = self.split(table, i, level)?;
            } else {
                table = entry & ADDR_MASK;
            }
        }
        let slot = &mut self.mem.table(table)[index(virt, 1)];
        let old = *slot;
        *slot = entry;
        Ok(old)
    }

    /// Replaces the large leaf at `table[i]` (at `level`, 2 or 3) by a table
    /// of next-level leaves with the same mapping and flags.
    fn split(&mut self, table: u64, i: usize, level: usize) -> Result<u64, MapError> {
        let entry = self.mem.table(table)[i];
        let child_size: u64 = 1 << (12 + 9 * (level as u64 - 2));
        let base = entry & ADDR_MASK & !((child_size << 9) - 1);
        // Large-page flags; the PAT bit moves from bit 12 to bit 7 for 4 KiB.
        let mut flags = entry & !ADDR_MASK & !PteFlags::HUGE.bits();
        let pat_large = entry & (1 << 12) != 0;
        let new = self.mem.alloc_table().ok_or(MapError::OutOfMemory)?;
        let child_is_large = level == 3;
        if child_is_large {
            flags |= PteFlags::HUGE.bits();
            if pat_large {
                flags |= 1 << 12;
            }
        } else if pat_large {
            flags |= 1 << 7;
        }
        let t = self.mem.table(new);
        for (j, e) in t.iter_mut().enumerate() {
            *e = (base + j as u64 * child_size) | flags;
        }
        self.mem.table(table)[i] = new | (self.table_flags | PteFlags::PRESENT).bits();
        Ok(new)
    }

    /// Calls `f(virt, entry, size)` for every present leaf, in address order
    /// of the lower half (the walk covers PML4 slots 0..256).
    pub fn for_each_leaf(&mut self, f: &mut dyn FnMut(u64, u64, PageSize)) {
        self.walk_leaves(self.root, 4, 0, f);
    }

    fn walk_leaves(&mut self, table: u64, level: usize, base: u64, f: &mut dyn FnMut(u64, u64, PageSize)) {
        let slots = if level == 4 { 256 } else { 512 };
        // One look-up of the table page, not one per entry (the boot-time
        // W^X check walks every leaf twice).
        let entries: *const [u64; 512] = self.mem.table(table);
        for i in 0..slots {
            // SAFETY: `entries` is this table page, which the walk only
            // reads and nothing frees or moves while it runs (the caller
            // holds the table set).
            let entry = unsafe { (*entries)[i] };
            if entry & PteFlags::PRESENT.bits() == 0 {
                continue;
            }
            let virt = base + ((i as u64) << (12 + 9 * (level as u64 - 1)));
            if level == 1 {
                f(virt, entry, PageSize::Size4K);
            } else if level <= 3 && entry & PteFlags::HUGE.bits() != 0 {
                f(virt, entry, if level == 2 { PageSize::Size2M } else { PageSize::Size1G });
            } else {
                self.walk_leaves(entry & ADDR_MASK, level - 1, virt, f);
            }
        }
    }

    /// Checks that no mapping of the whole address space is both writable
    /// and executable, and that no executable frame is also mapped
    /// writable somewhere else (an alias through a direct map, say):
    /// W^X for code. Returns the bytes of executable memory found.
    pub fn check_wx(&mut self) -> Result<u64, WxFault> {
        // Executable frames as merged physical ranges, with where each is
        // mapped executable.
        let mut exec: Vec<(u64, u64, u64)> = Vec::new();
        let mut fault = None;
        self.walk_all(&mut |virt, e, size| {
            let (w, x) = (e & PteFlags::WRITABLE.bits() != 0, e & PteFlags::NO_EXECUTE.bits() == 0);
            if w && x && fault.is_none() {
                fault = Some(WxFault::WritableAndExecutable { virt });
            }
            if x {
                let phys = e & ADDR_MASK & !(size.bytes() - 1);
                match exec.last_mut() {
                    Some(last) if last.1 == phys => last.1 += size.bytes(),
                    _ => exec.push((phys, phys + size.bytes(), virt)),
                }
            }
        });
        if let Some(f) = fault {
            return Err(f);
        }
        exec.sort_unstable();
        self.walk_all(&mut |virt, e, size| {
            if e & PteFlags::WRITABLE.bits() == 0 || fault.is_some() {
                return;
            }
            let phys = e & ADDR_MASK & !(size.bytes() - 1);
            let end = phys + size.bytes();
            let i = exec.partition_point(|r| r.1 <= phys);
            if let Some(&(start, _, code)) = exec.get(i).filter(|r| r.0 < end) {
                fault = Some(WxFault::WritableAlias { virt, phys: phys.max(start), code });
            }
        });
        match fault {
            Some(f) => Err(f),
            None => Ok(exec.iter().map(|r| r.1 - r.0).sum()),
        }
    }

    /// Every present leaf of the whole address space, upper half included
    /// (virtual addresses sign-extended).
    fn walk_all(&mut self, f: &mut dyn FnMut(u64, u64, PageSize)) {
        for i in 0..512u64 {
            let entry = self.mem.table(self.root)[i as usize];
            if entry & PteFlags::PRESENT.bits() == 0 {
                continue;
            }
            let base = if i >= 256 { 0xffff_0000_0000_0000 | (i << 39) } else { i << 39 };
            self.walk_leaves(entry & ADDR_MASK, 3, base, f);
        }
    }

    /// Calls `free(phys)` for every table page, the root last. The tables
    /// must not be used afterwards.
    pub fn free_tables(&mut self, free: &mut dyn FnMut(u64)) {
        self.free_level(self.root, 4, free);
    }

    fn free_level(&mut self, table: u64, level: usize, free: &mut dyn FnMut(u64)) {
        if level > 1 {
            for i in 0..512 {
                let entry = self.mem.table(table)[i];
                if entry & PteFlags::PRESENT.bits() != 0 && !(level <= 3 && entry & PteFlags::HUGE.bits() != 0) {
                    self.free_level(entry & ADDR_MASK, level - 1, free);
                }
            }
        }
        free(table);
    }

    /// Walks the tables for `virt`.
    pub fn translate(&mut self, virt: u64) -> Option<Translation> {
        if !is_canonical(virt) {
            return None;
        }
        let mut table = self.root;
        for level in (1..=4).rev() {
            let entry = self.mem.table(table)[index(virt, level)];
            if entry & PteFlags::PRESENT.bits() == 0 {
                return None;
            }
            let is_leaf = level == 1 || (level <= 3 && entry & PteFlags::HUGE.bits() != 0);
            if is_leaf {
                let size = match level {
                    1 => PageSize::Size4K,
                    2 => PageSize::Size2M,
                    _ => PageSize::Size1G,
                };
                let base = entry & ADDR_MASK & !(size.bytes() - 1);
                let flags = PteFlags::from_bits_retain(entry & !ADDR_MASK) - PteFlags::HUGE;
                return Some(Translation { phys: base + (virt & (size.bytes() - 1)), flags, size });
            }
            table = entry & ADDR_MASK;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct HostTables {
        pages: HashMap<u64, Box<[u64; 512]>>,
        next: u64,
        limit: Option<usize>,
    }

    impl TableMemory for HostTables {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.limit.is_some_and(|l| self.pages.len() >= l) {
                return None;
            }
            self.next += 0x1000;
            let phys = 0x7000_0000 + self.next;
            self.pages.insert(phys, Box::new([0; 512]));
            Some(phys)
        }
        fn table(&mut self, phys: u64) -> &mut [u64; 512] {
            self.pages.get_mut(&phys).expect("not a table page")
        }
    }

    const K: u64 = 1 << 10;
    const M: u64 = 1 << 20;
    const G: u64 = 1 << 30;
    const RW: PteFlags = PteFlags::WRITABLE;

    fn kernel_pt(mem: &mut HostTables) -> PageTable<'_, HostTables> {
        PageTable::new(mem, PteFlags::WRITABLE, PteFlags::all()).unwrap()
    }

    #[test]
    fn picks_the_largest_pages_alignment_allows() {
        let mut mem = HostTables::default();
        let mut pt = kernel_pt(&mut mem);
        // 4K at the start, then 2M pages up to 1G, then a 1G page, then 2M, 4K.
        let virt = 0xffff_8000_0000_0000 + G - 2 * M - 8 * K;
        let phys = G - 2 * M - 8 * K;
        let len = 8 * K + 2 * M + G + 2 * M + 4 * K;
        pt.map(virt, phys, len, RW, PageSize::Size1G).unwrap();
        let t = |pt: &mut PageTable<'_, HostTables>, off: u64| pt.translate(virt + off).unwrap();
        assert_eq!(t(&mut pt, 0).size, PageSize::Size4K);
        assert_eq!(t(&mut pt, 8 * K).size, PageSize::Size2M);
        assert_eq!(t(&mut pt, 8 * K + 2 * M).size, PageSize::Size1G);
        assert_eq!(t(&mut pt, 8 * K + 2 * M + G).size, PageSize::Size2M);
        assert_eq!(t(&mut pt, 8 * K + 4 * M + G).size, PageSize::Size4K);
        for off in [0, 5 * K + 17, 8 * K, 3 * M + 123, G + 3 * M, len - 1] {
            assert_eq!(t(&mut pt, off).phys, phys + off, "offset {off:#x}");
        }
        assert_eq!(pt.translate(virt + len), None);
        assert_eq!(pt.translate(virt - 1), None);
    }

    #[test]
    fn largest_limits_page_size() {
        let mut mem = HostTables::default();
        let mut pt = kernel_pt(&mut mem);
        pt.map(0, 0, 4 * M, RW, PageSize::Size4K).unwrap();
        assert_eq!(pt.translate(2 * M).unwrap().size, PageSize::Size4K);
        // 2 MiB of 4K pages needs one PT per 2 MiB plus the PD/PDPT/PML4.
        assert_eq!(mem.pages.len(), 1 + 1 + 1 + 2);
    }

    #[test]
    fn misaligned_physical_address_forces_small_pages() {
        let mut mem = HostTables::default();
        let mut pt = kernel_pt(&mut mem);
        pt.map(0x4000_0000, 0x1000, 4 * M, RW, PageSize::Size1G).unwrap();
        assert_eq!(pt.translate(0x4000_0000).unwrap().size, PageSize::Size4K);
        assert_eq!(pt.translate(0x4000_0000 + 3 * M).unwrap().phys, 0x1000 + 3 * M);
    }

    #[test]
    fn flags_are_kept_and_masked() {
        let mut mem = HostTables::default();
        let mut pt = PageTable::new(&mut mem, PteFlags::WRITABLE, PteFlags::all() - PteFlags::NO_EXECUTE).unwrap();
        pt.map(0x1000, 0x5000, 0x1000, PteFlags::NO_EXECUTE | PteFlags::GLOBAL | PteFlags::UNCACHED, PageSize::Size4K)
            .unwrap();
        let t = pt.translate(0x1000).unwrap();
        assert!(t.flags.contains(PteFlags::PRESENT | PteFlags::GLOBAL | PteFlags::UNCACHED));
        assert!(!t.flags.contains(PteFlags::NO_EXECUTE), "NX is masked when the CPU lacks it");
        assert!(!t.flags.contains(PteFlags::WRITABLE));
    }

    #[test]
    fn refuses_overlaps_unaligned_and_non_canonical() {
        let mut mem = HostTables::default();
        let mut pt = kernel_pt(&mut mem);
        pt.map(0x20_0000, 0, 2 * M, RW, PageSize::Size2M).unwrap();
        assert_eq!(pt.map(0x20_1000, 0, 4 * K, RW, PageSize::Size4K), Err(MapError::AlreadyMapped { virt: 0x20_1000 }));
        pt.map(0x40_0000, 0, 4 * K, RW, PageSize::Size4K).unwrap();
        assert_eq!(pt.map(0x40_0000, 0, 4 * K, RW, PageSize::Size4K), Err(MapError::AlreadyMapped { virt: 0x40_0000 }));
        assert_eq!(pt.map(0x123, 0, 4 * K, RW, PageSize::Size4K), Err(MapError::Unaligned));
        assert_eq!(pt.map(0, 0x10, 4 * K, RW, PageSize::Size4K), Err(MapError::Unaligned));
        assert_eq!(pt.map(0, 0, 100, RW, PageSize::Size4K), Err(MapError::Unaligned));
        assert_eq!(pt.map(0x0000_8000_0000_0000, 0, 4 * K, RW, PageSize::Size4K), Err(MapError::BadAddress));
        assert_eq!(pt.map(0x0000_7fff_ffff_f000, 0, 8 * K, RW, PageSize::Size4K), Err(MapError::BadAddress));
        assert_eq!(pt.map(0xffff_ffff_ffff_f000, 0, 8 * K, RW, PageSize::Size4K), Err(MapError::BadAddress));
        assert_eq!(pt.translate(0x0000_8000_0000_0000), None);
    }

    #[test]
    fn physical_memory_above_4_gib() {
        let mut mem = HostTables::default();
        let mut pt = kernel_pt(&mut mem);
        let phys = 0x12_3400_0000u64; // 72.8 GiB, 2 MiB aligned
        pt.map(0xffff_8000_0000_0000 + phys, phys, 6 * M, RW, PageSize::Size1G).unwrap();
        let t = pt.translate(0xffff_8000_0000_0000 + phys + 5 * M + 7).unwrap();
        assert_eq!(t.phys, phys + 5 * M + 7);
        assert_eq!(t.size, PageSize::Size2M);
    }

    #[test]
    fn out_of_table_memory_is_an_error_not_a_panic() {
        let mut mem = HostTables { limit: Some(3), ..Default::default() };
        let mut pt = kernel_pt(&mut mem);
        assert_eq!(pt.map(0, 0, 4 * K, RW, PageSize::Size4K), Err(MapError::OutOfMemory));
    }

    #[test]
    fn remap_inside_a_large_page_splits_it_and_keeps_the_rest() {
        let mut mem = HostTables::default();
        let mut pt = kernel_pt(&mut mem);
        let sw = PteFlags::from_bits_retain(1 << 9); // a software bit survives
        pt.map(0, 0x4000_0000, 2 * G, RW | sw, PageSize::Size1G).unwrap();
        let old = pt.remap_4k(0x12_3000, 0x9999_9000, PteFlags::USER).unwrap();
        assert_eq!(old & ADDR_MASK, 0x4012_3000, "the old mapping of that page is returned");
        assert_eq!(pt.translate(0x12_3000).unwrap().phys, 0x9999_9000);
        assert!(pt.translate(0x12_3000).unwrap().flags.contains(PteFlags::USER));
        for v in [0, 0x12_2fff, 0x12_4000, 0x20_0000, G - 1, G, 2 * G - 1] {
            let t = pt.translate(v).unwrap();
            assert_eq!(t.phys, 0x4000_0000 + v, "virt {v:#x}");
            assert!(t.flags.contains(sw | RW));
        }
        assert_eq!(pt.translate(0x12_3000).unwrap().size, PageSize::Size4K);
        assert_eq!(pt.translate(0x40_0000).unwrap().size, PageSize::Size2M);
        assert_eq!(pt.translate(G).unwrap().size, PageSize::Size1G);
    }

    #[test]
    fn leaves_and_tables_are_all_visited() {
        let mut mem = HostTables::default();
        let mut pt = kernel_pt(&mut mem);
        pt.map(0, 0, 4 * M + 8 * K, RW, PageSize::Size2M).unwrap();
        pt.map(G, 0x8000_0000, G, RW, PageSize::Size1G).unwrap();
        let mut leaves = Vec::new();
        pt.for_each_leaf(&mut |v, e, s| leaves.push((v, e & ADDR_MASK, s)));
        assert_eq!(
            leaves,
            vec![
                (0, 0, PageSize::Size2M),
                (2 * M, 2 * M, PageSize::Size2M),
                (4 * M, 4 * M, PageSize::Size4K),
                (4 * M + 4 * K, 4 * M + 4 * K, PageSize::Size4K),
                (G, 0x8000_0000, PageSize::Size1G),
            ]
        );
        let mut freed = Vec::new();
        pt.free_tables(&mut |p| freed.push(p));
        let root = pt.root();
        assert_eq!(freed.len(), mem.pages.len(), "every table page is freed once");
        assert_eq!(*freed.last().unwrap(), root, "the root goes last");
    }

    #[test]
    fn wx_check_finds_writable_code_and_writable_aliases_of_code() {
        const TEXT: u64 = 0xffff_ffff_8020_0000;
        const DIRECT: u64 = 0xffff_8000_0000_0000;
        let nx = PteFlags::NO_EXECUTE;
        let clean = |t: &mut HostTables| {
            let mut pt = PageTable::new(t, RW, PteFlags::all()).unwrap();
            // Code R-X, data RW-, a direct map RW- of everything but the
            // code's frames, and the code's frames read-only there.
            pt.map(TEXT, 0x20_0000, 16 * K, PteFlags::empty(), PageSize::Size4K).unwrap();
            pt.map(TEXT + 16 * K, 0x20_4000, 8 * K, RW | nx, PageSize::Size4K).unwrap();
            pt.map(DIRECT, 0, 2 * M, RW | nx, PageSize::Size2M).unwrap();
            pt.map(DIRECT + 2 * M, 2 * M, 16 * K, nx, PageSize::Size4K).unwrap();
            pt.map(DIRECT + 2 * M + 16 * K, 2 * M + 16 * K, 2 * M - 16 * K, RW | nx, PageSize::Size4K).unwrap();
            pt.root()
        };
        let mut t = HostTables::default();
        let root = clean(&mut t);
        assert_eq!(PageTable::from_root(root, &mut t, RW, PteFlags::all()).check_wx(), Ok(16 * K));
        // The code's frames writable through the direct map.
        let mut pt = PageTable::from_root(root, &mut t, RW, PteFlags::all());
        pt.remap_4k(DIRECT + 2 * M + 4 * K, 2 * M + 4 * K, RW | nx).unwrap();
        assert_eq!(
            pt.check_wx(),
            Err(WxFault::WritableAlias { virt: DIRECT + 2 * M + 4 * K, phys: 2 * M + 4 * K, code: TEXT })
        );
        // A page writable and executable.
        let mut t = HostTables::default();
        let root = clean(&mut t);
        let mut pt = PageTable::from_root(root, &mut t, RW, PteFlags::all());
        pt.map(0x1000_0000, 0x900_0000, 4 * K, RW, PageSize::Size4K).unwrap();
        assert_eq!(pt.check_wx(), Err(WxFault::WritableAndExecutable { virt: 0x1000_0000 }));
    }

    #[test]
    fn unmap_4k() {
        let mut mem = HostTables::default();
        let mut pt = kernel_pt(&mut mem);
        pt.map(0x1000, 0x9000, 8 * K, RW, PageSize::Size4K).unwrap();
        assert_eq!(pt.unmap_4k(0x1000), Some(0x9000));
        assert_eq!(pt.translate(0x1000), None);
        assert_eq!(pt.translate(0x2000).unwrap().phys, 0xa000);
        assert_eq!(pt.unmap_4k(0x1000), None);
        pt.map(0x1000, 0x3000, 4 * K, RW, PageSize::Size4K).unwrap();
        pt.map(0x40_0000, 0x40_0000, 2 * M, RW, PageSize::Size2M).unwrap();
        assert_eq!(pt.unmap_4k(0x40_1000), None, "large pages are not split");
    }
}
