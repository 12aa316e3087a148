//! The hypervisor's own access to PCI configuration space, through
//! configuration mechanism #1 (ports 0xCF8/0xCFC). One lock serialises
//! every user (the ACPI power code, the hardware domain's accesses it
//! serves), since an address written to 0xCF8 holds until the data port
//! is used.

use crate::arch::x86_64::cpu;
use spin::Mutex;

static CF8: Mutex<()> = Mutex::new(());

/// A function's address: bus, device (0-31), function (0-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf(pub u16);

impl Bdf {
    pub fn new(bus: u8, dev: u8, func: u8) -> Bdf {
        Bdf((bus as u16) << 8 | ((dev as u16 & 0x1f) << 3) | (func as u16 & 7))
    }
    pub fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub fn dev(self) -> u8 {
        ((self.0 >> 3) & 0x1f) as u8
    }
    pub fn func(self) -> u8 {
        (self.0 & 7) as u8
    }
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus(), self.dev(), self.func())
    }
}

fn address(bdf: Bdf, reg: u16) -> u32 {
    0x8000_0000 | (bdf.0 as u32) << 8 | (reg as u32 & 0xfc)
}

/// Reads `size` bytes (1, 2 or 4, naturally aligned) at `reg` (below 256).
pub fn read(bdf: Bdf, reg: u16, size: u16) -> u32 {
    let _g = CF8.lock();
    cpu::outl(0xcf8, address(bdf, reg));
    let port = 0xcfc + (reg & 3);
    match size {
        1 => cpu::inb(port) as u32,
        2 => cpu::inw(port) as u32,
        _ => cpu::inl(0xcfc),
    }
}

/// Writes `size` bytes (1, 2 or 4, naturally aligned) at `reg`.
pub fn write(bdf: Bdf, reg: u16, size: u16, value: u32) {
    let _g = CF8.lock();
    cpu::outl(0xcf8, address(bdf, reg));
    let port = 0xcfc + (reg & 3);
    match size {
        1 => cpu::outb(port, value as u8),
        2 => cpu::outw(port, value as u16),
        _ => cpu::outl(0xcfc, value),
    }
}

/// Capability `id` of function `bdf`: its offset and first dword (None if
/// the function is absent or has not that one).
pub fn find_capability(bdf: Bdf, id: u8) -> Option<(u16, u32)> {
    if read(bdf, 0, 2) == 0xffff {
        return None;
    }
    crate::passthrough::vpci::find_capability(&mut Function(bdf), id)
}

/// One function's configuration space, for `vpci`.
pub struct Function(pub Bdf);

impl crate::passthrough::vpci::ConfigSpace for Function {
    fn read32(&mut self, reg: u16) -> u32 {
        read(self.0, reg & !3, 4)
    }
    fn write32(&mut self, reg: u16, value: u32) {
        write(self.0, reg & !3, 4, value)
    }
}
