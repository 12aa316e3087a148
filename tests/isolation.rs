//! Isolation between vCPUs and domains on a shared CPU: the `isolation`
//! guest (tests/guests/src/bin/isolation.rs) in several domains at once
//! checks that debug registers, PKRU, TSC_AUX and MSR_SPEC_CTRL stay each
//! vCPU's own across switches, that no breakpoint of one domain fires in
//! another, that a page mapped at one address in every domain always
//! reads the domain's own mark with ASIDs exhausted and recycled, and that
//! CPUID and the speculation-control MSRs agree. The boot also prints the
//! speculative-execution measures as Xen does. On VT-x (Bochs) the same
//! guest runs in the shared guest-suite boot (`tests/domains.rs`).

use integration_tests::{Boot, End, Machine, Outcome};

/// The checks every domain of the isolation guest must pass.
pub fn check_isolation_guest(o: &Outcome, d: u32) {
    for what in ["debug registers", "PKRU", "TSC_AUX", "MSR_SPEC_CTRL", "mark page"] {
        o.expect(&format!("(d{d}) PASS own {what} after every switch"));
    }
    o.expect(&format!("(d{d}) PASS no #DB from another domain's breakpoints"))
        .expect(&format!("(d{d}) PASS SPEC_CTRL reads exactly when CPUID offers IBRSB"))
        .expect(&format!("(d{d}) PASS TSC_AUX writes exactly when RDTSCP or RDPID is offered"))
        .expect_verdict_pass(d);
}

/// Three domains of six vCPUs on two CPUs: 18 vCPUs, more than the 15
/// ASIDs QEMU's SVM has for guests, so each CPU runs out and starts new
/// generations while the vCPUs take turns. QEMU's model gets protection
/// keys and RDTSCP/RDPID (which TCG emulates), so TSC_AUX is exercised
/// and the hypervisor switches PKRU (which guests, not offered PKU, cannot
/// set: CR4.PKE is refused). Breakpoints stay disabled here (`breakpoints=0`; the
/// debug registers are still set and checked): QEMU 7.2's TCG crashes
/// (SIGSEGV) on data watchpoints inside an SVM guest, whatever the
/// hypervisor does. The VT-x run in Bochs enables them.
#[test]
fn per_vcpu_state_and_tlb_tags_stay_apart_with_asids_exhausted() {
    let mut b = Boot::new("isolation_state", Machine::QemuBios).cpus(2).qemu_cpu_flags("+pku,+rdtscp,+rdpid");
    for mark in 1..=3 {
        b = b.guest(
            "isolation",
            &format!("name=iso{mark} memory=8 vcpus=6 cmdline=\"mark={mark} rounds=40 yields=3 breakpoints=0\""),
        );
    }
    let o = b.run();
    o.expect_end(End::PoweredOff);
    o.expect("AMD-V: SVM revision 1, 16 ASIDs");
    // Xen's boot lines: QEMU's emulation has no speculation controls; the
    // RSB is overwritten after every exit regardless.
    o.expect("Speculative mitigation facilities:")
        .expect("  Hardware features: None")
        .expect("  Support for HVM VMs: RSB")
        .expect("HVM: per-vCPU state switched: debug registers (lazily, MOV DR intercepted), PKRU, TSC_AUX; guests offered RDTSCP");
    for d in 1..=3 {
        o.expect(&format!("(d{d}) isolation: mark {d}, 6 vCPUs"));
        // PKU is not offered (Xen offers it only with XSAVE), so CR4.PKE
        // gets #GP and a guest cannot change PKRU at all; the hypervisor
        // still switches PKRU per vCPU where the CPU has it.
        o.expect(&format!("(d{d}) CR4.PKE refused"));
        o.expect(&format!("(d{d}) PASS RDTSCP gives the vCPU's TSC_AUX"));
        check_isolation_guest(&o, d);
    }
}
