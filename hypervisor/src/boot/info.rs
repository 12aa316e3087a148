//! What the boot loader told us: the Multiboot2 information, read with the
//! `multiboot2` crate and checked into plain values.
//!
//! The information comes from GRUB (and through it from firmware), so it is
//! treated as input to validate, not as truth: a module whose end lies below
//! its start, a command line that is not UTF-8 or a memory map with an odd
//! entry size is reported, never a panic.

use crate::acpi::AcpiRoot;
use crate::mm::ranges::{MemoryKind, MemoryRegion, Range};
use multiboot2::{BootInformation, TagType};

pub const MAX_MEMORY_REGIONS: usize = 256;
pub const MAX_MODULES: usize = 64;

/// Where the memory map came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMapSource {
    /// The Multiboot2 memory-map tag (E820 types), which GRUB gives under
    /// BIOS and UEFI alike.
    Multiboot,
    /// The EFI memory-map tag, when no Multiboot2 map was given.
    Efi,
    /// Only the basic lower/upper memory sizes.
    Basic,
    None,
}

#[derive(Debug, Clone, Copy)]
pub struct Module<'a> {
    /// Position in the module list, from 0.
    pub index: usize,
    pub range: Range,
    pub cmdline: &'a str,
    /// Why the module cannot be used at all, if it cannot.
    pub defect: Option<&'static str>,
}

/// A problem in the boot information that boot survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoWarning {
    CommandLineNotUtf8,
    ModuleCommandLineNotUtf8 { index: usize },
    TooManyModules { dropped: usize },
    TooManyMemoryRegions { dropped: usize },
    OddMemoryMapEntrySize { size: u32 },
    OddEfiDescriptor { size: u32, version: u32 },
    RsdpChecksum,
}

impl core::fmt::Display for InfoWarning {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InfoWarning::CommandLineNotUtf8 => f.write_str("boot command line is not UTF-8; ignoring it"),
            InfoWarning::ModuleCommandLineNotUtf8 { index } => {
                write!(f, "module {index}: command line is not UTF-8; treating it as empty")
            }
            InfoWarning::TooManyModules { dropped } => {
                write!(f, "more than {MAX_MODULES} modules; {dropped} ignored")
            }
            InfoWarning::TooManyMemoryRegions { dropped } => {
                write!(f, "memory map has more than {MAX_MEMORY_REGIONS} entries; {dropped} ignored")
            }
            InfoWarning::OddMemoryMapEntrySize { size } => {
                write!(f, "memory map entry size {size} is not 24 or more; map ignored")
            }
            InfoWarning::OddEfiDescriptor { size, version } => {
                write!(f, "EFI memory map descriptor size {size} / version {version} unsupported; map ignored")
            }
            InfoWarning::RsdpChecksum => f.write_str("ACPI RSDP copy from the boot loader has a bad checksum"),
        }
    }
}

pub struct BootInfo<'a> {
    /// Where the MBI itself lies, so that it is kept.
    pub mbi: Range,
    pub cmdline: &'a str,
    pub loader_name: &'a str,
    pub memory: [MemoryRegion; MAX_MEMORY_REGIONS],
    pub memory_len: usize,
    pub memory_source: MemoryMapSource,
    /// Entries in the EFI memory map tag (0 under BIOS).
    pub efi_map_entries: usize,
    /// GRUB booted us from UEFI (an EFI system-table tag is present).
    pub efi: bool,
    pub modules: [Option<Module<'a>>; MAX_MODULES],
    pub module_count: usize,
    pub acpi: Option<AcpiRoot>,
    /// Where GRUB put the image, if it relocated it.
    pub load_base: Option<u64>,
    pub warnings: [Option<InfoWarning>; 16],
}

