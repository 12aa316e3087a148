//! dom0: the privileged control domain, a small Rust kernel that the
//! hypervisor starts as a PVH guest (domain 0).
//!
//! Today it checks what it was given, reports, and waits for events
//! (SCHEDOP_block). Its services (console and xenstore, block and network
//! backends, the toolstack) arrive with the issues that need them.

#![no_std]
#![no_main]

use core::fmt::Write;
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
