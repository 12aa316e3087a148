//! Boot-time construction of the hypervisor's memory: which RAM is free,
//! the hypervisor's own page tables, the frame table and the heap.
//!
//! Runs on the boot page tables (identity map of the first 4 GiB, image at
//! KERNEL_VBASE). Page-table pages for the new tables are therefore taken
//! below 4 GiB, where they can be written before the switch.

use super::frame::{FrameAllocator, FrameInfo};
use super::layout::*;
use super::phys::{DIRECT_MAPPED, FRAMES, HOST_MEMORY, KERNEL_PT, LEAF_MASK, PAGING_READY};
use super::ranges::{LOW_MEMORY_END, MemoryRegion, PAGE_SIZE, Range, RangeSet, usable_ram};
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::page_table::{MapError, PageSize, PageTable, PteFlags, TableMemory};
use core::fmt;
use core::sync::atomic::Ordering;

unsafe extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __boot_stack_guard: u8;
    static __boot_stack_bottom: u8;
    static __boot_stack_top: u8;
    static __image_end: u8;
}

macro_rules! sym {
    ($s:ident) => {
        // A linker-defined symbol: only its address means anything.
        (&raw const $s) as u64
    };
}

/// The image's physical extent and how far GRUB moved it.
#[derive(Debug, Clone, Copy)]
pub struct Image {
    pub delta: u64,
}

impl Image {
    pub fn phys_range(&self) -> Range {
        Range::new(IMAGE_PHYS_LINK + self.delta, sym!(__image_end) - KERNEL_VBASE + self.delta)
    }

    pub fn virt_to_phys(&self, v: u64) -> u64 {
        v - KERNEL_VBASE + self.delta
    }

    /// The boot stack, for stack walks.
    pub fn boot_stack() -> (u64, u64) {
        (sym!(__boot_stack_bottom), sym!(__boot_stack_top))
    }
}

#[derive(Debug, Clone, Copy)]
pub enum MemoryError {
    NoMemoryMap,
    TooLittle { usable: u64, needed: u64 },
    Tables(MapError),
    NoRoomBelow4G,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::NoMemoryMap => f.write_str("the boot loader gave no memory map"),
            MemoryError::TooLittle { usable, needed } => write!(
                f,
                "not enough memory: {} KiB of usable RAM, the hypervisor needs at least {} KiB",
                usable >> 10,
                needed >> 10
            ),
            MemoryError::Tables(e) => write!(f, "cannot build the hypervisor page tables: {e}"),
            MemoryError::NoRoomBelow4G => f.write_str("no free RAM below 4 GiB for page tables"),
        }
    }
}

impl From<MapError> for MemoryError {
    fn from(e: MapError) -> Self {
        MemoryError::Tables(e)
    }
}

/// What boot did with memory, for the boot report.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryReport {
    pub ram_in_map: u64,
    pub usable: u64,
    pub image: u64,
    pub page_tables: u64,
    pub frame_table: u64,
    pub heap: u64,
    pub free: u64,
    pub highest_usable: u64,
    pub dropped_ranges: bool,
}

const INITIAL_HEAP: u64 = 2 << 20;

/// Table pages for the new tables while the boot tables are live: taken
/// from the top of the free RAM below 4 GiB, reached through the identity
/// map.
struct BootTables<'a> {
    free: &'a mut RangeSet<SET>,
    used: u64,
}

impl TableMemory for BootTables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        let phys = self.free.take_top(1, PAGE_SIZE, 4 << 30)?;
        self.used += PAGE_SIZE;
        // SAFETY: the page is free RAM below 4 GiB, identity-mapped by the
        // boot page tables, and now ours alone.
        unsafe { core::ptr::write_bytes(phys as *mut u8, 0, PAGE_SIZE as usize) };
        Some(phys)
    }

    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        // SAFETY: every table page came from alloc_table (below 4 GiB,
        // identity-mapped) and is only reached through this builder.
        unsafe { &mut *(phys as *mut [u64; 512]) }
    }
}

/// Physical memory taken from the free set to back a virtual range.
#[derive(Clone, Copy, Default)]
struct Piece {
    virt: u64,
    phys: u64,
    len: u64,
}

