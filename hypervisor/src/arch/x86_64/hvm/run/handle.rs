//! Handling every exit once, whatever the backend: `VmExit` in, what the
//! run loop does next out. Hypercalls are dispatched here (their TLB
//! flushes and deferred frees done before the vCPU runs again);
//! instruction-level work is `emulate`'s.

use super::control;
use super::emulate::{Here, advance_to, apic_mmio, fetch, port_io, rdmsr, skip, skip_at, unbacked_mmio, wrmsr};
use super::flush::flush_then_free;
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::hvm::cpuid::{CpuidContext, guest_cpuid};
use crate::arch::x86_64::hvm::exit::{Next, VmExit};
use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::arch::x86_64::hvm::vlapic;
use crate::arch::x86_64::insn::{self, Expected};
use crate::domain::{Domain, Vcpu, VcpuShared};
use crate::hypercall::env::HcEnv;
use crate::hypercall::{self, Call, Outcome};
use alloc::sync::Arc;

/// Inlined into the run loop, its one caller, always: left to the
/// inliner it was sometimes a call of its own, which cost about 20
/// instructions per exit (the caller-saved registers and its frame).
#[inline(always)]
pub(super) fn handle_exit(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu, exit: VmExit) -> Next {
    match exit {
        VmExit::Hypercall(insn) => hypercall(dom, shared, v, insn),
        VmExit::Cpuid if v.msrs.cpuid_faults(v.arch.cpl()) => {
            // The guest turned CPUID faulting on (MISC_FEATURES_ENABLES).
            v.arch.inject_exception(13, Some(0));
            Next::Resume
        }
        VmExit::Cpuid => {
            let ctx = CpuidContext {
                vcpu_id: v.id,
                domid: dom.id,
                nr_vcpus: dom.vcpus.len() as u32,
                tsc_khz: crate::time::tsc_khz() as u32,
                host_tsc_reliable: cpu::features().invariant_tsc,
                offer: crate::arch::x86_64::hvm::isolation::hw::offer(),
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
            Next::after_halt(interrupts_on)
        }
        VmExit::NestedPageFault { gpa, access }
            if (vlapic::DEFAULT_BASE..vlapic::DEFAULT_BASE + 0x1000).contains(&gpa.0) =>
        {
            apic_mmio(dom, shared, v, gpa, access.write)
        }
        // A data access where nothing is: Xen's default I/O handler (reads
        // all ones, writes dropped). Instruction fetches and page-table
        // walks there still end the domain.
        VmExit::NestedPageFault { gpa, access }
            if !access.fetch && !access.present && !access.in_guest_walk && unbacked(dom, gpa) =>
        {
            unbacked_mmio(dom, v, gpa, access.write)
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
            super::crash_report::report_crash_state(dom, v, "at the fault");
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
            super::crash_report::report_crash_state(dom, v, "at the triple fault");
            Next::Stop
        }
        // INVD would drop the host's dirty cache lines; WBINVD is costly
        // and the guest has no device memory to write back: both are nops.
        VmExit::Invd => skip(dom, v, Expected::Invd),
        VmExit::Wbinvd => skip(dom, v, Expected::Wbinvd),
        VmExit::Pause => skip(dom, v, Expected::Pause),
        VmExit::Xsetbv => control::xsetbv(dom, v),
        VmExit::CrWrite(w) => control::cr_write(dom, v, w),
        VmExit::Undefined(_) => {
            v.arch.inject_exception(6, None);
            Next::Resume
        }
        VmExit::InvalidState => {
            let mut w = crate::console::serial::LockedWriter::new();
            let _ = core::fmt::Write::write_fmt(
                &mut w,
                format_args!(
                    "domain {} vCPU {}: the CPU refused to enter it (VMRUN/VM entry failed on its state):\n",
                    dom.id, v.id
                ),
            );
            v.arch.dump(&mut w);
            drop(w);
            dom.crash(format_args!("invalid vCPU state: the CPU refused to enter it at rip {:#x}", v.arch.rip()));
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

/// Whether nothing backs `gpa` in the domain's p2m (no RAM, no mapping).
fn unbacked(dom: &Domain, gpa: crate::mm::addr::Gpa) -> bool {
    dom.inner.lock().p2m.as_ref().is_some_and(|p2m| p2m.lookup(gpa.gfn()).is_none())
}

#[inline]
fn hypercall(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu, insn: Expected) -> Next {
    let here = Here::of(v);
    let after = skip_at(dom, v, here, insn);
    if !matches!(after, Next::Resume) {
        return after;
    }
    complete_hypercall(dom, shared, v, here)
}

/// Runs the hypercall in the vCPU's registers; RIP already points past the
/// instruction at `here`.
#[inline]
fn complete_hypercall(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu, here: Here) -> Next {
    let (rip, long_mode) = (here.rip, here.bits == 64);
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

/// #UD in the guest: the other vendor's hypercall instruction is accepted
/// (a guest migrated between vendors, or one that guessed wrong); anything
/// else is the guest's own #UD.
fn invalid_opcode(dom: &Arc<Domain>, shared: &VcpuShared, v: &mut Vcpu) -> Next {
    let mut bytes = [0u8; 15];
    let n = fetch(dom, v, &mut bytes, false);
    let other = crate::arch::x86_64::hvm::foreign_hypercall_insn();
    if let Some((code, _)) = insn::decode_code(&bytes[..n], v.arch.bitness())
        && other.matches(code)
    {
        // An exception exit's next-RIP does not describe the instruction:
        // decode its length.
        let Ok(len) = insn::length(&bytes[..n], v.arch.bitness(), other) else {
            v.arch.inject_exception(6, None);
            return Next::Resume;
        };
        let here = Here::of(v);
        advance_to(v, here.rip.wrapping_add(len as u64));
        return complete_hypercall(dom, shared, v, here);
    }
    v.arch.inject_exception(6, None);
    Next::Resume
}
