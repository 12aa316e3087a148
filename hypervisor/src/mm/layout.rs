//! The hypervisor's virtual address space (one per machine, shared by every
//! CPU; guests live in their own nested-paging spaces).
//!
//! | range (PML4 slots)                      | what                                  |
//! |-----------------------------------------|---------------------------------------|
//! | `0xffff_8000_0000_0000` (256..383)      | direct map of physical memory, 64 TiB |
//! | `0xffff_c000_0000_0000` (384)           | frame table (12 B per 4 KiB frame)    |
//! | `0xffff_c080_0000_0000` (385)           | hypervisor heap, grows on demand      |
//! | `0xffff_c100_0000_0000` (386)           | device (MMIO) mappings, uncached      |
//! | `0xffff_c180_0000_0000` (387)           | CPU stacks, each below a guard gap    |
//! | `0xffff_ffff_8000_0000` (511, top 2 GiB)| the hypervisor image                  |

pub const DIRECTMAP_BASE: u64 = 0xffff_8000_0000_0000;
pub const DIRECTMAP_SIZE: u64 = 64 << 40;
pub const FRAME_TABLE_BASE: u64 = 0xffff_c000_0000_0000;
pub const FRAME_TABLE_SIZE: u64 = 512 << 30;
pub const HEAP_BASE: u64 = 0xffff_c080_0000_0000;
pub const HEAP_MAX: u64 = 512 << 30;
pub const IOREMAP_BASE: u64 = 0xffff_c100_0000_0000;
pub const IOREMAP_SIZE: u64 = 512 << 30;
/// Stacks of the CPUs started after the boot CPU: one slot each, the
/// stack at the top of its slot and an unmapped gap below it.
pub const STACKS_BASE: u64 = 0xffff_c180_0000_0000;
pub const STACK_SLOT: u64 = 128 << 10;
pub const STACK_SIZE: u64 = 64 << 10;
pub const KERNEL_VBASE: u64 = 0xffff_ffff_8000_0000;
/// Physical address the image is linked for (GRUB may move it, see boot/entry.S).
pub const IMAGE_PHYS_LINK: u64 = 0x20_0000;

/// The least usable RAM the hypervisor boots with: its own tables and heap
/// plus room for at least a small domain.
pub const MIN_USABLE_MEMORY: u64 = 32 << 20;
