//! A guest's local APIC, emulated (the one device Xen emulates for a PVH
//! domU): xAPIC registers (the MMIO page at 0xfee00000) and x2APIC MSRs,
//! the interrupt request/in-service state with task priority, EOI, the
//! APIC timer (one-shot and periodic, counting a 1 GHz bus as Xen's does),
//! and interprocessor interrupts, which are decoded here and delivered by
//! the caller (fixed, lowest priority, NMI, INIT, STARTUP).
//!
//! Plain logic over a clock the caller passes in; unit-tested on the host.

/// IA32_APIC_BASE bits.
pub const BASE_BSP: u64 = 1 << 8;
pub const BASE_EXTD: u64 = 1 << 10;
pub const BASE_ENABLE: u64 = 1 << 11;
pub const DEFAULT_BASE: u64 = 0xfee0_0000;
const BASE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// x2APIC MSRs are 0x800 + register offset / 16.
pub const X2APIC_MSR_FIRST: u32 = 0x800;
pub const X2APIC_MSR_LAST: u32 = 0x8ff;

// Register offsets.
const ID: u32 = 0x20;
const LVR: u32 = 0x30;
const TPR: u32 = 0x80;
const APR: u32 = 0x90;
const PPR: u32 = 0xa0;
const EOI: u32 = 0xb0;
const LDR: u32 = 0xd0;
const DFR: u32 = 0xe0;
const SVR: u32 = 0xf0;
const ISR: u32 = 0x100;
const TMR: u32 = 0x180;
const IRR: u32 = 0x200;
const ESR: u32 = 0x280;
const LVT_CMCI: u32 = 0x2f0;
const ICR: u32 = 0x300;
const ICR2: u32 = 0x310;
const LVTT: u32 = 0x320;
const LVT_THERMAL: u32 = 0x330;
const LVT_PMC: u32 = 0x340;
const LVT0: u32 = 0x350;
const LVT1: u32 = 0x360;
const LVT_ERROR: u32 = 0x370;
const TMICT: u32 = 0x380;
const TMCCT: u32 = 0x390;
const TDCR: u32 = 0x3e0;
const SELF_IPI: u32 = 0x3f0;

/// Version 0x14, six LVT entries (Xen's VLAPIC_VERSION).
const VERSION: u32 = 0x0005_0014;
const LVT_MASKED: u32 = 1 << 16;
const LVT_VECTOR: u32 = 0xff;
const LVT_DM: u32 = 7 << 8;
const LVT_TIMER_MODE: u32 = 3 << 17;
const LINT_BITS: u32 = LVT_MASKED | LVT_DM | LVT_VECTOR | (1 << 13) | (1 << 15);
const SVR_ENABLED: u32 = 1 << 8;
const SVR_FOCUS_DISABLED: u32 = 1 << 9;
const ESR_RECV_ILLEGAL_VECTOR: u32 = 1 << 6;
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;

/// Periods shorter than this would be an interrupt storm: clamped.
pub const MIN_TIMER_PERIOD_NS: u64 = 100_000;

/// The guest did something its CPU would answer with #GP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shorthand {
    None,
    SelfOnly,
    AllIncludingSelf,
    AllButSelf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpiKind {
    Fixed(u8),
    LowestPriority(u8),
    Nmi,
    Init,
    Startup(u8),
}

/// An interprocessor interrupt the guest sent, for the caller to deliver
/// to every vLAPIC that [`VLapic::is_destination`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    pub kind: IpiKind,
    pub shorthand: Shorthand,
    pub logical: bool,
    /// Destination field: 8 bits in xAPIC mode, 32 in x2APIC mode.
    pub dest: u32,
    /// The sender was in x2APIC mode (decides how `dest` is matched).
    pub x2apic: bool,
    /// APIC id of the sender, for the self shorthands.
    pub source: u32,
    pub level_deassert: bool,
}

