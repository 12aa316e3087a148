//! The hardware domain's view of PCI configuration space: reads reach the
//! device; writes do too, except those that would let the domain take
//! over interrupt delivery or memory, as Xen's `xen/drivers/vpci/`
//! decides: the MSI and MSI-X capabilities are the hypervisor's (a device
//! interrupt reaches a domain as an event channel, set up with
//! PHYSDEVOP_map_pirq; the domain never picks a host vector), and a BAR
//! may not be moved over RAM, firmware tables or the hypervisor's own
//! devices.
//!
//! The logic only: the device is reached through a [`ConfigSpace`] and
//! the machine's memory through a [`Placement`] check, both given by the
//! caller.

/// A PCI function's configuration space, in 32-bit registers.
pub trait ConfigSpace {
    fn read32(&mut self, reg: u16) -> u32;
    fn write32(&mut self, reg: u16, value: u32);
}

/// Where a BAR may be placed.
pub trait Placement {
    /// Whether memory `[base, base + size)` is free for a device: no RAM,
    /// firmware tables or hypervisor device there.
    fn mmio_ok(&self, base: u64, size: u64) -> bool;
    /// Whether ports `[base, base + size)` all belong to the domain.
    fn ports_ok(&self, base: u16, size: u32) -> bool;
}

pub const COMMAND: u16 = 0x04;
pub const COMMAND_IO: u32 = 1 << 0;
pub const COMMAND_MEMORY: u32 = 1 << 1;
const STATUS_CAP_LIST: u32 = 1 << 20;
const HEADER_TYPE_REG: u16 = 0x0c;
const CAP_PTR: u16 = 0x34;
pub const CAP_MSI: u8 = 0x05;
pub const CAP_MSIX: u8 = 0x11;

/// One BAR as the hypervisor sized it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// Not implemented (reads as zero after sizing), or the upper half of
    /// the 64-bit BAR before it.
    None,
    Io {
        size: u32,
    },
    Mem32 {
        size: u64,
        prefetchable: bool,
    },
    /// A 64-bit memory BAR: this register and the next.
    Mem64 {
        size: u64,
        prefetchable: bool,
    },
    /// The upper half of the 64-bit BAR in the register before.
    Upper,
    /// The expansion ROM BAR.
    Rom {
        size: u64,
    },
}

/// What the hypervisor learnt of a function the first time the domain
/// touched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Header type 0 (a device: six BARs and a ROM at 0x30) or 1 (a
    /// bridge: two BARs and a ROM at 0x38).
    pub header_type: u8,
    pub bars: [Bar; 6],
    pub rom: Bar,
    /// The MSI capability's offset and length (the length depends on its
    /// 64-bit and per-vector-masking flags).
    pub msi: Option<(u16, u16)>,
    /// The MSI-X capability's offset.
    pub msix: Option<u16>,
    /// Where the MSI-X table and pending-bit array live: (BAR, offset,
    /// bytes). Their pages stay the hypervisor's when the BAR is mapped.
    pub msix_table: Option<(u8, u32, u32)>,
    pub msix_pba: Option<(u8, u32, u32)>,
}

/// A memory range a function decodes now, to be mapped at its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioRange {
    pub base: u64,
    pub size: u64,
    pub prefetchable: bool,
}

