//! Domains: PVH guests built from boot modules, Xen's hypercalls, and
//! isolation of misbehaving guests, on both backends. Each guest's checks
//! are one function, run on AMD-V with nested paging (QEMU's SVM+NPT) one
//! boot per guest, and on Intel VT-x with EPT (Bochs) with the guests
//! sharing boots, as Bochs is about ten times slower. The configuration
//! checks that do not depend on the backend run on QEMU only.

use integration_tests::{Boot, DOM0_READY, End, HALTED, Machine, Outcome, images, scratch};
use std::path::PathBuf;

const HELLO_ARGS: &str = "memory=8 cmdline=\"console=hvc0 root=/dev/xvda\"";

fn hello_ramdisk(test: &str) -> PathBuf {
    scratch(test, "initrd", b"RAMDISK")
}

/// hello as domain `d`, named `name`, started with HELLO_ARGS and the
/// 7-byte ramdisk.
fn check_hello(o: &Outcome, d: u32, name: &str) {
    o.expect(&format!("domain {d} ({name}): 8 MiB, 1 vCPU, ramdisk 7 bytes"))
        .expect(&format!("(d{d}) hello from a PVH guest"))
        .expect("magic 0x336ec578 version 1 flags 0x0")
        .expect(&format!("(d{d}) cmdline: \"console=hvc0 root=/dev/xvda\""))
        .expect(&format!("(d{d}) memmap 0: 0x0 + 0x800000 type 1"))
        .expect(&format!("(d{d}) memmap 1: 0xfc000000 + 0x1000 type 3"))
        .expect(&format!("(d{d}) memmap 2: 0xfeff8000 + 0x8000 type 2"))
        .expect("+ 7 bytes, first byte 0x52")
        .expect(&format!("domain {d} ({name}) shut down: poweroff"))
        .expect(&format!("domain {d} ({name}) destroyed; 8 MiB returned"))
        .expect_order(&format!("(d{d}) goodbye"), "Powering off.");
}

fn check_probe(o: &Outcome, d: u32) {
    o.expect(&format!("(d{d}) my domain id is {d}")).expect_verdict_pass(d);
}

/// The probes guest's command line and checks: #GP for CPU state it
/// cannot have, Xen's MSRs, all ones from unbacked addresses and ports.
const PROBES_ARGS: &str = "memory=8 vcpus=2";

fn check_probes(o: &Outcome, d: u32) {
    o.expect(&format!("(d{d}) the domain survived its probes"))
        .expect(&format!("(d{d}) PASS CR4.VMXE (not offered) raises #GP"))
        .expect(&format!("(d{d}) PASS rdmsr DEBUGCTL (0x1d9)"))
        .expect(&format!("(d{d}) PASS HPET read (32-bit) is all ones"))
        .expect("guest-physical 0xfed00000")
        .expect_verdict_pass(d);
}

fn check_bad_hypercalls(o: &Outcome, d: u32) {
    o.expect(&format!("(d{d}) the hypervisor survived every bad hypercall")).expect_verdict_pass(d);
}

fn check_hypercall_page(o: &Outcome, d: u32) {
    o.expect(&format!("(d{d}) written through the hypercall page")).expect_verdict_pass(d);
}

/// hello converted to ELF32 (Xen accepts ELF32 PVH kernels as well).
fn hello_elf32(test: &str) -> PathBuf {
    let elf64 = images().guest("hello");
    let elf32 = integration_tests::out_dir().join("files").join(test).join("hello32.elf");
    std::fs::create_dir_all(elf32.parent().unwrap()).unwrap();
    let st = std::process::Command::new("objcopy").args(["-O", "elf32-i386"]).arg(&elf64).arg(&elf32).status();
    assert!(st.is_ok_and(|s| s.success()), "objcopy could not make an ELF32 copy");
    assert_eq!(std::fs::read(&elf32).unwrap()[4], 1, "the copy is ELF32");
    elf32
}

fn check_elf32(o: &Outcome, d: u32) {
    o.expect(&format!("(d{d}) hello from a PVH guest")).expect(&format!("(d{d}) goodbye"));
}

#[test]
fn a_pvh_guest_prints_through_console_io_and_shuts_down() {
    let o = Boot::new("hello_guest", Machine::QemuBios)
        .guest("hello", &format!("name=hello {HELLO_ARGS}"))
        .module(hello_ramdisk("hello_guest"), "ramdisk")
        .run();
    o.expect_end(End::PoweredOff);
    check_hello(&o, 1, "hello");
    o.expect("all domains have shut down");
}

#[test]
fn the_guest_sees_xens_cpuid_leaves_versions_and_params() {
    let o = Boot::new("probe", Machine::QemuBios).guest("probe", "name=probe memory=8").run();
    o.expect_end(End::PoweredOff);
    check_probe(&o, 1);
}

#[test]
fn probing_cpu_state_msrs_and_holes_gets_xens_answers() {
    let o = Boot::new("probes", Machine::QemuBios).guest("probes", &format!("name=probes {PROBES_ARGS}")).run();
    o.expect_end(End::PoweredOff);
    check_probes(&o, 1);
}

