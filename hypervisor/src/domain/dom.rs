//! Domains: their memory (the p2m), vCPUs, state and lifecycle, and the
//! view of a domain that hypercalls get.

use crate::arch::x86_64::fpu::FxArea;
use crate::arch::x86_64::hvm::{self as arch_hvm, HvmVcpu};
use crate::arch::x86_64::hvm::npt::{Npt, P2mType};
use crate::cmdline::ExitAction;
use crate::console::line::LineBuffer;
use crate::util::cpumask::CpuMask;
use crate::memory::guest_mem::{self, GuestPhysical, MemFault};
use crate::hypercall::Env;
use crate::arch::x86_64::hvm::pvclock::TimeScale;
use crate::domain::build::pvh::{self, BuildSpec, PvhError};
use crate::arch::x86_64::hvm::regs::GuestRegs;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vlapic::VLapic;
use crate::mm::phys::{alloc_frames, alloc_zeroed_frame, frame_counts, free_frames, phys_to_virt};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;
use xen_abi::Pod;
use xen_abi::memory::E820Entry;
use xen_abi::shared::{self as xs, VcpuTimeInfo};
use xen_abi::start_info::{HvmMemmapEntry, SIF_INITDOMAIN, SIF_PRIVILEGED};
use xen_abi::vcpu::{RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE};
use xen_abi::{hvm, sched};

/// Guest-physical layout of a PVH domain, as libxl lays it out: RAM from
/// 0, a hole from 0xfc000000 (ACPI tables, the LAPIC, Xen's special pages
/// at 0xfeff8000), RAM above 4 GiB for the rest.
pub const LOW_RAM_END: u64 = 0xfc00_0000;
pub const SPECIAL_PAGES: u64 = 0xfeff_8000;
pub const SPECIAL_PAGES_LEN: u64 = 0x8000;
/// Table pages a domain's p2m may add after it is built.
pub const P2M_HEADROOM: u64 = 64;
/// Where a domain's ACPI tables go (libxl's ACPI_INFO_PHYSICAL_ADDRESS
/// region: the start of the hole below 4 GiB).
pub const ACPI_BASE: u64 = LOW_RAM_END;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    Running,
    /// Suspended (SHUTDOWN_suspend): kept until a toolstack resumes or
    /// destroys it.
    Suspended,
    /// Shut down with this reason; resources are released once no vCPU
    /// runs.
    Dead(u8),
}

/// The part of a vCPU that only the CPU running it touches (locked for
/// the whole time it runs).
pub struct Vcpu {
    pub id: u32,
    pub regs: GuestRegs,
    pub arch: HvmVcpu,
    pub fpu: alloc::boxed::Box<FxArea>,
    /// Where the last instruction fetch for an exit found the guest's code
    /// page: (guest CR3, linear page, p2m generation, host page).
    pub fetch_cache: Option<(u64, u64, u64, u64)>,
    /// An interrupt-window exit is requested.
    pub window_requested: bool,
    /// It blocked last time it ran: the events that woke it are consumed.
    pub resumed_from_block: bool,
}

