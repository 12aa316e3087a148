//! Every CPU and the credit scheduler: multi-vCPU guests, guest time and
//! timers, and CPU shares by weight, cap and pinning, on QEMU (-smp 2,
//! SVM+NPT) and on Bochs with two CPUs (VT-x+EPT).
//!
//! Shares are measured from the hypervisor's own accounting: with
//! `sched_report=MS` it prints the CPU time charged to each domain every
//! MS milliseconds, and the tests compare the deltas between two reports,
//! so what they assert is a proportion, never a wall-clock time.

use integration_tests::{Boot, End, Machine, Outcome};
use xtask::sched_report::{self, Report};

const REPORT: &str = "sched: report at";

/// The smp guest: three vCPUs brought up with VCPUOP_initialise/up and by
/// INIT/SIPI through the emulated local APIC; both CPUs busy at once; IPIs;
/// pvclock monotonic across vCPUs.
fn check_smp(o: &Outcome, d: u32) {
    o.expect(&format!("domain {d} (smp): 8 MiB, 3 vCPUs"))
        .expect(&format!("(d{d}) PASS vCPU 0 and vCPU 1 run at the same time"))
        .expect(&format!("(d{d}) PASS pvclock never goes backwards across vCPUs"))
        .expect(&format!("(d{d}) PASS vCPU 2 ran real-mode code at the STARTUP vector"))
        .expect_verdict_pass(d);
}

/// The timers guest: pvclock and wall clock, singleshot, set_timer_op,
/// periodic and poll timeouts, runstate, the local APIC timer.
fn check_timers(o: &Outcome, d: u32) {
    o.expect(&format!("(d{d}) PASS it did not wake before its deadline"))
        .expect(&format!("(d{d}) PASS it woke within the bound"))
        .expect(&format!("(d{d}) PASS periodic timer: not too early"))
        .expect(&format!("(d{d}) PASS the APIC timer interrupt arrived"))
        .expect_verdict_pass(d);
}

#[test]
fn a_three_vcpu_guest_runs_on_both_cpus_at_once() {
    let o = Boot::new("smp_guest", Machine::QemuBios).cpus(2).guest("smp", "name=smp memory=8 vcpus=3").run();
    o.expect_end(End::PoweredOff);
    o.expect("SMP: 2 CPUs online");
    check_smp(&o, 1);
}

#[test]
fn guest_time_and_timers_follow_xens_rules() {
    let o = Boot::new("timers_guest", Machine::QemuBios).cpus(2).guest("timers", "name=timers memory=8").run();
    o.expect_end(End::PoweredOff);
    check_timers(&o, 1);
}

#[test]
fn vtx_runs_smp_and_timer_guests_on_two_cpus() {
    let o = Boot::new("vtx_smp", Machine::Bochs)
        .cpus(2)
        .guest("smp", "name=smp memory=8 vcpus=3")
        .guest("timers", "name=timers memory=8")
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("VT-x: VMCS revision").expect("SMP: 2 CPUs online");
    check_smp(&o, 1);
    check_timers(&o, 2);
}

/// Boots spin guests (CPU-bound, never yielding) on two CPUs with a
/// scheduler report every few hundred milliseconds, and returns the log
/// and the window to measure: from the third report (every domain is
/// running by then) to the last complete one. Bochs, ten times slower,
/// measures over a shorter window.
fn spinners(name: &str, machine: Machine, doms: &[(&str, &str)]) -> (Outcome, Report, Report) {
    let (every_ms, reports) = if machine == Machine::Bochs { (300, 12) } else { (500, 11) };
    let mut b = Boot::new(name, machine).cpus(2).cmdline(&format!("sched_report={every_ms}"));
    for (dom, opts) in doms {
        b = b.guest("spin", &format!("name={dom} memory=4 {opts}"));
    }
    let o = b.stop_on_count(REPORT, reports).run();
    o.expect_end(End::Saw(REPORT.into()));
    let names: Vec<&str> = doms.iter().map(|d| d.0).collect();
    let r = sched_report::parse(&o.log);
    let Some((from, to)) = sched_report::window(&r, 2, &names) else {
        o.fail(&format!("{} scheduler reports, too few complete ones to measure between", r.len()))
    };
    let (from, to) = (from.clone(), to.clone());
    (o, from, to)
}

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= want * tolerance
}

