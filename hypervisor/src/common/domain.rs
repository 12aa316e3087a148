//! Domains: their memory (the p2m), vCPUs, state and lifecycle, and the
//! view of a domain that hypercalls get.

use crate::arch::x86_64::fpu::FxArea;
use crate::arch::x86_64::hvm::{self as arch_hvm, HvmVcpu};
use crate::arch::x86_64::npt::{Npt, P2mType};
use crate::cmdline::ExitAction;
use crate::common::console::LineBuffer;
use crate::common::guest_mem::{self, GuestPhysical, MemFault};
use crate::common::hypercall::Env;
use crate::common::pvh::{self, BuildSpec, PvhError};
use crate::common::vcpu::{GuestRegs, VcpuState};
use crate::mm::phys::{alloc_frames, alloc_zeroed_frame, frame_counts, free_frames, phys_to_virt};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;
use spin::Mutex;
use xen_abi::memory::E820Entry;
use xen_abi::start_info::{HvmMemmapEntry, SIF_INITDOMAIN, SIF_PRIVILEGED};
use xen_abi::{hvm, sched};

/// Guest-physical layout of a PVH domain, as libxl lays it out: RAM from
/// 0, a hole from 0xfc000000 (ACPI tables, the LAPIC, Xen's special pages
/// at 0xfeff8000), RAM above 4 GiB for the rest.
pub const LOW_RAM_END: u64 = 0xfc00_0000;
pub const SPECIAL_PAGES: u64 = 0xfeff_8000;
pub const SPECIAL_PAGES_LEN: u64 = 0x8000;
/// Table pages a domain's p2m may add after it is built.
pub const P2M_HEADROOM: u64 = 64;

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

pub struct Vcpu {
    pub id: u32,
    pub regs: GuestRegs,
    pub state: VcpuState,
    pub arch: HvmVcpu,
    pub fpu: alloc::boxed::Box<FxArea>,
    pub upcall_vector: u8,
    /// Where the last instruction fetch for an exit found the guest's code
    /// page: (guest CR3, linear page, p2m generation, host page).
    pub fetch_cache: Option<(u64, u64, u64, u64)>,
    pub exits: u64,
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
}

pub struct Domain {
    pub id: u16,
    pub name: String,
    pub privileged: bool,
    pub handle: [u8; 16],
    /// The guest memory map (fixed at creation).
    pub memmap: Vec<E820Entry>,
    pub inner: Mutex<DomainInner>,
    pub vcpus: Vec<Mutex<Vcpu>>,
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
    let build = BuildSpec {
        ramdisk: spec.ramdisk,
        cmdline: spec.cmdline,
        memmap: &memmap,
        low_ram_end: layout[0].1 << 12,
        flags: if spec.privileged { SIF_PRIVILEGED | SIF_INITDOMAIN } else { 0 },
        rsdp: 0,
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
    p2m.limit_growth(P2M_HEADROOM);
    let Some(shared_info) = alloc_zeroed_frame() else {
        cleanup(p2m);
        return Err(CreateError::OutOfMemory);
    };
    let mut vcpus = Vec::new();
    for id in 0..spec.vcpus {
        let mut arch = match HvmVcpu::new(p2m.root()) {
            Ok(a) => a,
            Err(why) => {
                cleanup(p2m);
                let _ = free_frames(shared_info, 1);
                return Err(CreateError::Backend(why));
            }
        };
        let mut regs = GuestRegs::default();
        let state = if id == 0 {
            arch.set_pvh_entry(kernel.entry);
            regs.rbx = start_info;
            VcpuState::Runnable
        } else {
            VcpuState::Down
        };
        vcpus.push(Mutex::new(Vcpu {
            id,
            regs,
            state,
            arch,
            fpu: alloc::boxed::Box::new(FxArea::new()),
            upcall_vector: 0,
            fetch_cache: None,
            exits: 0,
        }));
    }
    let mut handle = [0u8; 16];
    handle[..2].copy_from_slice(&spec.id.to_le_bytes());
    handle[2..].copy_from_slice(&(crate::time::now_ns() as u128).to_le_bytes()[..14]);
    let dom = Arc::new(Domain {
        id: spec.id,
        name: spec.name.clone(),
        privileged: spec.privileged,
        handle,
        memmap: e820,
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
        }),
        vcpus,
    });
    DOMAINS.lock().push(dom.clone());
    Ok(dom)
}

impl Domain {
    pub fn is_running(&self) -> bool {
        self.inner.lock().state == DomainState::Running
    }