/// Requests to a vCPU from elsewhere, applied by the CPU that runs it.
pub mod vflags {
    /// Its singleshot or periodic timer fired (VIRQ_TIMER, delivered as an
    /// event once event channels exist; until then it wakes the vCPU).
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
    pub area: Option<u64>,
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
    state: AtomicU8,
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
    pub vcpu_info: Mutex<Option<(u64, u32, u64)>>,
    /// Where the hypervisor reaches its vcpu_info (0: it has none, a vCPU
    /// past the 32 slots of shared_info that did not register one).
    pub vcpu_info_va: AtomicU64,
    /// SCHEDOP_poll: the port it waits for plus one, POLL_ANY, or 0.
    pub poll_port: AtomicU32,
    /// A guest-virtual copy of vcpu_time_info the guest asked for.
    pub time_area: Mutex<Option<u64>>,
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

pub struct DomainInner {
    pub state: DomainState,
    pub p2m: Option<Npt>,
    pub ram_pages: u64,
    pub params: [u64; hvm::NR_PARAMS as usize],
    pub shared_info_mfn: u64,
    pub shared_info_gfn: Option<u64>,
    pub console: LineBuffer,
    pub shutdown_code: Option<u8>,
    /// Changes whenever a guest frame is remapped or removed.
    pub p2m_gen: u64,
    /// Pages the domain may have (xl's maxmem; its initial memory).
    pub max_pages: u64,
    /// Extents from increase_reservation, owned but not in the p2m.
    pub unplaced: Vec<(u64, u64)>,
}

/// Whether a guest frame holding `entry` may be given a new page: it is
/// empty or the domain's own RAM (which it then gives up); hypervisor
/// pages and grant mappings are never replaced.
pub fn replaceable(entry: Option<(u64, P2mType)>) -> bool {
    entry.is_none_or(|(_, t)| t.owned())
}

impl DomainInner {
    /// Puts the hypervisor page `mfn` at guest frame `gpfn`, taking it
    /// away from `prev` if it was mapped there: over nothing, or over the
    /// domain's own RAM, which the domain gives up (Xen frees it too) once
    /// no vCPU can reach it. Over another hypervisor page or a grant
    /// mapping -EBUSY, rather than lose track of it. Returns whether
    /// anything changed.
    pub fn place_hypervisor_page(
        &mut self,
        gpfn: u64,
        mfn: u64,
        prev: Option<u64>,
        deferred: &mut Vec<Deferred>,
    ) -> Result<bool, i64> {
        use xen_abi::errno::*;
        if gpfn >> (crate::arch::x86_64::hvm::npt::GPA_BITS - 12) != 0 {
            return Err(-EINVAL);
        }
        if prev == Some(gpfn) {
            return Ok(false);
        }
        let p2m = self.p2m.as_mut().ok_or(-EINVAL)?;
        if !replaceable(p2m.lookup(gpfn)) {
            return Err(-EBUSY);
        }
        if let Some((old, t)) = p2m.set(gpfn, mfn, P2mType::Special).map_err(|_| -ENOMEM)?
            && t.owned()
        {
            deferred.push(Deferred::Release(old));
            self.ram_pages -= 1;
        }
        if let Some(prev) = prev {
            let _ = p2m.clear(prev);
        }
        self.p2m_gen += 1;
        Ok(true)
    }
}

pub struct Domain {
    pub id: u16,
    pub name: String,
    pub privileged: bool,
    pub handle: [u8; 16],
    /// The guest memory map (fixed at creation).
    pub memmap: Vec<E820Entry>,
    /// Credit scheduler weight and cap (percent of one CPU, 0 = none) and
    /// the CPUs its vCPUs may run on.
    pub weight: u32,
    pub cap: u32,
    pub affinity: CpuMask,
    /// Added to the host TSC to give the guest's (the same for every vCPU,
    /// so the guest's TSCs agree): the guest's TSC starts near 0.
    pub tsc_offset: u64,
    pub inner: Mutex<DomainInner>,
    /// `inner.state == Running`, readable without the lock (the run loop
    /// checks it after every exit); cleared, under the lock, when it stops.
    running: AtomicBool,
    pub vcpus: Vec<VcpuShared>,
    /// vCPUs the scheduler still holds; the last to leave a dead domain
    /// releases it.
    pub live: AtomicU32,
    /// The hypervisor's address of the shared_info page.
    pub shared_info_va: u64,
    /// Event channels and grant table (see `common::interdomain` for the
    /// lock order).
    pub evtchn: Mutex<crate::event::table::Table>,
    pub grants: Mutex<crate::grant::table::Grants>,
    /// vCPUs in SCHEDOP_poll.
    pub pollers: AtomicU32,
    /// HVM_PARAM_CALLBACK_IRQ's vector (0: none): injected while a vCPU's
    /// evtchn_upcall_pending is set.
    pub callback_vector: AtomicU8,
    /// The console ring page (host frame and address) and its port.
    pub console_mfn: u64,
    pub console_va: u64,
    pub console_port: AtomicU32,
}

/// Work a hypercall leaves for after every vCPU of the domain has dropped
/// its cached translations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// A frame the domain gave up (freed unless something refers to it).
    Release(u64),
    /// A grant mapping's pin and frame reference.
    Unpin { granter: u16, gref: u32, readonly: bool, mfn: u64 },
}

impl Deferred {
    pub fn run(self) {
        match self {
            Deferred::Release(mfn) => crate::interdomain::release_frames(mfn, 1),
            Deferred::Unpin { granter, gref, readonly, mfn } => {
                crate::interdomain::unpin_after_flush(granter, gref, readonly, mfn)
            }
        }
    }
}

static DOMAINS: Mutex<Vec<Arc<Domain>>> = Mutex::new(Vec::new());
/// What dom0's shutdown asked of the machine (Xen powers off or reboots
/// the host when dom0 does).
static MACHINE: Mutex<Option<ExitAction>> = Mutex::new(None);

/// The machine action requested by dom0, if it shut down.
pub fn machine_request() -> Option<ExitAction> {
    *MACHINE.lock()
}
static HV_CMDLINE: spin::Once<String> = spin::Once::new();

pub fn set_hypervisor_cmdline(s: &str) {
    HV_CMDLINE.call_once(|| String::from(s));
}

pub fn find(domid: u16) -> Option<Arc<Domain>> {
    DOMAINS.lock().iter().find(|d| d.id == domid).cloned()
}

pub fn all() -> Vec<Arc<Domain>> {
    DOMAINS.lock().clone()
}

pub fn count() -> usize {
    DOMAINS.lock().len()
}

/// What to build.
pub struct DomainSpec<'a> {
    pub id: u16,
    pub name: String,
    pub privileged: bool,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub kernel: &'a [u8],
    pub ramdisk: Option<&'a [u8]>,
    pub cmdline: &'a str,
    pub weight: u32,
    pub cap: u32,
    pub affinity: CpuMask,
}

#[derive(Debug)]
pub enum CreateError {
    Kernel(PvhError),
    NotEnoughMemory { need_mib: u64, free_mib: u64 },
    OutOfMemory,
    Backend(&'static str),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Kernel(e) => write!(f, "{e}"),
            CreateError::NotEnoughMemory { need_mib, free_mib } => {
                write!(f, "not enough free memory: the domain needs {need_mib} MiB, {free_mib} MiB are free")
            }
            CreateError::OutOfMemory => f.write_str("ran out of memory while building the domain"),
            CreateError::Backend(why) => write!(f, "virtualization backend: {why}"),
        }
    }
}

/// The RAM ranges (start gfn, frame count) of a domain with `pages` pages.
fn ram_layout(pages: u64) -> [(u64, u64); 2] {
    let low = pages.min(LOW_RAM_END >> 12);
    [(0, low), (1 << 20, pages - low)]
}

/// A domain's guest-physical memory as its p2m allows it to be used.
pub struct DomainMemory<'a> {
    pub p2m: &'a Npt,
}

