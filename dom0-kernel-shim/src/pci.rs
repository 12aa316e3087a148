//! The PCI bus as dom0 sees it: every function found from bus 0 down
//! through its bridges, with its ids, class, BARs (sized the way Linux
//! sizes them, decoding off meanwhile) and interrupt capabilities.
//!
//! The logic only: configuration space is reached through a
//! [`ConfigAccess`] (the hypervisor's mediated CF8/CFC ports on the
//! machine, a fake in the tests).

use core::fmt;

/// A function's address: bus, device (0-31), function (0-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// Configuration space, 32 bits at a time.
pub trait ConfigAccess {
    fn read32(&mut self, bdf: Bdf, reg: u16) -> u32;
    fn write32(&mut self, bdf: Bdf, reg: u16, value: u32);
}

pub const COMMAND: u16 = 0x04;
pub const COMMAND_IO: u32 = 1 << 0;
pub const COMMAND_MEMORY: u32 = 1 << 1;
pub const COMMAND_BUS_MASTER: u32 = 1 << 2;
const STATUS_CAP_LIST: u32 = 1 << 20;
const CAP_MSI: u8 = 0x05;
const CAP_MSIX: u8 = 0x11;

/// One BAR as sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    None,
    Io { base: u16, size: u32 },
    Mem { base: u64, size: u64, prefetchable: bool, wide: bool },
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bar::None => f.write_str("none"),
            Bar::Io { base, size } => write!(f, "I/O {base:#x} ({size} ports)"),
            Bar::Mem { base, size, prefetchable, wide } => {
                write!(f, "memory {base:#x} (")?;
                if size >= 1 << 20 {
                    write!(f, "{} MiB", size >> 20)?;
                } else {
                    write!(f, "{} KiB", size >> 10)?;
                }
                write!(
                    f,
                    ", {}{})",
                    if wide { "64-bit" } else { "32-bit" },
                    if prefetchable { ", prefetchable" } else { "" }
                )
            }
        }
    }
}

/// A function found on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub revision: u8,
    pub header_type: u8,
    /// INTx pin (1-4 for A-D, 0 none).
    pub int_pin: u8,
    pub bars: [Bar; 6],
    pub msi: bool,
    pub msix: bool,
}

impl Function {
    pub fn class_name(&self) -> &'static str {
        class_name(self.class, self.subclass)
    }
}

/// The PCI class code's name, as lspci prints it.
pub fn class_name(class: u8, subclass: u8) -> &'static str {
    match (class, subclass) {
        (0x01, 0x00) => "SCSI storage controller",
        (0x01, 0x01) => "IDE interface",
        (0x01, 0x06) => "SATA controller",
        (0x01, 0x08) => "Non-Volatile memory controller",
        (0x01, _) => "Mass storage controller",
        (0x02, 0x00) => "Ethernet controller",
        (0x02, _) => "Network controller",
        (0x03, 0x00) => "VGA compatible controller",
        (0x03, _) => "Display controller",
        (0x04, _) => "Multimedia controller",
        (0x05, _) => "Memory controller",
        (0x06, 0x00) => "Host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, _) => "Bridge",
        (0x07, _) => "Communication controller",
        (0x08, _) => "System peripheral",
        (0x0c, 0x03) => "USB controller",
        (0x0c, 0x05) => "SMBus",
        (0x0c, _) => "Serial bus controller",
        (0x00, _) => "Unclassified device",
        (0xff, _) => "Unassigned class",
        _ => "Device",
    }
}

/// Calls `found` for every function reachable from bus 0, in bus, device,
/// function order per bus, a bridge's buses right after the bridge.
/// Each bus is scanned once, so a bridge naming an earlier bus (or
/// itself) as its secondary cannot loop.
pub fn enumerate(cfg: &mut dyn ConfigAccess, found: &mut dyn FnMut(&Function)) {
    let mut seen = [false; 256];
    scan_bus(cfg, 0, &mut seen, found);
}

fn scan_bus(cfg: &mut dyn ConfigAccess, bus: u8, seen: &mut [bool; 256], found: &mut dyn FnMut(&Function)) {
    if core::mem::replace(&mut seen[bus as usize], true) {
        return;
    }
    for dev in 0..32 {
        let f0 = Bdf { bus, dev, func: 0 };
        if cfg.read32(f0, 0) & 0xffff == 0xffff {
            continue;
        }
        let multi = (cfg.read32(f0, 0x0c) >> 16) & 0x80 != 0;
        for func in 0..if multi { 8 } else { 1 } {
            let bdf = Bdf { bus, dev, func };
            let id = cfg.read32(bdf, 0);
            if id & 0xffff == 0xffff {
                continue;
            }
            let f = probe(cfg, bdf, id);
            found(&f);
            if f.header_type == 1 {
                let secondary = (cfg.read32(bdf, 0x18) >> 8) as u8;
                if secondary != 0 {
                    scan_bus(cfg, secondary, seen, found);
                }
            }
        }
    }
}

