//! The hardware domain's PCI configuration accesses through ports
//! 0xCF8-0xCFF, served as Xen's `vpci_portio_read/write` serve a PVH
//! hardware domain: a whole-dword write to 0xCF8 picks the function and
//! register; 0xCFC-0xCFF then reach it, reads directly, writes as
//! `vpci::check_write` allows.

use super::access::DeviceAccess;
use super::ioports::PortRanges;
use super::pci::{self, Bdf, Function};
use super::vpci::{self, Decision, Layout, Placement};
use crate::mm::ranges::Range;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

const CF8: u16 = 0xcf8;
const CF8_ENABLE: u32 = 1 << 31;

/// Memory the hypervisor's own devices decode (local APIC, I/O APICs),
/// set at boot.
static HYPERVISOR_MMIO: spin::Once<Vec<Range>> = spin::Once::new();

/// Records the hypervisor's device memory, which no BAR may cover.
pub fn set_hypervisor_mmio(ranges: Vec<Range>) {
    HYPERVISOR_MMIO.call_once(|| ranges);
}

struct HostPlacement<'a> {
    ports: &'a PortRanges,
}

impl Placement for HostPlacement<'_> {
    fn mmio_ok(&self, base: u64, size: u64) -> bool {
        let Some(end) = base.checked_add(size.max(1)) else { return false };
        let r = Range::new(base, end);
        !crate::mm::phys::overlaps_host_memory(r)
            && !HYPERVISOR_MMIO.get().is_some_and(|h| h.iter().any(|d| d.start < r.end && r.start < d.end))
    }
    fn ports_ok(&self, base: u16, size: u32) -> bool {
        u16::try_from(size).is_ok_and(|n| self.ports.contains(base, n))
    }
}

/// The function and register an access of `size` bytes at data port
/// `port` is for, if 0xCF8 enables one and the access stays in its dword.
fn target(acc: &DeviceAccess, port: u16, size: u16) -> Option<(Bdf, u16)> {
    let cf8 = acc.cf8();
    let off = port - 0xcfc;
    if cf8 & CF8_ENABLE == 0 || off + size > 4 {
        return None;
    }
    Some((Bdf((cf8 >> 8) as u16), (cf8 & 0xfc) as u16 + off))
}

/// A read of `size` bytes at `port` (0xCF8-0xCFF); None if the port is
/// not one of them.
pub fn port_read(acc: &DeviceAccess, port: u16, size: u16) -> Option<u32> {
    let all_ones = (u64::MAX >> (64 - 8 * size as u32)) as u32;
    match port {
        CF8 if size == 4 => Some(acc.cf8()),
        0xcf8..=0xcfb => Some(all_ones),
        0xcfc..=0xcff => Some(match target(acc, port, size) {
            Some((bdf, reg)) => pci::read(bdf, reg, size),
            None => all_ones,
        }),
        _ => None,
    }
}

/// A write of `size` bytes of `value` at `port`; false if the port is not
/// one of 0xCF8-0xCFF. `domain` names the writer in reports.
pub fn port_write(acc: &DeviceAccess, domain: u16, port: u16, size: u16, value: u32) -> bool {
    match port {
        CF8 if size == 4 => acc.set_cf8(value),
        0xcf8..=0xcfb => {}
        0xcfc..=0xcff => {
            if let Some((bdf, reg)) = target(acc, port, size) {
                config_write(acc, domain, bdf, reg, size, value);
            }
        }
        _ => return false,
    }
    true
}

fn config_write(acc: &DeviceAccess, domain: u16, bdf: Bdf, reg: u16, size: u16, value: u32) {
    // No function there: nothing to protect, nothing to discover.
    if pci::read(bdf, 0, 2) == 0xffff {
        return;
    }
    let place = HostPlacement { ports: &acc.ports };
    let decision = acc.with_layout(
        bdf.0,
        || Layout::discover(&mut Function(bdf)),
        |layout| vpci::check_write(layout, &mut Function(bdf), &place, reg, size, value),
    );
    match decision {
        Decision::Pass => pci::write(bdf, reg, size, value),
        Decision::Refuse(why) => {
            // A few lines, then a count: a domain cannot flood the console.
            let n = acc.refused.fetch_add(1, Ordering::Relaxed);
            if n < 8 {
                log::warn!(
                    "d{domain}: PCI {bdf}: write of {value:#x} ({size} bytes) at {reg:#x} refused: {why}{}",
                    if n == 7 { " (no more such lines)" } else { "" }
                );
            }
        }
    }
}