impl GuestPhysical for DomainMemory<'_> {
    fn frame(&self, gfn: u64, write: bool) -> Result<NonNull<u8>, MemFault> {
        let (mfn, t) = self.p2m.lookup(gfn).ok_or(MemFault::Unmapped { gpa: gfn << 12 })?;
        if write && !t.writable() {
            return Err(MemFault::ReadOnly { gpa: gfn << 12 });
        }
        let v = phys_to_virt(mfn << 12).ok_or(MemFault::Unmapped { gpa: gfn << 12 })?;
        NonNull::new(v as *mut u8).ok_or(MemFault::Unmapped { gpa: gfn << 12 })
    }
}

fn zero_frames(mfn: u64, count: u64) -> Result<(), CreateError> {
    let v = phys_to_virt(mfn << 12).ok_or(CreateError::OutOfMemory)?;
    // SAFETY: freshly allocated frames, direct-mapped, not yet visible to
    // any guest.
    unsafe { core::ptr::write_bytes(v as *mut u8, 0, (count << 12) as usize) };
    Ok(())
}

/// Gives the domain `count` zeroed frames at `gfn`, in 2 MiB blocks where
/// the guest address is aligned for them.
fn populate(p2m: &mut Npt, gfn: u64, count: u64) -> Result<(), CreateError> {
    let end = gfn + count;
    let mut g = gfn;
    while g < end {
        if g.is_multiple_of(512)
            && end - g >= 512
            && let Some(phys) = alloc_frames(9)
        {
            zero_frames(phys >> 12, 512)?;
            if p2m.map(g, phys >> 12, 512, P2mType::Ram).is_err() {
                let _ = free_frames(phys, 512);
                return Err(CreateError::OutOfMemory);
            }
            g += 512;
            continue;
        }
        let phys = alloc_frames(0).ok_or(CreateError::OutOfMemory)?;
        zero_frames(phys >> 12, 1)?;
        if p2m.map(g, phys >> 12, 1, P2mType::Ram).is_err() {
            let _ = free_frames(phys, 1);
            return Err(CreateError::OutOfMemory);
        }
        g += 1;
    }
    Ok(())
}

