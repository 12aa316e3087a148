//! Writes far beyond its memory (the guest's identity map covers 4 GiB, its
//! RAM is a few MiB): a nested page fault the hypervisor must turn into this
//! domain's death, not a host fault.

#![no_std]
#![no_main]

use test_guests::*;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    let target = 0xc000_0000u64;
    println!("about to write to guest-physical {target:#x}, outside my memory");
    // SAFETY: deliberately touches memory the domain does not own.
    unsafe { core::ptr::write_volatile(target as *mut u64, 0xdead_beef) };
    println!("still alive after a wild write?!");
    shutdown(SHUTDOWN_POWEROFF)
}
