//! Running a vCPU on this CPU and handling every exit, once, for every
//! backend: interrupts for the guest are delivered before each entry (or
//! an interrupt window is asked for), host interrupts are taken after each
//! exit, and the scheduler (`common::sched`) decides when the vCPU leaves.

use crate::arch::x86_64::cpu;
use crate::arch::x86_64::insn::{self, Expected};
use crate::arch::x86_64::hvm::cpuid::{CpuidContext, guest_cpuid};
use crate::domain::{self, Domain, DomainMemory, HcEnv, RunState, Vcpu, VcpuShared, vflags};
use crate::arch::x86_64::hvm::exit::{IoExit, VmExit};
use crate::memory::guest_mem::{self, Access};
use crate::hypercall::{self, Call, Outcome};
use crate::arch::x86_64::hvm::msr;
use crate::sched;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vlapic::{self, Ipi, IpiKind};
use alloc::sync::Arc;

/// The port every HVM/PVH guest may write debug text to (Xen's 0xe9).
const DEBUG_PORT: u16 = 0xe9;

/// Lets pending host interrupts in, then closes again.
fn irq_window() {
    // SAFETY: the hypervisor's handlers run on this stack; interrupts are
    // enabled for one instruction only.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// What the exit handler wants.
enum Next {
    Resume,
    Yield,
    Block,
    /// The vCPU goes down (VCPUOP_down on itself, HLT with IF clear).
    Down,
    Stop,
}

/// Runs vCPU `vid` of `dom` on this CPU until the scheduler wants the CPU
/// back, the vCPU blocks or goes down, or the domain stops.
pub fn run_vcpu(dom: &Arc<Domain>, vid: u32) {
    let Some(shared) = dom.vcpu(vid) else { return };
    let mut guard = shared.cell.lock();
    let v = &mut *guard;
    sched::enter_vcpu(shared);
    v.fpu.restore();
    v.arch.switch_in();
    if core::mem::take(&mut v.resumed_from_block) {
        // What woke it from SCHEDOP_block/poll has been seen.
        end_block(dom, shared);
    }
    update_runstate_area(dom, shared, v);
    // This CPU's scheduler state, for the whole run (a vCPU does not
    // change CPUs while it runs).
    let pcpu = sched::this_pcpu();
    loop {
        if shared.flags.load(core::sync::atomic::Ordering::Acquire) & vflags::BEFORE_ENTRY != 0 {
            // Its domain stopped (from any CPU: the flag and a kick).
            if !dom.is_running() {
                break;
            }
            apply_requests(dom, shared, v);
        }
        deliver_interrupts(dom, shared, v);
        let exit = v.arch.run(&mut v.regs);
        pcpu.count_exit();
        irq_window();
        pcpu.softirqs();
        let next = handle_exit(dom, shared, v, exit);
        match next {
            Next::Resume => {
                if pcpu.need_resched() {
                    break;
                }
            }
            Next::Yield => {
                sched::yield_now();
                break;
            }
            Next::Block => {
                if sched::try_block(shared) {
                    v.resumed_from_block = true;
                    break;
                }
                // Something was already pending: the block ends at once.
                end_block(dom, shared);
            }
            Next::Down => {
                go_down(dom, shared);
                break;
            }
            Next::Stop => break,
        }
    }
    update_runstate_area(dom, shared, v);
    v.arch.switch_out();
    v.fpu.save();
    drop(guard);
    sched::exit_vcpu(shared);
}

/// A block or poll is over: its wake-up reasons are consumed and a poll's
/// registration dropped.
fn end_block(dom: &Domain, shared: &VcpuShared) {
    shared.take_flags(vflags::TIMER | vflags::POLL_DONE | vflags::EVENT);
    shared.timers.lock().poll_deadline = None;
    if shared.poll_port.swap(0, core::sync::atomic::Ordering::AcqRel) != 0 {
        dom.pollers.fetch_sub(1, core::sync::atomic::Ordering::AcqRel);
    }
    // An upcall still waiting for the callback vector is delivered now.
    if dom.callback_vector.load(core::sync::atomic::Ordering::Acquire) != 0
        && crate::interdomain::upcall_pending(dom, shared.id)
    {
        shared.irq_hint.store(true, core::sync::atomic::Ordering::SeqCst);
    }
}

/// Writes the vCPU's runstate to where the guest registered it (Xen
/// updates it at every switch), and its guest-virtual time area.
fn update_runstate_area(dom: &Domain, shared: &VcpuShared, v: &mut Vcpu) {
    let (area, info) = {
        let r = shared.runstate.lock();
        (r.area, r.info(crate::time::now_ns()))
    };
    let time_area = *shared.time_area.lock();
    if area.is_none() && time_area.is_none() {
        return;
    }
    let paging = v.arch.paging();
    let i = dom.inner.lock();
    let Some(p2m) = i.p2m.as_ref() else { return };
    let mem = DomainMemory { p2m };
    if let Some(gva) = area {
        use xen_abi::Pod;
        let _ = guest_mem::write_virt(&mem, &paging, gva, info.as_bytes());
    }
    if let Some(gva) = time_area {
        drop(i);
        let mut t = [0u8; 32];
        if let Some(src) = dom.vcpu_info_ptr(v.id) {
            // SAFETY: 32 bytes of the domain's vcpu_info (time part).
            unsafe { core::ptr::copy_nonoverlapping(src.add(xen_abi::shared::VCPU_INFO_TIME), t.as_mut_ptr(), 32) };
        }
        let i = dom.inner.lock();
        if let Some(p2m) = i.p2m.as_ref() {
            let _ = guest_mem::write_virt(&DomainMemory { p2m }, &paging, gva, &t);
        }
    }
}

/// A vCPU goes down; when none of the domain's is left up, the domain
/// powers off (Xen: "All CPUs offline").
fn go_down(dom: &Domain, shared: &VcpuShared) {
    sched::take_down(shared, RunState::Down);
    if !dom.vcpus.iter().any(VcpuShared::is_up) {
        dom.shutdown(xen_abi::sched::SHUTDOWN_POWEROFF as u8);
    }
}

/// Applies what other CPUs asked of this vCPU.
fn apply_requests(dom: &Domain, shared: &VcpuShared, v: &mut Vcpu) {
    let f = shared.take_flags(vflags::START | vflags::FLUSH | vflags::TIME | vflags::NMI);
    if f & vflags::START != 0
        && let Some(st) = shared.start.lock().take()
    {
        load_state(dom, v, &st);
    }
    if f & vflags::FLUSH != 0 {
        v.arch.flush_tlb();
        v.fetch_cache = None;
    }
    if f & (vflags::TIME | vflags::START) != 0 {
        dom.write_time_info(v.id, v.arch.tsc_offset());
        update_runstate_area(dom, shared, v);
    }
    // After a new starting state, which would drop a pending injection.
    if f & vflags::NMI != 0 {
        v.arch.inject_nmi();
    }
}

/// Loads a starting state into the vCPU (PVH entry, STARTUP, initialise).
pub fn load_state(dom: &Domain, v: &mut Vcpu, st: &InitialState) {
    v.arch.set_state(st);
    v.regs = st.regs;
    v.arch.set_tsc_offset(dom.tsc_offset);
    v.fetch_cache = None;
}

/// Injects the interrupt the vLAPIC wants delivered if the guest can take
/// it now, else asks to exit as soon as it can (NMIs are injected by
/// `apply_requests`, before this).
fn deliver_interrupts(dom: &Domain, shared: &VcpuShared, v: &mut Vcpu) {
    use core::sync::atomic::Ordering;
    if !shared.irq_hint.load(Ordering::Acquire) {
        if v.window_requested {
            v.arch.set_interrupt_window(false);
            v.window_requested = false;
        }
        return;
    }
    // Cleared first, set again below while anything is left: a request
    // made meanwhile sets it after this. An exchange, not a store: it must
    // not pass the loads below (x86 lets a store wait behind later loads).
    shared.irq_hint.swap(false, Ordering::SeqCst);
    // The callback vector comes before the local APIC (Xen's order), for
    // as long as evtchn_upcall_pending is set: the guest's handler clears
    // it.
    let callback = dom.callback_vector.load(Ordering::Acquire);
    let upcall = callback != 0 && crate::interdomain::upcall_pending(dom, v.id);
    let mut l = shared.vlapic.lock();
    l.set_cr8(v.arch.tpr());
    let pending = if upcall { Some(callback) } else { l.pending() };
    match pending {
        Some(vector) if v.arch.interrupt_window_open() => {
            if !upcall {
                l.ack(vector);
            }
            v.arch.inject_interrupt(vector);
            if v.window_requested {
                v.arch.set_interrupt_window(false);
                v.window_requested = false;
            }
        }
        Some(_) => {
            if !v.window_requested {
                v.arch.set_interrupt_window(true);
                v.window_requested = true;
            }
        }
        None => {
            if v.window_requested {
                v.arch.set_interrupt_window(false);
                v.window_requested = false;
            }
        }
    }
    if upcall || l.has_irr() {
        shared.irq_hint.store(true, Ordering::Release);
    }
}

/// Delivers an IPI a vCPU sent through its local APIC to every vCPU of
/// the domain it addresses.
fn deliver_ipi(dom: &Domain, ipi: &Ipi) {
    if ipi.level_deassert && ipi.kind == IpiKind::Init {
        return;
    }
    for t in &dom.vcpus {
        if !t.vlapic.lock().is_destination(ipi) {
            continue;
        }
        match ipi.kind {
            IpiKind::Fixed(vector) | IpiKind::LowestPriority(vector) => {
                t.raise_irq(vector);
                sched::notify(t);
                if matches!(ipi.kind, IpiKind::LowestPriority(_)) {
                    return;
                }
            }
            IpiKind::Nmi => {
                t.set_flag(vflags::NMI);
                sched::notify(t);
            }
            IpiKind::Init => {
                // The target waits for STARTUP; its APIC resets.
                if t.vlapic.lock().apic_id() == ipi.source {
                    continue;
                }
                t.vlapic.lock().reset();
                *t.start.lock() = None;
                sched::take_down(t, RunState::WaitForSipi);
            }
            IpiKind::Startup(vector) => {
                if t.state() != RunState::WaitForSipi {
                    continue;
                }
                *t.start.lock() = Some(InitialState::startup(vector));
                t.initialised.store(true, core::sync::atomic::Ordering::Release);
                t.set_flag(vflags::START);
                sched::bring_up(t);
            }
        }
    }
}

fn handle_exit(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu, exit: VmExit) -> Next {
    match exit {
        VmExit::Hypercall => hypercall(dom, shared, v, if is_amd() { Expected::Vmmcall } else { Expected::Vmcall }),
        VmExit::Cpuid => {
            let ctx = CpuidContext {
                vcpu_id: v.id,
                domid: dom.id,
                nr_vcpus: dom.vcpus.len() as u32,
                tsc_khz: crate::time::tsc_khz() as u32,
                host_tsc_reliable: cpu::features().invariant_tsc,
            };
            let r = guest_cpuid(cpu::cpuid, v.regs.rax as u32, v.regs.rcx as u32, &ctx);
            v.regs.rax = r.eax as u64;
            v.regs.rbx = r.ebx as u64;
            v.regs.rcx = r.ecx as u64;
            v.regs.rdx = r.edx as u64;
            skip(dom, v, Expected::Cpuid)
        }
        VmExit::Rdmsr => rdmsr(dom, shared, v),
        VmExit::Wrmsr => wrmsr(dom, shared, v),
        VmExit::Io(io) => port_io(dom, v, io),
        VmExit::Hlt => {
            let interrupts_on = v.arch.rflags() & (1 << 9) != 0;
            let r = skip(dom, v, Expected::Hlt);
            if !matches!(r, Next::Resume) {
                return r;
            }
            // Halting with interrupts off only an NMI could end: Xen takes
            // it as the vCPU going offline.
            if interrupts_on { Next::Block } else { Next::Down }
        }
        VmExit::NestedPageFault { gpa, access }
            if (vlapic::DEFAULT_BASE..vlapic::DEFAULT_BASE + 0x1000).contains(&gpa) =>
        {
            apic_mmio(dom, shared, v, gpa, access.write)
        }
        VmExit::NestedPageFault { gpa, access } => {
            let kind = if access.fetch {
                "instruction fetch"
            } else if access.write {
                "write"
            } else {
                "read"
            };
            dom.crash(format_args!(
                "{kind} of guest-physical {gpa:#x}{} at rip {:#x}: not the domain's memory",
                if access.in_guest_walk { " (in its page-table walk)" } else { "" },
                v.arch.rip()
            ));
            Next::Stop
        }
        VmExit::Exception { vector: 6, .. } => invalid_opcode(dom, shared, v),
        VmExit::Exception { vector, error_code, cr2 } => {
            if vector == 18 {
                dom.crash(format_args!("machine check while it ran"));
                return Next::Stop;
            }
            // #DB and #AC are intercepted only so that a guest cannot wedge
            // the CPU in an exception loop: hand them back.
            if vector == 14 {
                v.arch.set_cr2(cr2);
            }
            v.arch.inject_exception(vector, error_code);
            Next::Resume
        }
        VmExit::ExternalInterrupt | VmExit::SliceExpired | VmExit::Nmi | VmExit::InterruptWindow | VmExit::Handled => {
            Next::Resume
        }
        VmExit::Shutdown => {
            dom.crash(format_args!("triple fault at rip {:#x}", v.arch.rip()));
            Next::Stop
        }
        // INVD would drop the host's dirty cache lines; WBINVD is costly
        // and the guest has no device memory to write back: both are nops.
        VmExit::Invd => skip(dom, v, Expected::Invd),
        VmExit::Wbinvd => skip(dom, v, Expected::Wbinvd),
        VmExit::Pause => skip(dom, v, Expected::Pause),
        // XSAVE is not offered to guests.
        VmExit::Xsetbv => {
            v.arch.inject_exception(6, None);
            Next::Resume
        }
        VmExit::Undefined(_) => {
            v.arch.inject_exception(6, None);
            Next::Resume
        }
        VmExit::InvalidState => {
            let mut w = crate::console::serial::LockedWriter::new();
            let _ = core::fmt::Write::write_fmt(
                &mut w,
                format_args!("domain {} vCPU {}: the CPU refused its state:\n", dom.id, v.id),
            );
            v.arch.dump(&mut w);
            drop(w);
            dom.crash(format_args!("invalid vCPU state"));
            Next::Stop
        }
        VmExit::Unknown { code, info1, info2 } => {
            dom.crash(format_args!(
                "unexpected exit {code:#x} (info {info1:#x} {info2:#x}) at rip {:#x}",
                v.arch.rip()
            ));
            Next::Stop
        }
    }
}

/// The hypercall instruction of the backend in use: VMMCALL on SVM,
/// VMCALL on VMX (guests pick by CPU vendor, which matches).
fn is_amd() -> bool {
    crate::arch::x86_64::hvm::backend() == Some(crate::arch::x86_64::hvm::Backend::Svm)
}

/// Reads up to 15 bytes at the guest's RIP (fewer if a page boundary ends
/// its mapping).
fn fetch(dom: &Domain, v: &mut Vcpu, out: &mut [u8; 15], use_cache: bool) -> usize {
    let linear = v.arch.cs_base().wrapping_add(v.arch.rip());
    let linear = if v.arch.bitness() == 64 { linear } else { linear & 0xffff_ffff };
    let page = linear & !0xfff;
    let off = (linear & 0xfff) as usize;
    let cr3 = v.arch.cr3();
    let i = dom.inner.lock();
    let Some(p2m) = i.p2m.as_ref() else { return 0 };
    // The code page of the last exit, while neither the guest's CR3 nor the
    // p2m changed: no page walk.
    if use_cache
        && off <= 4096 - 15
        && let Some((cached_cr3, lpage, generation, host)) = v.fetch_cache
        && cached_cr3 == cr3
        && lpage == page
        && generation == i.p2m_gen
    {
        // SAFETY: `host` is the direct-mapped frame the p2m still maps there
        // (same generation).
        unsafe { core::ptr::copy_nonoverlapping((host + off as u64) as *const u8, out.as_mut_ptr(), 15) };
        return 15;
    }
    let paging = v.arch.paging();
    let mem = DomainMemory { p2m };
    let mut n = 0;
    while n < 15 {
        let a = linear.wrapping_add(n as u64);
        let chunk = (15 - n).min(4096 - (a & 0xfff) as usize);
        let Ok(gpa) = guest_mem::translate(&mem, &paging, a, Access::FETCH) else { break };
        if guest_mem::read_phys(&mem, gpa, &mut out[n..n + chunk]).is_err() {
            break;
        }
        if n == 0
            && let Some((mfn, _)) = p2m.lookup(gpa >> 12)
            && let Some(host) = crate::mm::phys::phys_to_virt(mfn << 12)
        {
            v.fetch_cache = Some((paging.cr3, page, i.p2m_gen, host));
        }
        n += chunk;
    }
    n
}

/// Moves the guest past the instruction that exited.
fn skip(dom: &Domain, v: &mut Vcpu, expected: Expected) -> Next {
    let next = match v.arch.next_rip() {
        Some(n) => n,
        None => {
            let mut bytes = [0u8; 15];
            let n = fetch(dom, v, &mut bytes, true);
            let len = match insn::length(&bytes[..n], v.arch.bitness(), expected) {
                Ok(len) => Ok(len),
                // The cache cannot see the guest remapping its code page
                // under the same CR3: walk its page tables before deciding.
                Err(_) => {
                    let n = fetch(dom, v, &mut bytes, false);
                    insn::length(&bytes[..n], v.arch.bitness(), expected)
                }
            };
            match len {
                Ok(len) => v.arch.rip().wrapping_add(len as u64),
                Err(e) => {
                    dom.crash(format_args!("cannot decode the {expected:?} at rip {:#x}: {e:?}", v.arch.rip()));
                    return Next::Stop;
                }
            }
        }
    };
    advance_to(v, next);
    Next::Resume
}

fn advance_to(v: &mut Vcpu, next: u64) {
    let next = if v.arch.bitness() == 64 { next } else { next & 0xffff_ffff };
    v.arch.set_rip(next);
    v.arch.clear_interrupt_shadow();
    // Single-stepping: the instruction completed, so report it.
    if v.arch.rflags() & (1 << 8) != 0 {
        v.arch.inject_exception(1, None);
    }
}

fn hypercall(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu, insn: Expected) -> Next {
    let rip = v.arch.rip();
    let after = skip(dom, v, insn);
    if !matches!(after, Next::Resume) {
        return after;
    }
    complete_hypercall(dom, shared, v, rip)
}

/// Runs the hypercall in the vCPU's registers; RIP already points past the
/// instruction at `rip`.
fn complete_hypercall(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu, rip: u64) -> Next {
    let long_mode = v.arch.bitness() == 64;
    let nr = if long_mode { v.regs.rax } else { v.regs.rax & 0xffff_ffff };
    let call = Call { nr, args: v.regs.hypercall_args(long_mode), long_mode };
    let cpl = v.arch.cpl();
    let mut env = HcEnv::new(dom, shared, &v.arch);
    let outcome = hypercall::dispatch(&mut env, call, cpl);
    let HcEnv { flush_tlb, deferred, .. } = env;
    if flush_tlb || !deferred.is_empty() {
        flush_then_free(dom, v, flush_tlb, deferred);
    }
    match outcome {
        Outcome::Done(r) => {
            v.regs.set_hypercall_result(long_mode, r);
            Next::Resume
        }
        Outcome::Continue(args) => {
            // Run the same hypercall again with what is left.
            v.regs.set_hypercall_args(long_mode, args);
            v.arch.set_rip(rip);
            Next::Resume
        }
        Outcome::Yield => {
            v.regs.set_hypercall_result(long_mode, 0);
            Next::Yield
        }
        Outcome::Block => {
            v.regs.set_hypercall_result(long_mode, 0);
            Next::Block
        }
        Outcome::Down => {
            v.regs.set_hypercall_result(long_mode, 0);
            Next::Down
        }
        Outcome::Shutdown(reason) => {
            dom.shutdown(reason);
            Next::Stop
        }
    }
}

/// After a hypercall that changed the p2m: every vCPU of the domain drops
/// its translations before it runs again (those on other CPUs leave their
/// guests now, so a page the p2m no longer maps is not used through a
/// stale entry); only then are the frames it unmapped freed.
#[cold]
#[inline(never)]
fn flush_then_free(dom: &Domain, v: &mut Vcpu, flush_tlb: bool, deferred: alloc::vec::Vec<domain::Deferred>) {
    if flush_tlb {
        v.arch.flush_tlb();
        v.fetch_cache = None;
        let mut running = crate::util::cpumask::CpuMask::empty();
        for o in dom.vcpus.iter().filter(|o| o.id != v.id) {
            o.set_flag(vflags::FLUSH);
            let on = o.running_on.load(core::sync::atomic::Ordering::Acquire);
            if on != 0 {
                running.set(on as usize - 1);
            }
        }
        sched::kick_and_wait(&running);
    }
    for d in deferred {
        d.run();
    }
}

/// #UD in the guest: the other vendor's hypercall instruction is accepted
/// (a guest migrated between vendors, or one that guessed wrong); anything
/// else is the guest's own #UD.
fn invalid_opcode(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu) -> Next {
    let mut bytes = [0u8; 15];
    let n = fetch(dom, v, &mut bytes, false);
    let other = if is_amd() { iced_x86::Code::Vmcall } else { iced_x86::Code::Vmmcall };
    if let Some((code, _)) = insn::decode_code(&bytes[..n], v.arch.bitness())
        && code == other
    {
        // An exception exit's next-RIP does not describe the instruction:
        // decode its length.
        let e = if is_amd() { Expected::Vmcall } else { Expected::Vmmcall };
        let Ok(len) = insn::length(&bytes[..n], v.arch.bitness(), e) else {
            v.arch.inject_exception(6, None);
            return Next::Resume;
        };
        let rip = v.arch.rip();
        advance_to(v, rip.wrapping_add(len as u64));
        return complete_hypercall(dom, shared, v, rip);
    }
    v.arch.inject_exception(6, None);
    Next::Resume
}

fn rdmsr(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu) -> Next {
    let m = v.regs.rcx as u32;
    let value = match m {
        msr::EFER => Ok(v.arch.efer()),
        msr::PAT => Ok(v.arch.pat()),
        msr::TSC => Ok(cpu::rdtsc().wrapping_add(v.arch.tsc_offset())),
        msr::APIC_BASE => Ok(shared.vlapic.lock().base_msr()),
        vlapic::X2APIC_MSR_FIRST..=vlapic::X2APIC_MSR_LAST => {
            let mut l = shared.vlapic.lock();
            l.set_cr8(v.arch.tpr());
            l.read_msr(m, crate::time::now_ns()).map_err(|_| msr::Gp)
        }
        xen_abi::cpuid::HYPERCALL_PAGE_MSR => Ok(0),
        _ => msr::read_fixed(m, cpu::features().vendor),
    };
    match value {
        Ok(x) => {
            v.regs.rax = x & 0xffff_ffff;
            v.regs.rdx = x >> 32;
            skip(dom, v, Expected::Rdmsr)
        }
        Err(msr::Gp) => {
            v.arch.inject_exception(13, Some(0));
            Next::Resume
        }
    }
}

fn wrmsr(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu) -> Next {
    let m = v.regs.rcx as u32;
    let value = (v.regs.rdx << 32) | (v.regs.rax & 0xffff_ffff);
    let ok = match m {
        msr::EFER => {
            let paging = v.arch.paging().cr0 & (1 << 31) != 0;
            let ffxsr = cpu::cpuid(0x8000_0001, 0).edx & (1 << 25) != 0;
            msr::efer_write(v.arch.efer(), value, paging, ffxsr).map(|e| v.arch.set_efer(e)).is_ok()
        }
        msr::PAT => {
            let ok = msr::pat_valid(value);
            if ok {
                v.arch.set_pat(value);
            }
            ok
        }
        msr::TSC => {
            v.arch.set_tsc_offset(value.wrapping_sub(cpu::rdtsc()));
            shared.set_flag(vflags::TIME);
            true
        }
        msr::APIC_BASE => shared.vlapic.lock().write_base_msr(value, true).is_ok(),
        vlapic::X2APIC_MSR_FIRST..=vlapic::X2APIC_MSR_LAST => {
            let r = {
                let mut l = shared.vlapic.lock();
                l.set_cr8(v.arch.tpr());
                let r = l.write_msr(m, value, crate::time::now_ns());
                v.arch.set_tpr(l.cr8());
                r
            };
            apic_written(dom, shared, m == 0x838 || m == 0x832 || m == 0x83e);
            match r {
                Ok(Some(ipi)) => {
                    deliver_ipi(dom, &ipi);
                    true
                }
                Ok(None) => true,
                Err(_) => false,
            }
        }
        xen_abi::cpuid::HYPERCALL_PAGE_MSR => install_hypercall_page(dom, value),
        _ => msr::write_ignored(m, cpu::features().vendor),
    };
    if ok {
        skip(dom, v, Expected::Wrmsr)
    } else {
        v.arch.inject_exception(13, Some(0));
        Next::Resume
    }
}

/// After a write to the vCPU's own APIC: a self-IPI may be waiting, a
/// timer register may have changed.
fn apic_written(dom: &Domain, shared: &VcpuShared, timer: bool) {
    shared.note_irr();
    if timer {
        sched::rearm_vlapic_timer(dom.id, shared);
    }
}

/// A guest access to the xAPIC page (its local APIC in xAPIC mode): the
/// MOV that faulted is decoded and carried out on the emulated APIC.
fn apic_mmio(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu, gpa: u64, _write: bool) -> Next {
    if !shared.vlapic.lock().xapic_mode() {
        dom.crash(format_args!("access to the local APIC page at {gpa:#x} while its APIC is not in xAPIC mode"));
        return Next::Stop;
    }
    let mut bytes = [0u8; 15];
    let n = fetch(dom, v, &mut bytes, false);
    let bitness = v.arch.bitness();
    let Some(access) = insn::decode_mmio(&bytes[..n], bitness) else {
        dom.crash(format_args!("unsupported instruction for the local APIC page at rip {:#x}", v.arch.rip()));
        return Next::Stop;
    };
    let offset = (gpa & 0xfff) as u32;
    let now = crate::time::now_ns();
    match access.kind {
        insn::MmioKind::Load { reg } => {
            let val = {
                let mut l = shared.vlapic.lock();
                l.set_cr8(v.arch.tpr());
                l.read_mmio(offset, access.size as u32, now)
            } as u64;
            let old = v.regs.by_number(reg);
            let new = match access.size {
                1 => (old & !0xff) | val,
                2 => (old & !0xffff) | val,
                // 32-bit loads zero-extend in 64-bit mode.
                4 if bitness == 64 => val,
                4 => (old & !0xffff_ffff) | val,
                _ => val,
            };
            v.regs.set_by_number(reg, new);
        }
        insn::MmioKind::Store { value } => {
            let val = match value {
                insn::MmioValue::Reg(r) => v.regs.by_number(r),
                insn::MmioValue::Imm(i) => i,
            };
            if access.size == 4 {
                let ipi = {
                    let mut l = shared.vlapic.lock();
                    l.set_cr8(v.arch.tpr());
                    let ipi = l.write_mmio(offset, val as u32, now);
                    v.arch.set_tpr(l.cr8());
                    ipi
                };
                apic_written(dom, shared, matches!(offset, 0x320 | 0x380 | 0x3e0));
                if let Some(ipi) = ipi {
                    deliver_ipi(dom, &ipi);
                }
            }
        }
    }
    let rip = v.arch.rip();
    advance_to(v, rip.wrapping_add(access.len as u64));
    Next::Resume
}

/// The guest asked for the hypercall page at `value` (GPA | page index).
fn install_hypercall_page(dom: &Domain, value: u64) -> bool {
    if value & 0xfff != 0 {
        return false;
    }
    let page = domain::hypercall_page();
    let i = dom.inner.lock();
    let Some(p2m) = i.p2m.as_ref() else { return false };
    let mem = DomainMemory { p2m };
    // Only the domain's own writable RAM can hold it.
    match p2m.lookup(value >> 12) {
        Some((_, crate::arch::x86_64::hvm::npt::P2mType::Ram)) => guest_mem::write_phys(&mem, value & !0xfff, &page).is_ok(),
        _ => false,
    }
}

fn port_io(dom: &Arc<Domain>, v: &mut Vcpu, io: IoExit) -> Next {
    let mask: u64 = match io.size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    };
    if io.string {
        return string_io(dom, v, io);
    }
    if io.input {
        // No device answers: the bus floats high.
        v.regs.rax = (v.regs.rax & !mask) | mask;
    } else if io.port == DEBUG_PORT {
        for i in 0..io.size {
            dom.console_put((v.regs.rax >> (8 * i)) as u8);
        }
    }
    advance_to(v, io.next_rip);
    Next::Resume
}

