//! Run-time access to physical memory: the frame allocator, the direct map,
//! the hypervisor's own page tables and device mappings.

use super::frame::{FrameAllocator, FrameError};
use super::layout::{DIRECTMAP_BASE, DIRECTMAP_SIZE, IOREMAP_BASE, IOREMAP_SIZE, STACK_SIZE, STACK_SLOT, STACKS_BASE};
use super::ranges::{PAGE_SIZE, Range, RangeSet};
use crate::arch::x86_64::page_table::{MapError, PageSize, PageTable, PteFlags, TableMemory};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

pub(super) static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);
pub(super) static KERNEL_PT: Mutex<u64> = Mutex::new(0);
pub(super) static DIRECT_MAPPED: spin::Once<RangeSet<512>> = spin::Once::new();
/// The machine's memory (RAM and ACPI tables, from 1 MiB), as the
/// firmware's map gave it.
pub(super) static HOST_MEMORY: spin::Once<RangeSet<256>> = spin::Once::new();
/// Set once the hypervisor's own page tables are live; before that, the
/// boot tables' identity map of the first 4 GiB is the way to memory.
pub(super) static PAGING_READY: AtomicBool = AtomicBool::new(false);
/// Page-table flags the CPU accepts on leaves (no NX bit on CPUs without NX).
pub(super) static LEAF_MASK: AtomicU64 = AtomicU64::new(u64::MAX);
static IOREMAP_NEXT: AtomicU64 = AtomicU64::new(IOREMAP_BASE);

/// The virtual address through which physical address `phys` is reached,
/// if it is reachable.
pub fn phys_to_virt(phys: u64) -> Option<u64> {
    if PAGING_READY.load(Ordering::Acquire) {
        let mapped = DIRECT_MAPPED.get()?;
        if phys < DIRECTMAP_SIZE && mapped.contains(phys) {
            return Some(DIRECTMAP_BASE + phys);
        }
        None
    } else if phys < (4 << 30) {
        Some(phys)
    } else {
        None
    }
}

/// Whether all of `range` is in the direct map (or, early, the identity map).
/// Whether `range` touches the machine's memory (RAM or ACPI tables, or
/// anything below 1 MiB): no place for a device.
pub fn overlaps_host_memory(range: Range) -> bool {
    if range.start < super::ranges::LOW_MEMORY_END {
        return true;
    }
    HOST_MEMORY.get().is_none_or(|m| m.iter().any(|r| r.start < range.end && range.start < r.end))
}

pub fn is_reachable(range: Range) -> bool {
    if range.is_empty() {
        return true;
    }
    if PAGING_READY.load(Ordering::Acquire) {
        DIRECT_MAPPED.get().is_some_and(|m| m.contains_range(range.pages_around()))
    } else {
        range.end <= (4 << 30)
    }
}

/// Reads `len` bytes of physical memory as a slice, if all of it is mapped.
///
/// # Safety
/// Nothing may write that memory while the slice lives.
pub unsafe fn phys_slice<'a>(phys: u64, len: usize) -> Option<&'a [u8]> {
    if !is_reachable(Range::from_len(phys, len as u64)) {
        return None;
    }
    let v = phys_to_virt(phys)?;
    // SAFETY: the range is mapped (checked above); the caller guarantees no
    // concurrent writer.
    Some(unsafe { core::slice::from_raw_parts(v as *const u8, len) })
}

/// One free 4 KiB frame, zeroed.
pub fn alloc_zeroed_frame() -> Option<u64> {
    let pfn = FRAMES.lock().as_mut()?.alloc(0)?;
    let phys = pfn * PAGE_SIZE;
    let v = phys_to_virt(phys)?;
    // SAFETY: the frame was just allocated, so nothing else uses it, and it
    // is direct-mapped (all RAM is).
    unsafe { core::ptr::write_bytes(v as *mut u8, 0, PAGE_SIZE as usize) };
    Some(phys)
}

/// 2^order contiguous frames, aligned to their size (not zeroed).
pub fn alloc_frames(order: usize) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc(order).map(|pfn| pfn * PAGE_SIZE)
}

/// `count` contiguous frames (not zeroed): the first frame's address.
pub fn alloc_contiguous(count: u64) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_contiguous(count, 0).map(|pfn| pfn * PAGE_SIZE)
}

/// Frame `pfn` itself, if it is free (not zeroed): for a domain whose
/// RAM is its machine RAM.
pub fn alloc_frame_at(pfn: u64) -> bool {
    FRAMES.lock().as_mut().is_some_and(|f| f.reserve(pfn).is_ok())
}

pub fn free_frames(phys: u64, count: u64) -> Result<(), FrameError> {
    match FRAMES.lock().as_mut() {
        Some(f) => f.free(phys / PAGE_SIZE, count),
        None => Err(FrameError::NotManaged { pfn: phys / PAGE_SIZE }),
    }
}

