//! The hypercall fuzzer (`tests/guests/src/bin/fuzz`): a fuzzer domain
//! makes a bounded, seeded stream of hypercalls on two vCPUs, races them
//! on shared grants, frames and ports, then races its own destruction.
//! The hypervisor must survive without a panic or an ERROR line (the
//! harness fails on both), the machine must power off normally, and every
//! frame the domain held must be free again (the hypervisor's end-of-run
//! memory check). `cargo xtask fuzz` runs the same guest for as long as
//! asked, two domains by default.

use integration_tests::{Boot, End, Machine, Outcome};

/// The fuzzer's summary line of domain `d`, checked: every call made, and
/// every sub-operation of the ABI called but the `skipped` ones.
pub fn check_fuzzer(o: &Outcome, d: u32, calls: u64, skipped: u64) {
    let summary = o.line(&format!("(d{d}) fuzz: summary: "));
    println!("{summary}");
    // "seed 0x...: N calls on V vCPUs in T ms: R calls/s; coverage: ..."
    let made: u64 = summary
        .split(" calls on ")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| o.fail(&format!("no call count in {summary:?}")));
    if made < calls {
        o.fail(&format!("domain {d} made {made} calls, not {calls}"));
    }
    // "coverage: A of T sub-operations answered (not -ENOSYS), C called"
    let of = |key: &str| -> u64 {
        let at = summary.find(key).unwrap_or_else(|| o.fail(&format!("no {key:?} in {summary:?}")));
        summary[..at].rsplit(' ').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let total: u64 = summary
        .split(" of ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| o.fail(&format!("no total in {summary:?}")));
    let called = of("called,");
    if called + skipped < total {
        let never: Vec<&str> =
            o.lines_containing(&format!("(d{d}) fuzz:   ")).into_iter().filter(|l| l.contains(": 0 calls")).collect();
        o.fail(&format!("domain {d} called {called} of {total} sub-operations; never:\n{}", never.join("\n")));
    }
    o.expect(&format!("(d{d}) VERDICT: PASS"))
        .expect_absent(&format!("(d{d}) FAIL "))
        .expect_absent(&format!("(d{d}) fuzz: FUZZER BUG"))
        .expect_absent(&format!("(d{d}) guest exception"));
}

/// What the bounded run leaves out, until the hypervisor is fixed: a vCPU
/// that stops and runs again at once — taken down by another vCPU and
/// brought up (`vcpu_op.down`), the spare halted and brought up
/// (`vcpu_op.up`), blocked or polling with a deadline a few microseconds
/// ahead (`sched_op.block`, `sched_op.poll`) — sometimes resumes with the
/// hypervisor's own RIP (svm_vmrun) and CR3 in its VMCB (`cargo xtask
/// fuzz --only vcpu_op.down,vcpu_op.up --seed 2`: about half of the runs;
/// `--only sched_op.poll` or `sched_op.block`: about a third), and with
/// NMIs sent between vCPUs (`vcpu_op.send_nmi`) a vCPU now and then
/// triple-faults right after its VMMCALL (about one in 10^6 calls).
const SKIP: &str = "vcpu_op.down,vcpu_op.up,sched_op.block,sched_op.poll,vcpu_op.send_nmi";

/// One fuzzer domain: two fuzzing vCPUs and a spare. Two domains that are
/// each other's peer (`cargo xtask fuzz`'s default) also reach grants and
/// channels between domains, but with four fuzzing vCPUs preempting each
/// other on two CPUs the vCPU-state corruption above comes in about a
/// third of the runs even with SKIP, so the suite boots one.
#[test]
fn fuzzer_bounded_run_on_two_vcpus() {
    // About 4 s of QEMU time on an idle machine (some 25,000 calls/s).
    const CALLS: u64 = 100_000;
    let o = Boot::new("fuzz", Machine::QemuBios)
        .guest(
            "fuzz",
            &format!("name=fuzz memory=8 vcpus=3 cmdline=\"seed=0x5eed1 calls={CALLS} end=crash skip={SKIP}\""),
        )
        .run();
    o.expect_end(End::PoweredOff);
    check_fuzzer(&o, 1, CALLS, SKIP.split(',').count() as u64);
    o.expect("domain 1 (fuzz) shut down: crash").expect("memory: every domain's memory is free again");
}

/// The same on Intel VT-x with EPT (Bochs, two CPUs): two fuzzer domains
/// that are each other's peer, a few thousand calls each, as Bochs is
/// about ten times slower. VT-x shows the vCPU-state corruption too, less
/// often (`cargo xtask fuzz --bochs --cpus 2 --domains 1 --calls 1000000
/// --seed 0x16`, nothing skipped: after about 200,000 calls both vCPUs
/// at once wrote guest-physical 0 and 1 from the same guest instruction,
/// as if their stack pointers were gone), so SKIP holds here as well.
#[test]
fn vtx_fuzzer_bounded_run_with_a_peer() {
    const CALLS: u64 = 10_000;
    let o = Boot::new("vtx_fuzz", Machine::Bochs)
        .cpus(2)
        .guest(
            "fuzz",
            &format!(
                "name=fuzz-a memory=8 vcpus=3 evtchn=10:fuzz-b:10 \
                 cmdline=\"seed=0x5eed3 calls={CALLS} peer=2 port=10 end=poweroff skip={SKIP}\""
            ),
        )
        .guest(
            "fuzz",
            &format!("name=fuzz-b memory=8 vcpus=3 cmdline=\"seed=0x5eed4 calls={CALLS} peer=1 port=10 end=down skip={SKIP}\""),
        )
        .run();
    o.expect_end(End::PoweredOff);
    let skipped = SKIP.split(',').count() as u64;
    check_fuzzer(&o, 1, CALLS, skipped);
    check_fuzzer(&o, 2, CALLS, skipped);
    o.expect("domain 1 (fuzz-a) shut down: poweroff")
        .expect("domain 2 (fuzz-b) shut down: poweroff")
        .expect("memory: every domain's memory is free again");
}
