//! The boot sequence, from the first Rust instruction to the point where
//! domains would start.

use super::info::{BootInfo, MemoryMapSource};
use crate::acpi;
use crate::acpi::AcpiRoot;
use crate::arch::x86_64::{cpu, fpu, gdt, hvm, lapic, percpu, power, smp, traps};
use crate::cmdline::{self, Diagnostic, Options, TestException};
use crate::console::{logger, panic, serial as console};
use crate::mm::phys::{phys_slice, phys_to_virt};
use crate::mm::ranges::Range;
use crate::mm::setup::{self, Image};
use crate::time;
use crate::{domain, sched};
use log::{error, info, warn};
use multiboot2::{BootInformation, BootInformationHeader};

use crate::BANNER;

fn size(bytes: u64) -> impl core::fmt::Display {
    struct S(u64);
    impl core::fmt::Display for S {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let b = self.0;
            if b >= 10 << 30 {
                write!(f, "{} GiB", b >> 30)
            } else if b >= 1 << 20 {
                write!(f, "{} MiB", b >> 20)
            } else {
                write!(f, "{} KiB", b >> 10)
            }
        }
    }
    S(bytes)
}

/// Entered from boot/entry.S in 64-bit mode on the boot stack, with the
/// first 4 GiB identity-mapped.
#[unsafe(no_mangle)]
pub extern "C" fn hv_start(mbi_phys: u64, load_delta: u64) -> ! {
    time::mark_boot();
    gdt::init_bsp();
    traps::init();
    percpu::init_bsp(cpu::cpuid(1, 0).ebx >> 24);

    // SAFETY: GRUB passed this address in EBX; it lies below 4 GiB
    // (identity-mapped now) and the crate checks the size and tag chain.
    let mbi = match unsafe { BootInformation::load(mbi_phys as *const BootInformationHeader) } {
        Ok(m) => m,
        Err(e) => {
            let mut w = console::LockedWriter::new();
            let _ = core::fmt::Write::write_fmt(
                &mut w,
                format_args!("hypervisor: the Multiboot2 information at {mbi_phys:#x} is unreadable ({e:?})\n"),
            );
            drop(w);
            cpu::halt_forever();
        }
    };
    let info = BootInfo::from_multiboot(&mbi);
    let line = cmdline::strip_image_path(info.cmdline).trim();

    // Options first: they decide where and how much to print.
    let mut diags: [Option<Diagnostic<'_>>; 32] = [None; 32];
    let mut extra_diags = 0;
    let opts: Options = cmdline::parse_options(line, |d| match diags.iter_mut().find(|s| s.is_none()) {
        Some(slot) => *slot = Some(d),
        None => extra_diags += 1,
    });
    let console_status = console::init(&opts.com1, opts.console.com1);
    logger::init(opts.loglvl);
    panic::set_action(opts.panic);
    let (khz, how) = time::calibrate();

    info!("{BANNER}");
    let f = cpu::features();
    info!(
        "CPU: {} \"{}\" family {:#x} model {:#x} stepping {}",
        f.vendor_str(),
        f.brand_str(),
        f.family,
        f.model,
        f.stepping
    );
    info!(
        "CPU features: svm={} vmx={} nx={} 1g-pages={} x2apic={} tsc-deadline={} invariant-tsc={} phys-bits={}",
        f.svm, f.vmx, f.nx, f.page1g, f.x2apic, f.tsc_deadline, f.invariant_tsc, f.phys_addr_bits
    );
    info!("TSC: {}.{:03} MHz ({:?})", khz / 1000, khz % 1000, how);
    if let Err(e) = console_status {
        warn!("console: COM1 at {:#x}: {e}", opts.com1.io_base);
    }
    info!("command line: \"{line}\"");
    for d in diags.iter().flatten() {
        warn!("{d}");
    }
    if extra_diags > 0 {
        warn!("{extra_diags} more command-line problems not shown");
    }
    for w in info.warnings() {
        warn!("boot information: {w}");
    }
    info!(
        "boot loader: {} via {}{}",
        if info.loader_name.is_empty() { "unknown" } else { info.loader_name },
        if info.efi { "UEFI" } else { "BIOS" },
        match info.load_base {
            Some(b) => alloc_free_fmt::Hex(b),
            None => alloc_free_fmt::Hex(u64::MAX),
        }
    );

    // Memory map.
    match info.memory_source {
        MemoryMapSource::None => warn!("memory map: none given"),
        src => info!(
            "memory map ({} entries, from the {} tag{}):",
            info.memory_map().len(),
            match src {
                MemoryMapSource::Multiboot => "Multiboot2 memory-map",
                MemoryMapSource::Efi => "EFI memory-map",
                _ => "basic memory-info",
            },
            if info.efi_map_entries > 0 {
                alloc_free_fmt::EfiNote(info.efi_map_entries)
            } else {
                alloc_free_fmt::EfiNote(0)
            }
        ),
    }
    for r in info.memory_map() {
        info!(
            "  {:#014x} - {:#014x} {:<9} type {} ({})",
            r.range.start,
            r.range.end,
            r.kind.name(),
            r.kind.code(),
            size(r.range.len())
        );
    }

    // Memory the frame allocator must never hand out: the boot information,
    // the modules and the ACPI tables (the image and the first MiB are
    // added by mm::setup).
    let mut reserved = [Range::default(); 72];
    let mut nres = 0;
    reserved[nres] = info.mbi;
    nres += 1;
    for m in info.modules() {
        if nres < reserved.len() {
            reserved[nres] = m.range;
            nres += 1;
        }
    }
    let acpi_root = info.acpi.or_else(scan_bios_for_rsdp);
    if let Some(root) = acpi_root {
        let mut tables = [Range::default(); acpi::walk::MAX_TABLES];
        let n = acpi::walk::table_ranges(
            root.table_address,
            root.revision >= 2,
            &mut |addr, buf| match unsafe { phys_slice(addr, buf.len()) } {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            },
            &mut tables,
        );
        for t in &tables[..n] {
            if nres < reserved.len() {
                reserved[nres] = *t;
                nres += 1;
            }
        }
    }

    let image = Image { delta: load_delta };
    let report = match setup::init(info.memory_map(), image, &reserved[..nres], opts.mem_limit) {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            panic::fatal_stop(format_args!("cannot continue: {e}"));
        }
    };
    info!(
        "memory: {} of RAM in the map, {} usable{}",
        size(report.ram_in_map),
        size(report.usable),
        match opts.mem_limit {
            Some(l) => alloc_free_fmt::Limit(l),
            None => alloc_free_fmt::Limit(0),
        }
    );
    info!(
        "memory: hypervisor image {}, page tables {}, frame table {}, heap {}; {} free for domains",
        size(report.image),
        size(report.page_tables),
        size(report.frame_table),
        size(report.heap),
        size(report.free)
    );
    if report.dropped_ranges {
        warn!("memory map too fragmented: some RAM was left unused");
    }

    // From here the boot information is reached through the direct map.
    // SAFETY: the MBI is reserved and direct-mapped; it is the same
    // structure loaded above.
    let mbi = match phys_to_virt(mbi_phys)
        .and_then(|v| unsafe { BootInformation::load(v as *const BootInformationHeader) }.ok())
    {
        Some(m) => m,
        None => panic::fatal_stop(format_args!("boot information lost after the page-table switch")),
    };
    let info = BootInfo::from_multiboot(&mbi);
    let line = cmdline::strip_image_path(info.cmdline).trim();

    let platform = match acpi_root {
        Some(root) => report_acpi(&root),
        None => {
            warn!("ACPI: no RSDP found; CPU enumeration and power-off are unavailable");
            None
        }
    };
    let lapic_address = platform.as_ref().map_or(0xfee0_0000, |p| p.lapic_address);

    // A better clock for the TSC now that ACPI says where one is.
    let pm_read = acpi::power_info().and_then(|p| p.pm_timer.map(|r| (r, p.pm_timer_32bit)));
    let hpet = platform.as_ref().and_then(|p| p.hpet).and_then(|a| crate::mm::phys::map_mmio(a, 1024).ok());
    let read_pm = pm_read.map(|(r, _)| move || r.read());
    let reader: Option<&dyn Fn() -> u64> = read_pm.as_ref().map(|f| f as &dyn Fn() -> u64);
    match time::recalibrate(reader, pm_read.is_some_and(|(_, w)| w), hpet) {
        Some((khz, how)) => info!("TSC: {}.{:03} MHz (measured again against the {:?})", khz / 1000, khz % 1000, how),
        None => warn!("TSC: no ACPI PM timer or HPET to measure against; keeping the first measurement"),
    }
    match time::read_rtc() {
        Some(secs) => info!("wall clock: {secs} seconds since 1970 (CMOS RTC, taken as UTC)"),
        None => warn!("wall clock: the CMOS RTC gave no valid date; guests see 1970"),
    }

    fpu::init();
    let virt_ok = match hvm::init(opts.hvm, sched::credit::SLICE_NS) {
        Ok((_, line)) => {
            info!("{line}");
            true
        }
        Err(e) => {
            error!("virtualization: {e}; no domain can run");
            false
        }
    };
    traps::register_irq(lapic::VECTOR_TIMER, sched::timer_interrupt);
    traps::register_irq(lapic::VECTOR_RESCHED, sched::resched_interrupt);
    traps::register_irq(lapic::VECTOR_CALL, sched::kick_interrupt);
    crate::irq::deliver::init();
    let apic_ok = match lapic::init(lapic_address) {
        Ok(mode) => {
            let (hz, deadline) = lapic::calibrate_timer();
            info!(
                "local APIC {} (id {}), timer {} kHz, {}",
                mode,
                lapic::id(),
                hz / 1000,
                if deadline { "TSC-deadline mode" } else { "one-shot mode" }
            );
            true
        }
        Err(e) => {
            error!("local APIC: {e}; guests cannot be preempted and no other CPU starts");
            false
        }
    };
    smp::init_bsp();
    sched::add_cpu(0);
    if apic_ok && let Some(p) = &platform {
        start_other_cpus(&info, p, opts.max_cpus);
    }
    sched::set_report_interval(opts.sched_report_ms);
    cmdline::save_line(line);
    domain::lifecycle::set_on_last_exit(opts.on_last_exit);

    devices_for_dom0(&opts, platform.as_ref(), lapic_address);

    // The other CPUs set up their virtualization state (SVM's host save
    // area and host VMCB, VMX's VMXON region) from their own loop; the
    // free-memory mark must come after, or the machine-end check would
    // count those frames as a domain's.
    wait_for_hvm_on_other_cpus();
    domain::lifecycle::note_free_memory();
    let domains = super::domains::build(&info, &opts, virt_ok);
    if let Some(id) = opts.serial_input {
        crate::console::input::focus_at_boot(id);
    }

    if let Some(t) = opts.test_exception {
        raise_test_exception(t);
    }

    // Every mapping of the boot is made: none may be writable and
    // executable, nor code writable through another mapping.
    if !crate::arch::x86_64::cpu::features().nx {
        warn!("memory: the CPU has no NX bit: W^X cannot be enforced");
    } else {
        match crate::mm::phys::check_wx() {
            Ok(code) => info!("memory: W^X holds: {} of code, read-only in every mapping", size(code)),
            Err(e) => error!("memory: W^X broken: {e}"),
        }
    }
    let (warnings, errors) = logger::counts();
    info!("boot complete in {} ms ({warnings} warnings, {errors} errors)", time::now_ns() / 1_000_000);

    if domains == 0 {
        info!("no domain to run");
        power::end_machine(domain::lifecycle::machine_action());
    }
    domain::lifecycle::boot_done();
    sched::every(crate::console::input::SERIAL_POLL_NS, crate::console::input::poll_serial_input);
    sched::every(crate::console::ring::SERVICE_NS, crate::console::ring::service);
    hvm::run::cpu_loop::cpu_loop(0)
}

