//! The foundation: booting through GRUB under BIOS and UEFI (QEMU) and on a
//! VT-x machine (Bochs), the exception report, and bad input answered by
//! one clear line instead of a hang or a triple fault.

use hypervisor::BANNER;
use integration_tests::{Boot, DOM0_READY, End, HALTED, Machine, images, scratch};

/// The memory map, the module list and the CPU count show up for what the
/// machine really has (3 CPUs, so a hard-coded 1 or 2 would fail).
#[test]
fn boots_under_bios_grub() {
    let i = images();
    let ramdisk = scratch("bios", "initrd.img", &[0x5a; 3000]);
    let o = Boot::new("boots_under_bios_grub", Machine::QemuBios)
        .cpus(3)
        .module(&i.dom0, "dom0")
        .module(&ramdisk, "ramdisk")
        .stop_on(DOM0_READY)
        .run();
    o.expect_end(End::Saw(DOM0_READY.into()));
    o.expect(BANNER)
        .expect("via BIOS")
        .expect("memory map (")
        .expect("RAM       type 1")
        .expect("ACPI: 3 CPUs in the MADT (3 enabled)")
        .expect("  CPU: APIC id 2 ACPI uid 2")
        .expect("IOAPIC: id")
        .expect("modules: 2")
        .expect("(3000 bytes) \"ramdisk\": ramdisk")
        .expect("\"dom0\": dom0")
        .expect("boot complete")
        .expect("domain 0 (Domain-0): 128 MiB, 1 vCPU, privileged, ramdisk 3000 bytes")
        .expect_order("module 0:", "module 1:")
        .expect_order(BANNER, DOM0_READY);
    // The usable total reflects -m 512 (about 500 MiB), not a constant.
    let mem = o.line("memory: ");
    let usable: u64 =
        mem.split(", ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!((480..=512).contains(&usable), "usable memory {usable} MiB from {mem:?}");
}

#[test]
fn boots_under_uefi_grub() {
    let i = images();
    let o =
        Boot::new("boots_under_uefi_grub", Machine::QemuUefi).cpus(2).module(&i.dom0, "dom0").stop_on(DOM0_READY).run();
    o.expect_end(End::Saw(DOM0_READY.into()));
    o.expect(BANNER)
        .expect("via UEFI")
        .expect("the EFI memory map has")
        .expect("ACPI: revision 2")
        .expect("ACPI: 2 CPUs in the MADT (2 enabled)")
        .expect("modules: 1")
        .expect("\"dom0\": dom0")
        .expect("(d0) dom0-kernel-shim: up on Xen ABI 4.17, privileged initial domain");
}

/// Bochs emulates an Intel CPU with VT-x and EPT; the same ISO boots there,
/// picks VT-x by itself and starts dom0 on it.
#[test]
fn boots_in_bochs_on_an_intel_vtx_cpu() {
    let i = images();
    let o = Boot::new("boots_in_bochs", Machine::Bochs).module(&i.dom0, "dom0").stop_on(DOM0_READY).run();
    o.expect_end(End::Saw(DOM0_READY.into()));
    o.expect(BANNER)
        .expect("GenuineIntel")
        .expect("vmx=true")
        .expect("ACPI: 1 CPUs in the MADT (1 enabled)")
        .expect("\"dom0\": dom0")
        .expect("VT-x: VMCS revision")
        .expect("unrestricted guest, VPID yes")
        .expect("(d0) dom0-kernel-shim: up on Xen ABI 4.17, privileged initial domain")
        // On VT-x too dom0 finds Bochs's i440FX functions through the
        // hypervisor's configuration ports (its own I/O bitmap lets the
        // rest through), sizing the IDE controller's BAR.
        .expect("(d0) dom0-kernel-shim: pci 00:00.0 [0600] Host bridge: 8086:1237")
        .expect("(d0) dom0-kernel-shim: pci 00:01.1 [0101] IDE interface: 8086:7010")
        .expect("(d0) dom0-kernel-shim: pci: 5 functions; no drivers yet, all left as found");
    assert!(o.line("pci 00:01.1   BAR4: I/O 0x").ends_with("(16 ports)"), "the IDE controller's bus-master BAR");
}

/// `hvm=` forces a backend; one the CPU lacks is refused with the reason,
/// and the domains are not started (on AMD and on Intel).
#[test]
fn hvm_vmx_on_an_amd_cpu_is_refused_with_the_reason() {
    let o = Boot::new("hvm_vmx_on_amd", Machine::QemuBios)
        .cmdline("hvm=vmx")
        .guest("hello", "name=h memory=4")
        .expect_error("VT-x is not usable")
        .expect_error("module 0: not started")
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("virtualization: VT-x is not usable: the CPU is not an Intel CPU; no domain can run")
        .expect("module 0: not started: no usable hardware virtualization")
        .expect("no domain to run")
        .expect_absent("(d1)");
}

#[test]
fn hvm_svm_on_an_intel_cpu_is_refused_with_the_reason() {
    let o = Boot::new("hvm_svm_on_intel", Machine::Bochs)
        .cmdline("hvm=svm")
        .guest("hello", "name=h memory=4")
        .expect_error("AMD-V is not usable")
        .expect_error("module 0: not started")
        .run();
    o.expect_end(End::PoweredOff);
    o.expect("virtualization: AMD-V is not usable: the CPU is not an AMD (or Hygon) CPU; no domain can run")
        .expect("module 0: not started: no usable hardware virtualization")
        .expect_absent("(d1)");
}

/// Forcing the backend the CPU has works like the automatic choice.
#[test]
fn hvm_svm_on_an_amd_cpu_runs_guests() {
    let o = Boot::new("hvm_svm_on_amd", Machine::QemuBios).cmdline("hvm=svm").guest("hello", "name=h memory=4").run();
    o.expect_end(End::PoweredOff);
    o.expect("AMD-V: SVM revision").expect("(d1) goodbye");
}

#[test]
fn page_fault_prints_the_full_register_dump_and_halts() {
    let o = Boot::new("exception_pf", Machine::QemuBios).cmdline("test_exception=pf").expect_crash_report().run();
    o.expect_end(End::Saw(HALTED.into()));
    o.expect("exception #PF page fault (vector 14) in the hypervisor at rip 0xffffffff8")
        .expect("read of a not-present page, supervisor mode")
        .expect("faulting address (cr2) 0xffffc3ffdeadb000")
        .expect("    rax ")
        .expect(" r15 ")
        .expect("    rip ")
        .expect("    cr0 ")
        .expect("call trace: 0xffffffff8") // at least the caller inside the image
        .expect("fatal exception #PF page fault in the hypervisor")
        .expect("System halted (panic=halt)")
        .expect_absent("boot complete");
}

#[test]
fn breakpoint_is_reported_and_boot_goes_on() {
    let o = Boot::new("exception_bp", Machine::QemuBios).cmdline("test_exception=bp").expect_crash_report().run();
    o.expect_end(End::PoweredOff);
    o.expect("exception #BP breakpoint (vector 3)")
        .expect("    rax ")
        .expect("resumed after Breakpoint")
        .expect_order("exception #BP", "boot complete");
}

/// Overflowing the boot stack hits the guard page; the #PF cannot be
/// delivered on that stack, so the CPU raises #DF, which runs on its own
/// IST stack and is reported.
#[test]
fn stack_overflow_is_caught_as_a_double_fault_on_its_own_stack() {
    let o = Boot::new("exception_df", Machine::QemuBios)
        .cmdline("test_exception=stack-overflow")
        .expect_crash_report()
        .run();
    o.expect_end(End::Saw(HALTED.into()));
    o.expect("exception #DF double fault (vector 8)").expect("fatal exception #DF double fault");
}

#[test]
fn panic_reboots_when_asked_to() {
    let o = Boot::new("panic_reboot", Machine::QemuBios)
        .cmdline("panic=reboot test_exception=panic")
        .expect_crash_report()
        .expect_reset()
        .run();
    o.expect_end(End::Reset);
    o.expect("PANIC on CPU0: test_exception=panic")
        .expect("at hypervisor/src/boot/start.rs:")
        .expect("Rebooting (panic=reboot)");
}

#[test]
fn invalid_and_truncated_modules_are_refused_and_boot_goes_on() {
    let i = images();
    let text = scratch("badmods", "notes.txt", b"this is a text file, not a kernel\n");
    // Cut the image in the middle of its first loadable segment.
    let dom0 = std::fs::read(&i.dom0).unwrap();
    let elf = hypervisor::util::elf::Elf::parse(&dom0).unwrap();
    let seg = elf.segments().find(|s| s.kind == hypervisor::util::elf::PT_LOAD && s.filesz > 8).unwrap();
    let cut = scratch("badmods", "truncated.elf", &dom0[..(seg.offset + seg.filesz / 2) as usize]);
    let o = Boot::new("bad_modules", Machine::QemuBios)
        .module(&text, "domu name=text")
        .module(&cut, "domu name=cut")
        .module(scratch("badmods", "orphan.img", b"xx"), "ramdisk")
        .module(scratch("badmods", "whatever.bin", b"yy"), "kernel")
        .module(&i.dom0, "dom0")
        .stop_on(DOM0_READY)
        .expect_error("refused: not an ELF image")
        .expect_error("refused: truncated")
        .expect_error("refused: a ramdisk must follow the kernel module")
        .expect_error("refused: unknown role 'kernel'")
        .run();
    o.expect_end(End::Saw(DOM0_READY.into()));
    let l = o.line("module 0:");
    assert!(l.contains("refused: not an ELF image: starts with 74 68 69 73"), "{l}");
    let l = o.line("module 1:");
    assert!(l.contains("refused: truncated: segment"), "{l}");
    let l = o.line("module 2:");
    assert!(l.contains("refused: a ramdisk must follow the kernel module"), "{l}");
    let l = o.line("module 3:");
    assert!(l.contains("refused: unknown role 'kernel'"), "{l}");
    let l = o.line("module 4:");
    assert!(l.ends_with(": dom0"), "{l}");
    o.expect("boot complete");
}

#[test]
fn unknown_option_is_named_and_ignored() {
    let o = Boot::new("unknown_option", Machine::QemuBios).cmdline("loglvl=info frobnicate=1 noreboot").run();
    o.expect_end(End::PoweredOff);
    o.expect("unknown boot option 'frobnicate=1' ignored").expect("boot complete");
    assert_eq!(o.lines_containing("unknown boot option").len(), 1);
}

#[test]
fn malformed_option_value_is_reported_and_the_default_used() {
    let o = Boot::new("malformed_option", Machine::QemuBios).cmdline("com1=fast loglvl=chatty mem=lots").run();
    o.expect_end(End::PoweredOff);
    o.expect("boot option 'com1=fast' is malformed")
        .expect("using com1=115200,8n1,0x3f8,4")
        .expect("boot option 'loglvl=chatty' is malformed")
        .expect("using loglvl=info")
        .expect("boot option 'mem=lots' is malformed")
        .expect("boot complete");
}

#[test]
fn mem_option_caps_the_ram_used() {
    let o = Boot::new("mem_option", Machine::QemuBios).cmdline("mem=128M").run();
    o.expect_end(End::PoweredOff);
    let l = o.line("memory: ");
    assert!(l.contains("usable below mem=0x8000000"), "{l}");
    let usable: u64 = l.split(", ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!((100..128).contains(&usable), "{l}");
}

#[test]
fn too_little_memory_halts_cleanly_with_one_line() {
    let o = Boot::new("too_little_memory", Machine::QemuBios)
        .cmdline("mem=24M")
        .expect_error("not enough memory:")
        .expect_crash_report()
        .run();
    o.expect_end(End::Saw(HALTED.into()));
    o.expect("not enough memory:").expect("the hypervisor needs at least 32768 KiB").expect_absent("exception #");
}

#[test]
fn too_little_ram_in_the_machine_halts_cleanly() {
    let o = Boot::new("too_little_ram", Machine::QemuBios)
        .memory(30)
        .expect_error("not enough memory:")
        .expect_crash_report()
        .run();
    o.expect_end(End::Saw(HALTED.into()));
    o.expect(BANNER).expect("not enough memory:").expect_absent("exception #");
}

/// The hypervisor's code is mapped read-only: writing it faults.
#[test]
fn hypervisor_text_is_write_protected() {
    let o = Boot::new("wx_text", Machine::QemuBios).cmdline("test_exception=write-text").expect_crash_report().run();
    o.expect_end(End::Saw(HALTED.into()));
    o.expect("exception #PF page fault").expect("write protection violation, supervisor mode");
}

/// The hypervisor's data is mapped no-execute: jumping into it faults.
#[test]
fn hypervisor_data_is_not_executable() {
    let o = Boot::new("nx_data", Machine::QemuBios).cmdline("test_exception=exec-data").expect_crash_report().run();
    o.expect_end(End::Saw(HALTED.into()));
    o.expect("exception #PF page fault").expect("instruction fetch");
}

/// The reboot path works on Bochs as well: the machine comes back to GRUB
/// and boots the hypervisor a second time.
#[test]
fn reboot_restarts_the_machine_in_bochs() {
    let o = Boot::new("reboot_bochs", Machine::Bochs)
        .cmdline("panic=reboot test_exception=panic")
        .stop_on_count(BANNER, 2)
        .expect_crash_report()
        .expect_reset()
        .run();
    o.expect_end(End::Saw(BANNER.into()));
    o.expect_order("Rebooting (panic=reboot)", BANNER);
    // The second boot panics and reboots as well; on a fast host a third
    // banner may come within the second the run goes on after the stop.
    let banners = o.lines_containing(BANNER).len();
    assert!(banners >= 2, "the hypervisor came up {banners} time(s), not again after the reboot");
}

/// A console the hypervisor does not have (Xen's `vga`, a second serial
/// port) must not leave a server silent: it is reported and ignored, and
/// the serial console stays on.
#[test]
fn an_unsupported_console_is_reported_and_the_serial_console_stays_on() {
    let o = Boot::new("console_vga", Machine::QemuBios).cmdline("console=vga").run();
    o.expect_end(End::PoweredOff);
    o.expect(BANNER)
        .expect("boot option 'console=vga' not supported: only com1 (or none) is available; ignored")
        .expect("boot complete");
}

#[test]
fn console_none_keeps_quiet_and_still_powers_off() {
    let o = Boot::new("console_none", Machine::QemuBios).cmdline("console=none").run();
    // Nothing says "Powering off": QEMU's own trace of the guest's power-off
    // request tells it from a reset or triple fault, which also end QEMU
    // (-no-reboot) with status 0.
    o.expect_end(End::PoweredOff);
    o.expect("Booting `hypervisor'").expect_absent(BANNER).expect_absent("boot complete");
}
