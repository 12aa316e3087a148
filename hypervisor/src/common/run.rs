//! Running vCPUs: a round-robin run queue on the boot CPU with a periodic
//! tick for preemption (the credit scheduler replaces the policy later),
//! and the handling of every exit, once, for every backend.
//!
//! Hypervisor code runs with interrupts off. Host interrupts are taken at
//! two points only: right after an exit (`irq_window`) and while idle.

use crate::arch::x86_64::cpu;
use crate::arch::x86_64::insn::{self, Expected};
use crate::arch::x86_64::lapic;
use crate::common::cpuid::{CpuidContext, guest_cpuid};
use crate::common::domain::{self, Domain, DomainMemory, DomainState, HcEnv, Vcpu};
use crate::common::exit::{IoExit, VmExit};
use crate::common::guest_mem::{self, Access};
use crate::common::hypercall::{self, Call, Outcome};
use crate::common::msr;
use crate::common::vcpu::VcpuState;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

static RUNQ: Mutex<VecDeque<(Arc<Domain>, u32)>> = Mutex::new(VecDeque::new());
static NEED_RESCHED: AtomicBool = AtomicBool::new(false);
pub static TICKS: AtomicU64 = AtomicU64::new(0);

/// The port every HVM/PVH guest may write debug text to (Xen's 0xe9).
const DEBUG_PORT: u16 = 0xe9;

pub fn enqueue(dom: Arc<Domain>, vcpu: u32) {
    RUNQ.lock().push_back((dom, vcpu));
}

/// Timer interrupt: the current vCPU's slice is over.
pub fn tick(_: &mut crate::arch::x86_64::traps::TrapFrame) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    NEED_RESCHED.store(true, Ordering::Relaxed);
    lapic::eoi();
}

