//! `memory_op(cmd, arg)` (xen/include/public/memory.h).

use crate::pod;

pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
pub const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
pub const XENMEM_MACHPHYS_MFN_LIST: u64 = 5;
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
pub const XENMEM_MEMORY_MAP: u64 = 9;
pub const XENMEM_MACHINE_MEMORY_MAP: u64 = 10;
pub const XENMEM_EXCHANGE: u64 = 11;
pub const XENMEM_MACHPHYS_MAPPING: u64 = 12;
pub const XENMEM_SET_MEMORY_MAP: u64 = 13;
pub const XENMEM_MAXIMUM_GPFN: u64 = 14;
pub const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;
pub const XENMEM_CLAIM_PAGES: u64 = 24;
pub const XENMEM_GET_VNUMAINFO: u64 = 26;
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u64 = 27;
pub const XENMEM_ACQUIRE_RESOURCE: u64 = 28;

/// The low bits of the memory_op command; the rest carries continuation
/// state.
pub const MEMOP_CMD_MASK: u64 = (1 << 6) - 1;

pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
pub const XENMAPSPACE_GMFN: u32 = 2;
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AddToPhysmap {
    pub domid: u16,
    /// Number of pages for XENMAPSPACE_gmfn_range.
    pub size: u16,
    pub space: u32,
    pub idx: u64,
    pub gpfn: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryMap {
    /// In: entries the buffer holds. Out: entries written.
    pub nr_entries: u32,
    pub _pad: u32,
    /// Guest pointer to packed [`E820Entry`]s.
    pub buffer: u64,
}

/// E820 entry as XENMEM_memory_map writes it: 20 bytes, packed.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const E820_ACPI: u32 = 3;
pub const E820_NVS: u32 = 4;

/// `struct xen_memory_reservation` (increase/decrease_reservation,
/// populate_physmap).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryReservation {
    /// Guest pointer to `nr_extents` frame numbers (in or out).
    pub extent_start: u64,
    pub nr_extents: u64,
    pub extent_order: u32,
    /// `XENMEMF_*`: address bits in the low byte, flags above.
    pub mem_flags: u32,
    pub domid: u16,
    pub _pad: [u16; 3],
}

/// The bits above the command carry how far a continued memory_op got.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// `XENMAPIDX_grant_table_status`: a v2 status frame, not a shared one.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 1 << 31;
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
pub const XENMEMF_VNODE: u32 = 1 << 18;

pod!(AddToPhysmap, MemoryMap, E820Entry, MemoryReservation);
