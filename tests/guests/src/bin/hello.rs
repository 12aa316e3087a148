//! Prints through console_io what the hypervisor handed over, then powers
//! off.

#![no_std]
#![no_main]

use test_guests::*;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(si_paddr: u64) -> ! {
    let si = start_info(si_paddr);
    println!("hello from a PVH guest");
    println!("start info at {si_paddr:#x}: magic {:#x} version {} flags {:#x}", si.magic, si.version, si.flags);
    println!("cmdline: \"{}\"", c_str(si.cmdline_paddr));
    for (i, e) in memmap(si).iter().enumerate() {
        println!("memmap {i}: {:#x} + {:#x} type {}", e.addr, e.size, e.kind);
    }
    for (i, m) in modules(si).iter().enumerate() {
        // SAFETY: the module is guest RAM the hypervisor filled.
        let first = unsafe { *(m.paddr as *const u8) };
        println!("module {i}: {:#x} + {} bytes, first byte {first:#x}", m.paddr, m.size);
    }
    println!("goodbye");
    shutdown(SHUTDOWN_POWEROFF)
}
