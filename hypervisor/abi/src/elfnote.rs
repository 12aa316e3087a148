//! ELF note types in notes owned by "Xen" (xen/include/public/elfnote.h).

pub const OWNER: &[u8] = b"Xen";

pub const INFO: u32 = 0;
pub const ENTRY: u32 = 1;
pub const HYPERCALL_PAGE: u32 = 2;
pub const VIRT_BASE: u32 = 3;
pub const PADDR_OFFSET: u32 = 4;
pub const XEN_VERSION: u32 = 5;
pub const GUEST_OS: u32 = 6;
pub const GUEST_VERSION: u32 = 7;
pub const LOADER: u32 = 8;
pub const PAE_MODE: u32 = 9;
pub const FEATURES: u32 = 10;
pub const BSD_SYMTAB: u32 = 11;
pub const HV_START_LOW: u32 = 12;
pub const L1_MFN_VALID: u32 = 13;
pub const SUSPEND_CANCEL: u32 = 14;
pub const INIT_P2M: u32 = 15;
pub const MOD_START_PFN: u32 = 16;
pub const SUPPORTED_FEATURES: u32 = 17;
/// Physical 32-bit entry point: present means "PVH capable".
pub const PHYS32_ENTRY: u32 = 18;
/// Relocation range and alignment for the PVH image.
pub const PHYS32_RELOC: u32 = 19;