impl Layout {
    /// Reads the header and capability list and sizes the BARs, with
    /// memory and I/O decoding off meanwhile (the command register is
    /// put back), as Xen's vpci does when a device is added.
    pub fn discover(cfg: &mut dyn ConfigSpace) -> Layout {
        let header_type = ((cfg.read32(HEADER_TYPE_REG) >> 16) & 0x7f) as u8;
        let (nbars, rom_reg) = match header_type {
            0 => (6, 0x30),
            1 => (2, 0x38),
            _ => (0, 0),
        };
        let command = cfg.read32(COMMAND);
        if nbars > 0 {
            cfg.write32(COMMAND, command & 0xffff & !(COMMAND_IO | COMMAND_MEMORY));
        }
        let mut bars = [Bar::None; 6];
        let mut i = 0;
        while i < nbars {
            let reg = 0x10 + 4 * i as u16;
            let orig = cfg.read32(reg);
            cfg.write32(reg, u32::MAX);
            let mask = cfg.read32(reg);
            cfg.write32(reg, orig);
            if orig & 1 == 1 {
                let m = mask & !0x3 & 0xffff;
                bars[i] = if m == 0 { Bar::None } else { Bar::Io { size: (!m & 0xffff) + 1 } };
            } else if (orig >> 1) & 3 == 2 && i + 1 < nbars {
                let hi_reg = reg + 4;
                let orig_hi = cfg.read32(hi_reg);
                cfg.write32(hi_reg, u32::MAX);
                let mask_hi = cfg.read32(hi_reg);
                cfg.write32(hi_reg, orig_hi);
                let m = ((mask_hi as u64) << 32) | (mask & !0xf) as u64;
                let prefetchable = orig & 8 != 0;
                bars[i] = if m == 0 { Bar::None } else { Bar::Mem64 { size: (!m).wrapping_add(1), prefetchable } };
                bars[i + 1] = Bar::Upper;
                i += 1;
            } else {
                let m = mask & !0xf;
                let prefetchable = orig & 8 != 0;
                bars[i] =
                    if m == 0 { Bar::None } else { Bar::Mem32 { size: (!m as u64 + 1) & 0xffff_ffff, prefetchable } };
            }
            i += 1;
        }
        let mut rom = Bar::None;
        if rom_reg != 0 {
            let orig = cfg.read32(rom_reg);
            cfg.write32(rom_reg, 0xffff_f800);
            let m = cfg.read32(rom_reg) & 0xffff_f800;
            cfg.write32(rom_reg, orig);
            if m != 0 {
                rom = Bar::Rom { size: (!m as u64 + 1) & 0xffff_ffff };
            }
        }
        if nbars > 0 {
            cfg.write32(COMMAND, command & 0xffff);
        }
        let (msi, msix) = capabilities(cfg);
        let (mut msix_table, mut msix_pba) = (None, None);
        if let Some(at) = msix {
            let entries = ((cfg.read32(at) >> 16) & 0x7ff) + 1;
            let t = cfg.read32(at + 4);
            let p = cfg.read32(at + 8);
            msix_table = Some(((t & 7) as u8, t & !7, entries * 16));
            msix_pba = Some(((p & 7) as u8, p & !7, entries.div_ceil(64) * 8));
        }
        Layout { header_type, bars, rom, msi, msix, msix_table, msix_pba }
    }

    /// The memory ranges the function decodes now: none unless memory
    /// decoding is on; each memory BAR that is placed (not zero, not
    /// being sized), less the pages of the MSI-X table and pending bits;
    /// the ROM if it is enabled.
    pub fn decoded_ranges(&self, cfg: &mut dyn ConfigSpace) -> alloc::vec::Vec<MmioRange> {
        let mut out = alloc::vec::Vec::new();
        if cfg.read32(COMMAND) & COMMAND_MEMORY == 0 {
            return out;
        }
        for (i, bar) in self.bars.iter().enumerate() {
            let reg = 0x10 + 4 * i as u16;
            let (base, size, prefetchable) = match *bar {
                // A BAR that reads back its size mask is being sized.
                Bar::Mem32 { size, prefetchable } => {
                    let base = (cfg.read32(reg) & !0xf) as u64;
                    if base == !(size - 1) & 0xffff_fff0 {
                        continue;
                    }
                    (base, size, prefetchable)
                }
                Bar::Mem64 { size, prefetchable } => {
                    let (lo, hi) = (cfg.read32(reg), cfg.read32(reg + 4));
                    let base = (hi as u64) << 32 | (lo & !0xf) as u64;
                    if base == !(size - 1) & !0xf {
                        continue;
                    }
                    (base, size, prefetchable)
                }
                _ => continue,
            };
            if base == 0 || size == 0 {
                continue;
            }
            // The MSI-X structures' pages are cut out.
            let mut holes = [None, None];
            for (h, s) in holes.iter_mut().zip([self.msix_table, self.msix_pba]) {
                if let Some((bir, off, len)) = s
                    && bir as usize == i
                {
                    let start = (off as u64) & !0xfff;
                    let end = ((off as u64 + len as u64) + 0xfff) & !0xfff;
                    *h = Some((start.min(size), end.min(size)));
                }
            }
            push_around(&mut out, base, size, prefetchable, &holes);
        }
        if let (Some(reg), Bar::Rom { size }) = (self.rom_reg(), self.rom) {
            let v = cfg.read32(reg);
            let base = (v & 0xffff_f800) as u64;
            if v & 1 == 1 && base != 0 && v & 0xffff_f800 != 0xffff_f800 {
                out.push(MmioRange { base, size, prefetchable: false });
            }
        }
        out
    }

