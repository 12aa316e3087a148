//! `physdev_op(cmd, arg)` (xen/include/public/physdev.h): the hardware
//! domain's interrupts and PCI devices.

use crate::pod;

pub const PHYSDEVOP_IRQ_STATUS_QUERY: u64 = 5;
pub const PHYSDEVOP_SET_IOPL: u64 = 6;
pub const PHYSDEVOP_SET_IOBITMAP: u64 = 7;
pub const PHYSDEVOP_EOI: u64 = 12;
pub const PHYSDEVOP_MAP_PIRQ: u64 = 13;
pub const PHYSDEVOP_UNMAP_PIRQ: u64 = 14;
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V1: u64 = 17;
pub const PHYSDEVOP_GET_FREE_PIRQ: u64 = 23;
pub const PHYSDEVOP_PCI_DEVICE_ADD: u64 = 25;
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u64 = 28;

pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 2;
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 3;
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 4;

/// `irq_status_query` flags.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhysdevEoi {
    pub irq: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqStatusQuery {
    pub irq: u32,
    pub flags: u32,
}

/// `struct physdev_map_pirq`: 40 bytes, `table_base` at 32.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapPirq {
    pub domid: u16,
    pub _pad0: u16,
    pub kind: i32,
    pub index: i32,
    pub pirq: i32,
    /// The bus; segment in the high 16 bits for MSI_SEG.
    pub bus: i32,
    pub devfn: i32,
    pub entry_nr: i32,
    pub _pad1: u32,
    pub table_base: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnmapPirq {
    pub domid: u16,
    pub _pad: u16,
    pub pirq: i32,
}

pod!(PhysdevEoi, IrqStatusQuery, MapPirq, UnmapPirq);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_are_xens() {
        assert_eq!(size_of::<MapPirq>(), 40);
        assert_eq!(offset_of!(MapPirq, kind), 4);
        assert_eq!(offset_of!(MapPirq, pirq), 12);
        assert_eq!(offset_of!(MapPirq, entry_nr), 24);
        assert_eq!(offset_of!(MapPirq, table_base), 32);
        assert_eq!(size_of::<UnmapPirq>(), 8);
        assert_eq!(size_of::<IrqStatusQuery>(), 8);
    }
}