#[test]
fn bad_pointers_unknown_numbers_and_garbage_get_xens_errors() {
    let o = Boot::new("bad_hypercalls", Machine::QemuBios).guest("bad-hypercalls", "name=bad memory=8").run();
    o.expect_end(End::PoweredOff);
    check_bad_hypercalls(&o, 1);
}

#[test]
fn the_hypercall_page_works_like_xens() {
    let o = Boot::new("hypercall_page", Machine::QemuBios).guest("hcall-page", "name=page memory=4").run();
    o.expect_end(End::PoweredOff);
    check_hypercall_page(&o, 1);
}

#[test]
fn an_elf32_kernel_starts_too() {
    let o = Boot::new("elf32", Machine::QemuBios).module(hello_elf32("elf32"), "domu name=h32 memory=4").run();
    o.expect_end(End::PoweredOff);
    check_elf32(&o, 1);
}

/// The same guests and checks on VT-x, in one boot.
#[test]
fn vtx_runs_the_guest_suite() {
    let o = Boot::new("vtx_guests", Machine::Bochs)
        .guest("hello", &format!("name=hello {HELLO_ARGS}"))
        .module(hello_ramdisk("vtx_guests"), "ramdisk")
        .guest("probe", "name=probe memory=8")
        .guest("bad-hypercalls", "name=bad memory=8")
        .guest("hcall-page", "name=page memory=4")
        .module(hello_elf32("vtx_guests"), "domu name=h32 memory=4")
        .guest("probes", &format!("name=probes {PROBES_ARGS}"))
        // Two domains of two vCPUs taking turns on the one CPU: per-vCPU
        // state, breakpoints, VPIDs (tests/isolation.rs has the QEMU run).
        .guest("isolation", "name=iso1 memory=4 vcpus=2 cmdline=\"mark=1 rounds=12 yields=2\"")
        .guest("isolation", "name=iso2 memory=4 vcpus=2 cmdline=\"mark=2 rounds=12 yields=2\"")
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("VT-x: VMCS revision");
    check_hello(&o, 1, "hello");
    check_probe(&o, 2);
    check_bad_hypercalls(&o, 3);
    check_hypercall_page(&o, 4);
    check_elf32(&o, 5);
    check_probes(&o, 6);
    for d in [7, 8] {
        for what in ["debug registers", "PKRU", "TSC_AUX", "MSR_SPEC_CTRL", "mark page"] {
            o.expect(&format!("(d{d}) PASS own {what} after every switch"));
        }
        o.expect(&format!("(d{d}) PASS no #DB from another domain's breakpoints")).expect_verdict_pass(d);
    }
    o.expect("Support for HVM VMs:");
    o.expect("all domains have shut down");
}

/// A guest that triple-faults, one that executes ud2 with no IDT, one that
/// runs code outside its memory (its write there is dropped) and two that never yield run beside five
/// well-behaved guests on one CPU: each bad one is destroyed with one line
/// naming what it did, everyone else finishes, and both spinners make
/// progress. Whatever order the scheduler starts them in, that takes
/// preemption: a spinner that got the CPU before the others ended had to
/// lose it, and if both came last, they had to take turns.
#[test]
fn misbehaving_guests_are_contained_and_the_rest_run_on() {
    isolation("isolation", Machine::QemuBios);
}

#[test]
fn vtx_contains_misbehaving_guests_too() {
    isolation("vtx_isolation", Machine::Bochs);
}

fn isolation(name: &str, machine: Machine) {
    // One CPU: with a second one the others could all run beside a
    // spinner, and nothing would show that it was ever preempted.
    let o = Boot::new(name, machine)
        .cpus(1)
        .guest("spin", "name=spinner memory=4")
        .guest("triple-fault", "name=tf memory=4")
        .guest("ud-no-idt", "name=ud memory=4")
        .guest("wild-write", "name=wild memory=4")
        .guest("hello", "name=h1 memory=4")
        .guest("probe", "name=probe memory=4")
        .guest("bad-hypercalls", "name=bad memory=4")
        .guest("hello", "name=h2 memory=4")
        .guest("hello", "name=h3 memory=4")
        .guest("spin", "name=spinner2 memory=4")
        // Everyone but the spinners ends, and both spin; then the machine
        // is stopped.
        .stop_when_all(&[(") destroyed;", 8), ("(d1) spin 3", 1), ("(d10) spin 3", 1)])
        .expect_error("domain 2 (tf) crashed: triple fault at rip")
        .expect_error("domain 3 (ud) crashed: triple fault at rip")
        .expect_error("domain 4 (wild) crashed: instruction fetch of guest-physical 0xc0000000 at rip")
        .run();
    o.expect_end(End::Saw(") destroyed;".into()));
    o.expect("domain 2 (tf) crashed: triple fault at rip")
        .expect("domain 3 (ud) crashed: triple fault at rip")
        .expect("(d4) the wild write was dropped: it reads back 0xffffffffffffffff")
        .expect("domain 4 (wild) crashed: instruction fetch of guest-physical 0xc0000000 at rip")
        .expect("not the domain's memory")
        .expect_verdict_pass(6)
        .expect_verdict_pass(7)
        .expect("(d5) goodbye")
        .expect("(d8) goodbye")
        .expect("(d9) goodbye")
        .expect_absent("domain 1 (spinner) shut down")
        .expect_absent("domain 10 (spinner2) shut down");
    assert_eq!(o.lines_containing("crashed:").len(), 3);
}

