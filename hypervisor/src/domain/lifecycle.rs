//! A domain's life: built from a PVH kernel (`create`), shut down or
//! crashed, and destroyed once no vCPU runs it; dom0's shutdown takes the
//! machine with it.

use super::registry::{self, all};
use super::unit::{self, Unit, UnitFailed};
use super::*;
use crate::arch::x86_64::fpu::FxArea;
use crate::arch::x86_64::hvm::npt::Npt;
use crate::arch::x86_64::hvm::regs::GuestRegs;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::arch::x86_64::hvm::vlapic::VLapic;
use crate::arch::x86_64::hvm::{self as arch_hvm, HvmVcpu};
use crate::cmdline::ExitAction;
use crate::console::ratelimit::GuestOutput;
use crate::domain::build::pvh::{self, BuildSpec, PvhError};
use crate::memory::guest_mem;
use crate::memory::physmap::{DomainMemory, OutOfMemory, populate};
use crate::mm::addr::{Gfn, Gpa, Mfn};
use crate::mm::phys::{alloc_zeroed_frame, frame_counts, free_frames, phys_to_virt};
use crate::util::cpumask::CpuMask;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;
use xen_abi::memory::E820Entry;
use xen_abi::shared as xs;
use xen_abi::start_info::{HvmMemmapEntry, SIF_INITDOMAIN, SIF_PRIVILEGED};
use xen_abi::vcpu::{RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE};
use xen_abi::{hvm, sched};

/// What dom0's shutdown asked of the machine (Xen powers off or reboots
/// the host when dom0 does).
static MACHINE: Mutex<Option<ExitAction>> = Mutex::new(None);
/// What the machine does when the last domain is gone (`on_last_exit=`).
static ON_LAST_EXIT: spin::Once<ExitAction> = spin::Once::new();
/// Domains started and not yet destroyed, plus one until the boot has
/// started them all (early domains may end before the last is built).
static LIVE_DOMAINS: AtomicU32 = AtomicU32::new(1);
/// Set when the last domain is gone; the boot CPU then ends the machine.
static MACHINE_EXIT: AtomicBool = AtomicBool::new(false);
/// Free frames just before the boot built its domains: once every domain
/// is gone, as many must be free again.
static FREE_BEFORE_DOMAINS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Remembers how much memory is free before any domain takes some.
pub fn note_free_memory() {
    FREE_BEFORE_DOMAINS.store(frame_counts().0, Ordering::Release);
}

/// Once every domain is gone: says whether all the memory they had (RAM,
/// p2m tables, vCPU state, frames kept alive by grants) is free again, and
/// reports what is not as an error.
pub fn report_memory_returned() {
    let before = FREE_BEFORE_DOMAINS.load(Ordering::Acquire);
    if before == u64::MAX || !all().is_empty() {
        return;
    }
    // A CPU that ran a domain's last vCPU may hold it a moment longer.
    let deadline = crate::time::now_ns() + 1_000_000_000;
    while super::state::Counted::alive() != 0 && crate::time::now_ns() < deadline {
        core::hint::spin_loop();
    }
    let held = super::state::Counted::alive();
    if held != 0 {
        log::error!("memory: {held} ended domains are still referenced a second after the last one ended");
    }
    let (now, _) = frame_counts();
    match now.cmp(&before) {
        core::cmp::Ordering::Equal => log::info!("memory: every domain's memory is free again ({} KiB)", now * 4),
        core::cmp::Ordering::Less => {
            log::error!("memory: {} KiB given to domains were not returned when they ended", (before - now) * 4)
        }
        // More free than before any domain: a frame was freed twice.
        core::cmp::Ordering::Greater => {
            log::error!("memory: {} KiB more are free than before the domains: freed twice?", (now - before) * 4)
        }
    }
}

/// `on_last_exit=`, from the boot options.
pub fn set_on_last_exit(action: ExitAction) {
    ON_LAST_EXIT.call_once(|| action);
}

/// What the machine does now that no domain is left: what dom0's shutdown
/// asked for, else `on_last_exit=` (power off by default).
pub fn machine_action() -> ExitAction {
    MACHINE.lock().unwrap_or(*ON_LAST_EXIT.get().unwrap_or(&ExitAction::PowerOff))
}

/// Whether every domain is gone (the boot CPU's loop ends the machine).
pub fn machine_exit_requested() -> bool {
    MACHINE_EXIT.load(Ordering::Acquire)
}

/// Hands a built domain to the scheduler: it runs from now on.
pub fn start(dom: &Arc<Domain>) {
    LIVE_DOMAINS.fetch_add(1, Ordering::AcqRel);
    crate::sched::add_domain(dom);
}

/// The boot has started every domain: once they are all gone, the
/// machine ends.
pub fn boot_done() {
    drop_live();
}

fn drop_live() {
    if LIVE_DOMAINS.fetch_sub(1, Ordering::AcqRel) == 1 {
        MACHINE_EXIT.store(true, Ordering::Release);
        // The boot CPU ends the machine.
        crate::sched::kick_cpu(0);
    }
}

