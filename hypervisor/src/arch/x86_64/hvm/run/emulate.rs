//! Emulating what a guest's exit asks for: moving past the instruction
//! (its bytes fetched through a one-entry cache of the code page), MSR
//! reads and writes, the xAPIC page and IPIs, guest-physical addresses
//! nothing backs, port and string I/O, the hypercall page, and the other
//! vendor's hypercall instruction.

use crate::arch::x86_64::cpu;
use crate::arch::x86_64::hvm::exit::IoExit;
use crate::arch::x86_64::hvm::exit::Next;
use crate::arch::x86_64::hvm::isolation::hw as iso;
use crate::arch::x86_64::hvm::isolation::msrs as iso_msrs;
use crate::arch::x86_64::hvm::msr;
use crate::arch::x86_64::hvm::policy::{self, guest_policy};
use crate::arch::x86_64::hvm::regs::Seg;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::arch::x86_64::hvm::vlapic::{self, Ipi, IpiKind};
use crate::arch::x86_64::insn::{self, Expected};
use crate::domain::{Domain, RunState, Vcpu, VcpuShared, vflags};
use crate::memory::guest_mem::{self, Access};
use crate::memory::physmap::DomainMemory;
use crate::mm::addr::{Gpa, Gva};
use crate::sched;
use alloc::sync::Arc;

/// The port every HVM/PVH guest may write debug text to (Xen's 0xe9).
const DEBUG_PORT: u16 = 0xe9;

/// Delivers an IPI a vCPU sent through its local APIC to every vCPU of
/// the domain it addresses.
pub(super) fn deliver_ipi(dom: &Domain, ipi: &Ipi) {
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

/// Where the exiting instruction is: its RIP and the code size the guest
/// runs (16, 32 or 64), read from the VMCB/VMCS once per exit and passed
/// down, as the code size takes several fields to work out.
#[derive(Clone, Copy)]
pub(super) struct Here {
    pub rip: u64,
    pub bits: u32,
}

impl Here {
    #[inline]
    pub fn of(v: &Vcpu) -> Here {
        Here { rip: v.arch.rip(), bits: v.arch.bitness() }
    }
}

/// Reads up to 15 bytes at the guest's RIP (fewer if a page boundary ends
/// its mapping).
pub(super) fn fetch(dom: &Domain, v: &mut Vcpu, out: &mut [u8; 15], use_cache: bool) -> usize {
    fetch_at(dom, v, Here::of(v), out, use_cache)
}

/// `fetch` where the caller has read the position already.
fn fetch_at(dom: &Domain, v: &mut Vcpu, here: Here, out: &mut [u8; 15], use_cache: bool) -> usize {
    let linear =
        if here.bits == 64 { here.rip } else { v.arch.segment_base(Seg::Cs).wrapping_add(here.rip) & 0xffff_ffff };
    let page = linear & !0xfff;
    let off = (linear & 0xfff) as usize;
    let cr3 = v.arch.cr3();
    let i = dom.inner.lock();
    let Some(p2m) = i.p2m.as_ref() else { return 0 };
    // A code page of the last exits, while neither the guest's CR3 nor the
    // p2m changed: no page walk.
    if use_cache
        && off <= 4096 - 15
        && let Some(host) = v.fetch_cache.get(&(cr3, page, i.p2m_gen))
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
        let Ok(gpa) = guest_mem::translate(&mem, &paging, Gva(a), Access::FETCH) else { break };
        if guest_mem::read_phys(&mem, gpa, &mut out[n..n + chunk]).is_err() {
            break;
        }
        if n == 0
            && let Some((mfn, _)) = p2m.lookup(gpa.gfn())
            && let Some(host) = crate::mm::phys::phys_to_virt(mfn.phys())
        {
            v.fetch_cache.put((paging.cr3, page, i.p2m_gen), host);
        }
        n += chunk;
    }
    n
}

/// Moves the guest past the instruction that exited.
#[inline(always)]
pub(super) fn skip(dom: &Domain, v: &mut Vcpu, expected: Expected) -> Next {
    skip_at(dom, v, Here::of(v), expected)
}