/// INS/OUTS: reads float high, writes go nowhere (but to port 0xe9), and
/// RSI/RDI/RCX move as the instruction would have moved them.
fn string_io(dom: &Arc<Domain>, v: &mut Vcpu, io: IoExit) -> Next {
    let amask: u64 = match io.addr_size {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    };
    let count = if io.rep { v.regs.rcx & amask } else { 1 };
    let step = io.size as u64;
    let down = v.arch.rflags() & (1 << 10) != 0;
    let paging = v.arch.paging();
    for _ in 0..count.min(1 << 16) {
        if io.input {
            let addr = v.arch.segment_base(crate::arch::x86_64::hvm::Seg::Es).wrapping_add(v.regs.rdi & amask);
            let ones = [0xffu8; 4];
            let i = dom.inner.lock();
            let ok = i.p2m.as_ref().is_some_and(|p2m| {
                guest_mem::write_virt(&DomainMemory { p2m }, &paging, addr, &ones[..io.size as usize]).is_ok()
            });
            drop(i);
            if !ok {
                v.arch.inject_exception(13, Some(0));
                return Next::Resume;
            }
            let rdi = if down { v.regs.rdi.wrapping_sub(step) } else { v.regs.rdi.wrapping_add(step) };
            v.regs.rdi = (v.regs.rdi & !amask) | (rdi & amask);
        } else {
            if io.port == DEBUG_PORT {
                let addr = v.arch.segment_base(crate::arch::x86_64::hvm::Seg::Ds).wrapping_add(v.regs.rsi & amask);
                let mut b = [0u8; 4];
                let i = dom.inner.lock();
                let ok = i.p2m.as_ref().is_some_and(|p2m| {
                    guest_mem::read_virt(&DomainMemory { p2m }, &paging, addr, &mut b[..io.size as usize]).is_ok()
                });
                drop(i);
                if !ok {
                    v.arch.inject_exception(13, Some(0));
                    return Next::Resume;
                }
                for &c in &b[..io.size as usize] {
                    dom.console_put(c);
                }
            }
            let rsi = if down { v.regs.rsi.wrapping_sub(step) } else { v.regs.rsi.wrapping_add(step) };
            v.regs.rsi = (v.regs.rsi & !amask) | (rsi & amask);
        }
        if io.rep {
            v.regs.rcx = (v.regs.rcx & !amask) | (v.regs.rcx.wrapping_sub(1) & amask);
        }
    }
    if io.rep && v.regs.rcx & amask != 0 {
        // Very long: leave RIP on the instruction so it continues.
        return Next::Resume;
    }
    advance_to(v, io.next_rip);
    Next::Resume
}