/// What a started CPU does: enable virtualization for itself, then run
/// vCPUs.
fn ap_work(index: u32) -> ! {
    if let Err(e) = hvm::init_this_cpu() {
        error!("CPU{index}: virtualization: {e}");
    }
    HVM_READY_CPUS.fetch_add(1, core::sync::atomic::Ordering::Release);
    hvm::run::cpu_loop::cpu_loop(index)
}

/// Started CPUs that have set up (or failed to set up) virtualization.
static HVM_READY_CPUS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Waits (at most a second) until every other online CPU has been through
/// its virtualization set-up.
fn wait_for_hvm_on_other_cpus() {
    let others = percpu::online_count().saturating_sub(1) as u32;
    let deadline = time::now_ns().saturating_add(1_000_000_000);
    while HVM_READY_CPUS.load(core::sync::atomic::Ordering::Acquire) < others {
        if time::now_ns() > deadline {
            warn!("SMP: a CPU has not set up virtualization after a second");
            return;
        }
        core::hint::spin_loop();
    }
}

/// Starts every other enabled CPU the MADT lists (up to `max_cpus` in all)
/// and puts each in service.
fn start_other_cpus(info: &BootInfo<'_>, p: &acpi::Platform, max_cpus: u32) {
    let bsp = lapic::id();
    let others: alloc::vec::Vec<u32> =
        p.cpus.iter().filter(|c| c.enabled && c.apic_id != bsp).map(|c| c.apic_id).collect();
    if others.is_empty() {
        return;
    }
    let low_ram: alloc::vec::Vec<Range> = info
        .memory_map()
        .iter()
        .filter(|r| r.kind == crate::mm::ranges::MemoryKind::Ram && r.range.start < 0x10_0000)
        .map(|r| r.range)
        .collect();
    let mut avoid: alloc::vec::Vec<Range> = info.modules().map(|m| m.range).collect();
    avoid.push(info.mbi);
    let Some(tramp) = smp::choose_trampoline(&low_ram, &avoid) else {
        error!("SMP: {}; only the boot CPU runs", smp::StartError::NoTrampoline);
        return;
    };
    smp::set_trampoline(tramp);
    let mut index = 1u32;
    for apic_id in others {
        if index >= max_cpus {
            info!("SMP: CPU with APIC id {apic_id} left out (maxcpus={max_cpus})");
            continue;
        }
        if index as usize >= crate::util::cpumask::MAX_CPUS {
            warn!("SMP: more than {} CPUs; the rest are left out", crate::util::cpumask::MAX_CPUS);
            break;
        }
        match smp::start_cpu(index, apic_id, ap_work) {
            Ok(()) => {
                sched::add_cpu(index);
                index += 1;
            }
            Err(e) => error!("SMP: the CPU with APIC id {apic_id} did not start: {e}"),
        }
    }
    info!("SMP: {} CPUs online", percpu::online_count());
}