/// `skip` where the caller has read the position already.
#[inline]
pub(super) fn skip_at(dom: &Domain, v: &mut Vcpu, here: Here, expected: Expected) -> Next {
    let next = match v.arch.next_rip() {
        Some(n) => n,
        None => {
            let mut bytes = [0u8; 15];
            let n = fetch_at(dom, v, here, &mut bytes, true);
            let len = match insn::length(&bytes[..n], here.bits, expected) {
                Ok(len) => Ok(len),
                // The cache cannot see the guest remapping its code page
                // under the same CR3: walk its page tables before deciding.
                Err(_) => {
                    let n = fetch_at(dom, v, here, &mut bytes, false);
                    insn::length(&bytes[..n], here.bits, expected)
                }
            };
            match len {
                Ok(len) => here.rip.wrapping_add(len as u64),
                Err(e) => {
                    dom.crash(format_args!("cannot decode the {expected:?} at rip {:#x}: {e:?}", here.rip));
                    return Next::Stop;
                }
            }
        }
    };
    advance_in(v, here.bits, next);
    Next::Resume
}

#[inline]
pub(super) fn advance_to(v: &mut Vcpu, next: u64) {
    let bits = v.arch.bitness();
    advance_in(v, bits, next);
}

/// RIP to `next` for a guest running `bits`-bit code.
#[inline]
fn advance_in(v: &mut Vcpu, bits: u32, next: u64) {
    let next = if bits == 64 { next } else { next & 0xffff_ffff };
    // Single-stepping: the instruction completed, so report it.
    if v.arch.complete_insn(next) {
        v.arch.inject_exception(1, None);
    }
}