#[derive(Debug, Clone)]
pub struct VLapic {
    vcpu: u32,
    apic_id: u32,
    base: u64,
    regs: [u32; 64],
    /// Timer: when it next fires (system time), and its period (0 = one
    /// shot); the count was loaded at `timer_start`.
    timer_deadline: Option<u64>,
    timer_period: u64,
    timer_start: u64,
    timer_count_ns: u64,
}

fn idx(off: u32) -> usize {
    (off >> 4) as usize & 63
}

impl VLapic {
    /// The APIC of vCPU `vcpu` with APIC id `apic_id`, as after reset
    /// (xAPIC mode, enabled; vCPU 0 is the bootstrap processor).
    pub fn new(vcpu: u32, apic_id: u32) -> VLapic {
        let mut l = VLapic {
            vcpu,
            apic_id,
            base: DEFAULT_BASE | BASE_ENABLE | if vcpu == 0 { BASE_BSP } else { 0 },
            regs: [0; 64],
            timer_deadline: None,
            timer_period: 0,
            timer_start: 0,
            timer_count_ns: 0,
        };
        l.reset();
        l
    }

    /// The power-on register state (INIT keeps the base MSR).
    pub fn reset(&mut self) {
        self.regs = [0; 64];
        self.regs[idx(ID)] = self.apic_id << 24;
        self.regs[idx(LVR)] = VERSION;
        self.regs[idx(DFR)] = 0xffff_ffff;
        self.regs[idx(SVR)] = 0xff;
        for r in [LVTT, LVT_THERMAL, LVT_PMC, LVT0, LVT1, LVT_ERROR, LVT_CMCI] {
            self.regs[idx(r)] = LVT_MASKED;
        }
        self.timer_deadline = None;
        self.timer_period = 0;
        self.timer_count_ns = 0;
        if self.x2apic_mode() {
            self.set_x2apic_ids();
        }
    }

    pub fn apic_id(&self) -> u32 {
        self.apic_id
    }

    pub fn vcpu(&self) -> u32 {
        self.vcpu
    }

    pub fn base_msr(&self) -> u64 {
        self.base
    }

    pub fn hw_enabled(&self) -> bool {
        self.base & BASE_ENABLE != 0
    }

    pub fn x2apic_mode(&self) -> bool {
        self.base & (BASE_ENABLE | BASE_EXTD) == BASE_ENABLE | BASE_EXTD
    }

    pub fn xapic_mode(&self) -> bool {
        self.base & (BASE_ENABLE | BASE_EXTD) == BASE_ENABLE
    }

    fn sw_enabled(&self) -> bool {
        self.regs[idx(SVR)] & SVR_ENABLED != 0
    }

    /// Delivers interrupts at all (hardware- and software-enabled).
    pub fn enabled(&self) -> bool {
        self.hw_enabled() && self.sw_enabled()
    }

    fn set_x2apic_ids(&mut self) {
        self.regs[idx(ID)] = self.apic_id;
        // x2APIC logical id: cluster in bits 16-31, one bit of 16 below.
        self.regs[idx(LDR)] = ((self.apic_id >> 4) << 16) | (1 << (self.apic_id & 0xf));
    }

    /// WRMSR IA32_APIC_BASE (Xen's rules: the xAPIC window cannot move,
    /// x2APIC only from xAPIC, back only through disabled).
    pub fn write_base_msr(&mut self, val: u64, x2apic_offered: bool) -> Result<(), Gp> {
        let allowed = BASE_ADDR_MASK | BASE_ENABLE | BASE_BSP | if x2apic_offered { BASE_EXTD } else { 0 };
        if val & !allowed != 0 {
            return Err(Gp);
        }
        if val & (BASE_EXTD | BASE_ENABLE) == BASE_ENABLE && val & BASE_ADDR_MASK != DEFAULT_BASE {
            return Err(Gp);
        }
        if (self.base ^ val) & BASE_ENABLE != 0 {
            if val & BASE_EXTD != 0 {
                return Err(Gp);
            }
            if val & BASE_ENABLE != 0 {
                self.base = val;
                self.reset();
            }
        } else if (self.base ^ val) & BASE_EXTD != 0 && !self.xapic_mode() {
            return Err(Gp);
        }
        self.base = val;
        if self.x2apic_mode() {
            self.set_x2apic_ids();
        }
        Ok(())
    }