/// `n` vCPUs of `dom` left the scheduler; the last one to leave a dead
/// domain destroys it.
pub fn vcpus_left(dom: &Arc<Domain>, n: u32) {
    for _ in 0..n {
        if dom.live.fetch_sub(1, Ordering::AcqRel) != 1 {
            continue;
        }
        if !matches!(dom.inner.lock().state, DomainState::Dead(_)) {
            return;
        }
        let pages = dom.inner.lock().ram_pages;
        destroy(dom);
        log::info!("domain {} ({}) destroyed; {} MiB returned", dom.id, dom.name, pages >> 8);
        drop_live();
    }
}

/// The subsystems that keep something per domain, in the order a
/// domain's are set up (torn down in the reverse).
const UNITS: [Unit<Domain>; 6] = [
    crate::memory::physmap::UNIT,
    crate::irq::deliver::UNIT,
    crate::event::ops::UNIT,
    crate::grant::map::UNIT,
    crate::console::ring::UNIT,
    crate::domain::time::UNIT,
];

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
    NotEnoughMemory {
        need_mib: u64,
        free_mib: u64,
    },
    OutOfMemory,
    Backend(&'static str),
    /// A subsystem could not set the domain up.
    Unit(UnitFailed),
}

impl From<OutOfMemory> for CreateError {
    fn from(_: OutOfMemory) -> CreateError {
        CreateError::OutOfMemory
    }
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
            CreateError::Unit(u) => write!(f, "{}: {}", u.unit, u.why),
        }
    }
}

/// The RAM ranges (start gfn, frame count) of a domain with `pages` pages.
fn ram_layout(pages: u64) -> [(Gfn, u64); 2] {
    let low = pages.min(Gpa(LOW_RAM_END).gfn().0);
    [(Gfn(0), low), (Gfn(1 << 20), pages - low)]
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
    let mut memmap: Vec<HvmMemmapEntry> = Vec::new();
    let mut e820 = Vec::new();
    // A domU's RAM from 0 (libxl's layout); the hardware domain's mapped
    // 1:1 but for its boot island (`memory::identity`).
    let (runs, low_ram_end) = if spec.privileged {
        let ramdisk_len = spec.ramdisk.map_or(0, |r| r.len() as u64);
        let island = crate::memory::identity::boot_island(kernel.load_start, kernel.load_end, ramdisk_len);
        let hole = (Gpa(ACPI_BASE).gfn().0, 1 << 20);
        match crate::memory::physmap::populate_identity(&mut p2m, island, hole, pages) {
            Ok(runs) if runs.len() <= crate::memory::identity::MAX_RUNS => (runs, island.1 << 12),
            Ok(_) | Err(_) => {
                p2m.destroy(&mut |mfn, n| {
                    let _ = free_frames(mfn.phys(), n);
                });
                return Err(CreateError::OutOfMemory);
            }
        }
    } else {
        let layout = ram_layout(pages);
        for (gfn, count) in layout.into_iter().filter(|(_, c)| *c > 0) {
            if let Err(e) = populate(&mut p2m, gfn, count) {
                p2m.destroy(&mut |mfn, n| {
                    let _ = free_frames(mfn.phys(), n);
                });
                return Err(e.into());
            }
        }
        (layout.iter().filter(|(_, c)| *c > 0).map(|(g, c)| (g.0, *c)).collect::<Vec<_>>(), layout[0].1 << 12)
    };
    for &(gfn, count) in &runs {
        memmap.push(HvmMemmapEntry { addr: gfn << 12, size: count << 12, kind: 1, reserved: 0 });
        e820.push(E820Entry { addr: gfn << 12, size: count << 12, kind: 1 });
    }
    // In address order (libxl's: low RAM, ACPI, the special pages, high
    // RAM).
    memmap.push(HvmMemmapEntry { addr: SPECIAL_PAGES, size: SPECIAL_PAGES_LEN, kind: 2, reserved: 0 });
    e820.push(E820Entry { addr: SPECIAL_PAGES, size: SPECIAL_PAGES_LEN, kind: 2 });

    let cleanup = |p2m: Npt| {
        p2m.destroy(&mut |mfn, n| {
            let _ = free_frames(mfn.phys(), n);
        });
    };
    // ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) right after low RAM.
    let acpi = crate::domain::build::acpi::build(ACPI_BASE, spec.vcpus);
    let acpi_pages = (acpi.len() as u64).div_ceil(4096);
    memmap.push(HvmMemmapEntry { addr: ACPI_BASE, size: acpi_pages << 12, kind: 3, reserved: 0 });
    e820.push(E820Entry { addr: ACPI_BASE, size: acpi_pages << 12, kind: 3 });
    memmap.sort_unstable_by_key(|e| e.addr);
    e820.sort_unstable_by_key(|e| e.addr);
    if let Err(e) = populate(&mut p2m, Gpa(ACPI_BASE).gfn(), acpi_pages) {
        cleanup(p2m);
        return Err(e.into());
    }
    if guest_mem::write_phys(&DomainMemory { p2m: &p2m }, Gpa(ACPI_BASE), &acpi).is_err() {
        cleanup(p2m);
        return Err(CreateError::OutOfMemory);
    }
    let build = BuildSpec {
        ramdisk: spec.ramdisk,
        cmdline: spec.cmdline,
        memmap: &memmap,
        low_ram_end,
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
    // The hardware domain also maps its devices' memory.
    let device_tables = if spec.privileged { DEVICE_P2M_HEADROOM } else { 0 };
    p2m.limit_growth(P2M_HEADROOM + pages / 512 + device_tables);
    let Some(shared_info) = alloc_zeroed_frame() else {
        cleanup(p2m);
        return Err(CreateError::OutOfMemory);
    };
    let shared_info_va = phys_to_virt(shared_info).unwrap_or(0);
    let tsc_offset = 0u64.wrapping_sub(crate::arch::x86_64::cpu::rdtsc());
    // The hardware domain's ports and PCI configuration access.
    let devices = if spec.privileged {
        let Some(d) = crate::passthrough::access::for_hardware_domain() else {
            cleanup(p2m);
            let _ = free_frames(shared_info, 1);
            return Err(CreateError::OutOfMemory);
        };
        Some(d)
    } else {
        None
    };
    let io_bitmap = devices.as_ref().map(|d| d.io_bitmap());
    let mut vcpus = Vec::new();
    for id in 0..spec.vcpus {
        let mut arch = match HvmVcpu::new(p2m.root(), io_bitmap) {
            Ok(a) => a,
            Err(why) => {
                cleanup(p2m);
                let _ = free_frames(shared_info, 1);
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
                fetch_cache: Default::default(),
                window_requested: false,
                resumed_from_block: false,
                tsc_adjust: 0,
                msrs: crate::arch::x86_64::hvm::policy::msrs::GuestMsrs::new(),
            }),
        });
    }
    let mut handle = [0u8; 16];
    handle[..2].copy_from_slice(&spec.id.to_le_bytes());
    handle[2..].copy_from_slice(&(crate::time::now_ns() as u128).to_le_bytes()[..14]);
    let nr = vcpus.len() as u32;
    let dom = Arc::new(Domain {
        id: spec.id,
        serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
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
            shared_info_mfn: Mfn::of_phys(shared_info),
            shared_info_gfn: None,
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
        unbacked_reports: AtomicU32::new(0),
        console: spin::Once::new(),
        console_out: Mutex::new(GuestOutput::default()),
        devices,
        pirqs: Mutex::new(crate::irq::pirq::PirqTable::new()),
        counted: super::state::Counted::new(),
    });
    // Each subsystem's part; a domain one of them refuses is undone (what
    // it was given so far torn down, the rest freed with its last
    // reference).
    if let Some(acc) = &dom.devices {
        let mut mmio = crate::memory::physmap::DeviceMemory::new(&dom);
        let n = crate::passthrough::config::take_over_devices(acc, &mut mmio);
        log::info!(
            "domain {} ({}): {n} PCI functions, their memory mapped at its own address{}",
            dom.id,
            dom.name,
            if mmio.skipped > 0 {
                alloc::format!(" ({} pages taken by its RAM, not mapped)", mmio.skipped)
            } else {
                alloc::string::String::new()
            }
        );
    }
    unit::set_up(&UNITS, &dom).map_err(CreateError::Unit)?;
    registry::insert(dom.clone());
    Ok(dom)
}