pub(super) fn rdmsr(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu) -> Next {
    let m = v.regs.rcx as u32;
    let value = match m {
        msr::EFER => Ok(v.arch.efer()),
        msr::PAT => Ok(v.arch.pat()),
        msr::TSC => Ok(cpu::rdtsc().wrapping_add(v.arch.tsc_offset())),
        msr::TSC_ADJUST => Ok(v.tsc_adjust),
        msr::APIC_BASE => Ok(shared.vlapic.lock().base_msr()),
        vlapic::X2APIC_MSR_FIRST..=vlapic::X2APIC_MSR_LAST => {
            let mut l = shared.vlapic.lock();
            l.set_cr8(v.arch.tpr());
            l.read_msr(m, crate::time::now_ns()).map_err(|_| msr::Gp)
        }
        xen_abi::cpuid::HYPERCALL_PAGE_MSR => Ok(0),
        // Speculation controls and TSC_AUX: the vCPU's own (isolation).
        iso_msrs::SPEC_CTRL
        | iso_msrs::PRED_CMD
        | iso_msrs::ARCH_CAPABILITIES
        | iso_msrs::FLUSH_CMD
        | iso_msrs::TSC_AUX => match iso::read_msr(m, v.arch.guest_state()) {
            iso_msrs::Answer::Ok(x) => Ok(x),
            _ => Err(msr::Gp),
        },
        _ => policy::msrs::read(guest_policy(), &v.msrs, m),
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

pub(super) fn wrmsr(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu) -> Next {
    let m = v.regs.rcx as u32;
    let value = (v.regs.rdx << 32) | (v.regs.rax & 0xffff_ffff);
    let ok = match m {
        msr::EFER => {
            let paging = v.arch.paging().cr0 & (1 << 31) != 0;
            match policy::cr::efer_write(guest_policy(), v.arch.efer(), value, paging) {
                Ok(w) => {
                    if w.lme_set {
                        v.arch.clear_cs_long();
                    }
                    v.arch.set_efer(w.efer);
                    true
                }
                Err(_) => false,
            }
        }
        msr::PAT => {
            let ok = msr::pat_valid(value);
            if ok {
                v.arch.set_pat(value);
            }
            ok
        }
        msr::TSC => {
            let (offset, adjust) = msr::tsc_write(v.arch.tsc_offset(), v.tsc_adjust, cpu::rdtsc(), value);
            v.arch.set_tsc_offset(offset);
            v.tsc_adjust = adjust;
            shared.set_flag(vflags::TIME);
            true
        }
        msr::TSC_ADJUST => {
            let (offset, adjust) = msr::tsc_adjust_write(v.arch.tsc_offset(), v.tsc_adjust, value);
            v.arch.set_tsc_offset(offset);
            v.tsc_adjust = adjust;
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
        iso_msrs::SPEC_CTRL
        | iso_msrs::PRED_CMD
        | iso_msrs::ARCH_CAPABILITIES
        | iso_msrs::FLUSH_CMD
        | iso_msrs::TSC_AUX => {
            matches!(iso::write_msr(m, value, v.arch.guest_state()), iso_msrs::Answer::Ok(()))
        }
        _ => {
            let ok = policy::msrs::write(guest_policy(), &mut v.msrs, m, value).is_ok();
            if ok && m == policy::msrs::DEBUGCTL {
                v.arch.set_debugctl(v.msrs.debugctl);
            }
            ok
        }
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
        sched::rearm_vlapic_timer(dom, shared);
    }
}

/// A guest access to the xAPIC page (its local APIC in xAPIC mode): the
/// MOV that faulted is decoded and carried out on the emulated APIC.
pub(super) fn apic_mmio(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu, gpa: Gpa, _write: bool) -> Next {
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
    let offset = gpa.page_offset() as u32;
    let now = crate::time::now_ns();
    match access.kind {
        kind @ (insn::MmioKind::Load { .. } | insn::MmioKind::LoadExtend { .. }) => {
            let val = {
                let mut l = shared.vlapic.lock();
                l.set_cr8(v.arch.tpr());
                l.read_mmio(offset, access.size as u32, now)
            } as u64;
            complete_load(v, kind, access.size, val, bitness);
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

/// Writes what a MOV of `size` bytes loaded into general register `reg`:
/// 8- and 16-bit loads merge, 32-bit ones zero-extend in 64-bit mode.
fn load_into(v: &mut Vcpu, reg: u8, size: u8, val: u64, bitness: u32) {
    let old = v.regs.by_number(reg);
    let new = match size {
        1 => (old & !0xff) | (val & 0xff),
        2 => (old & !0xffff) | (val & 0xffff),
        4 if bitness == 64 => val & 0xffff_ffff,
        4 => (old & !0xffff_ffff) | (val & 0xffff_ffff),
        _ => val,
    };
    v.regs.set_by_number(reg, new);
}

/// Completes a load of `size` bytes that read `raw` (MOV, MOVZX, MOVSX).
fn complete_load(v: &mut Vcpu, kind: insn::MmioKind, size: u8, raw: u64, bitness: u32) {
    let bits = 8 * size as u32;
    let raw = if bits >= 64 { raw } else { raw & ((1 << bits) - 1) };
    match kind {
        insn::MmioKind::Load { reg } => load_into(v, reg, size, raw, bitness),
        insn::MmioKind::LoadExtend { reg, to, signed } => {
            let value = if signed && bits < 64 { ((raw << (64 - bits)) as i64 >> (64 - bits)) as u64 } else { raw };
            load_into(v, reg, to, value, bitness);
        }
        insn::MmioKind::Store { .. } => {}
    }
}

/// A data access to a guest-physical address nothing backs (no RAM, no
/// emulated device: the HPET a guest probes at 0xfed00000, say): the MOV
/// that faulted is decoded and completed as Xen's default I/O handler
/// does, a load getting all ones and a store going nowhere. The first
/// per domain is reported.
pub(super) fn unbacked_mmio(dom: &Arc<Domain>, v: &mut Vcpu, gpa: Gpa, write: bool) -> Next {
    let mut bytes = [0u8; 15];
    let n = fetch(dom, v, &mut bytes, false);
    let bitness = v.arch.bitness();
    let rip = v.arch.rip();
    let Some(access) = insn::decode_mmio(&bytes[..n], bitness) else {
        dom.crash(format_args!(
            "{} of unbacked guest-physical {gpa:#x} at rip {rip:#x} by an instruction that cannot be emulated",
            if write { "write" } else { "read" }
        ));
        super::crash_report::report_crash_state(dom, v, "at the fault");
        return Next::Stop;
    };
    if dom.unbacked_reports.fetch_add(1, core::sync::atomic::Ordering::Relaxed) == 0 {
        log::warn!(
            "domain {} ({}): {}-byte {} at guest-physical {gpa:#x}, where nothing is, at rip {rip:#x}: {}, as Xen \
             (reported once per domain)",
            dom.id,
            dom.name,
            access.size,
            if write { "write" } else { "read" },
            if write { "dropped" } else { "all ones" },
        );
    }
    complete_load(v, access.kind, access.size, u64::MAX, bitness);
    advance_to(v, rip.wrapping_add(access.len as u64));
    Next::Resume
}

/// The guest asked for the hypercall page at `value` (GPA | page index).
fn install_hypercall_page(dom: &Domain, value: u64) -> bool {
    if value & 0xfff != 0 {
        return false;
    }
    let page = hypercall_page();
    let i = dom.inner.lock();
    let Some(p2m) = i.p2m.as_ref() else { return false };
    let mem = DomainMemory { p2m };
    // Only the domain's own writable RAM can hold it.
    let at = Gpa(value);
    match p2m.lookup(at.gfn()) {
        Some((_, crate::arch::x86_64::hvm::npt::P2mType::Ram)) => {
            guest_mem::write_phys(&mem, at.gfn().gpa(), &page).is_ok()
        }
        _ => false,
    }
}

pub(super) fn port_io(dom: &Arc<Domain>, v: &mut Vcpu, io: IoExit) -> Next {
    let mask: u64 = match io.size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    };
    if io.string {
        return string_io(dom, v, io);
    }
    if dom.devices.is_some() && hardware_domain_port(dom, v, &io, mask) {
        return Next::Resume;
    }
    if io.input {
        // No device answers: the bus floats high. IN EAX writes all of
        // RAX (a 32-bit register write), as Xen's handle_pio does.
        v.regs.rax = if io.size == 4 { mask } else { (v.regs.rax & !mask) | mask };
    } else if io.port == DEBUG_PORT {
        // The first byte waits for room on the serial line (the
        // instruction runs again); the rest of a wider write go with it.
        if !dom.console_put(v.regs.rax as u8) {
            return Next::Resume;
        }
        for i in 1..io.size {
            let _ = dom.console_put((v.regs.rax >> (8 * i)) as u8);
        }
    }
    advance_to(v, io.next_rip);
    Next::Resume
}

/// The hardware domain's PCI configuration ports: whether `io` was one
/// (then done, RIP moved on). Kept out of line: only dom0 comes here.
#[cold]
#[inline(never)]
fn hardware_domain_port(dom: &Arc<Domain>, v: &mut Vcpu, io: &IoExit, mask: u64) -> bool {
    let Some(acc) = &dom.devices else { return false };
    let size = io.size as u16;
    if io.input {
        let Some(val) = crate::passthrough::config::port_read(acc, io.port, size) else { return false };
        let val = val as u64 & mask;
        v.regs.rax = if io.size == 4 { val } else { (v.regs.rax & !mask) | val };
    } else {
        let mut mmio = crate::memory::physmap::DeviceMemory::new(dom);
        let value = (v.regs.rax & mask) as u32;
        if !crate::passthrough::config::port_write(acc, dom.id, &mut mmio, io.port, size, value) {
            return false;
        }
        // A BAR mapped, moved or unmapped: no vCPU may keep the old
        // translation.
        if mmio.changed {
            super::flush::flush_then_free(dom, v, true, alloc::vec::Vec::new());
        }
    }
    advance_to(v, io.next_rip);
    true
}

/// Elements of a REP INS/OUTS handled per exit.
const STRING_IO_PER_EXIT: u64 = 1024;

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
    // A bounded number per exit (each is a guest page walk): a long REP
    // continues from the next exit, so the CPU sees its timers between.
    for _ in 0..count.min(STRING_IO_PER_EXIT) {
        if io.input {
            let addr = v.arch.segment_base(crate::arch::x86_64::hvm::regs::Seg::Es).wrapping_add(v.regs.rdi & amask);
            let ones = [0xffu8; 4];
            let i = dom.inner.lock();
            let ok = i.p2m.as_ref().is_some_and(|p2m| {
                guest_mem::write_virt(&DomainMemory { p2m }, &paging, Gva(addr), &ones[..io.size as usize]).is_ok()
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
                let addr =
                    v.arch.segment_base(crate::arch::x86_64::hvm::regs::Seg::Ds).wrapping_add(v.regs.rsi & amask);
                let mut b = [0u8; 4];
                let i = dom.inner.lock();
                let ok = i.p2m.as_ref().is_some_and(|p2m| {
                    guest_mem::read_virt(&DomainMemory { p2m }, &paging, Gva(addr), &mut b[..io.size as usize]).is_ok()
                });
                drop(i);
                if !ok {
                    v.arch.inject_exception(13, Some(0));
                    return Next::Resume;
                }
                // No room on the serial line: stop here, the instruction
                // runs again (RSI and RCX stay on this element).
                if !dom.console_put(b[0]) {
                    return Next::Resume;
                }
                for &c in &b[1..io.size as usize] {
                    let _ = dom.console_put(c);
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

/// The hypercall page for the backend in use (vmmcall on SVM, vmcall on
/// VMX).
fn hypercall_page() -> [u8; 4096] {
    crate::hypercall::table::hypercall_page(crate::arch::x86_64::hvm::hypercall_insn().encoding())
}