/// Builds a PVH domain and registers it (its first vCPU is runnable; the
/// caller queues it).
pub fn create(spec: &DomainSpec<'_>) -> Result<Arc<Domain>, CreateError> {
    let kernel = pvh::parse_kernel(spec.kernel).map_err(CreateError::Kernel)?;
    let pages = spec.memory_mib << 8;
    // Memory for the guest plus its p2m tables and per-vCPU state.
    let overhead = pages / 256 + 16 + spec.vcpus as u64 * 4;
    let (free, _) = frame_counts();
    if pages + overhead > free {
        return Err(CreateError::NotEnoughMemory { need_mib: (pages + overhead) >> 8, free_mib: free >> 8 });
    }
    let mut p2m = Npt::new(arch_hvm::p2m_format(), arch_hvm::p2m_largest()).map_err(|_| CreateError::OutOfMemory)?;
    let layout = ram_layout(pages);
    let mut memmap: Vec<HvmMemmapEntry> = Vec::new();
    let mut e820 = Vec::new();
    for (gfn, count) in layout.into_iter().filter(|(_, c)| *c > 0) {
        if let Err(e) = populate(&mut p2m, gfn, count) {
            p2m.destroy(&mut |mfn, n| {
                let _ = free_frames(mfn << 12, n);
            });
            return Err(e);
        }
        memmap.push(HvmMemmapEntry { addr: gfn << 12, size: count << 12, kind: 1, reserved: 0 });
        e820.push(E820Entry { addr: gfn << 12, size: count << 12, kind: 1 });
    }
    // libxl's order: low RAM, the special pages, then high RAM.
    let special = HvmMemmapEntry { addr: SPECIAL_PAGES, size: SPECIAL_PAGES_LEN, kind: 2, reserved: 0 };
    memmap.insert(1, special);
    e820.insert(1, E820Entry { addr: SPECIAL_PAGES, size: SPECIAL_PAGES_LEN, kind: 2 });

    let cleanup = |p2m: Npt| {
        p2m.destroy(&mut |mfn, n| {
            let _ = free_frames(mfn << 12, n);
        });
    };
    // ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) right after low RAM.
    let acpi = crate::domain::build::acpi::build(ACPI_BASE, spec.vcpus);
    let acpi_pages = (acpi.len() as u64).div_ceil(4096);
    memmap.insert(1, HvmMemmapEntry { addr: ACPI_BASE, size: acpi_pages << 12, kind: 3, reserved: 0 });
    e820.insert(1, E820Entry { addr: ACPI_BASE, size: acpi_pages << 12, kind: 3 });
    if let Err(e) = populate(&mut p2m, ACPI_BASE >> 12, acpi_pages) {
        cleanup(p2m);
        return Err(e);
    }
    if guest_mem::write_phys(&DomainMemory { p2m: &p2m }, ACPI_BASE, &acpi).is_err() {
        cleanup(p2m);
        return Err(CreateError::OutOfMemory);
    }
    let build = BuildSpec {
        ramdisk: spec.ramdisk,
        cmdline: spec.cmdline,
        memmap: &memmap,
        low_ram_end: layout[0].1 << 12,
        flags: if spec.privileged { SIF_PRIVILEGED | SIF_INITDOMAIN } else { 0 },
        rsdp: ACPI_BASE,
    };
    let start_info = match pvh::place(&kernel, &build)
        .and_then(|at| pvh::write_image(&DomainMemory { p2m: &p2m }, &kernel, &build, &at))
    {
        Ok(si) => si,
        Err(e) => {
            cleanup(p2m);
            return Err(CreateError::Kernel(e));
        }
    };
    // Room for remapping pages later (shared_info now, grant maps later):
    // every further table page counts against this.
    // Enough to map all of RAM with 4 KiB pages (a balloon driver splits
    // large ones), plus room for grant maps and special pages.
    p2m.limit_growth(P2M_HEADROOM + pages / 512);
    let Some(shared_info) = alloc_zeroed_frame() else {
        cleanup(p2m);
        return Err(CreateError::OutOfMemory);
    };
    // The console ring, at libxl's console page.
    let Some(console) = alloc_zeroed_frame() else {
        cleanup(p2m);
        let _ = free_frames(shared_info, 1);
        return Err(CreateError::OutOfMemory);
    };
    if p2m.set(crate::interdomain::CONSOLE_GFN, console >> 12, P2mType::Special).is_err() {
        cleanup(p2m);
        let _ = free_frames(shared_info, 1);
        let _ = free_frames(console, 1);
        return Err(CreateError::OutOfMemory);
    }
    let shared_info_va = phys_to_virt(shared_info).unwrap_or(0);
    let tsc_offset = 0u64.wrapping_sub(crate::arch::x86_64::cpu::rdtsc());
    let mut vcpus = Vec::new();
    for id in 0..spec.vcpus {
        let mut arch = match HvmVcpu::new(p2m.root()) {
            Ok(a) => a,
            Err(why) => {
                cleanup(p2m);
                let _ = free_frames(shared_info, 1);
                let _ = free_frames(console, 1);
                return Err(CreateError::Backend(why));
            }
        };
        let mut regs = GuestRegs::default();
        let state = if id == 0 {
            let st = InitialState::pvh_entry(kernel.entry, start_info);
            arch.set_state(&st);
            regs = st.regs;
            RunState::Runnable
        } else {
            RunState::Down
        };
        arch.set_tsc_offset(tsc_offset);
        // Built on this CPU, run on any: nothing of it stays cached here.
        arch.release();
        vcpus.push(VcpuShared {
            id,
            sched_id: AtomicUsize::new(usize::MAX),
            state: AtomicU8::new(state as u8),
            flags: AtomicU32::new(0),
            initialised: AtomicBool::new(id == 0),
            running_on: AtomicU32::new(0),
            upcall_vector: AtomicU8::new(0),
            irq_hint: AtomicBool::new(false),
            vlapic: Mutex::new(VLapic::new(id, crate::domain::build::acpi::apic_id(id))),
            start: Mutex::new(None),
            timers: Mutex::new(VcpuTimers::default()),
            vcpu_info: Mutex::new(None),
            vcpu_info_va: AtomicU64::new(if id < xs::LEGACY_MAX_VCPUS {
                shared_info_va + id as u64 * xs::VCPU_INFO_SIZE as u64
            } else {
                0
            }),
            poll_port: AtomicU32::new(0),
            time_area: Mutex::new(None),
            runstate: Mutex::new(RunstateAcct {
                state: if id == 0 { RUNSTATE_RUNNABLE } else { RUNSTATE_OFFLINE },
                entry: crate::time::now_ns(),
                ..RunstateAcct::default()
            }),
            cell: Mutex::new(Vcpu {
                id,
                regs,
                arch,
                fpu: alloc::boxed::Box::new(FxArea::new()),
                fetch_cache: None,
                window_requested: false,
                resumed_from_block: false,
            }),
        });
    }
    let mut handle = [0u8; 16];
    handle[..2].copy_from_slice(&spec.id.to_le_bytes());
    handle[2..].copy_from_slice(&(crate::time::now_ns() as u128).to_le_bytes()[..14]);
    let nr = vcpus.len() as u32;
    let dom = Arc::new(Domain {
        id: spec.id,
        name: spec.name.clone(),
        privileged: spec.privileged,
        handle,
        memmap: e820,
        weight: spec.weight,
        cap: spec.cap,
        affinity: spec.affinity,
        tsc_offset,
        inner: Mutex::new(DomainInner {
            state: DomainState::Running,
            p2m: Some(p2m),
            ram_pages: pages,
            params: [0; hvm::NR_PARAMS as usize],
            shared_info_mfn: shared_info >> 12,
            shared_info_gfn: None,
            console: LineBuffer::new(),
            shutdown_code: None,
            p2m_gen: 0,
            max_pages: pages,
            unplaced: Vec::new(),
        }),
        running: AtomicBool::new(true),
        vcpus,
        live: AtomicU32::new(nr),
        shared_info_va,
        evtchn: Mutex::new(crate::event::table::Table::new(nr)),
        grants: Mutex::new(crate::grant::table::Grants::new(
            crate::grant::table::DEFAULT_MAX_FRAMES,
            crate::grant::table::DEFAULT_MAX_MAPTRACK,
        )),
        pollers: AtomicU32::new(0),
        callback_vector: AtomicU8::new(0),
        console_mfn: console >> 12,
        console_va: phys_to_virt(console).unwrap_or(0),
        console_port: AtomicU32::new(0),
    });
    // The console's port waits for dom0's backend; until one binds it,
    // the hypervisor serves the ring.
    if let Ok(port) = dom.evtchn.lock().alloc_console(0) {
        dom.console_port.store(port, Ordering::Release);
        let mut i = dom.inner.lock();
        i.params[hvm::PARAM_CONSOLE_PFN as usize] = crate::interdomain::CONSOLE_GFN;
        i.params[hvm::PARAM_CONSOLE_EVTCHN as usize] = port as u64;
    }
    crate::interdomain::grant_grow(&dom, 1);
    dom.write_wallclock();
    for v in &dom.vcpus {
        dom.write_time_info(v.id, tsc_offset);
    }
    DOMAINS.lock().push(dom.clone());
    Ok(dom)
}

