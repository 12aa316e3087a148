//! The VMCB (AMD APM vol. 2 appendix B): one 4 KiB page per vCPU, control
//! area at 0x000, state-save area at 0x400. Fields are reached by offset;
//! the offsets were checked against Linux's `svm.h`, Xen's `vmcb.h` and
//! FreeBSD's `vmcb.h`.

// Control area.
pub const INTERCEPT_CR: usize = 0x000;
pub const INTERCEPT_DR: usize = 0x004;
pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
pub const INTERCEPT_MISC1: usize = 0x00c;
pub const INTERCEPT_MISC2: usize = 0x010;
pub const IOPM_BASE_PA: usize = 0x040;
pub const MSRPM_BASE_PA: usize = 0x048;
pub const TSC_OFFSET: usize = 0x050;
pub const GUEST_ASID: usize = 0x058;
pub const TLB_CONTROL: usize = 0x05c;
pub const V_INTR: usize = 0x060;
pub const INTERRUPT_STATE: usize = 0x068;
pub const EXITCODE: usize = 0x070;
pub const EXITINFO1: usize = 0x078;
pub const EXITINFO2: usize = 0x080;
pub const EXITINTINFO: usize = 0x088;
pub const NP_CONTROL: usize = 0x090;
pub const EVENTINJ: usize = 0x0a8;
pub const N_CR3: usize = 0x0b0;
pub const CLEAN_BITS: usize = 0x0c0;
pub const NEXT_RIP: usize = 0x0c8;

// State-save area.
pub const ES: usize = 0x400;
pub const CS: usize = 0x410;
pub const SS: usize = 0x420;
pub const DS: usize = 0x430;
pub const FS: usize = 0x440;
pub const GS: usize = 0x450;
pub const GDTR: usize = 0x460;
pub const LDTR: usize = 0x470;
pub const IDTR: usize = 0x480;
pub const TR: usize = 0x490;
pub const CPL: usize = 0x4cb;
pub const EFER: usize = 0x4d0;
pub const CR4: usize = 0x548;
pub const CR3: usize = 0x550;
pub const CR0: usize = 0x558;
pub const DR7: usize = 0x560;
pub const DR6: usize = 0x568;
pub const RFLAGS: usize = 0x570;
pub const RIP: usize = 0x578;
pub const RSP: usize = 0x5d8;
pub const RAX: usize = 0x5f8;
pub const STAR: usize = 0x600;
pub const LSTAR: usize = 0x608;
pub const CSTAR: usize = 0x610;
pub const SFMASK: usize = 0x618;
pub const KERNEL_GS_BASE: usize = 0x620;
pub const SYSENTER_CS: usize = 0x628;
pub const SYSENTER_ESP: usize = 0x630;
pub const SYSENTER_EIP: usize = 0x638;
pub const CR2: usize = 0x640;
pub const G_PAT: usize = 0x668;
pub const DBGCTL: usize = 0x670;

// CR intercepts (INTERCEPT_CR): reads are bits 0-15, writes 16-31.
pub const CR_WRITE_CR0: u32 = 1 << 16;
pub const CR_WRITE_CR4: u32 = 1 << 20;

// Intercept word 1.
pub const I1_INTR: u32 = 1 << 0;
pub const I1_NMI: u32 = 1 << 1;
pub const I1_SMI: u32 = 1 << 2;
pub const I1_INIT: u32 = 1 << 3;
pub const I1_VINTR: u32 = 1 << 4;
pub const I1_CPUID: u32 = 1 << 18;
pub const I1_INVD: u32 = 1 << 22;
pub const I1_PAUSE: u32 = 1 << 23;
pub const I1_HLT: u32 = 1 << 24;
pub const I1_INVLPGA: u32 = 1 << 26;
pub const I1_IOIO: u32 = 1 << 27;
pub const I1_MSR: u32 = 1 << 28;
pub const I1_TASK_SWITCH: u32 = 1 << 29;
pub const I1_SHUTDOWN: u32 = 1 << 31;

// Intercept word 2.
pub const I2_VMRUN: u32 = 1 << 0;
pub const I2_VMMCALL: u32 = 1 << 1;
pub const I2_VMLOAD: u32 = 1 << 2;
pub const I2_VMSAVE: u32 = 1 << 3;
pub const I2_STGI: u32 = 1 << 4;
pub const I2_CLGI: u32 = 1 << 5;
pub const I2_SKINIT: u32 = 1 << 6;
pub const I2_ICEBP: u32 = 1 << 8;
pub const I2_WBINVD: u32 = 1 << 9;
pub const I2_MONITOR: u32 = 1 << 10;
pub const I2_MWAIT: u32 = 1 << 11;
pub const I2_MWAIT_COND: u32 = 1 << 12;
pub const I2_XSETBV: u32 = 1 << 13;
pub const I2_RDPRU: u32 = 1 << 14;

pub const V_INTR_MASKING: u64 = 1 << 24;
pub const V_IRQ: u64 = 1 << 8;
pub const V_INTR_PRIO_MAX: u64 = 0xf << 16;
pub const V_IGN_TPR: u64 = 1 << 20;
/// A virtual interrupt the guest cannot refuse by priority (V_IRQ,
/// highest priority, TPR ignored).
pub const V_IRQ_OFFER: u64 = V_IRQ | V_INTR_PRIO_MAX | V_IGN_TPR;
/// V_INTR_VECTOR, the byte after the interrupt control word.
pub const V_INTR_VECTOR_SHIFT: u32 = 32;
pub const V_INTR_VECTOR_MASK: u64 = 0xff << V_INTR_VECTOR_SHIFT;
pub const NP_ENABLE: u64 = 1;