/// Takes a reference on an allocated frame (`mm::frame`'s reference
/// counts; `memory::frame_ref` says who takes them).
pub fn frame_get_ref(pfn: u64) -> Result<(), FrameError> {
    FRAMES.lock().as_mut().ok_or(FrameError::NotManaged { pfn })?.get_ref(pfn)
}

/// Drops a reference; the frame is freed if it was the last and its owner
/// let go of it.
pub fn frame_put_ref(pfn: u64) -> Result<bool, FrameError> {
    FRAMES.lock().as_mut().ok_or(FrameError::NotManaged { pfn })?.put_ref(pfn)
}

/// An owner gives frames back: freed now unless referenced, else with
/// their last reference.
pub fn release_frames_referenced(pfn: u64, count: u64) -> Result<(), FrameError> {
    FRAMES.lock().as_mut().ok_or(FrameError::NotManaged { pfn })?.release_referenced(pfn, count)
}

/// Checks the hypervisor's own page tables for W^X (no page writable and
/// executable, no writable alias of code): the bytes of code, or the
/// first breach.
pub fn check_wx() -> Result<u64, crate::arch::x86_64::page_table::WxFault> {
    let root = KERNEL_PT.lock();
    let mask = PteFlags::from_bits_retain(LEAF_MASK.load(Ordering::Relaxed));
    let mut mem = FrameTables;
    PageTable::from_root(*root, &mut mem, PteFlags::WRITABLE, mask).check_wx()
}

/// (free, managed) frame counts.
pub fn frame_counts() -> (u64, u64) {
    FRAMES.lock().as_ref().map_or((0, 0), |f| (f.free_frames(), f.managed_frames()))
}

/// The highest host frame number of RAM (XENMEM_maximum_ram_page).
pub fn max_frame() -> u64 {
    FRAMES.lock().as_ref().map_or(0, |f| f.highest_frame())
}

/// Page-table pages from the frame allocator, reached through the direct
/// map: for the hypervisor's own tables and for nested page tables.
pub struct FrameTables;

impl TableMemory for FrameTables {
    fn alloc_table(&mut self) -> Option<u64> {
        alloc_zeroed_frame()
    }

    fn table(&mut self, phys: u64) -> &mut [u64; 512] {
        let v = phys_to_virt(phys).expect("page-table page outside the direct map");
        // SAFETY: table pages are RAM, direct-mapped, and only touched by the
        // owner of the table set (KERNEL_PT held, or the domain's p2m lock).
        unsafe { &mut *(v as *mut [u64; 512]) }
    }
}

/// Maps `[virt, virt+len)` to `[phys, phys+len)` in the hypervisor's address
/// space.
pub fn kernel_map(virt: u64, phys: u64, len: u64, flags: PteFlags, largest: PageSize) -> Result<(), MapError> {
    let root = KERNEL_PT.lock();
    let mask = PteFlags::from_bits_retain(LEAF_MASK.load(Ordering::Relaxed));
    let mut mem = FrameTables;
    let mut pt = PageTable::from_root(*root, &mut mem, PteFlags::WRITABLE, mask);
    pt.map(virt, phys, len, flags | PteFlags::GLOBAL, largest)
}

/// Maps device registers uncached and returns their virtual address.
pub fn map_mmio(phys: u64, len: u64) -> Result<u64, MapError> {
    let r = Range::from_len(phys, len.max(1)).pages_around();
    let size = r.len();
    let virt = IOREMAP_NEXT.fetch_add(size, Ordering::Relaxed);
    if virt + size > IOREMAP_BASE + IOREMAP_SIZE {
        return Err(MapError::OutOfMemory);
    }
    kernel_map(virt, r.start, size, PteFlags::WRITABLE | PteFlags::NO_EXECUTE | PteFlags::UNCACHED, PageSize::Size4K)?;
    // The TLB cannot hold entries for never-mapped addresses: no flush.
    Ok(virt + (phys - r.start))
}

/// A stack for CPU `cpu`: `STACK_SIZE` bytes at the top of its slot, with
/// nothing mapped below, so an overflow faults (and the double-fault
/// handler, on its own stack, reports it). Returns (bottom, top).
pub fn alloc_cpu_stack(cpu: u32) -> Result<(u64, u64), MapError> {
    let frames = (STACK_SIZE / PAGE_SIZE).trailing_zeros() as usize;
    let phys = alloc_frames(frames).ok_or(MapError::OutOfMemory)?;
    let top = STACKS_BASE + (cpu as u64 + 1) * STACK_SLOT;
    let bottom = top - STACK_SIZE;
    kernel_map(bottom, phys, STACK_SIZE, PteFlags::WRITABLE | PteFlags::NO_EXECUTE, PageSize::Size4K)?;
    Ok((bottom, top))
}