/// Four CPU-bound single-vCPU domains with weights 1:1:2:4 on two CPUs:
/// the weight-4 domain can use at most one CPU, which is exactly its
/// half, so all four get CPU time in proportion 1:1:2:4.
fn weights(name: &str, machine: Machine) {
    let names = ["w1a", "w1b", "w2", "w4"];
    let doms = [(names[0], "weight=64"), (names[1], "weight=64"), (names[2], "weight=128"), (names[3], "weight=256")];
    let (o, from, to) = spinners(name, machine, &doms);
    let shares = sched_report::shares(&from, &to, &names).unwrap_or_else(|e| o.fail(&e));
    let want = [0.125, 0.125, 0.25, 0.5];
    for ((n, got), want) in names.iter().zip(&shares).zip(want) {
        if !within(*got, want, 0.10) {
            o.fail(&format!("{n} got {got:.3} of the CPU time, wanted {want} +-10% (all: {shares:.3?})"));
        }
    }
    // Both CPUs were kept busy the whole time.
    let busy: f64 = sched_report::cpu_fractions(&from, &to, &names).unwrap_or_else(|e| o.fail(&e)).iter().sum();
    if !within(busy, 2.0, 0.05) {
        o.fail(&format!("the domains used {busy:.2} CPUs of 2"));
    }
}

#[test]
fn weights_1_1_2_4_share_two_cpus_in_those_proportions() {
    weights("weights", Machine::QemuBios);
}

#[test]
fn vtx_weights_1_1_2_4_share_two_cpus_in_those_proportions() {
    weights("vtx_weights", Machine::Bochs);
}

/// A domain capped at 25% gets a quarter of a CPU although a CPU is free
/// for it, and a vCPU pinned to CPU 1 runs there and nowhere else, while
/// an unpinned one moves between CPUs.
fn cap_and_pin(name: &str, machine: Machine) {
    let names = ["capped", "pinned", "free"];
    let doms = [(names[0], "cap=25"), (names[1], "cpus=1"), (names[2], "")];
    let (o, from, to) = spinners(name, machine, &doms);
    let f = sched_report::cpu_fractions(&from, &to, &names).unwrap_or_else(|e| o.fail(&e));
    if !within(f[0], 0.25, 0.10) {
        o.fail(&format!("the domain capped at 25% got {:.3} of a CPU", f[0]));
    }
    // The other two share the remaining 1.75 CPUs.
    if !within(f[1] + f[2], 1.75, 0.05) {
        o.fail(&format!("the uncapped domains got {:.3} CPUs together, wanted 1.75", f[1] + f[2]));
    }
    let pinned = to.domain("pinned").map(|d| d.cpus.clone());
    if pinned.as_deref() != Some("1") {
        o.fail(&format!("the vCPU pinned to CPU 1 ran on cpus {pinned:?}"));
    }
    // Its console lines come from CPU 1 as well.
    let spins = o.lines_containing("(d2) spin ");
    if spins.is_empty() || spins.iter().any(|l| !l.contains("CPU1 ")) {
        o.fail(&format!("the pinned domain printed {} lines, not all from CPU1", spins.len()));
    }
}

#[test]
fn a_cap_holds_a_domain_to_its_share_and_a_pinned_vcpu_stays_put() {
    cap_and_pin("cap_pin", Machine::QemuBios);
}

#[test]
fn vtx_a_cap_holds_a_domain_to_its_share_and_a_pinned_vcpu_stays_put() {
    cap_and_pin("vtx_cap_pin", Machine::Bochs);
}