    /// Shuts the domain down for `reason` (SHUTDOWN_*); its vCPUs stop at
    /// their next exit and its memory is released by [`destroy`].
    pub fn shutdown(&self, reason: u8) {
        let mut i = self.inner.lock();
        if i.state != DomainState::Running {
            return;
        }
        if let Some(rest) = i.console.take_rest() {
            log::info!("(d{}) {rest}", self.id);
        }
        if reason as u32 == sched::SHUTDOWN_SUSPEND {
            i.state = DomainState::Suspended;
            log::info!("domain {} ({}) suspended", self.id, self.name);
        } else {
            i.state = DomainState::Dead(reason);
            log::info!("domain {} ({}) shut down: {}", self.id, self.name, sched::shutdown_reason_name(reason as u32));
        }
        drop(i);
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
    DOMAINS.lock().retain(|d| d.id != dom.id);
    let mut i = dom.inner.lock();
    if let Some(p2m) = i.p2m.take() {
        p2m.destroy(&mut |mfn, n| {
            let _ = free_frames(mfn << 12, n);
        });
    }
    let _ = free_frames(i.shared_info_mfn << 12, 1);
    i.ram_pages = 0;
}

/// The calling vCPU's view for hypercalls.
pub struct HcEnv<'a> {
    pub dom: &'a Domain,
    pub vcpu_id: u32,
    /// The calling vCPU's registers, for its paging mode when a hypercall
    /// reaches guest memory (read then, not on every call).
    pub arch: &'a HvmVcpu,
    pub flush_tlb: bool,
    /// An upcall vector the caller set on its own vCPU (applied by the run
    /// loop, which holds that vCPU).
    pub own_upcall: Option<u8>,
}

impl HcEnv<'_> {
    fn with_mem<R>(&self, f: impl FnOnce(&DomainMemory<'_>) -> Result<R, MemFault>) -> Result<R, MemFault> {
        let i = self.dom.inner.lock();
        let p2m = i.p2m.as_ref().ok_or(MemFault::Unmapped { gpa: 0 })?;
        f(&DomainMemory { p2m })
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
        let mut i = self.dom.inner.lock();
        if let Some(line) = i.console.put(byte) {
            log::info!("(d{}) {line}", self.dom.id);
        }
    }
    fn param(&self, domid: u16, index: u32) -> u64 {
        let read = |d: &Domain| d.inner.lock().params[index as usize];
        if domid == self.dom.id { read(self.dom) } else { find(domid).map_or(0, |d| read(&d)) }
    }
    fn set_param(&mut self, domid: u16, index: u32, value: u64) {
        let write = |d: &Domain| d.inner.lock().params[index as usize] = value;
        if domid == self.dom.id {
            write(self.dom);
        } else if let Some(d) = find(domid) {
            write(&d);
        }
    }
    fn map_shared_info(&mut self, gpfn: u64) -> Result<(), i64> {
        use xen_abi::errno::*;
        if gpfn >> (crate::arch::x86_64::npt::GPA_BITS - 12) != 0 {
            return Err(-EINVAL);
        }
        let mut i = self.dom.inner.lock();
        let mfn = i.shared_info_mfn;
        if i.shared_info_gfn == Some(gpfn) {
            return Ok(());
        }
        let p2m = i.p2m.as_mut().ok_or(-EINVAL)?;
        let old = p2m.set(gpfn, mfn, P2mType::Special).map_err(|_| -ENOMEM)?;
        // The RAM page that was there goes back to the hypervisor (Xen
        // frees it too): the domain has one page less.
        let mut freed = 0;
        if let Some((old_mfn, t)) = old
            && t.owned()
        {
            let _ = free_frames(old_mfn << 12, 1);
            freed = 1;
        }
        if let Some(prev) = i.shared_info_gfn.take()
            && let Some(p2m) = i.p2m.as_mut()
        {
            let _ = p2m.clear(prev);
        }
        i.shared_info_gfn = Some(gpfn);
        i.ram_pages -= freed;
        i.p2m_gen += 1;
        self.flush_tlb = true;
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
        if vcpu == self.vcpu_id {
            self.own_upcall = Some(vector);
        } else if let Some(v) = self.dom.vcpus.get(vcpu as usize) {
            v.lock().upcall_vector = vector;
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
}

/// The hypercall page for the backend in use (vmmcall on SVM, vmcall on
/// VMX).
pub fn hypercall_page() -> [u8; 4096] {
    crate::common::hypercall::hypercall_page(arch_hvm::backend() == Some(arch_hvm::Backend::Svm))
}
