//! Building a PVH guest's memory image, as Xen's domain builder does: load
//! the kernel's segments at their physical addresses, place the ramdisk,
//! then `hvm_start_info` with its module list, memory map and command
//! lines; the first vCPU starts at the `XEN_ELFNOTE_PHYS32_ENTRY` address in
//! 32-bit protected mode with EBX pointing at the start info.

use crate::memory::guest_mem::{GuestPhysical, MemFault, write_phys, zero_phys};
use crate::mm::addr::Gpa;
use crate::util::elf::{Elf, ElfError, PT_LOAD};
use core::fmt;
use xen_abi::Pod;
use xen_abi::elfnote;
use xen_abi::start_info::{HvmMemmapEntry, HvmModlistEntry, HvmStartInfo, MAGIC, VERSION};

const PAGE: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvhError {
    Elf(ElfError),
    /// No XEN_ELFNOTE_PHYS32_ENTRY: the kernel cannot start as PVH.
    NotPvh,
    BadEntryNote {
        len: usize,
    },
    EntryAbove4G {
        entry: u64,
    },
    /// A segment does not fit the domain's RAM.
    SegmentOutsideRam {
        segment: usize,
        start: u64,
        end: u64,
        ram_end: u64,
    },
    /// Kernel, ramdisk and boot information do not fit below `limit`.
    NoRoom {
        needed_end: u64,
        limit: u64,
    },
    CommandLineTooLong {
        len: usize,
    },
    Memory(MemFault),
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PvhError::Elf(e) => write!(f, "{e}"),
            PvhError::NotPvh => {
                f.write_str("the kernel has no XEN_ELFNOTE_PHYS32_ENTRY note: it cannot start as a PVH guest")
            }
            PvhError::BadEntryNote { len } => {
                write!(f, "XEN_ELFNOTE_PHYS32_ENTRY has a {len}-byte descriptor (4 or 8 expected)")
            }
            PvhError::EntryAbove4G { entry } => write!(f, "the PVH entry point {entry:#x} is not below 4 GiB"),
            PvhError::SegmentOutsideRam { segment, start, end, ram_end } => write!(
                f,
                "segment {segment} ({start:#x}-{end:#x}) does not fit the domain's memory (RAM ends at {ram_end:#x})"
            ),
            PvhError::NoRoom { needed_end, limit } => write!(
                f,
                "kernel, ramdisk and boot information need memory up to {needed_end:#x}, but only {limit:#x} is usable for them"
            ),
            PvhError::CommandLineTooLong { len } => write!(f, "command line of {len} bytes is too long"),
            PvhError::Memory(e) => write!(f, "writing the guest image: {e}"),
        }
    }
}

impl From<MemFault> for PvhError {
    fn from(e: MemFault) -> Self {
        PvhError::Memory(e)
    }
}

/// A kernel that can start as a PVH guest.
#[derive(Debug, Clone, Copy)]
pub struct PvhKernel<'a> {
    pub elf: Elf<'a>,
    /// Guest-physical 32-bit entry point.
    pub entry: u64,
    pub guest_os: &'a [u8],
    /// Lowest and highest guest-physical address the PT_LOAD segments use.
    pub load_start: u64,
    pub load_end: u64,
}

