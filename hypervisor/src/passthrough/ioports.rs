//! Which I/O ports a domain reaches directly: the hardware domain gets all
//! of them except the hypervisor's own devices and the ports it mediates,
//! as Xen's `dom0_setup_permissions` decides; other domains get none.
//!
//! The logic only: a set of port ranges, the hardware domain's set, and
//! the intercept bitmap the virtualization hardware reads (SVM's IOPM and
//! VMX's I/O bitmaps A and B share its layout: bit `p` set = port `p`
//! exits).

use alloc::vec::Vec;

/// Bytes of an intercept bitmap covering every port.
pub const BITMAP_BYTES: usize = 0x10000 / 8;

/// A set of I/O ports, as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRanges {
    ranges: Vec<(u16, u16)>,
}

impl PortRanges {
    /// No port.
    pub fn none() -> PortRanges {
        PortRanges::default()
    }

    /// Every port.
    pub fn all() -> PortRanges {
        PortRanges { ranges: alloc::vec![(0, 0xffff)] }
    }

    /// Adds `first..=last` (ignored if `first > last`).
    pub fn permit(&mut self, first: u16, last: u16) {
        if first > last {
            return;
        }
        let (mut lo, mut hi) = (first, last);
        // Merge with every range that overlaps or touches the new one.
        self.ranges.retain(|&(a, b)| {
            let apart = (b as u32) + 1 < lo as u32 || (hi as u32) + 1 < a as u32;
            if !apart {
                lo = lo.min(a);
                hi = hi.max(b);
            }
            apart
        });
        let at = self.ranges.partition_point(|&(a, _)| a < lo);
        self.ranges.insert(at, (lo, hi));
    }