/// Legacy BIOS places the RSDP on a 16-byte boundary in the first KiB of
/// the EBDA or in 0xE0000-0xFFFFF.
fn scan_bios_for_rsdp() -> Option<AcpiRoot> {
    // SAFETY: low memory is identity-mapped and read-only here.
    let ebda = unsafe { phys_slice(0x40e, 2) }.map(|b| (u16::from_le_bytes([b[0], b[1]]) as u64) << 4);
    let areas = [(ebda.unwrap_or(0), 1024u64), (0xe0000, 0x20000)];
    for (start, len) in areas {
        if start == 0 {
            continue;
        }
        // SAFETY: as above.
        let Some(area) = (unsafe { phys_slice(start, len as usize) }) else { continue };
        for off in (0..area.len().saturating_sub(20)).step_by(16) {
            let r = &area[off..];
            if &r[..8] != b"RSD PTR " || r[..20].iter().fold(0u8, |a, &b| a.wrapping_add(b)) != 0 {
                continue;
            }
            let revision = r[15];
            let rsdt = u32::from_le_bytes([r[16], r[17], r[18], r[19]]) as u64;
            if revision >= 2 && r.len() >= 36 {
                let xsdt = u64::from_le_bytes(r[24..32].try_into().ok()?);
                if xsdt != 0 {
                    return Some(AcpiRoot { revision, table_address: xsdt, checksum_ok: true });
                }
            }
            return Some(AcpiRoot { revision: 0, table_address: rsdt, checksum_ok: true });
        }
    }
    None
}