    fn set_bit(&mut self, base: u32, v: u8, on: bool) {
        let r = &mut self.regs[idx(base) + (v as usize >> 5)];
        if on {
            *r |= 1 << (v & 31);
        } else {
            *r &= !(1 << (v & 31));
        }
    }

    fn highest(&self, base: u32) -> Option<u8> {
        (0..8).rev().find_map(|i| {
            let w = self.regs[idx(base) + i];
            (w != 0).then(|| (i as u32 * 32 + 31 - w.leading_zeros()) as u8)
        })
    }

    fn ppr(&self) -> u32 {
        let tpr = self.regs[idx(TPR)] & 0xff;
        let isrv = self.highest(ISR).unwrap_or(0) as u32;
        if (tpr & 0xf0) >= (isrv & 0xf0) { tpr } else { isrv & 0xf0 }
    }

    /// A fixed interrupt arrives (IPI, timer): it waits in the IRR.
    pub fn accept(&mut self, vector: u8, level: bool) {
        if vector < 16 {
            self.regs[idx(ESR)] |= ESR_RECV_ILLEGAL_VECTOR;
            return;
        }
        self.set_bit(IRR, vector, true);
        self.set_bit(TMR, vector, level);
    }

    /// The interrupt to deliver now, if any (above the processor priority).
    pub fn pending(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let v = self.highest(IRR)?;
        ((v as u32 & 0xf0) > (self.ppr() & 0xf0)).then_some(v)
    }

    /// Whether any vector waits in the IRR (deliverable now or not).
    pub fn has_irr(&self) -> bool {
        self.regs[idx(IRR)..idx(IRR) + 8].iter().any(|w| *w != 0)
    }

    /// Whether an interrupt can be delivered now (wakes a halted vCPU).
    pub fn has_pending(&self) -> bool {
        self.pending().is_some()
    }

    /// The guest's CPU took `vector`: it moves from request to in-service.
    pub fn ack(&mut self, vector: u8) {
        self.set_bit(IRR, vector, false);
        self.set_bit(ISR, vector, true);
    }

    fn eoi(&mut self) {
        if let Some(v) = self.highest(ISR) {
            self.set_bit(ISR, v, false);
            self.set_bit(TMR, v, false);
        }
    }

    /// The task priority as CR8 shows it.
    pub fn cr8(&self) -> u64 {
        ((self.regs[idx(TPR)] >> 4) & 0xf) as u64
    }

    pub fn set_cr8(&mut self, v: u64) {
        self.regs[idx(TPR)] = ((v & 0xf) << 4) as u32;
    }

    fn timer_divisor(&self) -> u64 {
        let d = self.regs[idx(TDCR)];
        let code = ((d & 3) | ((d >> 1) & 4)) as u64;
        if code == 7 { 1 } else { 2 << code }
    }

    /// When the timer next fires, for the caller's timer.
    pub fn timer_deadline(&self) -> Option<u64> {
        self.timer_deadline
    }

    /// The caller's timer went off at `now`: raise the timer interrupt and
    /// re-arm a periodic timer.
    pub fn timer_expired(&mut self, now: u64) {
        let Some(d) = self.timer_deadline else { return };
        if d > now {
            return;
        }
        let lvtt = self.regs[idx(LVTT)];
        if lvtt & LVT_MASKED == 0 {
            self.accept((lvtt & LVT_VECTOR) as u8, false);
        }
        if self.timer_period > 0 {
            // Missed periods are dropped, not queued.
            let missed = (now - d) / self.timer_period;
            self.timer_deadline = Some(d + (missed + 1) * self.timer_period);
            self.timer_start = self.timer_deadline.unwrap_or(now) - self.timer_period;
        } else {
            self.timer_deadline = None;
        }
    }