impl Domain {
    /// Shuts the domain down for `reason` (SHUTDOWN_*); its vCPUs stop at
    /// their next exit and its memory is released by [`destroy`].
    pub fn shutdown(&self, reason: u8) {
        if self.inner.lock().state != DomainState::Running {
            return;
        }
        crate::console::ring::drain_console_final(self);
        if let Some((rest, n)) = self.console_take_unfinished() {
            log::info!("(d{}) {}", self.id, core::str::from_utf8(&rest[..n]).unwrap_or(""));
        }
        let dropped = core::mem::take(&mut self.console_out.lock().dropped);
        if dropped > 0 {
            log::warn!("(d{}) [{dropped} lines dropped: over the domain's console rate limit]", self.id);
        }
        let mut i = self.inner.lock();
        if i.state != DomainState::Running {
            return;
        }
        // A code the guest latched with SCHEDOP_shutdown_code is the
        // reason, whatever comes now (Xen's domain_shutdown).
        let reason = *i.shutdown_code.get_or_insert(reason);
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
        let gone = crate::sched::domain_stopped(self);
        if gone > 0
            && let Some(me) = registry::find(self.id)
        {
            vcpus_left(&me, gone);
        }
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
    // Nobody finds it any more; then each subsystem lets go of it (peers
    // see their channels unbound, the grants it mapped are released, its
    // memory is given back; its vCPUs no longer run, so nothing caches
    // them).
    registry::remove(dom.id);
    unit::tear_down(&UNITS, dom);
    crate::sched::forget_timers(dom.serial);
}

/// The next domain's `serial` (0 is the hypervisor's own timers).
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);