/// What the hardware domain gets of the machine's devices: every I/O port
/// but the hypervisor's, and no BAR over the hypervisor's device memory.
fn devices_for_dom0(opts: &Options, platform: Option<&acpi::Platform>, lapic_address: u64) {
    use crate::passthrough::{access, config, ioports};
    let pm_timer = acpi::power_info().and_then(|p| match p.pm_timer {
        Some(acpi::Register::Io { port, .. }) => Some(port),
        _ => None,
    });
    let host = ioports::HostPorts { console_uart: console::uart_port(), pm_timer, port80_allowed: true };
    let ports = ioports::hardware_domain_ports(&host, opts.dom0_ioports_disable.as_slice());
    let page = |a: u64| Range::new(a & !0xfff, (a & !0xfff) + 0x1000);
    let mut mmio = alloc::vec![page(lapic_address)];
    if let Some(p) = platform {
        mmio.extend(p.ioapics.iter().map(|io| page(io.address as u64)));
        mmio.extend(p.hpet.map(page));
    }
    info!(
        "dom0 devices: I/O ports in {} ranges (the hypervisor keeps {} ports), PCI configuration mediated",
        ports.ranges().len(),
        0x10000 - ports.ranges().iter().map(|&(a, b)| (b - a) as u32 + 1).sum::<u32>()
    );
    access::set_hardware_domain_ports(ports);
    config::set_hypervisor_mmio(mmio);
}

