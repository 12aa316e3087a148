//! The hardware domain's PCI configuration accesses through ports
//! 0xCF8-0xCFF, served as Xen's `vpci_portio_read/write` serve a PVH
//! hardware domain: a whole-dword write to 0xCF8 picks the function and
//! register; 0xCFC-0xCFF then reach it, reads directly, writes as
//! `vpci::check_write` allows.
//!
//! The memory a function decodes is mapped into the domain at its own
//! address while decoding is on (Xen's vpci `modify_bars`): every
//! function's at the domain's start, then again whenever a write changes
//! what a function decodes (its command register, a BAR, its ROM).

use super::access::DeviceAccess;
use super::ioports::PortRanges;
use super::pci::{self, Bdf, Function};
use super::vpci::{self, Decision, Layout, MmioRange, Placement};
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

/// The domain's p2m, for device memory: ranges mapped at their own
/// address (skipping pages the domain has something else at), and
/// unmapped (only what was mapped so).
pub trait MmioMapper {
    fn map(&mut self, r: &MmioRange);
    fn unmap(&mut self, r: &MmioRange);
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

/// Finds every function from bus 0 down through its bridges (each bus
/// once), learns its layout and maps what it decodes: the hardware
/// domain's devices as the firmware left them. Returns the number of
/// functions.
pub fn take_over_devices(acc: &DeviceAccess, mmio: &mut dyn MmioMapper) -> usize {
    let place = HostPlacement { ports: &acc.ports };
    let mut seen = [false; 256];
    let mut buses = alloc::vec![0u8];
    let mut n = 0;
    while let Some(bus) = buses.pop() {
        if core::mem::replace(&mut seen[bus as usize], true) {
            continue;
        }
        for dev in 0..32 {
            let f0 = Bdf::new(bus, dev, 0);
            if pci::read(f0, 0, 2) == 0xffff {
                continue;
            }
            let multi = pci::read(f0, 0x0e, 1) & 0x80 != 0;
            for func in 0..if multi { 8 } else { 1 } {
                let bdf = Bdf::new(bus, dev, func);
                if pci::read(bdf, 0, 2) == 0xffff {
                    continue;
                }
                n += 1;
                acc.with_layout(
                    bdf.0,
                    || Layout::discover(&mut Function(bdf)),
                    |layout| {
                        for r in layout.decoded_ranges(&mut Function(bdf)) {
                            if place.mmio_ok(r.base, r.size) {
                                mmio.map(&r);
                            } else {
                                log::warn!(
                                    "PCI {bdf}: {:#x}+{:#x} decodes over memory or a hypervisor device: not given to dom0",
                                    r.base,
                                    r.size
                                );
                            }
                        }
                        if layout.header_type == 1 {
                            buses.push(pci::read(bdf, 0x19, 1) as u8);
                        }
                    },
                );
            }
        }
    }
    n
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
/// one of 0xCF8-0xCFF. `domain` names the writer in reports; `mmio`
/// follows what the write makes the function decode.
pub fn port_write(
    acc: &DeviceAccess,
    domain: u16,
    mmio: &mut dyn MmioMapper,
    port: u16,
    size: u16,
    value: u32,
) -> bool {
    match port {
        CF8 if size == 4 => acc.set_cf8(value),
        0xcf8..=0xcfb => {}
        0xcfc..=0xcff => {
            if let Some((bdf, reg)) = target(acc, port, size) {
                config_write(acc, domain, mmio, bdf, reg, size, value);
            }
        }
        _ => return false,
    }
    true
}

/// Whether a write at `reg` may change what a function decodes.
fn changes_decoding(layout: &Layout, reg: u16) -> bool {
    let dword = reg & !3;
    let bars_end = match layout.header_type {
        0 => 0x28,
        1 => 0x18,
        _ => 0x10,
    };
    dword == vpci::COMMAND || (0x10..bars_end).contains(&dword) || dword == 0x30 || dword == 0x38
}

fn config_write(acc: &DeviceAccess, domain: u16, mmio: &mut dyn MmioMapper, bdf: Bdf, reg: u16, size: u16, value: u32) {
    // No function there: nothing to protect, nothing to discover.
    if pci::read(bdf, 0, 2) == 0xffff {
        return;
    }
    let place = HostPlacement { ports: &acc.ports };
    let decision = acc.with_layout(
        bdf.0,
        || Layout::discover(&mut Function(bdf)),
        |layout| {
            let d = vpci::check_write(layout, &mut Function(bdf), &place, reg, size, value);
            if d == Decision::Pass {
                let watch = changes_decoding(layout, reg);
                let before = if watch { layout.decoded_ranges(&mut Function(bdf)) } else { Vec::new() };
                pci::write(bdf, reg, size, value);
                if watch {
                    let after = layout.decoded_ranges(&mut Function(bdf));
                    if after != before {
                        before.iter().for_each(|r| mmio.unmap(r));
                        after.iter().filter(|r| place.mmio_ok(r.base, r.size)).for_each(|r| mmio.map(r));
                    }
                }
            }
            d
        },
    );
    match decision {
        Decision::Pass => {}
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