pub fn parse_kernel(bytes: &[u8]) -> Result<PvhKernel<'_>, PvhError> {
    let elf = Elf::parse(bytes).map_err(PvhError::Elf)?;
    let mut entry = None;
    let mut guest_os: &[u8] = b"";
    for n in elf.notes().filter(|n| n.owner == elfnote::OWNER) {
        match n.kind {
            elfnote::PHYS32_ENTRY => {
                // Linux writes 8 bytes, most others 4: read by size.
                entry = Some(match n.desc.len() {
                    4 => u32::from_le_bytes(n.desc.try_into().unwrap_or([0; 4])) as u64,
                    8 => u64::from_le_bytes(n.desc.try_into().unwrap_or([0; 8])),
                    len => return Err(PvhError::BadEntryNote { len }),
                });
            }
            elfnote::GUEST_OS => {
                guest_os = n.desc.split(|&b| b == 0).next().unwrap_or(b"");
            }
            _ => {}
        }
    }
    let entry = entry.ok_or(PvhError::NotPvh)?;
    if entry >= 1 << 32 {
        return Err(PvhError::EntryAbove4G { entry });
    }
    let loads = || elf.segments().filter(|s| s.kind == PT_LOAD && s.memsz > 0);
    let load_start = loads().map(|s| s.paddr).min().unwrap_or(0);
    let load_end = loads().map(|s| s.paddr + s.memsz).max().unwrap_or(0);
    Ok(PvhKernel { elf, entry, guest_os, load_start, load_end })
}

/// What goes into a PVH guest besides its kernel.
#[derive(Debug, Clone, Copy)]
pub struct BuildSpec<'a> {
    pub ramdisk: Option<&'a [u8]>,
    pub cmdline: &'a str,
    /// The guest's memory map (RAM and reserved ranges).
    pub memmap: &'a [HvmMemmapEntry],
    /// RAM that may hold the ramdisk and boot information: `[0, low_ram_end)`.
    pub low_ram_end: u64,
    pub flags: u32,
    pub rsdp: u64,
}

/// Where the builder put things (guest-physical).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub ramdisk: Option<(u64, u64)>,
    pub start_info: u64,
    pub modlist: u64,
    pub memmap: u64,
    pub cmdline: u64,
    /// First byte after everything the builder wrote.
    pub end: u64,
}

/// Linux reads the memory map and module list through its early 1 GiB
/// mapping, and everything else through 32-bit fields.
const BOOT_INFO_LIMIT: u64 = 1 << 30;
pub const MAX_CMDLINE: usize = 4096;

fn page_up(x: u64) -> u64 {
    x.div_ceil(PAGE) * PAGE
}

/// Decides where the ramdisk and the boot information go: after the kernel,
/// page aligned, below `low_ram_end` and below 1 GiB.
pub fn place(kernel: &PvhKernel<'_>, spec: &BuildSpec<'_>) -> Result<Placement, PvhError> {
    if spec.cmdline.len() >= MAX_CMDLINE {
        return Err(PvhError::CommandLineTooLong { len: spec.cmdline.len() });
    }
    for s in kernel.elf.segments().filter(|s| s.kind == PT_LOAD && s.memsz > 0) {
        let end = s.paddr + s.memsz;
        if end > spec.low_ram_end
            || !spec.memmap.iter().any(|m| m.kind == 1 && m.addr <= s.paddr && end <= m.addr + m.size)
        {
            return Err(PvhError::SegmentOutsideRam {
                segment: s.index,
                start: s.paddr,
                end,
                ram_end: spec.low_ram_end,
            });
        }
    }
    let mut at = page_up(kernel.load_end);
    let ramdisk = match spec.ramdisk {
        Some(r) => {
            let gpa = at;
            at = page_up(at + r.len() as u64);
            Some((gpa, r.len() as u64))
        }
        None => None,
    };
    let start_info = at;
    let modlist = start_info + core::mem::size_of::<HvmStartInfo>() as u64;
    let nmods = ramdisk.is_some() as u64;
    let memmap = (modlist + nmods * core::mem::size_of::<HvmModlistEntry>() as u64).next_multiple_of(8);
    let cmdline = memmap + spec.memmap.len() as u64 * core::mem::size_of::<HvmMemmapEntry>() as u64;
    let end = page_up(cmdline + spec.cmdline.len() as u64 + 1);
    let limit = spec.low_ram_end.min(BOOT_INFO_LIMIT);
    if end > limit {
        return Err(PvhError::NoRoom { needed_end: end, limit });
    }
    Ok(Placement { ramdisk, start_info, modlist, memmap, cmdline, end })
}