/// Lets pending host interrupts in, then closes again.
fn irq_window() {
    // SAFETY: the hypervisor's handlers run on this stack; interrupts are
    // enabled for one instruction only.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Why a vCPU left the CPU.
enum Leave {
    Preempted,
    Yielded,
    Blocked,
    DomainGone,
}

/// What the exit handler wants.
enum Next {
    Resume,
    Yield,
    Block,
    Stop,
}

/// Runs vCPUs until no domain is left, then returns.
pub fn run() {
    loop {
        let next = RUNQ.lock().pop_front();
        let Some((dom, vid)) = next else {
            if domain::count() == 0 {
                return;
            }
            // Nothing runnable: wait for an interrupt.
            // SAFETY: halting with interrupts enabled until the next one.
            unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
            continue;
        };
        if !dom.is_running() {
            finish_if_dead(&dom);
            continue;
        }
        let Some(cell) = dom.vcpus.get(vid as usize) else { continue };
        let mut v = cell.lock();
        if v.state != VcpuState::Runnable {
            continue;
        }
        NEED_RESCHED.store(false, Ordering::Relaxed);
        let leave = run_vcpu(&dom, &mut v);
        drop(v);
        match leave {
            Leave::Preempted | Leave::Yielded => enqueue(dom, vid),
            Leave::Blocked => {}
            Leave::DomainGone => finish_if_dead(&dom),
        }
    }
}

/// Releases a domain once it is dead.
fn finish_if_dead(dom: &Arc<Domain>) {
    if let DomainState::Dead(_) = dom.inner.lock().state {
    } else {
        return;
    }
    if domain::find(dom.id).is_some() {
        let pages = dom.inner.lock().ram_pages;
        domain::destroy(dom);
        log::info!("domain {} ({}) destroyed; {} MiB returned", dom.id, dom.name, pages >> 8);
    }
    RUNQ.lock().retain(|(d, _)| d.id != dom.id);
}

fn run_vcpu(dom: &Arc<Domain>, v: &mut Vcpu) -> Leave {
    v.fpu.restore();
    v.arch.switch_in();
    let leave = loop {
        let exit = v.arch.run(&mut v.regs);
        v.exits += 1;
        // Pending host interrupts (the tick that ends the slice) are taken
        // after every exit, not only after the exits they cause: it costs a
        // few cycles and does not depend on the CPU exiting at once for an
        // interrupt already pending at entry (Bochs 2.7's VT-x does not
        // while the guest's IF is clear).
        irq_window();
        match handle_exit(dom, v, exit) {
            Next::Resume => {
                if NEED_RESCHED.load(Ordering::Relaxed) {
                    break Leave::Preempted;
                }
            }
            Next::Yield => break Leave::Yielded,
            Next::Block => {
                v.state = VcpuState::Blocked;
                break Leave::Blocked;
            }
            Next::Stop => break Leave::DomainGone,
        }
        if !dom.is_running() {
            break Leave::DomainGone;
        }
    };
    v.arch.switch_out();
    v.fpu.save();
    leave
}

fn handle_exit(dom: &Arc<Domain>, v: &mut Vcpu, exit: VmExit) -> Next {
    match exit {
        VmExit::Hypercall => hypercall(dom, v, if is_amd() { Expected::Vmmcall } else { Expected::Vmcall }),
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
        VmExit::Rdmsr => rdmsr(dom, v),
        VmExit::Wrmsr => wrmsr(dom, v),
        VmExit::Io(io) => port_io(dom, v, io),
        VmExit::Hlt => {
            let r = skip(dom, v, Expected::Hlt);
            if !matches!(r, Next::Resume) {
                return r;
            }
            // Nothing can wake a vCPU yet except events, which arrive with
            // event channels; with interrupts off it waits for good.
            Next::Block
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
        VmExit::Exception { vector: 6, .. } => invalid_opcode(dom, v),
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
            let mut w = crate::console::LockedWriter::new();
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

fn hypercall(dom: &Arc<Domain>, v: &mut Vcpu, insn: Expected) -> Next {
    let rip = v.arch.rip();
    let after = skip(dom, v, insn);
    if !matches!(after, Next::Resume) {
        return after;
    }
    complete_hypercall(dom, v, rip)
}

/// Runs the hypercall in the vCPU's registers; RIP already points past the
/// instruction at `rip`.
fn complete_hypercall(dom: &Arc<Domain>, v: &mut Vcpu, rip: u64) -> Next {
    let long_mode = v.arch.bitness() == 64;
    let nr = if long_mode { v.regs.rax } else { v.regs.rax & 0xffff_ffff };
    let call = Call { nr, args: v.regs.hypercall_args(long_mode), long_mode };
    let cpl = v.arch.cpl();
    let mut env = HcEnv { dom, vcpu_id: v.id, arch: &v.arch, flush_tlb: false, own_upcall: None };
    let outcome = hypercall::dispatch(&mut env, call, cpl);
    let (flush_tlb, own_upcall) = (env.flush_tlb, env.own_upcall);
    if flush_tlb {
        for (i, cell) in dom.vcpus.iter().enumerate() {
            if i as u32 == v.id {
                v.arch.flush_tlb();
            } else {
                cell.lock().arch.flush_tlb();
            }
        }
        v.fetch_cache = None;
    }
    if let Some(vector) = own_upcall {
        v.upcall_vector = vector;
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
        Outcome::Shutdown(reason) => {
            dom.shutdown(reason);
            Next::Stop
        }
    }
}

/// #UD in the guest: the other vendor's hypercall instruction is accepted
/// (a guest migrated between vendors, or one that guessed wrong); anything
/// else is the guest's own #UD.
fn invalid_opcode(dom: &Arc<Domain>, v: &mut Vcpu) -> Next {
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
        return complete_hypercall(dom, v, rip);
    }
    v.arch.inject_exception(6, None);
    Next::Resume
}

fn rdmsr(dom: &Arc<Domain>, v: &mut Vcpu) -> Next {
    let m = v.regs.rcx as u32;
    let value = match m {
        msr::EFER => Ok(v.arch.efer()),
        msr::PAT => Ok(v.arch.pat()),
        msr::TSC => Ok(cpu::rdtsc().wrapping_add(v.arch.tsc_offset())),
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

fn wrmsr(dom: &Arc<Domain>, v: &mut Vcpu) -> Next {
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
            true
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
        Some((_, crate::arch::x86_64::npt::P2mType::Ram)) => guest_mem::write_phys(&mem, value & !0xfff, &page).is_ok(),
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
        let mut env = HcEnv { dom, vcpu_id: v.id, arch: &v.arch, flush_tlb: false, own_upcall: None };
        for i in 0..io.size {
            hypercall::Env::console_put(&mut env, (v.regs.rax >> (8 * i)) as u8);
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
                let mut env = HcEnv { dom, vcpu_id: v.id, arch: &v.arch, flush_tlb: false, own_upcall: None };
                for &c in &b[..io.size as usize] {
                    hypercall::Env::console_put(&mut env, c);
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
