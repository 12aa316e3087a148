//! Reading the MADT and FADT (bare metal).

use super::AcpiRoot;
use super::aml::{SleepType, find_s5};
use crate::arch::x86_64::cpu;
use crate::mm::phys::{is_reachable, map_mmio, phys_to_virt};
use crate::mm::ranges::Range;
use crate::passthrough::pci::{self, Bdf};
use ::acpi::address::{AddressSpace, GenericAddress};
use ::acpi::fadt::Fadt;
use ::acpi::madt::{Madt, MadtEntry};
use ::acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

/// Maps tables through the direct map, or uncached device mappings for
/// tables outside it.
#[derive(Clone, Copy)]
pub struct Handler;

impl AcpiHandler for Handler {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let range = Range::from_len(phys as u64, size as u64);
        let virt =
            if is_reachable(range) { phys_to_virt(phys as u64) } else { map_mmio(phys as u64, size as u64).ok() };
        let virt = virt.expect("cannot map an ACPI table");
        // SAFETY: `virt` maps `size` bytes at `phys` (direct map or a fresh
        // device mapping) and is not null.
        unsafe { PhysicalMapping::new(phys, NonNull::new_unchecked(virt as *mut T), size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // Direct-map addresses need no unmapping; device mappings of tables
        // are few and kept.
    }
}

#[derive(Debug)]
pub enum AcpiError {
    Tables(::acpi::AcpiError),
    NoMadt,
    MalformedMadt { offset: usize },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::Tables(e) => write!(f, "ACPI tables unreadable: {e:?}"),
            AcpiError::NoMadt => f.write_str("no MADT (APIC table): cannot enumerate CPUs"),
            AcpiError::MalformedMadt { offset } => write!(f, "MADT entry at offset {offset} is malformed"),
        }
    }
}

/// A register named by an ACPI generic address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    Io {
        port: u16,
        width: u8,
    },
    Memory {
        address: u64,
        width: u8,
    },
    /// PCI configuration space of segment 0, bus 0.
    Pci {
        device: u8,
        function: u8,
        offset: u16,
        width: u8,
    },
}

/// The access size for a PCI register `width` bits wide at `offset`: as
/// wide as asked where aligned, else a byte.
fn pci_size(width: u8, offset: u16) -> u16 {
    match width {
        32 if offset & 3 == 0 => 4,
        16 if offset & 1 == 0 => 2,
        _ => 1,
    }
}

impl Register {
    fn from_generic(g: &GenericAddress, default_width: u8) -> Option<Register> {
        if g.address == 0 {
            return None;
        }
        let width = if g.bit_width == 0 { default_width } else { g.bit_width };
        match g.address_space {
            AddressSpace::SystemIo => u16::try_from(g.address).ok().map(|port| Register::Io { port, width }),
            AddressSpace::SystemMemory => Some(Register::Memory { address: g.address, width }),
            AddressSpace::PciConfigSpace => Some(Register::Pci {
                device: (g.address >> 32) as u8,
                function: (g.address >> 16) as u8,
                offset: g.address as u16,
                width,
            }),
            _ => None,
        }
    }

    pub fn read(&self) -> u64 {
        match *self {
            Register::Io { port, width } => match width {
                8 => cpu::inb(port) as u64,
                16 => cpu::inw(port) as u64,
                _ => cpu::inl(port) as u64,
            },
            Register::Memory { address, width } => match map_mmio(address, 8) {
                // SAFETY: a freshly mapped, uncached register the FADT names.
                Ok(v) => unsafe {
                    match width {
                        8 => core::ptr::read_volatile(v as *const u8) as u64,
                        16 => core::ptr::read_volatile(v as *const u16) as u64,
                        32 => core::ptr::read_volatile(v as *const u32) as u64,
                        _ => core::ptr::read_volatile(v as *const u64),
                    }
                },
                Err(_) => 0,
            },
            Register::Pci { device, function, offset, width } => {
                pci::read(Bdf::new(0, device, function), offset & 0xff, pci_size(width, offset)) as u64
            }
        }
    }