/// Two guests that never yield (interrupts off), both pinned to CPU 0, share
/// it: the timer takes it from each in turn, so both keep making progress.
/// (Unpinned, each would get a CPU of its own.)
#[test]
fn a_guest_that_never_yields_cannot_keep_the_cpu() {
    preemption("preemption", Machine::QemuBios);
}

#[test]
fn vtx_preempts_a_guest_that_never_yields() {
    preemption("vtx_preemption", Machine::Bochs);
}

fn preemption(name: &str, machine: Machine) {
    let o = Boot::new(name, machine)
        .guest("spin", "name=spin1 memory=4 cpus=0")
        .guest("spin", "name=spin2 memory=4 cpus=0")
        .stop_on_count("(d2) spin ", 6)
        .run();
    o.expect_end(End::Saw("(d2) spin ".into()));
    let first = o.lines_containing("(d1) spin ").len();
    assert!(first >= 3, "spin1 reported progress {first} times while spin2 reported 6");
    // Both ran on CPU 0 only (a guest's console line comes from its CPU).
    let spins = o.lines_containing(") spin ");
    if let Some(l) = spins.iter().find(|l| !l.contains("CPU0 ")) {
        o.fail(&format!("a pinned spinner ran elsewhere: {l:?}"));
    }
    // They alternate: spin2's third report comes after one of spin1's.
    o.expect_order("(d1) spin 1", "(d2) spin 3");
}

#[test]
fn eight_domains_run_side_by_side_then_the_machine_powers_off() {
    let mut b = Boot::new("eight_domains", Machine::QemuBios);
    for n in 1..=8 {
        b = b.guest("hello", &format!("name=guest{n} memory=4 cmdline=\"I am guest {n}\""));
    }
    let o = b.run();
    o.expect_end(End::PoweredOff);
    for n in 1..=8 {
        o.expect(&format!("(d{n}) cmdline: \"I am guest {n}\""))
            .expect(&format!("domain {n} (guest{n}) shut down: poweroff"));
    }
    o.expect_order("domain 8 (guest8) destroyed", "all domains have shut down");
}

/// The machine halts because its last domain shut down: the halt is the
/// very next line (a panic's report ends in "System halted" too, and the
/// harness fails a run with a crash report).
#[test]
fn on_last_exit_halt_keeps_the_machine_up() {
    let o = Boot::new("last_exit_halt", Machine::QemuBios)
        .cmdline("on_last_exit=halt")
        .guest("hello", "name=h memory=4")
        .run();
    o.expect_end(End::Saw(HALTED.into()));
    o.expect("(d1) goodbye")
        .expect_next_line("all domains have shut down", "memory: every domain's memory is free again")
        .expect_next_line("memory: every domain's memory is free again", "INFO  System halted.");
}

/// Bad domain configurations and kernels are refused one by one, each with
/// a line naming it; the good domain beside them runs.
#[test]
fn bad_domain_configurations_are_refused_and_the_rest_starts() {
    let i = images();
    let o = Boot::new("bad_domains", Machine::QemuBios)
        .guest("hello", "name=a memory=lots")
        .guest("hello", "name=b vcpus=0")
        .guest("hello", "name=c memory=4 colour=blue")
        .guest("hello", "name=c memory=4")
        .guest("hello", "name=d memory=900000")
        // A valid ELF that is not a PVH kernel.
        .module(&i.hypervisor, "domu name=e")
        .expect_error("domain refused: memory=\"lots\" is not valid")
        .expect_error("domain refused: vcpus=\"0\" is not valid")
        .expect_error("domain name 'c' is already used; refused")
        .expect_error("not created: not enough free memory: the domain needs")
        .expect_error("no XEN_ELFNOTE_PHYS32_ENTRY note")
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("domain refused: memory=\"lots\" is not valid")
        .expect("domain refused: vcpus=\"0\" is not valid")
        .expect("unknown domain option 'colour=blue' ignored")
        .expect("domain name 'c' is already used; refused")
        .expect("not created: not enough free memory: the domain needs")
        .expect("no XEN_ELFNOTE_PHYS32_ENTRY note")
        .expect("(d1) goodbye");
    assert_eq!(o.lines_containing("(d1) hello from a PVH guest").len(), 1);
}

#[test]
fn dom0_starts_as_the_privileged_initial_domain() {
    let i = images();
    let o = Boot::new("dom0", Machine::QemuBios)
        .cmdline("dom0_mem=32M")
        .module(&i.dom0, "dom0 loglevel=7")
        .stop_on(DOM0_READY)
        .run();
    o.expect_end(End::Saw(DOM0_READY.into()));
    o.expect("domain 0 (Domain-0): 32 MiB, 1 vCPU, privileged")
        .expect("(d0) dom0-kernel-shim: up on Xen ABI 4.17, privileged initial domain, command line \"loglevel=7\"");
}
