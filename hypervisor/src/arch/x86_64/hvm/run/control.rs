//! Writes to the guest's control state that both backends send here: CR0
//! and CR4 (MOV, CLTS, LMSW), EFER and XCR0, each checked against the
//! guest's CPU policy (`policy::cr`) and raising #GP as Xen does, so that
//! the hardware never gets a state it would refuse to enter; and the check
//! of a whole starting state before it is loaded.

use super::emulate::{advance_to, fetch};
use crate::arch::x86_64::hvm::exit::{CrWrite, Next};
use crate::arch::x86_64::hvm::policy::cr::{self, cr0, cr4};
use crate::arch::x86_64::hvm::policy::guest_policy;
use crate::arch::x86_64::hvm::vcpu_init::InitialState;
use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::arch::x86_64::insn::{self, CrInsn};
use crate::domain::{Domain, Vcpu};

fn gp(v: &mut Vcpu) -> Next {
    v.arch.inject_exception(13, Some(0));
    Next::Resume
}

/// A CR0 or CR4 write the hardware reported.
pub(super) fn cr_write(dom: &Domain, v: &mut Vcpu, w: CrWrite) -> Next {
    let bitness = v.arch.bitness();
    let (what, len) = match w {
        CrWrite::Mov { cr, gpr } => (CrInsn::MovTo { cr, gpr }, None),
        CrWrite::Clts => (CrInsn::Clts, None),
        CrWrite::Lmsw(value) => {
            // VMX reports the source value itself.
            return apply_cr0(dom, v, lmsw(v.arch.paging().cr0, value), None);
        }
        CrWrite::Decode { .. } => match decode(dom, v) {
            Some((i, len)) => (i, Some(len)),
            None => {
                dom.crash(format_args!("cannot decode the control-register write at rip {:#x}", v.arch.rip()));
                return Next::Stop;
            }
        },
    };
    let cr0_now = v.arch.paging().cr0;
    match what {
        CrInsn::MovTo { cr: 0, gpr } => {
            let value = v.regs.by_number(gpr);
            let value = if bitness == 64 { value } else { value & 0xffff_ffff };
            apply_cr0(dom, v, value, len)
        }
        CrInsn::MovTo { cr: 4, gpr } => {
            let value = v.regs.by_number(gpr);
            let value = if bitness == 64 { value } else { value & 0xffff_ffff };
            let p = v.arch.paging();
            match cr::cr4_write(guest_policy(), p.cr4, value, p.cr0, p.cr3, p.efer) {
                Ok(new) => {
                    v.arch.set_cr4(new);
                    if (new ^ p.cr4) & cr4::FLUSHING != 0 {
                        v.arch.flush_tlb();
                        v.fetch_cache.clear();
                    }
                    finish(dom, v, len)
                }
                Err(_) => gp(v),
            }
        }
        CrInsn::Clts => apply_cr0(dom, v, cr0_now & !cr0::TS, len),
        CrInsn::LmswReg { gpr } => apply_cr0(dom, v, lmsw(cr0_now, v.regs.by_number(gpr) as u16), len),
        CrInsn::LmswMem | CrInsn::MovTo { .. } => {
            dom.crash(format_args!("unsupported control-register write {what:?} at rip {:#x}", v.arch.rip()));
            Next::Stop
        }
    }
}

/// LMSW: PE, MP, EM and TS from the operand; PE cannot be cleared.
fn lmsw(cr0_now: u64, value: u16) -> u64 {
    (cr0_now & !0xe) | (value as u64 & 0xf) | (cr0_now & cr0::PE)
}

fn decode(dom: &Domain, v: &mut Vcpu) -> Option<(CrInsn, usize)> {
    let mut bytes = [0u8; 15];
    let n = fetch(dom, v, &mut bytes, false);
    insn::decode_cr_write(&bytes[..n], v.arch.bitness())
}

fn apply_cr0(dom: &Domain, v: &mut Vcpu, value: u64, len: Option<usize>) -> Next {
    let p = v.arch.paging();
    match cr::cr0_write(p.cr0, value, p.efer, p.cr4, v.arch.bitness() == 64) {
        Ok(w) => {
            v.arch.set_cr0(w.cr0);
            if w.efer != p.efer {
                v.arch.set_efer(w.efer);
            }
            if (w.cr0 ^ p.cr0) & (cr0::PG | cr0::WP | cr0::PE) != 0 {
                v.arch.flush_tlb();
            }
            v.fetch_cache.clear();
            finish(dom, v, len)
        }
        Err(_) => gp(v),
    }
}

/// Moves past the instruction: its decoded length, else where the
/// hardware says the next one starts, else decoded now.
fn finish(dom: &Domain, v: &mut Vcpu, len: Option<usize>) -> Next {
    let rip = v.arch.rip();
    let next = match (len, v.arch.next_rip()) {
        (Some(len), _) => rip.wrapping_add(len as u64),
        (None, Some(next)) => next,
        (None, None) => match decode(dom, v) {
            Some((_, len)) => rip.wrapping_add(len as u64),
            None => {
                dom.crash(format_args!("cannot decode the control-register write at rip {rip:#x}"));
                return Next::Stop;
            }
        },
    };
    advance_to(v, next);
    Next::Resume
}

/// XSETBV: #UD without CR4.OSXSAVE, #GP at CPL > 0 or for a value the
/// policy refuses (today every value: XSAVE is not offered).
pub(super) fn xsetbv(dom: &Domain, v: &mut Vcpu) -> Next {
    if v.arch.paging().cr4 & cr4::OSXSAVE == 0 {
        v.arch.inject_exception(6, None);
        return Next::Resume;
    }
    let value = (v.regs.rdx << 32) | (v.regs.rax & 0xffff_ffff);
    if v.arch.cpl() != 0 || cr::xcr0_write(guest_policy(), v.regs.rcx as u32, value).is_err() {
        return gp(v);
    }
    // Unreachable while the policy offers no XSAVE component: XCR0 would
    // have to be switched per vCPU first.
    dom.crash(format_args!("XSETBV of {value:#x}: XCR0 is not switched per vCPU"));
    Next::Stop
}

/// Why a starting state must not be loaded (a bug: VCPUOP_initialise
/// checks the guest's, and the others are the hypervisor's own).
pub(super) fn state_invalid(st: &InitialState) -> Option<&'static str> {
    cr::state_invalid(guest_policy(), st.cr0, st.cr4, st.efer)
}