    /// The register of the ROM BAR (none for other header types).
    fn rom_reg(&self) -> Option<u16> {
        match self.header_type {
            0 => Some(0x30),
            1 => Some(0x38),
            _ => None,
        }
    }
}

/// Pushes `[base, base + size)` minus the `holes` (offsets into it,
/// page-aligned, possibly overlapping).
fn push_around(
    out: &mut alloc::vec::Vec<MmioRange>,
    base: u64,
    size: u64,
    prefetchable: bool,
    holes: &[Option<(u64, u64)>; 2],
) {
    let mut cuts: [(u64, u64); 2] = [(size, size); 2];
    for (c, h) in cuts.iter_mut().zip(holes) {
        if let Some(h) = h {
            *c = *h;
        }
    }
    cuts.sort_unstable();
    let mut at = 0;
    for (s, e) in cuts {
        if s > at {
            out.push(MmioRange { base: base + at, size: s - at, prefetchable });
        }
        at = at.max(e);
    }
    if at < size {
        out.push(MmioRange { base: base + at, size: size - at, prefetchable });
    }
}

/// The MSI capability (offset, length) and the MSI-X one (offset).
fn capabilities(cfg: &mut dyn ConfigSpace) -> (Option<(u16, u16)>, Option<u16>) {
    let msi = find_capability(cfg, CAP_MSI).map(|(at, head)| {
        let control = head >> 16;
        let mut len = 10;
        if control & (1 << 7) != 0 {
            len += 4; // 64-bit address
        }
        if control & (1 << 8) != 0 {
            len += 10; // mask and pending bits (with padding)
        }
        (at, len)
    });
    (msi, find_capability(cfg, CAP_MSIX).map(|(at, _)| at))
}

/// Capability `id` in the function's list: its offset and first dword
/// (at most 48 entries followed, so a looping list ends).
pub fn find_capability(cfg: &mut dyn ConfigSpace, id: u8) -> Option<(u16, u32)> {
    if cfg.read32(COMMAND) & STATUS_CAP_LIST == 0 {
        return None;
    }
    let mut at = (cfg.read32(CAP_PTR) & 0xfc) as u16;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let head = cfg.read32(at);
        if head as u8 == id {
            return Some((at, head));
        }
        at = ((head >> 8) & 0xfc) as u16;
    }
    None
}

/// What to do with a write by the hardware domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it to the device.
    Pass,
    /// Drop it (the domain reads the register unchanged), and say why.
    Refuse(&'static str),
}

fn overlaps(a: u16, alen: u16, b: u16, blen: u16) -> bool {
    a < b + blen && b < a + alen
}

