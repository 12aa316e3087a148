//! `grant_table_op(cmd, arg, count)` (xen/include/public/grant_table.h),
//! version 1 entries.

use crate::pod;

pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
pub const GNTTABOP_DUMP_TABLE: u64 = 3;
pub const GNTTABOP_TRANSFER: u64 = 4;
pub const GNTTABOP_COPY: u64 = 5;
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
pub const GNTTABOP_UNMAP_AND_REPLACE: u64 = 7;
pub const GNTTABOP_SET_VERSION: u64 = 8;
pub const GNTTABOP_GET_STATUS_FRAMES: u64 = 9;
pub const GNTTABOP_GET_VERSION: u64 = 10;
pub const GNTTABOP_SWAP_GRANT_REF: u64 = 11;
pub const GNTTABOP_CACHE_FLUSH: u64 = 12;

/// `struct grant_entry_v1`, in the granting domain's grant frames.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    pub flags: u16,
    pub domid: u16,
    /// The granted guest frame.
    pub frame: u32,
}

pub const ENTRIES_PER_FRAME_V1: u32 = 4096 / 8;

pub const GTF_INVALID: u16 = 0;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
pub const GTF_TRANSITIVE: u16 = 3;
pub const GTF_TYPE_MASK: u16 = 3;
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while the frame is mapped or copied from.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while the frame is mapped writable or copied to.
pub const GTF_WRITING: u16 = 1 << 4;
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;
pub const GTF_SUB_PAGE: u16 = 1 << 8;

pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
pub const GNTMAP_READONLY: u32 = 1 << 2;
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `GNTST_*` status codes.
pub const GNTST_OKAY: i16 = 0;
pub const GNTST_GENERAL_ERROR: i16 = -1;
pub const GNTST_BAD_DOMAIN: i16 = -2;
pub const GNTST_BAD_GNTREF: i16 = -3;
pub const GNTST_BAD_HANDLE: i16 = -4;
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
pub const GNTST_PERMISSION_DENIED: i16 = -8;
pub const GNTST_BAD_PAGE: i16 = -9;
pub const GNTST_BAD_COPY_ARG: i16 = -10;
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
pub const GNTST_EAGAIN: i16 = -12;
pub const GNTST_NO_SPACE: i16 = -13;

pub fn status_name(s: i16) -> &'static str {
    match s {
        GNTST_OKAY => "okay",
        GNTST_GENERAL_ERROR => "general error",
        GNTST_BAD_DOMAIN => "unrecognised domain id",
        GNTST_BAD_GNTREF => "invalid grant reference",
        GNTST_BAD_HANDLE => "invalid mapping handle",
        GNTST_BAD_VIRT_ADDR => "invalid virtual address",
        GNTST_BAD_DEV_ADDR => "invalid device address",
        GNTST_NO_DEVICE_SPACE => "no spare translation slot in the I/O MMU",
        GNTST_PERMISSION_DENIED => "permission denied",
        GNTST_BAD_PAGE => "bad page",
        GNTST_BAD_COPY_ARG => "copy arguments cross page boundary",
        GNTST_ADDRESS_TOO_BIG => "page address size too large",
        GNTST_EAGAIN => "operation not done; try again",
        GNTST_NO_SPACE => "out of space",
        _ => "unknown status",
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MapGrantRef {
    /// For an HVM/PVH mapper: the guest-physical address to map at.
    pub host_addr: u64,
    pub flags: u32,
    pub gref: u32,
    pub dom: u16,
    /// Out.
    pub status: i16,
    /// Out.
    pub handle: u32,
    /// Out.
    pub dev_bus_addr: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct UnmapGrantRef {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: u32,
    /// Out.
    pub status: i16,
    pub _pad: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SetupTable {
    pub dom: u16,
    pub _pad: u16,
    pub nr_frames: u32,
    /// Out.
    pub status: i16,
    pub _pad2: [u16; 3],
    /// Guest pointer to `nr_frames` frame numbers (out).
    pub frame_list: u64,
}

/// One side of a grant copy: a grant reference or a frame of the domain.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyPtr {
    /// `grant_ref_t ref` or `xen_pfn_t gmfn`.
    pub u: u64,
    pub domid: u16,
    pub offset: u16,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Copy {
    pub source: CopyPtr,
    pub dest: CopyPtr,
    pub len: u16,
    pub flags: u16,
    /// Out.
    pub status: i16,
    pub _pad: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct QuerySize {
    pub dom: u16,
    pub _pad: u16,
    /// Out.
    pub nr_frames: u32,
    /// Out.
    pub max_nr_frames: u32,
    /// Out.
    pub status: i16,
    pub _pad2: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SetVersion {
    pub version: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GetVersion {
    pub dom: u16,
    pub _pad: u16,
    /// Out.
    pub version: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpTable {
    pub dom: u16,
    /// Out.
    pub status: i16,
}

/// `gnttab_transfer` (how a PV netback gave pages away; status only here).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Transfer {
    pub mfn: u64,
    pub domid: u16,
    pub _pad: u16,
    pub gref: u32,
    /// Out.
    pub status: i16,
    pub _pad2: [u16; 3],
}

pod!(GrantEntryV1, MapGrantRef, UnmapGrantRef, SetupTable, CopyPtr, Copy, QuerySize, SetVersion, GetVersion);
pod!(DumpTable, Transfer);