    /// Removes `first..=last` (ignored if `first > last`).
    pub fn deny(&mut self, first: u16, last: u16) {
        if first > last {
            return;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for &(a, b) in &self.ranges {
            if b < first || a > last {
                out.push((a, b));
                continue;
            }
            if a < first {
                out.push((a, first - 1));
            }
            if b > last {
                out.push((last + 1, b));
            }
        }
        self.ranges = out;
    }

    /// Whether every port of `first..first + len` is in the set (an access
    /// of `len` bytes at `first`; one running past 0xffff is not).
    pub fn contains(&self, first: u16, len: u16) -> bool {
        let Ok(last) = u16::try_from(first as u32 + len.max(1) as u32 - 1) else { return false };
        let i = self.ranges.partition_point(|&(_, b)| b < first);
        self.ranges.get(i).is_some_and(|&(a, b)| a <= first && last <= b)
    }

    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    /// Writes the intercept bitmap for this set into `out` (at least
    /// [`BITMAP_BYTES`] long; bytes past that are set, as SVM wants the
    /// bits after port 0xffff): a port exits unless it is in the set.
    pub fn write_intercept_bitmap(&self, out: &mut [u8]) {
        out.fill(0xff);
        for &(a, b) in &self.ranges {
            let (a, end) = (a as usize, b as usize + 1);
            // Whole bytes at once (dom0's set is nearly every port), the
            // odd bits at either end one by one.
            let (first_byte, last_byte) = (a.div_ceil(8), end / 8);
            if first_byte < last_byte {
                out[first_byte..last_byte].fill(0);
                for p in (a..first_byte * 8).chain(last_byte * 8..end) {
                    out[p / 8] &= !(1 << (p % 8));
                }
            } else {
                for p in a..end {
                    out[p / 8] &= !(1 << (p % 8));
                }
            }
        }
    }
}

/// The hypervisor's own port users on this machine, which the hardware
/// domain must not reach.
#[derive(Debug, Clone, Default)]
pub struct HostPorts {
    /// The serial console's UART (8 ports from here), if one is in use.
    pub console_uart: Option<u16>,
    /// The ACPI PM timer's port (4 ports), if it is in port space.
    pub pm_timer: Option<u16>,
    /// Whether port 0x80 (POST codes, used as an I/O delay) may pass:
    /// Xen's `hvm_port80_allowed`, true unless a platform quirk says not.
    pub port80_allowed: bool,
}

/// The PCI configuration mechanism #1 ports: the hypervisor emulates them
/// for the hardware domain (it checks what is written) and shares the
/// hardware with its own use.
pub const PCI_CONFIG_PORTS: (u16, u16) = (0xcf8, 0xcff);

/// Xen's HVM debug console port, which this hypervisor serves as well.
pub const DEBUG_CONSOLE_PORT: u16 = 0xe9;

/// The hardware domain's ports: all, less the hypervisor's devices (as
/// Xen's `dom0_setup_permissions` for a PVH hardware domain), less
/// `disabled` (the `dom0_ioports_disable=` ranges).
pub fn hardware_domain_ports(host: &HostPorts, disabled: &[(u16, u16)]) -> PortRanges {
    let mut p = PortRanges::all();
    // The legacy PICs and their edge/level control: interrupts are the
    // hypervisor's.
    p.deny(0x20, 0x21);
    p.deny(0xa0, 0xa1);
    p.deny(0x4d0, 0x4d1);
    // The PIT and its channel 2 gate / speaker control.
    p.deny(0x40, 0x43);
    p.deny(0x61, 0x61);
    // INIT# / A20M# and IGNNE# control.
    p.deny(0x92, 0x92);
    p.deny(0xf0, 0xf0);
    // The reset control register and PCI configuration (mediated).
    p.deny(PCI_CONFIG_PORTS.0, PCI_CONFIG_PORTS.1);
    // The ISA DMA controllers: a device programmed through them would
    // reach any memory.
    p.deny(0x00, 0x1f);
    p.deny(if host.port80_allowed { 0x81 } else { 0x80 }, 0x8f);
    p.deny(0xc0, 0xdf);
    p.deny(DEBUG_CONSOLE_PORT, DEBUG_CONSOLE_PORT);
    if let Some(t) = host.pm_timer {
        p.deny(t, t.saturating_add(3));
    }
    if let Some(u) = host.console_uart {
        p.deny(u, u.saturating_add(7));
    }
    for &(a, b) in disabled {
        p.deny(a, b);
    }
    p
}

/// Parses `dom0_ioports_disable=`: comma-separated hex ports or ranges
/// (`a-b`), as Xen's option of that name, into `out`; how many. No
/// allocation: boot options are read before the heap exists.
pub fn parse_disabled(s: &str, out: &mut [(u16, u16)]) -> Result<usize, &'static str> {
    let hex = |t: &str| u16::from_str_radix(t.trim().trim_start_matches("0x"), 16).map_err(|_| "not a hex port");
    let mut n = 0;
    for item in s.split(',').filter(|t| !t.trim().is_empty()) {
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (hex(a)?, hex(b)?),
            None => {
                let a = hex(item)?;
                (a, a)
            }
        };
        if a > b {
            return Err("a range whose end is below its start");
        }
        *out.get_mut(n).ok_or("too many ranges")? = (a, b);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_split_and_answer_accesses() {
        let mut p = PortRanges::none();
        p.permit(0x10, 0x1f);
        p.permit(0x30, 0x3f);
        p.permit(0x20, 0x2f);
        assert_eq!(p.ranges(), [(0x10, 0x3f)], "touching ranges merge");
        p.permit(0x100, 0x100);
        p.deny(0x18, 0x18);
        assert_eq!(p.ranges(), [(0x10, 0x17), (0x19, 0x3f), (0x100, 0x100)]);
        assert!(p.contains(0x14, 4));
        assert!(!p.contains(0x16, 4), "crosses the denied 0x18");
        assert!(!p.contains(0x0f, 1));
        assert!(p.contains(0x100, 1) && !p.contains(0x100, 2));
        p.permit(5, 4);
        p.deny(9, 3);
        assert_eq!(p.ranges().len(), 3, "empty ranges change nothing");
        let all = PortRanges::all();
        assert!(all.contains(0xfffc, 4));
        assert!(!all.contains(0xfffe, 4), "an access past port 0xffff");
    }