/// Decides a write of `size` bytes (1, 2 or 4) of `value` at `reg` (its
/// natural alignment) of a function laid out as `layout`.
pub fn check_write(
    layout: &Layout,
    cfg: &mut dyn ConfigSpace,
    place: &dyn Placement,
    reg: u16,
    size: u16,
    value: u32,
) -> Decision {
    if let Some((at, len)) = layout.msi {
        // The capability's header (id, next) is read-only; the rest is
        // the hypervisor's.
        if overlaps(reg, size, at + 2, len - 2) {
            return Decision::Refuse("MSI is the hypervisor's: PHYSDEVOP_map_pirq sets it up");
        }
    }
    if let Some(at) = layout.msix
        && overlaps(reg, size, at + 2, 2)
    {
        return Decision::Refuse("MSI-X is the hypervisor's: PHYSDEVOP_map_pirq sets it up");
    }
    // The whole register after this write, for BAR checks.
    let dword = reg & !3;
    let merged = |cfg: &mut dyn ConfigSpace| {
        if size == 4 {
            return value;
        }
        let shift = 8 * (reg & 3) as u32;
        let mask = (if size == 2 { 0xffffu32 } else { 0xff }) << shift;
        (cfg.read32(dword) & !mask) | ((value << shift) & mask)
    };
    let nbars = match layout.header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    if (0x10..0x10 + 4 * nbars).contains(&dword) {
        let i = ((dword - 0x10) / 4) as usize;
        let new = merged(cfg);
        return match layout.bars[i] {
            Bar::None => Decision::Pass,
            Bar::Io { size } => {
                let base = new & !3 & 0xffff;
                // All ones is sizing: the BAR then decodes nothing real
                // while software reads its size back.
                if new | 3 == u32::MAX || place.ports_ok(base as u16, size) {
                    Decision::Pass
                } else {
                    Decision::Refuse("an I/O BAR over ports the domain does not own")
                }
            }
            Bar::Mem32 { size, .. } => mem_bar(place, new, new as u64 & !0xf, size),
            Bar::Mem64 { size, .. } => {
                let hi = cfg.read32(dword + 4) as u64;
                mem_bar(place, new, (hi << 32) | (new as u64 & !0xf), size)
            }
            Bar::Upper => match layout.bars.get(i.wrapping_sub(1)) {
                Some(&Bar::Mem64 { size, .. }) => {
                    let lo = cfg.read32(dword - 4) as u64 & !0xf;
                    if new == u32::MAX { Decision::Pass } else { mem_bar(place, 0, ((new as u64) << 32) | lo, size) }
                }
                _ => Decision::Pass,
            },
            Bar::Rom { .. } => Decision::Pass,
        };
    }
    if Some(dword) == layout.rom_reg()
        && let Bar::Rom { size } = layout.rom
    {
        let new = merged(cfg);
        let base = (new & 0xffff_f800) as u64;
        // Sizing writes all address bits; a ROM that does not decode
        // (enable bit clear) is not yet placed.
        if new & 0xffff_f800 == 0xffff_f800 || new & 1 == 0 || place.mmio_ok(base, size) {
            return Decision::Pass;
        }
        return Decision::Refuse("an expansion ROM over RAM or the hypervisor's memory");
    }
    Decision::Pass
}