    fn start_timer(&mut self, now: u64) {
        let count = self.regs[idx(TMICT)] as u64;
        if count == 0 {
            self.timer_deadline = None;
            self.timer_period = 0;
            self.timer_count_ns = 0;
            return;
        }
        let ns = count * self.timer_divisor();
        let periodic = (self.regs[idx(LVTT)] & LVT_TIMER_MODE) >> 17 == 1;
        self.timer_count_ns = ns;
        self.timer_start = now;
        self.timer_period = if periodic { ns.max(MIN_TIMER_PERIOD_NS) } else { 0 };
        self.timer_deadline = Some(now + if periodic { self.timer_period } else { ns });
    }

    fn current_count(&self, now: u64) -> u32 {
        let Some(d) = self.timer_deadline else { return 0 };
        let left = d.saturating_sub(now);
        (left / self.timer_divisor()).min(self.regs[idx(TMICT)] as u64) as u32
    }

    fn read_reg(&self, off: u32, now: u64) -> u32 {
        match off {
            PPR => self.ppr(),
            TMCCT => self.current_count(now),
            ICR => self.regs[idx(ICR)] & !(1 << 12), // delivery idle
            APR => 0,
            _ => self.regs[idx(off)],
        }
    }

    /// A write every mode shares; returns an IPI to deliver.
    fn write_reg(&mut self, off: u32, val: u32, now: u64) -> Option<Ipi> {
        match off {
            TPR => self.regs[idx(TPR)] = val & 0xff,
            EOI => self.eoi(),
            LDR => self.regs[idx(LDR)] = val & 0xff00_0000,
            DFR => self.regs[idx(DFR)] = val | 0x0fff_ffff,
            SVR => {
                self.regs[idx(SVR)] = val & (0xff | SVR_ENABLED | SVR_FOCUS_DISABLED);
                if val & SVR_ENABLED == 0 {
                    for r in [LVTT, LVT_THERMAL, LVT_PMC, LVT0, LVT1, LVT_ERROR, LVT_CMCI] {
                        self.regs[idx(r)] |= LVT_MASKED;
                    }
                }
            }
            ESR => self.regs[idx(ESR)] = 0,
            ICR => {
                self.regs[idx(ICR)] = val & !(1 << 12);
                return self.send(now);
            }
            ICR2 => self.regs[idx(ICR2)] = val & 0xff00_0000,
            LVTT | LVT_THERMAL | LVT_PMC | LVT0 | LVT1 | LVT_ERROR | LVT_CMCI => {
                let mut v = match off {
                    LVTT => val & (LVT_MASKED | LVT_VECTOR | LVT_TIMER_MODE),
                    LVT0 | LVT1 => val & LINT_BITS,
                    LVT_ERROR => val & (LVT_MASKED | LVT_VECTOR),
                    _ => val & (LVT_MASKED | LVT_DM | LVT_VECTOR),
                };
                if !self.sw_enabled() {
                    v |= LVT_MASKED;
                }
                let mode_changed = off == LVTT && (self.regs[idx(LVTT)] ^ v) & LVT_TIMER_MODE != 0;
                self.regs[idx(off)] = v;
                if mode_changed {
                    // A mode change stops the timer, as on hardware.
                    self.timer_deadline = None;
                }
            }
            TMICT => {
                self.regs[idx(TMICT)] = val;
                self.start_timer(now);
            }
            TDCR => self.regs[idx(TDCR)] = val & 0xb,
            _ => {}
        }
        None
    }

