//! Writes far beyond its memory (the guest's identity map covers 4 GiB, its
//! RAM is a few MiB), which is dropped as Xen drops it, then jumps there:
//! an instruction fetch from where nothing is, which the hypervisor must
//! turn into this domain's death, not a host fault.

#![no_std]
#![no_main]

use test_guests::*;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    let target = 0xc000_0000u64;
    println!("about to write to guest-physical {target:#x}, outside my memory");
    // SAFETY: deliberately touches memory the domain does not own.
    unsafe { core::ptr::write_volatile(target as *mut u64, 0xdead_beef) };
    // SAFETY: as above.
    let back = unsafe { core::ptr::read_volatile(target as *const u64) };
    println!("the wild write was dropped: it reads back {back:#x}");
    println!("about to run code at guest-physical {target:#x}");
    // SAFETY: deliberately jumps where nothing is; the domain ends there.
    unsafe { core::arch::asm!("jmp {}", in(reg) target, options(noreturn)) }
}
