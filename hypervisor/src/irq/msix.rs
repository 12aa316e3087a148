//! A PCI function's MSI-X, as the hypervisor programs it for pirqs: each
//! table entry a pirq maps is pointed at the host vector the hypervisor
//! chose (the boot CPU's local APIC, fixed, edge), masked until the pirq
//! is bound. The table's pages are never mapped into the domain that owns
//! the device (`passthrough::vpci` cuts them out), so only the hypervisor
//! writes them, through its own uncached mapping.

use crate::passthrough::pci::{self, Bdf};
use alloc::collections::BTreeMap;
use spin::Mutex;

const CAP_MSIX: u8 = 0x11;
const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_MASKED: u32 = 1;

/// The hypervisor's mappings of MSI-X table pages, by physical page
/// (kept: the I/O remap area does not give addresses back).
static TABLE_PAGES: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());

/// A function's MSI-X capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msix {
    pub cap: u16,
    pub entries: u16,
    /// The BAR holding the table, and the table's offset in it.
    pub bir: u8,
    pub offset: u32,
}

pub fn find(bdf: Bdf) -> Option<Msix> {
    let (at, head) = pci::find_capability(bdf, CAP_MSIX)?;
    let table = pci::read(bdf, at + 4, 4);
    Some(Msix { cap: at, entries: ((head >> 16) & 0x7ff) as u16 + 1, bir: (table & 7) as u8, offset: table & !7 })
}

/// Where BAR `bir` decodes now (None: not a memory BAR, or not placed).
pub fn bar_base(bdf: Bdf, bir: u8) -> Option<u64> {
    if bir > 5 {
        return None;
    }
    let reg = 0x10 + 4 * bir as u16;
    let lo = pci::read(bdf, reg, 4);
    if lo & 1 != 0 {
        return None;
    }
    let hi = if (lo >> 1) & 3 == 2 && bir < 5 { pci::read(bdf, reg + 4, 4) as u64 } else { 0 };
    let base = hi << 32 | (lo & !0xf) as u64;
    (base != 0).then_some(base)
}

/// The hypervisor's address of table entry `entry` at physical `table`.
fn entry_va(table: u64, entry: u16) -> Option<u64> {
    let phys = table + 16 * entry as u64;
    let page = phys & !0xfff;
    let mut pages = TABLE_PAGES.lock();
    let va = match pages.get(&page) {
        Some(&va) => va,
        None => {
            let va = crate::mm::phys::map_mmio(page, 4096).ok()?;
            pages.insert(page, va);
            va
        }
    };
    Some(va + (phys & 0xfff))
}

fn write32(va: u64, v: u32) {
    // SAFETY: `va` is inside a table page the hypervisor mapped uncached
    // (entry_va), 4-byte aligned.
    unsafe { core::ptr::write_volatile(va as *mut u32, v) };
}

/// Points entry `entry` of the table at physical `table` at `vector` on
/// the CPU with local APIC id `apic_id`, masked.
pub fn program(table: u64, entry: u16, vector: u8, apic_id: u32) -> bool {
    let Some(va) = entry_va(table, entry) else { return false };
    write32(va + 12, ENTRY_MASKED);
    write32(va, 0xfee0_0000 | (apic_id & 0xff) << 12);
    write32(va + 4, 0);
    write32(va + 8, vector as u32);
    true
}

/// Masks or unmasks one entry.
pub fn set_masked(table: u64, entry: u16, masked: bool) {
    if let Some(va) = entry_va(table, entry) {
        write32(va + 12, if masked { ENTRY_MASKED } else { 0 });
    }
}

/// Turns the function's MSI-X on (entries masked one by one, not the whole
/// function) or off.
pub fn set_enabled(bdf: Bdf, cap: u16, on: bool) {
    let control = pci::read(bdf, cap + 2, 2) as u16 & !CONTROL_FUNCTION_MASK;
    let control = if on { control | CONTROL_ENABLE } else { control & !CONTROL_ENABLE };
    pci::write(bdf, cap + 2, 2, control as u32);
}