    pub fn write(&self, value: u64) {
        match *self {
            Register::Io { port, width } => match width {
                8 => cpu::outb(port, value as u8),
                16 => cpu::outw(port, value as u16),
                _ => cpu::outl(port, value as u32),
            },
            Register::Memory { address, width } => {
                if let Ok(v) = map_mmio(address, 8) {
                    // SAFETY: a freshly mapped, uncached register the FADT names.
                    unsafe {
                        match width {
                            8 => core::ptr::write_volatile(v as *mut u8, value as u8),
                            16 => core::ptr::write_volatile(v as *mut u16, value as u16),
                            32 => core::ptr::write_volatile(v as *mut u32, value as u32),
                            _ => core::ptr::write_volatile(v as *mut u64, value),
                        }
                    }
                }
            }
            Register::Pci { device, function, offset, width } => {
                pci::write(Bdf::new(0, device, function), offset & 0xff, pci_size(width, offset), value as u32)
            }
        }
    }
}

/// What power control needs from the FADT and DSDT.
#[derive(Debug, Clone, Copy)]
pub struct PowerInfo {
    pub pm1a_control: Option<Register>,
    pub pm1b_control: Option<Register>,
    pub sleep_control: Option<Register>,
    pub s5: Option<SleepType>,
    pub reset: Option<(Register, u8)>,
    pub smi_command: u32,
    pub acpi_enable: u8,
    pub hw_reduced: bool,
    pub pm_timer: Option<Register>,
    pub pm_timer_32bit: bool,
    pub sci_irq: u16,
}

#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub apic_id: u32,
    pub acpi_uid: u32,
    pub enabled: bool,
    pub online_capable: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Override {
    pub irq: u8,
    pub gsi: u32,
    pub flags: u16,
}

pub struct Platform {
    pub revision: u8,
    pub oem_id: [u8; 6],
    pub tables: Vec<([u8; 4], u64, u32)>,
    pub lapic_address: u64,
    pub has_8259: bool,
    pub cpus: Vec<Cpu>,
    pub ioapics: Vec<IoApic>,
    pub overrides: Vec<Override>,
    pub power: Option<PowerInfo>,
    /// The HPET's register block, if the firmware lists one.
    pub hpet: Option<u64>,
}

static POWER: spin::Once<PowerInfo> = spin::Once::new();

/// Power-control registers, once the FADT has been read.
pub fn power_info() -> Option<&'static PowerInfo> {
    POWER.get()
}

/// Reads the MADT and FADT. Needs the direct map and the heap.
pub fn parse(root: &AcpiRoot) -> Result<Platform, AcpiError> {
    // SAFETY: the address comes from the RSDP the boot loader passed; the
    // crate validates signature and checksum before trusting contents, and
    // the handler maps whatever it asks for.
    let tables = unsafe { AcpiTables::from_rsdt(Handler, root.revision, root.table_address as usize) }
        .map_err(AcpiError::Tables)?;
    let mut p = Platform {
        revision: root.revision,
        oem_id: [0; 6],
        tables: Vec::new(),
        lapic_address: 0xfee0_0000,
        has_8259: false,
        cpus: Vec::new(),
        ioapics: Vec::new(),
        overrides: Vec::new(),
        power: None,
        hpet: None,
    };
    p.hpet = ::acpi::HpetInfo::new(&tables).ok().map(|h| h.base_address as u64).filter(|a| *a != 0);
    for h in tables.headers() {
        p.tables.push((h.signature.as_str().as_bytes().try_into().unwrap_or(*b"????"), 0, h.length));
        if p.oem_id == [0; 6] {
            p.oem_id = h.oem_id;
        }
    }

    let madt = tables.find_table::<Madt>().map_err(|_| AcpiError::NoMadt)?;
    check_madt_entries(&madt)?;
    p.lapic_address = madt.get().local_apic_address as u64;
    p.has_8259 = madt.get().supports_8259();
    for e in madt.get().entries() {
        match e {
            MadtEntry::LocalApic(l) => p.cpus.push(Cpu {
                apic_id: l.apic_id as u32,
                acpi_uid: l.processor_id as u32,
                enabled: l.flags & 1 != 0,
                online_capable: l.flags & 2 != 0,
            }),
            MadtEntry::LocalX2Apic(l) => p.cpus.push(Cpu {
                apic_id: l.x2apic_id,
                acpi_uid: l.processor_uid,
                enabled: l.flags & 1 != 0,
                online_capable: l.flags & 2 != 0,
            }),
            MadtEntry::IoApic(io) => p.ioapics.push(IoApic {
                id: io.io_apic_id,
                address: io.io_apic_address,
                gsi_base: io.global_system_interrupt_base,
            }),
            MadtEntry::InterruptSourceOverride(o) => {
                p.overrides.push(Override { irq: o.irq, gsi: o.global_system_interrupt, flags: o.flags })
            }
            MadtEntry::LocalApicAddressOverride(o) => p.lapic_address = o.local_apic_address,
            _ => {}
        }
    }

    if let Ok(fadt) = tables.find_table::<Fadt>() {
        let power = power_from_fadt(&fadt);
        POWER.call_once(|| power);
        p.power = Some(power);
    }
    Ok(p)
}

