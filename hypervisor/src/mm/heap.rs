//! The hypervisor heap: `linked_list_allocator` over a virtual region that
//! grows on demand, page by page, from the frame allocator (so the heap
//! never needs physically contiguous memory).

use super::layout::{HEAP_BASE, HEAP_MAX};
use super::phys::{alloc_zeroed_frame, kernel_map};
use super::ranges::PAGE_SIZE;
use crate::arch::x86_64::page_table::{PageSize, PteFlags};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{NonNull, null_mut};
use linked_list_allocator::Heap;
use spin::Mutex;

pub struct HvHeap {
    heap: Mutex<Heap>,
}

#[global_allocator]
static HEAP: HvHeap = HvHeap { heap: Mutex::new(Heap::empty()) };

/// Hands `[base, base+size)` (already mapped) to the allocator.
pub fn init(base: u64, size: u64) {
    // SAFETY: the range was mapped for the heap alone by mm::setup.
    unsafe { HEAP.heap.lock().init(base as *mut u8, size as usize) };
}

/// (used, size) of the heap in bytes.
pub fn usage() -> (usize, usize) {
    let h = HEAP.heap.lock();
    (h.used(), h.size())
}

/// Maps at least `need` more bytes at the top of the heap.
fn grow(heap: &mut Heap, need: usize) -> bool {
    let want = (need as u64 + PAGE_SIZE).max(1 << 20).next_multiple_of(PAGE_SIZE);
    let top = heap.top() as u64;
    if top + want > HEAP_BASE + HEAP_MAX {
        return false;
    }
    let mut mapped = 0;
    while mapped < want {
        let Some(frame) = alloc_zeroed_frame() else { break };
        let flags = PteFlags::WRITABLE | PteFlags::NO_EXECUTE;
        if kernel_map(top + mapped, frame, PAGE_SIZE, flags, PageSize::Size4K).is_err() {
            let _ = super::phys::free_frames(frame, 1);
            break;
        }
        mapped += PAGE_SIZE;
    }
    if mapped == 0 {
        return false;
    }
    // SAFETY: [top, top+mapped) is freshly mapped and directly follows the
    // heap.
    unsafe { heap.extend(mapped as usize) };
    mapped as usize >= need
}

// SAFETY: allocation and deallocation go through one locked
// linked_list_allocator heap whose memory is mapped for it alone.
unsafe impl GlobalAlloc for HvHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.heap.lock();
        if let Ok(p) = heap.allocate_first_fit(layout) {
            return p.as_ptr();
        }
        if grow(&mut heap, layout.size() + layout.align())
            && let Ok(p) = heap.allocate_first_fit(layout)
        {
            return p.as_ptr();
        }
        null_mut()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc
            // contract).
            unsafe { self.heap.lock().deallocate(p, layout) };
        }
    }
}