impl<'a> BootInfo<'a> {
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.memory[..self.memory_len]
    }

    pub fn modules(&self) -> impl Iterator<Item = &Module<'a>> {
        self.modules[..self.module_count].iter().flatten()
    }

    pub fn warnings(&self) -> impl Iterator<Item = &InfoWarning> {
        self.warnings.iter().flatten()
    }

    fn warn(&mut self, w: InfoWarning) {
        if let Some(slot) = self.warnings.iter_mut().find(|s| s.is_none()) {
            *slot = Some(w);
        }
    }

    fn push_region(&mut self, r: MemoryRegion, dropped: &mut usize) {
        if self.memory_len < MAX_MEMORY_REGIONS {
            self.memory[self.memory_len] = r;
            self.memory_len += 1;
        } else {
            *dropped += 1;
        }
    }

    /// Reads everything the hypervisor uses from a loaded MBI.
    pub fn from_multiboot(mbi: &'a BootInformation<'a>) -> BootInfo<'a> {
        let mut info = BootInfo {
            mbi: Range::new(mbi.start_address() as u64, mbi.end_address() as u64),
            cmdline: "",
            loader_name: "",
            memory: [MemoryRegion { range: Range::new(0, 0), kind: MemoryKind::Reserved }; MAX_MEMORY_REGIONS],
            memory_len: 0,
            memory_source: MemoryMapSource::None,
            efi_map_entries: 0,
            efi: mbi.efi_sdt64_tag().is_some() || mbi.efi_sdt32_tag().is_some(),
            modules: [None; MAX_MODULES],
            module_count: 0,
            acpi: None,
            load_base: mbi.load_base_addr_tag().map(|t| t.load_base_addr() as u64),
            warnings: [None; 16],
        };

        if let Some(tag) = mbi.command_line_tag() {
            match tag.cmdline() {
                Ok(s) => info.cmdline = s,
                Err(_) => info.warn(InfoWarning::CommandLineNotUtf8),
            }
        }
        if let Some(Ok(name)) = mbi.boot_loader_name_tag().map(|t| t.name()) {
            info.loader_name = name;
        }

        // Memory map: the Multiboot2 (E820-style) map first.
        let mut dropped = 0;
        if let Some(tag) = mbi.memory_map_tag() {
            if tag.entry_size() == 24 {
                for a in tag.memory_areas() {
                    let kind = MemoryKind::from_e820(u32::from(a.typ()));
                    info.push_region(
                        MemoryRegion { range: Range::from_len(a.start_address(), a.size()), kind },
                        &mut dropped,
                    );
                }
                info.memory_source = MemoryMapSource::Multiboot;
            } else {
                info.warn(InfoWarning::OddMemoryMapEntrySize { size: tag.entry_size() });
            }
        }

        // The EFI map: parsed by hand from the tag's bytes, because its
        // descriptor size is firmware's choice and must not be asserted on.
        for tag in mbi.tags().filter(|t| t.header().typ == TagType::EfiMmap) {
            let p = tag.payload();
            let (Some(size), Some(version)) = (read_u32(p, 0), read_u32(p, 4)) else { continue };
            if size < 40 || version != 1 {
                info.warn(InfoWarning::OddEfiDescriptor { size, version });
                continue;
            }
            let descs = p.get(8..).unwrap_or(&[]);
            let n = descs.len() / size as usize;
            info.efi_map_entries = n;
            if info.memory_source == MemoryMapSource::None {
                for i in 0..n {
                    let d = &descs[i * size as usize..];
                    let (Some(ty), Some(start), Some(pages)) = (read_u32(d, 0), read_u64(d, 8), read_u64(d, 24)) else {
                        continue;
                    };
                    let len = pages.saturating_mul(4096);
                    info.push_region(
                        MemoryRegion { range: Range::from_len(start, len), kind: MemoryKind::from_efi(ty) },
                        &mut dropped,
                    );
                }
                info.memory_source = MemoryMapSource::Efi;
            }
        }

        if info.memory_source == MemoryMapSource::None
            && let Some(basic) = mbi.basic_memory_info_tag()
        {
            let lower = basic.memory_lower() as u64 * 1024;
            let upper = basic.memory_upper() as u64 * 1024;
            info.push_region(MemoryRegion { range: Range::new(0, lower), kind: MemoryKind::Ram }, &mut dropped);
            info.push_region(
                MemoryRegion { range: Range::from_len(1 << 20, upper), kind: MemoryKind::Ram },
                &mut dropped,
            );
            info.memory_source = MemoryMapSource::Basic;
        }
        if dropped > 0 {
            info.warn(InfoWarning::TooManyMemoryRegions { dropped });
        }

        // Modules, in the order GRUB lists them.
        let mut extra = 0;
        for (index, m) in mbi.module_tags().enumerate() {
            if index >= MAX_MODULES {
                extra += 1;
                continue;
            }
            let cmdline = match m.cmdline() {
                Ok(s) => s,
                Err(_) => {
                    info.warn(InfoWarning::ModuleCommandLineNotUtf8 { index });
                    ""
                }
            };
            let (start, end) = (m.start_address() as u64, m.end_address() as u64);
            let defect = if end < start { Some("its end address lies below its start address") } else { None };
            info.modules[index] = Some(Module { index, range: Range::new(start, end.max(start)), cmdline, defect });
            info.module_count = index + 1;
        }
        if extra > 0 {
            info.warn(InfoWarning::TooManyModules { dropped: extra });
        }

        // ACPI: prefer the ACPI 2.0+ RSDP (XSDT).
        if let Some(v2) = mbi.rsdp_v2_tag().filter(|t| t.revision() >= 2 && t.xsdt_address() != 0) {
            let ok = v2.checksum_is_valid();
            info.acpi =
                Some(AcpiRoot { revision: v2.revision(), table_address: v2.xsdt_address() as u64, checksum_ok: ok });
        } else if let Some(v1) = mbi.rsdp_v1_tag() {
            let ok = v1.checksum_is_valid();
            info.acpi = Some(AcpiRoot { revision: 0, table_address: v1.rsdt_address() as u64, checksum_ok: ok });
        }
        if info.acpi.is_some_and(|a| !a.checksum_ok) {
            info.warn(InfoWarning::RsdpChecksum);
        }
        info
    }
}

fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiboot2::{
        BootInformationHeader, Builder, CommandLineTag, EFIMemoryMapTag, MaybeDynSized, MemoryArea, MemoryAreaType,
        MemoryMapTag, ModuleTag, RsdpV1Tag,
    };

    fn load(bytes: &[u8]) -> BootInformation<'_> {
        // SAFETY: the builder produced a complete, aligned MBI that lives as
        // long as `bytes`.
        unsafe { BootInformation::load(bytes.as_ptr().cast::<BootInformationHeader>()).unwrap() }
    }

    #[test]
    fn reads_cmdline_memory_modules_and_rsdp() {
        let mbi = Builder::new()
            .cmdline(CommandLineTag::new("/boot/hv loglvl=all"))
            .mmap(MemoryMapTag::new(&[
                MemoryArea::new(0, 0x9fc00, MemoryAreaType::Available),
                MemoryArea::new(0x100000, 0x7ee0000, MemoryAreaType::Available),
                MemoryArea::new(0x7fe0000, 0x20000, MemoryAreaType::Reserved),
                MemoryArea::new(0x1_0000_0000, 0x4000_0000, MemoryAreaType::Available),
            ]))
            .add_module(ModuleTag::new(0x800000, 0x801000, "dom0"))
            .add_module(ModuleTag::new(0x900000, 0x900800, "ramdisk"))
            .rsdpv1(RsdpV1Tag::new(*b"BOCHS ", 0, 0x7fe1234))
            .build();
        let bytes = mbi.as_bytes();
        let mbi_ = load(bytes);
        let info = BootInfo::from_multiboot(&mbi_);
        assert_eq!(info.cmdline, "/boot/hv loglvl=all");
        assert_eq!(info.memory_source, MemoryMapSource::Multiboot);
        assert_eq!(info.memory_map().len(), 4);
        assert_eq!(info.memory_map()[3].range, Range::new(0x1_0000_0000, 0x1_4000_0000));
        assert_eq!(info.memory_map()[2].kind, MemoryKind::Reserved);
        let mods: Vec<_> = info.modules().collect();
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].range, Range::new(0x800000, 0x801000));
        assert_eq!(mods[1].cmdline, "ramdisk");
        assert!(mods.iter().all(|m| m.defect.is_none()));
        assert_eq!(info.acpi.unwrap().table_address, 0x7fe1234);
        assert_eq!(info.acpi.unwrap().revision, 0);
        assert_eq!(info.warnings().count(), 0);
        assert!(!info.efi);
    }

    #[test]
    fn module_with_end_below_start_is_marked_not_dropped() {
        // The builder refuses such a tag, so swap start and end in the bytes.
        let mbi = Builder::new().add_module(ModuleTag::new(0x800000, 0x900000, "domu")).build();
        let mut words = aligned(mbi.as_bytes());
        let bytes = as_bytes_mut(&mut words);
        let pos = bytes
            .windows(8)
            .position(|w| w[..4] == 0x800000u32.to_le_bytes() && w[4..] == 0x900000u32.to_le_bytes())
            .unwrap();
        bytes[pos..pos + 4].copy_from_slice(&0x900000u32.to_le_bytes());
        bytes[pos + 4..pos + 8].copy_from_slice(&0x800000u32.to_le_bytes());
        let mbi_ = load(bytes);
        let info = BootInfo::from_multiboot(&mbi_);
        let m = info.modules().next().unwrap();
        assert!(m.defect.is_some());
        assert!(m.range.is_empty());
    }

    #[test]
    fn efi_map_is_used_when_there_is_no_multiboot_map() {
        use multiboot2::{EFIMemoryAreaType, EFIMemoryDesc};
        let descs = [
            EFIMemoryDesc {
                ty: EFIMemoryAreaType::CONVENTIONAL,
                phys_start: 0x100000,
                page_count: 256,
                ..Default::default()
            },
            EFIMemoryDesc {
                ty: EFIMemoryAreaType::RUNTIME_SERVICES_DATA,
                phys_start: 0x200000,
                page_count: 16,
                ..Default::default()
            },
            EFIMemoryDesc {
                ty: EFIMemoryAreaType::ACPI_RECLAIM,
                phys_start: 0x300000,
                page_count: 1,
                ..Default::default()
            },
        ];
        let mbi = Builder::new().efi_mmap(EFIMemoryMapTag::new_from_descs(&descs)).build();
        let mbi_ = load(mbi.as_bytes());
        let info = BootInfo::from_multiboot(&mbi_);
        assert_eq!(info.memory_source, MemoryMapSource::Efi);
        assert_eq!(info.efi_map_entries, 3);
        let m = info.memory_map();
        assert_eq!(m[0], MemoryRegion { range: Range::new(0x100000, 0x200000), kind: MemoryKind::Ram });
        assert_eq!(m[1].kind, MemoryKind::Reserved);
        assert_eq!(m[2].kind, MemoryKind::AcpiReclaimable);
    }

    #[test]
    fn efi_map_with_an_unknown_descriptor_version_is_ignored_with_a_warning() {
        let mbi = Builder::new().efi_mmap(EFIMemoryMapTag::new_from_map(48, 7, &[0u8; 96])).build();
        let mbi_ = load(mbi.as_bytes());
        let info = BootInfo::from_multiboot(&mbi_);
        assert_eq!(info.memory_source, MemoryMapSource::None);
        assert_eq!(info.warnings().next(), Some(&InfoWarning::OddEfiDescriptor { size: 48, version: 7 }));
    }

    #[test]
    fn bad_rsdp_checksum_is_reported() {
        let mbi = Builder::new().rsdpv1(RsdpV1Tag::new(*b"OEMOEM", 0, 0x1234_5678)).build();
        let mut words = aligned(mbi.as_bytes());
        let bytes = as_bytes_mut(&mut words);
        // Flip a bit of the RSDT address so the checksum no longer matches.
        let pos = bytes.windows(4).position(|w| w == 0x1234_5678u32.to_le_bytes()).unwrap();
        bytes[pos] ^= 1;
        let mbi_ = load(bytes);
        let info = BootInfo::from_multiboot(&mbi_);
        assert!(!info.acpi.unwrap().checksum_ok);
        assert!(info.warnings().any(|w| *w == InfoWarning::RsdpChecksum));
    }

    fn aligned(bytes: &[u8]) -> Vec<u64> {
        let mut v = vec![0u64; bytes.len().div_ceil(8)];
        as_bytes_mut(&mut v)[..bytes.len()].copy_from_slice(bytes);
        v
    }

    fn as_bytes_mut(v: &mut [u64]) -> &mut [u8] {
        // SAFETY: u64 storage reinterpreted as bytes, same length in bytes.
        unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 8) }
    }
}
