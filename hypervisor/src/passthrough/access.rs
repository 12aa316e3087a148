//! What the hardware domain may reach of the machine's devices, and the
//! state of the accesses the hypervisor mediates for it.

use super::ioports::{BITMAP_BYTES, PortRanges};
use super::vpci::Layout;
use crate::mm::phys::{alloc_frames, free_frames, phys_to_virt};
use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Mutex;

/// Frames of a port intercept bitmap: SVM's IOPM is 12 KiB (VMX reads
/// the first 8), so an order-2 block.
const BITMAP_ORDER: usize = 2;

/// The hardware domain's ports (`ioports::hardware_domain_ports`), set
/// at boot.
static HARDWARE_DOMAIN_PORTS: spin::Once<PortRanges> = spin::Once::new();

pub fn set_hardware_domain_ports(p: PortRanges) {
    HARDWARE_DOMAIN_PORTS.call_once(|| p);
}

/// The device access of a new hardware domain (None: no memory for its
/// bitmap, or called before the boot set the ports).
pub fn for_hardware_domain() -> Option<DeviceAccess> {
    DeviceAccess::new(HARDWARE_DOMAIN_PORTS.get()?.clone())
}

pub struct DeviceAccess {
    /// Ports reached directly.
    pub ports: PortRanges,
    /// Its port intercept bitmap (host-physical), freed with it.
    io_bitmap: u64,
    /// The last value written to port 0xCF8 as a whole (Xen keeps it per
    /// domain): the function and register the next 0xCFC access is for.
    cf8: AtomicU32,
    /// Functions the domain touched: their BARs and capabilities, as
    /// found the first time.
    layouts: Mutex<BTreeMap<u16, Layout>>,
    /// Refused configuration writes, for a rate-limited report.
    pub refused: AtomicU32,
}

impl DeviceAccess {
    /// Access to `ports`, with its intercept bitmap (None: no memory).
    pub fn new(ports: PortRanges) -> Option<DeviceAccess> {
        let pa = alloc_frames(BITMAP_ORDER)?;
        let Some(va) = phys_to_virt(pa) else {
            let _ = free_frames(pa, 1 << BITMAP_ORDER);
            return None;
        };
        // SAFETY: freshly allocated frames, 16 KiB, ours alone.
        let bm = unsafe { core::slice::from_raw_parts_mut(va as *mut u8, 4096 << BITMAP_ORDER) };
        ports.write_intercept_bitmap(bm);
        debug_assert!(bm.len() > BITMAP_BYTES);
        Some(DeviceAccess {
            ports,
            io_bitmap: pa,
            cf8: AtomicU32::new(0),
            layouts: Mutex::new(BTreeMap::new()),
            refused: AtomicU32::new(0),
        })
    }

    pub fn io_bitmap(&self) -> u64 {
        self.io_bitmap
    }

    pub fn cf8(&self) -> u32 {
        self.cf8.load(Ordering::Acquire)
    }

    pub fn set_cf8(&self, v: u32) {
        self.cf8.store(v, Ordering::Release);
    }

    /// Runs `f` with the layout of function `bdf`, discovering it first
    /// if this is the domain's first access.
    pub fn with_layout<R>(&self, bdf: u16, discover: impl FnOnce() -> Layout, f: impl FnOnce(&Layout) -> R) -> R {
        let mut l = self.layouts.lock();
        let layout = l.entry(bdf).or_insert_with(discover);
        f(layout)
    }
}

impl Drop for DeviceAccess {
    fn drop(&mut self) {
        let _ = free_frames(self.io_bitmap, 1 << BITMAP_ORDER);
    }
}