fn probe(cfg: &mut dyn ConfigAccess, bdf: Bdf, id: u32) -> Function {
    let class = cfg.read32(bdf, 0x08);
    let header_type = ((cfg.read32(bdf, 0x0c) >> 16) & 0x7f) as u8;
    let int_pin = (cfg.read32(bdf, 0x3c) >> 8) as u8;
    let nbars = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    let bars = size_bars(cfg, bdf, nbars);
    let (msi, msix) = capabilities(cfg, bdf);
    Function {
        bdf,
        vendor: id as u16,
        device: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        prog_if: (class >> 8) as u8,
        revision: class as u8,
        header_type,
        int_pin,
        bars,
        msi,
        msix,
    }
}

/// Sizes the first `n` BARs: all ones written, the size read back, the
/// value put back; decoding off meanwhile so that the all-ones address
/// never decodes (Linux's `__pci_read_base` does the same).
fn size_bars(cfg: &mut dyn ConfigAccess, bdf: Bdf, n: usize) -> [Bar; 6] {
    let mut bars = [Bar::None; 6];
    if n == 0 {
        return bars;
    }
    let command = cfg.read32(bdf, COMMAND) & 0xffff;
    cfg.write32(bdf, COMMAND, command & !(COMMAND_IO | COMMAND_MEMORY));
    let mut i = 0;
    while i < n {
        let reg = 0x10 + 4 * i as u16;
        let orig = cfg.read32(bdf, reg);
        cfg.write32(bdf, reg, u32::MAX);
        let mask = cfg.read32(bdf, reg);
        cfg.write32(bdf, reg, orig);
        if orig & 1 == 1 {
            let m = mask & 0xffff & !3;
            if m != 0 {
                bars[i] = Bar::Io { base: (orig & 0xfffc) as u16, size: (!m & 0xffff) + 1 };
            }
        } else if (orig >> 1) & 3 == 2 && i + 1 < n {
            let hi = cfg.read32(bdf, reg + 4);
            cfg.write32(bdf, reg + 4, u32::MAX);
            let mask_hi = cfg.read32(bdf, reg + 4);
            cfg.write32(bdf, reg + 4, hi);
            let m = (mask_hi as u64) << 32 | (mask & !0xf) as u64;
            if m != 0 {
                bars[i] = Bar::Mem {
                    base: (hi as u64) << 32 | (orig & !0xf) as u64,
                    size: (!m).wrapping_add(1),
                    prefetchable: orig & 8 != 0,
                    wide: true,
                };
            }
            i += 1;
        } else {
            let m = mask & !0xf;
            if m != 0 {
                bars[i] = Bar::Mem {
                    base: (orig & !0xf) as u64,
                    size: (!m as u64 + 1) & 0xffff_ffff,
                    prefetchable: orig & 8 != 0,
                    wide: false,
                };
            }
        }
        i += 1;
    }
    cfg.write32(bdf, COMMAND, command);
    bars
}

