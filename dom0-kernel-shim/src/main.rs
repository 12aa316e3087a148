//! dom0: the privileged control domain, a small Rust kernel that the
//! hypervisor starts as a PVH guest (domain 0).
//!
//! Today it checks what it was given, lists the machine's PCI functions
//! (which it owns), and waits for events (SCHEDOP_block). Its drivers and
//! services (console and xenstore, block and network backends, the
//! toolstack) arrive with the issues that need them.

#![no_std]
#![no_main]

use core::fmt::Write;
use dom0_kernel_shim::pci::{self, Bdf, ConfigAccess};
use xen_abi::guest::{Console, hypercall, shutdown};
use xen_abi::start_info::{HvmStartInfo, MAGIC, SIF_INITDOMAIN, SIF_PRIVILEGED};
use xen_abi::{hypercall as nr, sched};

fn cmdline(si: &HvmStartInfo) -> &'static str {
    if si.cmdline_paddr == 0 {
        return "";
    }
    let p = si.cmdline_paddr as *const u8;
    let mut n = 0;
    // SAFETY: the hypervisor wrote a NUL-terminated line into our RAM, which
    // the PVH entry code identity-mapped.
    while n < 4096 && unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: as above.
    core::str::from_utf8(unsafe { core::slice::from_raw_parts(p, n) }).unwrap_or("")
}

/// PCI configuration mechanism #1: the hypervisor serves ports 0xCF8 and
/// 0xCFC for dom0, checking what it writes.
struct PortConfig;

impl PortConfig {
    fn select(bdf: Bdf, reg: u16) {
        let a = 0x8000_0000u32
            | (bdf.bus as u32) << 16
            | (bdf.dev as u32) << 11
            | (bdf.func as u32) << 8
            | (reg as u32 & 0xfc);
        // SAFETY: port I/O to the PCI configuration address port, which
        // dom0 may use; no memory is touched.
        unsafe { core::arch::asm!("out dx, eax", in("dx") 0xcf8u16, in("eax") a, options(nomem, nostack)) };
    }
}

impl ConfigAccess for PortConfig {
    fn read32(&mut self, bdf: Bdf, reg: u16) -> u32 {
        Self::select(bdf, reg);
        let v: u32;
        // SAFETY: as in `select`, the data port.
        unsafe { core::arch::asm!("in eax, dx", in("dx") 0xcfcu16, out("eax") v, options(nomem, nostack)) };
        v
    }
    fn write32(&mut self, bdf: Bdf, reg: u16, value: u32) {
        Self::select(bdf, reg);
        // SAFETY: as in `select`, the data port.
        unsafe { core::arch::asm!("out dx, eax", in("dx") 0xcfcu16, in("eax") value, options(nomem, nostack)) };
    }
}

/// Lists every PCI function as `lspci` would, with its BARs; none has a
/// driver yet, so each is left as found.
fn list_pci(con: &mut Console) {
    let mut n = 0;
    pci::enumerate(&mut PortConfig, &mut |f| {
        n += 1;
        let _ = writeln!(
            con,
            "dom0-kernel-shim: pci {} [{:02x}{:02x}] {}: {:04x}:{:04x} (rev {:02x}){}{}{}",
            f.bdf,
            f.class,
            f.subclass,
            f.class_name(),
            f.vendor,
            f.device,
            f.revision,
            if f.int_pin != 0 { " INTx" } else { "" },
            if f.msi { " MSI" } else { "" },
            if f.msix { " MSI-X" } else { "" },
        );
        for (i, b) in f.bars.iter().enumerate().filter(|(_, b)| **b != pci::Bar::None) {
            let _ = writeln!(con, "dom0-kernel-shim: pci {}   BAR{i}: {b}", f.bdf);
        }
    });
    let _ = writeln!(con, "dom0-kernel-shim: pci: {n} functions; no drivers yet, all left as found");
}

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    // SAFETY: EBX pointed at the start info, inside identity-mapped RAM.
    let si = unsafe { &*(si_paddr as *const HvmStartInfo) };
    let mut con = Console;
    if si.magic != MAGIC {
        let _ = writeln!(con, "dom0-kernel-shim: bad start info magic {:#x}", si.magic);
        shutdown(sched::SHUTDOWN_CRASH);
    }
    let privileged = si.flags & (SIF_PRIVILEGED | SIF_INITDOMAIN) == SIF_PRIVILEGED | SIF_INITDOMAIN;
    // SAFETY: XENVER_version takes no pointer.
    let version = unsafe { hypercall(nr::XEN_VERSION, 0, 0, 0, 0, 0) };
    let _ = writeln!(
        con,
        "dom0-kernel-shim: up on Xen ABI {}.{}, {}, command line \"{}\"",
        version >> 16,
        version & 0xffff,
        if privileged { "privileged initial domain" } else { "NOT privileged" },
        cmdline(si)
    );
    if !privileged {
        let _ = writeln!(con, "dom0-kernel-shim: started without SIF_PRIVILEGED|SIF_INITDOMAIN; stopping");
        shutdown(sched::SHUTDOWN_CRASH);
    }
    list_pci(&mut con);
    let _ = writeln!(con, "dom0-kernel-shim: ready; waiting for events");
    loop {
        // SAFETY: SCHEDOP_block takes no pointer.
        unsafe { hypercall(nr::SCHED_OP, sched::SCHEDOP_BLOCK, 0, 0, 0, 0) };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Console, "dom0-kernel-shim: panic: {}", info.message());
    shutdown(sched::SHUTDOWN_CRASH)
}