/// Takes RAM for `[virt, virt+len)`: one contiguous 2 MiB-aligned run if
/// there is one, else 2 MiB pieces, else 4 KiB pieces.
fn take_backing(
    free: &mut RangeSet<SET>,
    virt: u64,
    len: u64,
    out: &mut [Piece],
    n: &mut usize,
) -> Result<(), MemoryError> {
    let mut push = |p: Piece, n: &mut usize| {
        if *n == out.len() {
            return Err(MemoryError::Tables(MapError::OutOfMemory));
        }
        out[*n] = p;
        *n += 1;
        Ok(())
    };
    if let Some(phys) = free.take_top(len / PAGE_SIZE, 2 << 20, u64::MAX) {
        return push(Piece { virt, phys, len }, n);
    }
    let mut off = 0;
    while off < len {
        let big = len - off >= (2 << 20);
        let (phys, size) = match big.then(|| free.take_top(512, 2 << 20, u64::MAX)).flatten() {
            Some(p) => (p, 2 << 20),
            None => (free.take_top(1, PAGE_SIZE, u64::MAX).ok_or(MapError::OutOfMemory)?, PAGE_SIZE),
        };
        push(Piece { virt: virt + off, phys, len: size }, n)?;
        off += size;
    }
    Ok(())
}

/// Capacity of the boot-time range sets.
const SET: usize = 256;

/// Builds and switches to the hypervisor's page tables, then sets up the
/// frame allocator and the heap.
pub fn init(
    map: &[MemoryRegion],
    image: Image,
    reserved: &[Range],
    mem_limit: Option<u64>,
) -> Result<MemoryReport, MemoryError> {
    if map.is_empty() {
        return Err(MemoryError::NoMemoryMap);
    }
    let f = cpu::features();
    let mut report = MemoryReport {
        ram_in_map: map.iter().filter(|r| r.kind == super::ranges::MemoryKind::Ram).map(|r| r.range.len()).sum(),
        ..Default::default()
    };

    let mut free = RangeSet::<SET>::new();
    let mut keep = [Range::default(); 80];
    keep[0] = image.phys_range();
    let n = reserved.len().min(keep.len() - 1);
    keep[1..1 + n].copy_from_slice(&reserved[..n]);
    report.dropped_ranges = usable_ram(map, &keep[..1 + n], mem_limit, &mut free).is_err();
    report.usable = free.total();
    report.image = image.phys_range().len();
    if report.usable < MIN_USABLE_MEMORY {
        return Err(MemoryError::TooLittle { usable: report.usable, needed: MIN_USABLE_MEMORY });
    }
    report.highest_usable = free.iter().last().map_or(0, |r| r.end);
    if !free.iter().any(|r| r.start < (4 << 30)) {
        return Err(MemoryError::NoRoomBelow4G);
    }

    // What the direct map covers: every memory-map entry (write-back for
    // memory, uncached for the rest) and the first MiB (uncached).
    let mut wb = RangeSet::<SET>::new();
    let mut uc = RangeSet::<SET>::new();
    for r in map {
        let pages = r.range.pages_around();
        let pages = Range::new(pages.start, pages.end.min(DIRECTMAP_SIZE));
        let _ = if r.kind.is_memory() { wb.add(pages) } else { uc.add(pages) };
    }
    let _ = uc.add(Range::new(0, LOW_MEMORY_END));
    for r in uc.iter() {
        let _ = wb.remove(r);
    }

    let leaf_mask = if f.nx { PteFlags::all() } else { PteFlags::all() - PteFlags::NO_EXECUTE };
    let global = if f.pge { PteFlags::GLOBAL } else { PteFlags::empty() };
    LEAF_MASK.store(leaf_mask.bits(), Ordering::Relaxed);
    let largest = if f.page1g { PageSize::Size1G } else { PageSize::Size2M };

    // RAM for the frame table and the initial heap, taken before any table
    // page so that table pages can still come from below 4 GiB.
    let frames_base = free.iter().next().map_or(0, |r| r.start / PAGE_SIZE);
    let frames_end = report.highest_usable / PAGE_SIZE;
    let entries = (frames_end - frames_base) as usize;
    let frame_table_bytes = (entries as u64 * core::mem::size_of::<FrameInfo>() as u64).next_multiple_of(PAGE_SIZE);
    let mut pieces = [Piece::default(); 64];
    let mut npieces = 0;
    take_backing(&mut free, FRAME_TABLE_BASE, frame_table_bytes, &mut pieces, &mut npieces)?;
    take_backing(&mut free, HEAP_BASE, INITIAL_HEAP, &mut pieces, &mut npieces)?;

    let mut tables = BootTables { free: &mut free, used: 0 };
    let root = build_tables(&mut tables, &wb, &uc, &pieces[..npieces], image, leaf_mask, global, largest)?;
    report.page_tables = tables.used;
    report.frame_table = frame_table_bytes;
    report.heap = INITIAL_HEAP;
    finish(root, wb, uc, free, entries, frames_base, f.pge, report)
}