/// A memory BAR's register written as `raw`, to decode at `base`.
fn mem_bar(place: &dyn Placement, raw: u32, base: u64, size: u64) -> Decision {
    // Sizing (all address bits set) places nothing.
    if raw | 0xf == u32::MAX || base == 0 || place.mmio_ok(base, size) {
        Decision::Pass
    } else {
        Decision::Refuse("a memory BAR over RAM or the hypervisor's memory")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function with real BAR sizing: each BAR register keeps only the
    /// bits its size allows.
    struct Fake {
        regs: [u32; 64],
        /// Writable-bit masks of registers 0x10..0x28 and the ROM.
        bar_masks: [u32; 6],
        rom_mask: u32,
    }

    impl ConfigSpace for Fake {
        fn read32(&mut self, reg: u16) -> u32 {
            self.regs[reg as usize / 4]
        }
        fn write32(&mut self, reg: u16, value: u32) {
            let i = reg as usize / 4;
            if (4..10).contains(&i) {
                let m = self.bar_masks[i - 4];
                self.regs[i] = (self.regs[i] & !m) | (value & m);
            } else if i == 1 {
                // Status bits are read-only or write-one-to-clear.
                self.regs[i] = (self.regs[i] & 0xffff_0000) | (value & 0xffff);
            } else if i == 12 {
                self.regs[i] = (self.regs[i] & !self.rom_mask) | (value & self.rom_mask);
            } else {
                self.regs[i] = value;
            }
        }
    }

    struct Machine;
    impl Placement for Machine {
        fn mmio_ok(&self, base: u64, size: u64) -> bool {
            // RAM below 2 GiB and the local APIC page are not.
            base >= 0x8000_0000 && !(base < 0xfee0_1000 && base + size > 0xfee0_0000)
        }
        fn ports_ok(&self, base: u16, size: u32) -> bool {
            base as u32 + size <= 0x3f8 || base >= 0x400
        }
    }

    /// A device: BAR0 16 KiB 32-bit memory, BAR1 32 I/O ports, BAR2+3 a
    /// 64-bit prefetchable 1 MiB BAR, a 64 KiB ROM; MSI (64-bit,
    /// maskable) at 0x50 and MSI-X at 0x70.
    fn device() -> Fake {
        let mut f = Fake { regs: [0; 64], bar_masks: [0; 6], rom_mask: 0 };
        f.regs[0] = 0x1234_1af4;
        f.regs[1] = STATUS_CAP_LIST | COMMAND_MEMORY | COMMAND_IO;
        f.regs[4] = 0xfebf_0000;
        f.bar_masks[0] = !(16 * 1024 - 1);
        f.regs[5] = 0xc001;
        f.bar_masks[1] = 0xffe0;
        f.regs[6] = 0xe000_000c;
        f.bar_masks[2] = !(1024 * 1024 - 1);
        f.regs[7] = 0x1;
        f.bar_masks[3] = u32::MAX;
        f.regs[12] = 0xfeb0_0000;
        f.rom_mask = !(64 * 1024 - 1) | 1;
        f.regs[CAP_PTR as usize / 4] = 0x50;
        f.regs[0x50 / 4] = CAP_MSI as u32 | 0x70 << 8 | ((1 << 7) | (1 << 8)) << 16;
        f.regs[0x70 / 4] = CAP_MSIX as u32;
        f
    }

    #[test]
    fn discovery_sizes_bars_finds_capabilities_and_restores_the_device() {
        let mut f = device();
        let before = f.regs;
        let l = Layout::discover(&mut f);
        assert_eq!(l.header_type, 0);
        assert_eq!(l.bars[0], Bar::Mem32 { size: 16 * 1024, prefetchable: false });
        assert_eq!(l.bars[1], Bar::Io { size: 32 });
        assert_eq!(l.bars[2], Bar::Mem64 { size: 1024 * 1024, prefetchable: true });
        assert_eq!(l.bars[3], Bar::Upper);
        assert_eq!(l.bars[4], Bar::None);
        assert_eq!(l.rom, Bar::Rom { size: 64 * 1024 });
        assert_eq!(l.msi, Some((0x50, 24)));
        assert_eq!(l.msix, Some(0x70));
        assert_eq!(f.regs, before, "every register as it was");
    }

    #[test]
    fn decoded_ranges_leave_out_the_msix_pages_and_what_does_not_decode() {
        let mut f = device();
        // MSI-X: 64 entries in BAR2 at 0x2000, pending bits at 0x3000.
        f.regs[0x70 / 4] = CAP_MSIX as u32 | 63 << 16;
        f.regs[0x74 / 4] = 0x2000 | 2;
        f.regs[0x78 / 4] = 0x3000 | 2;
        let l = Layout::discover(&mut f);
        assert_eq!(l.msix_table, Some((2, 0x2000, 64 * 16)));
        assert_eq!(l.msix_pba, Some((2, 0x3000, 8)));
        let r = |base, size, prefetchable| MmioRange { base, size, prefetchable };
        let bar2 = 0x1_e000_0000;
        assert_eq!(
            l.decoded_ranges(&mut f),
            [r(0xfebf_0000, 16 * 1024, false), r(bar2, 0x2000, true), r(bar2 + 0x4000, (1 << 20) - 0x4000, true)]
        );
        // The ROM once enabled.
        f.regs[12] |= 1;
        assert_eq!(l.decoded_ranges(&mut f).last(), Some(&r(0xfeb0_0000, 64 * 1024, false)));
        // A BAR being sized decodes nothing; memory decoding off, nothing.
        f.regs[4] = 0xffff_c000;
        assert!(!l.decoded_ranges(&mut f).iter().any(|x| x.base == 0xffff_c000));
        f.regs[1] &= !COMMAND_MEMORY;
        assert!(l.decoded_ranges(&mut f).is_empty());
    }

    #[test]
    fn a_looping_capability_list_ends() {
        let mut f = device();
        f.regs[0x70 / 4] = CAP_MSIX as u32 | 0x50 << 8;
        let l = Layout::discover(&mut f);
        assert_eq!((l.msi.map(|m| m.0), l.msix), (Some(0x50), Some(0x70)));
    }

    #[test]
    fn msi_and_msix_writes_are_refused_the_rest_passes() {
        let mut f = device();
        let l = Layout::discover(&mut f);
        let mut w = |reg, size, value| check_write(&l, &mut f, &Machine, reg, size, value);
        assert!(matches!(w(0x52, 2, 1), Decision::Refuse(_)), "MSI enable");
        assert!(matches!(w(0x54, 4, 0xfee0_0000), Decision::Refuse(_)), "MSI address");
        assert!(matches!(w(0x64, 4, 0), Decision::Refuse(_)), "MSI mask bits, 24 bytes in");
        assert_eq!(w(0x68, 4, 0), Decision::Pass, "past the MSI capability");
        assert!(matches!(w(0x73, 1, 0x80), Decision::Refuse(_)), "MSI-X enable");
        assert_eq!(w(0x70, 1, 0), Decision::Pass, "the read-only capability id");
        assert_eq!(w(COMMAND, 2, 7), Decision::Pass, "bus mastering, decoding");
        assert_eq!(w(0x3c, 1, 11), Decision::Pass, "interrupt line");
    }

    #[test]
    fn bars_move_anywhere_but_over_ram_or_the_hypervisors_devices() {
        let mut f = device();
        let l = Layout::discover(&mut f);
        let mut w = |reg, size, value| check_write(&l, &mut f, &Machine, reg, size, value);
        assert_eq!(w(0x10, 4, u32::MAX), Decision::Pass, "sizing");
        assert_eq!(w(0x10, 4, 0xc000_0000), Decision::Pass);
        assert!(matches!(w(0x10, 4, 0x1000_0000), Decision::Refuse(_)), "over RAM");
        assert!(matches!(w(0x10, 4, 0xfedf_f000), Decision::Refuse(_)), "16 KiB reaching the local APIC");
        assert!(matches!(w(0x12, 2, 0x1000), Decision::Refuse(_)), "the upper half of BAR0 alone, to RAM");
        assert_eq!(w(0x14, 4, u32::MAX), Decision::Pass, "I/O sizing");
        assert_eq!(w(0x14, 4, 0xd001), Decision::Pass);
        assert!(matches!(w(0x14, 4, 0x3e1), Decision::Refuse(_)), "I/O over the console UART");
        // The 64-bit BAR: its upper half moves it too.
        assert_eq!(w(0x1c, 4, 0x1), Decision::Pass, "to 4 GiB + 3.5 GiB");
        assert_eq!(w(0x18, 4, 0x1000_000c), Decision::Pass, "4 GiB + 256 MiB: the upper half is 1");
        assert_eq!(w(0x1c, 4, 0), Decision::Pass, "upper half 0: at 3.5 GiB");
        // The ROM: only once it decodes.
        assert_eq!(w(0x30, 4, 0x1000_0000), Decision::Pass, "not decoding");
        assert!(matches!(w(0x30, 4, 0x1000_0001), Decision::Refuse(_)), "decoding over RAM");
        assert_eq!(w(0x30, 4, 0xfeb0_0001), Decision::Pass);
        // With the upper half 0 in the device, the low half decides.
        f.regs[7] = 0;
        assert!(matches!(check_write(&l, &mut f, &Machine, 0x18, 4, 0x1000_000c), Decision::Refuse(_)));
        f.regs[6] = 0x1000_000c;
        assert!(matches!(check_write(&l, &mut f, &Machine, 0x1c, 4, 0), Decision::Refuse(_)), "upper half kept 0");
    }
}
