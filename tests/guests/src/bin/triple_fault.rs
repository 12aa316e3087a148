//! Loads an empty IDT and raises an exception: the CPU shuts down (triple
//! fault). The hypervisor must destroy only this domain.

#![no_std]
#![no_main]

use test_guests::*;

#[unsafe(no_mangle)]
extern "C" fn pvh_main(_: u64) -> ! {
    println!("about to triple fault");
    let idtr = [0u8; 10];
    // SAFETY: deliberately breaks this guest.
    unsafe {
        core::arch::asm!("lidt [{}]", "int3", in(reg) idtr.as_ptr());
    }
    println!("still alive after a triple fault?!");
    shutdown(SHUTDOWN_POWEROFF)
}
