//! vCPUs: the part of a vCPU only the CPU running it touches (`Vcpu`,
//! locked while it runs), the part other CPUs reach (`VcpuShared`: run
//! state, request flags, the emulated local APIC, timers, runstate, the
//! registered vcpu_info), and the requests other CPUs leave for it.

use crate::arch::x86_64::fpu::FxArea;
use crate::arch::x86_64::hvm::HvmVcpu;
use crate::arch::x86_64::hvm::regs::GuestRegs;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vlapic::VLapic;
use crate::mm::addr::{Gfn, Gva, Mfn};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

/// The part of a vCPU that only the CPU running it touches (locked for
/// the whole time it runs).
pub struct Vcpu {
    pub id: u32,
    pub regs: GuestRegs,
    pub arch: HvmVcpu,
    pub fpu: alloc::boxed::Box<FxArea>,
    /// Where the last instruction fetches for exits found the guest's code
    /// pages: (guest CR3, linear page, p2m generation) -> host page. Two
    /// entries, as exits come from the guest's own code and from its
    /// hypercall page in turn.
    pub fetch_cache: crate::util::pair_cache::PairCache<(u64, u64, u64), u64>,
    /// An interrupt-window exit is requested.
    pub window_requested: bool,
    /// It blocked last time it ran: the events that woke it are consumed.
    pub resumed_from_block: bool,
    /// IA32_TSC_ADJUST: what the guest added to its TSC since it started.
    pub tsc_adjust: u64,
    /// Its MSRs that live in no hardware state (DEBUGCTL, MTRRs, vMCE, ...).
    pub msrs: crate::arch::x86_64::hvm::policy::msrs::GuestMsrs,
}

/// Requests to a vCPU from elsewhere, applied by the CPU that runs it.
pub mod vflags {
    /// Its singleshot or periodic timer fired: ends a block (the event itself
    /// is VIRQ_TIMER, raised on the domain's bound port).
    pub const TIMER: u32 = 1 << 0;
    /// Load `VcpuShared::start` before running (INIT/STARTUP, initialise).
    pub const START: u32 = 1 << 1;
    /// Drop cached guest translations before the next entry.
    pub const FLUSH: u32 = 1 << 2;
    /// An NMI to inject.
    pub const NMI: u32 = 1 << 3;
    /// Rewrite its vcpu_time_info (moved vcpu_info, TSC change).
    pub const TIME: u32 = 1 << 4;
    /// Its poll ended (timeout): SCHEDOP_poll returns.
    pub const POLL_DONE: u32 = 1 << 5;
    /// Its domain stopped: leave the guest for good (never cleared).
    pub const STOP: u32 = 1 << 6;
    /// An event channel raised its upcall: ends a block.
    pub const EVENT: u32 = 1 << 7;
    /// What the run loop acts on before entering the guest (TIMER and
    /// POLL_DONE only end blocks).
    pub const BEFORE_ENTRY: u32 = START | FLUSH | NMI | TIME | STOP;
}

/// Where a vCPU is, as the scheduler and Xen's runstate see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RunState {
    /// Not started, or taken down (VCPUOP_down, HLT with interrupts off).
    Down = 0,
    /// Wants the CPU (running or queued).
    Runnable = 1,
    /// Waiting for an interrupt or event (HLT, SCHEDOP_block/poll).
    Blocked = 2,
    /// After INIT: waiting for STARTUP.
    WaitForSipi = 3,
}

/// Time in each Xen runstate, as VCPUOP_get_runstate_info reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunstateAcct {
    pub state: u32,
    pub entry: u64,
    pub time: [u64; 4],
    /// A guest-virtual address the guest registered for updates.
    pub area: Option<Gva>,
}

impl RunstateAcct {
    pub fn enter(&mut self, state: u32, now: u64) {
        let s = self.state as usize & 3;
        self.time[s] += now.saturating_sub(self.entry);
        self.state = state;
        self.entry = now;
    }

    pub fn info(&self, now: u64) -> xen_abi::vcpu::RunstateInfo {
        let mut time = self.time;
        time[self.state as usize & 3] += now.saturating_sub(self.entry);
        xen_abi::vcpu::RunstateInfo { state: self.state, _pad: 0, state_entry_time: self.entry, time }
    }
}

