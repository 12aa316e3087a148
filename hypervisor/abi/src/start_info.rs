//! `hvm_start_info`, which a PVH guest finds in EBX at entry
//! (xen/include/public/arch-x86/hvm/start_info.h).

use crate::pod;

pub const MAGIC: u32 = 0x336e_c578;
/// Version 1 adds the memory map.
pub const VERSION: u32 = 1;

/// The domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// The domain is the initial (hardware) domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HvmStartInfo {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HvmMemmapEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}

pub const MEMMAP_RAM: u32 = 1;
pub const MEMMAP_RESERVED: u32 = 2;
pub const MEMMAP_ACPI: u32 = 3;
pub const MEMMAP_NVS: u32 = 4;
pub const MEMMAP_UNUSABLE: u32 = 5;
pub const MEMMAP_DISABLED: u32 = 6;
pub const MEMMAP_PMEM: u32 = 7;

pod!(HvmStartInfo, HvmModlistEntry, HvmMemmapEntry);