impl Domain {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// One character of the domain's console output, printed a line at a
    /// time with the domain's prefix.
    pub fn console_put(&self, byte: u8) {
        let mut i = self.inner.lock();
        if let Some(line) = i.console.put(byte) {
            log::info!("(d{}) {line}", self.id);
        }
    }

    pub fn vcpu(&self, id: u32) -> Option<&VcpuShared> {
        self.vcpus.get(id as usize)
    }

    /// Where vCPU `id`'s vcpu_info lives: where the guest registered it,
    /// else its slot in shared_info (the first 32 vCPUs have one).
    pub fn vcpu_info_ptr(&self, id: u32) -> Option<*mut u8> {
        self.vcpu_info_va(id).map(|v| v as *mut u8)
    }

    /// The hypervisor's address of vCPU `id`'s vcpu_info, if it has one.
    pub fn vcpu_info_va(&self, id: u32) -> Option<u64> {
        let va = self.vcpu(id)?.vcpu_info_va.load(Ordering::Acquire);
        (va != 0).then_some(va)
    }

    /// Writes vCPU `id`'s vcpu_time_info (Xen's pvclock) with the version
    /// protocol: every vCPU of the domain gets the same point of the
    /// host's TSC line, so their clocks agree exactly.
    pub fn write_time_info(&self, id: u32, tsc_offset: u64) {
        let Some(p) = self.vcpu_info_ptr(id) else { return };
        let (tsc, ns) = crate::time::reference();
        let scale = TimeScale::for_hz(crate::time::tsc_khz() * 1000);
        let t = p.wrapping_add(xs::VCPU_INFO_TIME);
        // SAFETY: `t` points at 32 bytes of this domain's vcpu_info, in a
        // page the domain owns; the guest reads it concurrently, which the
        // version field (odd while changing) tells it.
        unsafe {
            let version = core::ptr::read_volatile(t as *const u32);
            let next = (version | 1).wrapping_add(1);
            core::ptr::write_volatile(t as *mut u32, version | 1);
            core::sync::atomic::fence(Ordering::SeqCst);
            let info = VcpuTimeInfo {
                version: version | 1,
                pad0: 0,
                tsc_timestamp: tsc.wrapping_add(tsc_offset),
                system_time: ns,
                tsc_to_system_mul: scale.mul,
                tsc_shift: scale.shift,
                flags: if crate::arch::x86_64::cpu::features().invariant_tsc { xs::PVCLOCK_TSC_STABLE } else { 0 },
                pad1: [0; 2],
            };
            for (i, b) in info.as_bytes().iter().enumerate().skip(4) {
                core::ptr::write_volatile(t.add(i), *b);
            }
            core::sync::atomic::fence(Ordering::SeqCst);
            core::ptr::write_volatile(t as *mut u32, next);
        }
    }

    /// The wall clock at system time 0, in shared_info.
    pub fn write_wallclock(&self) {
        let mfn = self.inner.lock().shared_info_mfn;
        let Some(base) = phys_to_virt(mfn << 12) else { return };
        let (sec, nsec) = crate::time::boot_wallclock();
        let at = |off: usize| (base + off as u64) as *mut u32;
        // SAFETY: the domain's shared_info page, owned by the hypervisor;
        // wc_version is the guest's consistency check.
        unsafe {
            let v = core::ptr::read_volatile(at(xs::SHARED_WC_VERSION));
            core::ptr::write_volatile(at(xs::SHARED_WC_VERSION), v | 1);
            core::sync::atomic::fence(Ordering::SeqCst);
            core::ptr::write_volatile(at(xs::SHARED_WC_SEC), sec as u32);
            core::ptr::write_volatile(at(xs::SHARED_WC_NSEC), nsec);
            core::ptr::write_volatile(at(xs::SHARED_WC_SEC_HI), (sec >> 32) as u32);
            core::sync::atomic::fence(Ordering::SeqCst);
            core::ptr::write_volatile(at(xs::SHARED_WC_VERSION), (v | 1).wrapping_add(1));
        }
    }

    /// Moves vCPU `id`'s vcpu_info to (`gfn`, `offset`), copying what is
    /// there now (VCPUOP_register_vcpu_info).
    pub fn register_vcpu_info(&self, id: u32, gfn: u64, offset: u32) -> Result<(), i64> {
        use xen_abi::errno::*;
        let v = self.vcpu(id).ok_or(-ENOENT)?;
        if offset as usize + xs::VCPU_INFO_SIZE > 4096 {
            return Err(-EINVAL);
        }
        if v.vcpu_info.lock().is_some() {
            return Err(-EBUSY);
        }
        // The frame must be the domain's RAM; it is referenced while
        // registered, so that ballooning it out cannot free it.
        let mfn = {
            let i = self.inner.lock();
            match i.p2m.as_ref().and_then(|p| p.lookup(gfn)) {
                Some((mfn, P2mType::Ram)) => {
                    crate::interdomain::frame_get(mfn);
                    mfn
                }
                _ => return Err(-EINVAL),
            }
        };
        let dst = phys_to_virt((mfn << 12) + offset as u64).ok_or(-EINVAL)? as *mut u8;
        let mut cur = [0u8; xs::VCPU_INFO_SIZE];
        if let Some(src) = self.vcpu_info_ptr(id) {
            // SAFETY: both point at 64 bytes of domain memory (checked).
            unsafe { core::ptr::copy_nonoverlapping(src, cur.as_mut_ptr(), cur.len()) };
        }
        // SAFETY: as above.
        unsafe { core::ptr::copy_nonoverlapping(cur.as_ptr(), dst, cur.len()) };
        *v.vcpu_info.lock() = Some((gfn, offset, mfn));
        v.vcpu_info_va.store(dst as u64, Ordering::Release);
        v.set_flag(vflags::TIME);
        Ok(())
    }

