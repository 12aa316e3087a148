//! Debian's unmodified cloud kernel as a PVH domU, with the busybox
//! initramfs `cargo xtask guests` builds: its `/init` reads `hvtest=` from
//! the kernel command line and reports what the guest sees in lines that
//! start with "hvtest: " (xtask/src/linux/init.sh). Every test is named
//! `linux_…`: `cargo xtask test` skips them, saying why, when the kernel
//! cannot be fetched.
//!
//! They run on QEMU (AMD-V with nested paging); Bochs (Intel VT-x with
//! EPT), about ten times slower, boots it once.

use integration_tests::{Boot, DOM0_READY, End, Machine, Outcome, images};
use std::time::Duration;

/// A Linux domain's module options: `name`, `memory` MiB, `vcpus`, and
/// what its /init does.
fn linux_domain(name: &str, memory: u32, vcpus: u32, hvtest: &str) -> String {
    format!("name={name} memory={memory} vcpus={vcpus} cmdline=\"console=hvc0 hvtest={hvtest}\"")
}

/// A typed command whose answer cannot be the terminal's echo of it.
const COMMAND: &[u8] = b"echo hv$((6*7)) $(cat /proc/sys/kernel/ostype)\r";
const ANSWER: &str = "hv42 Linux";

/// How a domain's console lines appear in the log: prefixed with `(dN) `
/// (the hypervisor line-buffers them), or as written, from the start of a
/// line, while the domain holds the serial line (Xen prints the
/// console-input domain's output as it comes).
#[derive(Clone, Copy)]
enum Shown {
    Prefixed(u32),
    AsWritten,
}

impl Shown {
    fn expect(self, o: &Outcome, text: &str) {
        match self {
            Shown::Prefixed(d) => {
                o.expect(&format!("(d{d}) {text}"));
            }
            Shown::AsWritten => {
                // Its output goes out as it comes, so a hypervisor line
                // can land in the middle of one of its lines.
                o.expect_raw_line_start(text);
            }
        }
    }

    fn text(self, text: &str) -> String {
        match self {
            Shown::Prefixed(d) => format!("(d{d}) {text}"),
            Shown::AsWritten => text.to_string(),
        }
    }
}

/// What every Linux boot reports, with `vcpus`.
fn check_linux_is_up(o: &Outcome, s: Shown, vcpus: u32) {
    let online = if vcpus == 1 { "0".to_string() } else { format!("0-{}", vcpus - 1) };
    for text in [
        "[    0.000000] Linux version 6.1",
        "[    0.000000] Command line: console=hvc0 hvtest=",
        "hvtest: init reached",
        &format!("hvtest: cpus {vcpus}, online {online}"),
        "hvtest: clocksource xen",
        // Xen 4.17 offers the FIFO ABI, and Linux takes it.
        "hvtest: event channels FIFO",
        "hvtest: grant tables v1",
    ] {
        s.expect(o, text);
    }
    // No unhandled MSR (Xen reads MSR_K8_INT_PENDING_MSG as zero).
    o.expect_absent("unchecked MSR access");
}

/// No kernel warning or backtrace anywhere.
fn check_no_kernel_complaint(o: &Outcome) {
    o.expect_absent("Call Trace:").expect_absent("] WARNING:").expect_absent("BUG:");
}

/// Domain `d` powered off on its own and was destroyed.
fn check_powered_off(o: &Outcome, d: u32, name: &str, s: Shown) {
    s.expect(o, "hvtest: powering off");
    o.expect_order(&s.text("hvtest: powering off"), &format!("domain {d} ({name}) shut down: poweroff"))
        .expect(&format!("domain {d} ({name}) destroyed;"));
}

/// One Linux domain on one vCPU reports what it sees and powers off, its
/// memory returned: the same checks on either backend.
fn boot_one_linux_to_power_off(name: &str, machine: Machine) -> Outcome {
    let o = Boot::new(name, machine).linux(&linux_domain("linux", 128, 1, "info")).run();
    o.expect_end(End::PoweredOff);
    check_linux_is_up(&o, Shown::Prefixed(1), 1);
    check_no_kernel_complaint(&o);
    check_powered_off(&o, 1, "linux", Shown::Prefixed(1));
    o.expect("memory: every domain's memory is free again");
    o
}

#[test]
fn linux_boots_on_one_vcpu_and_powers_off() {
    let o = boot_one_linux_to_power_off("linux_1vcpu", Machine::QemuBios);
    o.expect("(d1) hvtest: memory ");
}

#[test]
fn linux_balloons_down_and_back_on_two_vcpus() {
    let o = Boot::new("linux_balloon", Machine::QemuBios).linux(&linux_domain("linux", 128, 2, "balloon")).run();
    o.expect_end(End::PoweredOff);
    check_linux_is_up(&o, Shown::Prefixed(1), 2);
    check_no_kernel_complaint(&o);
    let at = o.line("(d1) hvtest: balloon at ");
    let kb = |line: &str, after: &str| -> u64 {
        let rest = line.split(after).nth(1).unwrap_or("");
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| o.fail(&format!("no size in {line:?}")))
    };
    let start = kb(at, "balloon at ");
    // 128 MiB less the legacy hole below 1 MiB.
    assert!(start > 120 * 1024 && start <= 128 * 1024, "the guest starts with {start} kB");
    let down = kb(o.line("(d1) hvtest: balloon down to "), "balloon down to ");
    let back = kb(o.line("(d1) hvtest: balloon back to "), "balloon back to ");
    assert_eq!(down, start - 32768, "the balloon gave 32 MiB back (decrease_reservation)");
    assert_eq!(back, start, "the balloon took it again (populate_physmap)");
    check_powered_off(&o, 1, "linux", Shown::Prefixed(1));
    o.expect("memory: every domain's memory is free again");
}