/// Reports the ACPI tables; returns what they say.
fn report_acpi(root: &AcpiRoot) -> Option<acpi::Platform> {
    let p = match acpi::parse(root) {
        Ok(p) => p,
        Err(e) => {
            error!("ACPI: {e}");
            return None;
        }
    };
    let oem = core::str::from_utf8(&p.oem_id).unwrap_or("?");
    let mut sigs = [0u8; 5 * 24];
    let mut n = 0;
    for (sig, _, _) in p.tables.iter().take(24) {
        sigs[n..n + 4].copy_from_slice(sig);
        sigs[n + 4] = b' ';
        n += 5;
    }
    info!(
        "ACPI: revision {} tables from \"{}\": {}",
        root.revision,
        oem.trim(),
        core::str::from_utf8(&sigs[..n]).unwrap_or("?").trim()
    );
    let enabled = p.cpus.iter().filter(|c| c.enabled).count();
    info!("ACPI: {} CPUs in the MADT ({} enabled), local APIC at {:#x}", p.cpus.len(), enabled, p.lapic_address);
    for c in &p.cpus {
        info!(
            "  CPU: APIC id {} ACPI uid {}{}",
            c.apic_id,
            c.acpi_uid,
            if c.enabled {
                ""
            } else if c.online_capable {
                " (can be brought online)"
            } else {
                " (disabled)"
            }
        );
    }
    for io in &p.ioapics {
        info!("  IOAPIC: id {} at {:#x}, GSI base {}", io.id, io.address, io.gsi_base);
    }
    match &p.power {
        Some(pw) => info!(
            "ACPI: power-off {}, reset {}, PM timer {}",
            if pw.s5.is_some() && (pw.pm1a_control.is_some() || pw.sleep_control.is_some()) {
                "via S5"
            } else {
                "unavailable"
            },
            if pw.reset.is_some() { "register" } else { "via keyboard controller" },
            if pw.pm_timer.is_some() { "present" } else { "absent" }
        ),
        None => warn!("ACPI: no FADT; power-off unavailable"),
    }
    Some(p)
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let buf = [depth; 64];
    // black_box keeps the frame (and the recursion) from being optimised away.
    core::hint::black_box(&buf);
    recurse(depth + 1) + buf[core::hint::black_box(3)]
}

#[inline(never)]
fn raise_test_exception(t: TestException) {
    warn!("test_exception: raising {t:?} on purpose");
    // SAFETY (all arms): each deliberately raises the named exception; the
    // handler reports it, and every one but #BP stops the machine.
    unsafe {
        match t {
            TestException::Breakpoint => core::arch::asm!("int3"),
            TestException::InvalidOpcode => core::arch::asm!("ud2"),
            TestException::PageFault => {
                core::ptr::read_volatile(0xffff_c3ff_dead_b000u64 as *const u64);
            }
            TestException::GeneralProtection => {
                core::ptr::read_volatile(0x8000_0000_0000_0000u64 as *const u64);
            }
            TestException::DivideError => {
                core::arch::asm!("xor edx, edx", "xor eax, eax", "xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _)
            }
            TestException::StackOverflow => {
                core::hint::black_box(recurse(0));
            }
            TestException::WriteText => {
                core::ptr::write_volatile(hv_start as *const () as *mut u8, 0xcc);
            }
            TestException::ExecData => {
                static RET: [u8; 1] = [0xc3];
                let f: extern "C" fn() = core::mem::transmute(RET.as_ptr());
                f();
            }
            TestException::Panic => panic!("test_exception=panic"),
        }
    }
    info!("test_exception: resumed after {t:?}");
}

/// Small formatting helpers that need no allocation.
mod alloc_free_fmt {
    use core::fmt;

    pub struct Hex(pub u64);
    impl fmt::Display for Hex {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.0 == u64::MAX { Ok(()) } else { write!(f, ", image loaded at {:#x}", self.0) }
        }
    }

    pub struct EfiNote(pub usize);
    impl fmt::Display for EfiNote {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.0 == 0 { Ok(()) } else { write!(f, "; the EFI memory map has {} entries", self.0) }
        }
    }

    pub struct Limit(pub u64);
    impl fmt::Display for Limit {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.0 == 0 { Ok(()) } else { write!(f, " below mem={:#x}", self.0) }
        }
    }
}