    #[test]
    fn the_hardware_domain_gets_all_but_the_hypervisors_ports() {
        let host = HostPorts { console_uart: Some(0x3f8), pm_timer: Some(0x608), port80_allowed: true };
        let p = hardware_domain_ports(&host, &[(0x2f8, 0x2ff)]);
        for kept in [0x20, 0xa1, 0x40, 0x43, 0x61, 0x92, 0xf0, 0xcf8, 0xcf9, 0xcfc, 0xcff, 0x00, 0x81, 0xc0, 0xe9] {
            assert!(!p.contains(kept, 1), "port {kept:#x} must stay the hypervisor's");
        }
        for kept in [0x3f8, 0x3ff, 0x608, 0x60b, 0x2f8, 0x2ff, 0x4d0] {
            assert!(!p.contains(kept, 1), "port {kept:#x} must stay the hypervisor's");
        }
        for passed in [0x70, 0x71, 0x80, 0x1f0, 0x3f7, 0x400, 0x60c, 0xc000, 0xffff] {
            assert!(p.contains(passed, 1), "port {passed:#x} belongs to the hardware domain");
        }
        let strict = hardware_domain_ports(&HostPorts::default(), &[]);
        assert!(!strict.contains(0x80, 1) && strict.contains(0x3f8, 1));
    }

    #[test]
    fn the_bitmap_intercepts_exactly_the_ports_outside_the_set() {
        let mut p = PortRanges::none();
        p.permit(0x70, 0x71);
        p.permit(0xfff8, 0xffff);
        let mut bm = alloc::vec![0u8; BITMAP_BYTES + 4];
        p.write_intercept_bitmap(&mut bm);
        let exits = |port: usize| bm[port / 8] & (1 << (port % 8)) != 0;
        assert!(!exits(0x70) && !exits(0x71) && exits(0x6f) && exits(0x72));
        assert!(!exits(0xffff) && exits(0xfff7));
        assert_eq!(bm[BITMAP_BYTES..], [0xff; 4], "bits past port 0xffff stay set");
        assert_eq!((0..0x10000).filter(|&q| !exits(q)).count(), 10);
        // Ranges that start and end inside bytes, and span many.
        let host = HostPorts { console_uart: Some(0x3f8), pm_timer: Some(0x608), port80_allowed: true };
        let p = hardware_domain_ports(&host, &[(0x123, 0x4567)]);
        let mut bm2 = alloc::vec![0u8; BITMAP_BYTES + 4];
        p.write_intercept_bitmap(&mut bm2);
        for port in 0..0x10000usize {
            let exits2 = bm2[port / 8] & (1 << (port % 8)) != 0;
            assert_eq!(exits2, !p.contains(port as u16, 1), "port {port:#x}");
        }
    }

    #[test]
    fn disabled_ranges_parse_as_xen_writes_them() {
        let mut out = [(0, 0); 2];
        assert_eq!(parse_disabled("2f8-2ff,80", &mut out), Ok(2));
        assert_eq!(out, [(0x2f8, 0x2ff), (0x80, 0x80)]);
        assert_eq!(parse_disabled("0x3e8-0x3ef", &mut out), Ok(1));
        assert_eq!(out[0], (0x3e8, 0x3ef));
        assert_eq!(parse_disabled("", &mut out), Ok(0));
        assert!(parse_disabled("300-200", &mut out).is_err());
        assert!(parse_disabled("zz", &mut out).is_err());
        assert!(parse_disabled("10000", &mut out).is_err());
        assert!(parse_disabled("1,2,3", &mut out).is_err(), "more than there is room for");
    }
}