/// dom0 and one Linux vCPU; `serial_input=1` gives Linux the serial line
/// once the boot is done, so its output comes as written and its shell
/// answers a typed command.
#[test]
fn linux_beside_dom0_takes_serial_input_at_boot() {
    let o = Boot::new("linux_dom0_1vcpu", Machine::QemuBios)
        .cmdline("serial_input=1")
        .module(images().dom0, "dom0")
        .linux(&linux_domain("linux", 128, 1, "shell"))
        .type_after("hvtest: shell on the console", COMMAND)
        .type_after(ANSWER, b"exit\r")
        .stop_on("domain 1 (linux) destroyed")
        .run();
    o.expect_end(End::Saw("domain 1 (linux) destroyed".into()));
    o.expect(DOM0_READY).expect("serial input to domain 1 (serial_input=1");
    check_linux_is_up(&o, Shown::AsWritten, 1);
    check_no_kernel_complaint(&o);
    o.expect_absent("(d1) ").expect_line_start(ANSWER);
    check_powered_off(&o, 1, "linux", Shown::AsWritten);
}

/// dom0 and two Linux vCPUs; serial input reaches the Linux shell after
/// switching past dom0 with Ctrl-A three times, twice; from then on the
/// shell's output comes as written.
#[test]
fn linux_beside_dom0_reads_a_line_typed_after_the_console_switch() {
    let o = Boot::new("linux_dom0_2vcpus", Machine::QemuBios)
        .module(images().dom0, "dom0")
        .linux(&linux_domain("linux", 128, 2, "shell"))
        .type_after("(d1) hvtest: shell on the console", b"\x01\x01\x01\x01\x01\x01")
        .type_after("serial input to domain 1", COMMAND)
        .type_after(ANSWER, b"exit\r")
        .stop_on("domain 1 (linux) destroyed")
        .run();
    o.expect_end(End::Saw("domain 1 (linux) destroyed".into()));
    o.expect(DOM0_READY).expect_order("serial input to domain 0", "serial input to domain 1");
    check_linux_is_up(&o, Shown::Prefixed(1), 2);
    check_no_kernel_complaint(&o);
    o.expect_order("serial input to domain 1", ANSWER);
    check_powered_off(&o, 1, "linux", Shown::AsWritten);
}

/// Two Linux domains boot at once beside a guest that never yields.
#[test]
fn linux_two_domains_boot_beside_a_cpu_bound_guest() {
    let o = Boot::new("linux_two", Machine::QemuBios)
        .linux(&linux_domain("one", 128, 1, "info"))
        .linux(&linux_domain("two", 128, 2, "info"))
        .guest("spin", "name=spin memory=8")
        .stop_when_all(&[("domain 1 (one) destroyed", 1), ("domain 2 (two) destroyed", 1)])
        .timeout(Duration::from_secs(150))
        .run();
    o.expect_end(End::Saw("domain 1 (one) destroyed".into()));
    check_linux_is_up(&o, Shown::Prefixed(1), 1);
    check_linux_is_up(&o, Shown::Prefixed(2), 2);
    check_no_kernel_complaint(&o);
    check_powered_off(&o, 1, "one", Shown::Prefixed(1));
    check_powered_off(&o, 2, "two", Shown::Prefixed(2));
    // The spinning guest kept getting the CPU while both booted.
    let spins = o
        .log
        .lines()
        .skip_while(|l| !l.contains("(d1) hvtest: init reached"))
        .filter(|l| l.contains("(d3) spin "))
        .count();
    assert!(spins > 0, "the CPU-bound guest ran while the Linux domains were up");
}

/// A kernel crash ends that domain with reason crash; the other Linux,
/// which holds the serial line (`serial_input=2`), runs on and its shell
/// answers a command typed after the crash.
#[test]
fn linux_crash_ends_only_that_domain() {
    let o = Boot::new("linux_crash", Machine::QemuBios)
        .cmdline("serial_input=2")
        .linux(&linux_domain("crasher", 128, 1, "crash"))
        .linux(&linux_domain("survivor", 128, 1, "shell"))
        .type_after_all(&["domain 1 (crasher) shut down: crash", "hvtest: shell on the console"], COMMAND)
        .type_after(ANSWER, b"exit\r")
        .timeout(Duration::from_secs(150))
        .run();
    o.expect_end(End::PoweredOff);
    check_linux_is_up(&o, Shown::Prefixed(1), 1);
    check_linux_is_up(&o, Shown::AsWritten, 1);
    o.expect("(d1) [").expect("Kernel panic - not syncing: sysrq triggered crash");
    o.expect_order("(d1) hvtest: crashing", "domain 1 (crasher) shut down: crash");
    o.expect_order("domain 1 (crasher) shut down: crash", ANSWER);
    o.expect("domain 1 (crasher) destroyed;");
    check_powered_off(&o, 2, "survivor", Shown::AsWritten);
    o.expect("memory: every domain's memory is free again");
}

/// Bochs (Intel VT-x with EPT) boots the same kernel to /init: Linux
/// reads IA32_TSC_ADJUST there (the CPU model has it), which Xen emulates.
#[test]
fn linux_boots_on_intel_vtx() {
    boot_one_linux_to_power_off("linux_bochs", Machine::Bochs);
}