/// A vCPU's timers (VCPUOP_set_singleshot_timer / set_periodic_timer),
/// with a generation so that a re-armed or stopped timer's old queue
/// entries are ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuTimers {
    pub singleshot: Option<u64>,
    pub periodic: Option<(u64, u64)>,
    pub poll_deadline: Option<u64>,
    pub generation: u64,
    /// The same for the vLAPIC's timer, which the guest reprograms apart.
    pub vlapic_generation: u64,
}

/// A vCPU as the rest of the machine sees it: small, individually locked
/// or atomic state that other CPUs may read and change while the vCPU
/// runs, and the vCPU itself behind `cell`.
pub struct VcpuShared {
    pub id: u32,
    /// The scheduler's entity id (set when the domain is scheduled).
    pub sched_id: AtomicUsize,
    pub(super) state: AtomicU8,
    pub flags: AtomicU32,
    /// Has a starting state (vCPU 0, or after initialise / STARTUP).
    pub initialised: AtomicBool,
    /// CPU index + 1 while it runs, else 0.
    pub running_on: AtomicU32,
    pub upcall_vector: AtomicU8,
    /// Set whenever the vLAPIC may hold a requested interrupt, so that the
    /// run loop looks at the vLAPIC only then.
    pub irq_hint: AtomicBool,
    pub vlapic: Mutex<VLapic>,
    pub start: Mutex<Option<InitialState>>,
    pub timers: Mutex<VcpuTimers>,
    /// vcpu_info moved by VCPUOP_register_vcpu_info: (guest frame, offset,
    /// host frame, which is referenced while registered).
    pub vcpu_info: Mutex<Option<(Gfn, u32, Mfn)>>,
    /// Where the hypervisor reaches its vcpu_info (0: it has none, a vCPU
    /// past the 32 slots of shared_info that did not register one).
    pub vcpu_info_va: AtomicU64,
    /// SCHEDOP_poll: the port it waits for plus one, POLL_ANY, or 0.
    pub poll_port: AtomicU32,
    /// A guest-virtual copy of vcpu_time_info the guest asked for.
    pub time_area: Mutex<Option<Gva>>,
    pub runstate: Mutex<RunstateAcct>,
    pub cell: Mutex<Vcpu>,
}

impl VcpuShared {
    pub fn state(&self) -> RunState {
        match self.state.load(Ordering::Acquire) {
            1 => RunState::Runnable,
            2 => RunState::Blocked,
            3 => RunState::WaitForSipi,
            _ => RunState::Down,
        }
    }

    pub fn set_state(&self, s: RunState) {
        self.state.store(s as u8, Ordering::Release);
    }

    pub fn set_flag(&self, f: u32) {
        self.flags.fetch_or(f, Ordering::AcqRel);
    }

    /// Clears and returns the flags in `mask` that were set.
    pub fn take_flags(&self, mask: u32) -> u32 {
        self.flags.fetch_and(!mask, Ordering::AcqRel) & mask
    }

    pub fn has_flag(&self, f: u32) -> bool {
        self.flags.load(Ordering::Acquire) & f != 0
    }

    /// Something that ends a block: an interrupt to deliver, a timer or
    /// poll event, a start request.
    pub fn wake_pending(&self) -> bool {
        self.has_flag(vflags::TIMER | vflags::START | vflags::NMI | vflags::POLL_DONE | vflags::EVENT)
            || self.vlapic.lock().has_pending()
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state(), RunState::Runnable | RunState::Blocked)
    }

    /// A fixed interrupt for this vCPU's APIC (the caller notifies it).
    pub fn raise_irq(&self, vector: u8) {
        self.vlapic.lock().accept(vector, false);
        self.irq_hint.store(true, Ordering::Release);
    }

    /// The vLAPIC may hold requests now (after the vCPU wrote to it).
    pub fn note_irr(&self) {
        if self.vlapic.lock().has_irr() {
            self.irq_hint.store(true, Ordering::Release);
        }
    }
}
