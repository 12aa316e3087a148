//! Running a vCPU on this CPU and handling every exit, once, for every
//! backend: interrupts for the guest are delivered before each entry (or
//! an interrupt window is asked for), host interrupts are taken after each
//! exit, and the scheduler (`sched`) decides when the vCPU leaves. Exits are
//! handled in `handle`, instructions emulated in `emulate`; each CPU's
//! loop is `cpu_loop`.

mod control;
pub mod cpu_loop;
mod crash_report;
mod emulate;
mod flush;
mod handle;

use self::handle::handle_exit;
use super::exit::Next;
use super::intr;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::domain::{Domain, RunState, Vcpu, VcpuShared, vflags};
use crate::memory::guest_mem::{self};
use crate::memory::physmap::DomainMemory;
use crate::sched;
use alloc::sync::Arc;

/// Lets pending host interrupts in, then closes again.
fn irq_window() {
    // SAFETY: the hypervisor's handlers run on this stack; interrupts are
    // enabled for one instruction only.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Runs vCPU `vid` of `dom` on this CPU until the scheduler wants the CPU
/// back, the vCPU blocks or goes down, or the domain stops.
pub fn run_vcpu(dom: &Arc<Domain>, vid: u32) {
    let Some(shared) = dom.vcpu(vid) else { return };
    let mut guard = shared.cell.lock();
    let v = &mut *guard;
    sched::enter_vcpu(shared);
    // IBPB when this CPU last ran another vCPU (Xen's IBPB-ctxt).
    crate::arch::x86_64::hvm::isolation::hw::context_switch(dom.id, vid);
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
        pcpu.entering_guest();
        if shared.flags.load(core::sync::atomic::Ordering::Acquire) & vflags::BEFORE_ENTRY != 0 {
            // Its domain stopped (from any CPU: the flag and a kick).
            if !dom.is_running() {
                break;
            }
            apply_requests(dom, shared, v);
            // A starting state it cannot have ended the domain.
            if !dom.is_running() {
                break;
            }
        }
        deliver_interrupts(dom, shared, v);
        let exit = v.arch.run(&mut v.regs);
        pcpu.left_guest();
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
    // After the last exit, or left at the top of the loop (the domain
    // stopped) without entering.
    pcpu.not_in_guest();
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
        && crate::event::deliver::upcall_pending(dom, shared.id)
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
        v.fetch_cache.clear();
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

/// Loads a starting state into the vCPU (PVH entry, STARTUP, initialise);
/// one the vCPU cannot have (which VCPUOP_initialise already refuses)
/// ends the domain instead of reaching the hardware.
pub fn load_state(dom: &Domain, v: &mut Vcpu, st: &InitialState) {
    if let Some(why) = control::state_invalid(st) {
        dom.crash(format_args!("vCPU {} cannot start in its state: {why}", v.id));
        return;
    }
    v.arch.set_state(st);
    v.msrs.debugctl = 0;
    v.regs = st.regs;
    v.arch.set_tsc_offset(dom.tsc_offset);
    v.fetch_cache.clear();
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
    let upcall = callback != 0 && crate::event::deliver::upcall_pending(dom, v.id);
    let mut l = shared.vlapic.lock();
    l.set_cr8(v.arch.tpr());
    let lapic = if upcall { None } else { l.pending() };
    let d = intr::choose(upcall.then_some(callback), lapic, v.arch.interrupt_window_open());
    if let Some(vector) = d.inject {
        if d.ack_lapic {
            l.ack(vector);
        }
        v.arch.inject_interrupt(vector);
    }
    if d.want_window != v.window_requested {
        v.arch.set_interrupt_window(d.want_window);
        v.window_requested = d.want_window;
    }
    if upcall || l.has_irr() {
        shared.irq_hint.store(true, Ordering::Release);
    }
}
