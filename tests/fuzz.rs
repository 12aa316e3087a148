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
/// every sub-operation of the ABI called.
pub fn check_fuzzer(o: &Outcome, d: u32, calls: u64) {
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
    if called < total {
        let never: Vec<&str> =
            o.lines_containing(&format!("(d{d}) fuzz:   ")).into_iter().filter(|l| l.contains(": 0 calls")).collect();
        o.fail(&format!("domain {d} called {called} of {total} sub-operations; never:\n{}", never.join("\n")));
    }
    o.expect(&format!("(d{d}) VERDICT: PASS"))
        .expect_absent(&format!("(d{d}) FAIL "))
        .expect_absent(&format!("(d{d}) fuzz: FUZZER BUG"))
        .expect_absent(&format!("(d{d}) guest exception"));
}

/// Two fuzzer domains that are each other's peer (`cargo xtask fuzz`'s
/// default) on `boot`, `calls` each from seeds `seed` and `seed + 1`:
/// fuzz-a ends as `end_a` says (`crash` or `poweroff`, which is also its
/// shutdown reason), fuzz-b by taking its vCPUs down. Checks both summaries and that every frame came
/// back.
fn peer_pair(boot: Boot, calls: u64, seed: u64, end_a: &str) {
    let o = boot
        .guest(
            "fuzz",
            &format!(
                "name=fuzz-a memory=8 vcpus=3 evtchn=10:fuzz-b:10 \
                 cmdline=\"seed={seed:#x} calls={calls} peer=2 port=10 end={end_a}\""
            ),
        )
        .guest(
            "fuzz",
            &format!(
                "name=fuzz-b memory=8 vcpus=3 cmdline=\"seed={:#x} calls={calls} peer=1 port=10 end=down\"",
                seed + 1
            ),
        )
        .run();
    o.expect_end(End::PoweredOff);
    check_fuzzer(&o, 1, calls);
    check_fuzzer(&o, 2, calls);
    o.expect(&format!("domain 1 (fuzz-a) shut down: {end_a}"))
        .expect("domain 2 (fuzz-b) shut down: poweroff")
        .expect("memory: every domain's memory is free again");
}

/// Grants and channels between domains are raced too, with every
/// sub-operation of the ABI in the mix: vCPUs taken down and up by each
/// other, blocking and polling with deadlines a few microseconds ahead,
/// NMIs between vCPUs.
#[test]
fn fuzzer_bounded_run_with_a_peer() {
    // Some 6 s of QEMU time on an idle machine (about 16,000 calls/s each).
    peer_pair(Boot::new("fuzz", Machine::QemuBios), 100_000, 0x5eed1, "crash");
}

/// The same on Intel VT-x with EPT (Bochs, two CPUs), a few thousand
/// calls each, as Bochs is about ten times slower.
#[test]
fn vtx_fuzzer_bounded_run_with_a_peer() {
    peer_pair(Boot::new("vtx_fuzz", Machine::Bochs).cpus(2), 10_000, 0x5eed3, "poweroff");
}