    /// Shuts the domain down for `reason` (SHUTDOWN_*); its vCPUs stop at
    /// their next exit and its memory is released by [`destroy`].
    pub fn shutdown(&self, reason: u8) {
        if self.inner.lock().state != DomainState::Running {
            return;
        }
        crate::interdomain::drain_console(self);
        let mut i = self.inner.lock();
        if i.state != DomainState::Running {
            return;
        }
        if let Some(rest) = i.console.take_rest() {
            log::info!("(d{}) {rest}", self.id);
        }
        self.running.store(false, Ordering::Release);
        for v in &self.vcpus {
            v.set_flag(vflags::STOP);
        }
        if reason as u32 == sched::SHUTDOWN_SUSPEND {
            i.state = DomainState::Suspended;
            log::info!("domain {} ({}) suspended", self.id, self.name);
        } else {
            i.state = DomainState::Dead(reason);
            log::info!("domain {} ({}) shut down: {}", self.id, self.name, sched::shutdown_reason_name(reason as u32));
        }
        drop(i);
        crate::sched::domain_stopped(self.id);
        if self.privileged && self.id == 0 {
            // The control domain takes the machine with it, as in Xen.
            let action = match reason as u32 {
                sched::SHUTDOWN_REBOOT => ExitAction::Reboot,
                sched::SHUTDOWN_POWEROFF => ExitAction::PowerOff,
                _ => ExitAction::Halt,
            };
            *MACHINE.lock() = Some(action);
            log::info!("dom0 has shut down: stopping every domain");
            for d in all() {
                if d.id != self.id {
                    d.shutdown(sched::SHUTDOWN_POWEROFF as u8);
                }
            }
        }
    }

    /// Kills the domain after something it did, saying what.
    pub fn crash(&self, why: fmt::Arguments<'_>) {
        log::error!("domain {} ({}) crashed: {why}", self.id, self.name);
        self.shutdown(sched::SHUTDOWN_CRASH as u8);
    }
}

/// Releases a dead domain's memory and removes it. Its vCPUs must not be
/// running.
pub fn destroy(dom: &Arc<Domain>) {
    use crate::interdomain as idom;
    // Peers see their channels unbound; grants this domain mapped are
    // released (its vCPUs no longer run, so nothing caches them).
    idom::close_all_ports(dom);
    idom::release_mappings(dom);
    DOMAINS.lock().retain(|d| d.id != dom.id);
    let frames = dom.grants.lock().take_frames();
    idom::free_grant_frames(frames);
    let mut i = dom.inner.lock();
    if let Some(p2m) = i.p2m.take() {
        // Frames another domain still maps stay until it lets go.
        p2m.destroy(&mut |mfn, n| idom::release_frames(mfn, n));
    }
    for (mfn, n) in core::mem::take(&mut i.unplaced) {
        idom::release_frames(mfn, n);
    }
    i.ram_pages = 0;
}

impl Drop for Domain {
    /// The pages other CPUs may still write while they hold the domain
    /// (an event raised, a console drained) go with the last reference.
    fn drop(&mut self) {
        let _ = free_frames(self.inner.get_mut().shared_info_mfn << 12, 1);
        let _ = free_frames(self.console_mfn << 12, 1);
        for v in &mut self.vcpus {
            if let Some((_, _, mfn)) = v.vcpu_info.get_mut().take() {
                crate::interdomain::frame_put(mfn);
            }
        }
    }
}

/// The calling vCPU's view for hypercalls.
pub struct HcEnv<'a> {
    pub dom: &'a Arc<Domain>,
    pub shared: &'a VcpuShared,
    pub vcpu_id: u32,
    /// The calling vCPU's registers, for its paging mode when a hypercall
    /// reaches guest memory (read then, not on every call).
    pub arch: &'a HvmVcpu,
    /// Guest translations must be dropped on every vCPU of the domain.
    pub flush_tlb: bool,
    /// Work for once that flush is done.
    pub deferred: Vec<Deferred>,
}