    fn send(&mut self, _now: u64) -> Option<Ipi> {
        let low = self.regs[idx(ICR)];
        let vector = (low & 0xff) as u8;
        let x2 = self.x2apic_mode();
        let dest = if x2 { self.regs[idx(ICR2)] } else { self.regs[idx(ICR2)] >> 24 };
        let shorthand = match (low >> 18) & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllButSelf,
        };
        let level_deassert = low & (1 << 15) != 0 && low & (1 << 14) == 0;
        let kind = match (low >> 8) & 7 {
            0 => IpiKind::Fixed(vector),
            1 => IpiKind::LowestPriority(vector),
            4 => IpiKind::Nmi,
            5 => IpiKind::Init,
            6 => IpiKind::Startup(vector),
            // SMI and the reserved modes are not delivered.
            _ => return None,
        };
        if let IpiKind::Fixed(v) | IpiKind::LowestPriority(v) = kind
            && v < 16
        {
            self.regs[idx(ESR)] |= ESR_SEND_ILLEGAL_VECTOR;
            return None;
        }
        Some(Ipi {
            kind,
            shorthand,
            logical: low & (1 << 11) != 0,
            dest,
            x2apic: x2,
            source: self.apic_id,
            level_deassert,
        })
    }

    /// Whether this APIC is a destination of `ipi`.
    pub fn is_destination(&self, ipi: &Ipi) -> bool {
        if !self.hw_enabled() {
            return false;
        }
        match ipi.shorthand {
            Shorthand::SelfOnly => return ipi.source == self.apic_id,
            Shorthand::AllIncludingSelf => return true,
            Shorthand::AllButSelf => return ipi.source != self.apic_id,
            Shorthand::None => {}
        }
        let broadcast = if ipi.x2apic { 0xffff_ffff } else { 0xff };
        if ipi.dest == broadcast {
            return true;
        }
        if !ipi.logical {
            return ipi.dest == self.apic_id;
        }
        let ldr = self.regs[idx(LDR)];
        if self.x2apic_mode() {
            ipi.dest >> 16 == ldr >> 16 && ipi.dest & ldr & 0xffff != 0
        } else if self.regs[idx(DFR)] >> 28 == 0xf {
            // Flat model: eight bits, one per APIC.
            (ldr >> 24) & ipi.dest & 0xff != 0
        } else {
            // Cluster model: cluster in the high nibble.
            let l = ldr >> 24;
            (l >> 4) == (ipi.dest >> 4) & 0xf && l & ipi.dest & 0xf != 0
        }
    }

    /// RDMSR of an x2APIC register.
    pub fn read_msr(&self, msr: u32, now: u64) -> Result<u64, Gp> {
        if !self.x2apic_mode() || !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) {
            return Err(Gp);
        }
        let off = (msr - X2APIC_MSR_FIRST) << 4;
        let readable = matches!(
            off,
            ID | LVR
                | TPR
                | PPR
                | LDR
                | SVR
                | ESR
                | ICR
                | LVT_CMCI
                | LVTT
                | LVT_THERMAL
                | LVT_PMC
                | LVT0
                | LVT1
                | LVT_ERROR
                | TMICT
                | TMCCT
                | TDCR
        ) || (ISR..IRR + 0x80).contains(&off);
        if !readable {
            return Err(Gp);
        }
        let high = if off == ICR { (self.regs[idx(ICR2)] as u64) << 32 } else { 0 };
        Ok(high | self.read_reg(off, now) as u64)
    }

    /// WRMSR of an x2APIC register; returns an IPI to deliver.
    pub fn write_msr(&mut self, msr: u32, val: u64, now: u64) -> Result<Option<Ipi>, Gp> {
        if !self.x2apic_mode() || !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) {
            return Err(Gp);
        }
        let off = (msr - X2APIC_MSR_FIRST) << 4;
        let ok = match off {
            TPR => val & !0xff == 0,
            SVR => val & !(0xff | SVR_ENABLED | SVR_FOCUS_DISABLED) as u64 == 0,
            LVTT => val & !(LVT_MASKED | LVT_VECTOR | LVT_TIMER_MODE) as u64 == 0,
            LVT_THERMAL | LVT_PMC | LVT_CMCI => val & !(LVT_MASKED | LVT_DM | LVT_VECTOR) as u64 == 0,
            LVT0 | LVT1 => val & !LINT_BITS as u64 == 0,
            LVT_ERROR => val & !(LVT_MASKED | LVT_VECTOR) as u64 == 0,
            TMICT => val >> 32 == 0,
            TDCR => val & !0xb == 0,
            ICR => {
                let low = val as u32;
                low & !(0xff | LVT_DM | (1 << 11) | (1 << 14) | (1 << 15) | (3 << 18)) == 0
            }
            SELF_IPI => val & !0xff == 0,
            EOI | ESR => val == 0,
            _ => false,
        };
        if !ok {
            return Err(Gp);
        }
        if off == SELF_IPI {
            let vector = val as u8;
            if vector < 16 {
                self.regs[idx(ESR)] |= ESR_SEND_ILLEGAL_VECTOR;
                return Ok(None);
            }
            self.accept(vector, false);
            return Ok(None);
        }
        if off == ICR {
            self.regs[idx(ICR2)] = (val >> 32) as u32;
        }
        Ok(self.write_reg(off, val as u32, now))
    }

    /// A read of the xAPIC page at `offset` (`len` 1, 2 or 4 bytes).
    /// Unaligned or unknown registers read as 0, as Xen's do.
    pub fn read_mmio(&self, offset: u32, len: u32, now: u64) -> u32 {
        let aligned = offset & !0xf;
        let shift = (offset & 3) * 8;
        if offset & 0xc != 0 || aligned > 0x3f0 {
            return 0;
        }
        let v = self.read_reg(aligned, now) >> shift;
        match len {
            1 => v & 0xff,
            2 => v & 0xffff,
            _ => v,
        }
    }

    /// A 32-bit aligned write to the xAPIC page; other writes are ignored.
    pub fn write_mmio(&mut self, offset: u32, val: u32, now: u64) -> Option<Ipi> {
        if offset & 0xf != 0 || offset > 0x3f0 {
            return None;
        }
        match offset {
            ID => {
                self.regs[idx(ID)] = val & 0xff00_0000;
                None
            }
            _ => self.write_reg(offset, val, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x2(vcpu: u32) -> VLapic {
        let mut l = VLapic::new(vcpu, vcpu * 2);
        l.write_base_msr(DEFAULT_BASE | BASE_ENABLE | BASE_EXTD, true).unwrap();
        l.write_msr(0x80f, 0x1ff, 0).unwrap(); // SVR: enabled, spurious 0xff
        l
    }

    #[test]
    fn reset_state_and_mode_changes_follow_the_rules() {
        let mut l = VLapic::new(0, 0);
        assert!(l.xapic_mode());
        assert_eq!(l.base_msr(), DEFAULT_BASE | BASE_ENABLE | BASE_BSP);
        assert_eq!(l.read_mmio(0x30, 4, 0), VERSION);
        assert_eq!(l.read_mmio(0x350, 4, 0), LVT_MASKED);
        // x2APIC registers are not there in xAPIC mode.
        assert_eq!(l.read_msr(0x802, 0), Err(Gp));
        // Cannot move the window; cannot ask for x2APIC when not offered.
        assert_eq!(l.write_base_msr(0xfed0_0000 | BASE_ENABLE, true), Err(Gp));
        assert_eq!(l.write_base_msr(DEFAULT_BASE | BASE_ENABLE | BASE_EXTD, false), Err(Gp));
        l.write_base_msr(DEFAULT_BASE | BASE_ENABLE | BASE_EXTD | BASE_BSP, true).unwrap();
        assert!(l.x2apic_mode());
        // x2APIC back to xAPIC directly is illegal; through disabled it is fine.
        assert_eq!(l.write_base_msr(DEFAULT_BASE | BASE_ENABLE, true), Err(Gp));
        l.write_base_msr(DEFAULT_BASE, true).unwrap();
        assert!(!l.hw_enabled());
        // Disabled to x2APIC directly is illegal too.
        assert_eq!(l.write_base_msr(DEFAULT_BASE | BASE_ENABLE | BASE_EXTD, true), Err(Gp));
        l.write_base_msr(DEFAULT_BASE | BASE_ENABLE, true).unwrap();
        assert!(l.xapic_mode());
    }

    #[test]
    fn x2apic_ids_and_register_access_rules() {
        let mut l = x2(3);
        assert_eq!(l.read_msr(0x802, 0), Ok(6), "x2APIC id = APIC id");
        assert_eq!(l.read_msr(0x80d, 0), Ok(1 << 6), "logical id: cluster 0, bit 6");
        // Read-only, write-only and reserved registers fault.
        assert_eq!(l.write_msr(0x802, 1, 0), Err(Gp));
        assert_eq!(l.read_msr(0x80b, 0), Err(Gp), "EOI is write-only");
        assert_eq!(l.write_msr(0x80b, 1, 0), Err(Gp), "EOI takes only 0");
        assert_eq!(l.write_msr(0x808, 0x100, 0), Err(Gp), "TPR has 8 bits");
        assert_eq!(l.read_msr(0x80e, 0), Err(Gp), "no DFR in x2APIC mode");
        assert_eq!(l.write_msr(0x900, 0, 0), Err(Gp));
    }

    #[test]
    fn priorities_ack_and_eoi() {
        let mut l = x2(0);
        l.accept(0x31, false);
        l.accept(0x52, false);
        assert_eq!(l.pending(), Some(0x52));
        l.ack(0x52);
        // 0x31 is below the in-service class 0x50.
        assert_eq!(l.pending(), None);
        l.accept(0x61, false);
        assert_eq!(l.pending(), Some(0x61), "higher class nests");
        l.ack(0x61);
        l.write_msr(0x80b, 0, 0).unwrap(); // EOI for 0x61
        l.write_msr(0x80b, 0, 0).unwrap(); // EOI for 0x52
        assert_eq!(l.pending(), Some(0x31));
        // TPR masks by class.
        l.write_msr(0x808, 0x40, 0).unwrap();
        assert_eq!(l.pending(), None);
        assert_eq!(l.cr8(), 4);
        l.set_cr8(2);
        assert_eq!(l.pending(), Some(0x31));
        // Vectors below 16 are illegal: ESR says so, nothing is raised.
        l.accept(3, false);
        assert_ne!(l.read_msr(0x828, 0).unwrap() & ESR_RECV_ILLEGAL_VECTOR as u64, 0);
        // A software-disabled APIC delivers nothing.
        l.write_msr(0x80f, 0xff, 0).unwrap();
        assert_eq!(l.pending(), None);
    }

    #[test]
    fn one_shot_and_periodic_timers() {
        let mut l = x2(0);
        l.write_msr(0x83e, 0xb, 0).unwrap(); // divide by 1
        l.write_msr(0x832, 0xec, 0).unwrap(); // one-shot, vector 0xec
        l.write_msr(0x838, 1_000_000, 1000).unwrap(); // 1 ms
        assert_eq!(l.timer_deadline(), Some(1_001_000));
        assert_eq!(l.read_msr(0x839, 501_000).unwrap(), 500_000, "current count halfway");
        l.timer_expired(900_000);
        assert_eq!(l.pending(), None, "not yet");
        l.timer_expired(1_001_000);
        assert_eq!(l.pending(), Some(0xec));
        assert_eq!(l.timer_deadline(), None);
        // Periodic, divide by 2: 100 us period; late expiry skips missed ones.
        l.write_msr(0x83e, 0, 0).unwrap();
        l.write_msr(0x832, (1 << 17) | 0xed, 0).unwrap();
        l.write_msr(0x838, 50_000, 0).unwrap();
        assert_eq!(l.timer_deadline(), Some(100_000));
        l.timer_expired(350_000);
        assert_eq!(l.timer_deadline(), Some(400_000));
        // Masked: fires but raises nothing; TMICT=0 stops it.
        l.write_msr(0x832, LVT_MASKED as u64 | (1 << 17) | 0xee, 0).unwrap();
        l.write_msr(0x838, 0, 0).unwrap();
        assert_eq!(l.timer_deadline(), None);
        // A tiny periodic count is clamped, not a storm.
        l.write_msr(0x832, (1 << 17) | 0xed, 0).unwrap();
        l.write_msr(0x838, 1, 0).unwrap();
        assert_eq!(l.timer_deadline(), Some(MIN_TIMER_PERIOD_NS));
    }

    #[test]
    fn icr_decodes_ipis_and_destinations_match() {
        let mut a = x2(0);
        let b = x2(1);
        // Fixed vector 0x40 to physical APIC id 2 (vCPU 1).
        let ipi = a.write_msr(0x830, (2u64 << 32) | 0x40, 0).unwrap().unwrap();
        assert_eq!(ipi.kind, IpiKind::Fixed(0x40));
        assert!(b.is_destination(&ipi) && !a.is_destination(&ipi));
        // INIT and STARTUP to all but self.
        let init = a.write_msr(0x830, (3 << 18) | (5 << 8), 0).unwrap().unwrap();
        assert_eq!(init.kind, IpiKind::Init);
        assert!(b.is_destination(&init) && !a.is_destination(&init));
        let sipi = a.write_msr(0x830, (3 << 18) | (6 << 8) | 0x9a, 0).unwrap().unwrap();
        assert_eq!(sipi.kind, IpiKind::Startup(0x9a));
        // Logical x2APIC: cluster 0, bit 2 is APIC id 2.
        let logical = a.write_msr(0x830, (0x0000_0004u64 << 32) | (1 << 11) | 0x41, 0).unwrap().unwrap();
        assert!(b.is_destination(&logical) && !a.is_destination(&logical));
        // Self IPI lands in the sender's own IRR.
        a.write_msr(0x83f, 0x42, 0).unwrap();
        assert_eq!(a.pending(), Some(0x42));
        // Illegal vector and reserved ICR bits.
        assert_eq!(a.write_msr(0x830, 5, 0), Ok(None));
        assert_eq!(a.write_msr(0x830, 1 << 13, 0), Err(Gp));
    }

    #[test]
    fn xapic_mmio_and_flat_logical_destinations() {
        let mut a = VLapic::new(0, 0);
        let mut b = VLapic::new(1, 2);
        for l in [&mut a, &mut b] {
            l.write_mmio(0xf0, 0x1ff, 0);
        }
        assert_eq!(b.read_mmio(0x20, 4, 0), 2 << 24);
        assert_eq!(b.read_mmio(0x23, 1, 0), 2, "byte read of the id's top byte");
        b.write_mmio(0xd0, 0x0200_0000, 0); // LDR bit 1
        assert_eq!(a.write_mmio(0x310, 0x0200_0000, 0), None);
        let ipi = a.write_mmio(0x300, (1 << 11) | 0x50, 0).unwrap();
        assert!(b.is_destination(&ipi) && !a.is_destination(&ipi));
        // Cluster model: cluster 0, member bit 1.
        b.write_mmio(0xe0, 0x0fff_ffff, 0);
        b.write_mmio(0xd0, 0x0200_0000, 0);
        a.write_mmio(0x310, 0x0200_0000, 0);
        let ipi = a.write_mmio(0x300, (1 << 11) | 0x50, 0).unwrap();
        assert!(b.is_destination(&ipi));
        // Unaligned writes are dropped; unknown offsets read 0.
        assert_eq!(a.write_mmio(0x301, 0x50, 0), None);
        assert_eq!(a.read_mmio(0x3f4, 4, 0), 0);
        assert_eq!(a.read_mmio(0x800, 4, 0), 0);
    }
}
