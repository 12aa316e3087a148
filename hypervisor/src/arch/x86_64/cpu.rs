//! What this CPU can do, from CPUID, read once at boot.

use core::arch::x86_64::{__cpuid_count, CpuidResult};

pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    __cpuid_count(leaf, subleaf)
}

pub use super::Vendor;

#[derive(Debug, Clone, Copy)]
pub struct CpuFeatures {
    pub vendor: Vendor,
    pub vendor_id: [u8; 12],
    pub brand: [u8; 48],
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    pub max_leaf: u32,
    pub max_ext_leaf: u32,
    pub nx: bool,
    pub page1g: bool,
    pub pge: bool,
    pub x2apic: bool,
    pub tsc_deadline: bool,
    pub invariant_tsc: bool,
    pub svm: bool,
    pub vmx: bool,
    pub hypervisor_present: bool,
    pub phys_addr_bits: u8,
    pub virt_addr_bits: u8,
    /// TSC frequency in kHz when CPUID states it (leaf 0x15 or 0x16).
    pub tsc_khz_cpuid: Option<u64>,
}

impl CpuFeatures {
    pub fn detect() -> CpuFeatures {
        let l0 = cpuid(0, 0);
        let mut vendor_id = [0u8; 12];
        vendor_id[0..4].copy_from_slice(&l0.ebx.to_le_bytes());
        vendor_id[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        vendor_id[8..12].copy_from_slice(&l0.ecx.to_le_bytes());
        let vendor = match &vendor_id {
            b"GenuineIntel" => Vendor::Intel,
            b"AuthenticAMD" => Vendor::Amd,
            b"HygonGenuine" => Vendor::Hygon,
            _ => Vendor::Other,
        };
        let l1 = cpuid(1, 0);
        let base_family = (l1.eax >> 8) & 0xf;
        let family = if base_family == 0xf { base_family + ((l1.eax >> 20) & 0xff) } else { base_family };
        let model = if base_family == 0xf || base_family == 6 {
            ((l1.eax >> 4) & 0xf) | (((l1.eax >> 16) & 0xf) << 4)
        } else {
            (l1.eax >> 4) & 0xf
        };
        let max_ext_leaf = cpuid(0x8000_0000, 0).eax;
        let ext1 = if max_ext_leaf >= 0x8000_0001 {
            cpuid(0x8000_0001, 0)
        } else {
            CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 }
        };
        let mut brand = [0u8; 48];
        if max_ext_leaf >= 0x8000_0004 {
            for (i, leaf) in (0x8000_0002..=0x8000_0004).enumerate() {
                let r = cpuid(leaf, 0);
                for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
                    brand[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&reg.to_le_bytes());
                }
            }
        }
        let invariant_tsc = max_ext_leaf >= 0x8000_0007 && cpuid(0x8000_0007, 0).edx & (1 << 8) != 0;
        let (phys_addr_bits, virt_addr_bits) = if max_ext_leaf >= 0x8000_0008 {
            let r = cpuid(0x8000_0008, 0);
            ((r.eax & 0xff) as u8, ((r.eax >> 8) & 0xff) as u8)
        } else {
            (36, 48)
        };
        let tsc_khz_cpuid = tsc_khz_from_cpuid(l0.eax);
        CpuFeatures {
            vendor,
            vendor_id,
            brand,
            family,
            model,
            stepping: l1.eax & 0xf,
            max_leaf: l0.eax,
            max_ext_leaf,
            nx: ext1.edx & (1 << 20) != 0,
            page1g: ext1.edx & (1 << 26) != 0,
            pge: l1.edx & (1 << 13) != 0,
            x2apic: l1.ecx & (1 << 21) != 0,
            tsc_deadline: l1.ecx & (1 << 24) != 0,
            invariant_tsc,
            svm: ext1.ecx & (1 << 2) != 0,
            vmx: l1.ecx & (1 << 5) != 0,
            hypervisor_present: l1.ecx & (1 << 31) != 0,
            phys_addr_bits,
            virt_addr_bits,
            tsc_khz_cpuid,
        }
    }

    pub fn brand_str(&self) -> &str {
        let end = self.brand.iter().position(|&b| b == 0).unwrap_or(48);
        core::str::from_utf8(&self.brand[..end]).unwrap_or("?").trim()
    }

    pub fn vendor_str(&self) -> &str {
        core::str::from_utf8(&self.vendor_id).unwrap_or("?")
    }
}

/// Leaf 0x15 (TSC/crystal ratio) gives an exact figure on recent Intel
/// CPUs; leaf 0x16 gives the nominal base frequency.
fn tsc_khz_from_cpuid(max_leaf: u32) -> Option<u64> {
    if max_leaf >= 0x15 {
        let r = cpuid(0x15, 0);
        if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
            return Some(r.ecx as u64 * r.ebx as u64 / r.eax as u64 / 1000);
        }
    }
    if max_leaf >= 0x16 {
        let r = cpuid(0x16, 0);
        if r.eax & 0xffff != 0 {
            return Some((r.eax & 0xffff) as u64 * 1000);
        }
    }
    None
}

static FEATURES: spin::Once<CpuFeatures> = spin::Once::new();

/// The boot CPU's features (detected on first use).
pub fn features() -> &'static CpuFeatures {
    FEATURES.call_once(CpuFeatures::detect)
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is never set here.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stops this CPU for good: interrupts off, halt, and halt again after any
/// NMI.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting only stops this CPU.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

pub fn read_cr0() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
pub fn read_cr2() -> u64 {
    let v;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
pub fn read_cr3() -> u64 {
    let v;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
pub fn read_cr4() -> u64 {
    let v;
    // SAFETY: as above.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: callers only read architectural MSRs this CPU implements.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    ((hi as u64) << 32) | lo as u64
}

/// # Safety
/// Writing an MSR can change how the CPU runs; the caller knows the MSR and
/// that the value is valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: per the function contract.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

pub const MSR_EFER: u32 = 0xC000_0080;
pub const MSR_GS_BASE: u32 = 0xC000_0101;

pub fn inb(port: u16) -> u8 {
    let v;
    // SAFETY: port reads are issued only to devices the hypervisor owns.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) };
    v
}
pub fn inw(port: u16) -> u16 {
    let v;
    // SAFETY: as above.
    unsafe { core::arch::asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags)) };
    v
}
pub fn inl(port: u16) -> u32 {
    let v;
    // SAFETY: as above.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags)) };
    v
}
pub fn outb(port: u16, v: u8) {
    // SAFETY: port writes go only to devices the hypervisor owns.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}
pub fn outw(port: u16, v: u16) {
    // SAFETY: as above.
    unsafe { core::arch::asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags)) };
}
pub fn outl(port: u16, v: u32) {
    // SAFETY: as above.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) };
}