impl<'a> HcEnv<'a> {
    pub fn new(dom: &'a Arc<Domain>, shared: &'a VcpuShared, arch: &'a HvmVcpu) -> HcEnv<'a> {
        HcEnv { dom, shared, vcpu_id: shared.id, arch, flush_tlb: false, deferred: Vec::new() }
    }

    fn with_mem<R>(&self, f: impl FnOnce(&DomainMemory<'_>) -> Result<R, MemFault>) -> Result<R, MemFault> {
        let i = self.dom.inner.lock();
        let p2m = i.p2m.as_ref().ok_or(MemFault::Unmapped { gpa: 0 })?;
        f(&DomainMemory { p2m })
    }

    fn target(&self, vcpu: u32) -> &'a VcpuShared {
        // The dispatcher checks vcpu < nr_vcpus first.
        &self.dom.vcpus[vcpu as usize]
    }
}

impl Env for HcEnv<'_> {
    fn domid(&self) -> u16 {
        self.dom.id
    }
    fn vcpu_id(&self) -> u32 {
        self.vcpu_id
    }
    fn nr_vcpus(&self) -> u32 {
        self.dom.vcpus.len() as u32
    }
    fn privileged(&self) -> bool {
        self.dom.privileged
    }
    fn domain_exists(&self, domid: u16) -> bool {
        domid == self.dom.id || find(domid).is_some()
    }
    fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemFault> {
        let p = self.arch.paging();
        self.with_mem(|m| guest_mem::read_virt(m, &p, gva, buf))
    }
    fn write(&mut self, gva: u64, buf: &[u8]) -> Result<(), MemFault> {
        let p = self.arch.paging();
        self.with_mem(|m| guest_mem::write_virt(m, &p, gva, buf))
    }
    fn console_put(&mut self, byte: u8) {
        self.dom.console_put(byte);
    }
    fn param(&self, domid: u16, index: u32) -> u64 {
        let read = |d: &Domain| d.inner.lock().params[index as usize];
        if domid == self.dom.id { read(self.dom) } else { find(domid).map_or(0, |d| read(&d)) }
    }
    fn set_param(&mut self, domid: u16, index: u32, value: u64) {
        let write = |d: &Domain| {
            d.inner.lock().params[index as usize] = value;
            // Only the vector type means anything to a PVH domain: it has no
            // emulated IOAPIC or PIC to route a GSI or an INTx, and Xen
            // ignores those (and 0) there, so a vector stays once set.
            if index == hvm::PARAM_CALLBACK_IRQ
                && value >> hvm::CALLBACK_VIA_TYPE_SHIFT == hvm::CALLBACK_VIA_TYPE_VECTOR
            {
                d.callback_vector.store(value as u8, Ordering::Release);
                d.reassert_upcalls();
            }
        };
        if domid == self.dom.id {
            write(self.dom);
        } else if let Some(d) = find(domid) {
            write(&d);
        }
    }
    fn map_shared_info(&mut self, gpfn: u64) -> Result<(), i64> {
        let mut i = self.dom.inner.lock();
        let (mfn, prev) = (i.shared_info_mfn, i.shared_info_gfn);
        if i.place_hypervisor_page(gpfn, mfn, prev, &mut self.deferred)? {
            i.shared_info_gfn = Some(gpfn);
            self.flush_tlb = true;
        }
        Ok(())
    }
    fn memory_map(&self) -> Option<&[E820Entry]> {
        Some(&self.dom.memmap)
    }
    fn handle(&self) -> [u8; 16] {
        self.dom.handle
    }
    fn hypervisor_cmdline(&self) -> &str {
        HV_CMDLINE.get().map_or("", |s| s.as_str())
    }
    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }
    fn set_upcall_vector(&mut self, vcpu: u32, vector: u8) {
        if let Some(v) = self.dom.vcpus.get(vcpu as usize) {
            v.upcall_vector.store(vector, Ordering::Release);
            self.dom.reassert_upcalls();
        }
    }
    fn flush_guest_tlbs(&mut self) {
        self.flush_tlb = true;
    }
    fn shutdown_domain(&mut self, domid: u16, reason: u8) {
        if let Some(d) = find(domid) {
            d.shutdown(reason);
        }
    }
    fn set_shutdown_code(&mut self, reason: u8) {
        let mut i = self.dom.inner.lock();
        i.shutdown_code.get_or_insert(reason);
    }
    fn vcpu_initialise(&mut self, vcpu: u32, state: &InitialState) -> Result<(), i64> {
        let t = self.target(vcpu);
        if t.initialised.swap(true, Ordering::AcqRel) {
            return Err(-xen_abi::errno::EEXIST);
        }
        *t.start.lock() = Some(*state);
        t.set_flag(vflags::START);
        Ok(())
    }
    fn vcpu_up(&mut self, vcpu: u32) -> Result<(), i64> {
        let t = self.target(vcpu);
        if !t.initialised.load(Ordering::Acquire) {
            return Err(-xen_abi::errno::EINVAL);
        }
        crate::sched::bring_up(t);
        Ok(())
    }
    fn vcpu_down(&mut self, vcpu: u32) {
        crate::sched::take_down(self.target(vcpu), RunState::Down);
    }
    fn vcpu_is_up(&self, vcpu: u32) -> bool {
        self.target(vcpu).is_up()
    }
    fn vcpus_up(&self) -> u32 {
        self.dom.vcpus.iter().filter(|v| v.is_up()).count() as u32
    }
    fn runstate(&self, vcpu: u32) -> xen_abi::vcpu::RunstateInfo {
        self.target(vcpu).runstate.lock().info(crate::time::now_ns())
    }
    fn set_runstate_area(&mut self, vcpu: u32, gva: u64) {
        self.target(vcpu).runstate.lock().area = Some(gva);
    }
    fn set_time_area(&mut self, vcpu: u32, gva: u64) {
        let t = self.target(vcpu);
        *t.time_area.lock() = Some(gva);
        t.set_flag(vflags::TIME);
    }
    fn register_vcpu_info(&mut self, vcpu: u32, gfn: u64, offset: u32) -> Result<(), i64> {
        self.dom.register_vcpu_info(vcpu, gfn, offset)
    }
    fn set_periodic_timer(&mut self, vcpu: u32, period_ns: u64) {
        let t = self.target(vcpu);
        let now = crate::time::now_ns();
        t.timers.lock().periodic = (period_ns > 0).then_some((period_ns, now + period_ns));
        crate::sched::rearm_vcpu_timers(self.dom.id, t);
    }
    fn set_singleshot_timer(&mut self, deadline: Option<u64>) {
        let t = self.shared;
        let now = crate::time::now_ns();
        match deadline {
            Some(d) if d <= now => {
                t.timers.lock().singleshot = None;
                t.set_flag(vflags::TIMER);
                self.dom.send_virq(t.id, xen_abi::event_channel::VIRQ_TIMER);
            }
            _ => t.timers.lock().singleshot = deadline,
        }
        crate::sched::rearm_vcpu_timers(self.dom.id, t);
    }
    fn send_nmi(&mut self, vcpu: u32) {
        let t = self.target(vcpu);
        t.set_flag(vflags::NMI);
        crate::sched::notify(t);
    }
    fn cr4_valid(&self) -> u64 {
        // VME..OSXMMEXCPT, FSGSBASE, PCIDE, SMEP, SMAP: not VMXE, SMXE or
        // OSXSAVE (XSAVE is not offered).
        0x7ff | 1 << 16 | 1 << 17 | 1 << 20 | 1 << 21
    }
    fn port_pending(&self, port: u32) -> Result<bool, i64> {
        self.dom.port_pending(port)
    }
    fn set_poll(&mut self, port: Option<u32>, deadline: u64) {
        let t = self.shared;
        // Events and timers from before the poll do not end it (Xen wakes
        // a poller only for its ports, its timeout or a new upcall).
        t.take_flags(vflags::EVENT | vflags::TIMER);
        let p = port.map_or(crate::interdomain::POLL_ANY, |p| p.wrapping_add(1));
        if t.poll_port.swap(p, Ordering::AcqRel) == 0 {
            self.dom.pollers.fetch_add(1, Ordering::AcqRel);
        }
        t.timers.lock().poll_deadline = (deadline != 0).then_some(deadline);
        crate::sched::rearm_vcpu_timers(self.dom.id, t);
    }
    fn cancel_poll(&mut self) {
        if self.shared.poll_port.swap(0, Ordering::AcqRel) != 0 {
            self.dom.pollers.fetch_sub(1, Ordering::AcqRel);
        }
        self.shared.timers.lock().poll_deadline = None;
    }
    fn evtchn(&mut self, req: crate::event::table::Request) -> Result<crate::event::table::Reply, i64> {
        crate::interdomain::evtchn_op(self.dom, req)
    }
    fn grant_map(&mut self, op: &xen_abi::grant_table::MapGrantRef) -> (i16, u32) {
        let n = self.deferred.len();
        let r = crate::interdomain::grant_map(self.dom, op, &mut self.deferred);
        if self.deferred.len() != n {
            self.flush_tlb = true;
        }
        r
    }
    fn grant_unmap(&mut self, op: &xen_abi::grant_table::UnmapGrantRef) -> i16 {
        let n = self.deferred.len();
        let r = crate::interdomain::grant_unmap(self.dom, op, &mut self.deferred);
        if self.deferred.len() != n {
            self.flush_tlb = true;
        }
        r
    }
    fn grant_copy(&mut self, op: &xen_abi::grant_table::Copy) -> i16 {
        crate::interdomain::grant_copy(self.dom, op)
    }
    fn grant_table_size(&mut self, domid: u16, grow_to: Option<u32>) -> Result<(u32, u32), i16> {
        let d = crate::interdomain::domain_or_self(self.dom, domid)
            .ok_or(xen_abi::grant_table::GNTST_BAD_DOMAIN)?;
        if let Some(n) = grow_to
            && !crate::interdomain::grant_grow(&d, n)
        {
            return Err(xen_abi::grant_table::GNTST_GENERAL_ERROR);
        }
        let g = d.grants.lock();
        Ok((g.nr_frames(), g.max_frames()))
    }
    fn grant_frame_gfn(&self, domid: u16, idx: u32) -> u64 {
        let d = crate::interdomain::domain_or_self(self.dom, domid);
        d.and_then(|d| d.grants.lock().frame_gfn(idx)).unwrap_or(crate::hypercall::grant_table_op::INVALID_GFN)
    }
    fn map_grant_frame(&mut self, idx: u32, gpfn: u64) -> Result<(), i64> {
        if crate::interdomain::map_grant_frame(self.dom, idx, gpfn, &mut self.deferred)? {
            self.flush_tlb = true;
        }
        Ok(())
    }
    fn reservation(&self, domid: u16) -> (u64, u64) {
        let d = crate::interdomain::domain_or_self(self.dom, domid);
        d.map_or((0, 0), |d| {
            let i = d.inner.lock();
            (i.ram_pages, i.max_pages)
        })
    }
    fn extent(&mut self, op: crate::hypercall::Extent, domid: u16, gfn: u64, order: u32) -> bool {
        let d = crate::interdomain::domain_or_self(self.dom, domid);
        let Some(d) = d else { return false };
        let n = self.deferred.len();
        let ok = crate::interdomain::extent(&d, op, gfn, order, &mut self.deferred);
        if self.deferred.len() != n || op == crate::hypercall::Extent::Decrease {
            self.flush_tlb = true;
            if d.id != self.dom.id {
                // Another domain's p2m changed: its vCPUs drop their
                // translations before any frame it gave up is freed.
                let mut running = CpuMask::empty();
                for v in &d.vcpus {
                    v.set_flag(vflags::FLUSH);
                    let on = v.running_on.load(Ordering::Acquire);
                    if on != 0 {
                        running.set(on as usize - 1);
                    }
                }
                crate::sched::kick_and_wait(&running);
            }
        }
        ok
    }
    fn maximum_gpfn(&self, domid: u16) -> u64 {
        let d = crate::interdomain::domain_or_self(self.dom, domid);
        d.map_or(0, |d| {
            let hi = d.memmap.iter().map(|e| (e.addr + e.size) >> 12).max().unwrap_or(1);
            hi.max(crate::interdomain::CONSOLE_GFN + 1) - 1
        })
    }
    fn maximum_ram_page(&self) -> u64 {
        crate::mm::phys::max_frame()
    }
}

/// The hypercall page for the backend in use (vmmcall on SVM, vmcall on
/// VMX).
pub fn hypercall_page() -> [u8; 4096] {
    crate::hypercall::hypercall_page(arch_hvm::backend() == Some(arch_hvm::Backend::Svm))
}