/// Whether the function has an MSI and an MSI-X capability.
fn capabilities(cfg: &mut dyn ConfigAccess, bdf: Bdf) -> (bool, bool) {
    let (mut msi, mut msix) = (false, false);
    if cfg.read32(bdf, COMMAND) & STATUS_CAP_LIST == 0 {
        return (false, false);
    }
    let mut at = (cfg.read32(bdf, 0x34) & 0xfc) as u16;
    for _ in 0..48 {
        if at < 0x40 {
            break;
        }
        let head = cfg.read32(bdf, at);
        match head as u8 {
            CAP_MSI => msi = true,
            CAP_MSIX => msix = true,
            _ => {}
        }
        at = ((head >> 8) & 0xfc) as u16;
    }
    (msi, msix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// Functions with configuration registers and BAR write masks.
    #[derive(Default)]
    struct Bus {
        regs: BTreeMap<(Bdf, u16), u32>,
        masks: BTreeMap<(Bdf, u16), u32>,
        writes: Vec<(Bdf, u16, u32)>,
    }

    impl ConfigAccess for Bus {
        fn read32(&mut self, bdf: Bdf, reg: u16) -> u32 {
            match self.regs.get(&(bdf, 0)) {
                Some(_) => self.regs.get(&(bdf, reg)).copied().unwrap_or(0),
                None => u32::MAX,
            }
        }
        fn write32(&mut self, bdf: Bdf, reg: u16, value: u32) {
            self.writes.push((bdf, reg, value));
            let m = self.masks.get(&(bdf, reg)).copied().unwrap_or(if reg == COMMAND { 0xffff } else { 0 });
            let r = self.regs.entry((bdf, reg)).or_insert(0);
            *r = (*r & !m) | (value & m);
        }
    }

    fn at(bus: u8, dev: u8, func: u8) -> Bdf {
        Bdf { bus, dev, func }
    }

    impl Bus {
        fn add(&mut self, bdf: Bdf, id: u32, class: u32, header: u32) {
            self.regs.insert((bdf, 0), id);
            self.regs.insert((bdf, 0x08), class);
            self.regs.insert((bdf, 0x0c), header << 16);
        }
        fn bar(&mut self, bdf: Bdf, reg: u16, value: u32, mask: u32) {
            self.regs.insert((bdf, reg), value);
            self.masks.insert((bdf, reg), mask);
        }
    }

    fn machine() -> Bus {
        let mut b = Bus::default();
        b.add(at(0, 0, 0), 0x1237_8086, 0x0600_0002, 0);
        // A NIC: 128 KiB memory BAR, 32 I/O ports, MSI-X capability.
        b.add(at(0, 2, 0), 0x10d3_8086, 0x0200_0000, 0);
        b.bar(at(0, 2, 0), 0x10, 0xfeb8_0000, !(128 * 1024 - 1));
        b.bar(at(0, 2, 0), 0x14, 0xc041, 0xffe0 | 1);
        b.regs.insert((at(0, 2, 0), COMMAND), STATUS_CAP_LIST | 7);
        b.regs.insert((at(0, 2, 0), 0x34), 0x50);
        b.regs.insert((at(0, 2, 0), 0x50), CAP_MSI as u32 | 0xa0 << 8);
        b.regs.insert((at(0, 2, 0), 0xa0), CAP_MSIX as u32);
        // A multi-function device, function 0 and 3.
        b.add(at(0, 3, 0), 0x0001_1af4, 0x0100_0000, 0x80);
        b.add(at(0, 3, 3), 0x0002_1af4, 0x0108_0200, 0);
        // A 64-bit prefetchable 16 MiB BAR at 2 GiB + 4 GiB.
        b.bar(at(0, 3, 3), 0x10, 0x8000_000c, !(16 << 20) + 1);
        b.bar(at(0, 3, 3), 0x14, 0x1, u32::MAX);
        // A bridge to bus 1, and one naming bus 0 again (must not loop).
        b.add(at(0, 4, 0), 0x0001_1b36, 0x0604_0000, 1);
        b.regs.insert((at(0, 4, 0), 0x18), 0x0001_0100);
        b.add(at(1, 0, 0), 0x0005_1b36, 0x00ff_0000, 0);
        b.add(at(1, 1, 0), 0x0001_1b36, 0x0604_0000, 1);
        b.regs.insert((at(1, 1, 0), 0x18), 0x0000_0001);
        b
    }

    #[test]
    fn every_function_is_found_once_in_bus_order_with_its_class() {
        let mut b = machine();
        let mut got = Vec::new();
        enumerate(&mut b, &mut |f| got.push((f.bdf, f.vendor, f.device, f.class_name())));
        assert_eq!(
            got,
            [
                (at(0, 0, 0), 0x8086, 0x1237, "Host bridge"),
                (at(0, 2, 0), 0x8086, 0x10d3, "Ethernet controller"),
                (at(0, 3, 0), 0x1af4, 0x0001, "SCSI storage controller"),
                (at(0, 3, 3), 0x1af4, 0x0002, "Non-Volatile memory controller"),
                (at(0, 4, 0), 0x1b36, 0x0001, "PCI bridge"),
                (at(1, 0, 0), 0x1b36, 0x0005, "Unclassified device"),
                (at(1, 1, 0), 0x1b36, 0x0001, "PCI bridge"),
            ]
        );
    }

    #[test]
    fn bars_are_sized_with_decoding_off_and_put_back() {
        let mut b = machine();
        let before = b.regs.clone();
        let mut nic = None;
        let mut nvme = None;
        enumerate(&mut b, &mut |f| match f.bdf {
            Bdf { bus: 0, dev: 2, func: 0 } => nic = Some(f.clone()),
            Bdf { bus: 0, dev: 3, func: 3 } => nvme = Some(f.clone()),
            _ => {}
        });
        let nic = nic.expect("the NIC");
        assert_eq!(nic.bars[0], Bar::Mem { base: 0xfeb8_0000, size: 128 * 1024, prefetchable: false, wide: false });
        assert_eq!(nic.bars[1], Bar::Io { base: 0xc040, size: 32 });
        assert_eq!(nic.bars[2], Bar::None);
        assert!(nic.msi && nic.msix);
        let nvme = nvme.expect("the NVMe function");
        assert_eq!(nvme.bars[0], Bar::Mem { base: 0x1_8000_0000, size: 16 << 20, prefetchable: true, wide: true });
        assert!(!nvme.msi && !nvme.msix);
        // (Registers that read as zero may have been written as zero.)
        let set =
            |m: &BTreeMap<(Bdf, u16), u32>| m.iter().filter(|e| *e.1 != 0).map(|(k, v)| (*k, *v)).collect::<Vec<_>>();
        assert_eq!(set(&b.regs), set(&before), "every register as it was");
        // Decoding was off whenever a BAR held all ones.
        let mut command = 7;
        for &(bdf, reg, v) in &b.writes {
            if bdf == at(0, 2, 0) && reg == COMMAND {
                command = v;
            }
            if bdf == at(0, 2, 0) && v == u32::MAX {
                assert_eq!(command & (COMMAND_IO | COMMAND_MEMORY), 0, "sizing with decoding on");
            }
        }
        assert_eq!(
            format!("{} / {}", nic.bars[0], nvme.bars[0]),
            "memory 0xfeb80000 (128 KiB, 32-bit) / memory 0x180000000 (16 MiB, 64-bit, prefetchable)"
        );
    }
}
