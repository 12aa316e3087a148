//! The one exit-reason enum: both backends (SVM, VMX) translate their
//! hardware exits into `VmExit`, which `handle` handles once; `Next` is what
//! the run loop does after it.

use crate::arch::x86_64::insn::Expected;
use crate::mm::addr::Gpa;

/// How a nested page fault happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpfAccess {
    pub write: bool,
    pub fetch: bool,
    /// A translation existed (a permission problem, not a missing page).
    pub present: bool,
    /// The fault hit while the CPU walked the guest's own page tables.
    pub in_guest_walk: bool,
}

/// A port I/O exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoExit {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    pub input: bool,
    /// INS/OUTS.
    pub string: bool,
    pub rep: bool,
    /// Address size of a string instruction: 2, 4 or 8 bytes.
    pub addr_size: u8,
    /// Where the next instruction starts (the hardware always says).
    pub next_rip: u64,
}

/// A write to CR0 or CR4 the hypervisor checks (MOV to CR, CLTS, LMSW),
/// as much as the hardware said of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrWrite {
    /// MOV to CRn from a general register (x86 number).
    Mov {
        cr: u8,
        gpr: u8,
    },
    Clts,
    /// LMSW of this value.
    Lmsw(u16),
    /// A write to CRn the instruction at RIP must be decoded for (SVM
    /// without decode assists).
    Decode {
        cr: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    Cpuid,
    Rdmsr,
    Wrmsr,
    Io(IoExit),
    NestedPageFault {
        gpa: Gpa,
        access: NpfAccess,
    },
    /// VMMCALL (AMD) or VMCALL (Intel) executed natively: which one (the
    /// backend knows, so the handler need not ask which backend runs).
    Hypercall(Expected),
    Hlt,
    /// An intercepted exception the guest raised.
    Exception {
        vector: u8,
        error_code: Option<u32>,
        cr2: u64,
    },
    /// A physical interrupt arrived while the guest ran.
    ExternalInterrupt,
    /// The backend's own slice timer ran out (VMX preemption timer): the
    /// host takes pending interrupts, as after `ExternalInterrupt`.
    SliceExpired,
    Nmi,
    InterruptWindow,
    /// Triple fault: the guest's CPU shut down.
    Shutdown,
    Invd,
    Wbinvd,
    Xsetbv,
    CrWrite(CrWrite),
    Pause,
    /// An instruction the guest may not use (nested virtualisation,
    /// MONITOR/MWAIT, SKINIT ...): it gets #UD.
    Undefined(crate::arch::x86_64::insn::Expected),
    /// The hardware refused to enter the guest (invalid guest state).
    InvalidState,
    /// The backend finished the exit itself (a format-specific instruction
    /// such as a VMX control-register access): resume the guest.
    Handled,
    /// An exit this hypervisor does not expect.
    Unknown {
        code: u64,
        info1: u64,
        info2: u64,
    },
}

/// What the run loop does after an exit was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Resume,
    Yield,
    Block,
    /// The vCPU goes down (VCPUOP_down on itself, HLT with IF clear).
    Down,
    Stop,
}

impl Next {
    /// After a HLT: a vCPU that halts with interrupts on waits for one; with
    /// interrupts off only an NMI could wake it, which Xen takes as the
    /// vCPU going offline.
    pub fn after_halt(interrupts_on: bool) -> Next {
        if interrupts_on { Next::Block } else { Next::Down }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_halt_blocks_unless_interrupts_are_off() {
        assert_eq!(Next::after_halt(true), Next::Block);
        assert_eq!(Next::after_halt(false), Next::Down);
    }
}