/// Writes the kernel, the ramdisk and the boot information into guest
/// memory. Returns the start info's address (the guest's EBX).
pub fn write_image(
    g: &impl GuestPhysical,
    kernel: &PvhKernel<'_>,
    spec: &BuildSpec<'_>,
    at: &Placement,
) -> Result<u64, PvhError> {
    for s in kernel.elf.segments().filter(|s| s.kind == PT_LOAD && s.memsz > 0) {
        write_phys(g, Gpa(s.paddr), kernel.elf.segment_data(&s))?;
        zero_phys(g, Gpa(s.paddr + s.filesz), s.memsz - s.filesz)?;
    }
    let mut nr_modules = 0;
    if let (Some((gpa, _)), Some(bytes)) = (at.ramdisk, spec.ramdisk) {
        write_phys(g, Gpa(gpa), bytes)?;
        let entry = HvmModlistEntry { paddr: gpa, size: bytes.len() as u64, cmdline_paddr: 0, reserved: 0 };
        write_phys(g, Gpa(at.modlist), entry.as_bytes())?;
        nr_modules = 1;
    }
    for (i, e) in spec.memmap.iter().enumerate() {
        write_phys(g, Gpa(at.memmap + (i * core::mem::size_of::<HvmMemmapEntry>()) as u64), e.as_bytes())?;
    }
    write_phys(g, Gpa(at.cmdline), spec.cmdline.as_bytes())?;
    write_phys(g, Gpa(at.cmdline + spec.cmdline.len() as u64), &[0])?;
    let info = HvmStartInfo {
        magic: MAGIC,
        version: VERSION,
        flags: spec.flags,
        nr_modules,
        modlist_paddr: if nr_modules > 0 { at.modlist } else { 0 },
        cmdline_paddr: at.cmdline,
        rsdp_paddr: spec.rsdp,
        memmap_paddr: at.memmap,
        memmap_entries: spec.memmap.len() as u32,
        reserved: 0,
    };
    write_phys(g, Gpa(at.start_info), info.as_bytes())?;
    Ok(at.start_info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::guest_mem::read_phys_pod;
    use crate::memory::guest_mem::tests::FakeGuest;
    use crate::util::elf::tests::build_elf64;

    const MIB: u64 = 1 << 20;

    fn ram_map(end: u64) -> [HvmMemmapEntry; 1] {
        [HvmMemmapEntry { addr: 0, size: end, kind: 1, reserved: 0 }]
    }

    #[test]
    fn reads_the_entry_note_in_both_sizes() {
        let k4 =
            build_elf64(0x100000, 0, &[0x90; 64], &[("Xen", 18, &0x100010u32.to_le_bytes()), ("Xen", 6, b"tiny\0")]);
        let k = parse_kernel(&k4).unwrap();
        assert_eq!(k.entry, 0x100010);
        assert_eq!(k.guest_os, b"tiny");
        assert_eq!((k.load_start, k.load_end), (0x100000, 0x100000 + 64 + 0x100));
        let k8 = build_elf64(0x1000000, 0, &[0x90; 64], &[("Xen", 18, &0x1000850u64.to_le_bytes())]);
        assert_eq!(parse_kernel(&k8).unwrap().entry, 0x1000850);
    }

    #[test]
    fn refuses_kernels_that_are_not_pvh() {
        let plain = build_elf64(0x100000, 0x100000, &[0x90; 16], &[("GNU", 3, b"id")]);
        assert_eq!(parse_kernel(&plain).unwrap_err(), PvhError::NotPvh);
        let odd = build_elf64(0x100000, 0, &[0x90; 16], &[("Xen", 18, &[1, 2, 3])]);
        assert_eq!(parse_kernel(&odd).unwrap_err(), PvhError::BadEntryNote { len: 3 });
        let high = build_elf64(0x100000, 0, &[0x90; 16], &[("Xen", 18, &0x1_0000_0000u64.to_le_bytes())]);
        assert_eq!(parse_kernel(&high).unwrap_err(), PvhError::EntryAbove4G { entry: 1 << 32 });
        // Notes owned by someone else do not count.
        let other = build_elf64(0x100000, 0, &[0x90; 16], &[("Lin", 18, &0x100000u32.to_le_bytes())]);
        assert_eq!(parse_kernel(&other).unwrap_err(), PvhError::NotPvh);
    }

    #[test]
    fn builds_the_image_and_start_info() {
        let img = build_elf64(0x100000, 0, b"KERNELCODE", &[("Xen", 18, &0x100000u32.to_le_bytes())]);
        let k = parse_kernel(&img).unwrap();
        let g = FakeGuest::with_ram(0..(4 * MIB / PAGE));
        let map = ram_map(4 * MIB);
        let spec = BuildSpec {
            ramdisk: Some(b"RAMDISK!"),
            cmdline: "console=hvc0",
            memmap: &map,
            low_ram_end: 4 * MIB,
            flags: 0,
            rsdp: 0,
        };
        let at = place(&k, &spec).unwrap();
        assert_eq!(at.ramdisk, Some((0x101000, 8)));
        assert_eq!(at.start_info, 0x102000);
        let si = write_image(&g, &k, &spec, &at).unwrap();
        let info: HvmStartInfo = read_phys_pod(&g, Gpa(si)).unwrap();
        assert_eq!(info.magic, MAGIC);
        assert_eq!(info.version, 1);
        assert_eq!(info.nr_modules, 1);
        let m: HvmModlistEntry = read_phys_pod(&g, Gpa(info.modlist_paddr)).unwrap();
        assert_eq!((m.paddr, m.size), (0x101000, 8));
        let e: HvmMemmapEntry = read_phys_pod(&g, Gpa(info.memmap_paddr)).unwrap();
        assert_eq!((e.addr, e.size, e.kind), (0, 4 * MIB, 1));
        assert_eq!(info.memmap_entries, 1);
        let mut c = [0u8; 13];
        crate::memory::guest_mem::read_phys(&g, Gpa(info.cmdline_paddr), &mut c).unwrap();
        assert_eq!(&c, b"console=hvc0\0");
        let mut code = [0u8; 10];
        crate::memory::guest_mem::read_phys(&g, Gpa(0x100000), &mut code).unwrap();
        assert_eq!(&code, b"KERNELCODE");
        assert!(info.memmap_paddr.is_multiple_of(8) && info.memmap_paddr < BOOT_INFO_LIMIT);
    }

    #[test]
    fn kernels_and_data_that_do_not_fit_are_refused() {
        let img = build_elf64(0x300000, 0, &[1; 16], &[("Xen", 18, &0x300000u32.to_le_bytes())]);
        let k = parse_kernel(&img).unwrap();
        let map = ram_map(2 * MIB);
        let spec = BuildSpec { ramdisk: None, cmdline: "", memmap: &map, low_ram_end: 2 * MIB, flags: 0, rsdp: 0 };
        assert!(matches!(place(&k, &spec), Err(PvhError::SegmentOutsideRam { segment: 0, .. })));
        let img = build_elf64(0x100000, 0, &[1; 16], &[("Xen", 18, &0x100000u32.to_le_bytes())]);
        let k = parse_kernel(&img).unwrap();
        let big = vec![0u8; 0x200000];
        let map = ram_map(2 * MIB);
        let spec =
            BuildSpec { ramdisk: Some(&big), cmdline: "", memmap: &map, low_ram_end: 2 * MIB, flags: 0, rsdp: 0 };
        assert!(matches!(place(&k, &spec), Err(PvhError::NoRoom { .. })));
        let long = "x".repeat(MAX_CMDLINE);
        let spec = BuildSpec { ramdisk: None, cmdline: &long, memmap: &map, low_ram_end: 2 * MIB, flags: 0, rsdp: 0 };
        assert_eq!(place(&k, &spec), Err(PvhError::CommandLineTooLong { len: MAX_CMDLINE }));
    }
}