/// The hypervisor's page tables: direct map, image, frame table and heap.
#[allow(clippy::too_many_arguments)]
fn build_tables(
    tables: &mut BootTables<'_>,
    wb: &RangeSet<SET>,
    uc: &RangeSet<SET>,
    pieces: &[Piece],
    image: Image,
    leaf_mask: PteFlags,
    global: PteFlags,
    largest: PageSize,
) -> Result<u64, MemoryError> {
    let mut pt = PageTable::new(tables, PteFlags::WRITABLE, leaf_mask)?;
    let root = pt.root();
    let dm = PteFlags::WRITABLE | PteFlags::NO_EXECUTE | global;
    // The image's code and read-only data are read-only in the direct map
    // too: a writable alias of code would undo W^X.
    let code =
        Range::new(image.virt_to_phys(sym!(__text_start)), image.virt_to_phys(sym!(__rodata_end))).pages_around();
    let mut writable = wb.clone();
    let _ = writable.remove(code);
    for r in writable.iter() {
        pt.map(DIRECTMAP_BASE + r.start, r.start, r.len(), dm, largest)?;
    }
    if wb.contains_range(code) {
        pt.map(DIRECTMAP_BASE + code.start, code.start, code.len(), PteFlags::NO_EXECUTE | global, PageSize::Size4K)?;
    }
    for r in uc.iter() {
        pt.map(DIRECTMAP_BASE + r.start, r.start, r.len(), dm | PteFlags::UNCACHED, largest)?;
    }
    // The image, section by section: text R-X, rodata R--, data RW-, with
    // an unmapped guard page under the boot stack.
    let map_image = |pt: &mut PageTable<'_, BootTables<'_>>, start: u64, end: u64, flags: PteFlags| {
        pt.map(start, image.virt_to_phys(start), end - start, flags | global, PageSize::Size4K)
    };
    map_image(&mut pt, sym!(__text_start), sym!(__text_end), PteFlags::empty())?;
    map_image(&mut pt, sym!(__rodata_start), sym!(__rodata_end), PteFlags::NO_EXECUTE)?;
    let rw = PteFlags::WRITABLE | PteFlags::NO_EXECUTE;
    map_image(&mut pt, sym!(__data_start), sym!(__boot_stack_guard), rw)?;
    map_image(&mut pt, sym!(__boot_stack_bottom), sym!(__image_end), rw)?;
    for p in pieces {
        pt.map(p.virt, p.phys, p.len, dm, PageSize::Size2M)?;
    }
    Ok(root)
}

/// Loads the new tables, then hands the remaining RAM to the frame
/// allocator and starts the heap.
#[allow(clippy::too_many_arguments)]
fn finish(
    root: u64,
    wb: RangeSet<SET>,
    uc: RangeSet<SET>,
    free: RangeSet<SET>,
    entries: usize,
    frames_base: u64,
    pge: bool,
    mut report: MemoryReport,
) -> Result<MemoryReport, MemoryError> {
    // Switch. From here on the identity map is gone: physical memory is
    // reached through the direct map only.
    let mut direct = RangeSet::<512>::new();
    for r in wb.iter().chain(uc.iter()) {
        let _ = direct.add(r);
    }
    DIRECT_MAPPED.call_once(|| direct);
    HOST_MEMORY.call_once(|| wb.clone());
    // SAFETY: the new tables map the image (code, data, the running stack)
    // at the same virtual addresses as the boot tables do, so execution
    // continues; CR4.PGE only enables global TLB entries.
    unsafe {
        if pge {
            core::arch::asm!("mov rax, cr4", "or rax, 0x80", "mov cr4, rax", out("rax") _, options(nostack));
        }
        core::arch::asm!("mov cr3, {}", in(reg) root, options(nostack));
    }
    *KERNEL_PT.lock() = root;
    PAGING_READY.store(true, Ordering::Release);

    // The frame allocator over what is left.
    // SAFETY: FRAME_TABLE_BASE .. + frame_table_bytes was just mapped to RAM
    // taken out of the free set; nothing else refers to it.
    let table = unsafe { core::slice::from_raw_parts_mut(FRAME_TABLE_BASE as *mut FrameInfo, entries) };
    let mut alloc = FrameAllocator::new(table, frames_base);
    for r in free.iter() {
        alloc.add_range(r);
    }
    report.free = alloc.free_frames() * PAGE_SIZE;
    *FRAMES.lock() = Some(alloc);

    super::heap::init(HEAP_BASE, INITIAL_HEAP);
    Ok(report)
}