pub const TLB_NOTHING: u8 = 0;
pub const TLB_FLUSH_ALL: u8 = 1;
pub const TLB_FLUSH_ASID: u8 = 3;

// Exit codes.
pub const EXIT_WRITE_CR0: u64 = 0x10;
pub const EXIT_WRITE_CR4: u64 = 0x14;
pub const EXIT_EXCEPTION_BASE: u64 = 0x40;
pub const EXIT_INTR: u64 = 0x60;
pub const EXIT_NMI: u64 = 0x61;
pub const EXIT_SMI: u64 = 0x62;
pub const EXIT_INIT: u64 = 0x63;
pub const EXIT_VINTR: u64 = 0x64;
pub const EXIT_CPUID: u64 = 0x72;
pub const EXIT_INVD: u64 = 0x76;
pub const EXIT_PAUSE: u64 = 0x77;
pub const EXIT_HLT: u64 = 0x78;
pub const EXIT_INVLPGA: u64 = 0x7a;
pub const EXIT_IOIO: u64 = 0x7b;
pub const EXIT_MSR: u64 = 0x7c;
pub const EXIT_TASK_SWITCH: u64 = 0x7d;
pub const EXIT_SHUTDOWN: u64 = 0x7f;
pub const EXIT_VMRUN: u64 = 0x80;
pub const EXIT_VMMCALL: u64 = 0x81;
pub const EXIT_VMLOAD: u64 = 0x82;
pub const EXIT_VMSAVE: u64 = 0x83;
pub const EXIT_STGI: u64 = 0x84;
pub const EXIT_CLGI: u64 = 0x85;
pub const EXIT_SKINIT: u64 = 0x86;
pub const EXIT_ICEBP: u64 = 0x88;
pub const EXIT_WBINVD: u64 = 0x89;
pub const EXIT_MONITOR: u64 = 0x8a;
pub const EXIT_MWAIT: u64 = 0x8b;
pub const EXIT_MWAIT_COND: u64 = 0x8c;
pub const EXIT_XSETBV: u64 = 0x8d;
pub const EXIT_RDPRU: u64 = 0x8e;
pub const EXIT_NPF: u64 = 0x400;
pub const EXIT_INVALID: u64 = u64::MAX;
/// The same as QEMU writes it (VMEXIT_INVALID as a 32-bit -1).
pub const EXIT_INVALID_32: u64 = 0xffff_ffff;

// EVENTINJ / EXITINTINFO.
pub const EVENT_VALID: u64 = 1 << 31;
pub const EVENT_ERROR_VALID: u64 = 1 << 11;
pub const EVENT_TYPE_INTR: u64 = 0 << 8;
pub const EVENT_TYPE_NMI: u64 = 2 << 8;
pub const EVENT_TYPE_EXCEPTION: u64 = 3 << 8;
pub const EVENT_TYPE_SOFT_INT: u64 = 4 << 8;
pub const EVENT_TYPE_MASK: u64 = 7 << 8;

/// A segment register as the VMCB stores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    /// Descriptor bits 40-47 and 52-55 packed in 12 bits.
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

/// A pointer to a VMCB page (in the direct map).
pub struct Vmcb {
    base: *mut u8,
}

impl Vmcb {
    /// # Safety
    /// `base` points to a 4 KiB page used as this vCPU's VMCB only.
    pub unsafe fn new(base: *mut u8) -> Vmcb {
        Vmcb { base }
    }

    pub fn read_u64(&self, off: usize) -> u64 {
        // SAFETY: off + 8 <= 4096 for every field offset above; the page is
        // ours (Vmcb::new contract).
        unsafe { core::ptr::read_volatile(self.base.add(off) as *const u64) }
    }
    pub fn write_u64(&mut self, off: usize, v: u64) {
        // SAFETY: as in read_u64.
        unsafe { core::ptr::write_volatile(self.base.add(off) as *mut u64, v) }
    }
    pub fn read_u32(&self, off: usize) -> u32 {
        // SAFETY: as in read_u64.
        unsafe { core::ptr::read_volatile(self.base.add(off) as *const u32) }
    }
    pub fn write_u32(&mut self, off: usize, v: u32) {
        // SAFETY: as in read_u64.
        unsafe { core::ptr::write_volatile(self.base.add(off) as *mut u32, v) }
    }
    pub fn read_u8(&self, off: usize) -> u8 {
        // SAFETY: as in read_u64.
        unsafe { core::ptr::read_volatile(self.base.add(off)) }
    }
    pub fn write_u8(&mut self, off: usize, v: u8) {
        // SAFETY: as in read_u64.
        unsafe { core::ptr::write_volatile(self.base.add(off), v) }
    }

    pub fn segment(&self, off: usize) -> Segment {
        let w = self.read_u64(off);
        Segment { selector: w as u16, attrib: (w >> 16) as u16, limit: (w >> 32) as u32, base: self.read_u64(off + 8) }
    }
    pub fn set_segment(&mut self, off: usize, s: Segment) {
        self.write_u64(off, s.selector as u64 | (s.attrib as u64) << 16 | (s.limit as u64) << 32);
        self.write_u64(off + 8, s.base);
    }
}