/// The `acpi` crate trusts entry lengths; check them first so a corrupt
/// MADT is an error rather than a hang or an out-of-bounds read.
fn check_madt_entries(madt: &PhysicalMapping<Handler, Madt>) -> Result<(), AcpiError> {
    let len = madt.get().header.length as usize;
    const ENTRIES: usize = 44;
    // SAFETY: the crate mapped the whole table (`length` bytes) and checked
    // its checksum over those bytes.
    let bytes = unsafe { core::slice::from_raw_parts(madt.virtual_start().as_ptr().cast::<u8>(), len) };
    let mut off = ENTRIES;
    while off < len {
        let Some(&entry_len) = bytes.get(off + 1) else { return Err(AcpiError::MalformedMadt { offset: off }) };
        if entry_len < 2 || off + entry_len as usize > len {
            return Err(AcpiError::MalformedMadt { offset: off });
        }
        off += entry_len as usize;
    }
    Ok(())
}

fn power_from_fadt(fadt: &PhysicalMapping<Handler, Fadt>) -> PowerInfo {
    let flags = { fadt.flags };
    let reg = |g: Result<GenericAddress, ::acpi::AcpiError>, w| g.ok().and_then(|g| Register::from_generic(&g, w));
    let opt = |g: Result<Option<GenericAddress>, ::acpi::AcpiError>, w| {
        g.ok().flatten().and_then(|g| Register::from_generic(&g, w))
    };
    let reset = if flags.supports_system_reset_via_fadt() {
        reg(fadt.reset_register(), 8).map(|r| (r, fadt.reset_value))
    } else {
        None
    };
    let s5 = fadt.dsdt_address().ok().and_then(|dsdt| {
        let header = Range::from_len(dsdt as u64, 36);
        let mapped = |r: Range| {
            if is_reachable(r) { phys_to_virt(r.start) } else { map_mmio(r.start, r.len()).ok() }
        };
        let v = mapped(header)?;
        // SAFETY: 36 mapped header bytes.
        let len = unsafe { core::ptr::read_unaligned((v + 4) as *const u32) } as u64;
        if !(36..=(16 << 20)).contains(&len) {
            return None;
        }
        let v = mapped(Range::from_len(dsdt as u64, len))?;
        // SAFETY: `len` bytes of the DSDT are mapped; firmware does not
        // change them.
        let aml = unsafe { core::slice::from_raw_parts((v + 36) as *const u8, len as usize - 36) };
        find_s5(aml)
    });
    PowerInfo {
        pm1a_control: reg(fadt.pm1a_control_block(), 16),
        pm1b_control: opt(fadt.pm1b_control_block(), 16),
        sleep_control: opt(fadt.sleep_control_register(), 8),
        s5,
        reset,
        smi_command: { fadt.smi_cmd_port },
        acpi_enable: { fadt.acpi_enable },
        hw_reduced: flags.system_is_hw_reduced_acpi(),
        pm_timer: opt(fadt.pm_timer_block(), 32),
        pm_timer_32bit: flags.pm_timer_is_32_bit(),
        sci_irq: { fadt.sci_interrupt },
    }
}
