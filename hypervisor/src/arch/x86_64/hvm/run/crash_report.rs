//! What a vCPU looked like when it ended its domain (a triple fault, a
//! fetch or write where the domain has no memory), printed after the
//! crash line: its backend's state, its registers, and where its page
//! tables map its RIP, with the bytes memory holds there.

use crate::arch::x86_64::hvm::vendor::VendorVcpu;
use crate::domain::{Domain, Vcpu};

/// The report for vCPU `v` of `dom`, `when` saying at what.
#[cold]
pub(super) fn report_crash_state(dom: &Domain, v: &Vcpu, when: &str) {
    use crate::memory::guest_mem::{self, Access};
    use crate::mm::addr::Gva;
    use core::fmt::Write;
    let mut w = crate::console::serial::LockedWriter::new();
    let _ = writeln!(w, "domain {} vCPU {} {when}:", dom.id, v.id);
    v.arch.dump(&mut w);
    let r = &v.regs;
    let _ = writeln!(
        w,
        "    rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp
    );
    let _ = writeln!(
        w,
        "    r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x}",
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15
    );
    let paging = v.arch.paging();
    let i = dom.inner.lock();
    if let Some(p2m) = i.p2m.as_ref() {
        let mem = crate::memory::physmap::DomainMemory { p2m };
        let rip = v.arch.cs_base().wrapping_add(v.arch.rip());
        let fetch = guest_mem::probe(&mem, &paging, Gva(rip), Access::FETCH);
        let _ = writeln!(w, "    its page tables (cr3 {:#x}) map rip to {fetch:?}", paging.cr3);
        if let Ok(gpa) = fetch {
            // What memory holds there now: if it differs from what the
            // vCPU ran, its view of the page was not the p2m's.
            let mut code = [0u8; 16];
            let frame = p2m.lookup(gpa.gfn());
            let _ = write!(w, "    p2m: gfn {:#x} -> {frame:?}; code:", gpa.gfn().0);
            match guest_mem::read_phys(&mem, gpa, &mut code) {
                Ok(()) => code.iter().for_each(|b| {
                    let _ = write!(w, " {b:02x}");
                }),
                Err(e) => {
                    let _ = write!(w, " unreadable ({e:?})");
                }
            }
            let _ = writeln!(w);
        }
    }
}
